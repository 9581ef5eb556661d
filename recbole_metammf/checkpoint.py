r"""The checkpoint format: safe, atomic files of tensors and plain values, and every random generator.

RecBole 1.2.1 pickles its whole ``Config`` object into each checkpoint and reloads it with a plain
``torch.load``; since torch 2.6 that load defaults to ``weights_only=True`` and fails. Here a
checkpoint holds only tensors and plain Python values, is written to a temporary file and renamed
(a killed run leaves its last good checkpoint), and is always read with ``weights_only=True``.

Besides the best checkpoint (``<name>.pth``, used for testing), a run keeps ``<name>-last.pth``:
the state after the last finished epoch, with the early-stopping counter, the optimizer and every
random generator (:func:`rng_state`), so that resuming from it continues the run exactly. The
trainer that writes and reads them is :class:`recbole_metammf.trainer.SafeCheckpointMixin`.
"""

import os
import pickle
import random

import numpy as np
import scipy.sparse as sp
import torch

from recbole_metammf.files import read_yaml
from recbole_metammf.paths import model_yaml
from recbole_metammf.utils import to_plain

LAST_SUFFIX = "-last.pth"


class CheckpointError(ValueError):
    r"""A file that is not a checkpoint of this package (e.g. RecBole's own, which pickles its Config)."""



def last_checkpoint_path(best_path):
    r"""Where the per-epoch "last" checkpoint of the run whose best checkpoint is ``best_path`` goes."""
    root, _ = os.path.splitext(str(best_path))
    return root + LAST_SUFFIX


def rng_state(train_data=None):
    r"""Every random generator a training epoch draws from, as plain data and tensors:
    Python's and NumPy's global generators (RecBole's negative sampler uses ``np.random``), torch's
    (dropout, initialisation), CUDA's, and the training loader's own shuffling generator."""
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *(to_plain(v) for v in numpy_state[2:])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    generator = getattr(train_data, "generator", None)
    if generator is not None:
        state["dataloader"] = generator.get_state()
    return state


def set_rng_state(state, train_data=None):
    r"""Restore what :func:`rng_state` recorded."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    # states are CPU byte tensors; a checkpoint loaded with map_location="cuda" moved them
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    generator = getattr(train_data, "generator", None)
    if generator is not None and "dataloader" in state:
        generator.set_state(state["dataloader"].cpu())


def _plain_other(value):
    r"""One of a model's ``other_parameter()`` values as data the safe loader reads: numpy arrays and
    scipy sparse matrices (ItemKNN, EASE, ...) become tagged tensors."""
    if value is None or isinstance(value, (torch.Tensor, bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__numpy__": torch.from_numpy(np.ascontiguousarray(value))}  # object arrays raise TypeError
    if sp.issparse(value):
        coo = value.tocoo()
        return {
            "__scipy__": value.format,
            "row": torch.from_numpy(coo.row.astype(np.int64)),
            "col": torch.from_numpy(coo.col.astype(np.int64)),
            "data": torch.from_numpy(coo.data),
            "shape": list(coo.shape),
        }
    if isinstance(value, dict):
        return {key: _plain_other(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_other(item) for item in value]
    raise TypeError(type(value).__name__)


def _restore_other(value):
    if isinstance(value, dict) and "__numpy__" in value:
        return value["__numpy__"].cpu().numpy()
    if isinstance(value, dict) and "__scipy__" in value:
        coo = sp.coo_matrix((value["data"].cpu().numpy(), (value["row"].cpu().numpy(), value["col"].cpu().numpy())), shape=value["shape"])
        return coo.asformat(value["__scipy__"])
    if isinstance(value, dict):
        return {key: _restore_other(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore_other(item) for item in value]
    return value


def model_state(model):
    r"""What a checkpoint keeps of ``model``: its state dict and its ``other_parameter()`` values (caches
    and non-trainable matrices of RecBole's models), leaving out those that are not data (submodules,
    object arrays), which the model's constructor rebuilds."""
    other = {}
    for key, value in (model.other_parameter() or {}).items():
        try:
            other[key] = _plain_other(value)
        except TypeError:
            pass
    return {"state_dict": model.state_dict(), "other_parameter": other}


def restore_model(model, checkpoint):
    r"""Load what :func:`model_state` saved into ``model``."""
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(_restore_other(checkpoint.get("other_parameter")) or None)


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


