r"""What every command line of the package shares: ``--key=value`` settings and ``--config_files``.

Loads neither torch nor RecBole (the command lines' ``--help`` answers at once)."""

import ast
import contextlib
import sys

from recbole_metammf.errors import ConfigError


def parse_value(text):
    r"""A command-line value as a Python literal (``[128,64,32]``, ``1e-6``, ``False``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null", "~"):
            return None
        return text


def parse_config_files(text):
    r"""``--config_files`` as a list of paths (separated by spaces or commas), or None when not given."""
    return text.replace(",", " ").split() if text else None


def parse_settings(args):
    r"""The ``--key=value`` arguments that are not a script's own options, as ``{key: value}`` with the
    values parsed by :func:`parse_value` (a value may hold ``=``). Anything else, or a key given twice
    with two values, is a :class:`ConfigError` (RecBole would ignore the one and take the other)."""
    settings, texts = {}, {}
    for arg in args:
        key, sep, value = arg[2:].partition("=")
        if not arg.startswith("--") or not key or not sep:
            raise ConfigError(f"{arg}: not an option; settings are given as --key=value (e.g. --epochs=5)")
        if key in texts and texts[key] != value:
            raise ConfigError(f"{key}: given twice on the command line, as {texts[key]!r} and {value!r}")
        texts[key], settings[key] = value, parse_value(value)
    return settings


def parse_settings_or_exit(parser, args):
    r""":func:`parse_settings`, with a refused argument reported through ``parser`` (usage, exit 2)."""
    try:
        return parse_settings(args)
    except ConfigError as error:
        parser.error(str(error))


@contextlib.contextmanager
def clean_argv():
    r"""RecBole's Config also reads ``--key=value`` from ``sys.argv``; a run inside a program (a benchmark
    run, a sweep's trial) gets only its config dict."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved
