r"""Training in several processes through RecBole's torch.distributed support: the launch of the
processes (:func:`launch`, behind :func:`recbole_metammf.quick_start.run`), one per local rank, each
running :func:`recbole_metammf.quick_start.run_recbole_metammf`. The trainer wraps its model in
DistributedDataParallel itself (:func:`recbole_metammf.trainer.distributed_data_parallel`).

Each process takes its share of every training batch and of the evaluated users (RecBole's
DistributedSampler) and DistributedDataParallel averages the gradients, so all processes keep the
same parameters; on CPU (gloo) as on GPUs (nccl). Only global rank 0 writes checkpoints.
"""

import contextlib
import os
import shlex
import sys
from typing import Any, Dict

import torch.distributed as dist
import torch.multiprocessing as mp

from recbole_metammf.compat import make_recbole_dirs
from recbole_metammf.config import Config, distributed_backend_and_device
from recbole_metammf.utils import ConfigError, require_int, to_plain

# the command of a multi-process run, for the log of each of its processes (they are started anew by spawn)
_COMMAND_ENV = "RECBOLE_METAMMF_COMMAND"


def command_line() -> str:
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


def is_distributed(nproc: int, world_size: int) -> bool:
    r"""Whether these launch settings ask for several processes (RecBole's test)."""
    return not (nproc == 1 and world_size <= 0)


def launch(model, dataset, config_file_list, config_dict, saved, nproc, world_size, ip, port, group_offset):
    r""":func:`recbole_metammf.quick_start.run_recbole_metammf` with these arguments in ``nproc`` processes
    of a ``world_size``-process group (-1: ``nproc``, one node), the launch settings as
    :func:`recbole_metammf.quick_start.run` takes them. Returns the results dict of the node's first
    process, as plain data, or None when it sent none."""
    world_size = nproc if world_size == -1 else world_size
    settings = _launch_settings(nproc, world_size, ip, port, group_offset)
    # the settings and the device plan checked once here, so that a bad value stops with its message
    # instead of one traceback per process
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    distributed_backend_and_device({**config.final_config_dict, **settings, "local_rank": 0})
    make_recbole_dirs(config)

    queue = mp.get_context("spawn").SimpleQueue()  # spawn: CUDA cannot be used in forked processes
    config_dict = {**(config_dict or {}), **settings}
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
    r"""The arguments of :func:`launch`, checked, as the config keys RecBole's distributed path reads."""
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
    r"""One process of :func:`launch` (started by ``torch.multiprocessing.spawn`` with its local rank)."""
    from recbole_metammf import quick_start  # the entry point, looked up when the process runs

    try:
        result = quick_start.run_recbole_metammf(
            model, dataset, config_file_list, {**config_dict, "local_rank": local_rank}, saved
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if local_rank == 0:  # as RecBole: the node's first process answers
        queue.put(plain_result(result))


def plain_result(result: Dict[str, Any]) -> Dict[str, Any]:
    r"""The results dict as plain Python data (dicts, lists, tuples, numbers, strings), so that it
    crosses process boundaries without tensors or RecBole objects."""
    plain = to_plain({key: value for key, value in result.items() if key != "valid_history"})
    plain["valid_history"] = [(int(epoch), to_plain(valid)) for epoch, valid in result["valid_history"]]
    return plain

