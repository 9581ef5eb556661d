r"""The checks every conversion passes: ids, feature values, counts, coverage, duplicates, the fixed split.

Ids are range-checked on the values as read, before anything sized by them is allocated; every user
and item must have an interaction; every feature matrix has one finite row per item. Errors raise
:class:`ConversionError` naming the file, the row or field and what was expected.
"""

import logging
import os

import numpy as np

from dataset_converters.converted import SPLITS, ConversionError, Part

logger = logging.getLogger("dataset_converters")

#: Ids must fit in int64; the real bound (ids are dense, see :func:`dense_hint`) is checked where it is known.
_INT64_LIMIT = 2**63


def dense_hint(n_interactions, what="user"):
    r"""Why ids above the interaction count are refused: 0-based dense ids, each needs an interaction."""
    n = n_interactions
    return f" (ids are 0-based and every {what} needs an interaction: {n} interactions hold at most {n} {what}s)"


def to_ids(values, source, what, rows=None, row_label="row", limit=None, hint=""):
    r"""Integer ids from ``values`` (ints, integral floats or numeric strings); errors name the row.

    Every id must lie in ``0..limit-1`` (int64 without ``limit``). The range is checked on the values
    as read, before the cast, so 1e20 is reported as out of range rather than wrapped around.
    """
    values = np.asarray(values)
    where = (lambda k: f"{source}: {row_label} {int(rows[k]) if rows is not None else int(k)}")
    if values.dtype.kind == "b" or values.dtype.kind not in "iufOUS":
        raise ConversionError(f"{source}: {what} has dtype {values.dtype}; expected integer ids")
    if values.dtype.kind in "OUS":
        out = np.empty(len(values), dtype=np.float64)
        for k, v in enumerate(values.tolist()):
            try:
                out[k] = float(v)
            except (TypeError, ValueError, OverflowError):
                raise ConversionError(f"{where(k)}: {what} {v!r} is not a number; expected an integer id") from None
        values = out
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            k = int(np.argmax(bad))
            raise ConversionError(f"{where(k)}: {what} {values[k]!r} is not an integer; expected an integer id")
    if limit is None:  # int64 input always fits; uint64 and floats may not
        limit = None if values.dtype.kind == "i" else _INT64_LIMIT
    check_range(values, limit, source, what, rows=rows, row_label=row_label, hint=hint)
    return values.astype(np.int64)


def check_range(ids, n, part_or_source, what, rows=None, row_label="row", hint=""):
    r"""Raise if any id is negative or (when ``n`` is given) not below ``n``; ``ids`` may be floats."""
    where = (lambda k: part_or_source.where(k)) if isinstance(part_or_source, Part) else (
        lambda k: f"{part_or_source}: {row_label} {int(rows[k]) if rows is not None else int(k)}"
    )
    if len(ids) == 0:
        return
    expected = f"expected ids {'>= 0' if n is None else f'0..{n - 1}'}{hint}"
    neg = ids < 0
    if neg.any():
        k = int(np.argmax(neg))
        raise ConversionError(f"{where(k)}: {what} {int(ids[k])} is negative; {expected}")
    if n is not None:
        over = ids >= n
        if over.any():
            k = int(np.argmax(over))
            raise ConversionError(f"{where(k)}: {what} {int(ids[k])} out of range; {expected}")


def check_feature(arr, path, field_name):
    r"""A modality matrix as float16/float32 (float64 and ints go to float32): 2-D, numeric, finite."""
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        shape = getattr(arr, "shape", None)
        raise ConversionError(
            f"{path}: {field_name} is not a 2-D array (shape {shape}); expected one row of features per item"
        )
    if arr.dtype.kind not in "fiu":
        raise ConversionError(f"{path}: {field_name} has non-numeric dtype {arr.dtype}; expected floats")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ConversionError(f"{path}: {field_name} is empty (shape {arr.shape}); expected one row of features per item")
    if arr.dtype not in (np.float16, np.float32):
        with np.errstate(over="ignore", invalid="ignore"):
            arr32 = arr.astype(np.float32)
    else:
        arr32 = arr
    bad = ~np.isfinite(arr32)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(arr32[r, c]) else "inf (or beyond float32)"
        raise ConversionError(
            f"{path}: {field_name} row {r}, column {c} is {kind} ({arr[r, c]!r}); expected finite numbers"
        )
    return arr32


