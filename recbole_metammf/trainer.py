r"""The plugin's trainer: RecBole's, with safe atomic checkpoints, exact resume, a finite-loss check,
per-epoch timing, multi-process training on CPU as on GPUs, and the cold-start evaluation.

The checkpoint format is :mod:`recbole_metammf.checkpoint`. RecBole saves only when the validation
score improves, so a run killed later would lose the epochs after its best one: besides that best
checkpoint the trainer writes ``<name>-last.pth`` after every epoch, from which a resume continues
exactly (:meth:`SafeCheckpointMixin.resume_checkpoint`). It also holds the validation history, the epoch times and
the seconds spent in ``fit`` so far, so that a resumed run can report its whole run (:attr:`before_resume`).

In a multi-process run (RecBole's torch.distributed path, see :mod:`recbole_metammf.distributed`)
the model is wrapped in DistributedDataParallel on CPU (gloo) as on GPUs (nccl); only global rank 0
writes checkpoints, and the best model is loaded from rank 0 and sent to the others for testing.
"""

import os
import time

import torch
import torch.distributed as dist
from recbole.utils import set_color

from recbole_metammf.checkpoint import (
    checkpoint_config,
    last_checkpoint_path,
    load_checkpoint,
    model_state,
    restore_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
    to_device,
)
from recbole_metammf.cold_start import ALL_ITEMS_PREFIX
from recbole_metammf.compat import Collector, ddp_without_buffer_sync, without_recbole_ddp
from recbole_metammf.utils import ConfigError, to_plain


class NonFiniteLossError(ValueError):
    r"""The training loss became NaN or infinite; the message names the epoch and the batch."""


def distributed_data_parallel(model, config):
    r"""``model`` wrapped for RecBole's trainer in a multi-process run: ``device_ids`` only on a GPU
    (torch refuses them for a CPU module), and SyncBatchNorm only there (CUDA only), as RecBole does."""
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ConfigError(
            f"nproc: {config['model']} has no trainable parameters, so there is nothing to train in "
            "several processes; run it in one (--nproc=1)"
        )
    # No buffer is ever sent (broadcast_buffers=False): the plugin's buffers (item feature matrix, graph
    # edge index, adjacency) are constant, identical in every process and large; by default DDP would
    # send rank 0's copies to every process at construction and again before each forward. Parameters
    # are still broadcast once at construction, so all processes start from rank 0's initialisation.
    device = config["device"]
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model, ddp_without_buffer_sync(model, device_ids=[device.index])
    return model, ddp_without_buffer_sync(model, device_ids=None)


