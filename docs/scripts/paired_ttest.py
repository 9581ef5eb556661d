r"""Paired t-test of two models of one benchmark folder, on the seeds both ran (the summary compares the
best MetaMMF model with the strongest other one only; this compares any two).

    python docs/scripts/paired_ttest.py results/table2_mf/runs.csv MetaMMF_MF BPR [--metrics recall@20,ndcg@20]
    python docs/scripts/paired_ttest.py results/table2_gcn MetaMMF_GCN "MetaMMF_GCN[paper settings]"

A folder reads every run JSON of its ``runs/`` (runs.csv holds only the runs of the last summary written
there, so a preset's variants and the plain runs of one folder meet only this way).
"""

import argparse
import csv
import glob
import json
import os

from scipy import stats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_csv", help="runs.csv of a run_benchmark.py output folder, or the folder itself")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--metrics", default="recall@20,ndcg@20")
    args = parser.parse_args()
    if os.path.isdir(args.runs_csv):
        rows = []
        for path in sorted(glob.glob(os.path.join(args.runs_csv, "runs", "*.json"))):
            run = json.load(open(path))
            rows.append({"label": run["label"], "seed": run["seed"], "best_valid_score": run["best_valid_score"],
                         **run["test_result"]})
    else:
        with open(args.runs_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    labels = {r["label"] for r in rows}
    for label in (args.a, args.b):
        if label not in labels:
            raise SystemExit(f"error: no runs of {label!r} in {args.runs_csv} (it has {sorted(labels)})")
    for metric in ["best_valid_score"] + args.metrics.split(","):
        a = {r["seed"]: float(r[metric]) for r in rows if r["label"] == args.a}
        b = {r["seed"]: float(r[metric]) for r in rows if r["label"] == args.b}
        seeds = sorted(set(a) & set(b))
        x, y = [a[s] for s in seeds], [b[s] for s in seeds]
        p = stats.ttest_rel(x, y).pvalue if len(seeds) > 1 else float("nan")
        mean_a, mean_b = sum(x) / len(x), sum(y) / len(y)
        print(f"{metric}: {args.a} {mean_a:.4f}, {args.b} {mean_b:.4f}, {(mean_a - mean_b) / mean_b * 100:+.1f} %, "
              f"paired p = {p:.3g} over {len(seeds)} seeds")


if __name__ == "__main__":
    main()
