r"""The MMSSL / DiffMM release: ``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl`` and ``*_feat.npy``.

The three pickles are scipy sparse user x item matrices of one shape (a nonzero entry is an
interaction; user u is row u, item i is column i) and the fixed train / validation / test split.
``image_feat.npy``, ``audio_feat.npy`` and ``text_feat.npy`` hold one row per item (column).
"""

import logging
import os

import numpy as np
import scipy.sparse

from dataset_converters.converted import ConversionError, Converted, Part
from dataset_converters.reading import load_modalities
from dataset_converters.safe_unpickle import load_pickle

logger = logging.getLogger("dataset_converters")

SPLIT_FILES = {"train": "trnMat.pkl", "valid": "valMat.pkl", "test": "tstMat.pkl"}
MODALITY_CANDIDATES = {
    "v_feat": ("image_feat.npy", "v_feat.npy"),
    "a_feat": ("audio_feat.npy", "a_feat.npy"),
    "t_feat": ("text_feat.npy", "t_feat.npy"),
}


def read_matrix(path):
    r"""The (users, items) of the nonzero entries of a pickled sparse matrix, checked."""
    m = load_pickle(path)
    if not scipy.sparse.issparse(m):
        raise ConversionError(f"{path}: holds a {type(m).__name__}; expected a scipy sparse user x item matrix")
    try:
        m = m.tocoo()
        rows, cols, data = np.asarray(m.row), np.asarray(m.col), np.asarray(m.data)
        shape = tuple(int(s) for s in m.shape)
    except Exception as e:
        raise ConversionError(f"{path}: malformed sparse matrix ({type(e).__name__}: {e})") from None
    if len(shape) != 2:
        raise ConversionError(f"{path}: matrix of shape {shape}; expected 2-D (users x items)")
    if not (len(rows) == len(cols) == len(data)):
        raise ConversionError(f"{path}: {len(rows)} row indices, {len(cols)} column indices and {len(data)} values; expected equal counts")
    for what, ids in (("row index (user id)", rows), ("column index (item id)", cols)):
        if ids.dtype.kind not in "iu":
            raise ConversionError(f"{path}: {what} has dtype {ids.dtype}; expected integers")
    if data.dtype.kind not in "biuf":
        raise ConversionError(f"{path}: values have non-numeric dtype {data.dtype}; expected numbers (nonzero = interaction)")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        k = int(np.argmax(~np.isfinite(data)))
        raise ConversionError(f"{path}: entry {k} (user {rows[k]}, item {cols[k]}) has value {data[k]}; expected a finite number")
    nonzero = data != 0
    if not nonzero.all():
        logger.warning(f"{path}: ignored {int((~nonzero).sum())} explicitly stored zeros")
    entries = np.nonzero(nonzero)[0]
    return shape, rows[entries].astype(np.int64), cols[entries].astype(np.int64), entries


def read(src, modality_files=None, item_offset="auto"):
    r"""MMSSL / DiffMM releases: trnMat.pkl, valMat.pkl, tstMat.pkl, image_feat.npy, audio_feat.npy, text_feat.npy."""
    if item_offset not in ("auto", 0):
        raise ConversionError("--item-offset: the mmssl format indexes items by matrix column; no offset applies")
    parts, shape0 = {}, None
    for split, fname in SPLIT_FILES.items():
        path = os.path.join(src, fname)
        shape, users, items, entries = read_matrix(path)
        if shape0 is None:
            shape0, first = shape, path
        elif shape != shape0:
            raise ConversionError(f"{path}: matrix of shape {shape}; expected {shape0} like {first}")
        parts[split] = Part(users, items, path, rows=entries, row_label="entry")
        logger.info(f"{split}: {fname}, {len(users)} interactions")
    features = load_modalities(src, MODALITY_CANDIDATES, modality_files)
    sources = list(SPLIT_FILES.values()) + [os.path.basename(p) for _, p in features.values()]
    return Converted(n_users=shape0[0], n_items=shape0[1], parts=parts, features=features, sources=sources)
