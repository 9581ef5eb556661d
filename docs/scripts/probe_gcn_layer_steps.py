r"""How much a mean-aggregation graph model's validation score swings from one epoch to the next, and what its
learned layer weights have to do with it (docs/RESULTS.md, "The GCN backbone's swings").

    python docs/scripts/probe_gcn_layer_steps.py --model=GraphSAGE --dataset=tiktok [--seed=2020] [--epochs=80] [--variants=...] [--key=value ...]
    python docs/scripts/probe_gcn_layer_steps.py --model=GraphSAGE --dataset=ml100k --config_files=dataset/ml100k/ml100k.yaml

The model runs with the side-by-side benchmark's settings (what ``run_benchmark.py`` gives it: ``properties/
benchmark/models.yaml``, then any ``--key=value``), early stopping off, and is evaluated on the validation
split after every epoch; the test split is never evaluated. Four runs from the same initialisation:

* ``as shipped``;
* ``frozen``: the graph layers' ``W_1`` and ``W_2`` (Eq. 18) fixed at ``I / 2``, so that each layer averages a
  node with the mean of its neighbours and no layer weight is learned;
* ``layer lr x 0.1``: the graph layers' weights at a tenth of the learning rate, every other parameter at the
  protocol's;
* ``started at I/2``: those weights started at ``I / 2`` instead of Xavier's draw, then learned as shipped.

``"--variants=as shipped,frozen"`` (comma-separated) runs only those; all four by default.

A model without mean-aggregation layers (LightGCN, for comparison) runs ``as shipped`` only. For each run it prints
validation NDCG@20 / ItemCoverage@20 (%) per epoch, the best epoch, and the swing: the mean absolute change of
validation NDCG@20 from one epoch to the next, over its mean, from epoch 10 on.

    python docs/scripts/probe_gcn_layer_steps.py --runs=results/patience50

trains nothing: for each model of a benchmark folder it prints the swing of its runs' saved validation curves (mean
and range over the seeds) and the validation ItemCoverage@20 at the best epoch and at the last one.
"""

import glob
import json
import os
import statistics
import sys

import torch

from recbole_metammf.cmdline import clean_argv, parse_config_files, parse_settings
from recbole_metammf.utils import ConfigError, DataError
from recbole_metammf.experiments.benchmark.plan import build_runs
from recbole_metammf.experiments.benchmark.run import epoch_of_best
from recbole_metammf.model.layers import MeanAggregationGCN
from recbole_metammf.pipeline import build, make_config, train_and_test

SWING_FROM_EPOCH = 10


def mean_aggregation_stacks(model):
    return [module for module in model.modules() if isinstance(module, MeanAggregationGCN)]


def graph_layer_weights(model):
    r"""The ``W_1``, ``W_2`` of every mean-aggregation layer of ``model`` (none for a model without such layers)."""
    stacks = mean_aggregation_stacks(model)
    return [conv.lin_l.weight for stack in stacks for conv in stack.convs] + [
        conv.lin_r.weight for stack in stacks for conv in stack.convs
    ]


def started_at_half_identity(pipeline):
    for weight in graph_layer_weights(pipeline.model):
        with torch.no_grad():
            weight.copy_(torch.eye(weight.shape[0]) / 2)


def frozen(pipeline):
    started_at_half_identity(pipeline)
    for weight in graph_layer_weights(pipeline.model):
        weight.requires_grad_(False)
    trainable = [p for p in pipeline.model.parameters() if p.requires_grad]
    pipeline.trainer.optimizer = pipeline.trainer._build_optimizer(params=trainable)


def layer_lr_tenth(pipeline):
    weights = graph_layer_weights(pipeline.model)
    layer = {id(w) for w in weights}
    groups = [
        {"params": [p for p in pipeline.model.parameters() if id(p) not in layer]},
        {"params": weights, "lr": pipeline.config["learning_rate"] / 10},
    ]
    pipeline.trainer.optimizer = pipeline.trainer._build_optimizer(params=groups)


def normalised_layer_outputs(pipeline, last=True):
    for stack in mean_aggregation_stacks(pipeline.model):
        for conv in stack.convs if last else stack.convs[:-1]:
            conv.normalize = True  # SAGEConv's own switch: each output row to unit length (GraphSAGE's Alg. 1, line 7)


