r"""Tests of ``dataset_converters``: each format round-trips through RecBole, bad input fails clearly.

Sources are built inside each test (a handful of users and items), so the whole file runs in seconds.
"""

import errno
import io
import logging
import os
import pickle
import pickletools
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import dataset_converters.writer as writer
from dataset_converters import FORMATS, ConversionError, convert
from dataset_converters.__main__ import build_parser, main
from dataset_converters.floats import format_values
from dataset_converters.safe_unpickle import load_npy, load_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TIKTOK = os.path.join(os.path.dirname(REPO), "shared", "data", "tiktok")
SHIPPED_TIKTOK = os.path.join(REPO, "dataset", "tiktok")

# 5 users x 6 items; every user and every item has an interaction
TRAIN = [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5), (3, 0), (3, 2), (4, 1), (4, 5), (0, 3), (2, 0)]
VALID = [(0, 4), (1, 5), (3, 1), (4, 2)]
TEST = [(0, 5), (1, 0), (2, 3), (3, 4), (4, 3)]
N_USERS, N_ITEMS = 5, 6


def _feats(rng, dims=(("v", 7), ("a", 3), ("t", 4)), dtype=np.float32, n=N_ITEMS):
    return {m: (rng.standard_normal((n, d)) * 3).astype(dtype) for m, d in dims}


def _coo(pairs, shape=(N_USERS, N_ITEMS)):
    u, i = zip(*pairs)
    return sp.coo_matrix((np.ones(len(u)), (np.array(u, dtype=np.int32), np.array(i, dtype=np.int32))), shape=shape)


def _dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_mmssl(src, rng, feats=None, train=TRAIN, valid=VALID, test=TEST, shape=(N_USERS, N_ITEMS)):
    os.makedirs(src, exist_ok=True)
    for fname, pairs in (("trnMat.pkl", train), ("valMat.pkl", valid), ("tstMat.pkl", test)):
        _dump(_coo(pairs, shape), os.path.join(src, fname))
    feats = feats if feats is not None else _feats(rng, (("v", 7), ("a", 3)), np.float16)
    for m, arr in feats.items():
        np.save(os.path.join(src, {"v": "image_feat.npy", "a": "audio_feat.npy", "t": "text_feat.npy"}[m]), arr)
    return feats


def _per_user_lists(pairs, offset):
    lists = np.empty(N_USERS, dtype=object)
    for u in range(N_USERS):
        lists[u] = [u] + [i + offset for uu, i in pairs if uu == u]
    return lists


def make_mmgcn(src, rng, offset=N_USERS, dims=(("v", 7), ("a", 3), ("t", 4))):
    os.makedirs(src, exist_ok=True)
    np.save(os.path.join(src, "train.npy"), np.array([(u, i + offset) for u, i in TRAIN], dtype=np.int64))
    np.save(os.path.join(src, "val.npy"), _per_user_lists(VALID, offset), allow_pickle=True)
    np.save(os.path.join(src, "test.npy"), _per_user_lists(TEST, offset), allow_pickle=True)
    d = {u: {i + offset for uu, i in TRAIN if uu == u} for u in range(N_USERS)}
    np.save(os.path.join(src, "user_item_dict.npy"), np.array(d, dtype=object), allow_pickle=True)
    feats = _feats(rng, dims)
    names = {"v": "FeatureVideo_normal.npy", "a": "FeatureAudio_avg_normal.npy", "t": "FeatureText_stl_normal.npy"}
    for m, arr in feats.items():
        np.save(os.path.join(src, names[m]), arr)
    return feats


def make_metammf(src, rng, offset=N_USERS):
    os.makedirs(src, exist_ok=True)
    pairs = TRAIN + VALID + TEST
    d = {u: [i + offset for uu, i in pairs if uu == u] for u in range(N_USERS)}
    np.save(os.path.join(src, "user_item_dict_sample.npy"), np.array(d, dtype=object), allow_pickle=True)
    feats = _feats(rng, dtype=np.float64)
    for m, arr in feats.items():
        np.save(os.path.join(src, f"{m}_feat_sample.npy"), arr)
    return feats


def make_mmrec(src, rng, name="baby", extra_lines=()):
    os.makedirs(src, exist_ok=True)
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for label, pairs in enumerate((TRAIN, VALID, TEST)):
        lines += [f"{u}\t{i}\t5.0\t{1000 + k}\t{label}" for k, (u, i) in enumerate(pairs)]
    lines += list(extra_lines)
    with open(os.path.join(src, f"{name}.inter"), "w") as f:
        f.write("\n".join(lines) + "\n")
    feats = _feats(rng, (("v", 8), ("t", 5)))
    np.save(os.path.join(src, "image_feat.npy"), feats["v"])
    np.save(os.path.join(src, "text_feat.npy"), feats["t"])
    return feats


