r"""``convert()``: the options checked, ``DST`` checked, the format's reader from :data:`FORMATS`, the writer."""

import logging
import os

import numpy as np

from dataset_converters.converted import MODALITY_FIELDS, MODALITY_KEYS, ConversionError
from dataset_converters.formats import FORMATS
from dataset_converters.writer import check_dst, check_name, os_error, write_dataset

logger = logging.getLogger("dataset_converters")


def parse_modality_files(spec):
    r"""``"v=FILE,a=FILE,t=none"`` -> ``{"v_feat": "FILE", "a_feat": "FILE", "t_feat": None}``."""
    out = {}
    if not spec:
        return out
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in MODALITY_KEYS and key not in MODALITY_FIELDS:
            raise ConversionError(
                f"--modality-files: '{item}' not understood; expected v=FILE,a=FILE,t=FILE (a value 'none' drops a modality)"
            )
        value = value.strip()
        out[MODALITY_KEYS.get(key, key)] = None if value.lower() in ("", "none") else value
    return out


def parse_item_offset(option):
    r"""``--item-offset``: ``"auto"`` / None, or a non-negative integer (an int or its digits)."""
    if option in (None, "auto"):
        return "auto"
    if isinstance(option, str) and option.isascii() and option.isdigit():
        return int(option)
    if isinstance(option, (int, np.integer)) and not isinstance(option, bool) and option >= 0:
        return int(option)
    raise ConversionError(f"--item-offset: {option!r}; expected auto or a non-negative integer")


def parse_ratios(spec):
    r"""``"0.8,0.1,0.1"`` -> ``(0.8, 0.1, 0.1)``, checked."""
    try:
        ratios = tuple(float(x) for x in spec.split(","))
    except ValueError:
        raise ConversionError(f"--resplit: '{spec}' is not a list of numbers; expected e.g. 0.8,0.1,0.1") from None
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not abs(sum(ratios) - 1) < 1e-6:
        raise ConversionError(f"--resplit: {spec}: expected three non-negative ratios summing to 1, e.g. 0.8,0.1,0.1")
    return ratios


def convert(fmt, src, dst, name, modality_files=None, item_offset="auto", resplit=None, precision=None):
    r"""Read ``src`` in format ``fmt`` and write the RecBole dataset ``DST/NAME``; returns the folder."""
    if fmt not in FORMATS:
        raise ConversionError(f"--format: '{fmt}' unknown; expected one of {', '.join(FORMATS)}")
    if not os.path.isdir(src):
        raise ConversionError(f"{src}: source folder not found")
    check_name(name)
    if precision is not None and not 1 <= int(precision) <= 17:
        raise ConversionError(f"--precision: {precision}; expected 1..17 significant digits")
    if isinstance(resplit, str):
        resplit = parse_ratios(resplit)
    if isinstance(modality_files, str):
        modality_files = parse_modality_files(modality_files)
    item_offset = parse_item_offset(item_offset)
    check_dst(dst, name)  # fail before a long read, not after it
    # recorded in the yaml; paths left out so that a conversion reads the same wherever it ran
    command = f"python -m dataset_converters --format {fmt} --src SRC --dst DST --name {name}"
    if modality_files:
        command += " --modality-files " + ",".join(f"{k[0]}={v or 'none'}" for k, v in modality_files.items())
    if item_offset != "auto":
        command += f" --item-offset {item_offset}"
    if resplit:
        command += " --resplit " + ",".join(map(str, resplit))
    if precision:
        command += f" --precision {precision}"
    read = FORMATS[fmt]
    logger.info(f"reading {src} as the {fmt} format")
    try:
        conv = read(src, modality_files=modality_files or {}, item_offset=item_offset)
    except OSError as e:  # unreadable file or folder
        raise os_error(e, "read", src) from None
    conv.src_name = os.path.basename(os.path.normpath(src))
    return write_dataset(conv, dst, name, precision=precision, resplit=resplit, command=command)
