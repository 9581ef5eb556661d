r"""Tests of ``python -m dataset_converters.movielens``: RecBole's bundled ml-100k with text and category features."""

import numpy as np
import pytest

from dataset_converters.movielens import main, split_per_user


def _pairs(path):
    rows = [line.split("\t") for line in open(path).read().splitlines()[1:]]
    return {(int(u), int(i)) for u, i in rows}


def _features(path):
    lines = open(path).read().splitlines()
    header = [c.split(":")[0] for c in lines[0].split("\t")]
    cols = list(zip(*[line.split("\t") for line in lines[1:]]))
    return {name: np.array([[float(x) for x in v.split()] for v in col]) for name, col in zip(header[1:], cols[1:])}


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    dst = tmp_path_factory.mktemp("data")
    assert main(["--dst", str(dst), "--name", "ml", "--seed", "7", "-q"]) == 0
    return dst / "ml"


def test_every_rating_lands_in_exactly_one_split_and_every_user_in_all_three(ml100k):
    splits = {s: _pairs(ml100k / f"ml.{s}.inter") for s in ("train", "valid", "test")}
    assert sum(map(len, splits.values())) == len(set().union(*splits.values())) == 100_000
    for s in ("valid", "test"):
        assert {u for u, _ in splits[s]} == set(range(943))
        assert 0.09 < len(splits[s]) / 100_000 < 0.11
    assert {i for _, i in set().union(*splits.values())} == set(range(1682))


def test_text_features_are_unit_length_and_category_features_are_flags(ml100k):
    feats = _features(ml100k / "ml.item")
    assert feats["t_feat"].shape == (1682, 64)
    np.testing.assert_allclose(np.linalg.norm(feats["t_feat"], axis=1), 1.0, atol=1e-5)
    # titles differ: the embeddings are not one vector repeated
    assert np.unique(feats["t_feat"].round(4), axis=0).shape[0] > 1600
    c = feats["c_feat"]
    assert set(np.unique(c)) <= {0.0, 1.0}
    assert (c.sum(axis=1) >= 2).all()  # at least one genre flag and exactly one decade
    assert "modalities: [t_feat, c_feat]" in (ml100k / "ml.yaml").read_text()


def test_recbole_reads_the_written_dataset(ml100k):
    from recbole.data import create_dataset
    from recbole_metammf.config import Config

    config = Config(model="MetaMMF_LightGCN", dataset="ml", config_file_list=[str(ml100k / "ml.yaml")],
                    config_dict={"data_path": str(ml100k.parent), "show_progress": False})
    dataset = create_dataset(config)
    assert (dataset.user_num - 1, dataset.item_num - 1) == (943, 1682)
    assert len(dataset.item_feat["t_feat"].iloc[1]) == 64 and len(dataset.item_feat["c_feat"].iloc[1]) == 28


def test_split_is_seeded_and_cut_per_user():
    users = np.repeat(np.arange(3), [20, 30, 40])
    a, b = split_per_user(users, np.random.default_rng(1)), split_per_user(users, np.random.default_rng(1))
    assert (a == b).all()
    for u, n in zip(range(3), (20, 30, 40)):
        counts = np.bincount(a[users == u], minlength=3)
        assert counts.tolist() == [n - 2 * round(n / 10), round(n / 10), round(n / 10)]


def test_bad_text_dimension_is_refused_with_a_message(tmp_path, capsys):
    assert main(["--dst", str(tmp_path), "--text-dim", "0", "-q"]) == 2
    assert main(["--dst", str(tmp_path), "--text-dim", "100000", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--text-dim: 0" in err and "--text-dim: 100000; expected fewer than" in err
    assert not (tmp_path / "ml100k").exists()


def test_conversion_is_deterministic_for_a_seed(ml100k, tmp_path):
    assert main(["--dst", str(tmp_path), "--name", "ml", "--seed", "7", "-q"]) == 0
    for name in ("ml.train.inter", "ml.valid.inter", "ml.test.inter", "ml.item", "ml.yaml"):
        assert (tmp_path / "ml" / name).read_bytes() == (ml100k / name).read_bytes()
