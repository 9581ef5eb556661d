r"""The files the experiments read and write: YAML with the package's safe loader, atomic text and JSON,
CSV and markdown tables, and the description of the machine a result comes from.

Loads neither torch nor RecBole at import (the command lines' ``--help`` answers at once)."""

import csv
import io
import json
import math
import os
import platform
import re

import yaml

from recbole_metammf.errors import ConfigError


class SafeLoader(yaml.SafeLoader):
    r"""YAML's safe loader, reading ``1e-6`` as a float like RecBole's loader does."""


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path):
    r"""A YAML file of ``key: value`` lines as a dict (``{}`` when empty), read with :class:`SafeLoader`;
    a file that holds something else (a list, a number) is a :class:`ConfigError`."""
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=SafeLoader)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def make_output_dir(path, option="--output"):
    r"""Create the folder ``path`` (and its parents) for a command's results, or raise :class:`ConfigError`
    naming ``option``, the folder and why it cannot be written, before any work is done."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{option}: cannot create {path} ({error.strerror or error}); expected a folder you can write to")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: {path} is not writable; expected a folder you can write to")
    return path


def atomic_write_text(path, text):
    r"""Write ``text`` to a temporary file next to ``path``, then rename it: a reader (or a killed
    writer) sees the old file or the new one, never a part."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def finite_or_none(value):
    r"""Plain data whose NaN / infinite floats are None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def write_json(path, data):
    r"""``data`` (numpy / torch values made plain) as indented strict JSON, written atomically."""
    from recbole_metammf.utils import to_plain  # torch: only when there is something to write

    atomic_write_text(path, json.dumps(finite_or_none(to_plain(data)), indent=1, sort_keys=False) + "\n")


def csv_text(header, rows):
    r"""A CSV table (``\n`` line ends) as a string."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _md_cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header, rows):
    r"""A markdown table; ``|`` in a cell is escaped and a line break becomes a space."""
    lines = ["| " + " | ".join(_md_cell(cell) for cell in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine():
    r"""The machine a result comes from: platform, Python, torch and the device (GPU name or CPU cores)."""
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)",
    }


def machine_text():
    r""":func:`machine` in one line: platform, device, Python and torch."""
    info = machine()
    return f"{info['platform']}, {info['device']}, Python {info['python']}, torch {info['torch']}"
