r"""Side-by-side benchmarks and the paper's analyses (issue 4), behind ``run_benchmark.py``.

Every model × seed (× preset variant) is one call of :func:`recbole_metammf.quick_start.objective_function`,
so RecBole's built-in models and the plugin's share the data split, negative sampler, trainer, early
stopping and full-ranking evaluator. What the models share on top of ``properties/overall.yaml``, and
the per-model keys that give every model a total embedding size of 64, are in
``properties/benchmark/models.yaml``; presets (``properties/benchmark/<preset>.yaml``) run labelled
variants of a model through the same runner.

Output folder ``DIR``:

* ``runs/<label>__seed<seed>__<hash>.json`` — one finished run: its config, validation curve, test
  metrics, seconds per epoch, epochs to the best validation score, parameter counts. The hash covers
  the model, the dataset and every setting of the run except the seed (in the name) and where its
  checkpoint goes, so a repeated command skips exactly the runs it already finished. Written
  atomically (temporary file, then rename): a killed benchmark leaves only whole files. The hash
  covers what the benchmark passes (models.yaml, config files, preset variant, --key=value), not the
  defaults in ``properties/model`` / ``properties/overall.yaml`` nor the code: after changing those,
  use a new output folder.
* ``checkpoints/<run id>/`` — the best checkpoint of each run (t-SNE rebuilds models from them).
* ``summary.md`` / ``summary.csv`` — the table (without a preset: the paper's Table 2 with one row per
  metric, a column per model, the best MetaMMF model's improvement over the strongest other model
  and the p-value of a paired t-test over seeds; with a preset: one row per variant), ``efficiency.csv``
  (epochs, seconds per epoch, parameters), ``runs.csv`` (one row per run), ``valid_curves.png``
  (Fig. 6), ``<key>.png`` for a preset's ``plot_against`` (Fig. 5), ``tsne.png`` / ``tsne.json`` (Fig. 4).
"""

import contextlib
import csv
import datetime
import hashlib
import io
import json
import logging
import math
import os
import platform
import re
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import yaml
from scipy import stats
from tqdm import tqdm

from recbole_metammf import analysis
from recbole_metammf.config import _SafeLoader
from recbole_metammf.utils import PROPERTIES_DIR, ConfigError, get_model, to_plain

BENCHMARK_DIR = os.path.join(PROPERTIES_DIR, "benchmark")
HARMONISATION_FILE = os.path.join(BENCHMARK_DIR, "models.yaml")
# Table 2: the floor, the ID models, the multimodal baselines, the static-fusion twin and MetaMMF on three backbones
DEFAULT_MODELS = [
    "Pop", "BPR", "NGCF", "LightGCN", "VBPR", "MMGCN", "GRCN", "LATTICE",
    "EarlyFusion_MF", "EarlyFusion_GCN", "EarlyFusion_LightGCN", "MetaMMF_MF", "MetaMMF_GCN", "MetaMMF_LightGCN",
]
FLOOR_MODEL = "Pop"  # every side-by-side table carries Pop (model/general_recommender/pop.py: RecBole's, counting fixed) as the floor
RANKED_METRICS = ["itemcoverage@20", "averagepopularity@20", "giniindex@20"]  # what a model ranks, not how well
MIN_COVERAGE = 0.05  # ItemCoverage@20 under this is flagged: the model recommends a handful of items to everyone
FIRST_SEED = 2020  # RecBole's default seed; --seeds=N runs 2020, 2021, ...
METRICS = [f"{name}@{k}" for k in (10, 20) for name in ("precision", "recall", "hit", "ndcg")]
SHORT_NAMES = {"precision": "P", "recall": "R", "hit": "Hit", "ndcg": "NDCG", "itemcoverage": "ItemCoverage",
               "averagepopularity": "AveragePopularity", "giniindex": "GiniIndex"}
RUNNER_KEYS = ("seed", "checkpoint_dir")  # set per run by the runner; not part of a run's identity
FORMAT_VERSION = 1


def short_metric(metric):
    name, k = metric.split("@")
    return f"{SHORT_NAMES.get(name, name)}@{k}"


def is_metammf(model):
    return model.startswith("MetaMMF")


# ---------------------------------------------------------------------------------------------- files


def read_yaml(path):
    r"""A YAML file with the package's safe loader (``1e-6`` is a float, as in RecBole)."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_SafeLoader) or {}


def _atomic_write(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _finite_or_none(value):
    r"""Plain data whose NaN / infinite floats are None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value


