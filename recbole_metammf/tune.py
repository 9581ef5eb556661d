r"""Hyper-parameter sweeps with Ray Tune (2.6.3, the version RecBole 1.2.1 allows).

Unlike RecBole's own Ray example, each trial reports the validation metric after every epoch
(from inside RecBole's trainer), so ASHA can stop poor trials early; trials never evaluate the test
split (model selection uses validation only); the best configuration is trained once more at the
end, from the ``best_config.yaml`` written for it, and only that run is tested.

    python run_tune.py --model=MetaMMF_GCN --dataset=tiktok --space=properties/tune/metammf.yaml

The search space is YAML, one key per hyper-parameter::

    d_s: {grid: [2, 3, 4, 5]}          # every value (grids multiply)
    cp_rank: {range: [4, 32, 4]}        # grid over range(4, 32 + 1, 4), inclusive
    learning_rate: {choice: [1e-4, 1e-3]}   # one value at random per sample
    dropout: {uniform: [0.0, 0.5]}
    reg_weight: {loguniform: [1e-8, 1]}
    embedding_size: 32                  # a plain value: fixed for every trial

``--num-samples N`` draws N samples of the random keys for every grid point.
"""

import json
import logging
import math
import os
import sys
import time
from logging import getLogger

import yaml

from recbole_metammf.config import Config, _SafeLoader
from recbole_metammf.utils import ConfigError, to_plain

SPACE_KINDS = ("grid", "range", "choice", "uniform", "loguniform")
SETTINGS_FILE = "sweep_settings.json"
# keys a trial sets for itself; they are not part of the configuration a user trains with
_TRIAL_ONLY_KEYS = ("gpu_id", "show_progress", "state")


# --------------------------------------------------------------------------- search space


def read_yaml(path):
    r"""A YAML file as a dict, with the plugin's safe loader (``1e-6`` is a float)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_SafeLoader)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def _number(path, key, kind, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: {key}: {kind} bounds must be numbers, got {value!r}")
    return value


def parse_space(spec, path="search space"):
    r"""Turn the YAML search space (a dict) into Ray Tune's ``param_space``.

    Each value is either a mapping with exactly one of ``grid``, ``range``, ``choice``, ``uniform``,
    ``loguniform``, or a plain value that every trial gets."""
    from ray import tune

    space = {}
    for key, value in spec.items():
        if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SPACE_KINDS):
            if isinstance(value, dict) and any(k in SPACE_KINDS for k in value):
                raise ConfigError(f"{path}: {key}: give exactly one of {', '.join(SPACE_KINDS)}, got {sorted(value)}")
            space[key] = value  # fixed value (a dict-valued key such as eval_args stays as it is)
            continue
        kind, args = next(iter(value.items()))
        if kind in ("grid", "choice"):
            if not isinstance(args, list) or not args:
                raise ConfigError(f"{path}: {key}: {kind} needs a non-empty list of values, got {args!r}")
            space[key] = tune.grid_search(args) if kind == "grid" else tune.choice(args)
        elif kind == "range":
            if not isinstance(args, list) or len(args) not in (2, 3) or not all(
                isinstance(a, int) and not isinstance(a, bool) for a in args
            ):
                raise ConfigError(f"{path}: {key}: range needs [first, last] or [first, last, step] integers, got {args!r}")
            first, last, step = (args + [1])[:3]
            values = list(range(first, last + (1 if step > 0 else -1), step)) if step else []
            if not values:
                raise ConfigError(f"{path}: {key}: range {args} is empty")
            space[key] = tune.grid_search(values)
        else:
            if not isinstance(args, list) or len(args) != 2:
                raise ConfigError(f"{path}: {key}: {kind} needs [low, high], got {args!r}")
            low, high = (_number(path, key, kind, a) for a in args)
            if not low < high or (kind == "loguniform" and low <= 0):
                raise ConfigError(f"{path}: {key}: {kind} needs 0 < low < high for loguniform, low < high otherwise; got {args}")
            space[key] = tune.uniform(low, high) if kind == "uniform" else tune.loguniform(low, high)
    return space


def load_space(path):
    r"""Read and parse a search-space YAML file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"search space {path} does not exist")
    spec = read_yaml(path)
    if not spec:
        raise ConfigError(f"{path}: the search space is empty")
    return parse_space(spec, path)


