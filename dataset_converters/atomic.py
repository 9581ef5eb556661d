r"""What every format shares: safe loading, validation, number formatting and the atomic-file writer.

A format module (``mmgcn``, ``metammf``, ``mmssl``, ``mmrec``) only reads its files into a
:class:`Converted` (interactions per split with where each came from, item features per modality);
everything after that — duplicate removal, the checks that every user and item has interactions and
every feature matrix has one row per item, the text written, the temporary folder renamed into place —
happens here, once, for all of them.

Errors in the input raise :class:`ConversionError` with a message naming the file, the row or field
and what was expected; so do file-system failures (``<file>: cannot write (<reason>)``). Ids are
range-checked before anything sized by them is allocated, and a re-conversion replaces ``DST/NAME``
only when it holds nothing but an earlier conversion's files (:func:`check_dst`).
"""

import codecs
import importlib
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
#: First line of every ``NAME.yaml`` written here: how a re-conversion knows the folder is its own.
YAML_HEADER = "# {name}: RecBole dataset config written by dataset_converters"

#: Feature values above this count get a progress bar (``PROGRESS = False`` turns them off: ``-q``).
_PROGRESS_MIN_VALUES = 2_000_000
PROGRESS = True


class ConversionError(Exception):
    r"""The input cannot be converted; the message names the file, the row or field and what was expected."""


# ----------------------------------------------------------------------------------------------
# Safe loading of user-supplied pickles and .npy files
# ----------------------------------------------------------------------------------------------

_SPARSE_CLASSES = {"coo_matrix", "csr_matrix", "csc_matrix", "coo_array", "csr_array", "csc_array"}

#: numpy internals the pickles of arrays and scalars name, by module (without its ``numpy.core.`` /
#: ``numpy._core.`` prefix): numpy 1.16-1.26 wrote ``multiarray`` or ``_multiarray_umath``, numpy 2
#: writes ``numpy._core``. Each is resolved in the numpy installed here; no other module is imported.
_NUMPY_INTERNALS = {
    "multiarray": ("_reconstruct", "scalar"),
    "_multiarray_umath": ("_reconstruct", "scalar"),
    "numeric": ("_frombuffer",),
}


def _numpy_internal(module, name):
    r"""This numpy's object for ``numpy.core.MODULE.NAME`` / ``numpy._core.MODULE.NAME``, or None if not allowed."""
    prefix, _, sub = module.rpartition(".")
    if prefix not in ("numpy.core", "numpy._core") or name not in _NUMPY_INTERNALS.get(sub, ()):
        return None
    # numpy 2 has numpy._core (numpy.core is a deprecated alias); numpy 1.26 has only part of it
    for package in ("numpy._core", "numpy.core"):
        try:
            obj = getattr(importlib.import_module(f"{package}.{sub}"), name, None)
        except ImportError:
            continue
        if obj is not None:
            return obj
    return None


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

    def _refuse(self, what):
        raise ConversionError(
            f"{self.path}: refusing to unpickle {what}: only scipy sparse matrices, numpy "
            "arrays and plain lists/dicts/sets are allowed in these files"
        )

    def _reconstructor(self, cls, base, state):
        # copyreg._reconstructor: how protocol 0/1 pickles build a plain object (a sparse matrix).
        # With base ``object`` it only allocates (no constructor runs); anything else is refused.
        if cls not in {getattr(scipy.sparse, n, None) for n in _SPARSE_CLASSES} or base is not object or state is not None:
            self._refuse(f"copyreg._reconstructor({getattr(cls, '__name__', cls)!r}, {getattr(base, '__name__', base)!r})")
        return object.__new__(cls)

    def find_class(self, module, name):
        # Python 2 pickles say copy_reg / __builtin__: the stock find_class maps those names, an override sees them raw
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return getattr(scipy.sparse, name)
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        obj = _numpy_internal(module, name)
        if obj is not None:
            return obj
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return self._reconstructor
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "object"):
            return {"set": set, "frozenset": frozenset, "object": object}[name]  # object: the base above
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles
            return codecs.encode
        self._refuse(f"'{module}.{name}'")


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


def parse_item_offset(option):
    r"""``--item-offset``: ``"auto"`` / None, or a non-negative integer (an int or its digits)."""
    if option in (None, "auto"):
        return "auto"
    if isinstance(option, str) and option.isascii() and option.isdigit():
        return int(option)
    if isinstance(option, (int, np.integer)) and not isinstance(option, bool) and option >= 0:
        return int(option)
    raise ConversionError(f"--item-offset: {option!r}; expected auto or a non-negative integer")


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


def _missing_ids(ids, n, show=10):
    r"""How many of ``0..n-1`` do not occur in ``ids`` (all in range) and the first ``show`` of them.

    Memory in the number of ids, not in ``n``: the first missing ones lie below ``len(present) + show``.
    """
    present = np.unique(ids)
    first = np.setdiff1d(np.arange(min(n, len(present) + show)), present)[:show]
    return n - len(present), first


def _id_list(what, count, first):
    return f"{what} ids " + ", ".join(map(str, first.tolist())) + (", ..." if count > len(first) else "")


def _check_coverage(parts, n_users, n_items):
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


def _os_error(e, action, path, tmp=None):
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
    _check_coverage(conv.parts, n_users, n_items)
    clean = _dedup(conv.parts, n_items)
    split = ALL not in clean and resplit is None
    if split:
        for k in SPLITS:
            if len(clean[k][0]) == 0:
                raise ConversionError(
                    f"{conv.parts[k].source}: the {k} split has no interactions; expected some (or --resplit to split at random)"
                )
        _report_users_without_training(clean, n_users, conv.parts["train"].source)
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
        fields = [f for f in MODALITY_FIELDS if f in conv.features]
        _write_item(os.path.join(tmp, f"{name}.item"), n_items, {f: conv.features[f][0] for f in fields}, precision)
        _write_yaml(os.path.join(tmp, f"{name}.yaml"), name, conv, fields, split, resplit, counts, command)
        _replace_dir(tmp, final, name)
    except BaseException as e:
        if tmp is not None and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)  # our own temporary folder, never the user's
        if isinstance(e, OSError):  # read-only, full disk, a file in the way: a message, not a traceback
            raise _os_error(e, "write", final, tmp) from None
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
    module = importlib.import_module(f"dataset_converters.{fmt}")
    logger.info(f"reading {src} as the {fmt} format")
    try:
        conv = module.read(src, modality_files=modality_files or {}, item_offset=item_offset)
    except OSError as e:  # unreadable file or folder
        raise _os_error(e, "read", src) from None
    conv.src_name = os.path.basename(os.path.normpath(src))
    return write_dataset(conv, dst, name, precision=precision, resplit=resplit, command=command)
