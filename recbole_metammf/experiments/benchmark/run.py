r"""Running a benchmark's runs: each through :func:`recbole_metammf.quick_start.objective_function`,
its record written to ``DIR/runs/<run id>.json`` (atomically), a finished run never trained again,
a failed one noted in ``DIR/failed/`` and retried by the next invocation, a killed one (its ``-last.pth``
left) continued by it from its last finished epoch."""

import datetime
import glob
import json
import logging
import os
import shutil
import sys
import time
import traceback

from tqdm import tqdm

from recbole_metammf.checkpoint import LAST_SUFFIX, CheckpointError, load_checkpoint
from recbole_metammf.experiments.benchmark.plan import METRICS, short_metric
from recbole_metammf.experiments.benchmark.summary import cut_by_epoch_bound
from recbole_metammf.files import machine, write_json
from recbole_metammf.utils import to_plain

FORMAT_VERSION = 1


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


def run_checkpoint_dir(output_dir, run_id):
    r"""Where the run ``run_id`` of the benchmark in ``output_dir`` keeps its checkpoints (absolute)."""
    return os.path.join(os.path.abspath(output_dir), "checkpoints", run_id)


def interrupted_attempt(checkpoint_dir, run, settings=None):
    r"""``(path, checkpoint)`` of the ``-last.pth`` checkpoint that a killed attempt at ``run`` left in
    ``checkpoint_dir``, when the run can go on from it; otherwise ``(None, why)``, ``why`` None when the
    folder holds no such checkpoint. It must hold the run's history (written since 2026-12-07), its
    settings must be the run's, and ``settings`` (the label's model defaults now) those it trained with."""
    paths = sorted(glob.glob(os.path.join(glob.escape(checkpoint_dir), "*" + LAST_SUFFIX)))
    if not paths:
        return None, None
    if len(paths) > 1:
        return None, f"{len(paths)} resume points in {checkpoint_dir}"
    try:
        checkpoint = load_checkpoint(paths[0])
    except CheckpointError as error:
        return None, str(error)
    if not checkpoint.get("last") or "valid_history" not in checkpoint:
        return None, f"{paths[0]} does not hold the run's validation history (written before 2026-12-07)"
    saved = checkpoint["config"]
    given = {key: value for key, value in run.config_dict.items() if key not in ("checkpoint_dir", "show_progress")}
    differing = [key for key, value in {**given, "seed": run.seed}.items() if saved["external"].get(key) != to_plain(value)]
    changed = changed_defaults({"config": saved.get("final") or {}}, settings)
    if differing or changed:
        return None, f"{paths[0]} was written with other settings ({', '.join(differing + list(changed))})"
    return paths[0], checkpoint


def run_one(run, output_dir, settings=None):
    r"""Train and test one run through ``objective_function``; returns its record (plain data).
    A run killed before (its ``-last.pth`` left in ``DIR/checkpoints/<run id>``) goes on from its last
    finished epoch, exactly as if it had not stopped (:func:`interrupted_attempt`); its record is the whole
    run's, and its ``wall_seconds`` count the earlier attempts' seconds in training and evaluation."""
    from recbole_metammf.quick_start import objective_function

    logger = logging.getLogger()
    checkpoint_dir = run_checkpoint_dir(output_dir, run.run_id)
    resume, checkpoint = interrupted_attempt(checkpoint_dir, run, settings)
    if resume is None:
        if checkpoint is not None:
            logger.warning(f"benchmark: {run.label} seed {run.seed} starts again from its first epoch: {checkpoint}")
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # what an interrupted attempt left
    else:
        logger.info(
            f"benchmark: {run.label} seed {run.seed} goes on after epoch {checkpoint['epoch']} from {resume} "
            f"(an interrupted attempt; delete {checkpoint_dir} to start it again)"
        )
    config_dict = {**run.config_dict, "seed": run.seed, "checkpoint_dir": checkpoint_dir, "show_progress": False}
    start = time.perf_counter()
    # each epoch in its log file; the settings are the run's alone, not this program's command line
    result = objective_function(config_dict=config_dict, saved=True, verbose=True, command_line=False, resume=resume)
    before = result.get("before_resume") or {"valid_history": [], "epoch_train_seconds": [], "fit_seconds": 0.0}
    wall_seconds = time.perf_counter() - start + before["fit_seconds"]

    checkpoint = result.get("checkpoint")
    final = result.get("config") or {}  # the final config of the run, as plain data
    last = result.get("last_checkpoint")
    if last and os.path.isfile(last):
        os.remove(last)  # only a killed run resumes from it; this one finished
    valid_metric = str(final.get("valid_metric", "NDCG@20")).lower()
    history = before["valid_history"] + list(result["valid_history"])
    curve = [[int(epoch), to_plain(dict(values))] for epoch, values in history]
    best_epoch = epoch_of_best(curve, valid_metric, result.get("valid_score_bigger", True))
    # the epochs before a resume and this attempt's (none when it had stopped and only its test was left)
    seconds = before["epoch_train_seconds"] + [result["train_seconds_per_epoch"]] * result["epochs"]
    epochs = result.get("first_epoch", 0) + result["epochs"]
    seconds_per_epoch = sum(seconds) / len(seconds) if seconds else float("nan")
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
        "epochs": epochs,
        "resumed_after_epoch": None if resume is None else result["first_epoch"] - 1,
        "epoch_of_best": best_epoch,
        "epochs_to_best": None if best_epoch is None else best_epoch + 1,
        "train_seconds_per_epoch": seconds_per_epoch,
        "n_parameters": result["n_parameters"],
        "fusion_tower_parameters": result.get("fusion_tower_parameters"),
        "checkpoint": os.path.relpath(checkpoint, output_dir) if checkpoint else None,
        "wall_seconds": wall_seconds,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }


# Keys added to the models' defaults after benchmark records had been written, each with the value that
# reproduces what those records trained with (the behaviour before the key existed). A record without such a
# key is compared as if it held that value, so it stays current while the default keeps the old behaviour and
# becomes stale when the default moves; a record without a key not listed here is stale (what it trained with
# is unknown). Add a key here when it joins a model's defaults.
VALUE_BEFORE_KEY = {
    "item_graph_k": 0,  # 2026-12-07: no item-item graph before the key
    "n_item_layers": 1,  # read only with item_graph_k > 0
}
MISSING = object()


def changed_defaults(record, settings):
    r"""``{key: (recorded, now)}`` for the keys of ``settings`` (a label's model defaults, as
    :func:`~recbole_metammf.experiments.benchmark.plan.check_runs` resolves them now) whose value differs
    from the one the finished run ``record`` trained with. A key the record lacks counts as
    :data:`VALUE_BEFORE_KEY`'s value, or as changed (``recorded`` :data:`MISSING`) when it is not listed there."""
    recorded = record.get("config") or {}
    changed = {}
    for key, now in (settings or {}).items():
        before = recorded[key] if key in recorded else VALUE_BEFORE_KEY.get(key, MISSING)
        if before is MISSING or before != now:
            changed[key] = (before, now)
    return changed


def describe_changes(record, changed):
    r"""What :func:`changed_defaults` found, for the log: ``key=old (now new)``; a key the record lacks says so, with
    the value it was compared as (:data:`VALUE_BEFORE_KEY`) when there is one."""
    recorded = record.get("config") or {}
    parts = []
    for key, (old, new) in changed.items():
        if old is MISSING:
            parts.append(f"no {key} (now {new!r})")
        elif key not in recorded:
            parts.append(f"no {key}, made before the key existed, as {key}={old!r} (now {new!r})")
        else:
            parts.append(f"{key}={old!r} (now {new!r})")
    return ", ".join(parts)


def set_aside(output_dir, run_id):
    r"""Move a stale run's record and checkpoints to ``output_dir/stale/`` (kept, out of the tables)."""
    stale_dir = os.path.join(output_dir, "stale")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    for source, target in [(os.path.join(output_dir, "runs", f"{run_id}.json"), os.path.join(stale_dir, f"{run_id}.{stamp}.json")),
                           (run_checkpoint_dir(output_dir, run_id), os.path.join(stale_dir, "checkpoints", f"{run_id}.{stamp}"))]:
        if os.path.exists(source):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(source, target)
    return stale_dir


def run_all(runs, output_dir, progress=True, settings=None):
    r"""Run what has no record in ``output_dir/runs`` yet; returns (records by run id, failures).
    A finished run whose model defaults changed since (``settings``: label -> the defaults' values now,
    from :func:`~recbole_metammf.experiments.benchmark.plan.check_runs`) is set aside in ``output_dir/stale/``
    and run again. A run that raises is logged, noted in ``output_dir/failed/`` and retried by the next
    invocation; the others go on."""
    logger = logging.getLogger()
    runs_dir, failed_dir = os.path.join(output_dir, "runs"), os.path.join(output_dir, "failed")
    os.makedirs(runs_dir, exist_ok=True)
    records, pending, failures = {}, [], []
    for run in runs:
        path = os.path.join(runs_dir, f"{run.run_id}.json")
        if not os.path.isfile(path):
            pending.append(run)
            continue
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        changed = changed_defaults(record, (settings or {}).get(run.label))
        if changed:
            stale_dir = set_aside(output_dir, run.run_id)
            logger.warning(
                f"benchmark: {run.label} seed {run.seed} finished with {describe_changes(record, changed)}: its model's "
                f"defaults changed since; the record is moved to {stale_dir} and the run made again"
            )
            pending.append(run)
        else:
            records[run.run_id] = record
    if records:
        logger.info(f"benchmark: {len(records)} of {len(runs)} runs already finished in {runs_dir}, not re-run")
    bar = tqdm(total=len(runs), initial=len(records), unit="run", desc="benchmark", disable=not progress, file=sys.stderr)
    try:
        for run in pending:
            bar.set_postfix_str(f"{run.label} seed {run.seed}")
            failure_path = os.path.join(failed_dir, f"{run.run_id}.json")
            try:
                record = run_one(run, output_dir, (settings or {}).get(run.label))
            except Exception as error:  # noqa: BLE001 - one failing run must not lose the others
                logger.error(f"benchmark: {run.label} seed {run.seed} failed: {type(error).__name__}: {error}")
                os.makedirs(failed_dir, exist_ok=True)
                write_json(failure_path, {"run_id": run.run_id, "label": run.label, "seed": run.seed,
                                          "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()})
                failures.append((run, error))
                # a retry starts again: a failure is not an interruption, and its code or settings may be fixed by then
                shutil.rmtree(run_checkpoint_dir(output_dir, run.run_id), ignore_errors=True)
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
                if cut_by_epoch_bound(record):
                    logger.warning(
                        f"benchmark: {run.label} seed {run.seed} reached the epoch bound (epochs={record['epochs']}) "
                        f"with its best validation at epoch {record['epochs_to_best']}, within the patience "
                        f"(stopping_step={record['config']['stopping_step']}): it may still have been improving; "
                        "give every model a higher --epochs to compare converged runs"
                    )
            bar.update(1)
    finally:
        bar.close()
    return records, failures

