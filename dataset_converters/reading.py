r"""What the format readers share: the modality files, interactions from per-user lists and dicts, the item id offset."""

import logging
import os

import numpy as np

from dataset_converters.checks import check_feature, check_range, dense_hint, to_ids
from dataset_converters.converted import MODALITY_FIELDS, ConversionError
from dataset_converters.safe_unpickle import check_file, load_npy

logger = logging.getLogger("dataset_converters")


def load_modalities(src, candidates, override=None):
    r"""Load the modality files found in ``src``.

    ``candidates`` maps each field to the file names releases use for it, first found wins;
    ``override`` (from ``--modality-files``) names a field's file explicitly, or ``None`` to skip it.
    A release without a modality converts with those it has; none at all is an error.
    """
    override = override or {}
    features = {}
    for fld in MODALITY_FIELDS:
        if fld in override:
            name = override[fld]
            if name is None:
                continue
            path = name if os.path.isabs(name) else os.path.join(src, name)
            check_file(path)
        else:
            path = next((os.path.join(src, c) for c in candidates.get(fld, ()) if os.path.exists(os.path.join(src, c))), None)
            if path is None:
                continue
        arr = check_feature(load_npy(path), path, fld)
        features[fld] = (arr, path)
        logger.info(f"{fld}: {os.path.basename(path)}, {arr.shape[0]} items x {arr.shape[1]} ({arr.dtype})")
    if not features:
        expected = "; ".join(f"{f}: {' or '.join(candidates.get(f, ()))}" for f in MODALITY_FIELDS if candidates.get(f))
        raise ConversionError(f"{src}: no modality feature file found; expected {expected} (or --modality-files)")
    return features


def detect_item_offset(min_item, n_users, option):
    r"""The offset to subtract from item ids: ``option`` if an int, else ``n_users`` when every item id is >= it."""
    if option not in (None, "auto"):
        offset = int(option)
        logger.info(f"item ids: subtracting the offset {offset} given by --item-offset")
        return offset
    if min_item >= n_users:
        logger.info(
            f"item ids: the smallest item id ({min_item}) is >= the user count ({n_users}): items are offset by "
            f"the user count as in MMGCN, subtracting {n_users} (--item-offset 0 keeps them)"
        )
        return n_users
    logger.info(f"item ids: not offset (smallest item id {min_item} < user count {n_users})")
    return 0


def pairs_from_lists(seqs, source):
    r"""Interactions from per-user lists ``[user, item, item, ...]`` (MMGCN ``val.npy`` / ``test.npy``).

    Returns ``(users, items, rows)`` with ``rows`` the list index of each interaction.
    """
    if isinstance(seqs, np.ndarray) and seqs.ndim == 2 and seqs.dtype.kind in "iuf":
        seqs = list(seqs)
    elif isinstance(seqs, np.ndarray) and seqs.ndim == 1:
        seqs = seqs.tolist()
    elif not isinstance(seqs, (list, tuple)):
        raise ConversionError(
            f"{source}: holds a {type(seqs).__name__} of shape {getattr(seqs, 'shape', None)}; "
            "expected a list of per-user lists [user, item, item, ...]"
        )
    heads, flat, rows = [], [], []
    for r, seq in enumerate(seqs):
        if isinstance(seq, np.ndarray):
            seq = seq.tolist()
        if not isinstance(seq, (list, tuple)) or len(seq) == 0:
            raise ConversionError(f"{source}: row {r} is {seq!r}; expected a list [user, item, item, ...]")
        heads.append(seq[0])
        flat.extend(seq[1:])
        rows.extend([r] * (len(seq) - 1))
    rows = np.asarray(rows, dtype=np.int64)
    list_users = to_ids(np.asarray(heads, dtype=object), source, "user id")
    items = to_ids(np.asarray(flat, dtype=object), source, "item id", rows=rows)
    users = list_users[rows] if len(rows) else np.zeros(0, dtype=np.int64)
    return users, items, rows


def pairs_from_dict(obj, source):
    r"""Interactions from a pickled dict user -> items (``user_item_dict.npy``, ``user_item_dict_sample.npy``).

    Returns ``(users, items, rows)`` with ``rows`` the user (key) of each interaction.
    """
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict):
        raise ConversionError(
            f"{source}: holds a {type(obj).__name__}; expected a dict user id -> list of item ids"
        )
    keys = list(obj)
    users_of_keys = to_ids(np.asarray(keys, dtype=object), source, "user id (dict key)")
    flat, rows = [], []
    for key, user in zip(keys, users_of_keys.tolist()):
        items = obj[key]
        if isinstance(items, np.ndarray):
            items = items.ravel().tolist()
        elif isinstance(items, (set, frozenset)):
            items = sorted(items, key=lambda v: (str(type(v)), v))
        elif not isinstance(items, (list, tuple)):
            raise ConversionError(
                f"{source}: user {user}: value is a {type(items).__name__}; expected a list or set of item ids"
            )
        flat.extend(items)
        rows.extend([user] * len(items))
    rows = np.asarray(rows, dtype=np.int64)
    items = to_ids(np.asarray(flat, dtype=object), source, "item id", rows=rows, row_label="user")
    return rows.copy(), items, rows

def apply_item_offset(parts, option):
    r"""Detect (or take from ``--item-offset``) the item id offset of ``parts`` and subtract it in place.

    Returns ``(n_users, n_items)``: one more than the largest user / item id after the offset.
    """
    n_total = sum(len(p.users) for p in parts.values())
    if not n_total:
        raise ConversionError(f"{', '.join(p.source for p in parts.values())}: no interactions")
    # users first: one stray huge user id would pass for the user count and hide the item offset
    for part in parts.values():
        check_range(part.users, n_total, part, "user id", hint=dense_hint(n_total))
    nonempty = [p for p in parts.values() if len(p.users)]
    n_users = int(max(p.users.max() for p in nonempty)) + 1
    min_item = min(int(p.items.min()) for p in nonempty)
    offset = detect_item_offset(min_item, n_users, option)
    if offset > min_item:
        part = next(p for p in nonempty if int(p.items.min()) == min_item)
        raise ConversionError(
            f"{part.where(int(np.argmin(part.items)))}: item id {min_item} is smaller than the item offset {offset}; "
            f"expected --item-offset 0..{min_item} (it is subtracted from every item id)"
        )
    if offset:
        for part in parts.values():
            part.items = part.items - offset
    n_items = int(max(p.items.max() for p in nonempty)) + 1
    return n_users, n_items
