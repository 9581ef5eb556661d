r"""Replays early stopping on the validation curves a benchmark saved: for each run and each patience P,
the epoch RecBole's own rule (``recbole.utils.early_stopping``: a tie counts as a gain, the run ends
after the (P + 1)-th evaluation without one) would have selected, its validation score, and the epoch
the run would have ended after. Nothing is trained and the test split is not read.

    python docs/scripts/patience_replay.py results/patience50 --patience 10,20,30,50
    python docs/scripts/patience_replay.py results/patience50 --models MICRO,LGMRec

A curve only reaches as far as its run trained. A patience longer than the run's own cannot be replayed
past the curve's end unless the run ran all its ``epochs``; such a cell ends in ``+`` (the selection
up to the end of the curve; a longer run might have found a better epoch).
"""

import argparse
import glob
import json
import os

from recbole.utils import early_stopping


def read_runs(folder, models):
    r"""The run JSONs of a run_benchmark.py output folder, optionally only those of ``models`` (labels)."""
    if not os.path.isdir(os.path.join(folder, "runs")):
        raise SystemExit(f"error: {folder}: no runs/ folder (run_benchmark.py --output writes one)")
    runs = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(folder, "runs", "*.json")))]
    labels = sorted({run["label"] for run in runs})
    unknown = [m for m in models if m not in labels]
    if unknown:
        raise SystemExit(f"error: --models {','.join(unknown)}: no runs of them in {folder} (it has {labels})")
    return [run for run in runs if not models or run["label"] in models]


def replay(curve, patience, bigger=True):
    r"""(selected epoch, its score, epoch after which the run stops or None if the curve ends first)."""
    best, cur_step, selected = (-float("inf") if bigger else float("inf")), 0, None
    for epoch, score in curve:
        best, cur_step, stop, update = early_stopping(score, best, cur_step, max_step=patience, bigger=bigger)
        if update:
            selected = epoch
        if stop:
            return selected, best, epoch
    return selected, best, None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a run_benchmark.py output folder")
    parser.add_argument("--patience", default="10,20,30,40,50", help="comma-separated patiences (stopping_step)")
    parser.add_argument("--models", default="", help="comma-separated model labels (default: every run)")
    args = parser.parse_args()
    try:
        patiences = [int(p) for p in args.patience.split(",")]
    except ValueError:
        raise SystemExit(f"error: --patience {args.patience!r}: give whole numbers separated by commas, e.g. 10,20,50")
    if any(p < 0 for p in patiences):
        raise SystemExit(f"error: --patience {args.patience!r}: a patience is 0 or more")
    runs = read_runs(args.folder, [m for m in args.models.split(",") if m])
    print("| model | seed | own patience | epochs trained | " + " | ".join(f"P = {p}" for p in patiences) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in patiences) + " |")
    for run in runs:
        metric = run["valid_metric"].lower()
        curve = [(epoch, metrics[metric]) for epoch, metrics in run["valid_curve"]]
        own, epochs = run["config"]["stopping_step"], run["config"]["epochs"]
        ran_all_epochs = len(curve) >= epochs
        cells = []
        for patience in patiences:
            selected, score, stopped = replay(curve, patience, run["valid_score_bigger"])
            open_end = stopped is None and not ran_all_epochs and patience > own
            cells.append(f"{selected} ({score:.4f}){'+' if open_end else ''}")
        print(f"| {run['label']} | {run['seed']} | {own} | {len(curve)} | " + " | ".join(cells) + " |")
    print(f"\nEach cell: the epoch selected on validation {runs[0]['valid_metric'] if runs else ''} and its score; "
          "+ = the curve ends before this patience would have stopped the run.")


if __name__ == "__main__":
    main()
