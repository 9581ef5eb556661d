r"""Model and trainer lookup (plugin first, then RecBole), config checks and plain-data conversion."""

import difflib
import enum
import functools
import importlib
import math
import os
import pkgutil

import numpy as np
import torch
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_metammf.errors import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# the repository's folders (an editable install, a checkout), else the copies setup.py puts in the package
_DATA_ROOT = REPO_ROOT if os.path.isfile(os.path.join(REPO_ROOT, "properties", "overall.yaml")) else os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "_data"
)
PROPERTIES_DIR = os.path.join(_DATA_ROOT, "properties")
DATASET_DIR = os.path.join(_DATA_ROOT, "dataset")

_PLUGIN_MODELS = "recbole_metammf.model.general_recommender"
_RECBOLE_MODEL_PACKAGES = [
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.sequential_recommender",
    "recbole.model.knowledge_aware_recommender",
]


class DataError(ValueError):
    r"""The dataset is refused (e.g. a NaN in a feature); the message names the field and the item."""


def require_int(config, key, minimum, note=""):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        hint = f" ({note})" if note else ""
        raise ConfigError(f"{key}: got {value!r}; expected an integer >= {minimum}{hint}")


def require_number(config, key, test, accepted):
    r"""``config[key]`` is a finite number (not a bool) that passes ``test``; ``accepted`` says which, e.g. ``"a number > 0"``."""
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not test(value):
        raise ConfigError(f"{key}: got {value!r}; expected {accepted}")


MODALITY_SCALINGS = ("minmax", "standard", "l2", "none")


def modality_scaling(config):
    r"""``normalize_modalities`` as one of :data:`MODALITY_SCALINGS`: ``True`` is ``minmax`` (RecBole's
    ``normalize_field``, the paper's releases), ``False`` or null is ``none``."""
    value = config["normalize_modalities"]
    if value is True:
        return "minmax"
    if value is False or value is None:
        return "none"
    if isinstance(value, str) and value.lower() in MODALITY_SCALINGS:
        return value.lower()
    raise ConfigError(
        f"normalize_modalities: got {value!r}; expected one of {', '.join(MODALITY_SCALINGS)} (True = minmax, False = none)"
    )


def _module_names(package):
    module = importlib.import_module(package)
    return [name for _, name, _ in pkgutil.iter_modules(module.__path__)]


def known_model_names():
    r"""Class names of the plugin's models and RecBole's (for error messages)."""
    names = []
    for package in [_PLUGIN_MODELS] + _RECBOLE_MODEL_PACKAGES:
        module = importlib.import_module(package)
        names += [name for name in dir(module) if name[:1].isupper() and isinstance(getattr(module, name), type)]
    return sorted(set(names))


def get_model(model_name):
    r"""The model class named ``model_name``: the plugin's if it has one, otherwise RecBole's."""
    if model_name.lower() in _module_names(_PLUGIN_MODELS):
        module = importlib.import_module(f"{_PLUGIN_MODELS}.{model_name.lower()}")
        if hasattr(module, model_name):
            return getattr(module, model_name)
    try:
        return recbole_get_model(model_name)
    except (ValueError, AttributeError, ImportError):  # RecBole imports its exlib package (lightgbm) last
        close = difflib.get_close_matches(model_name, known_model_names(), n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(f"model: {model_name!r} is neither a recbole_metammf nor a RecBole model{hint}") from None


@functools.lru_cache(maxsize=None)
def get_trainer(model_type, model_name):
    r"""RecBole's trainer for the model, with checkpoints that load with ``weights_only=True``."""
    from recbole_metammf.trainer import SafeCheckpointMixin

    trainer_class = recbole_get_trainer(model_type, model_name)
    return type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})


def to_plain(value):
    r"""``value`` as plain Python data (str, int, float, bool, None, list, dict) for safe checkpoints."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)
