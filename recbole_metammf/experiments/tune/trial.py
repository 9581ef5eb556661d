r"""One trial of a sweep: a Ray Tune function trainable that trains one configuration with the plugin's
trainer, reporting the validation metrics after every validation so that ASHA can stop it early. The
test split is never evaluated in a trial."""

import os


# keys a trial sets for itself; they are not part of the configuration a user trains with
TRIAL_ONLY_KEYS = ("gpu_id", "show_progress", "state")


def _reporting_trainer(trainer_class, metric):
    r"""``trainer_class`` reporting ``metric`` (and every other validation metric) to Ray Tune after
    each validation, i.e. after every ``eval_step`` training epochs."""
    import ray
    from ray.air import session

    node_id = ray.get_runtime_context().get_node_id()  # where the trial ran: Ray's id of the node

    class ReportingTrainer(trainer_class):
        def _valid_epoch(self, valid_data, show_progress=False):
            valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
            epochs_done = len(self.epoch_train_seconds) + self.start_epoch  # 1-based: epochs trained so far
            report = {key: float(value) for key, value in dict(valid_result).items()}
            report.update({"epoch": epochs_done, "valid_score": float(valid_score), "metric": float(valid_result[metric])})
            report["node_id"] = node_id
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
    from recbole.utils import init_logger

    from recbole_metammf.compat import make_recbole_dirs
    from recbole_metammf.pipeline import build, make_config, train_and_test
    from recbole_metammf.registry import get_trainer

    torch.set_num_threads(max(1, int(threads)))
    config_dict = {**fixed, **params}
    # RecBole sets CUDA_VISIBLE_DEVICES to gpu_id: keep the GPU(s) Ray gave this trial, none when it gave none
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    config_dict["gpu_id"] = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(gpu_ids)) if gpu_ids else ""
    config_dict["show_progress"] = False
    config_dict.setdefault("state", "warning")
    config = make_config(config_dict=config_dict, command_line=False)  # not the Ray worker's sys.argv
    make_recbole_dirs(config)  # trials start together: RecBole's ensure_dir races
    init_logger(config)  # into the trial's directory (Ray runs each trial there)
    trainer_class = _reporting_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), metric)
    train_and_test(build(config, trainer_class=trainer_class), saved=False, verbose=False, test=False)
