r"""Paired t-test of two models of one benchmark folder, on the seeds both ran (the summary compares the
best MetaMMF model with the strongest other one only; this compares any two).

    python docs/scripts/paired_ttest.py results/table2_mf/runs.csv MetaMMF_MF BPR [--metrics recall@20,ndcg@20]
    python docs/scripts/paired_ttest.py results/table2_gcn MetaMMF_GCN "MetaMMF_GCN[paper settings]"
    python docs/scripts/paired_ttest.py results/tiktok_shuffled MetaMMF_LightGCN MetaMMF_LightGCN --b-from results/table2_gcn

``--b-from``: read ``b``'s runs from another folder (the same model on another dataset, e.g. a control copy).

A folder reads every run JSON of its ``runs/`` (runs.csv holds only the runs of the last summary written
there, so a preset's variants and the plain runs of one folder meet only this way).
"""

import argparse
import csv
import glob
import json
import os

from scipy import stats


def read_runs(source, label):
    r"""The runs of ``label`` in a benchmark folder (every run JSON of its ``runs/``) or a runs.csv."""
    if not os.path.exists(source):
        raise SystemExit(f"error: {source}: no such benchmark folder or runs.csv (run_benchmark.py --output writes them)")
    if os.path.isdir(source):
        rows = []
        for path in sorted(glob.glob(os.path.join(source, "runs", "*.json"))):
            run = json.load(open(path))
            rows.append({"label": run["label"], "seed": run["seed"], "best_valid_score": run["best_valid_score"],
                         **run["test_result"]})
    else:
        with open(source, newline="") as f:
            rows = list(csv.DictReader(f))
    labels = {r["label"] for r in rows}
    if label not in labels:
        raise SystemExit(f"error: no runs of {label!r} in {source} (it has {sorted(labels)})")
    return [r for r in rows if r["label"] == label]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_csv", help="runs.csv of a run_benchmark.py output folder, or the folder itself")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--metrics", default="recall@20,ndcg@20")
    parser.add_argument("--b-from", default=None, help="runs.csv or folder to read b's runs from (default: the same)")
    args = parser.parse_args()
    rows_a = read_runs(args.runs_csv, args.a)
    rows_b = read_runs(args.b_from or args.runs_csv, args.b)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    known = set(rows_a[0]) & set(rows_b[0]) - {"label", "seed"}
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise SystemExit(f"error: --metrics: {unknown} not in the runs (they have {sorted(known)}; the validation "
                         "score, best_valid_score, is always compared)")
    for metric in ["best_valid_score"] + [m for m in metrics if m != "best_valid_score"]:
        a = {str(r["seed"]): float(r[metric]) for r in rows_a}
        b = {str(r["seed"]): float(r[metric]) for r in rows_b}
        seeds = sorted(set(a) & set(b))
        x, y = [a[s] for s in seeds], [b[s] for s in seeds]
        p = stats.ttest_rel(x, y).pvalue if len(seeds) > 1 else float("nan")
        mean_a, mean_b = sum(x) / len(x), sum(y) / len(y)
        print(f"{metric}: {args.a} {mean_a:.4f}, {args.b} {mean_b:.4f}, {(mean_a - mean_b) / mean_b * 100:+.1f} %, "
              f"paired p = {p:.3g} over {len(seeds)} seeds")


if __name__ == "__main__":
    main()
