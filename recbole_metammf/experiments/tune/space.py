r"""The search-space language of a sweep (YAML, one key per hyper-parameter) and its translation into
Ray Tune's ``param_space``."""

import os

from recbole_metammf.errors import ConfigError
from recbole_metammf.files import read_yaml
from recbole_metammf.paths import TUNE_SPACES_DIR

SPACE_KINDS = ("grid", "range", "choice", "uniform", "loguniform")


def _number(path, key, kind, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: {key}: {kind} bounds must be numbers, got {value!r}")
    return value


def parse_space(spec, path="search space"):
    r"""Turn the YAML search space (a dict) into Ray Tune's ``param_space``.

    Each value is either a mapping with exactly one of ``grid``, ``range``, ``choice``, ``uniform``,
    ``loguniform``, or a plain value that every trial gets."""
    from ray import tune

    space = {}
    for key, value in spec.items():
        if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SPACE_KINDS):
            if isinstance(value, dict) and any(k in SPACE_KINDS for k in value):
                raise ConfigError(f"{path}: {key}: give exactly one of {', '.join(SPACE_KINDS)}, got {sorted(value)}")
            space[key] = value  # fixed value (a dict-valued key such as eval_args stays as it is)
            continue
        kind, args = next(iter(value.items()))
        if kind in ("grid", "choice"):
            if not isinstance(args, list) or not args:
                raise ConfigError(f"{path}: {key}: {kind} needs a non-empty list of values, got {args!r}")
            space[key] = tune.grid_search(args) if kind == "grid" else tune.choice(args)
        elif kind == "range":
            if not isinstance(args, list) or len(args) not in (2, 3) or not all(
                isinstance(a, int) and not isinstance(a, bool) for a in args
            ):
                raise ConfigError(f"{path}: {key}: range needs [first, last] or [first, last, step] integers, got {args!r}")
            first, last, step = (args + [1])[:3]
            values = list(range(first, last + (1 if step > 0 else -1), step)) if step else []
            if not values:
                raise ConfigError(f"{path}: {key}: range {args} is empty")
            space[key] = tune.grid_search(values)
        else:
            if not isinstance(args, list) or len(args) != 2:
                raise ConfigError(f"{path}: {key}: {kind} needs [low, high], got {args!r}")
            low, high = (_number(path, key, kind, a) for a in args)
            if not low < high or (kind == "loguniform" and low <= 0):
                raise ConfigError(f"{path}: {key}: {kind} needs 0 < low < high for loguniform, low < high otherwise; got {args}")
            space[key] = tune.uniform(low, high) if kind == "uniform" else tune.loguniform(low, high)
    return space


def load_space(path):
    r"""Read and parse a search-space YAML file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--space: {path} does not exist (a search-space YAML; the package's: {os.path.join(TUNE_SPACES_DIR, '*.yaml')})"
        )
    spec = read_yaml(path)
    if not spec:
        raise ConfigError(f"{path}: the search space is empty")
    return parse_space(spec, path)
