r"""Entry points: train and test one model (plugin or RecBole built-in) on one dataset, in one
process or, through RecBole's torch.distributed support, in several (:func:`run`)."""

import contextlib
import logging
import os
import shlex
import sys
from logging import getLogger

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_metammf.cold_start import create_dataset, data_preparation, forget_items
from recbole_metammf.compat import make_recbole_dirs
from recbole_metammf.config import Config, distributed_backend_and_device
from recbole_metammf.config_checks import check_topk_against_items
from recbole_metammf.trainer import load_checkpoint, restore_model
from recbole_metammf.utils import ConfigError, get_model, get_trainer, require_int, to_plain


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
    check_topk_against_items(config, dataset)
    if verbose:
        logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    seed_everything(config, offset=config["local_rank"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    forget_items(model, dataset)  # cold start: the held-out items' ID rows are zero
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


# the command of a multi-process run, for the log of each of its processes (they are started anew by spawn)
_COMMAND_ENV = "RECBOLE_METAMMF_COMMAND"


def command_line():
    r"""The command that started this program, as a shell line that repeats it. ``sys.orig_argv``:
    the scripts take their own options (``--model``, ``--dataset``, ``--config_files``, ...) out of
    ``sys.argv`` before RecBole's Config reads it."""
    return os.environ.get(_COMMAND_ENV) or shlex.join(sys.orig_argv)


@contextlib.contextmanager
def _command_for_children():
    previous = os.environ.get(_COMMAND_ENV)
    os.environ[_COMMAND_ENV] = command_line()
    try:
        yield
    finally:
        if previous is None:
            del os.environ[_COMMAND_ENV]
        else:
            os.environ[_COMMAND_ENV] = previous


def describe_device(device):
    r"""The device a run uses, for its log: ``cuda:0 (NVIDIA H200)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'' if threads == 1 else 's'})"


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
    logger.info(f"command: {command_line()}")
    logger.info(config)
    logger.info(set_color("device", "yellow") + f": {describe_device(config['device'])}")

    result = _train_and_test(config, saved=saved, resume=resume)

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {result['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {result['test_result']}")
    logger.info(
        set_color("train time", "yellow")
        + f": {result['train_seconds_per_epoch']:.2f} s/epoch over {result['epochs']} epochs"
    )
    return result


def run(
    model,
    dataset,
    config_file_list=None,
    config_dict=None,
    saved=True,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port=5678,
    group_offset=0,
):
    r"""RecBole's ``run`` for this package: :func:`run_recbole_metammf` in this process, or in ``nproc``
    processes of a ``world_size``-process group (default ``world_size = nproc``: one node).

    Each process takes its share of every training batch and of the evaluated users (RecBole's
    DistributedSampler; the batch per process is ``train_batch_size / world_size``) and
    DistributedDataParallel averages the gradients, so all processes keep the same parameters.
    Processes use one GPU each with nccl, or the CPU with gloo. On several nodes, start the same
    command on each with the first node's ``ip`` and ``port`` and ``group_offset`` = the global rank
    of the node's first process. Returns the results dict of the node's first process, as plain data.
    """
    distributed = not (nproc == 1 and world_size <= 0)  # RecBole's test
    if not distributed:
        return run_recbole_metammf(model, dataset, config_file_list, config_dict, saved)
    world_size = nproc if world_size == -1 else world_size
    launch = _launch_settings(nproc, world_size, ip, port, group_offset)
    # the settings and the device plan checked once here, so that a bad value stops with its message
    # instead of one traceback per process
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    distributed_backend_and_device({**config.final_config_dict, **launch, "local_rank": 0})
    make_recbole_dirs(config)

    queue = mp.get_context("spawn").SimpleQueue()  # spawn: CUDA cannot be used in forked processes
    config_dict = {**(config_dict or {}), **launch}
    with _command_for_children():
        processes = mp.spawn(
            _run_process, args=(model, dataset, config_file_list, config_dict, saved, queue), nprocs=nproc, join=False
        )
    # read the result while waiting: a result larger than the pipe's buffer (a long valid_history)
    # blocks its writer until it is read, so RecBole's join-then-read can wait forever
    result = None
    while not processes.join(timeout=1):  # raises when a process failed, after stopping the others
        if result is None and not queue.empty():
            result = queue.get()
    if result is None and not queue.empty():
        result = queue.get()
    return result


def _launch_settings(nproc, world_size, ip, port, group_offset):
    r"""The arguments of :func:`run`, checked, as the config keys RecBole's distributed path reads."""
    given = {"nproc": nproc, "world_size": world_size, "group_offset": group_offset}
    given["port"] = int(port) if isinstance(port, str) and port.isdigit() else port  # RecBole passes "5678"
    require_int(given, "nproc", 1)
    require_int(given, "world_size", nproc if isinstance(nproc, int) else 1, "the processes on all nodes; -1 = nproc")
    require_int(given, "group_offset", 0, "the global rank of this node's first process")
    require_int(given, "port", 1, "a free TCP port on the first node")
    if group_offset + nproc > world_size:
        raise ConfigError(
            f"group_offset: got {group_offset}; with nproc={nproc} the ranks would pass world_size={world_size} "
            f"(expected group_offset <= {world_size - nproc})"
        )
    if not isinstance(ip, str) or not ip:
        raise ConfigError(f"ip: got {ip!r}; expected the address of the first node, e.g. localhost")
    return {"nproc": nproc, "world_size": world_size, "offset": group_offset, "ip": ip, "port": given["port"]}


def _run_process(local_rank, model, dataset, config_file_list, config_dict, saved, queue):
    r"""One process of :func:`run` (started by ``torch.multiprocessing.spawn`` with its local rank)."""
    try:
        result = run_recbole_metammf(model, dataset, config_file_list, {**config_dict, "local_rank": local_rank}, saved)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if local_rank == 0:  # as RecBole: the node's first process answers
        queue.put(plain_result(result))


def plain_result(result):
    r"""The results dict as plain Python data (dicts, lists, tuples, numbers, strings), so that it
    crosses process boundaries without tensors or RecBole objects."""
    plain = to_plain({key: value for key, value in result.items() if key != "valid_history"})
    plain["valid_history"] = [(int(epoch), to_plain(valid)) for epoch, valid in result["valid_history"]]
    return plain


def objective_function(config_dict=None, config_file_list=None, saved=True, verbose=False):
    r"""One quiet run for sweeps and benchmarks: the same data, trainer and evaluator as
    :func:`run_recbole_metammf`, returning the same dict (valid results select, test is reported).
    ``verbose``: log the dataset, the model and each epoch (RecBole's INFO lines; the log file and the console)."""
    config = Config(config_dict=config_dict, config_file_list=config_file_list)
    seed_everything(config)
    logger = getLogger()
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)
    init_logger(config)
    logging.basicConfig(level=logging.ERROR)
    return _train_and_test(config, saved=saved, verbose=verbose)


def load_data_and_model(model_file):
    r"""Rebuild the config, data and model of a checkpoint written by this package (safe load).
    The settings are the checkpoint's: the command line of the calling program is not read."""
    checkpoint = load_checkpoint(model_file)
    saved = checkpoint["config"]
    config = Config(model=saved["model"], dataset=saved["dataset"], config_dict=saved["external"], command_line=False)
    seed_everything(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    seed_everything(config)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    restore_model(model, checkpoint)
    return config, model, dataset, train_data, valid_data, test_data