def load_recbole(dst, name, fields):
    r"""Load ``DST/NAME`` the way a run does (its yaml), returning the dataset and the three split sizes."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    cfg = Config(
        model="BPR",
        dataset=name,
        config_file_list=[os.path.join(dst, name, f"{name}.yaml")],
        config_dict={
            "data_path": str(dst),
            "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id", *fields]},
            "show_progress": False,
            "seed": 7,
        },
    )
    ds = create_dataset(cfg)
    train, valid, test = data_preparation(cfg, ds)
    return ds, (len(train.dataset), len(valid.dataset), len(test.dataset))


def feature_row(ds, field, token):
    return ds.get_item_feature()[field][ds.token2id("item_id", str(token))].numpy()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole writes log/ and saved/ into the working directory


# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------


def test_mmssl_round_trip(tmp_path, rng):
    feats = make_mmssl(tmp_path / "src", rng)
    out = convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")
    assert sorted(os.listdir(out)) == ["toy.item", "toy.test.inter", "toy.train.inter", "toy.valid.inter", "toy.yaml"]
    with open(os.path.join(out, "toy.train.inter")) as f:
        lines = f.read().splitlines()
    assert lines[0] == "user_id:token\titem_id:token"
    assert lines[1:] == [f"{u}\t{i}" for u, i in sorted(TRAIN)]
    ds, sizes = load_recbole(tmp_path / "ds", "toy", ["v_feat", "a_feat"])
    assert (ds.user_num, ds.item_num, ds.inter_num) == (N_USERS + 1, N_ITEMS + 1, len(TRAIN + VALID + TEST))
    assert sizes == (len(TRAIN), len(VALID), len(TEST))
    v = ds.get_item_feature()["v_feat"]
    assert tuple(v.shape) == (N_ITEMS + 1, 7) and not v[0].any()
    for item in (0, 3, 5):  # float16 source: the text reads back to the same float16
        np.testing.assert_array_equal(feature_row(ds, "v_feat", item).astype(np.float16), feats["v"][item])
        np.testing.assert_array_equal(feature_row(ds, "a_feat", item).astype(np.float16), feats["a"][item])


@pytest.mark.parametrize("offset", [N_USERS, 0])
def test_mmgcn_round_trip(tmp_path, rng, offset, caplog):
    feats = make_mmgcn(tmp_path / "src", rng, offset=offset)
    with caplog.at_level(logging.INFO, logger="dataset_converters"):
        convert("mmgcn", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")
    assert ("subtracting 5" in caplog.text) == (offset == N_USERS)
    ds, sizes = load_recbole(tmp_path / "ds", "toy", ["v_feat", "a_feat", "t_feat"])
    assert (ds.user_num, ds.item_num, ds.inter_num) == (N_USERS + 1, N_ITEMS + 1, len(TRAIN + VALID + TEST))
    assert sizes == (len(TRAIN), len(VALID), len(TEST))
    for field, m in (("v_feat", "v"), ("a_feat", "a"), ("t_feat", "t")):
        for item in (1, 4):  # float32 source: exact
            np.testing.assert_array_equal(feature_row(ds, field, item), feats[m][item])


def test_mmgcn_item_offset_option(tmp_path, rng):
    # items stored with offset 5 but declared with --item-offset 2: item ids shift by 3, past the
    # 6 rows of the features; the first such interaction is named
    make_mmgcn(tmp_path / "src", rng)
    with pytest.raises(ConversionError, match=r"train\.npy: row 3: item id 6 out of range; expected ids 0\.\.5 \(one per row of FeatureVideo_normal\.npy"):
        convert("mmgcn", str(tmp_path / "src"), str(tmp_path / "ds"), "toy", item_offset=2)
    with pytest.raises(ConversionError, match=r"train\.npy: row 0: item id 5 is smaller than the item offset 6; expected --item-offset 0\.\.5"):
        convert("mmgcn", str(tmp_path / "src"), str(tmp_path / "ds"), "toy", item_offset=6)
    assert not (tmp_path / "ds" / "toy").exists()


def test_mmgcn_without_a_modality(tmp_path, rng):
    make_mmgcn(tmp_path / "src", rng, dims=(("v", 7), ("t", 4)))  # like Kwai: no acoustic
    out = convert("mmgcn", str(tmp_path / "src"), str(tmp_path / "ds"), "kw")
    with open(os.path.join(out, "kw.item")) as f:
        assert f.readline().rstrip("\n").split("\t") == ["item_id:token", "v_feat:float_seq", "t_feat:float_seq"]
    with open(os.path.join(out, "kw.yaml")) as f:
        assert "modalities: [v_feat, t_feat]" in f.read()


def test_modality_files_option(tmp_path, rng, capsys):
    feats = make_mmssl(tmp_path / "src", rng)
    os.rename(tmp_path / "src" / "image_feat.npy", tmp_path / "src" / "visual_2019.npy")
    rc = main(["--format", "mmssl", "--src", str(tmp_path / "src"), "--dst", str(tmp_path / "ds"), "--name", "toy",
               "--modality-files", "v=visual_2019.npy,a=none", "-q"])
    assert rc == 0
    with open(tmp_path / "ds" / "toy" / "toy.item") as f:
        header, first = f.readline(), f.readline()
    assert header == "item_id:token\tv_feat:float_seq\n"
    assert np.array_equal(np.array(first.split("\t")[1].split(), np.float64).astype(np.float16), feats["v"][0])
    with open(tmp_path / "ds" / "toy" / "toy.yaml") as f:
        assert "modalities: [v_feat]" in f.read()
    rc = main(["--format", "mmssl", "--src", str(tmp_path / "src"), "--dst", str(tmp_path / "ds2"), "--name", "toy",
               "--modality-files", "x=foo.npy"])
    assert rc == 2 and "--modality-files: 'x=foo.npy' not understood" in capsys.readouterr().err


def test_metammf_round_trip(tmp_path, rng):
    feats = make_metammf(tmp_path / "src", rng)
    out = convert("metammf", str(tmp_path / "src"), str(tmp_path / "ds"), "mm")
    assert sorted(os.listdir(out)) == ["mm.inter", "mm.item", "mm.yaml"]
    with open(os.path.join(out, "mm.yaml")) as f:
        text = f.read()
    assert "split: {RS: [0.8, 0.1, 0.1]}" in text and "benchmark_filename" not in text
    ds, sizes = load_recbole(tmp_path / "ds", "mm", ["v_feat", "a_feat", "t_feat"])
    n = len(TRAIN + VALID + TEST)
    assert (ds.user_num, ds.item_num, ds.inter_num) == (N_USERS + 1, N_ITEMS + 1, n)
    assert sum(sizes) == n and sizes[0] > sizes[1]
    for item in (0, 2, 5):  # float64 source: written with float32's precision
        np.testing.assert_array_equal(feature_row(ds, "t_feat", item), feats["t"][item].astype(np.float32))


def test_mmrec_round_trip_and_resplit(tmp_path, rng):
    feats = make_mmrec(tmp_path / "baby", rng)
    convert("mmrec", str(tmp_path / "baby"), str(tmp_path / "ds"), "baby")
    ds, sizes = load_recbole(tmp_path / "ds", "baby", ["v_feat", "t_feat"])
    assert (ds.user_num, ds.item_num, ds.inter_num) == (N_USERS + 1, N_ITEMS + 1, len(TRAIN + VALID + TEST))
    assert sizes == (len(TRAIN), len(VALID), len(TEST))
    np.testing.assert_array_equal(feature_row(ds, "v_feat", 3), feats["v"][3])
    np.testing.assert_array_equal(feature_row(ds, "t_feat", 5), feats["t"][5])
    out = convert("mmrec", str(tmp_path / "baby"), str(tmp_path / "ds2"), "baby", resplit="0.6,0.2,0.2")
    assert sorted(os.listdir(out)) == ["baby.inter", "baby.item", "baby.yaml"]
    with open(os.path.join(out, "baby.yaml")) as f:
        assert "split: {RS: [0.6, 0.2, 0.2]}" in f.read()


def test_duplicates_dropped_with_count(tmp_path, rng, caplog):
    dup = [f"{u}\t{i}\t5.0\t1\t0" for u, i in TRAIN[:2]] + [f"{VALID[0][0]}\t{VALID[0][1]}\t5.0\t1\t2"]
    make_mmrec(tmp_path / "baby", rng, extra_lines=dup)
    with caplog.at_level(logging.INFO, logger="dataset_converters"):
        out = convert("mmrec", str(tmp_path / "baby"), str(tmp_path / "ds"), "baby")
    assert "dropped 2 duplicate interactions (2 repeated within the file, 0 already in an earlier split)" in caplog.text
    assert "dropped 1 duplicate interactions (0 repeated within the file, 1 already in an earlier split)" in caplog.text
    with open(os.path.join(out, "baby.test.inter")) as f:
        assert len(f.read().splitlines()) == 1 + len(TEST)


# ------------------------------------------------------------------------------------------
# Bad input: a clear message naming file and row/field, exit code 2, nothing written
# ------------------------------------------------------------------------------------------


def _save(path, arr, **kw):
    np.save(path, arr, **kw)


def _bad_feature_rows(src, rng):
    make_mmssl(src, rng)  # the matrices have 6 columns
    _save(src / "image_feat.npy", np.zeros((N_ITEMS + 1, 7), np.float16))
    _save(src / "audio_feat.npy", np.zeros((N_ITEMS + 1, 3), np.float16))


def _nan_feature(src, rng):
    feats = make_mmssl(src, rng)
    v = feats["v"].copy()
    v[4, 2] = np.nan
    _save(src / "image_feat.npy", v)


def _inf_feature(src, rng):
    make_mmgcn(src, rng)
    t = np.ones((N_ITEMS, 4))
    t[2, 1] = 1e300  # finite in float64, inf in float32
    _save(src / "FeatureText_stl_normal.npy", t)


def _feature_1d(src, rng):
    make_mmssl(src, rng)
    _save(src / "audio_feat.npy", np.zeros(N_ITEMS, np.float32))


def _feature_3d(src, rng):
    make_mmgcn(src, rng)
    _save(src / "FeatureVideo_normal.npy", np.zeros((N_ITEMS, 2, 2), np.float32))


def _feature_strings(src, rng):
    make_mmrec(src, rng)
    _save(src / "text_feat.npy", np.array([["a", "b"]] * N_ITEMS))


def _feature_pickled(src, rng):
    make_mmrec(src, rng)
    _save(src / "image_feat.npy", np.array([[1.0, "x"]] * N_ITEMS, dtype=object), allow_pickle=True)


def _fewer_feature_rows(src, rng):
    make_mmgcn(src, rng)
    for name in ("FeatureVideo_normal.npy", "FeatureAudio_avg_normal.npy", "FeatureText_stl_normal.npy"):
        _save(src / name, np.load(src / name)[:4])


def _more_feature_rows(src, rng):
    make_metammf(src, rng)
    for m in ("v", "a", "t"):
        _save(src / f"{m}_feat_sample.npy", np.ones((N_ITEMS + 2, 3)))


def _feature_rows_disagree(src, rng):
    make_mmrec(src, rng)
    _save(src / "text_feat.npy", np.ones((N_ITEMS - 1, 3), np.float32))


def _id_out_of_range(src, rng):
    make_mmssl(src, rng)
    m = _coo(TRAIN)
    m.col[3] = N_ITEMS + 2  # a hand-made pickle scipy never checked
    _dump(m, src / "trnMat.pkl")


def _negative_user(src, rng):
    make_mmgcn(src, rng)
    tr = np.array([(u, i + N_USERS) for u, i in TRAIN])
    tr[7, 0] = -3
    _save(src / "train.npy", tr)


def _negative_item_mmrec(src, rng):
    make_mmrec(src, rng, extra_lines=["1\t-4\t5.0\t1\t0"])


def _non_numeric_mmrec(src, rng):
    make_mmrec(src, rng, extra_lines=["2\tabc\t5.0\t1\t0"])


def _bad_label_mmrec(src, rng):
    make_mmrec(src, rng, extra_lines=["2\t1\t5.0\t1\t7"])


def _non_numeric_list(src, rng):
    make_mmgcn(src, rng)
    lists = _per_user_lists(TEST, N_USERS)
    lists[3] = [3, "x9"]
    _save(src / "test.npy", lists, allow_pickle=True)


def _missing_file(src, rng):
    make_mmssl(src, rng)
    os.remove(src / "valMat.pkl")


def _empty_file(src, rng):
    make_mmgcn(src, rng)
    (src / "test.npy").write_bytes(b"")


def _empty_mmrec(src, rng):
    os.makedirs(src)
    (src / "baby.inter").write_text("userID\titemID\trating\ttimestamp\tx_label\n")
    _save(src / "image_feat.npy", np.zeros((3, 2), np.float32))


def _user_without_interactions(src, rng):
    drop = [p for p in TRAIN + VALID + TEST if p[0] != 2]
    make_mmssl(src, rng, train=[p for p in TRAIN if p[0] != 2], valid=[p for p in VALID if p[0] != 2],
               test=[p for p in TEST if p[0] != 2])
    assert drop


def _item_without_interactions(src, rng):
    make_mmssl(src, rng, train=[p for p in TRAIN if p[1] != 5], valid=[p for p in VALID if p[1] != 5],
               test=[p for p in TEST if p[1] != 5])


def _item_without_interactions_metammf(src, rng):
    make_metammf(src, rng)
    d = {u: [i + N_USERS for uu, i in TRAIN + VALID + TEST if uu == u and i != 2] for u in range(N_USERS)}
    _save(src / "user_item_dict_sample.npy", np.array(d, dtype=object), allow_pickle=True)


def _malicious_pickle(src, rng):
    make_mmssl(src, rng)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))

    _dump(Evil(), src / "tstMat.pkl")


def _not_a_matrix(src, rng):
    make_mmssl(src, rng)
    _dump({"a": [1, 2]}, src / "valMat.pkl")


def _no_modality(src, rng):
    make_mmssl(src, rng)
    os.remove(src / "image_feat.npy")
    os.remove(src / "audio_feat.npy")


def _huge_user_id_mmgcn(src, rng):
    make_mmgcn(src, rng)
    tr = np.array([(u, i + N_USERS) for u, i in TRAIN])
    tr[7, 0] = 3_000_000_000  # once taken for the user count: hid the item offset, then a 22 GiB bincount
    _save(src / "train.npy", tr)


def _huge_user_id_metammf(src, rng):
    make_metammf(src, rng)
    d = {u: [i + N_USERS for uu, i in TRAIN + VALID + TEST if uu == u] for u in range(N_USERS)}
    d[3_000_000_000] = d.pop(3)
    _save(src / "user_item_dict_sample.npy", np.array(d, dtype=object), allow_pickle=True)


def _huge_user_id_mmrec(src, rng):
    make_mmrec(src, rng, extra_lines=["1e20\t1\t5.0\t1\t0"])  # beyond int64: wrapped around before


def _huge_item_id_mmrec(src, rng):
    make_mmrec(src, rng, extra_lines=["2\t3000000000\t5.0\t1\t0"])


def _beyond_int64_item(src, rng):
    make_mmgcn(src, rng)
    lists = _per_user_lists(TEST, N_USERS)
    lists[3] = [3, 10**20]
    _save(src / "test.npy", lists, allow_pickle=True)


def _huge_matrix_shape(src, rng):
    make_mmssl(src, rng, shape=(3_000_000_000, N_ITEMS))  # the shape is the user count: no per-user array


BAD = [
    # (format, builder, pieces the message must hold)
    ("mmssl", _bad_feature_rows, ["image_feat.npy", "v_feat has 7 rows; expected 6"]),
    ("mmgcn", _fewer_feature_rows, ["train.npy: row 4: item id 4 out of range; expected ids 0..3",
                                    "FeatureVideo_normal.npy, which has 4 rows"]),
    ("metammf", _more_feature_rows, ["2 item(s) of 0..7", "item ids 6, 7", "no interactions"]),
    ("mmrec", _feature_rows_disagree, ["different row counts", "image_feat.npy (v_feat) 6", "text_feat.npy (t_feat) 5"]),
    ("mmssl", _nan_feature, ["image_feat.npy", "row 4, column 2 is NaN"]),
    ("mmgcn", _inf_feature, ["FeatureText_stl_normal.npy", "row 2, column 1 is inf"]),
    ("mmssl", _feature_1d, ["audio_feat.npy", "not a 2-D array (shape (6,))"]),
    ("mmgcn", _feature_3d, ["FeatureVideo_normal.npy", "not a 2-D array (shape (6, 2, 2))"]),
    ("mmrec", _feature_strings, ["text_feat.npy", "non-numeric dtype"]),
    ("mmrec", _feature_pickled, ["image_feat.npy", "holds Python objects"]),
    ("mmssl", _id_out_of_range, ["trnMat.pkl: entry 3: item id 8 out of range; expected ids 0..5"]),
    ("mmgcn", _negative_user, ["train.npy: row 7: user id (column 0) -3 is negative; expected ids >= 0"]),
    ("mmrec", _negative_item_mmrec, ["baby.inter: line 23: itemID -4 is negative"]),
    ("mmrec", _non_numeric_mmrec, ["baby.inter: line 23: itemID 'abc' is not a number"]),
    ("mmrec", _bad_label_mmrec, ["baby.inter: line 23: x_label 7 out of range"]),
    ("mmgcn", _non_numeric_list, ["test.npy: row 3: item id 'x9' is not a number"]),
    ("mmssl", _missing_file, ["valMat.pkl: file not found"]),
    ("mmgcn", _empty_file, ["test.npy: empty file"]),
    ("mmrec", _empty_mmrec, ["baby.inter: no interactions"]),
    ("mmssl", _user_without_interactions, ["1 user(s)", "user ids 2", "no interactions"]),
    ("mmssl", _item_without_interactions, ["1 item(s)", "item ids 5", "no interactions"]),
    ("metammf", _item_without_interactions_metammf, ["user_item_dict_sample.npy", "item ids 2", "no interactions"]),
    ("mmssl", _malicious_pickle, ["tstMat.pkl", "refusing to unpickle", "system"]),
    ("mmssl", _not_a_matrix, ["valMat.pkl: holds a dict; expected a scipy sparse"]),
    ("mmssl", _no_modality, ["no modality feature file found"]),
    # ids are range-checked before anything sized by them is allocated (N = 21 or 22 interactions)
    ("mmgcn", _huge_user_id_mmgcn, ["train.npy: row 7: user id 3000000000 out of range; expected ids 0..20 (ids are 0-based"]),
    ("metammf", _huge_user_id_metammf, ["user_item_dict_sample.npy: user 3000000000: user id 3000000000 out of range; expected ids 0..20"]),
    ("mmrec", _huge_user_id_mmrec, ["baby.inter: line 23: userID 100000000000000000000 out of range; expected ids 0..21"]),
    ("mmrec", _huge_item_id_mmrec, ["baby.inter: line 23: itemID 3000000000 out of range; expected ids 0..21"]),
    ("mmgcn", _beyond_int64_item, ["test.npy: row 3: item id 100000000000000000000 out of range; expected ids 0..9223372036854775807"]),
    ("mmssl", _huge_matrix_shape, ["2999999995 user(s) of 0..2999999999 have no interactions", "user ids 5, 6, 7"]),
]


def assert_refused(rc, err, first_line):
    r"""Exit code 2, one ``error: ...`` line starting with ``first_line``, no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(first_line), err


