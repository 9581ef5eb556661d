r"""Writing RecBole atomic files: ``DST/NAME/NAME.{inter|train.inter,...}``, ``NAME.item``, ``NAME.yaml``.

Everything is written into a temporary folder next to ``DST/NAME`` and renamed into place at the end,
so a reader sees the old dataset or the new one, never a part. A re-conversion replaces ``DST/NAME``
only when it holds nothing but an earlier conversion's files (:func:`check_dst`), and deletes no
file it did not write; file-system failures raise ``<file>: cannot write (<reason>)``.
"""

import logging
import os
import shutil
import tempfile

import numpy as np
from tqdm import tqdm

from dataset_converters.checks import check_converted, check_split, drop_duplicates
from dataset_converters.converted import ALL, MODALITY_FIELDS, SPLITS, ConversionError
from dataset_converters.floats import format_values

logger = logging.getLogger("dataset_converters")

#: First line of every ``NAME.yaml`` written here: how a re-conversion knows the folder is its own.
YAML_HEADER = "# {name}: RecBole dataset config written by dataset_converters"

#: Feature values above this count get a progress bar (``PROGRESS = False`` turns them off: ``-q``).
_PROGRESS_MIN_VALUES = 2_000_000
PROGRESS = True


def _yaml_list(xs):
    return "[" + ", ".join(str(x) for x in xs) + "]"


