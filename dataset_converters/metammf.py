r"""The MetaMMF authors' release: ``user_item_dict_sample.npy`` and ``*_feat_sample.npy``.

``user_item_dict_sample.npy`` is a pickled dict user -> list of items (all interactions: there is no
fixed split, so ``NAME.inter`` is written and RecBole splits at random, 0.8/0.1/0.1 unless
``--resplit`` says otherwise). Item ids may be offset by the user count as in MMGCN (detected;
``--item-offset`` overrides). ``v_feat_sample.npy``, ``a_feat_sample.npy``, ``t_feat_sample.npy``
hold one float64 row per item (written with float32's precision).
"""

import logging
import os

from dataset_converters.converted import ALL, Converted, Part
from dataset_converters.reading import apply_item_offset, load_modalities, pairs_from_dict
from dataset_converters.safe_unpickle import load_npy

logger = logging.getLogger("dataset_converters")

DICT_FILE = "user_item_dict_sample.npy"
MODALITY_CANDIDATES = {
    "v_feat": ("v_feat_sample.npy", "v_feat.npy"),
    "a_feat": ("a_feat_sample.npy", "a_feat.npy"),
    "t_feat": ("t_feat_sample.npy", "t_feat.npy"),
}


def read(src, modality_files=None, item_offset="auto"):
    r"""The MetaMMF authors' release: user_item_dict_sample.npy, *_feat_sample.npy (no split: RecBole splits 8:1:1)."""
    path = os.path.join(src, DICT_FILE)
    users, items, rows = pairs_from_dict(load_npy(path, allow_object=True), path)
    parts = {ALL: Part(users, items, path, rows=rows, row_label="user")}
    logger.info(f"interactions: {DICT_FILE}, {len(users)} (no fixed split)")
    n_users, n_items = apply_item_offset(parts, item_offset)
    features = load_modalities(src, MODALITY_CANDIDATES, modality_files)
    sources = [DICT_FILE] + [os.path.basename(p) for _, p in features.values()]
    return Converted(
        n_users=n_users, n_items=n_items, parts=parts, features=features, sources=sources, items_from_features=True
    )