def snapshot(folder):
    r"""Every file under ``folder`` with its bytes (to show that nothing changed)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for n in files:
            with open(os.path.join(root, n), "rb") as f:
                out[os.path.relpath(os.path.join(root, n), folder)] = f.read()
        out.update({os.path.relpath(os.path.join(root, d), folder) + "/": b"" for d in dirs})
    return out


def run_main(capsys, fmt, src, dst, *extra, name="x"):
    rc = main(["--format", fmt, "--src", str(src), "--dst", str(dst), "--name", name, "-q", *extra])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("fmt,build,pieces", BAD, ids=[b[1].__name__.strip("_") for b in BAD])
def test_bad_input(tmp_path, rng, capsys, fmt, build, pieces):
    src = tmp_path / "baby"
    build(src, rng)
    dst = tmp_path / "ds"
    rc, err = run_main(capsys, fmt, src, dst)
    assert_refused(rc, err, "error: ")
    for piece in pieces:
        assert piece in err, err
    assert not dst.exists() or os.listdir(dst) == []  # nothing half-written
    assert not (tmp_path / "pwned.txt").exists()


def test_cli_exit_code_and_no_traceback(tmp_path, rng):
    _nan_feature(tmp_path / "src", rng)
    r = subprocess.run(
        [sys.executable, "-m", "dataset_converters", "--format", "mmssl", "--src", str(tmp_path / "src"),
         "--dst", str(tmp_path / "ds"), "--name", "x"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert r.returncode == 2
    assert "image_feat.npy: v_feat row 4, column 2 is NaN" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "ds" / "x").exists()


@pytest.mark.parametrize("value", ["-5", "x", "1.5"])
def test_item_offset_must_be_a_non_negative_integer(tmp_path, rng, capsys, value):
    make_mmgcn(tmp_path / "src", rng)
    rc, err = run_main(capsys, "mmgcn", tmp_path / "src", tmp_path / "ds", "--item-offset", value)
    assert_refused(rc, err, f"error: --item-offset: '{value}'; expected auto or a non-negative integer")
    assert not (tmp_path / "ds").exists()


# ------------------------------------------------------------------------------------------
# Users without training interactions: kept, reported
# ------------------------------------------------------------------------------------------


def test_users_without_training_interactions_are_reported(tmp_path, rng, capsys, caplog):
    # users 1 and 4 keep only their validation / test interactions (every item still has a training one)
    train = [p for p in TRAIN if p[0] not in (1, 4)] + [(0, 2), (3, 5)]
    make_mmssl(tmp_path / "src", rng, train=train)
    with caplog.at_level(logging.WARNING, logger="dataset_converters"):  # pytest holds the log handlers
        rc, err = run_main(capsys, "mmssl", tmp_path / "src", tmp_path / "ds")
    assert rc == 0 and err == ""
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'src' / 'trnMat.pkl'}: 2 user(s) have no training interactions, only validation or test ones: "
        "user ids 1, 4; kept (models see them only in evaluation; --resplit gives every user training interactions)"
    ]
    with open(tmp_path / "ds" / "x" / "x.valid.inter") as f:
        assert "1\t5\n" in f.read()  # kept
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dataset_converters"):
        rc, err = run_main(capsys, "mmssl", tmp_path / "src", tmp_path / "ds2", "--resplit", "0.8,0.1,0.1")
    assert rc == 0 and not caplog.records  # a random split gives every user some


# ------------------------------------------------------------------------------------------
# Re-conversion: replaces an earlier conversion, never a file of the user's
# ------------------------------------------------------------------------------------------


def test_reconversion_replaces_an_earlier_conversion(tmp_path, rng):
    make_mmssl(tmp_path / "src", rng)
    convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")
    first = snapshot(tmp_path / "ds" / "toy")
    convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy", precision=3)
    second = snapshot(tmp_path / "ds" / "toy")
    assert second.keys() == first.keys() and second["toy.item"] != first["toy.item"]
    # another layout: the earlier split files are the converter's own and go with the folder
    convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy", resplit="0.8,0.1,0.1")
    assert sorted(os.listdir(tmp_path / "ds" / "toy")) == ["toy.inter", "toy.item", "toy.yaml"]
    assert os.listdir(tmp_path / "ds") == ["toy"]  # no temporary or old folder left


def _user_notes(final):
    (final / "toy.notes").write_text("mine")


def _user_file(final):
    (final / "notes.txt").write_text("mine")


def _user_folder(final):
    (final / "toy.train.inter.bak").mkdir()


def _hand_made_dataset(final):
    # the user's own RecBole files, not a conversion: no toy.yaml with the converter's first line
    for n in os.listdir(final):
        os.remove(final / n)
    (final / "toy.inter").write_text("user_id:token\titem_id:token\n0\t1\n")


@pytest.mark.parametrize("build,first_line", [
    (_user_notes, "holds files this converter did not write: toy.notes; nothing was changed"),
    (_user_file, "holds files this converter did not write: notes.txt; nothing was changed"),
    (_user_folder, "holds files this converter did not write: toy.train.inter.bak; nothing was changed"),
    (_hand_made_dataset, "holds toy.inter but no toy.yaml written by this converter; nothing was changed"),
], ids=lambda x: x.__name__.strip("_") if callable(x) else "")
def test_reconversion_refuses_a_folder_with_files_of_the_user(tmp_path, rng, capsys, build, first_line):
    make_mmssl(tmp_path / "src", rng)
    final = tmp_path / "ds" / "toy"
    convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")
    build(final)
    before = snapshot(tmp_path / "ds")
    rc, err = run_main(capsys, "mmssl", tmp_path / "src", tmp_path / "ds", "--precision", "3", name="toy")
    assert_refused(rc, err, f"error: {final}: {first_line}")
    assert snapshot(tmp_path / "ds") == before  # the user's file and the earlier conversion untouched


def test_reconversion_checks_again_before_replacing(tmp_path, rng, monkeypatch):
    # a file the user adds while the conversion runs is not deleted either
    make_mmssl(tmp_path / "src", rng)
    final = tmp_path / "ds" / "toy"
    convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")
    write_yaml = writer._write_yaml

    def user_adds_a_file(*a, **k):
        _user_notes(final)
        write_yaml(*a, **k)

    monkeypatch.setattr(writer, "_write_yaml", user_adds_a_file)
    with pytest.raises(ConversionError, match="did not write: toy.notes"):
        convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")
    assert (final / "toy.notes").read_text() == "mine" and os.listdir(tmp_path / "ds") == ["toy"]


# ------------------------------------------------------------------------------------------
# File-system failures: error: <file>: <what happened>, exit code 2, nothing written
# ------------------------------------------------------------------------------------------


def test_dst_is_a_file(tmp_path, rng, capsys):
    make_mmssl(tmp_path / "src", rng)
    (tmp_path / "ds").write_text("a file of the user's")
    rc, err = run_main(capsys, "mmssl", tmp_path / "src", tmp_path / "ds")
    assert_refused(rc, err, f"error: {tmp_path / 'ds'}: is a file, not a folder; expected --dst to name the folder")
    assert (tmp_path / "ds").read_text() == "a file of the user's"
    rc, err = run_main(capsys, "mmssl", tmp_path / "src", tmp_path / "ds" / "sub")
    assert_refused(rc, err, f"error: {tmp_path / 'ds'}: is a file, not a folder; cannot create")


def test_dst_read_only(tmp_path, rng, capsys, monkeypatch):
    make_mmssl(tmp_path / "src", rng)
    dst = tmp_path / "ds"
    dst.mkdir()
    dst.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: answer as the kernel would for anyone else
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and not (
            mode & os.W_OK and os.path.abspath(p).startswith(str(dst))))
    try:
        rc, err = run_main(capsys, "mmssl", tmp_path / "src", dst)
        assert_refused(rc, err, f"error: {dst}: not writable; expected --dst to be a folder you can write to")
        rc, err = run_main(capsys, "mmssl", tmp_path / "src", dst / "new" / "deeper")
        assert_refused(rc, err, f"error: {dst}: not writable; expected --dst to be a folder you can write to")
        assert os.listdir(dst) == []
    finally:
        dst.chmod(0o755)


def test_dst_that_fails_when_written(tmp_path, rng, capsys, monkeypatch):
    # writable by its mode bits, refused by the file system (read-only mount, quota): the same message
    make_mmssl(tmp_path / "src", rng)
    dst = tmp_path / "ds"

    def read_only_fs(prefix=None, dir=None, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, f"{prefix}abc123"))

    monkeypatch.setattr(writer.tempfile, "mkdtemp", read_only_fs)
    rc, err = run_main(capsys, "mmssl", tmp_path / "src", dst)
    assert_refused(rc, err, f"error: {dst}: cannot write (Read-only file system); nothing was written")
    assert os.listdir(dst) == []


def test_failure_while_writing_leaves_nothing(tmp_path, rng, capsys, monkeypatch):
    make_mmssl(tmp_path / "src", rng)

    def disk_full(path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(writer, "_write_yaml", disk_full)
    rc, err = run_main(capsys, "mmssl", tmp_path / "src", tmp_path / "ds")
    final = tmp_path / "ds" / "x"
    assert_refused(rc, err, f"error: {final / 'x.yaml'}: cannot write (No space left on device); nothing was written")
    assert os.listdir(tmp_path / "ds") == []
    # on a re-conversion the earlier version stays as it was
    monkeypatch.undo()
    convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "x")
    before = snapshot(tmp_path / "ds")
    monkeypatch.setattr(writer, "_write_yaml", disk_full)
    rc, err = run_main(capsys, "mmssl", tmp_path / "src", tmp_path / "ds", "--precision", "2")
    assert_refused(rc, err, f"error: {final / 'x.yaml'}: cannot write (No space left on device)")
    assert snapshot(tmp_path / "ds") == before


def test_unreadable_source_file(tmp_path, rng, capsys, monkeypatch):
    import dataset_converters.mmssl as mmssl

    make_mmssl(tmp_path / "src", rng)

    def denied(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(mmssl, "load_pickle", denied)
    rc, err = run_main(capsys, "mmssl", tmp_path / "src", tmp_path / "ds")
    assert_refused(rc, err, f"error: {tmp_path / 'src' / 'trnMat.pkl'}: cannot read (Permission denied)")
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("case", ["dst_is_a_file", "negative_item_offset", "user_notes"])
def test_cli_refusals_print_no_traceback(tmp_path, rng, case):
    # the real command line, for the refusals a user meets first
    make_mmgcn(tmp_path / "src", rng)
    args, dst = [], tmp_path / "ds"
    if case == "dst_is_a_file":
        dst.write_text("x")
    elif case == "negative_item_offset":
        args = ["--item-offset", "-5"]
    else:
        convert("mmgcn", str(tmp_path / "src"), str(dst), "x")
        (dst / "x" / "x.notes").write_text("mine")
    before = snapshot(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "dataset_converters", "--format", "mmgcn", "--src", str(tmp_path / "src"),
         "--dst", str(dst), "--name", "x", *args],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    first = {"dst_is_a_file": f"error: {dst}: is a file", "negative_item_offset": "error: --item-offset: '-5'",
             "user_notes": f"error: {dst / 'x'}: holds files this converter did not write: x.notes"}[case]
    assert_refused(r.returncode, r.stderr, first)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------
# The formats table
# ------------------------------------------------------------------------------------------


def test_formats_table_is_what_the_command_line_offers(capsys):
    assert list(FORMATS) == ["mmgcn", "metammf", "mmssl", "mmrec"]
    fmt_action = next(a for a in build_parser()._actions if a.dest == "format")
    assert list(fmt_action.choices) == list(FORMATS)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    formats = out[out.index("formats:\n"):]
    for name, read in FORMATS.items():  # each format listed with the first line of its reader's docstring
        assert re.search(rf"^  {name} +{re.escape(read.__doc__.split()[0])}", formats, re.M), name


def test_convert_reads_through_the_table(tmp_path, rng, monkeypatch):
    make_mmssl(tmp_path / "src", rng)
    seen, mmssl_read = [], FORMATS["mmssl"]

    def reader(src, **options):
        seen.append(options)
        return mmssl_read(src, **options)

    monkeypatch.setitem(FORMATS, "mmssl", reader)
    convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")
    assert seen == [{"modality_files": {}, "item_offset": "auto"}]
    monkeypatch.delitem(FORMATS, "mmrec")
    with pytest.raises(ConversionError, match="--format: 'mmrec' unknown; expected one of mmgcn, metammf, mmssl$"):
        convert("mmrec", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")


# ------------------------------------------------------------------------------------------
# Loading and number formatting
# ------------------------------------------------------------------------------------------


def test_pickles_are_loaded_only_through_the_allow_list():
    # the one unpickler is safe_unpickle's: no plain pickle.load / np.load(allow_pickle=True) anywhere
    folder = os.path.join(REPO, "dataset_converters")
    plain = re.compile(r"pickle\.loads?\(|np\.load\([^)]*allow_pickle\s*=\s*True")
    unpickler = re.compile(r"\bUnpickler\b")
    found = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
            hits = plain.findall(text) + (unpickler.findall(text) if name != "safe_unpickle.py" else [])
            if hits:
                found[name] = hits
    assert found == {}


def test_restricted_loading_reads_the_pickled_layouts(tmp_path):
    d = {0: {7, 8}, 1: [np.int64(9)]}
    np.save(tmp_path / "d.npy", np.array(d, dtype=object), allow_pickle=True)
    assert load_npy(str(tmp_path / "d.npy"), allow_object=True).item() == d
    with pytest.raises(ConversionError, match="holds Python objects"):
        load_npy(str(tmp_path / "d.npy"))
    for fmt in ("csr", "coo", "csc"):
        m = _coo(TRAIN).asformat(fmt)
        _dump(m, tmp_path / "m.pkl")
        assert (load_pickle(str(tmp_path / "m.pkl")) != m).nnz == 0
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ConversionError, match="junk.pkl: not a readable pickle"):
        load_pickle(str(tmp_path / "junk.pkl"))


#: Where old and new numpy put ``_reconstruct`` / ``scalar`` in their pickles: 1.16-1.26 wrote
#: ``numpy.core._multiarray_umath`` or ``numpy.core.multiarray``, numpy 2 ``numpy._core...``.
NUMPY_PICKLE_MODULES = ["numpy.core._multiarray_umath", "numpy.core.multiarray", "numpy._core.multiarray",
                        "numpy._core._multiarray_umath"]


def numpy_pickle_as(obj, module, protocol):
    r"""``obj`` pickled the way a numpy whose internals live in ``module`` writes it.

    Pickled by this numpy, then the module of its GLOBAL opcodes renamed: in protocols 0-3 a GLOBAL is
    a text line (``c<module>\n<name>\n``) with no length prefix, so the rename leaves a valid pickle
    with exactly the names that numpy wrote.
    """
    data = pickle.dumps(obj, protocol=protocol)
    data = re.sub(rb"c(numpy\.(?:_core|core)\.(?:_multiarray_umath|multiarray))\n", b"c" + module.encode() + b"\n", data)
    names = {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    assert f"{module} _reconstruct" in names and not any(" " not in n for n in names)
    assert {n.split()[0] for n in names if n.startswith("numpy.") and n.split()[0] != "numpy"} == {module}
    return data


def save_npy_as(path, arr, module, protocol):
    r"""An object ``.npy`` as ``np.save`` of that numpy writes it: the 1.0 header, then the pickle."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": arr.shape})
        f.write(numpy_pickle_as(arr, module, protocol))


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("module", NUMPY_PICKLE_MODULES)
def test_object_arrays_of_any_numpy_since_1_16_are_read(tmp_path, module, protocol):
    d = {0: [5, 6], 1: {7, 8}, 2: [np.int64(9), np.float64(3.0)], 3: np.arange(3)}
    save_npy_as(tmp_path / "d.npy", np.array(d, dtype=object), module, protocol)
    got = load_npy(str(tmp_path / "d.npy"), allow_object=True).item()
    assert got.keys() == d.keys() and got[0] == [5, 6] and got[1] == {7, 8}
    assert got[2] == [9, 3.0] and type(got[2][0]) is np.int64
    np.testing.assert_array_equal(got[3], np.arange(3))
    lists = _per_user_lists(TEST, 0)  # MMGCN's val / test layout: a 1-D object array of lists
    save_npy_as(tmp_path / "l.npy", lists, module, protocol)
    assert load_npy(str(tmp_path / "l.npy"), allow_object=True).tolist() == lists.tolist()