# --------------------------------------------------------------------------- one trial


def _absolute_paths(config_dict):
    r"""Data paths as absolute paths: trials run in their own working directories, maybe on other machines."""
    config_dict = dict(config_dict)
    for key in ("data_path", "checkpoint_dir"):
        value = config_dict.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            config_dict[key] = os.path.abspath(value)
    return config_dict


def _reporting_trainer(trainer_class, metric):
    r"""``trainer_class`` reporting ``metric`` (and every other validation metric) to Ray Tune after
    each validation, i.e. after every ``eval_step`` training epochs."""
    from ray.air import session

    class ReportingTrainer(trainer_class):
        def _valid_epoch(self, valid_data, show_progress=False):
            valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
            epochs_done = len(self.epoch_train_seconds) + self.start_epoch  # 1-based: epochs trained so far
            report = {key: float(value) for key, value in dict(valid_result).items()}
            report.update({"epoch": epochs_done, "valid_score": float(valid_score), "metric": float(valid_result[metric])})
            session.report(report)
            return valid_score, valid_result

    ReportingTrainer.__name__ = ReportingTrainer.__qualname__ = f"Reporting{trainer_class.__name__}"
    return ReportingTrainer


def tune_trial(params, fixed=None, metric="ndcg@20", threads=1):
    r"""Ray Tune function trainable: train one configuration, reporting the validation metrics.

    ``params``: the trial's sampled values; ``fixed``: model, dataset and every other setting the
    sweep was given (absolute paths). The test split is loaded by RecBole but never evaluated."""
    import ray
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_logger

    from recbole_metammf.quick_start import seed_everything
    from recbole_metammf.utils import get_model, get_trainer

    torch.set_num_threads(max(1, int(threads)))
    config_dict = {**fixed, **params}
    # RecBole sets CUDA_VISIBLE_DEVICES to gpu_id: keep the GPU(s) Ray gave this trial, none when it gave none
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    config_dict["gpu_id"] = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(gpu_ids)) if gpu_ids else ""
    config_dict["show_progress"] = False
    config_dict.setdefault("state", "warning")
    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config reads --key=value from sys.argv: not the Ray worker's
    try:
        config = Config(config_dict=config_dict)
    finally:
        sys.argv = argv
    seed_everything(config)
    init_logger(config)  # into the trial's directory (Ray runs each trial there)
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    seed_everything(config, offset=config["local_rank"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer_class = _reporting_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), metric)
    trainer = trainer_class(config, model)
    trainer.fit(train_data, valid_data, verbose=False, saved=False, show_progress=False)


# --------------------------------------------------------------------------- the sweep


def sweep_settings(model, dataset, config_dict=None, config_files=None, metric=None):
    r"""The fixed settings of every trial, checked once by building the plugin's :class:`Config`
    (a wrong key or model fails here, before Ray starts): returns (fixed, metric, mode, epochs)."""
    fixed = {}
    for path in config_files or []:
        fixed.update(read_yaml(path))
    fixed.update(config_dict or {})
    fixed = {key: value for key, value in fixed.items() if key not in _TRIAL_ONLY_KEYS}
    if model is not None:
        fixed["model"] = model
    if dataset is not None:
        fixed["dataset"] = dataset
    if metric:
        fixed["valid_metric"] = metric
    fixed = _absolute_paths(fixed)
    config = Config(config_dict=dict(fixed))
    fixed["model"], fixed["dataset"] = config["model"], config["dataset"]
    metric = config["valid_metric"].lower()
    fixed["valid_metric"] = metric
    if "@" in metric and int(metric.split("@")[1]) not in config["topk"]:
        raise ConfigError(f"metric: {metric} needs {metric.split('@')[1]} in topk (got {config['topk']})")
    mode = "max" if config["valid_metric_bigger"] else "min"
    return to_plain(fixed), metric, mode, int(config["epochs"])


