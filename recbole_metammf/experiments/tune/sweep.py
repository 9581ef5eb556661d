r"""A sweep: the fixed settings checked once, the resources per trial, the scheduler, Ray Tune's ``Tuner``
(new, or restored with ``Tuner.restore`` to continue), the tables, ``best_config.yaml`` and one more
training of the best configuration, the only run that evaluates the test split."""

import json
import logging
import math
import os
import time
from logging import getLogger

from recbole_metammf.config import Config
from recbole_metammf.config_checks import ignored_key_messages, unknown_key_messages
from recbole_metammf.errors import ConfigError
from recbole_metammf.experiments.tune.results import append_test, trial_rows, write_best_config, write_tables
from recbole_metammf.experiments.tune.space import load_space, parse_space
from recbole_metammf.experiments.tune.trial import TRIAL_ONLY_KEYS, remove_resume_points, tune_trial
from recbole_metammf.files import make_output_dir, read_yaml, write_json
from recbole_metammf.utils import require_int, require_number, to_plain

SETTINGS_FILE = "sweep_settings.json"


def _absolute_paths(config_dict):
    r"""Data paths as absolute paths: trials run in their own working directories, maybe on other machines."""
    config_dict = dict(config_dict)
    for key in ("data_path", "checkpoint_dir"):
        value = config_dict.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            config_dict[key] = os.path.abspath(value)
    return config_dict


def sweep_settings(model, dataset, config_dict=None, config_files=None, metric=None):
    r"""The fixed settings of every trial, checked once by building the plugin's :class:`Config`
    (a wrong key or model fails here, before Ray starts): returns (fixed, metric, mode, epochs)."""
    fixed = {}
    for path in config_files or []:
        fixed.update(read_yaml(path))
    fixed.update(config_dict or {})
    fixed = {key: value for key, value in fixed.items() if key not in TRIAL_ONLY_KEYS}
    if model is not None:
        fixed["model"] = model
    if dataset is not None:
        fixed["dataset"] = dataset
    if metric:
        fixed["valid_metric"] = metric
    fixed = _absolute_paths(fixed)
    config = Config(config_dict=dict(fixed))
    for message in config.ignored_key_messages:
        getLogger().warning(message)
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



def check_space_keys(model, space_keys, where="the search space"):
    r"""Every key searched over is a setting that ``model`` reads: an unknown key would fail every trial
    and a key of other models only would train the same configuration again; raises :class:`ConfigError`."""
    sources = [(space_keys, lambda key: f"in {where}")]
    messages = unknown_key_messages(sources) + ignored_key_messages(model, sources)
    if messages:
        raise ConfigError("\n".join(messages))


def check_sweep_options(num_samples=1, cpus_per_trial=None, gpus_per_trial=None, max_failures=1, grace_period=5,
                        reduction_factor=3, verbose=1):
    r"""The sweep's own options, before anything is written or Ray starts (a bad one would otherwise stop
    Ray Tune with a traceback, or start a sweep that runs no trial); raises :class:`ConfigError` naming the
    option, the value and what is accepted."""
    options = {"--num-samples": num_samples, "--max-failures": max_failures, "--grace-period": grace_period,
               "--reduction-factor": reduction_factor, "--verbose": verbose,
               "--cpus-per-trial": cpus_per_trial, "--gpus-per-trial": gpus_per_trial}
    require_int(options, "--num-samples", 1)
    require_int(options, "--max-failures", 0)
    require_int(options, "--grace-period", 1, "epochs")
    require_int(options, "--reduction-factor", 2)
    require_number(options, "--verbose", lambda v: isinstance(v, int) and 0 <= v <= 3, "0, 1, 2 or 3")
    if cpus_per_trial is not None:
        require_number(options, "--cpus-per-trial", lambda v: v > 0, "a number > 0")
    if gpus_per_trial is not None:
        require_number(options, "--gpus-per-trial", lambda v: v >= 0, "a number >= 0 (fractions share a GPU)")


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
    check_sweep_options(num_samples, cpus_per_trial, gpus_per_trial, max_failures, grace_period, reduction_factor, verbose)
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
        check_space_keys(fixed["model"], space_keys, space if isinstance(space, str) else "the search space")
        make_output_dir(experiment)

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
            write_json(
                settings_path,
                {"fixed": fixed, "metric": metric, "mode": mode, "epochs": epochs, "space_keys": space_keys,
                 "space": space if isinstance(space, str) else to_plain(space), "num_samples": num_samples,
                 "scheduler": scheduler},
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
                    # each report carries the trial's resume point; only the newest is needed
                    checkpoint_config=air.CheckpointConfig(num_to_keep=1),
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
        rows = trial_rows(result_grid, metric, mode, space_keys, epochs)
        trial_folders = [result.path for result in result_grid if result.path]
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
            f.write("\nThe sweep was interrupted: this table is partial (trials cut short show as TERMINATED, "
                    "trials not started as PENDING); "
                    "continue it with --resume.\n")
        getLogger().warning(f"the sweep was interrupted; continue it with --resume (output {output}, name {name})")
        return summary
    freed = remove_resume_points(trial_folders)  # every trial has ended: none will go on
    if freed:
        getLogger().info(f"removed the trials' resume points ({freed / 1e6:.1f} MB)")
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
        append_test(md_path, best, metric, summary["test"])
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
    write_json(os.path.join(experiment, "best_result.json"), plain)
    return plain



def quiet_ray_logs():
    r"""Ray's own INFO chatter off (trial output stays in each trial's folder)."""
    for name in ("ray", "ray.tune", "ray.air"):
        logging.getLogger(name).setLevel(logging.WARNING)
