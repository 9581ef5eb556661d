r"""What every format shares: safe loading, validation, number formatting and the atomic-file writer.

A format module (``mmgcn``, ``metammf``, ``mmssl``, ``mmrec``) only reads its files into a
:class:`Converted` (interactions per split with where each came from, item features per modality);
everything after that — duplicate removal, the checks that every user and item has interactions and
every feature matrix has one row per item, the text written, the temporary folder renamed into place —
happens here, once, for all of them.

Errors in the input raise :class:`ConversionError` with a message naming the file, the row or field
and what was expected.
"""

import codecs
import logging
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse
from tqdm import tqdm

logger = logging.getLogger("dataset_converters")

#: RecBole field of each modality, in the order they are written (visual, acoustic, textual).
MODALITY_FIELDS = ("v_feat", "a_feat", "t_feat")
#: The short names ``--modality-files`` takes.
MODALITY_KEYS = {"v": "v_feat", "a": "a_feat", "t": "t_feat"}
#: RecBole's ``benchmark_filename`` suffixes of a fixed split, in order.
SPLITS = ("train", "valid", "test")
#: Key of the interactions of a source without a split.
ALL = "all"

#: Feature values above this count get a progress bar (``PROGRESS = False`` turns them off: ``-q``).
_PROGRESS_MIN_VALUES = 2_000_000
PROGRESS = True


class ConversionError(Exception):
    r"""The input cannot be converted; the message names the file, the row or field and what was expected."""


# ----------------------------------------------------------------------------------------------
# Safe loading of user-supplied pickles and .npy files
# ----------------------------------------------------------------------------------------------

_SPARSE_CLASSES = {"coo_matrix", "csr_matrix", "csc_matrix", "coo_array", "csr_array", "csc_array"}


def _numpy_global(name):
    # ``numpy.core`` (numpy 1.x) is ``numpy._core`` in numpy 2 pickles; resolve either in this numpy.
    from numpy.core import multiarray, numeric

    return {
        "_reconstruct": multiarray._reconstruct,
        "scalar": multiarray.scalar,
        "_frombuffer": getattr(numeric, "_frombuffer", None),
    }.get(name)


class RestrictedUnpickler(pickle.Unpickler):
    r"""An unpickler that builds only scipy sparse matrices, numpy arrays/scalars and plain containers.

    The ``.pkl`` files and pickled ``.npy`` object arrays of the releases are user input: a plain
    :func:`pickle.load` would run whatever callable they name. This one refuses every global except
    the few those files need, with an error naming the file.
    """

    def __init__(self, file, path):
        # latin1: object arrays written by Python 2 (older MMGCN copies) hold byte strings
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module, name):
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return getattr(scipy.sparse, name)
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"):
            obj = _numpy_global(name)
            if obj is not None:
                return obj
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset"):
            return {"set": set, "frozenset": frozenset}[name]
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles
            return codecs.encode
        raise ConversionError(
            f"{self.path}: refusing to unpickle '{module}.{name}': only scipy sparse matrices, numpy "
            "arrays and plain lists/dicts/sets are allowed in these files"
        )


def _check_file(path):
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise ConversionError(f"{path}: empty file")


