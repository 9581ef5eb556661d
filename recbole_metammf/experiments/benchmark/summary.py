r"""The summary of a benchmark: runs grouped by label, means and sample standard deviations over seeds,
the paired t-test, the compared pair chosen on validation, the flags of a result that is no result
(at or below Pop, low item coverage) or that the epoch bound cut short, and the tables (markdown and CSV)
of ``summary.md``."""

import math
import warnings

import numpy as np
from scipy import stats

from recbole_metammf import analysis
from recbole_metammf.cold_start import ALL_ITEMS_PREFIX
from recbole_metammf.experiments.benchmark import FLOOR_MODEL
from recbole_metammf.experiments.benchmark.plan import METRICS, is_metammf, short_metric
from recbole_metammf.files import csv_text, md_table

RANKED_METRICS = ["itemcoverage@20", "averagepopularity@20", "giniindex@20"]  # what a model ranks, not how well
MIN_COVERAGE = 0.05  # ItemCoverage@20 under this is flagged: the model recommends a handful of items to everyone


def cut_by_epoch_bound(record):
    r"""Whether the run ended at its ``epochs`` bound with its best validation within the last
    ``stopping_step`` evaluations: early stopping did not end it, and its validation may still have been
    rising. (A record without its final config is not judged.)"""
    config = record.get("config") or {}
    if not all(key in config for key in ("epochs", "stopping_step")):
        return False
    since_best = record["epochs"] - record["epochs_to_best"]
    return record["epochs"] >= config["epochs"] and since_best <= config["stopping_step"] * max(1, config.get("eval_step") or 1)


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


def test_values(group, metric):
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


def paired_difference(ours, theirs):
    r"""Two runs' values (seed -> value) compared: both means, the change of ``ours`` in % of ``theirs``
    and the paired t-test's p-value with the number of seeds it paired."""
    mean, other = mean_std(list(ours.values()))[0], mean_std(list(theirs.values()))[0]
    p_value, paired = paired_t_test(ours, theirs)
    change = (mean - other) / other * 100 if other > 0 else float("nan")
    return mean, other, change, p_value, paired


def valid_values(group):
    return {r["seed"]: r["best_valid_score"] for r in group["records"] if r.get("best_valid_score") is not None}


def selected_by_validation(groups, labels):
    r"""Of ``labels``, the one with the best mean validation score (``valid_metric`` at the best epoch):
    the comparison's pair is chosen on validation, never on the test metrics it reports."""
    def key(label):
        mean = mean_std(list(valid_values(groups[label]).values()))[0]
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
    # cold start: also the ranking of the same users among all items, where the runs have it
    reported = {m for g in groups.values() for r in g["records"] for m in r["test_result"]}
    for metric in METRICS + [ALL_ITEMS_PREFIX + m for m in TWIN_METRICS if ALL_ITEMS_PREFIX + m in reported]:
        values = {label: test_values(g, metric) for label, g in groups.items()}
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


STATIC_TWIN_PREFIX = "EarlyFusion_"  # MetaMMF_<backbone> with the meta fusion replaced by one static tower (T = 0)
TWIN_METRICS = ["recall@20", "ndcg@20"]


def twin_comparison(groups):
    r"""Each MetaMMF model against its static-fusion twin on the same backbone (``MetaMMF_X`` and
    ``EarlyFusion_X``, same widths and settings): the fusion alone. One row per pair and metric, with
    the improvement in % and the paired t-test over the seeds both ran."""
    by_model = {g["model"]: label for label, g in groups.items() if g["records"] and not g["variant"]}
    rows = []
    for model, label in by_model.items():
        twin = by_model.get(STATIC_TWIN_PREFIX + model[len("MetaMMF_"):]) if model.startswith("MetaMMF_") else None
        if twin is None:
            continue
        for metric in TWIN_METRICS:
            mean, twin_mean, improvement, p_value, paired = paired_difference(
                test_values(groups[label], metric), test_values(groups[twin], metric))
            rows.append(dict(metammf=label, twin=twin, metric=metric, mean=mean, twin_mean=twin_mean,
                             improvement_pct=improvement, p_value=p_value, paired_seeds=paired))
    return rows


