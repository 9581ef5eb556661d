r"""Tests of ``python -m dataset_converters.synthetic`` at tiny scales."""

import hashlib
import json
import os

import numpy as np
import pytest

from dataset_converters import convert
from dataset_converters.safe_unpickle import load_npy
from dataset_converters.synthetic import FEATURE_FILES, SHAPES, generate, main


def _digest(folder):
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name != "synthetic.json":
            with open(os.path.join(folder, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    generate("tiktok", 0.002, 5, str(tmp_path / "a"), progress=False)
    generate("tiktok", 0.002, 5, str(tmp_path / "b"), progress=False)
    generate("tiktok", 0.002, 6, str(tmp_path / "c"), progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


@pytest.mark.parametrize("shape", list(SHAPES))
def test_shapes_counts_and_mmgcn_layout(tmp_path, shape):
    src = tmp_path / shape
    assert main(["--shape", shape, "--scale", "0.003", "--seed", "1", "--dst", str(src), "-q"]) == 0
    meta = json.loads((src / "synthetic.json").read_text())
    spec = SHAPES[shape]
    n_users, n_items = meta["users"], meta["items"]
    assert n_users == round(spec["users"] * 0.003) and n_items == round(spec["items"] * 0.003)
    if shape != "movielens":  # movielens x 0.003 has 18 items: the interaction count is capped
        assert meta["interactions"] == round(spec["interactions"] * 0.003)
    train = np.load(src / "train.npy")
    assert train[:, 1].min() >= n_users  # MMGCN: items offset by the user count
    items = train[:, 1] - n_users
    assert len(np.unique(items)) == n_items  # every item is in the training set
    per_user = np.bincount(train[:, 0], minlength=n_users)
    for fname in ("val.npy", "test.npy"):
        lists = load_npy(str(src / fname), allow_object=True)
        assert len(lists) == n_users and all(len(x) >= 2 for x in lists)  # user + at least one item
        per_user += np.array([len(x) - 1 for x in lists])
    assert per_user.min() >= 3 and per_user.sum() == meta["interactions"]
    for m, d in spec["dims"].items():
        f = np.load(src / FEATURE_FILES[m])
        assert f.shape == (n_items, d) and f.dtype == np.float32
    assert ("a" in spec["dims"]) == (src / FEATURE_FILES["a"]).exists()  # kwai: no acoustic
    out = convert("mmgcn", str(src), str(tmp_path / "ds"), shape)
    with open(os.path.join(out, f"{shape}.yaml")) as f:
        yaml_text = f.read()
    assert f"{n_users} users, {n_items} items, {meta['interactions']} interactions" in yaml_text


def test_items_mix_modalities_in_their_own_way(tmp_path):
    r"""One linear map from factors to features fits much worse than one per item kind."""
    generate("tiktok", 0.01, 3, str(tmp_path / "s"), progress=False)
    lat = np.load(tmp_path / "s" / "latent.npz")
    z, kind = lat["item_factors"], lat["item_kind"]
    w = lat["modality_weights"][:, 0:1]  # visual weight of each item
    x = np.load(tmp_path / "s" / FEATURE_FILES["v"])

    def residual(mask):
        a = np.hstack([z[mask] * w[mask], np.ones((mask.sum(), 1))])
        coef, *_ = np.linalg.lstsq(a, x[mask], rcond=None)
        return ((x[mask] - a @ coef) ** 2).sum()

    per_kind = sum(residual(kind == k) for k in np.unique(kind))
    single = residual(np.ones(len(z), dtype=bool))
    assert single > 1.5 * per_kind