def test_metammf_release_written_by_numpy_1_16_converts(tmp_path, rng):
    # the authors' user_item_dict_sample.npy as numpy 1.16 wrote it (protocol 2, numpy.core._multiarray_umath)
    make_metammf(tmp_path / "src", rng)
    d = {u: [np.int64(i + N_USERS) for uu, i in TRAIN + VALID + TEST if uu == u] for u in range(N_USERS)}
    save_npy_as(tmp_path / "src" / "user_item_dict_sample.npy", np.array(d, dtype=object), "numpy.core._multiarray_umath", 2)
    out = convert("metammf", str(tmp_path / "src"), str(tmp_path / "ds"), "mm")
    with open(os.path.join(out, "mm.inter")) as f:
        assert f.read().splitlines()[1:] == [f"{u}\t{i}" for u, i in sorted(TRAIN + VALID + TEST)]


@pytest.mark.parametrize("fmt", ["csr", "coo", "csc"])
def test_protocol_0_sparse_matrices_are_read(tmp_path, fmt):
    m = _coo(TRAIN).asformat(fmt)
    data = pickle.dumps(m, protocol=0)
    assert b"ccopy_reg\n_reconstructor\n" in data and b"c__builtin__\nobject\n" in data  # as Python 2 wrote it
    for variant in (data, data.replace(b"ccopy_reg\n", b"ccopyreg\n").replace(b"c__builtin__\n", b"cbuiltins\n")):
        (tmp_path / "m.pkl").write_bytes(variant)
        got = load_pickle(str(tmp_path / "m.pkl"))
        assert type(got) is type(m) and got.shape == m.shape and (got != m).nnz == 0


