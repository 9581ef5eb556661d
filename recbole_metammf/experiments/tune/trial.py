r"""One trial of a sweep: a Ray Tune function trainable that trains one configuration with the plugin's
trainer, reporting the validation metrics after every validation so that ASHA can stop it early. The
test split is never evaluated in a trial."""

import os

from recbole_metammf.cmdline import clean_argv
from recbole_metammf.config import Config

# keys a trial sets for itself; they are not part of the configuration a user trains with
TRIAL_ONLY_KEYS = ("gpu_id", "show_progress", "state")


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
    from recbole.utils import init_logger

    from recbole_metammf.cold_start import create_dataset, data_preparation, forget_items
    from recbole_metammf.quick_start import seed_everything
    from recbole_metammf.utils import get_model, get_trainer

    torch.set_num_threads(max(1, int(threads)))
    config_dict = {**fixed, **params}
    # RecBole sets CUDA_VISIBLE_DEVICES to gpu_id: keep the GPU(s) Ray gave this trial, none when it gave none
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    config_dict["gpu_id"] = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(gpu_ids)) if gpu_ids else ""
    config_dict["show_progress"] = False
    config_dict.setdefault("state", "warning")
    with clean_argv():  # RecBole's Config reads --key=value from sys.argv: not the Ray worker's
        config = Config(config_dict=config_dict)
    seed_everything(config)
    init_logger(config)  # into the trial's directory (Ray runs each trial there)
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    seed_everything(config, offset=config["local_rank"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    forget_items(model, dataset)  # cold start: the held-out items' ID rows are zero
    trainer_class = _reporting_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), metric)
    trainer = trainer_class(config, model)
    trainer.fit(train_data, valid_data, verbose=False, saved=False, show_progress=False)

