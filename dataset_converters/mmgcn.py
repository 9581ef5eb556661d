r"""The MMGCN / GRCN release: ``train.npy``, ``val.npy``, ``test.npy`` and the modality files.

* ``train.npy``: an array of ``[user, item]`` pairs, item ids offset by the user count (detected:
  every item id >= the user count; ``--item-offset`` overrides, some copies are not offset);
* ``val.npy`` / ``test.npy``: per-user lists ``[user, item, item, ...]`` (object arrays: read with a
  restricted unpickler), item ids offset like ``train.npy``;
* ``user_item_dict.npy``: a pickled dict user -> items of the training set, optional (only
  compared with ``train.npy``);
* features: ``FeatureVideo_normal.npy``, ``FeatureAudio_avg_normal.npy``,
  ``FeatureText_stl_normal.npy`` or ``v_feat.npy`` / ``a_feat.npy`` / ``t_feat.npy``, one row per item.
"""

import logging
import os

import numpy as np

from dataset_converters.checks import to_ids
from dataset_converters.converted import ConversionError, Converted, Part
from dataset_converters.reading import apply_item_offset, load_modalities, pairs_from_dict, pairs_from_lists
from dataset_converters.safe_unpickle import load_npy

logger = logging.getLogger("dataset_converters")

MODALITY_CANDIDATES = {
    "v_feat": ("FeatureVideo_normal.npy", "v_feat.npy", "FeatureVideo.npy"),
    "a_feat": ("FeatureAudio_avg_normal.npy", "a_feat.npy", "FeatureAudio.npy"),
    "t_feat": ("FeatureText_stl_normal.npy", "t_feat.npy", "FeatureText.npy"),
}
LIST_FILES = {"valid": ("val.npy", "valid.npy", "val_full.npy"), "test": ("test.npy", "test_full.npy")}


def read_pairs(path):
    r"""``train.npy``: an (N, 2) array of [user, item] pairs."""
    arr = load_npy(path, allow_object=True)
    if arr.dtype.hasobject:
        try:
            arr = np.array(arr.tolist(), dtype=object)
        except Exception:
            pass
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ConversionError(f"{path}: array of shape {arr.shape}; expected an (N, 2) array of [user, item] pairs")
    if len(arr) == 0:
        raise ConversionError(f"{path}: no interactions; expected an (N, 2) array of [user, item] pairs")
    users = to_ids(arr[:, 0], path, "user id (column 0)")
    items = to_ids(arr[:, 1], path, "item id (column 1)")
    return Part(users, items, path)


def _find(src, names):
    for n in names:
        if os.path.exists(os.path.join(src, n)):
            return os.path.join(src, n)
    raise ConversionError(f"{os.path.join(src, names[0])}: file not found")


def read(src, modality_files=None, item_offset="auto"):
    r"""MMGCN / GRCN releases: train.npy, val.npy, test.npy, FeatureVideo_normal.npy ... or v_feat.npy ..."""
    parts = {"train": read_pairs(os.path.join(src, "train.npy"))}
    for split, names in LIST_FILES.items():
        path = _find(src, names)
        users, items, rows = pairs_from_lists(load_npy(path, allow_object=True), path)
        parts[split] = Part(users, items, path, rows=rows)
    for split, part in parts.items():
        logger.info(f"{split}: {os.path.basename(part.source)}, {len(part.users)} interactions")
    dict_path = os.path.join(src, "user_item_dict.npy")
    sources = ["train.npy"] + [os.path.basename(p.source) for k, p in parts.items() if k != "train"]
    if os.path.exists(dict_path):
        users, items, _ = pairs_from_dict(load_npy(dict_path, allow_object=True), dict_path)
        train = parts["train"]
        same = len(users) == len(train.users) and np.array_equal(  # pairs compared as rows: no key overflow
            np.unique(np.stack([users, items], 1), axis=0), np.unique(np.stack([train.users, train.items], 1), axis=0)
        )
        if not same:
            logger.warning(f"{dict_path}: differs from train.npy ({len(users)} vs {len(train.users)} pairs); train.npy is used")
    n_users, n_items = apply_item_offset(parts, item_offset)
    features = load_modalities(src, MODALITY_CANDIDATES, modality_files)
    sources += [os.path.basename(p) for _, p in features.values()]
    return Converted(
        n_users=n_users, n_items=n_items, parts=parts, features=features, sources=sources, items_from_features=True
    )
