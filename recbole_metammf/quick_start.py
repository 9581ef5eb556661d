r"""Entry points: train and test one model (plugin or RecBole built-in) on one dataset, in one
process or, through RecBole's torch.distributed support, in several (:func:`run`); rebuild a trained
model from its checkpoint (:func:`load_data_and_model`). Each goes through :mod:`recbole_metammf.pipeline`."""

import logging
from logging import getLogger
from typing import Any, Dict, List, Optional, Tuple

import torch
from recbole.utils import get_environment, init_logger, set_color

from recbole_metammf import distributed
from recbole_metammf.checkpoint import load_checkpoint, rebuild_settings, restore_model
from recbole_metammf.compat import make_recbole_dirs
from recbole_metammf.config import Config
from recbole_metammf.distributed import command_line, plain_result  # noqa: F401 - part of this module's API
from recbole_metammf.pipeline import build, build_model, load_data, make_config, seed_everything, train_and_test
from recbole_metammf.utils import ConfigError

__all__ = [
    "seed_everything", "resume_settings", "command_line", "describe_device", "run_recbole_metammf", "run",
    "plain_result", "objective_function", "load_data_and_model",
]


def resume_settings(
    resume: str, model: Any = None, dataset: Optional[str] = None, config_dict: Optional[Dict[str, Any]] = None
) -> Tuple[str, str, Dict[str, Any]]:
    r"""The model, dataset and config dict that continue the run of checkpoint ``resume``: the
    checkpoint's own settings, overridden by ``config_dict`` (e.g. a larger ``epochs``)."""
    saved = load_checkpoint(resume)["config"]
    for key, given in [("model", getattr(model, "__name__", model)), ("dataset", dataset)]:
        if given is not None and given.lower() != saved[key].lower():
            raise ConfigError(f"{key}: got {given!r}, but the checkpoint {resume} was written for {saved[key]!r}")
    return saved["model"], saved["dataset"], {**rebuild_settings(saved), **(config_dict or {})}


def describe_device(device: torch.device) -> str:
    r"""The device a run uses, for its log: ``cuda:0 (NVIDIA H200)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'' if threads == 1 else 's'})"


def start_logging(config):
    r"""RecBole's ``init_logger`` for the run of ``config``: a log file of its own and the console. The
    handlers of an earlier run in this process are removed (and its file closed) first: RecBole's
    ``logging.basicConfig`` does nothing once the root logger has handlers, so a second run in one
    process (a notebook, a script training two models) wrote into the first run's file and left its own
    empty. RecBole's folders are made first: two runs started together raced in its ``ensure_dir``."""
    make_recbole_dirs(config)
    logger = getLogger()
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
        handler.close()
    init_logger(config)
    for message in config.ignored_key_messages:
        logger.warning(message)


def run_recbole_metammf(
    model: Any = None,
    dataset: Optional[str] = None,
    config_file_list: Optional[List[str]] = None,
    config_dict: Optional[Dict[str, Any]] = None,
    saved: bool = True,
    resume: Optional[str] = None,
) -> Dict[str, Any]:
    r"""Train and test ``model`` on ``dataset``, logging in RecBole's style; returns the results dict.

    ``resume``: a checkpoint to continue from (``<name>-last.pth`` continues exactly); model, dataset
    and settings default to the checkpoint's, ``config_dict`` and the command line override them.
    """
    if resume is not None:
        model, dataset, config_dict = resume_settings(resume, model, dataset, config_dict)
    config = make_config(model, dataset, config_file_list, config_dict)
    start_logging(config)
    logger = getLogger()
    logger.info(f"command: {command_line()}")
    logger.info(config)
    logger.info(set_color("device", "yellow") + f": {describe_device(config['device'])}")

    result = train_and_test(build(config, verbose=True), saved=saved, resume=resume)

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {result['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {result['test_result']}")
    logger.info(
        set_color("train time", "yellow")
        + f": {result['train_seconds_per_epoch']:.2f} s/epoch over {result['epochs']} epochs"
    )
    return result


def run(
    model: Any,
    dataset: Optional[str],
    config_file_list: Optional[List[str]] = None,
    config_dict: Optional[Dict[str, Any]] = None,
    saved: bool = True,
    nproc: int = 1,
    world_size: int = -1,
    ip: str = "localhost",
    port: int = 5678,
    group_offset: int = 0,
) -> Optional[Dict[str, Any]]:
    r"""RecBole's ``run`` for this package: :func:`run_recbole_metammf` in this process, or in ``nproc``
    processes of a ``world_size``-process group (default ``world_size = nproc``: one node).

    Each process takes its share of every training batch and of the evaluated users (RecBole's
    DistributedSampler; the batch per process is ``train_batch_size / world_size``) and
    DistributedDataParallel averages the gradients, so all processes keep the same parameters.
    Processes use one GPU each with nccl, or the CPU with gloo. On several nodes, start the same
    command on each with the first node's ``ip`` and ``port`` and ``group_offset`` = the global rank
    of the node's first process. Returns the results dict of the node's first process, as plain data.
    """
    if not distributed.is_distributed(nproc, world_size):
        return run_recbole_metammf(model, dataset, config_file_list, config_dict, saved)
    return distributed.launch(model, dataset, config_file_list, config_dict, saved, nproc, world_size, ip, port, group_offset)


def objective_function(
    config_dict: Optional[Dict[str, Any]] = None,
    config_file_list: Optional[List[str]] = None,
    saved: bool = True,
    verbose: bool = False,
    command_line: bool = True,
    resume: Optional[str] = None,
) -> Dict[str, Any]:
    r"""One quiet run for sweeps and benchmarks: the same data, trainer and evaluator as
    :func:`run_recbole_metammf`, returning the same dict (valid results select, test is reported).
    ``verbose``: log the dataset, the model and each epoch (RecBole's INFO lines; the log file and the console).
    ``command_line=False``: only ``config_dict`` and the files, not the program's ``--key=value`` arguments.
    ``resume``: a checkpoint of this same run to continue from (the caller checks that it is this run's)."""
    config = make_config(config_dict=config_dict, config_file_list=config_file_list, command_line=command_line)
    start_logging(config)
    logging.basicConfig(level=logging.ERROR)
    return train_and_test(build(config, verbose=verbose), saved=saved, verbose=verbose, resume=resume)


def load_data_and_model(model_file: str) -> Tuple[Config, torch.nn.Module, Any, Any, Any, Any]:
    r"""Rebuild the config, data and model of a checkpoint written by this package (safe load).
    The settings are the checkpoint's: the command line of the calling program is not read."""
    checkpoint = load_checkpoint(model_file)
    saved = checkpoint["config"]
    config = make_config(saved["model"], saved["dataset"], config_dict=rebuild_settings(saved), command_line=False)
    data = load_data(config)
    model = build_model(config, data)
    restore_model(model, checkpoint)
    return config, model, data.dataset, data.train, data.valid, data.test