def check_converted(conv):
    r"""Check what a reader handed over, before anything sized by its counts is allocated.

    The modality files agree on their row count, which (``items_from_features``) sets ``conv.n_items``;
    every id is in range, every feature matrix has one row per item, every user and item has an interaction.
    """
    rows = {fld: arr.shape[0] for fld, (arr, _) in conv.features.items()}
    if len(set(rows.values())) > 1:
        desc = ", ".join(f"{os.path.basename(conv.features[f][1])} ({f}) {r}" for f, r in rows.items())
        raise ConversionError(f"{conv.features[next(iter(rows))][1]}: the modality files have different row counts: {desc}; expected one row per item in each")
    if conv.items_from_features and rows:
        fld, n_rows = next(iter(rows.items()))
        if n_rows < conv.n_items:  # name the first interaction beyond the feature rows
            hint = f" (one per row of {os.path.basename(conv.features[fld][1])}, which has {n_rows} rows)"
            for part in conv.parts.values():
                check_range(part.items, n_rows, part, "item id", hint=hint)
        conv.n_items = n_rows
    n_users, n_items = conv.n_users, conv.n_items
    if n_users <= 0 or n_items <= 0:
        raise ConversionError(f"{', '.join(conv.sources)}: no users or no items ({n_users} users, {n_items} items)")
    for part in conv.parts.values():
        check_range(part.users, n_users, part, "user id")
        check_range(part.items, n_items, part, "item id")
    for fld, (arr, path) in conv.features.items():
        if arr.shape[0] != n_items:
            raise ConversionError(
                f"{path}: {fld} has {arr.shape[0]} rows; expected {n_items}, one per item "
                f"(the interactions hold item ids 0..{n_items - 1})"
            )
    # before anything sized by the counts: duplicates never remove a user's or item's only interaction
    check_coverage(conv.parts, n_users, n_items)


def drop_duplicates(parts, n_items):
    r"""Drop repeated (user, item) pairs, keeping the first (train before valid before test)."""
    keys, owners, order = [], [], list(parts)
    for j, name in enumerate(order):
        keys.append(parts[name].users * n_items + parts[name].items)
        owners.append(np.full(len(parts[name].users), j))
    allkeys = np.concatenate(keys)
    _, first = np.unique(allkeys, return_index=True)
    keep = np.zeros(len(allkeys), dtype=bool)
    keep[first] = True
    out, start = {}, 0
    for j, name in enumerate(order):
        n = len(keys[j])
        k = keep[start:start + n]
        dropped = int(n - k.sum())
        if dropped:
            within = n - len(np.unique(keys[j]))
            logger.warning(
                f"{parts[name].source}: dropped {dropped} duplicate interactions "
                f"({within} repeated within the file, {dropped - within} already in an earlier split)"
            )
        out[name] = (parts[name].users[k], parts[name].items[k])
        start += n
    return out



def _missing_ids(ids, n, show=10):
    r"""How many of ``0..n-1`` do not occur in ``ids`` (all in range) and the first ``show`` of them.

    Memory in the number of ids, not in ``n``: the first missing ones lie below ``len(present) + show``.
    """
    present = np.unique(ids)
    first = np.setdiff1d(np.arange(min(n, len(present) + show)), present)[:show]
    return n - len(present), first


def _id_list(what, count, first):
    return f"{what} ids " + ", ".join(map(str, first.tolist())) + (", ..." if count > len(first) else "")


def check_coverage(parts, n_users, n_items):
    files = ", ".join(sorted({p.source for p in parts.values()}))
    for what, n in (("user", n_users), ("item", n_items)):
        count, first = _missing_ids(np.concatenate([getattr(p, what + "s") for p in parts.values()]), n)
        if count:
            extra = " (one row per item of the feature files)" if what == "item" else ""
            raise ConversionError(
                f"{files}: {count} {what}(s) of 0..{n - 1}{extra} have no interactions after conversion: "
                f"{_id_list(what, count, first)}; expected every {what} to have at least one interaction"
            )


def _report_users_without_training(clean, n_users, train_source):
    r"""A fixed split may leave users with only validation / test interactions: kept, with a warning."""
    count, first = _missing_ids(clean["train"][0], n_users, show=5)
    if count:
        logger.warning(
            f"{train_source}: {count} user(s) have no training interactions, only validation or test ones: "
            f"{_id_list('user', count, first)}; kept (models see them only in evaluation; "
            "--resplit gives every user training interactions)"
        )


def check_split(conv, clean):
    r"""A fixed split kept as such: each split has interactions (``clean``: after :func:`drop_duplicates`)."""
    for k in SPLITS:
        if len(clean[k][0]) == 0:
            raise ConversionError(
                f"{conv.parts[k].source}: the {k} split has no interactions; expected some (or --resplit to split at random)"
            )
    _report_users_without_training(clean, conv.n_users, conv.parts["train"].source)
