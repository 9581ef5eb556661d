r"""Entry points: train and test one model (plugin or RecBole built-in) on one dataset."""

import logging
import sys
from logging import getLogger

from recbole.data import create_dataset, data_preparation
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_metammf.config import Config
from recbole_metammf.trainer import load_checkpoint
from recbole_metammf.utils import get_model, get_trainer


def _train_and_test(config, saved=True, verbose=True):
    r"""Load the data, build the model, fit with early stopping on the validation split, and evaluate
    the test split once, with the best checkpoint when ``saved``."""
    logger = getLogger()
    dataset = create_dataset(config)
    if verbose:
        logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if verbose:
        logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
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
        "epochs": len(seconds),
        "train_seconds_per_epoch": sum(seconds) / len(seconds) if seconds else float("nan"),
        "valid_history": trainer.valid_history,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint": trainer.saved_model_file if saved else None,
    }


def run_recbole_metammf(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True):
    r"""Train and test ``model`` on ``dataset``, logging in RecBole's style; returns the results dict."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    result = _train_and_test(config, saved=saved)

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
    init_seed(config["seed"], config["reproducibility"])
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
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