def load_pickle(path):
    r"""Unpickle ``path`` with :class:`RestrictedUnpickler`."""
    _check_file(path)
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, path).load()
        except ConversionError:
            raise
        except Exception as e:  # truncated, corrupt or not a pickle at all
            raise ConversionError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def load_npy(path, allow_object=False):
    r"""Load a ``.npy`` file without running code.

    Numeric arrays are read with ``np.load(allow_pickle=False)``. Arrays of Python objects (MMGCN's
    ``val.npy`` / ``test.npy`` / ``user_item_dict.npy``, the MetaMMF ``user_item_dict_sample.npy``) are
    pickles behind an .npy header: with ``allow_object`` they are unpickled by
    :class:`RestrictedUnpickler`, otherwise refused.
    """
    _check_file(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(f, version)
        except Exception as e:
            raise ConversionError(f"{path}: not a .npy file ({e})") from None
        if dtype.hasobject:
            if not allow_object:
                raise ConversionError(
                    f"{path}: holds Python objects (dtype {dtype}); expected a numeric array"
                )
            try:
                arr = RestrictedUnpickler(f, path).load()
            except ConversionError:
                raise
            except Exception as e:
                raise ConversionError(f"{path}: object array not readable ({type(e).__name__}: {e})") from None
            if not isinstance(arr, np.ndarray):
                raise ConversionError(f"{path}: expected a numpy array, found {type(arr).__name__}")
            return arr
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise ConversionError(f"{path}: not readable as a numeric array ({e})") from None


# ----------------------------------------------------------------------------------------------
# Interactions and features as the format modules hand them over
# ----------------------------------------------------------------------------------------------


@dataclass
class Part:
    r"""The interactions of one split, with where each came from (for error messages).

    ``rows[k]`` is the row / line / entry of ``source`` that interaction ``k`` came from, called
    ``row_label`` in messages ("line", "row", "entry").
    """

    users: np.ndarray
    items: np.ndarray
    source: str
    rows: Optional[np.ndarray] = None
    row_label: str = "row"

    def where(self, k):
        row = int(self.rows[k]) if self.rows is not None else int(k)
        return f"{self.source}: {self.row_label} {row}"


@dataclass
class Converted:
    r"""What a format module read: counts, interactions per split (or :data:`ALL`) and features per field."""

    n_users: int
    n_items: int
    parts: Dict[str, Part]
    features: Dict[str, Tuple[np.ndarray, str]]  # field -> (matrix, source file)
    sources: List[str] = field(default_factory=list)  # file names read, for the yaml header
    src_name: str = ""  # the source folder's name, for the yaml header
    #: ``n_items`` is only what the interactions show (largest id + 1): the feature files, one row
    #: per item, say how many items there are. False where the source fixes it (matrix shape).
    items_from_features: bool = False


def to_ids(values, source, what, rows=None, row_label="row"):
    r"""Integer ids from ``values`` (ints, integral floats or numeric strings); errors name the row."""
    values = np.asarray(values)
    where = (lambda k: f"{source}: {row_label} {int(rows[k]) if rows is not None else int(k)}")
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "b" or values.dtype.kind not in "fOUS":
        raise ConversionError(f"{source}: {what} has dtype {values.dtype}; expected integer ids")
    if values.dtype.kind in "OUS":
        out = np.empty(len(values), dtype=np.float64)
        for k, v in enumerate(values.tolist()):
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                raise ConversionError(f"{where(k)}: {what} {v!r} is not a number; expected an integer id") from None
        values = out
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        k = int(np.argmax(bad))
        raise ConversionError(f"{where(k)}: {what} {values[k]!r} is not an integer; expected an integer id")
    return values.astype(np.int64)


def check_range(ids, n, part_or_source, what, rows=None, row_label="row", hint=""):
    r"""Raise if any id is negative or (when ``n`` is given) not below ``n``."""
    where = (lambda k: part_or_source.where(k)) if isinstance(part_or_source, Part) else (
        lambda k: f"{part_or_source}: {row_label} {int(rows[k]) if rows is not None else int(k)}"
    )
    if len(ids) == 0:
        return
    neg = ids < 0
    if neg.any():
        k = int(np.argmax(neg))
        raise ConversionError(f"{where(k)}: {what} {int(ids[k])} is negative; expected ids 0..{'n-1' if n is None else n - 1}{hint}")
    if n is not None:
        over = ids >= n
        if over.any():
            k = int(np.argmax(over))
            raise ConversionError(f"{where(k)}: {what} {int(ids[k])} out of range; expected ids 0..{n - 1}{hint}")


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
            _check_file(path)
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
    check_range(list_users, None, source, "user id")
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
    check_range(users_of_keys, None, source, "user id (dict key)")
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
    for part in parts.values():
        check_range(part.users, None, part, "user id")
        check_range(part.items, None, part, "item id")
    users = [p.users for p in parts.values() if len(p.users)]
    items = [p.items for p in parts.values() if len(p.items)]
    if not users:
        raise ConversionError(f"{', '.join(p.source for p in parts.values())}: no interactions")
    n_users = int(max(u.max() for u in users)) + 1
    offset = detect_item_offset(int(min(i.min() for i in items)), n_users, option)
    if offset:
        for part in parts.values():
            part.items = part.items - offset
            check_range(part.items, None, part, "item id", hint=f" after subtracting the item offset {offset} (see --item-offset)")
    n_items = int(max(p.items.max() for p in parts.values() if len(p.items))) + 1
    return n_users, n_items


# ----------------------------------------------------------------------------------------------
# Number formatting
# ----------------------------------------------------------------------------------------------


def _exponent10(a):
    r"""``floor(log10(a))`` of positive doubles, exact (the float log can be off by one at powers of ten)."""
    with np.errstate(divide="ignore"):
        e = np.floor(np.log10(a)).astype(np.int64)
    e += a >= 10.0 ** (e + 1)
    e -= a < 10.0 ** e
    return e


def _shortest_digits(flat):
    r"""Per value of a float16/float32 array: the fewest significant digits that read back exactly.

    The p-digit decimal ``m * 10**q`` nearest each value is tested in bulk, p found by bisection
    (reading back is monotone in p). For |q| <= 22 the double ``m / 10**-q`` (or ``m * 10**q``) is
    exactly what ``float(str)`` returns (both operands are exact doubles and IEEE arithmetic rounds
    once), so "reads back" is decided exactly, along RecBole's path (str -> float64 -> float32).
    The rare values needing a larger |q| (|value| beyond about 1e+/-13) are settled one by one.
    """
    dt = flat.dtype
    maxp = 5 if dt == np.float16 else 9
    x = flat.astype(np.float64)
    ax = np.abs(x)
    p = np.full(x.shape, maxp, dtype=np.int64)
    nz = ax > 0
    p[~nz] = 1
    idx = np.nonzero(nz)[0]
    if len(idx) == 0:
        return p
    a, target = ax[idx], flat[idx]
    e = _exponent10(a)
    sign = np.sign(x[idx])
    lo = np.ones(len(idx), dtype=np.int64)
    hi = np.full(len(idx), maxp, dtype=np.int64)
    slow = np.zeros(len(idx), dtype=bool)
    while True:
        act = np.nonzero(lo < hi)[0]
        if len(act) == 0:
            break
        mid = (lo[act] + hi[act]) // 2
        q = e[act] - mid + 1
        in_range = np.abs(q) <= 22
        slow[act[~in_range]] = True
        pow_ = 10.0 ** np.abs(np.where(in_range, q, 0))
        aa = a[act]
        with np.errstate(over="ignore", invalid="ignore"):
            m = np.rint(np.where(q >= 0, aa / pow_, aa * pow_))
            cand = sign[act] * np.where(q >= 0, m * pow_, m / pow_)
            good = in_range & (cand.astype(dt) == target[act])
            if dt == np.float16:  # RecBole holds float32: the value must also survive float32 -> float16
                good &= cand.astype(np.float32).astype(np.float16) == target[act]
        hi[act[good]] = mid[good]
        lo[act[~good]] = mid[~good] + 1
    p[idx] = hi
    for k in np.nonzero(slow)[0].tolist():  # settle exactly with the parser itself
        v = x[idx[k]]
        for digits in range(1, maxp + 1):
            r = float("%.*e" % (digits - 1, v))
            if np.float32(r).astype(dt) == flat[idx[k]] and np.array(r).astype(dt) == flat[idx[k]]:
                p[idx[k]] = digits
                break
    return p


def format_values(block, precision=None):
    r"""Decimal strings of a 2-D float16/float32 block, one list of strings per row.

    Default: the shortest string that reads back to the same value in the block's dtype (verified by
    parsing every string back); ``precision``: that many significant digits.
    """
    flat = block.ravel()
    x = flat.astype(np.float64)
    if precision:
        strs = list(map("%.*g".__mod__, zip([int(precision)] * len(x), x.tolist())))
    else:
        p = _shortest_digits(flat)
        # positional (2.584, 0.0003357, 100) for moderate magnitudes, scientific (1e-45) otherwise
        ax = np.abs(x)
        e = np.zeros(len(x), dtype=np.int64)
        nz = ax > 0
        e[nz] = _exponent10(ax[nz])
        positional = (e >= -5) & (e <= np.maximum(p - 1, 6))
        arg = np.where(positional, np.maximum(0, p - 1 - e), p - 1).tolist()
        fmts = np.where(positional, "%.*f", "%.*e").tolist()
        strs = [f % (a, v) for f, a, v in zip(fmts, arg, x.tolist())]
    if not precision:
        # belt and braces: parse back and lengthen the few that do not round-trip
        back = np.array(strs, dtype=np.float64)
        bad = np.nonzero((back.astype(np.float32).astype(block.dtype) != flat) | (back.astype(block.dtype) != flat))[0]
        for k in bad.tolist():
            for d in range(int(p[k]) + 1, 18):
                s = "%.*g" % (d, x[k])
                v = float(s)
                if np.float32(v).astype(block.dtype) == flat[k] and np.array(v).astype(block.dtype) == flat[k]:
                    break
            strs[k] = s
    d = block.shape[1]
    return [" ".join(strs[r * d:(r + 1) * d]) for r in range(block.shape[0])]


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _dedup(parts, n_items):
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


def _check_coverage(clean, n_users, n_items, parts):
    files = ", ".join(sorted({p.source for p in parts.values()}))
    users = np.concatenate([u for u, _ in clean.values()])
    items = np.concatenate([i for _, i in clean.values()])
    for what, ids, n in (("user", users, n_users), ("item", items, n_items)):
        empty = np.nonzero(np.bincount(ids, minlength=n) == 0)[0]
        if len(empty):
            show = ", ".join(map(str, empty[:10].tolist())) + (", ..." if len(empty) > 10 else "")
            extra = " (one row per item of the feature files)" if what == "item" else ""
            raise ConversionError(
                f"{files}: {len(empty)} {what}(s) of 0..{n - 1}{extra} have no interactions after conversion: "
                f"{what} ids {show}; expected every {what} to have at least one interaction"
            )


def _yaml_list(xs):
    return "[" + ", ".join(str(x) for x in xs) + "]"


def _write_yaml(path, name, conv, fields, split, resplit, counts, command):
    lines = [
        f"# {name}: RecBole dataset config written by dataset_converters",
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


def _replace_dir(tmp, final, name):
    r"""Move ``tmp`` to ``final``; an existing ``final`` is replaced only if it holds nothing but ``NAME.*``."""
    if os.path.exists(final):
        if not os.path.isdir(final):
            raise ConversionError(f"{final}: exists and is not a folder")
        foreign = [n for n in os.listdir(final) if not n.startswith(name + ".")]
        if foreign:
            raise ConversionError(
                f"{final}: exists and holds files other than {name}.*: {', '.join(sorted(foreign)[:5])}; "
                "remove it or choose another --name / --dst"
            )
        old = final + f".old-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def write_dataset(conv, dst, name, precision=None, resplit=None, command=""):
    r"""Validate ``conv`` and write ``DST/NAME/NAME.{inter|train.inter,...}``, ``NAME.item``, ``NAME.yaml``.

    ``resplit`` (ratios) merges a fixed split into ``NAME.inter`` with RecBole's random split; a
    source without a split (:data:`ALL`) always gets one (0.8, 0.1, 0.1 unless given).
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
    clean = _dedup(conv.parts, n_items)
    _check_coverage(clean, n_users, n_items, conv.parts)
    split = ALL not in clean and resplit is None
    if split:
        for k in SPLITS:
            if len(clean[k][0]) == 0:
                raise ConversionError(
                    f"{conv.parts[k].source}: the {k} split has no interactions; expected some (or --resplit to split at random)"
                )
    if not split and resplit is None:
        resplit = (0.8, 0.1, 0.1)
    counts = {k: len(u) for k, (u, _) in clean.items()}
    logger.info(
        f"{name}: {n_users} users, {n_items} items, {sum(counts.values())} interactions"
        + (" (" + " / ".join(f"{k} {v}" for k, v in counts.items()) + ")" if len(counts) > 1 else "")
        + f", modalities {list(conv.features)}"
    )

    os.makedirs(dst, exist_ok=True)
    final = os.path.join(dst, name)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dst)
    try:
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
        fields = [f for f in MODALITY_FIELDS if f in conv.features]
        _write_item(os.path.join(tmp, f"{name}.item"), n_items, {f: conv.features[f][0] for f in fields}, precision)
        _write_yaml(os.path.join(tmp, f"{name}.yaml"), name, conv, fields, split, resplit, counts, command)
        _replace_dir(tmp, final, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(f"{name}: written to {final}")
    return final


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
    import importlib

    from dataset_converters import FORMATS

    if fmt not in FORMATS:
        raise ConversionError(f"--format: '{fmt}' unknown; expected one of {', '.join(FORMATS)}")
    if not os.path.isdir(src):
        raise ConversionError(f"{src}: source folder not found")
    if not name or os.sep in name or name.startswith("."):
        raise ConversionError(f"--name: '{name}' is not a valid dataset name")
    if precision is not None and not 1 <= int(precision) <= 17:
        raise ConversionError(f"--precision: {precision}; expected 1..17 significant digits")
    if isinstance(resplit, str):
        resplit = parse_ratios(resplit)
    if isinstance(modality_files, str):
        modality_files = parse_modality_files(modality_files)
    # recorded in the yaml; paths left out so that a conversion reads the same wherever it ran
    command = f"python -m dataset_converters --format {fmt} --src SRC --dst DST --name {name}"
    if modality_files:
        command += " --modality-files " + ",".join(f"{k[0]}={v or 'none'}" for k, v in modality_files.items())
    if item_offset not in (None, "auto"):
        command += f" --item-offset {item_offset}"
    if resplit:
        command += " --resplit " + ",".join(map(str, resplit))
    if precision:
        command += f" --precision {precision}"
    module = importlib.import_module(f"dataset_converters.{fmt}")
    logger.info(f"reading {src} as the {fmt} format")
    conv = module.read(src, modality_files=modality_files or {}, item_offset=item_offset)
    conv.src_name = os.path.basename(os.path.normpath(src))
    return write_dataset(conv, dst, name, precision=precision, resplit=resplit, command=command)
