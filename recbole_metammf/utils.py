r"""The package's data folders, config value checks and plain-data conversion."""

import enum
import math

import numpy as np
import torch

from recbole_metammf.errors import ConfigError

from recbole_metammf.paths import DATASET_DIR, PROPERTIES_DIR, REPO_ROOT  # noqa: F401  (re-exported)


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