# what every checkpoint of this package holds (see SafeCheckpointMixin._checkpoint_state)
CHECKPOINT_KEYS = ("config", "epoch", "cur_step", "best_valid_score", "state_dict", "optimizer")


def _torch_load_error(error):
    r"""The informative part of torch.load's message: its weights-only errors open with a long hint to
    load unsafely, which this package never does."""
    text = str(error)
    _, marker, detail = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (detail if marker else text).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    line = lines[0].split(". ")[0] if len(lines[0]) > 120 else lines[0]
    # torch's own errors speak for themselves; a KeyError's message alone is a bare number
    return line if isinstance(error, (RuntimeError, pickle.UnpicklingError)) else f"{type(error).__name__}: {line}"


def load_checkpoint(path, map_location="cpu"):
    r"""Read a checkpoint with the safe loader (no arbitrary unpickling). Anything else (a directory,
    a truncated or damaged file, RecBole's own checkpoints, another program's file) is a
    :class:`CheckpointError` naming the path; a missing file stays a ``FileNotFoundError``."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory, not a checkpoint; give a .pth file written by recbole-metammf")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except PermissionError as error:
        raise CheckpointError(f"{path} cannot be read: {error.strerror}") from None
    except pickle.UnpicklingError as error:
        # RecBole's own checkpoints pickle their Config: say so instead of torch's long hint to unpickle anyway
        raise CheckpointError(
            f"{path} is not a checkpoint of recbole-metammf (it does not load with weights_only=True; "
            f"RecBole's own checkpoints pickle their Config object): {_torch_load_error(error)}"
        ) from None
    except Exception as error:  # a cut or damaged file: RuntimeError, OSError, EOFError, KeyError, ... by where it breaks
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, damaged, or not written by torch): {_torch_load_error(error)}"
        ) from None
    config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    if (
        not isinstance(config, dict)
        or not {"model", "dataset", "external"} <= set(config)
        or not all(key in checkpoint for key in CHECKPOINT_KEYS)
    ):
        holds = f"a dict of {sorted(map(str, checkpoint))[:8]}" if isinstance(checkpoint, dict) else f"a {type(checkpoint).__name__}"
        raise CheckpointError(
            f"{path} is not a checkpoint of recbole-metammf: it holds {holds}, not {', '.join(CHECKPOINT_KEYS)}"
        )
    return checkpoint


# set by recbole_metammf.distributed for each process of a multi-process run: how that run was launched, not a
# setting of the model; left out of a checkpoint's inputs so that it reloads in one process
LAUNCH_KEYS = ("local_rank", "world_size", "ip", "port", "nproc", "offset")


def checkpoint_config(config):
    r"""What a checkpoint records of the config: every final value as plain data, and the inputs
    (model, dataset, the user's own settings) that rebuild the same :class:`Config`."""
    external = {key: value for key, value in config.external_config_dict.items() if key not in LAUNCH_KEYS}
    return {
        "final": to_plain(config.final_config_dict),
        "model": config["model"],
        "dataset": config["dataset"],
        "external": to_plain(external),
    }


# Model keys added after checkpoints recorded their settings, with the behaviour the code had before the
# key existed: a checkpoint whose recorded settings lack one was trained that way, whatever today's default.
KEYS_ADDED_LATER = {
    "negative_slope": 0.01,  # 2026-12-04: the graph layers' LeakyReLU was PyTorch's default before
    "drop_batch_edges": False,  # 2026-12-04: the whole training graph was used before
}


def rebuild_settings(saved):
    r"""The config dict that rebuilds a checkpoint's model: the values it trained with for every key of the
    plugin model's ``properties/model/<Model>.yaml`` (for a key added later, :data:`KEYS_ADDED_LATER`'s
    value, the behaviour before it), then the user's own settings. So a checkpoint keeps its model when a
    later release changes a default (e.g. ``standardize_meta``); checkpoints written before ``final`` was
    recorded rebuild from the user's settings alone."""
    path = model_yaml(saved["model"])
    final = saved.get("final") or {}
    defaults = read_yaml(path) if os.path.isfile(path) else {}
    pinned = {key: final[key] for key in defaults if key in final}
    if final:
        pinned.update({key: value for key, value in KEYS_ADDED_LATER.items() if key in defaults and key not in final})
    return {**pinned, **saved["external"]}


def to_device(value, device):
    r"""``value`` (a checkpoint, or a part of one) with every tensor moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [to_device(item, device) for item in value]
    return value
