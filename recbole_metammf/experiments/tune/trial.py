r"""One trial of a sweep: a Ray Tune function trainable that trains one configuration with the plugin's
trainer, reporting the validation metrics after every validation so that ASHA can stop it early.

Each report carries the trial's resume point, the trainer's ``-last`` checkpoint (model, optimizer,
early-stopping state, random generators), as its Ray checkpoint. A trial that Ray starts again (a retry
after a crash, a sweep continued with ``--resume``) goes on exactly from its last report instead of its
first epoch. The test split is never evaluated in a trial."""

import glob
import os
import shutil


# keys a trial sets for itself; they are not part of the configuration a user trains with
TRIAL_ONLY_KEYS = ("gpu_id", "show_progress", "state")
RESUME_FOLDER = "resume_point"  # in the trial's folder: the -last checkpoint between its write and Ray's copy
RESUME_FILE = "trial-last.pth"


def _reporting_trainer(trainer_class, metric):
    r"""``trainer_class`` reporting ``metric`` (and every other validation metric) to Ray Tune after
    each validation, i.e. after every ``eval_step`` training epochs, with the resume point as checkpoint.

    The report of a validation waits until early stopping has counted it and the ``-last`` checkpoint
    is written (the start of the next epoch, or the end of ``fit``), so that the state Ray restores is
    the one after the reported epoch."""
    import ray
    from ray.air import Checkpoint, session

    node_id = ray.get_runtime_context().get_node_id()  # where the trial ran: Ray's id of the node

    class ReportingTrainer(trainer_class):
        _pending_report = None

        def _valid_epoch(self, valid_data, show_progress=False):
            valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
            epochs_done = len(self.epoch_train_seconds) + self.start_epoch  # 1-based: epochs trained so far
            report = {key: float(value) for key, value in dict(valid_result).items()}
            report.update({"epoch": epochs_done, "valid_score": float(valid_score), "metric": float(valid_result[metric])})
            # epochs done before this attempt started from a Ray checkpoint; 0: it started from the first epoch
            report["resumed_after_epoch"] = self.start_epoch if self._resumed else 0
            report["node_id"] = node_id
            self._pending_report = report
            return valid_score, valid_result

        def _save_checkpoint(self, epoch, verbose=True, **kwargs):
            # no best-model file: a trial is never tested; the sweep trains its best configuration again
            return

        def _save_last_checkpoint(self, epoch, train_data, verbose=True):
            if self._pending_report is None:  # no validation since the last report: the next one carries the state
                return
            super()._save_last_checkpoint(epoch, train_data, verbose=False)
            report, self._pending_report = self._pending_report, None
            try:
                session.report(report, checkpoint=Checkpoint.from_directory(os.path.dirname(self.last_checkpoint_file)))
            finally:  # Ray copied it into the trial's checkpoint_<n> folder before it returns, or stops the trial
                os.remove(self.last_checkpoint_file)

    ReportingTrainer.__name__ = ReportingTrainer.__qualname__ = f"Reporting{trainer_class.__name__}"
    return ReportingTrainer


def _resume_point(folder):
    r"""The trial's resume point: Ray's latest checkpoint of this trial copied into ``folder`` (emptied
    first), and the path of the ``-last`` file in it; None when Ray has none (the trial's first start)."""
    from ray.air import session

    shutil.rmtree(folder, ignore_errors=True)  # a file left by an attempt killed between its write and report
    os.makedirs(folder)
    checkpoint = session.get_checkpoint()
    if checkpoint is None:
        return None
    checkpoint.to_directory(folder)
    return os.path.join(folder, RESUME_FILE)


def remove_resume_points(trial_folders):
    r"""Delete the Ray checkpoints (``checkpoint_<n>`` folders) of trials that have ended, and what their
    ``resume_point`` folder holds: only an unfinished trial goes on from one. Returns the bytes freed."""
    freed = 0
    for folder in trial_folders:
        for path in glob.glob(os.path.join(glob.escape(folder), "checkpoint_*")) + [os.path.join(folder, RESUME_FOLDER)]:
            freed += sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
            shutil.rmtree(path, ignore_errors=True)
    return freed


def tune_trial(params, fixed=None, metric="ndcg@20", threads=1):
    r"""Ray Tune function trainable: train one configuration, reporting the validation metrics and the
    resume point; started again by Ray, it goes on from the last report.

    ``params``: the trial's sampled values; ``fixed``: model, dataset and every other setting the
    sweep was given (absolute paths). The test split is loaded by RecBole but never evaluated."""
    import ray
    import torch
    from ray.air import session
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
    resume_folder = os.path.join(session.get_trial_dir(), RESUME_FOLDER)
    resume = _resume_point(resume_folder)
    pipeline = build(config, trainer_class=_reporting_trainer(get_trainer(config["MODEL_TYPE"], config["model"]), metric))
    pipeline.trainer.last_checkpoint_file = os.path.join(resume_folder, RESUME_FILE)
    train_and_test(pipeline, saved=True, verbose=False, test=False, resume=resume)
