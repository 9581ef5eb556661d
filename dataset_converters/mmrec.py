r"""The MMRec release: ``NAME.inter`` plus ``image_feat.npy`` / ``text_feat.npy`` (``audio_feat.npy``).

``NAME.inter`` is tab separated with a header ``userID itemID rating timestamp x_label``; ids are
0-based, ``x_label`` 0 / 1 / 2 puts the row in train / valid / test. The feature files hold one row
per itemID. The ``.inter`` file is the one named after the source folder, else the only ``*.inter``.
"""

import glob
import logging
import os

import numpy as np

from dataset_converters.checks import dense_hint, to_ids
from dataset_converters.converted import SPLITS, ConversionError, Converted, Part
from dataset_converters.reading import load_modalities

logger = logging.getLogger("dataset_converters")

MODALITY_CANDIDATES = {
    "v_feat": ("image_feat.npy", "v_feat.npy"),
    "a_feat": ("audio_feat.npy", "a_feat.npy"),
    "t_feat": ("text_feat.npy", "t_feat.npy"),
}
REQUIRED = ("userID", "itemID", "x_label")


def find_inter(src):
    own = os.path.join(src, os.path.basename(os.path.normpath(src)) + ".inter")
    if os.path.exists(own):
        return own
    found = sorted(glob.glob(os.path.join(src, "*.inter")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConversionError(f"{own}: file not found (no *.inter file in {src})")
    raise ConversionError(f"{src}: several .inter files ({', '.join(map(os.path.basename, found))}); expected one, or one named {os.path.basename(own)}")


def read(src, modality_files=None, item_offset="auto"):
    r"""MMRec releases: NAME.inter (x_label 0/1/2: train/valid/test), image_feat.npy, text_feat.npy."""
    if item_offset not in ("auto", 0):
        raise ConversionError("--item-offset: MMRec ids are 0-based already; no offset applies")
    path = find_inter(src)
    if os.path.getsize(path) == 0:
        raise ConversionError(f"{path}: empty file")
    import pandas as pd  # here, not at import: ``--help`` lists this format without loading pandas

    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as e:
        raise ConversionError(f"{path}: not a tab-separated table ({e})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConversionError(
            f"{path}: header {list(df.columns)} lacks {missing}; expected tab-separated userID, itemID, rating, timestamp, x_label"
        )
    if len(df) == 0:
        raise ConversionError(f"{path}: no interactions (header only)")
    lines = np.arange(2, len(df) + 2)  # line numbers in the file (header is line 1)
    ids = dict(rows=lines, row_label="line", limit=len(df))  # ids are dense: below the interaction count
    users = to_ids(df["userID"].to_numpy(), path, "userID", hint=dense_hint(len(df)), **ids)
    items = to_ids(df["itemID"].to_numpy(), path, "itemID", hint=dense_hint(len(df), "item"), **ids)
    labels = to_ids(df["x_label"].to_numpy(), path, "x_label", rows=lines, row_label="line", limit=3,
                    hint=" (0 train, 1 valid, 2 test)")
    parts = {}
    for k, split in enumerate(SPLITS):
        sel = labels == k
        parts[split] = Part(users[sel], items[sel], path, rows=lines[sel], row_label="line")
        logger.info(f"{split}: {int(sel.sum())} interactions (x_label {k})")
    features = load_modalities(src, MODALITY_CANDIDATES, modality_files)
    sources = [os.path.basename(path)] + [os.path.basename(p) for _, p in features.values()]
    return Converted(
        n_users=int(users.max()) + 1,
        n_items=int(items.max()) + 1,
        parts=parts,
        features=features,
        sources=sources,
        items_from_features=True,
    )