def _write_yaml(path, name, conv, fields, split, resplit, counts, command):
    lines = [
        YAML_HEADER.format(name=name),
        f"#   {command}",
        f"# SRC = {conv.src_name}/ ({', '.join(conv.sources)})",
        f"# {conv.n_users} users, {conv.n_items} items, {sum(counts.values())} interactions"
        + (" (" + " / ".join(f"{k} {v}" for k, v in counts.items()) + ")" if split else ""),
        "",
        "USER_ID_FIELD: user_id",
        "ITEM_ID_FIELD: item_id",
        "load_col:                        # multimodal models add their modalities to the item columns",
        "  inter: [user_id, item_id]",
        "  item: [item_id]",
        f"modalities: {_yaml_list(fields)}" + " " * max(1, 32 - len(f"modalities: {_yaml_list(fields)}"))
        + "# the float_seq fields of " + f"{name}.item",
    ]
    if split:
        lines.append("benchmark_filename: [train, valid, test]  # the source's fixed split")
    else:
        lines += [
            "eval_args:                       # no fixed split: RecBole splits per user at random",
            f"  split: {{RS: {_yaml_list(resplit)}}}",
            "  group_by: user",
            "  order: RO",
            "  mode: full",
        ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _write_inter(path, users, items):
    order = np.lexsort((items, users))
    u, i = users[order], items[order]
    with open(path, "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\n")
        step = 1_000_000
        for s in range(0, len(u), step):
            f.write("".join(f"{a}\t{b}\n" for a, b in zip(u[s:s + step].tolist(), i[s:s + step].tolist())))


def _write_item(path, n_items, features, precision):
    fields = list(features)
    width = sum(features[f].shape[1] for f in fields)
    chunk = max(1, 1_000_000 // max(width, 1))
    with open(path, "w", encoding="utf-8") as f, tqdm(
        total=n_items, unit="items", desc=os.path.basename(path), disable=not PROGRESS or n_items * width < _PROGRESS_MIN_VALUES
    ) as bar:
        f.write("\t".join(["item_id:token"] + [f"{fld}:float_seq" for fld in fields]) + "\n")
        for s in range(0, n_items, chunk):
            e = min(n_items, s + chunk)
            cols = [format_values(features[fld][s:e], precision) for fld in fields]
            f.write("".join(f"{s + r}\t" + "\t".join(c[r] for c in cols) + "\n" for r in range(e - s)))
            bar.update(e - s)


def own_files(name):
    r"""Every file name a conversion to ``NAME`` writes (either layout)."""
    return {f"{name}.inter", f"{name}.item", f"{name}.yaml"} | {f"{name}.{k}.inter" for k in SPLITS}


def _check_replaceable(final, name):
    r"""Refuse unless ``final`` is absent, empty, or holds only files an earlier conversion wrote.

    The folder is replaced as a whole (so the files always match each other): anything of the user's
    in it (``NAME.notes``, a hand-made ``NAME.inter``) would be lost, so the conversion stops instead.
    """
    if not os.path.lexists(final):
        return
    if os.path.islink(final) or not os.path.isdir(final):
        raise ConversionError(f"{final}: exists and is not a folder; remove it or choose another --name / --dst")
    present = sorted(os.listdir(final))
    if not present:
        return
    own = own_files(name)
    foreign = [n for n in present if n not in own or os.path.islink(os.path.join(final, n))
               or not os.path.isfile(os.path.join(final, n))]
    yaml = os.path.join(final, f"{name}.yaml")
    try:
        with open(yaml, encoding="utf-8", errors="replace") as f:
            ours = f.readline().rstrip("\n") == YAML_HEADER.format(name=name)
    except OSError:
        ours = False
    if foreign or not ours:
        why = (f"holds files this converter did not write: {', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}"
               if foreign else f"holds {', '.join(present)} but no {name}.yaml written by this converter")
        raise ConversionError(
            f"{final}: {why}; nothing was changed (a re-conversion replaces the folder only when it holds "
            "nothing but an earlier conversion's files): move them away, or choose another --name / --dst"
        )


def check_name(name):
    r"""``--name``: a dataset name RecBole can use as a folder and file prefix."""
    if not name or os.sep in name or name.startswith("."):
        raise ConversionError(f"--name: '{name}' is not a valid dataset name")


def check_dst(dst, name):
    r"""Before anything is read: ``DST`` must be (or be creatable as) a writable folder and ``DST/NAME`` replaceable."""
    if os.path.lexists(dst) and not os.path.isdir(dst):
        raise ConversionError(f"{dst}: is a file, not a folder; expected --dst to name the folder to write {name}/ into")
    folder = os.path.abspath(dst)
    while not os.path.exists(folder):  # makedirs starts at the nearest folder that exists
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ConversionError(f"{folder}: is a file, not a folder; cannot create {dst} in it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConversionError(f"{folder}: not writable; expected --dst to be a folder you can write to (or create)")
    final = os.path.join(dst, name)
    _check_replaceable(final, name)
    if os.path.isdir(final) and os.listdir(final) and not os.access(final, os.W_OK | os.X_OK):
        raise ConversionError(f"{final}: not writable, so the earlier conversion in it cannot be replaced")


def _replace_dir(tmp, final, name):
    r"""Move ``tmp`` to ``final``; an existing ``final`` must pass :func:`_check_replaceable`.

    The old folder is renamed aside first and only the converter's own files are deleted from it
    (never a recursive delete), so a file that appeared meanwhile survives there.
    """
    if not os.path.lexists(final):
        os.rename(tmp, final)
        return
    _check_replaceable(final, name)
    old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=os.path.dirname(final))
    os.rename(final, old)  # onto the empty placeholder: atomic
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    own = own_files(name)
    for n in os.listdir(old):
        if n in own:
            os.remove(os.path.join(old, n))
    try:
        os.rmdir(old)
    except OSError:
        left = ", ".join(os.listdir(old))
        logger.warning(f"{old}: the previous {name}/ kept files that appeared during the conversion: {left}")


def os_error(e, action, path, tmp=None):
    r"""``<file>: cannot <action> (<reason>)`` for an OSError; ``path`` if it names no file.

    While writing (``path`` = ``DST/NAME``, ``tmp`` its temporary folder) the message names the final
    path, or ``DST`` for the temporary folder itself, never the temporary name.
    """
    where = str(e.filename) if e.filename is not None else path
    if tmp is not None:
        where = where.replace(tmp, path)
    if where != path and os.path.basename(where).startswith(f".{os.path.basename(path)}."):
        where = os.path.dirname(where)
    return ConversionError(f"{where}: cannot {action} ({e.strerror or e}); nothing was written")


def write_dataset(conv, dst, name, precision=None, resplit=None, command=""):
    r"""Validate ``conv`` and write ``DST/NAME/NAME.{inter|train.inter,...}``, ``NAME.item``, ``NAME.yaml``.

    ``resplit`` (ratios) merges a fixed split into ``NAME.inter`` with RecBole's random split; a
    source without a split (:data:`ALL`) always gets one (0.8, 0.1, 0.1 unless given).
    """
    check_converted(conv)
    n_users, n_items = conv.n_users, conv.n_items
    clean = drop_duplicates(conv.parts, n_items)
    split = ALL not in clean and resplit is None
    if split:
        check_split(conv, clean)
    if not split and resplit is None:
        resplit = (0.8, 0.1, 0.1)
    counts = {k: len(u) for k, (u, _) in clean.items()}
    logger.info(
        f"{name}: {n_users} users, {n_items} items, {sum(counts.values())} interactions"
        + (" (" + " / ".join(f"{k} {v}" for k, v in counts.items()) + ")" if len(counts) > 1 else "")
        + f", modalities {list(conv.features)}"
    )

    final, tmp = os.path.join(dst, name), None
    try:
        os.makedirs(dst, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dst)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset folder should not be
        if split:
            for k in SPLITS:
                u, i = clean[k]
                _write_inter(os.path.join(tmp, f"{name}.{k}.inter"), u, i)
        else:
            u = np.concatenate([u for u, _ in clean.values()])
            i = np.concatenate([i for _, i in clean.values()])
            _write_inter(os.path.join(tmp, f"{name}.inter"), u, i)
        # v / a / t first, in that order; other fields (e.g. a category vector) after them, as read
        fields = [f for f in MODALITY_FIELDS if f in conv.features] + [f for f in conv.features if f not in MODALITY_FIELDS]
        _write_item(os.path.join(tmp, f"{name}.item"), n_items, {f: conv.features[f][0] for f in fields}, precision)
        _write_yaml(os.path.join(tmp, f"{name}.yaml"), name, conv, fields, split, resplit, counts, command)
        _replace_dir(tmp, final, name)
    except BaseException as e:
        if tmp is not None and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)  # our own temporary folder, never the user's
        if isinstance(e, OSError):  # read-only, full disk, a file in the way: a message, not a traceback
            raise os_error(e, "write", final, tmp) from None
        raise
    logger.info(f"{name}: written to {final}")
    return final