def twin_tables(groups):
    r"""Markdown and CSV of :func:`twin_comparison` (empty strings when no pair ran)."""
    return paired_tables(
        twin_comparison(groups), ["metammf", "twin", "metric", "mean", "twin_mean", "improvement_pct", "p_value", "paired_seeds"],
        ["MetaMMF", "static twin", "metric", "MetaMMF", "twin", "improv. (%)", "p-value", "seeds"], short_metric,
    )


def paired_tables(rows, keys, header, metric_cell):
    r"""Markdown and CSV of paired-comparison rows (:func:`paired_difference`'s figures under the names ``keys``:
    the two labels, the metric, both means, the change in %, the p-value, the seeds paired); ``metric_cell``
    writes the metric's markdown cell. Empty strings when there is no row."""
    if not rows:
        return "", ""
    first, second, metric, mean, other, change, p_value, seeds = keys
    md_rows = [[r[first], r[second], metric_cell(r[metric]), fmt_number(r[mean]), fmt_number(r[other]),
                fmt_number(r[change], 2), _fmt_p(r[p_value]), r[seeds]] for r in rows]
    return md_table(header, md_rows), csv_text(keys, [[r[k] for k in keys] for r in rows])


def fmt_number(value, digits=4):
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
                        fmt_number(row["improvement_pct"], 2), _fmt_p(row["p_value"])])
        csv_rows.append([row["metric"], *[v for label in labels for v in row["cells"][label]],
                         row["best_metammf"] or "", row["strongest_other"] or "", row["improvement_pct"],
                         row["p_value"], row["paired_seeds"]])
    csv_header = ["metric", *[f"{label} {stat}" for label in labels for stat in ("mean", "std")],
                  "best_metammf", "strongest_other", "improvement_pct", "p_value", "paired_seeds"]
    return md_table(header, md_rows), csv_text(csv_header, csv_rows), rows


def ranking_diagnosis(groups, floor=FLOOR_MODEL):
    r"""Per label: the means of :data:`RANKED_METRICS` and the flags of a result that is no result —
    ``at or below Pop`` (test recall@20 or NDCG@20 mean not above the floor model's, when it ran),
    ``coverage < 5%`` (ItemCoverage@20 under :data:`MIN_COVERAGE`) and ``epoch bound (k of n seeds)``
    (:func:`cut_by_epoch_bound`: the result is that of a shorter run than early stopping would make)."""
    floor_group = next((g for g in groups.values() if g["model"] == floor and g["records"]), None)
    floor_means = {m: mean_std(list(test_values(floor_group, m).values()))[0] for m in ("recall@20", "ndcg@20")} if floor_group else {}
    rows = []
    for label, group in groups.items():
        if not group["records"]:
            continue
        means = {m: mean_std(list(test_values(group, m).values()))[0] for m in RANKED_METRICS + ["recall@20", "ndcg@20"]}
        flags = []
        if floor_group is not None and group is not floor_group and any(
            math.isfinite(means[m]) and means[m] <= floor_means[m] for m in floor_means
        ):
            flags.append(f"at or below {floor}")
        coverage = means["itemcoverage@20"]
        if math.isfinite(coverage) and coverage < MIN_COVERAGE:
            flags.append(f"coverage < {MIN_COVERAGE:.0%}")
        cut = sum(cut_by_epoch_bound(record) for record in group["records"])
        if cut:
            flags.append(f"epoch bound ({cut} of {len(group['records'])} seeds)")
        rows.append({"label": label, "means": means, "flags": flags})
    return rows


def diagnosis_tables(groups):
    r"""Markdown and CSV of :func:`ranking_diagnosis`."""
    rows = ranking_diagnosis(groups)
    header = ["model", *[short_metric(m) for m in RANKED_METRICS], "flag"]
    md_rows = [[r["label"], *[fmt_number(r["means"][m], 4 if "popularity" not in m else 1) for m in RANKED_METRICS],
                "; ".join(f"**{flag}**" for flag in r["flags"]) or "—"] for r in rows]
    csv_rows = [[r["label"], *[r["means"][m] for m in RANKED_METRICS], ";".join(r["flags"])] for r in rows]
    return md_table(header, md_rows), csv_text(["label", *RANKED_METRICS, "flags"], csv_rows), rows