def test_mmssl_release_pickled_with_protocol_0_converts(tmp_path, rng):
    make_mmssl(tmp_path / "src", rng)
    for fname, pairs in (("trnMat.pkl", TRAIN), ("valMat.pkl", VALID), ("tstMat.pkl", TEST)):
        (tmp_path / "src" / fname).write_bytes(pickle.dumps(_coo(pairs).tocsr(), protocol=0))
    out = convert("mmssl", str(tmp_path / "src"), str(tmp_path / "ds"), "toy")
    with open(os.path.join(out, "toy.train.inter")) as f:
        assert f.read().splitlines()[1:] == [f"{u}\t{i}" for u, i in sorted(TRAIN)]


REFUSED_PICKLES = {
    "os_system": (b"cos\nsystem\n(Vtouch pwned.txt\ntR.", "'os.system'"),
    "builtins_eval": (b"c__builtin__\neval\n(Vopen('pwned.txt', 'w')\ntR.", "'__builtin__.eval'"),
    "builtins_getattr": (b"c__builtin__\ngetattr\n(c__builtin__\nobject\nV__subclasses__\ntR.", "'__builtin__.getattr'"),
    "numpy_runstring": (b"cnumpy.testing._private.utils\nrunstring\n(Vopen('pwned.txt', 'w')\n(dtR.",
                        "'numpy.testing._private.utils.runstring'"),
    "numpy_other_internal": (b"cnumpy.core.multiarray\nfromfile\n(Vpwned.txt\ntR.", "'numpy.core.multiarray.fromfile'"),
    "reconstructor_of_ndarray": (b"ccopy_reg\n_reconstructor\n(cnumpy\nndarray\nc__builtin__\nobject\nNtR.",
                                 "copyreg._reconstructor('ndarray', 'object')"),
    "reconstructor_on_other_base": (b"ccopy_reg\n_reconstructor\n(cscipy.sparse\ncsr_matrix\nc__builtin__\nset\n(ltR.",
                                    "copyreg._reconstructor('csr_matrix', 'set')"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_PICKLES))