def break_ties(scores, generator, depth=None):
    r"""``scores`` (users x items) with ties between finite scores broken at random, independently for
    each user (``generator`` draws the order), instead of by item id, which torch.topk follows: RecBole
    numbers items by first appearance in the interaction files, so that id order favours popular items.
    Without ties the scores are returned as they are; with ties each row becomes the negated ranks of
    its items, and ``-inf`` (masked) entries stay ``-inf``.

    ``depth``: the longest list the metrics read (``max(topk)``). Ties are then looked for among each
    row's ``depth + 1`` best scores only: ties further down change neither the top-``depth`` lists nor
    their order, and the full sort that finds them cost more than the rest of the evaluation."""
    if depth is not None and depth + 1 < scores.shape[1]:
        values = scores.topk(depth + 1, dim=1).values
    else:
        values = scores.sort(dim=1, descending=True).values
    if not ((values[:, 1:] == values[:, :-1]) & torch.isfinite(values[:, 1:])).any():
        return scores
    shuffle = torch.rand(scores.shape, generator=generator, device=scores.device).argsort(dim=1)
    ranking = scores.gather(1, shuffle).sort(dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(shuffle)
    ranks.scatter_(1, shuffle.gather(1, ranking), torch.arange(scores.shape[1], device=scores.device).expand_as(shuffle))
    broken = -ranks.to(scores.dtype)
    broken[torch.isneginf(scores)] = -torch.inf
    return broken


class SafeCheckpointMixin:
    r"""Mixed in front of any RecBole trainer class by :func:`recbole_metammf.registry.get_trainer`."""

    def __init__(self, config, model):
        with without_recbole_ddp(config):  # RecBole 1.2.1 would build a GPU-only wrapper
            super().__init__(config, model)
        self.eval_collector = Collector(config)  # RecBole's, able to collect ItemCoverage / GiniIndex inputs
        self.distributed = not config["single_spec"]
        if self.distributed:
            # SyncBatchNorm conversion keeps the Parameter objects, so the optimizer built above still holds them
            self.model, self.distributed_model = distributed_data_parallel(self.model, config)
        self.epoch_train_seconds = []  # wall time of each training epoch
        self.valid_history = []  # (epoch, valid result) of each evaluation during fit
        self.last_checkpoint_file = last_checkpoint_path(self.saved_model_file)
        self._save_last, self._verbose = False, True  # set by fit(saved=..., verbose=...)
        self._resumed = False
        self._pending_rng = None  # the resumed run's generators, restored when its first epoch starts
        # what the attempts before a resume from a -last checkpoint recorded (empty without one)
        self.before_resume = {"valid_history": [], "epoch_train_seconds": [], "fit_seconds": 0.0}
        self._fit_started = None
        self._epoch, self._batch = None, -1  # where training is, for the finite-loss check

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, *args, **kwargs):
        self.eval_collector.data_collect(train_data)  # item counts of ItemCoverage etc., even when nothing is left to train
        if self._resumed and (self.start_epoch >= self.epochs or self.cur_step > self.stopping_step):
            # RecBole would overwrite the best checkpoint with the current model here; keep it instead
            self.logger.info(
                set_color("Nothing left to train", "yellow")
                + f": the resumed run had stopped after epoch {self.start_epoch - 1} (epochs={self.epochs}, "
                f"{self.cur_step} evaluations without gain, stopping_step={self.stopping_step})"
            )
            return self.best_valid_score, self.best_valid_result
        self._save_last, self._verbose = saved, verbose
        self._fit_started = time.perf_counter()
        result = super().fit(train_data, valid_data, verbose, saved, *args, **kwargs)
        if saved and self._epoch is not None:
            self._save_last_checkpoint(self._epoch, train_data, verbose)  # the state the run ended in
        return result

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng, train_data)
            self._pending_rng = None
        elif self._save_last and self._epoch is not None:
            # the previous epoch, its evaluation and early-stopping update are complete: that is the state to resume from
            self._save_last_checkpoint(self._epoch, train_data, verbose=self._verbose)
        self._epoch, self._batch = epoch_idx, -1
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        self.epoch_train_seconds.append(time.perf_counter() - start)
        return loss

    def _check_nan(self, loss):
        # RecBole calls this once per batch, after the loss and before backward(), whatever the trainer
        self._batch += 1
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                f"training loss is {loss.detach().flatten()[0].item()} at epoch {self._epoch}, batch {self._batch} "
                "(0-based, as in the log); training stopped. Try a lower learning_rate, a smaller reg_weight, "
                "or check the item features"
            )

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.valid_history.append((len(self.epoch_train_seconds) + self.start_epoch - 1, dict(valid_result)))
        return valid_score, valid_result

    def _checkpoint_state(self, epoch):
        return {
            "config": checkpoint_config(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": to_plain(self.best_valid_score),
            **model_state(self.model),
            "optimizer": self.optimizer.state_dict(),
        }

    def _writes_checkpoints(self):
        r"""One process writes: global rank 0. (RecBole's test, ``local_rank == 0``, is true once per node
        in a multi-node run.) No collective call here, so a rank that skips the write cannot deadlock."""
        return not self.distributed or dist.get_rank() == 0

    def _load_everywhere(self, checkpoint_file):
        r"""The checkpoint, read by rank 0 and sent to the other processes: they may run on nodes that
        do not see rank 0's ``checkpoint_dir``, and their own ``saved_model_file`` names may differ
        (RecBole names it by the second each process built its trainer). Every process must call this."""
        if not self.distributed:
            return checkpoint_file, load_checkpoint(checkpoint_file, self.device)
        message = [checkpoint_file, load_checkpoint(checkpoint_file) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(message, src=0)
        return message[0], to_device(message[1], self.device)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self._writes_checkpoints():
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        save_checkpoint(self._checkpoint_state(epoch), saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _save_last_checkpoint(self, epoch, train_data, verbose=True):
        r"""The complete training state after ``epoch``: a best checkpoint plus what exact resume needs.
        In a multi-process run the generators recorded are rank 0's."""
        if not self._writes_checkpoints():
            return
        state = self._checkpoint_state(epoch)
        state.update(
            {
                "last": True,
                "best_checkpoint": os.path.basename(self.saved_model_file),  # its sibling, wherever the folder moves
                "best_valid_result": to_plain(self.best_valid_result),
                "rng": rng_state(train_data),
                # the whole run's record, earlier attempts included, for a resume to report
                "valid_history": self.before_resume["valid_history"] + to_plain([list(h) for h in self.valid_history]),
                "epoch_train_seconds": self.before_resume["epoch_train_seconds"] + list(self.epoch_train_seconds),
                "fit_seconds": self.before_resume["fit_seconds"] + time.perf_counter() - self._fit_started,
            }
        )
        save_checkpoint(state, self.last_checkpoint_file)
        if verbose:  # after every epoch, so that the log tells where a killed run resumes from
            self.logger.info(
                set_color("Saving last", "blue") + f": {self.last_checkpoint_file} (after epoch {epoch}; the resume point)"
            )

    def resume_checkpoint(self, resume_file):
        r"""Continue training from ``resume_file``: exactly from a ``-last.pth`` checkpoint, or, from a
        best checkpoint, RecBole's way (its epoch and early-stopping counter, fresh random generators)."""
        resume_file = str(resume_file)
        checkpoint = load_checkpoint(resume_file, self.device)
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            self.logger.warning(
                f"The checkpoint {resume_file} was written by model {checkpoint['config']['model']}, "
                f"not {self.config['model']}; loading its parameters may fail."
            )
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        restore_model(self.model, checkpoint)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("last"):
            self.saved_model_file = os.path.join(os.path.dirname(resume_file), checkpoint["best_checkpoint"])
            self.last_checkpoint_file = resume_file
            self.best_valid_result = checkpoint["best_valid_result"]
            self._pending_rng = checkpoint["rng"]
            # absent from -last checkpoints written before 2026-12-07: the earlier epochs' record is then unknown
            self.before_resume = {
                "valid_history": [[int(epoch), dict(result)] for epoch, result in checkpoint.get("valid_history", [])],
                "epoch_train_seconds": [float(s) for s in checkpoint.get("epoch_train_seconds", [])],
                "fit_seconds": float(checkpoint.get("fit_seconds", 0.0)),
            }
        else:
            self.saved_model_file = resume_file
            self.last_checkpoint_file = last_checkpoint_path(resume_file)
            self.logger.warning(
                f"{resume_file} is a best-model checkpoint: training goes on from the epoch after it with fresh "
                f"random generators, so the epochs trained after it are redone differently; resume from "
                f"{self.last_checkpoint_file} (written every epoch) to continue a run exactly"
            )
        self._resumed = True
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file, checkpoint = self._load_everywhere(model_file or self.saved_model_file)
            restore_model(self.model, checkpoint)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        candidates = getattr(getattr(eval_data, "_dataset", None), "candidate_items", None)
        if candidates is None:
            return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        # cold start (recbole_metammf.cold_start): rank among the part's held-out items (the result that
        # selects), then among all items, reported as all_items/<metric>. Never-trained items often tie
        # (ID-only models score them all alike): ties go by a random order per user, drawn from the seed, not by item id
        self._tie_order = torch.Generator(device=self.device).manual_seed(self.config["seed"])
        self._candidates = candidates.to(self.device)
        try:
            result = super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
            self._candidates = None
            everything = super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        finally:
            self._candidates = self._tie_order = None
        result.update({ALL_ITEMS_PREFIX + key: value for key, value in everything.items()})
        return result

    _candidates = None  # a boolean mask over item ids while evaluate() ranks a restricted candidate set
    _tie_order = None  # cold start: the generator that breaks ties of equal scores (see break_ties)

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self._tie_order is None:
            return interaction, scores, positive_u, positive_i
        if self._candidates is not None:
            scores[:, ~self._candidates] = -torch.inf
        return interaction, break_ties(scores, self._tie_order, max(self.config["topk"])), positive_u, positive_i