def plan_resources(cpus_per_trial=None, gpus_per_trial=None, cluster=None):
    r"""Resources per trial and how many trials run at once, from the cluster's resources.

    CPU-only: ``cpus_per_trial`` (default 1) CPUs each, as many trials as CPUs allow. With GPUs,
    by default each trial gets a fraction of a GPU (up to 4 trials share one), so small models fill
    the GPU instead of one trial holding it."""
    cpus = float(cluster.get("CPU", 1))
    gpus = float(cluster.get("GPU", 0))
    cpus_per_trial = float(cpus_per_trial or 1)
    if cpus_per_trial > cpus:
        raise ConfigError(f"--cpus-per-trial={cpus_per_trial:g}, but the Ray cluster has {cpus:g} CPUs")
    concurrent = max(1, int(cpus // cpus_per_trial))
    if gpus_per_trial is None:
        gpus_per_trial = 0.0 if gpus == 0 else min(1.0, max(gpus / concurrent, 0.25))
    gpus_per_trial = float(gpus_per_trial)
    if gpus_per_trial > 0:
        if gpus_per_trial > gpus:
            raise ConfigError(f"--gpus-per-trial={gpus_per_trial:g}, but the Ray cluster has {gpus:g} GPUs")
        concurrent = min(concurrent, max(1, int(math.floor(gpus / gpus_per_trial + 1e-9))))
    return {"cpu": cpus_per_trial, "gpu": gpus_per_trial}, concurrent


def _trainable(fixed, metric, resources):
    from ray import tune

    threads = max(1, int(resources["cpu"]))
    return tune.with_resources(
        tune.with_parameters(tune_trial, fixed=fixed, metric=metric, threads=threads), resources
    )


def _scheduler(name, epochs, grace_period, reduction_factor):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if name == "fifo":
        return FIFOScheduler()
    if name != "asha":
        raise ConfigError(f"--scheduler: got {name!r}; expected asha or fifo")
    grace = max(1, min(int(grace_period), epochs))
    return ASHAScheduler(time_attr="epoch", max_t=max(epochs, 1), grace_period=grace, reduction_factor=reduction_factor)


def _trial_rows(result_grid, metric, mode, space_keys, max_epochs):
    r"""One row per trial: its parameters, best validation metric, its epoch, epochs run, status, and
    whether the scheduler pruned it (ASHA: its last result is marked done before ``max_epochs``; a trial
    that ends by itself, through RecBole's early stopping, leaves its last result not done)."""
    trials = list(getattr(getattr(result_grid, "_experiment_analysis", None), "trials", []) or [])
    results = list(result_grid)
    rows = []
    for index, result in enumerate(results):
        trial = trials[index] if len(trials) == len(results) else None
        config = dict(getattr(trial, "config", None) or result.config or {})
        history = result.metrics_dataframe
        best, best_epoch, epochs, last_done = None, None, 0, False
        if history is not None and len(history) and "metric" in history:
            history = history.dropna(subset=["metric"]).reset_index(drop=True)
            # a trial run again (retry, --resume) starts from epoch 1 and appends: keep its last run only
            restarts = [i for i in range(1, len(history)) if history.loc[i, "epoch"] <= history.loc[i - 1, "epoch"]]
            if restarts:
                history = history.iloc[restarts[-1]:]
            if len(history):
                position = history["metric"].idxmax() if mode == "max" else history["metric"].idxmin()
                best = float(history.loc[position, "metric"])
                best_epoch = int(history.loc[position, "epoch"])
                epochs = int(history["epoch"].max())
                # the last *logged* result (result.metrics is marked done for every trial of a restored sweep)
                last_done = "done" in history and bool(history["done"].iloc[-1])
        status = getattr(trial, "status", None) or ("ERROR" if result.error else "TERMINATED")
        pruned = status == "TERMINATED" and last_done and epochs < max_epochs
        error = ""
        if result.error is not None:
            lines = [line for line in str(result.error).strip().splitlines() if line.strip()]
            error = lines[-1][:200] if lines else type(result.error).__name__
        row = {"trial": getattr(trial, "trial_id", None) or os.path.basename(str(result.log_dir or index))}
        row.update({key: to_plain(config.get(key)) for key in space_keys})
        row.update(
            {
                f"best_valid_{metric}": best,
                "best_epoch": best_epoch,
                "epochs": epochs,
                "status": status,
                "pruned": pruned,
                "failures": int(getattr(trial, "num_failures", 0) or 0),
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
    import csv

    columns = [c for c in rows[0] if not c.startswith("_")] if rows else ["trial", f"best_valid_{metric}", "epochs", "status"]
    csv_path, md_path = os.path.join(folder, "results.csv"), os.path.join(folder, "results.md")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _format(row[c]) for c in columns})
    with open(md_path, "w", encoding="utf-8") as f:
        f.write("| " + " | ".join(columns) + " |\n")
        f.write("| " + " | ".join("---" for _ in columns) + " |\n")
        for row in rows:
            f.write("| " + " | ".join(_format(row[c]).replace("|", "\\|").replace("\n", " ") for c in columns) + " |\n")
    return csv_path, md_path


def write_best_config(fixed, params, path, note=""):
    r"""The fixed settings plus the best trial's values as plain YAML that ``--config_files=`` reads."""
    config = {**fixed, **params}
    config = {key: value for key, value in to_plain(config).items() if key not in _TRIAL_ONLY_KEYS}
    with open(path, "w", encoding="utf-8") as f:
        if note:
            f.write("".join(f"# {line}\n" for line in note.splitlines()))
        yaml.safe_dump(config, f, sort_keys=False, default_flow_style=None)
    return path


def run_sweep(
    model,
    dataset,
    space=None,
    config_dict=None,
    config_files=None,
    num_samples=1,
    scheduler="asha",
    metric=None,
    cpus_per_trial=None,
    gpus_per_trial=None,
    address=None,
    output="tune_results",
    name=None,
    resume=False,
    max_failures=1,
    grace_period=5,
    reduction_factor=3,
    test_best=True,
    verbose=1,
):
    r"""Run (or with ``resume`` continue) a sweep; returns a dict with the table rows, the best trial,
    the paths written and, with ``test_best``, the result of training the best configuration again.

    Uses the running Ray instance if there is one; otherwise joins ``address`` or starts Ray locally,
    and shuts down what it started."""
    import ray
    from ray import air, tune

    output = os.path.abspath(output)
    name = name or f"{model}-{dataset}"
    experiment = os.path.join(output, name)
    settings_path = os.path.join(experiment, SETTINGS_FILE)
    if resume:
        if not os.path.isfile(settings_path):
            raise FileNotFoundError(f"--resume: no sweep to continue in {experiment} ({SETTINGS_FILE} missing)")
        with open(settings_path, encoding="utf-8") as f:
            saved = json.load(f)
        fixed, metric, mode, epochs = saved["fixed"], saved["metric"], saved["mode"], saved["epochs"]
        space_keys = saved["space_keys"]
        param_space = None
    else:
        if os.path.exists(settings_path):
            raise ConfigError(
                f"{experiment} holds a sweep already: pass --resume to continue it, or --name / --output for a new one"
            )
        if space is None:
            raise ConfigError("space: no search space given (--space=FILE)")
        param_space = load_space(space) if isinstance(space, str) else parse_space(space)
        fixed, metric, mode, epochs = sweep_settings(model, dataset, config_dict, config_files, metric)
        space_keys = list(param_space)

    started_ray = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=verbose > 1)
        else:
            ray.init(include_dashboard=False, log_to_driver=verbose > 1)
        started_ray = True
    try:
        resources, concurrent = plan_resources(cpus_per_trial, gpus_per_trial, ray.cluster_resources())
        trainable = _trainable(fixed, metric, resources)
        if resume:
            if not tune.Tuner.can_restore(experiment):
                raise FileNotFoundError(f"--resume: Ray cannot restore {experiment}")
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=False)
        else:
            os.makedirs(experiment, exist_ok=True)
            with open(settings_path, "w", encoding="utf-8") as f:
                json.dump(
                    {"fixed": fixed, "metric": metric, "mode": mode, "epochs": epochs, "space_keys": space_keys,
                     "space": space if isinstance(space, str) else to_plain(space), "num_samples": num_samples,
                     "scheduler": scheduler},
                    f,
                    indent=1,
                )
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    metric="metric",
                    mode=mode,
                    num_samples=num_samples,
                    scheduler=_scheduler(scheduler, epochs, grace_period, reduction_factor),
                    max_concurrent_trials=concurrent,
                    reuse_actors=resources["gpu"] == 0,
                ),
                run_config=air.RunConfig(
                    name=name,
                    storage_path=output,
                    failure_config=air.FailureConfig(max_failures=max_failures),
                    verbose=verbose,
                ),
            )
        started = time.time()
        interrupt = _InterruptFlag()
        ray_tune_logger = logging.getLogger("ray.tune.tune")
        ray_tune_logger.addHandler(interrupt)
        try:
            result_grid = tuner.fit()
        finally:
            ray_tune_logger.removeHandler(interrupt)
        rows = _trial_rows(result_grid, metric, mode, space_keys, epochs)
    finally:
        if started_ray:
            ray.shutdown()

    csv_path, md_path = write_tables(rows, experiment, metric)
    summary = {
        "experiment": experiment,
        "fixed": fixed,
        "rows": rows,
        "csv": csv_path,
        "markdown": md_path,
        "metric": metric,
        "mode": mode,
        "seconds": time.time() - started,
        "best": None,
        "best_config": None,
        "test": None,
    }
    summary["interrupted"] = interrupt.seen or any(r["status"] not in ("TERMINATED", "ERROR") for r in rows)
    if summary["interrupted"]:  # Ctrl-C: Ray saved the experiment; no best config from a partial sweep
        with open(md_path, "a", encoding="utf-8") as f:
            f.write("\nThe sweep was interrupted: this table is partial (trials cut short show as TERMINATED); "
                    "continue it with --resume.\n")
        getLogger().warning(f"the sweep was interrupted; continue it with --resume (output {output}, name {name})")
        return summary
    best = next((r for r in rows if r[f"best_valid_{metric}"] is not None and r["status"] != "ERROR"), None)
    if best is None:
        getLogger().warning(f"no trial of {experiment} finished; see the error column of {md_path}")
        return summary
    params = {key: best["_config"][key] for key in space_keys if key in best["_config"]}
    best_config = write_best_config(
        fixed,
        params,
        os.path.join(experiment, "best_config.yaml"),
        note=(
            f"Best of the Ray Tune sweep {experiment}: trial {best['trial']}, "
            f"valid {metric} = {best[f'best_valid_{metric}']:.6g} at epoch {best['best_epoch']}.\n"
            f"python run_recbole_metammf.py --model={fixed['model']} --dataset={fixed['dataset']} "
            f"--config_files={os.path.join(experiment, 'best_config.yaml')}"
        ),
    )
    summary.update({"best": best, "best_config": best_config})
    if test_best:
        summary["test"] = evaluate_best_config(best_config, experiment)
        _append_test(md_path, best, metric, summary["test"])
    return summary