def write_json(path, data):
    _atomic_write(path, json.dumps(_finite_or_none(to_plain(data)), indent=1, sort_keys=False) + "\n")


def _csv_text(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- runs


def parse_seeds(text):
    r"""``"5"`` -> five seeds from 2020; ``"1,7,42"`` -> those seeds (``"7,"`` is the single seed 7)."""
    text = str(text).strip()
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        else:
            seeds = list(range(FIRST_SEED, FIRST_SEED + int(text)))
    except ValueError:
        raise ConfigError(f"seeds: got {text!r}; expected a count (5) or a comma-separated list (2020,2021)") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: got {text!r}; expected at least one seed and no repeats")
    return seeds


def load_preset(name_or_path):
    r"""A preset: ``properties/benchmark/<name>.yaml`` or a YAML file of the same form (``title``,
    ``models``, ``variants``: label -> overrides, optionally ``plot_against`` and ``movielens_meta_parameters``)."""
    path = name_or_path if os.path.isfile(name_or_path) else os.path.join(BENCHMARK_DIR, f"{name_or_path}.yaml")
    available = sorted(
        name[:-5] for name in os.listdir(BENCHMARK_DIR) if name.endswith(".yaml") and name != "models.yaml"
    )
    if not os.path.isfile(path) or os.path.abspath(path) == os.path.abspath(HARMONISATION_FILE):
        raise ConfigError(f"preset: {name_or_path!r} is neither a YAML file nor one of {', '.join(available)}")
    preset = read_yaml(path)
    variants = preset.get("variants")
    if not isinstance(variants, dict) or not variants or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError(f"preset {path}: 'variants' must map each label to a dict of overrides")
    if not isinstance(preset.get("models", []), list):
        raise ConfigError(f"preset {path}: 'models' must be a list of model names")
    preset["name"] = os.path.splitext(os.path.basename(path))[0]
    preset["path"] = path
    return preset


@dataclass
class RunSpec:
    r"""One run of the benchmark: a model (or a preset variant of it) with one seed."""

    label: str
    model: str
    seed: int
    config_dict: dict  # everything the run is given except the runner's keys
    variant: str = None
    overrides: dict = field(default_factory=dict)  # the preset variant's overrides

    @property
    def digest(self):
        identity = json.dumps(to_plain(self.config_dict), sort_keys=True)
        return hashlib.sha1(identity.encode("utf-8")).hexdigest()[:8]

    @property
    def run_id(self):
        safe_label = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", self.label).strip("-")
        return f"{safe_label}__seed{self.seed}__{self.digest}"


def build_runs(dataset, models, seeds, overrides=None, config_files=None, preset=None, harmonisation=HARMONISATION_FILE):
    r"""The runs of a benchmark, seed by seed (all models of the first seed come first, so an
    interrupted benchmark has whole comparisons). A run's settings, later wins: ``common`` and the
    model's entry in ``harmonisation``, the ``config_files`` in order, the preset variant, ``overrides``."""
    overrides = dict(overrides or {})
    for key in RUNNER_KEYS:
        if key in overrides:
            hint = "use --seeds" if key == "seed" else "the benchmark keeps each run's checkpoint under DIR/checkpoints"
            raise ConfigError(f"{key}: set by the benchmark for each run ({hint})")
    harmonised = read_yaml(harmonisation) if harmonisation else {}
    common, per_model = dict(harmonised.get("common") or {}), dict(harmonised.get("models") or {})
    from_files = {}
    for path in config_files or []:
        from_files.update(read_yaml(path))
    for key in ("model", "dataset", *RUNNER_KEYS):
        from_files.pop(key, None)
    variants = preset["variants"] if preset else {None: {}}
    models = list(dict.fromkeys(models))  # once each, in the order given
    for model in models:
        get_model(model)  # an unknown name fails now, with close matches
    runs = []
    for seed in seeds:
        for model in models:
            for variant, variant_overrides in variants.items():
                config_dict = {
                    **common,
                    **dict(per_model.get(model) or {}),
                    **from_files,
                    **variant_overrides,
                    **overrides,
                    "model": model,
                    "dataset": dataset,
                }
                label = model if variant is None else f"{model}[{variant}]"
                runs.append(RunSpec(label, model, seed, config_dict, variant, dict(variant_overrides)))
    return runs


@contextlib.contextmanager
def clean_argv():
    r"""RecBole's Config also reads ``--key=value`` from ``sys.argv``; a run gets only its config dict."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def check_runs(runs):
    r"""Build each label's Config once before anything trains: a bad key or value stops the benchmark
    at once (the models' ``check_config``), not after hours of other runs."""
    from recbole_metammf.config import Config

    seen = set()
    for run in runs:
        if run.label in seen:
            continue
        seen.add(run.label)
        with clean_argv():
            try:
                Config(config_dict={**run.config_dict, "seed": run.seed})
            except ConfigError as error:
                raise ConfigError(f"{run.label}: {error}") from None


def machine():
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)",
    }