def test_pickles_naming_code_are_refused(tmp_path, case):
    data, what = REFUSED_PICKLES[case]
    (tmp_path / "evil.pkl").write_bytes(data)
    with pytest.raises(ConversionError) as e:
        load_pickle(str(tmp_path / "evil.pkl"))
    assert str(e.value).startswith(f"{tmp_path / 'evil.pkl'}: refusing to unpickle {what}: only scipy sparse")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    (tmp_path / "evil.npy").write_bytes(header.getvalue() + data)  # the same behind an .npy header
    with pytest.raises(ConversionError, match="refusing to unpickle"):
        load_npy(str(tmp_path / "evil.npy"), allow_object=True)
    assert not (tmp_path / "pwned.txt").exists()


def test_float16_every_value_reads_back():
    all16 = np.arange(65536, dtype=np.uint16).view(np.float16)
    all16 = all16[np.isfinite(all16)].reshape(-1, 31)  # 63488 = 2048 * 31
    rows = format_values(all16)
    back = np.array(" ".join(rows).split(), dtype=np.float64)
    flat = all16.ravel()
    np.testing.assert_array_equal(back.astype(np.float16), flat)
    np.testing.assert_array_equal(back.astype(np.float32).astype(np.float16), flat)  # RecBole's path
    assert max(len(s.lstrip("-").replace(".", "").lstrip("0")) for s in " ".join(rows).split()) <= 5 + 4  # 'e-05'