class _InterruptFlag(logging.Handler):
    r"""Notes Ray Tune's "Experiment has been interrupted" warning (Ctrl-C): Ray 2.6.3 then returns
    normally, with the trials it stopped marked TERMINATED."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.seen = False

    def emit(self, record):
        if "has been interrupted" in record.getMessage():
            self.seen = True


def evaluate_best_config(best_config, experiment):
    r"""Train the best configuration once more from ``best_config.yaml`` (validation selects its
    epoch, as in the sweep) and evaluate the test split once; returns :func:`objective_function`'s dict."""
    from recbole_metammf.quick_start import objective_function

    result = objective_function(
        config_dict={"checkpoint_dir": os.path.join(experiment, "best_model"), "show_progress": False},
        config_file_list=[best_config],
    )
    plain = {key: to_plain(result[key]) for key in ("best_valid_score", "best_valid_result", "test_result", "epochs", "checkpoint")}
    with open(os.path.join(experiment, "best_result.json"), "w", encoding="utf-8") as f:
        json.dump(plain, f, indent=1)
    return plain


def _append_test(md_path, best, metric, test):
    with open(md_path, "a", encoding="utf-8") as f:
        f.write(f"\nBest trial: {best['trial']} (valid {metric} {best[f'best_valid_{metric}']:.6g}). ")
        f.write("Trained again from best_config.yaml, selected on validation, tested once:\n\n")
        keys = list(test["test_result"])
        f.write("| split | " + " | ".join(keys) + " |\n| --- | " + " | ".join("---" for _ in keys) + " |\n")
        for split in ("best_valid_result", "test_result"):
            label = "valid" if split == "best_valid_result" else "test"
            f.write(f"| {label} | " + " | ".join(_format(test[split].get(k)) for k in keys) + " |\n")


def quiet_ray_logs():
    r"""Ray's own INFO chatter off (trial output stays in each trial's folder)."""
    for name in ("ray", "ray.tune", "ray.air"):
        logging.getLogger(name).setLevel(logging.WARNING)
