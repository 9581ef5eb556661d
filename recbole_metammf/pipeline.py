r"""The one training pipeline: config -> dataset -> loaders -> model -> trainer -> fit and test.

Every way of training goes through it: the command line (:func:`recbole_metammf.quick_start.run_recbole_metammf`,
one process or several), :func:`recbole_metammf.quick_start.objective_function` (benchmarks, the sweep's
final test), a sweep's trial, :func:`recbole_metammf.quick_start.load_data_and_model` and ``bench/``.
Each step is a function, so that a caller can time it (``bench/epoch.py``) or swap the trainer class
(a sweep's trial reports to Ray Tune):

* :func:`make_config` — the plugin's :class:`~recbole_metammf.config.Config`, then the seeds;
  ``command_line=False`` reads no ``--key=value`` from ``sys.argv`` (a run inside another program);
* :func:`load_data` — the dataset (warm or cold start) and its three loaders;
* :func:`build_model` — the model, from the seed again, with the cold items' ID rows zero;
* :func:`build_trainer` — RecBole's trainer for it with the plugin's checkpoints;
* :func:`build` — the four; :func:`train_and_test` — fit with early stopping, test once, and the
  results dict (what the benchmark records: the best checkpoint, epochs, seconds per epoch, the
  parameter counts, the validation history and the final config as plain data).
"""

from dataclasses import dataclass
from logging import getLogger
from typing import Any, Dict, List, Optional, Type

import torch
from recbole.utils import init_seed

from recbole_metammf import analysis
from recbole_metammf.cold_start import create_dataset, data_preparation, forget_items
from recbole_metammf.config import Config
from recbole_metammf.config_checks import check_topk_against_items
from recbole_metammf.registry import get_model, get_trainer
from recbole_metammf.utils import to_plain


def seed_everything(config: Config, offset: int = 0) -> None:
    r"""RecBole's ``init_seed``, plus torch's deterministic algorithms when ``reproducibility`` is on.

    RecBole only fixes cuDNN. On CPU, torch accumulates the gradients of index lookups (embeddings,
    graph aggregation) with parallel atomic adds once a batch is large enough, so two runs with one
    seed drift apart in the last bits and then in the metrics (measured on tiktok: recall@20 0.0533
    vs 0.0537 after 3 epochs of MetaMMF_GCN). The deterministic kernels are serial there.
    """
    init_seed(config["seed"] + offset, config["reproducibility"])
    torch.use_deterministic_algorithms(bool(config["reproducibility"]), warn_only=True)


def make_config(model: Any = None, dataset: Optional[str] = None, config_file_list: Optional[List[str]] = None,
                config_dict: Optional[Dict[str, Any]] = None, command_line: bool = True) -> Config:
    r"""The checked :class:`Config` of a run, with every generator seeded from it."""
    config = Config(
        model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict, command_line=command_line
    )
    seed_everything(config)
    return config


@dataclass
class Data:
    r"""A loaded dataset and its training, validation and test loaders."""

    dataset: Any
    train: Any
    valid: Any
    test: Any


def load_data(config: Config, verbose: bool = False) -> Data:
    r"""The dataset (:func:`recbole_metammf.cold_start.create_dataset`: RecBole's, or the cold-start
    split) and its loaders; ``topk`` is checked against the number of items first."""
    dataset = create_dataset(config)
    check_topk_against_items(config, dataset)
    if verbose:
        getLogger().info(dataset)
    train, valid, test = data_preparation(config, dataset)
    return Data(dataset, train, valid, test)


def build_model(config: Config, data: Data, verbose: bool = False) -> torch.nn.Module:
    r"""The model, initialised from the seed (offset by the process's rank), on the config's device;
    in the cold-start protocol the held-out items' ID rows are zero."""
    seed_everything(config, offset=config["local_rank"])
    model = get_model(config["model"])(config, data.train._dataset).to(config["device"])
    forget_items(model, data.dataset)
    if verbose:
        getLogger().info(model)
    return model


def build_trainer(config: Config, model: torch.nn.Module, trainer_class: Optional[Type] = None):
    r"""RecBole's trainer for the model with the plugin's checkpoints (:func:`recbole_metammf.registry.get_trainer`),
    or ``trainer_class``."""
    return (trainer_class or get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)


@dataclass
class Pipeline:
    r"""Everything a run is built from: config, data, model and trainer."""

    config: Config
    data: Data
    model: torch.nn.Module
    trainer: Any


def build(config: Config, verbose: bool = False, trainer_class: Optional[Type] = None) -> Pipeline:
    r"""Data, model and trainer of ``config`` (:func:`load_data`, :func:`build_model`, :func:`build_trainer`)."""
    data = load_data(config, verbose=verbose)
    model = build_model(config, data, verbose=verbose)
    return Pipeline(config, data, model, build_trainer(config, model, trainer_class))


def train_and_test(
    pipeline: Pipeline, saved: bool = True, verbose: bool = True, resume: Optional[str] = None, test: bool = True
) -> Dict[str, Any]:
    r"""Fit with early stopping on the validation split, and evaluate the test split once (``test``),
    with the best checkpoint when ``saved``. With ``resume``, training continues from that checkpoint
    (see :meth:`recbole_metammf.trainer.SafeCheckpointMixin.resume_checkpoint`).

    Returns the results dict: the validation and test results, the epochs trained by this call, seconds
    per epoch, the validation history, the parameter counts (``fusion_tower_parameters``: the meta
    fusion tower's, None without one), the checkpoints and the final config (``config``, plain data).
    ``before_resume``: what the epochs before ``first_epoch`` recorded, when resumed from a ``-last``
    checkpoint (validation history, epoch seconds, seconds in ``fit``; empty lists and 0 otherwise)."""
    config, data, model, trainer = pipeline.config, pipeline.data, pipeline.model, pipeline.trainer
    if resume is not None:
        trainer.resume_checkpoint(resume)
    first_epoch = trainer.start_epoch
    show_progress = verbose and config["show_progress"]
    best_valid_score, best_valid_result = trainer.fit(
        data.train, data.valid, verbose=verbose, saved=saved, show_progress=show_progress
    )
    test_result = trainer.evaluate(data.test, load_best_model=saved, show_progress=show_progress) if test else None
    seconds = trainer.epoch_train_seconds
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "epochs": len(seconds),  # trained by this call: from first_epoch on
        "first_epoch": first_epoch,
        "train_seconds_per_epoch": sum(seconds) / len(seconds) if seconds else float("nan"),
        "valid_history": trainer.valid_history,
        "before_resume": trainer.before_resume,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "fusion_tower_parameters": analysis.fusion_tower_parameters(model),
        "checkpoint": trainer.saved_model_file if saved else None,
        "last_checkpoint": trainer.last_checkpoint_file if saved else None,
        "config": to_plain(config.final_config_dict),
    }