def test_float32_shortest_and_precision():
    rng = np.random.default_rng(3)
    x = np.concatenate([
        rng.standard_normal(20000).astype(np.float32),
        (rng.standard_normal(5000) * 1e-30).astype(np.float32),
        (rng.standard_normal(5000) * 1e30).astype(np.float32),
        np.array([0.0, -0.0, 0.1, 1.0, 100.0, 3.4028235e38, 1e-45, 1.17549435e-38, 16777217.0], np.float32),
    ]).reshape(-1, 1)
    strs = [r for r in format_values(x)]
    back = np.array(strs, dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(back, x.ravel())
    assert strs[-9:-3] == ["0", "-0", "0.1", "1", "100", "3.4028235e+38"]
    assert strs[-3:] == ["1e-45", "1.1754944e-38", "16777216"]
    # shortest: no string has a shorter %g form that also reads back
    for s, v in zip(strs[:2000], x.ravel()[:2000]):
        digits = len(s.lstrip("-").split("e")[0].replace(".", "").lstrip("0"))
        if digits > 1:
            assert np.float32(float("%.*g" % (digits - 1, v))) != v
    p3 = format_values(np.array([[3.14159265, -0.000123456, 98765.4]], np.float32), precision=3)
    assert p3 == ["3.14 -0.000123 9.88e+04"]


# ------------------------------------------------------------------------------------------
# The shipped dataset
# ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir(SHARED_TIKTOK), reason="../shared/data/tiktok not present")
def test_shipped_tiktok_equals_fresh_conversion(tmp_path):
    out = convert("mmssl", SHARED_TIKTOK, str(tmp_path / "ds"), "tiktok")
    names = sorted(os.listdir(out))
    assert names == sorted(os.listdir(SHIPPED_TIKTOK))
    assert names == ["tiktok.item", "tiktok.test.inter", "tiktok.train.inter", "tiktok.valid.inter", "tiktok.yaml"]
    for n in names:
        with open(os.path.join(out, n), "rb") as a, open(os.path.join(SHIPPED_TIKTOK, n), "rb") as b:
            assert a.read() == b.read(), n
    counts = {}
    for split in ("train", "valid", "test"):
        with open(os.path.join(out, f"tiktok.{split}.inter")) as f:
            counts[split] = len(f.read().splitlines()) - 1
    assert counts == {"train": 59541, "valid": 3051, "test": 6130}


def test_the_shuffled_control_moves_whole_feature_rows_and_keeps_ids_and_interactions(tmp_path):
    r"""docs/scripts/shuffle_item_features.py: the control dataset of docs/RESULTS.md ("Do the features carry
    the gain?"): each item keeps its id and interactions and wears another real item's whole feature set."""
    src = tmp_path / "toy"
    src.mkdir()
    features = {str(i): (f"{i}.0 {i}.5", f"{10 * i}.0") for i in range(8)}
    (src / "toy.item").write_text(
        "item_id:token\tv_feat:float_seq\ta_feat:float_seq\n"
        + "".join(f"{i}\t{v}\t{a}\n" for i, (v, a) in features.items())
    )
    (src / "toy.train.inter").write_text("user_id:token\titem_id:token\n0\t1\n1\t2\n")
    (src / "toy.yaml").write_text("modalities: [v_feat, a_feat]\n")
    script = os.path.join(REPO, "docs", "scripts", "shuffle_item_features.py")
    done = subprocess.run([sys.executable, script, f"--src={src}", f"--dst={tmp_path}", "--name=toy_shuffled"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "toy_shuffled"
    header, *rows = (out / "toy_shuffled.item").read_text().splitlines()
    assert header == "item_id:token\tv_feat:float_seq\ta_feat:float_seq"
    rows = [row.split("\t") for row in rows]
    assert [row[0] for row in rows] == list(features)  # ids in place
    assert sorted(tuple(row[1:]) for row in rows) == sorted(features.values())  # whole rows, none lost or split
    assert sum(tuple(row[1:]) != features[row[0]] for row in rows) >= 6  # the link item -> own content is cut
    assert (out / "toy_shuffled.train.inter").read_text() == (src / "toy.train.inter").read_text()
    assert (out / "toy_shuffled.yaml").read_text().endswith("modalities: [v_feat, a_feat]\n")
    again = subprocess.run([sys.executable, script, f"--src={src}", f"--dst={tmp_path}", "--name=toy_shuffled"],
                           capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr  # an earlier copy is not overwritten