def variant_tables(groups):
    r"""Markdown and CSV for a preset: one row per label (model[variant]), a column per metric."""
    header = ["model", "variant", "seeds", "valid (selection)", *[short_metric(m) for m in METRICS]]
    md_rows, csv_rows = [], []
    for label, group in groups.items():
        valid = mean_std(list(valid_values(group).values()))
        cells = [mean_std(list(test_values(group, metric).values())) for metric in METRICS]
        md_rows.append([group["model"], group["variant"] or "—", len(group["records"]), _fmt_cell(*valid),
                        *[_fmt_cell(*c) for c in cells]])
        csv_rows.append([label, group["model"], group["variant"] or "", len(group["records"]), *valid,
                         *[v for c in cells for v in c]])
    csv_header = ["label", "model", "variant", "seeds", "valid mean", "valid std",
                  *[f"{m} {stat}" for m in METRICS for stat in ("mean", "std")]]
    return md_table(header, md_rows), csv_text(csv_header, csv_rows)


def variant_comparison(groups):
    r"""Each preset variant against its model's first variant (the preset's reference, e.g. ``defaults``),
    paired over the seeds both ran: the selection score (``valid``) and test recall@20 / NDCG@20, each
    as the two means, the difference in % and ``scipy.stats.ttest_rel``'s p-value. A variant is read from
    its validation row; the test rows are there for the record."""
    reference = {}
    for label, group in groups.items():
        if group["variant"] is not None and group["records"]:
            reference.setdefault(group["model"], label)
    rows = []
    for label, group in groups.items():
        base = reference.get(group["model"])
        if base is None or base == label or not group["records"]:
            continue
        pairs = [("valid", valid_values(group), valid_values(groups[base]))]
        pairs += [(metric, test_values(group, metric), test_values(groups[base], metric)) for metric in TWIN_METRICS]
        for metric, ours, theirs in pairs:
            mean, base_mean, change, p_value, paired = paired_difference(ours, theirs)
            rows.append(dict(label=label, reference=base, metric=metric, mean=mean, reference_mean=base_mean,
                             change_pct=change, p_value=p_value, paired_seeds=paired))
    return rows


def variant_comparison_tables(groups):
    r"""Markdown and CSV of :func:`variant_comparison` (empty strings when no variant has a reference)."""
    return paired_tables(
        variant_comparison(groups), ["label", "reference", "metric", "mean", "reference_mean", "change_pct", "p_value", "paired_seeds"],
        ["variant", "against", "metric", "variant's mean", "reference's mean", "change (%)", "p-value", "seeds"],
        lambda metric: "valid (selection)" if metric == "valid" else f"test {short_metric(metric)}",
    )


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
        md_rows.append([label, len(records), fmt_number(epochs[0], 1), _fmt_epochs(*to_best),
                        fmt_number(seconds[0], 2), " / ".join(f"{n:,}" for n in n_parameters) or "—", fusion_text])
        csv_rows.append([label, len(records), epochs[0], to_best[0], to_best[1], seconds[0], seconds[1],
                         n_parameters[0] if len(n_parameters) == 1 else ";".join(map(str, n_parameters)),
                         fusion["tower"] if fusion else "", fusion["meta_learner"] if fusion else "",
                         fusion["static"] if fusion else ""])
    csv_header = ["label", "seeds", "epochs_mean", "epochs_to_best_mean", "epochs_to_best_std", "seconds_per_epoch_mean",
                  "seconds_per_epoch_std", "n_parameters", "fusion_tower", "fusion_meta_learner", "fusion_static"]
    return md_table(header, md_rows), csv_text(csv_header, csv_rows)


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
    return csv_text(header, rows)


def movielens_table(spec):
    rows = analysis.movielens_meta_parameters(
        spec.get("ranks", [0, 4, 8, 16, 32]), spec.get("in_dim", 2276), spec.get("fusion_layers", [1024, 512, 256, 32]),
        spec.get("d_s", 5),
    )
    md_rows = [["full tensor" if r["cp_rank"] == 0 else f"CP, R = {r['cp_rank']}", f"{r['meta_learner']:,}",
                f"{100 * r['meta_learner_vs_full']:.2f}%", f"{r['static']:,}", f"{r['tower']:,}"] for r in rows]
    header = ["T", "meta-learner parameters", "of the full tensor's", "static W", "tower in total"]
    return md_table(header, md_rows), rows

