r"""The results of a sweep, read from Ray Tune's ``ResultGrid`` through its public API (``Result.metrics``,
``metrics_dataframe``, ``error``, ``path``), and what is written from them: ``results.csv``, ``results.md``,
``best_config.yaml`` and the best configuration's test result."""

import json
import os

import yaml

from recbole_metammf.experiments.tune.trial import TRIAL_ONLY_KEYS
from recbole_metammf.files import atomic_write_text, csv_text, md_table
from recbole_metammf.utils import to_plain

ERROR_FILE = "error.txt"  # Ray Tune writes "Failure # N (occurred at ...)" there on each failure of a trial
PARAMS_FILE = "params.json"  # and the trial's configuration there when it starts


def _trial_file(result, name):
    path = os.path.join(result.path, name) if result.path else None
    return path if path and os.path.isfile(path) else None


def _failures(result):
    path = _trial_file(result, ERROR_FILE)
    if path is None:
        return 0
    with open(path, encoding="utf-8", errors="replace") as f:
        return sum(line.startswith("Failure # ") for line in f)


def _config(result):
    r"""The trial's configuration: in its last result (Ray adds it), else the ``params.json`` Ray wrote."""
    if result.config:
        return dict(result.config)
    path = _trial_file(result, PARAMS_FILE)
    if path is None:
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _history(result):
    r"""The trial's validation results, one row per epoch, as its last run saw them. Ray appends every
    attempt's reports: a trial Ray starts again (a retry, --resume) goes on from its last checkpoint,
    which may be older than its last report, or from epoch 1 (no checkpoint yet, or a sweep from before
    trials checkpointed). An attempt's rows replace the earlier rows from its first epoch on."""
    history = result.metrics_dataframe
    if history is None or not len(history) or "metric" not in history:
        return None
    history = history.dropna(subset=["metric"]).reset_index(drop=True)
    kept = []
    for i, epoch in enumerate(history["epoch"]):
        while kept and history.loc[kept[-1], "epoch"] >= epoch:  # an attempt that went on from before this epoch
            kept.pop()
        kept.append(i)
    history = history.loc[kept].reset_index(drop=True)
    return history if len(history) else None


def trial_rows(result_grid, metric, mode, space_keys, max_epochs):
    r"""One row per trial: its parameters, best validation metric, its epoch, epochs run, status,
    whether the scheduler pruned it (ASHA: its last result is marked done before ``max_epochs``; a trial
    that ends by itself, through RecBole's early stopping, leaves its last result not done), and after
    which epochs Ray started it again from its checkpoint (``resumed_after``, empty if never).

    Status: ``ERROR`` (the trial failed its retries), ``TERMINATED`` (it finished, or was stopped by
    the scheduler or a Ctrl-C), ``PENDING`` (it never reported: not started before an interruption)."""
    rows = []
    for index, result in enumerate(result_grid):
        config = _config(result)
        metrics = result.metrics or {}
        history = _history(result)
        best, best_epoch, epochs, last_done, node, resumed = None, None, 0, False, "", ""
        if history is not None:
            position = history["metric"].idxmax() if mode == "max" else history["metric"].idxmin()
            best = float(history.loc[position, "metric"])
            best_epoch = int(history.loc[position, "epoch"])
            epochs = int(history["epoch"].max())
            # the last *logged* result (result.metrics is marked done for every trial of a restored sweep)
            last_done = "done" in history and bool(history["done"].iloc[-1])
            if "node_id" in history:  # the Ray node it ran on (the first 12 hex digits of its id)
                node = str(history["node_id"].iloc[-1])[:12]
            if "resumed_after_epoch" in history:  # each time Ray started it again from its checkpoint
                points = history["resumed_after_epoch"].dropna().astype(int)
                resumed = ", ".join(str(p) for p in dict.fromkeys(points[points > 0]))
        if result.error is not None:
            status = "ERROR"
        elif history is not None or metrics.get("done"):
            status = "TERMINATED"
        else:
            status = "PENDING"
        pruned = status == "TERMINATED" and last_done and epochs < max_epochs
        error = ""
        if result.error is not None:
            lines = [line for line in str(result.error).strip().splitlines() if line.strip()]
            error = lines[-1][:200] if lines else type(result.error).__name__
        row = {"trial": metrics.get("trial_id") or os.path.basename(str(result.path or index))}
        row.update({key: to_plain(config.get(key)) for key in space_keys})
        row.update(
            {
                f"best_valid_{metric}": best,
                "best_epoch": best_epoch,
                "epochs": epochs,
                "status": status,
                "pruned": pruned,
                "failures": _failures(result),
                "node": node,
                "resumed_after": resumed,
                "error": error,
                "_config": to_plain(config),
            }
        )
        rows.append(row)
    key = f"best_valid_{metric}"
    sign = -1 if mode == "max" else 1
    rows.sort(key=lambda r: (r[key] is None, r["status"] == "ERROR", sign * (r[key] or 0.0)))
    return rows


def _format(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def write_tables(rows, folder, metric):
    r"""``results.csv`` and ``results.md`` in ``folder``; returns their paths."""
    columns = [c for c in rows[0] if not c.startswith("_")] if rows else ["trial", f"best_valid_{metric}", "epochs", "status"]
    csv_path, md_path = os.path.join(folder, "results.csv"), os.path.join(folder, "results.md")
    cells = [[_format(row[c]) for c in columns] for row in rows]
    atomic_write_text(csv_path, csv_text(columns, cells))
    atomic_write_text(md_path, md_table(columns, cells) + "\n")
    return csv_path, md_path


def append_test(md_path, best, metric, test):
    r"""The best trial's configuration trained again and tested once, as a table under ``results.md``."""
    keys = list(test["test_result"])
    table = md_table(
        ["split", *keys],
        [[label, *[_format(test[split].get(k)) for k in keys]]
         for label, split in (("valid", "best_valid_result"), ("test", "test_result"))],
    )
    with open(md_path, "a", encoding="utf-8") as f:
        f.write(f"\nBest trial: {best['trial']} (valid {metric} {best[f'best_valid_{metric}']:.6g}). ")
        f.write("Trained again from best_config.yaml, selected on validation, tested once:\n\n")
        f.write(table + "\n")


def write_best_config(fixed, params, path, note=""):
    r"""The fixed settings plus the best trial's values as plain YAML that ``--config_files=`` reads."""
    config = {**fixed, **params}
    config = {key: value for key, value in to_plain(config).items() if key not in TRIAL_ONLY_KEYS}
    header = "".join(f"# {line}\n" for line in note.splitlines()) if note else ""
    atomic_write_text(path, header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    return path