def epoch_of_best(curve, valid_metric, bigger=True):
    r"""The first epoch whose validation score is the best one (RecBole updates only on a strict gain)."""
    best_epoch, best = None, None
    for epoch, result in curve:
        value = result.get(valid_metric)
        if value is None:
            continue
        if best is None or (value > best if bigger else value < best):
            best_epoch, best = epoch, value
    return best_epoch


def run_one(run, output_dir):
    r"""Train and test one run through ``objective_function``; returns its record (plain data)."""
    from recbole_metammf.quick_start import objective_function
    from recbole_metammf.trainer import load_checkpoint

    checkpoint_dir = os.path.join(os.path.abspath(output_dir), "checkpoints", run.run_id)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # what an interrupted attempt left
    config_dict = {**run.config_dict, "seed": run.seed, "checkpoint_dir": checkpoint_dir, "show_progress": False}
    start = time.perf_counter()
    with clean_argv():
        result = objective_function(config_dict=config_dict, saved=True)
    wall_seconds = time.perf_counter() - start

    checkpoint = result.get("checkpoint")
    final = load_checkpoint(checkpoint)["config"]["final"] if checkpoint and os.path.isfile(checkpoint) else {}
    last = result.get("last_checkpoint")
    if last and os.path.isfile(last):
        os.remove(last)  # only a killed run resumes from it; this one finished
    valid_metric = str(final.get("valid_metric", "NDCG@20")).lower()
    curve = [[int(epoch), to_plain(dict(values))] for epoch, values in result["valid_history"]]
    best_epoch = epoch_of_best(curve, valid_metric, result.get("valid_score_bigger", True))
    try:
        fusion = analysis.fusion_tower_parameters(final) if final else None
    except (OSError, KeyError, ValueError, IndexError):
        fusion = None
    return {
        "format": FORMAT_VERSION,
        "run_id": run.run_id,
        "label": run.label,
        "model": run.model,
        "variant": run.variant,
        "variant_overrides": run.overrides,
        "seed": run.seed,
        "dataset": run.config_dict["dataset"],
        "config_dict": {**run.config_dict, "seed": run.seed},
        "config": final,
        "valid_metric": valid_metric,
        "best_valid_score": result["best_valid_score"],
        "valid_score_bigger": result.get("valid_score_bigger", True),
        "best_valid_result": dict(result["best_valid_result"] or {}),
        "test_result": dict(result["test_result"]),
        "valid_curve": curve,
        "epochs": result["epochs"],
        "epoch_of_best": best_epoch,
        "epochs_to_best": None if best_epoch is None else best_epoch + 1,
        "train_seconds_per_epoch": result["train_seconds_per_epoch"],
        "n_parameters": result["n_parameters"],
        "fusion_tower_parameters": fusion,
        "checkpoint": os.path.relpath(checkpoint, output_dir) if checkpoint else None,
        "wall_seconds": wall_seconds,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }


def run_all(runs, output_dir, progress=True):
    r"""Run what has no record in ``output_dir/runs`` yet; returns (records by run id, failures).
    A run that raises is logged, noted in ``output_dir/failed/`` and retried by the next invocation;
    the others go on."""
    logger = logging.getLogger()
    runs_dir, failed_dir = os.path.join(output_dir, "runs"), os.path.join(output_dir, "failed")
    os.makedirs(runs_dir, exist_ok=True)
    records, pending, failures = {}, [], []
    for run in runs:
        path = os.path.join(runs_dir, f"{run.run_id}.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                records[run.run_id] = json.load(f)
        else:
            pending.append(run)
    if records:
        logger.info(f"benchmark: {len(records)} of {len(runs)} runs already finished in {runs_dir}, not re-run")
    bar = tqdm(total=len(runs), initial=len(records), unit="run", desc="benchmark", disable=not progress, file=sys.stderr)
    try:
        for run in pending:
            bar.set_postfix_str(f"{run.label} seed {run.seed}")
            failure_path = os.path.join(failed_dir, f"{run.run_id}.json")
            try:
                record = run_one(run, output_dir)
            except Exception as error:  # noqa: BLE001 - one failing run must not lose the others
                logger.error(f"benchmark: {run.label} seed {run.seed} failed: {type(error).__name__}: {error}")
                os.makedirs(failed_dir, exist_ok=True)
                write_json(failure_path, {"run_id": run.run_id, "label": run.label, "seed": run.seed,
                                          "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()})
                failures.append((run, error))
            else:
                write_json(os.path.join(runs_dir, f"{run.run_id}.json"), record)
                records[run.run_id] = record
                if os.path.isfile(failure_path):
                    os.remove(failure_path)
                logger.info(
                    f"benchmark: {run.label} seed {run.seed}: test "
                    + ", ".join(f"{short_metric(m)} {record['test_result'].get(m, float('nan')):.4f}" for m in METRICS[4:])
                    + f"; {record['epochs']} epochs, best at {record['epochs_to_best']}, "
                    f"{record['train_seconds_per_epoch']:.2f} s/epoch"
                )
            bar.update(1)
    finally:
        bar.close()
    return records, failures


# ---------------------------------------------------------------------------------------------- tables


def group_records(runs, records):
    r"""label -> {model, variant, overrides, records (by seed)} in the order of the runs."""
    groups = {}
    for run in runs:
        record = records.get(run.run_id)
        group = groups.setdefault(
            run.label, {"model": run.model, "variant": run.variant, "overrides": run.overrides, "records": []}
        )
        if record is not None:
            group["records"].append(record)
    for group in groups.values():
        group["records"].sort(key=lambda record: record["seed"])
    return groups


def _values(group, metric):
    return {r["seed"]: r["test_result"][metric] for r in group["records"] if r["test_result"].get(metric) is not None}


def mean_std(values):
    r"""Mean and sample standard deviation (ddof 1; NaN for fewer than two values)."""
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def paired_t_test(a, b):
    r"""p-value of ``scipy.stats.ttest_rel`` over the seeds ``a`` and ``b`` (seed -> value) share; NaN
    with fewer than two shared seeds (or no variation in the differences)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return float("nan"), len(seeds)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue
    return float(p), len(seeds)


def _valid_values(group):
    return {r["seed"]: r["best_valid_score"] for r in group["records"] if r.get("best_valid_score") is not None}


def selected_by_validation(groups, labels):
    r"""Of ``labels``, the one with the best mean validation score (``valid_metric`` at the best epoch):
    the comparison's pair is chosen on validation, never on the test metrics it reports."""
    def key(label):
        mean = mean_std(list(_valid_values(groups[label]).values()))[0]
        if not math.isfinite(mean):
            return -math.inf
        bigger = groups[label]["records"][0].get("valid_score_bigger", True)
        return mean if bigger else -mean
    return max(labels, key=key, default=None)


def comparison(groups):
    r"""The Table 2 rows: per metric, every label's mean and std, the best MetaMMF label against the
    strongest other label, the improvement in % and the paired t-test's p-value. The two labels are
    chosen once, by mean validation score (:func:`selected_by_validation`), and compared on every metric."""
    metammf = [label for label, g in groups.items() if is_metammf(g["model"]) and g["records"]]
    others = [label for label, g in groups.items() if not is_metammf(g["model"]) and g["records"]]
    best, rival = selected_by_validation(groups, metammf), selected_by_validation(groups, others)
    rows = []
    for metric in METRICS:
        values = {label: _values(g, metric) for label, g in groups.items()}
        row = {"metric": metric, "cells": {label: mean_std(list(v.values())) for label, v in values.items()}}
        improvement = p_value = float("nan")
        paired = 0
        if best is not None and rival is not None:
            rival_mean = row["cells"][rival][0]
            improvement = (row["cells"][best][0] - rival_mean) / rival_mean * 100 if rival_mean > 0 else float("nan")
            p_value, paired = paired_t_test(values[best], values[rival])
        row.update(best_metammf=best, strongest_other=rival, improvement_pct=improvement, p_value=p_value, paired_seeds=paired)
        rows.append(row)
    return rows


def _fmt(value, digits=4):
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _fmt_cell(mean, std):
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.4f}" if not math.isfinite(std) else f"{mean:.4f} ± {std:.4f}"


def _fmt_epochs(mean, std):
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.1f}" if not math.isfinite(std) else f"{mean:.1f} ± {std:.1f}"


def _fmt_p(p):
    if p is None or not math.isfinite(p):
        return "—"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_tables(groups):
    r"""Markdown and CSV of :func:`comparison`: one row per metric."""
    rows = comparison(groups)
    labels = list(groups)
    header = ["metric", *labels, "best MetaMMF", "strongest other", "improv. (%)", "p-value"]
    md_rows, csv_rows = [], []
    for row in rows:
        best_mean = max((row["cells"][label][0] for label in labels if math.isfinite(row["cells"][label][0])), default=None)
        cells = []
        for label in labels:
            text = _fmt_cell(*row["cells"][label])
            cells.append(f"**{text}**" if best_mean is not None and row["cells"][label][0] == best_mean else text)
        md_rows.append([short_metric(row["metric"]), *cells, row["best_metammf"] or "—", row["strongest_other"] or "—",
                        _fmt(row["improvement_pct"], 2), _fmt_p(row["p_value"])])
        csv_rows.append([row["metric"], *[v for label in labels for v in row["cells"][label]],
                         row["best_metammf"] or "", row["strongest_other"] or "", row["improvement_pct"],
                         row["p_value"], row["paired_seeds"]])
    csv_header = ["metric", *[f"{label} {stat}" for label in labels for stat in ("mean", "std")],
                  "best_metammf", "strongest_other", "improvement_pct", "p_value", "paired_seeds"]
    return _md_table(header, md_rows), _csv_text(csv_header, csv_rows), rows


def ranking_diagnosis(groups, floor=FLOOR_MODEL):
    r"""Per label: the means of :data:`RANKED_METRICS` and the flags of a result that is no result —
    ``at or below Pop`` (test recall@20 or NDCG@20 mean not above the floor model's, when it ran) and
    ``coverage < 5%`` (ItemCoverage@20 under :data:`MIN_COVERAGE`)."""
    floor_group = next((g for g in groups.values() if g["model"] == floor and g["records"]), None)
    floor_means = {m: mean_std(list(_values(floor_group, m).values()))[0] for m in ("recall@20", "ndcg@20")} if floor_group else {}
    rows = []
    for label, group in groups.items():
        if not group["records"]:
            continue
        means = {m: mean_std(list(_values(group, m).values()))[0] for m in RANKED_METRICS + ["recall@20", "ndcg@20"]}
        flags = []
        if floor_group is not None and group is not floor_group and any(
            math.isfinite(means[m]) and means[m] <= floor_means[m] for m in floor_means
        ):
            flags.append(f"at or below {floor}")
        coverage = means["itemcoverage@20"]
        if math.isfinite(coverage) and coverage < MIN_COVERAGE:
            flags.append(f"coverage < {MIN_COVERAGE:.0%}")
        rows.append({"label": label, "means": means, "flags": flags})
    return rows


def diagnosis_tables(groups):
    r"""Markdown and CSV of :func:`ranking_diagnosis`."""
    rows = ranking_diagnosis(groups)
    header = ["model", *[short_metric(m) for m in RANKED_METRICS], "flag"]
    md_rows = [[r["label"], *[_fmt(r["means"][m], 4 if "popularity" not in m else 1) for m in RANKED_METRICS],
                "; ".join(f"**{flag}**" for flag in r["flags"]) or "—"] for r in rows]
    csv_rows = [[r["label"], *[r["means"][m] for m in RANKED_METRICS], ";".join(r["flags"])] for r in rows]
    return _md_table(header, md_rows), _csv_text(["label", *RANKED_METRICS, "flags"], csv_rows), rows


def variant_tables(groups):
    r"""Markdown and CSV for a preset: one row per label (model[variant]), a column per metric."""
    header = ["model", "variant", "seeds", "valid (selection)", *[short_metric(m) for m in METRICS]]
    md_rows, csv_rows = [], []
    for label, group in groups.items():
        valid = mean_std(list(_valid_values(group).values()))
        cells = [mean_std(list(_values(group, metric).values())) for metric in METRICS]
        md_rows.append([group["model"], group["variant"] or "—", len(group["records"]), _fmt_cell(*valid),
                        *[_fmt_cell(*c) for c in cells]])
        csv_rows.append([label, group["model"], group["variant"] or "", len(group["records"]), *valid,
                         *[v for c in cells for v in c]])
    csv_header = ["label", "model", "variant", "seeds", "valid mean", "valid std",
                  *[f"{m} {stat}" for m in METRICS for stat in ("mean", "std")]]
    return _md_table(header, md_rows), _csv_text(csv_header, csv_rows)


def efficiency_tables(groups):
    r"""Training cost per label: epochs trained, epochs to the best validation score, seconds per
    training epoch (means over seeds), the model's parameters and its fusion tower's (MetaMMF)."""
    header = ["model", "seeds", "epochs trained", "epochs to best", "s / epoch", "parameters",
              "fusion tower (meta-learner + static W)"]
    md_rows, csv_rows = [], []
    for label, group in groups.items():
        records = group["records"]
        epochs = mean_std([r["epochs"] for r in records])
        to_best = mean_std([r["epochs_to_best"] for r in records])
        seconds = mean_std([r["train_seconds_per_epoch"] for r in records])
        n_parameters = sorted({r["n_parameters"] for r in records})
        fusion = next((r["fusion_tower_parameters"] for r in records if r.get("fusion_tower_parameters")), None)
        fusion_text = "—" if not fusion else f"{fusion['tower']:,} ({fusion['meta_learner']:,} + {fusion['static']:,})"
        md_rows.append([label, len(records), _fmt(epochs[0], 1), _fmt_epochs(*to_best),
                        _fmt(seconds[0], 2), " / ".join(f"{n:,}" for n in n_parameters) or "—", fusion_text])
        csv_rows.append([label, len(records), epochs[0], to_best[0], to_best[1], seconds[0], seconds[1],
                         n_parameters[0] if len(n_parameters) == 1 else ";".join(map(str, n_parameters)),
                         fusion["tower"] if fusion else "", fusion["meta_learner"] if fusion else "",
                         fusion["static"] if fusion else ""])
    csv_header = ["label", "seeds", "epochs_mean", "epochs_to_best_mean", "epochs_to_best_std", "seconds_per_epoch_mean",
                  "seconds_per_epoch_std", "n_parameters", "fusion_tower", "fusion_meta_learner", "fusion_static"]
    return _md_table(header, md_rows), _csv_text(csv_header, csv_rows)


def runs_csv(groups):
    header = ["run_id", "label", "model", "variant", "seed", *METRICS, "best_valid_score", "epochs", "epochs_to_best",
              "train_seconds_per_epoch", "n_parameters", "wall_seconds", "finished_at"]
    rows = []
    for label, group in groups.items():
        for r in group["records"]:
            rows.append([r["run_id"], label, r["model"], r["variant"] or "", r["seed"],
                         *[r["test_result"].get(m) for m in METRICS], r["best_valid_score"], r["epochs"],
                         r["epochs_to_best"], r["train_seconds_per_epoch"], r["n_parameters"], r["wall_seconds"],
                         r["finished_at"]])
    return _csv_text(header, rows)


def movielens_table(spec):
    rows = analysis.movielens_meta_parameters(
        spec.get("ranks", [0, 4, 8, 16, 32]), spec.get("in_dim", 2276), spec.get("fusion_layers", [1024, 512, 256, 32]),
        spec.get("d_s", 5),
    )
    md_rows = [["full tensor" if r["cp_rank"] == 0 else f"CP, R = {r['cp_rank']}", f"{r['meta_learner']:,}",
                f"{100 * r['meta_learner_vs_full']:.2f}%", f"{r['static']:,}", f"{r['tower']:,}"] for r in rows]
    header = ["T", "meta-learner parameters", "of the full tensor's", "static W", "tower in total"]
    return _md_table(header, md_rows), rows


# ---------------------------------------------------------------------------------------------- plots


def plot_curves(groups, output_dir):
    valid_metric = next((r["valid_metric"] for g in groups.values() for r in g["records"]), "ndcg@20")
    curves = {
        label: [[(epoch, values.get(valid_metric)) for epoch, values in r["valid_curve"] if values.get(valid_metric) is not None]
                for r in g["records"]]
        for label, g in groups.items() if g["records"] and g["model"] != FLOOR_MODEL
    }
    floors = {
        label: mean_std(list(_valid_values(g).values()))[0]
        for label, g in groups.items() if g["records"] and g["model"] == FLOOR_MODEL
    }
    path = os.path.join(output_dir, "valid_curves.png")
    analysis.plot_valid_curves(curves, short_metric(valid_metric), path, floors=floors)
    return path


def plot_preset_axis(groups, key, output_dir, metrics=("recall@20", "ndcg@20")):
    points = {}
    for group in groups.values():
        if key not in group["overrides"] or not group["records"]:
            continue
        cells = {m: mean_std(list(_values(group, m).values())) for m in metrics}
        points.setdefault(group["model"], []).append((group["overrides"][key], cells))
    if not points:
        return None
    path = os.path.join(output_dir, f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', key)}.png")
    analysis.plot_against(points, key, [m for m in metrics], path)
    return path


def run_tsne(groups, output_dir, n_users=10, seed=2020):
    r"""Fig. 4 for the first seed's run of every label (models without readable representations are
    skipped with a warning); writes ``tsne.png`` and ``tsne.json`` (silhouette per label)."""
    logger = logging.getLogger()
    results = {}
    for label, group in groups.items():
        if not group["records"] or not group["records"][0].get("checkpoint"):
            continue
        record = group["records"][0]
        with clean_argv():
            try:
                result = analysis.tsne_of_checkpoint(os.path.join(output_dir, record["checkpoint"]), n_users, seed)
            except analysis.RepresentationsUnavailable as error:
                logger.warning(f"t-SNE: {label} skipped: {error}")
                continue
        results[label] = {"run_id": record["run_id"], "seed": record["seed"], **result}
    if results:
        analysis.plot_tsne(results, os.path.join(output_dir, "tsne.png"))
    write_json(os.path.join(output_dir, "tsne.json"), results)
    return results


# ---------------------------------------------------------------------------------------------- the command


def benchmark(dataset, models=None, seeds=(FIRST_SEED,), output_dir="benchmark", overrides=None, config_files=None,
              preset=None, plot_tsne=False, tsne_users=10, command=None, progress=True):
    r"""Run (or resume) a benchmark and write its tables and plots to ``output_dir``.

    Returns a dict with ``runs`` (the :class:`RunSpec` list), ``records`` (by run id), ``failures``,
    ``comparison`` (Table 2 rows; None with a preset) and the written ``files``."""
    logger = logging.getLogger()
    preset = load_preset(preset) if isinstance(preset, str) else preset
    models = list(models or (preset or {}).get("models") or DEFAULT_MODELS)
    runs = build_runs(dataset, models, list(seeds), overrides, config_files, preset)
    check_runs(runs)
    os.makedirs(output_dir, exist_ok=True)
    records, failures = run_all(runs, output_dir, progress=progress)

    groups = group_records(runs, records)
    files = {}
    sections = []
    title = preset["title"] if preset else f"Benchmark on {dataset}"
    n_finished = sum(len(g["records"]) for g in groups.values())
    machines = sorted({json.dumps(r["machine"], sort_keys=True) for g in groups.values() for r in g["records"]})
    header = [
        f"# {title}",
        "",
        f"- command: `{command}`" if command else None,
        f"- dataset: `{dataset}`; seeds: {', '.join(map(str, seeds))}; runs finished: {n_finished} of {len(runs)}",
        f"- written: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        *[f"- machine: {', '.join(f'{k} {v}' for k, v in json.loads(m).items())}" for m in machines],
        "- settings shared by every model: `properties/overall.yaml` and `properties/benchmark/models.yaml`"
        + (f"; variants from `{os.path.relpath(preset['path'], os.path.dirname(PROPERTIES_DIR))}`" if preset else ""),
    ]
    sections.append("\n".join(line for line in header if line is not None))

    table_rows = None
    if preset:
        md, csv_text = variant_tables(groups)
        sections.append(f"## Test results (mean ± std over seeds)\n\n{md}")
    else:
        md, csv_text, table_rows = comparison_tables(groups)
        sections.append(
            "## Test results (mean ± std over seeds; Table 2, one row per metric)\n\n" + md + "\n\n"
            "Best of each row in bold. *best MetaMMF* / *strongest other*: the MetaMMF model and the other model "
            "with the best mean validation score (the runs' `valid_metric` at their best epoch; chosen on validation, "
            "the same pair in every row); *improv.*: (best MetaMMF − strongest other) / strongest other; "
            "*p-value*: paired t-test (`scipy.stats.ttest_rel`) between the two over the seeds both ran "
            "(— with fewer than 2 seeds). Std is the sample standard deviation."
        )
    _atomic_write(os.path.join(output_dir, "summary.csv"), csv_text)
    files["summary.csv"] = os.path.join(output_dir, "summary.csv")

    md, csv_text, diagnosis = diagnosis_tables(groups)
    sections.append(
        "## What each model ranks (test split, mean over seeds)\n\n" + md + "\n\n"
        "RecBole's ItemCoverage@20 (share of the items in at least one top-20 list), AveragePopularity@20 (mean "
        "number of training interactions of the recommended items) and GiniIndex@20 (1 = every list the same "
        f"items). *flag*: test recall@20 or NDCG@20 at or below {FLOOR_MODEL}'s (the floor; shown when {FLOOR_MODEL} "
        f"ran), or ItemCoverage@20 under {MIN_COVERAGE:.0%}: such a result is a defect to find, not a finding."
    )
    _atomic_write(os.path.join(output_dir, "ranked.csv"), csv_text)
    files["ranked.csv"] = os.path.join(output_dir, "ranked.csv")

    md, csv_text = efficiency_tables(groups)
    sections.append(
        "## Training cost\n\n" + md + "\n\n*epochs trained* includes the `stopping_step` epochs after the best one; "
        "*s / epoch*: wall time of a training epoch (evaluation excluded); *parameters*: all trainable parameters "
        "of the model; *fusion tower*: the meta fusion tower alone (Eq. 12), the meta-learner part (T or its CP "
        "factors) plus the static W."
    )
    _atomic_write(os.path.join(output_dir, "efficiency.csv"), csv_text)
    _atomic_write(os.path.join(output_dir, "runs.csv"), runs_csv(groups))
    files["efficiency.csv"] = os.path.join(output_dir, "efficiency.csv")
    files["runs.csv"] = os.path.join(output_dir, "runs.csv")

    if preset and preset.get("movielens_meta_parameters"):
        spec = preset["movielens_meta_parameters"]
        md, rows = movielens_table(spec)
        write_json(os.path.join(output_dir, "movielens_meta_parameters.json"), rows)
        sections.append(
            f"## Meta-learner parameters at the paper's MovieLens tower (no data needed)\n\n"
            f"Tower {spec.get('in_dim', 2276)} → {' → '.join(map(str, spec.get('fusion_layers', [1024, 512, 256, 32])))}, "
            f"d_s = {spec.get('d_s', 5)}, counted from `MetaFusionTower`:\n\n{md}"
        )

    plots = []
    if n_finished:
        plots.append(("Validation metric per epoch (Fig. 6)", plot_curves(groups, output_dir)))
        if preset and preset.get("plot_against"):
            path = plot_preset_axis(groups, preset["plot_against"], output_dir)
            if path:
                plots.append((f"Test metrics against {preset['plot_against']} (Fig. 5)", path))
    if plot_tsne and n_finished:
        run_tsne(groups, output_dir, tsne_users, seeds[0])
    for caption, path in plots:
        sections.append(f"## {caption}\n\n![{caption}]({os.path.basename(path)})")
        files[os.path.basename(path)] = path
    tsne_path = os.path.join(output_dir, "tsne.json")
    if os.path.isfile(tsne_path):
        with open(tsne_path, encoding="utf-8") as f:
            tsne = {label: r for label, r in json.load(f).items() if r.get("run_id") in records}
        if tsne:
            md = _md_table(
                ["model", "run", "users", "points", "silhouette, t-SNE 2-D", "silhouette, items only (t-SNE 2-D)",
                 "silhouette, representations (cosine)"],
                [[label, r["run_id"], len(r["users"]), r["n_points"], _fmt(r.get("silhouette_tsne"), 3),
                  _fmt(r.get("silhouette_items_tsne"), 3), _fmt(r.get("silhouette_cosine"), 3)]
                 for label, r in tsne.items()],
            )
            sections.append(
                "## t-SNE of sampled users and their test items (Fig. 4)\n\n" + md + "\n\nMean silhouette "
                "coefficient (from -1 to 1, higher = tighter, better separated groups) with the sampled users as "
                "clusters: each user with its test items (first column, what the figure shows), the test items "
                "alone (second; inner-product models often place users and items in separate regions, which "
                "pulls the first column down), and all points in the representation space (third).\n\n"
                "![t-SNE](tsne.png)"
            )
            files["tsne.png"] = os.path.join(output_dir, "tsne.png")
    if failures:
        sections.append("## Failed runs (retried by the next invocation)\n\n" + "\n".join(
            f"- {run.label} seed {run.seed}: {type(error).__name__}: {error}" for run, error in failures))
    _atomic_write(os.path.join(output_dir, "summary.md"), "\n\n".join(sections) + "\n")
    files["summary.md"] = os.path.join(output_dir, "summary.md")
    logger.info(f"benchmark: tables and plots in {output_dir} (summary.md)")
    return {"runs": runs, "records": records, "failures": failures, "comparison": table_rows, "diagnosis": diagnosis,
            "files": files}