VARIANTS = {
    "as shipped": None,
    "frozen": frozen,
    "layer lr x 0.1": layer_lr_tenth,
    "started at I/2": started_at_half_identity,
    "layer outputs L2-normalised": normalised_layer_outputs,
    "inner layer outputs L2-normalised": lambda pipeline: normalised_layer_outputs(pipeline, last=False),
}


def swing(scores):
    later = scores[SWING_FROM_EPOCH:]
    steps = [abs(b - a) for a, b in zip(later, later[1:])]
    return sum(steps) / len(steps) / (sum(later) / len(later))


def swings_of_runs(output_dir):
    r"""``{label: [(swing, coverage at the best epoch, coverage at the last epoch), ...]}`` of the runs saved in a
    benchmark folder whose validation curve has a step after epoch ``SWING_FROM_EPOCH`` (Pop's one epoch has none)."""
    by_label = {}
    for path in sorted(glob.glob(os.path.join(output_dir, "runs", "*.json"))):
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        curve = run["valid_curve"]
        if len(curve) < SWING_FROM_EPOCH + 2:
            continue
        metric = run["valid_metric"]
        best = dict(curve)[epoch_of_best(curve, metric, run.get("valid_score_bigger", True))]
        by_label.setdefault(run["label"], []).append(
            (swing([values[metric] for _, values in curve]), best["itemcoverage@20"], curve[-1][1]["itemcoverage@20"])
        )
    return by_label


def print_swings_of_runs(output_dir):
    print("| model | seeds | swing, mean (range) | valid ItemCoverage@20 at the best epoch | at the last epoch |")
    print("| --- | --- | --- | --- | --- |")
    for label, rows in sorted(swings_of_runs(output_dir).items(), key=lambda item: -statistics.mean(r[0] for r in item[1])):
        swings = [r[0] for r in rows]
        print(
            f"| {label} | {len(rows)} | {statistics.mean(swings):.1%} ({min(swings):.1%}–{max(swings):.1%}) | "
            f"{statistics.mean(r[1] for r in rows):.1%} | {statistics.mean(r[2] for r in rows):.1%} |"
        )


def main():
    arguments = sys.argv[1:]
    if any(a in ("-h", "--help") for a in arguments):
        print(__doc__)
        return
    runs = [a.split("=", 1)[1] for a in arguments if a.startswith("--runs=")]
    if runs:
        if not os.path.isdir(os.path.join(runs[0], "runs")):
            sys.exit(f"--runs={runs[0]}: no runs/ folder there (a run_benchmark.py --output folder is expected)")
        print_swings_of_runs(runs[0])
        return
    settings = parse_settings(arguments)
    model_name, dataset = settings.pop("model", "GraphSAGE"), settings.pop("dataset", "tiktok")
    seed, epochs = int(settings.pop("seed", 2020)), int(settings.pop("epochs", 80))
    variants = [v.strip() for v in str(settings.pop("variants", ",".join(VARIANTS))).split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"--variants: got {unknown}; expected a comma-separated list of {list(VARIANTS)}")
    config_files = parse_config_files(str(settings.pop("config_files", "")))
    with clean_argv():
        (run,) = build_runs(dataset, [model_name], [seed], overrides=settings, config_files=config_files)
    config_dict = {**run.config_dict, "seed": seed, "epochs": epochs, "stopping_step": epochs, "show_progress": False}
    for name in variants:
        change = VARIANTS[name]
        pipeline = build(make_config(config_dict=config_dict, command_line=False))
        if change is not None:
            if not graph_layer_weights(pipeline.model):
                continue  # no mean-aggregation layers: the model as shipped only
            change(pipeline)
        history = train_and_test(pipeline, saved=False, verbose=False, test=False)["valid_history"]
        best_epoch = epoch_of_best(history, "ndcg@20")
        best = dict(history)[best_epoch]
        print(
            f"{model_name}, seed {seed}, {name}: best epoch {best_epoch}, valid NDCG@20 {best['ndcg@20']:.4f}, "
            f"ItemCoverage@20 {best['itemcoverage@20']:.1%}; swing {swing([v['ndcg@20'] for _, v in history]):.1%}"
        )
        print("  NDCG@20 x 1000 / ItemCoverage@20 % by epoch: "
              + " ".join(f"{v['ndcg@20'] * 1000:.0f}/{v['itemcoverage@20'] * 100:.0f}" for _, v in history))
        sys.stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataError) as error:  # a setting or the data refused: the message, not a traceback
        sys.exit(f"error: {error}")
