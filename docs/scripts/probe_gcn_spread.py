r"""How alike the nodes of a mean-aggregation graph model are, layer by layer (docs/RESULTS.md,
"MetaMMF_GCN: the cause of the popularity collapse").

    python docs/scripts/probe_gcn_spread.py --model=MetaMMF_GCN --dataset=tiktok --negative_slope=0.01 --normalize_modalities=True
    python docs/scripts/probe_gcn_spread.py CHECKPOINT [CHECKPOINT ...]

Without a checkpoint it builds the model at initialisation (any ``--key=value`` of the model); with
checkpoints it loads each trained model. For the input of the graph layers (layer 0) and each layer's
output it prints, over 2,000 sampled users and 2,000 sampled items (seed 0), the mean pairwise cosine
similarity and the share of the squared entries that is below zero: a mean over neighbours of vectors that are nearly all
non-negative is nearly the same vector for every node, and user vectors that are all alike rank every
user's list by the same items.
"""

import sys

import torch
import torch.nn.functional as F

from recbole_metammf.cmdline import parse_settings
from recbole_metammf.pipeline import build_model, load_data, make_config
from recbole_metammf.quick_start import load_data_and_model


def mean_pairwise_cosine(x, n=2000, generator=None):
    rows = x[torch.randperm(x.shape[0], generator=generator)[:n]]
    unit = F.normalize(rows, dim=1)
    similarity = unit @ unit.t()
    return float((similarity.sum() - similarity.diagonal().sum()) / (len(rows) * (len(rows) - 1)))


@torch.no_grad()
def layer_outputs(model):
    r"""Layer 0 (the graph layers' input) and each layer's output, as the stack computes them in evaluation."""
    if hasattr(model, "gnn"):  # GraphSAGE, GAT: ID embeddings
        stack, x = model.gnn, torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    else:  # MetaMMF_GCN and the *Fusion_GCN models: one branch
        stack, x = model.gcn, torch.cat([model.user_embedding.weight, model.branch_representations()[0]])
    return stack.layer_outputs(x, model.graph_structure)


def report(name, model):
    model.eval()
    for depth, nodes in enumerate(layer_outputs(model)):
        users, items = nodes[1:model.n_users], nodes[model.n_users + 1:]  # row 0 of each is RecBole's padding
        generator = torch.Generator().manual_seed(0)
        print(
            f"{name}: layer {depth}: users cos {mean_pairwise_cosine(users, generator=generator):.3f}, "
            f"items cos {mean_pairwise_cosine(items, generator=generator):.3f}, "
            f"negative mass {float(nodes.clamp(max=0).pow(2).sum() / nodes.pow(2).sum()):.1%}"
        )


def probed_models(doc, default_model):
    r"""The models a probe script reports on, from its command line: each checkpoint given (trained), or else the
    model built at initialisation with the ``--key=value`` settings given (``--model``, ``--dataset``, any key).
    Yields ``(name, config, model, training dataset)``; ``-h`` prints ``doc`` and yields nothing."""
    arguments = sys.argv[1:]
    if arguments and arguments[0] in ("-h", "--help"):
        print(doc)
        return
    checkpoints = [a for a in arguments if not a.startswith("--")]
    if checkpoints:
        for checkpoint in checkpoints:
            config, model, _, train_data, _, _ = load_data_and_model(checkpoint)
            yield f"{config['model']} ({checkpoint})", config, model, train_data.dataset
        return
    settings = parse_settings([a for a in arguments if a.startswith("--")])
    model_name, dataset = settings.pop("model", default_model), settings.pop("dataset", "tiktok")
    sys.argv = sys.argv[:1]
    config = make_config(model_name, dataset, config_dict=settings, command_line=False)
    data = load_data(config)
    yield f"{model_name} at initialisation {settings}", config, build_model(config, data), data.train.dataset


def main():
    for name, _, model, _ in probed_models(__doc__, "MetaMMF_GCN"):
        report(name, model)


if __name__ == "__main__":
    main()
