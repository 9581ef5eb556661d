r"""Safe, atomic checkpoints for RecBole's trainers, and per-epoch timing.

RecBole 1.2.1 pickles its whole ``Config`` object into each checkpoint and reloads it with a plain
``torch.load``; since torch 2.6 that load defaults to ``weights_only=True`` and fails. Here a
checkpoint holds only tensors and plain Python values, is written to a temporary file and renamed
(a killed run leaves its last good checkpoint), and is always read with ``weights_only=True``.
"""

import os
import time

import torch
from recbole.utils import set_color

from recbole_metammf.utils import to_plain


def save_checkpoint(state, path):
    r"""Write ``state`` to ``path`` atomically: a crash leaves the previous file intact."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(state, tmp_path)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def load_checkpoint(path, map_location="cpu"):
    r"""Read a checkpoint with the safe loader (no arbitrary unpickling)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def checkpoint_config(config):
    r"""What a checkpoint records of the config: every final value as plain data, and the inputs
    (model, dataset, the user's own settings) that rebuild the same :class:`Config`."""
    return {
        "final": to_plain(config.final_config_dict),
        "model": config["model"],
        "dataset": config["dataset"],
        "external": to_plain(config.external_config_dict),
    }


class SafeCheckpointMixin:
    r"""Mixed in front of any RecBole trainer class by :func:`recbole_metammf.utils.get_trainer`."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epoch_train_seconds = []  # wall time of each training epoch
        self.valid_history = []  # (epoch, valid result) of each evaluation during fit

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        self.epoch_train_seconds.append(time.perf_counter() - start)
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.valid_history.append((len(self.epoch_train_seconds) + self.start_epoch - 1, dict(valid_result)))
        return valid_score, valid_result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": checkpoint_config(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": to_plain(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        save_checkpoint(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        checkpoint = load_checkpoint(resume_file, self.device)
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            self.logger.warning(
                f"The checkpoint {resume_file} was written by model {checkpoint['config']['model']}, "
                f"not {self.config['model']}; loading its parameters may fail."
            )
        self.saved_model_file = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_checkpoint(checkpoint_file, self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
