r"""Entry points: train and test one model (plugin or RecBole built-in) on one dataset."""

import logging
import sys
from logging import getLogger

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_metammf.config import Config
from recbole_metammf.trainer import load_checkpoint, restore_model
from recbole_metammf.utils import ConfigError, get_model, get_trainer


def seed_everything(config, offset=0):
    r"""RecBole's ``init_seed``, plus torch's deterministic algorithms when ``reproducibility`` is on.

    RecBole only fixes cuDNN. On CPU, torch accumulates the gradients of index lookups (embeddings,
    graph aggregation) with parallel atomic adds once a batch is large enough, so two runs with one
    seed drift apart in the last bits and then in the metrics (measured on tiktok: recall@20 0.0533
    vs 0.0537 after 3 epochs of MetaMMF_GCN). The deterministic kernels are serial there.
    """
    init_seed(config["seed"] + offset, config["reproducibility"])
    torch.use_deterministic_algorithms(bool(config["reproducibility"]), warn_only=True)


def _train_and_test(config, saved=True, verbose=True, resume=None):
    r"""Load the data, build the model, fit with early stopping on the validation split, and evaluate
    the test split once, with the best checkpoint when ``saved``. With ``resume``, training continues
    from that checkpoint (see :meth:`SafeCheckpointMixin.resume_checkpoint`)."""
    logger = getLogger()
    dataset = create_dataset(config)
    if verbose:
        logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    seed_everything(config, offset=config["local_rank"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if verbose:
        logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if resume is not None:
        trainer.resume_checkpoint(resume)
    first_epoch = trainer.start_epoch
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, verbose=verbose, saved=saved, show_progress=verbose and config["show_progress"]
    )
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=verbose and config["show_progress"]
    )
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
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint": trainer.saved_model_file if saved else None,
        "last_checkpoint": trainer.last_checkpoint_file if saved else None,
    }


def resume_settings(resume, model=None, dataset=None, config_dict=None):
    r"""The model, dataset and config dict that continue the run of checkpoint ``resume``: the
    checkpoint's own settings, overridden by ``config_dict`` (e.g. a larger ``epochs``)."""
    saved = load_checkpoint(resume)["config"]
    for key, given in [("model", getattr(model, "__name__", model)), ("dataset", dataset)]:
        if given is not None and given.lower() != saved[key].lower():
            raise ConfigError(f"{key}: got {given!r}, but the checkpoint {resume} was written for {saved[key]!r}")
    return saved["model"], saved["dataset"], {**saved["external"], **(config_dict or {})}


def run_recbole_metammf(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, resume=None):
    r"""Train and test ``model`` on ``dataset``, logging in RecBole's style; returns the results dict.

    ``resume``: a checkpoint to continue from (``<name>-last.pth`` continues exactly); model, dataset
    and settings default to the checkpoint's, ``config_dict`` and the command line override them.
    """
    if resume is not None:
        model, dataset, config_dict = resume_settings(resume, model, dataset, config_dict)
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    seed_everything(config)
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    result = _train_and_test(config, saved=saved, resume=resume)

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {result['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {result['test_result']}")
    logger.info(
        set_color("train time", "yellow")
        + f": {result['train_seconds_per_epoch']:.2f} s/epoch over {result['epochs']} epochs"
    )
    return result


def objective_function(config_dict=None, config_file_list=None, saved=True):
    r"""One quiet run for sweeps and benchmarks: the same data, trainer and evaluator as
    :func:`run_recbole_metammf`, returning the same dict (valid results select, test is reported)."""
    config = Config(config_dict=config_dict, config_file_list=config_file_list)
    seed_everything(config)
    logger = getLogger()
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
    init_logger(config)
    logging.basicConfig(level=logging.ERROR)
    return _train_and_test(config, saved=saved, verbose=False)


def load_data_and_model(model_file):
    r"""Rebuild the config, data and model of a checkpoint written by this package (safe load)."""
    checkpoint = load_checkpoint(model_file)
    saved = checkpoint["config"]
    config = Config(model=saved["model"], dataset=saved["dataset"], config_dict=saved["external"])
    seed_everything(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    seed_everything(config)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    restore_model(model, checkpoint)
    return config, model, dataset, train_data, valid_data, test_data
