"""The cold-start item protocol (cold_start: item), never-trained items scored from their features,
and new items added to a trained model. All on the tiny dataset of conftest.py."""

import os
import runpy
import sys

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_metammf.cold_start import add_new_items, create_dataset, data_preparation, extend_model, forget_items
from recbole_metammf.config import Config
from recbole_metammf.quick_start import load_data_and_model, run_recbole_metammf
from recbole_metammf.recommend import recommend, recommend_topk
from recbole_metammf.registry import get_model
from recbole_metammf.utils import REPO_ROOT, ConfigError, DataError

from conftest import build, dense_knn_graph, write_tiny_dataset

SCRIPT = os.path.join(REPO_ROOT, "run_recbole_metammf.py")
COLD = {"cold_start": "item", "topk": [5, 10], "valid_metric": "NDCG@10"}


def cold_data(config_dict, model="BPR"):
    config = Config(model=model, dataset=config_dict["dataset"], config_dict={**COLD, **config_dict})
    dataset = create_dataset(config)
    return config, dataset, data_preparation(config, dataset)


def token_pairs(part):
    """(user token, item token) of each interaction of a built dataset part."""
    users = part.id2token(part.uid_field, part.inter_feat[part.uid_field].numpy())
    items = part.id2token(part.iid_field, part.inter_feat[part.iid_field].numpy())
    return sorted(zip(map(str, users), map(str, items)))


def file_pairs(config_dict):
    root = os.path.join(config_dict["data_path"], "tiny")
    pairs = []
    for split in ("train", "valid", "test"):
        with open(os.path.join(root, f"tiny.{split}.inter")) as f:
            pairs += [tuple(line.split()) for line in f.readlines()[1:]]
    return pairs


def item_tokens(dataset, ids):
    return {str(token) for token in np.atleast_1d(dataset.id2token(dataset.iid_field, np.asarray(ids)))}


@pytest.fixture
def random_split_config(tiny_config):
    """The tiny dataset as one tiny.inter file, split at random by RecBole."""
    root = os.path.join(tiny_config["data_path"], "tiny")
    rows = ["user_id:token\titem_id:token\n"]
    for split in ("train", "valid", "test"):
        with open(os.path.join(root, f"tiny.{split}.inter")) as f:
            rows += f.readlines()[1:]
    with open(os.path.join(root, "tiny.inter"), "w") as f:
        f.writelines(rows)
    config = dict(tiny_config)
    del config["benchmark_filename"]
    return config


# ---- the protocol ------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["fixed", "random"])
def test_held_out_items_leave_training_and_are_the_only_candidates(split, tiny_config, request):
    config_dict = tiny_config if split == "fixed" else request.getfixturevalue("random_split_config")
    config, dataset, (train_data, valid_data, test_data) = cold_data(config_dict)
    valid_cold, test_cold = item_tokens(dataset, dataset.cold_valid_items), item_tokens(dataset, dataset.cold_test_items)
    assert valid_cold and test_cold and not valid_cold & test_cold
    interacted = {item for _, item in file_pairs(tiny_config)}
    assert len(valid_cold) + len(test_cold) == round(0.2 * len(interacted))
    assert len(valid_cold) == (len(valid_cold) + len(test_cold)) // 2  # half each, validation rounded down

    train = token_pairs(train_data.dataset)
    assert not {item for _, item in train} & (valid_cold | test_cold)
    # every interaction of a held-out item, from every part, is in its evaluation part
    everything = file_pairs(tiny_config)
    assert token_pairs(valid_data.dataset) == sorted(p for p in everything if p[1] in valid_cold)
    assert token_pairs(test_data.dataset) == sorted(p for p in everything if p[1] in test_cold)
    if split == "fixed":  # the training file without the held-out items
        with open(os.path.join(tiny_config["data_path"], "tiny", "tiny.train.inter")) as f:
            train_file = [tuple(line.split()) for line in f.readlines()[1:]]
        assert train == sorted(p for p in train_file if p[1] not in valid_cold | test_cold)

    for loader, cold in [(valid_data, valid_cold), (test_data, test_cold)]:
        mask = loader.dataset.candidate_items
        assert mask.shape == (dataset.item_num,)
        assert item_tokens(dataset, mask.nonzero().view(-1).numpy()) == cold
    # never sampled as training negatives
    np.random.seed(0)
    users = np.arange(1, dataset.user_num).repeat(50)
    negatives = train_data._sampler.sample_by_user_ids(users, np.zeros_like(users), 1).numpy()
    assert not item_tokens(dataset, negatives) & (valid_cold | test_cold)


def test_the_held_out_items_are_fixed_by_the_seed(tiny_config):
    def held_out(seed):
        _, dataset, _ = cold_data({**tiny_config, "seed": seed})
        return item_tokens(dataset, dataset.cold_valid_items), item_tokens(dataset, dataset.cold_test_items)

    assert held_out(1) == held_out(1)
    assert held_out(1) != held_out(2)
    _, dataset, _ = cold_data({**tiny_config, "cold_item_ratio": 0.5})
    assert len(dataset.cold_valid_items) + len(dataset.cold_test_items) == round(0.5 * len({i for _, i in file_pairs(tiny_config)}))


def test_evaluation_ranks_the_held_out_items_with_the_real_trainer(tiny_config):
    # Pop scores every never-trained item 0: among all items it ranks warm items first, among the
    # 9 test cold items any ranking puts all of them in a top-10
    result = run_recbole_metammf("Pop", "tiny", config_dict={**tiny_config, **COLD, "epochs": 1})
    for split in ("best_valid_result", "test_result"):
        assert result[split]["recall@10"] == 1.0
        assert result[split]["all_items/recall@10"] == 0.0
    assert result["best_valid_score"] == result["best_valid_result"]["ndcg@10"]  # selection: the cold ranking


@pytest.mark.parametrize(
    "override, message",
    [
        ({"cold_start": "items"}, r"cold_start: got 'items'; expected item \(.*\) or null \(off\)"),
        ({"cold_item_ratio": 1.5}, r"cold_item_ratio: got 1.5; expected a share 0 < r < 1"),
        ({"cold_item_ratio": "x"}, r"cold_item_ratio: got 'x'; expected a share 0 < r < 1"),
    ],
)
def test_bad_cold_start_settings_are_refused(override, message, tiny_config):
    with pytest.raises(ConfigError, match=message):
        Config(model="BPR", dataset="tiny", config_dict={**tiny_config, **COLD, **override})


def test_too_few_held_out_items_are_refused(tiny_config):
    with pytest.raises(ConfigError, match=r"cold_item_ratio: got 0.01, which holds out 1 of the \d+ items .* at least 2"):
        cold_data({**tiny_config, "cold_item_ratio": 0.01})


# ---- never-trained items scored from their features -----------------------------------------------


@pytest.mark.parametrize("model_name", ["MetaMMF_MF", "MetaMMF_GCN", "MetaMMF_LightGCN", "VBPR", "EarlyFusion_MF", "LateFusion_GCN"])
def test_a_feature_model_scores_a_cold_item_from_its_features(model_name, tiny_config):
    config, dataset, (train_data, _, _) = cold_data(tiny_config, model_name)
    init_seed(2020, True)
    model = get_model(model_name)(config, train_data._dataset)
    forget_items(model, dataset)
    cold = int(dataset.cold_test_items[0])
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and module.num_embeddings == model.n_items:
            assert module.weight[cold].abs().sum() == 0, name  # the defined ID part: zero
    model.eval()
    user = {model.USER_ID: torch.tensor([1, 2])}
    with torch.no_grad():
        before = model.full_sort_predict(user).view(2, -1)[:, cold].clone()
        model.item_features[cold] += 1.0
        model.train(), model.eval()  # drop the cached representations
        after = model.full_sort_predict(user).view(2, -1)[:, cold]
    assert torch.isfinite(before).all() and not torch.allclose(before, after)


def test_cold_item_id_rows_stay_zero_through_training(tiny_config):
    # with the item-item graph of the features, the one path by which warm items' gradients reach cold items' ID rows
    result = run_recbole_metammf("MetaMMF_MF", "tiny", config_dict={**tiny_config, **COLD, "epochs": 2, "item_graph_k": 10})
    _, model, dataset, _, _, _ = load_data_and_model(result["checkpoint"])
    cold = np.concatenate([dataset.cold_valid_items, dataset.cold_test_items])
    weight = model.item_embedding.weight
    assert weight[cold].abs().sum() == 0 and weight[1:].abs().sum() > 0


# ---- new items for a trained model -----------------------------------------------------------------


def write_items(path, rows, header="item_id:token\tv_feat:float_seq\ta_feat:float_seq"):
    with open(path, "w") as f:
        f.write(header + "\n")
        for token, *blocks in rows:
            f.write(token + "\t" + "\t".join(" ".join(x if isinstance(x, str) else f"{x:.6g}" for x in block) for block in blocks) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A MetaMMF_LightGCN trained on the tiny dataset under the cold-start protocol, once for the module."""
    folder = tmp_path_factory.mktemp("trained")
    root, fields, _ = write_tiny_dataset(str(folder / "data"))
    config = {
        "data_path": root, "benchmark_filename": ["train", "valid", "test"], "modalities": fields,
        "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id"]}, "epochs": 2, "train_batch_size": 128,
        "show_progress": False, "checkpoint_dir": str(folder / "saved"), "seed": 2020, **COLD,
    }
    argv, cwd = sys.argv, os.getcwd()
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value arguments (pytest's own included)
    os.chdir(folder)
    try:
        return run_recbole_metammf("MetaMMF_LightGCN", "tiny", config_dict=config)["checkpoint"]
    finally:
        sys.argv = argv
        os.chdir(cwd)


def test_new_items_join_a_trained_model_and_can_be_recommended(trained, tiny_config, in_tmp_cwd):
    _, model, _, train_data, _, _ = load_data_and_model(trained)
    dataset = train_data.dataset
    held_out = [str(t) for t in dataset.id2token(dataset.iid_field, dataset.cold_test_items)]
    _, _, blocks = write_tiny_dataset(str(in_tmp_cwd / "copy"))  # the raw features, as in tiny.item
    # each new item is the twin of a held-out item: the same raw features, so the same score (both have
    # a zero ID part and no edges; the new one is min-max scaled with the training data's range)
    rows = [(f"new{t}", blocks[0][int(t)], blocks[1][int(t)]) for t in held_out]
    path = write_items(in_tmp_cwd / "new.item", rows)
    users = [str(u) for u in range(60)]

    n_items = dataset.item_num
    assert add_new_items(model, dataset, path) == [f"new{t}" for t in held_out]
    assert model.n_items == dataset.item_num == n_items + len(held_out)
    ranked = recommend_topk(model, dataset, ["3"], topk=1000, with_scores=True)["3"]
    scores = dict(ranked)
    for token in held_out:
        assert scores[f"new{token}"] == pytest.approx(scores[token], rel=1e-5, abs=1e-6)
    # the top-K holds a new item once K reaches its rank
    first_new = next(k for k, (item, _) in enumerate(ranked) if item.startswith("new"))
    k = first_new + 1
    top = recommend_topk(model, dataset, users, topk=k)
    assert top["3"][-1] == ranked[first_new][0]
    # the same through the checkpoint-loading function and the command line
    assert recommend(trained, users, topk=k, new_items=path) == top
    sys.argv = [SCRIPT, "--recommend", f"--checkpoint={trained}", "--users=3,17", "--topk=10", f"--new_items={path}"]
    runpy.run_path(SCRIPT, run_name="__main__")


def test_new_items_join_the_item_graph_with_their_feature_neighbours(tiny_config, in_tmp_cwd):
    _, model, train_data, _, _ = build("MetaMMF_LightGCN", {**tiny_config, "item_graph_k": 4})
    model.eval()
    dataset, n_items = train_data._dataset, model.n_items
    rng = np.random.default_rng(0)
    new_blocks = [rng.normal(size=(2, dim)).round(4) for dim in model.modality_dims]
    add_new_items(model, dataset, write_items(in_tmp_cwd / "new.item", [("n1", *[b[0] for b in new_blocks]), ("n2", *[b[1] for b in new_blocks])]))
    raw = [np.concatenate([dataset.get_item_feature()[m].double().numpy()[:n_items], block]) for m, block in zip(model.modalities, new_blocks)]
    with torch.no_grad():
        _, items = model.forward()
        ego = model.item_representation().double().numpy()
    assert items.shape[0] == model.n_items == n_items + 2
    # no user-item edge: LightGCN's mean keeps a new item's layer-0 share; the item graph adds its feature neighbours'
    s = sum(dense_knn_graph(block, 4) for block in raw) / len(raw)  # over every item, the new ones included
    h = s @ ego
    expected = ego[n_items:] / (model.n_layers + 1) + h[n_items:] / np.linalg.norm(h[n_items:], axis=1, keepdims=True)
    np.testing.assert_allclose(items[n_items:].double().numpy(), expected, rtol=1e-4, atol=1e-6)
    assert (s[n_items:, 1:n_items] > 0).any(axis=1).all()  # each new item has warm neighbours


def test_tied_scores_are_ordered_by_item_id_so_a_short_list_is_a_prefix_of_a_long_one(trained, monkeypatch):
    _, model, _, train_data, _, _ = load_data_and_model(trained)
    dataset = train_data.dataset
    monkeypatch.setattr(model, "full_sort_predict", lambda interaction: torch.zeros(len(interaction[model.USER_ID]), model.n_items))
    short, long = (recommend_topk(model, dataset, ["3", "17"], topk=k) for k in (3, 40))
    seen = set(dataset.inter_matrix(form="csr")[int(dataset.token2id(dataset.uid_field, "3"))].indices)
    unseen = [i for i in range(1, model.n_items) if i not in seen]
    assert short["3"] == [str(t) for t in dataset.id2token(dataset.iid_field, unseen[:3])]
    assert all(long[user][:3] == short[user] for user in short)


@pytest.mark.parametrize(
    "rows, header, message",
    [
        ([("n1", [0.1] * 8)], "item_id:token\tv_feat:float_seq",
         r"lacks the float_seq field\(s\) \['a_feat'\] that the model reads"),
        ([("n1", [0.1] * 7, [0.1] * 6)], None, r"line 2 \(item 'n1'\): 'v_feat' has 7 values; the model's 'v_feat' has 8"),
        ([("n1", [0.1] * 8, [0.1] * 5 + [float("nan")])], None, r"line 2 \(item 'n1'\): 'a_feat' holds NaN or inf"),
        ([("n1", ["abc"] * 8, [0.1] * 6)], None, r"'v_feat' is not a list of numbers"),
        ([("5", [0.1] * 8, [0.1] * 6)], None, r"item '5' is in the catalogue of dataset 'tiny'; a new item needs a new token"),
        ([("n1", [0.1] * 8, [0.1] * 6)] * 2, None, r"item 'n1' is in .*new.item already"),
        ([], None, r"holds no items"),
    ],
)
def test_bad_new_item_files_are_refused_clearly(rows, header, message, trained, in_tmp_cwd):
    path = write_items(in_tmp_cwd / "new.item", rows, **({"header": header} if header else {}))
    with pytest.raises(DataError, match=message):
        recommend(trained, ["3"], topk=5, new_items=path)


def test_the_command_line_reports_a_bad_new_item_file_without_a_traceback(trained, in_tmp_cwd, capsys):
    path = write_items(in_tmp_cwd / "new.item", [("n1", [0.1] * 7, [0.1] * 6)])
    sys.argv = [SCRIPT, "--recommend", f"--checkpoint={trained}", "--users=3", f"--new_items={path}"]
    with pytest.raises(SystemExit, match=r"^error: new_items: .*'v_feat' has 7 values"):
        runpy.run_path(SCRIPT, run_name="__main__")
    sys.argv = [SCRIPT, "--recommend", f"--checkpoint={trained}", "--users=3", "--new_items=missing.item"]
    with pytest.raises(SystemExit, match=r"^error: new_items: missing.item does not exist or is not a file"):
        runpy.run_path(SCRIPT, run_name="__main__")
    (in_tmp_cwd / "latin1.item").write_bytes("item_id:token\tv_feat:float_seq\n\xe9t\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"^new_items: cannot read .*latin1.item"):
        recommend(trained, ["3"], topk=5, new_items=str(in_tmp_cwd / "latin1.item"))


def test_an_id_only_model_cannot_take_new_items(tiny_config, in_tmp_cwd):
    result = run_recbole_metammf("BPR", "tiny", config_dict={**tiny_config, "epochs": 1})
    path = write_items(in_tmp_cwd / "new.item", [("n1", [0.1] * 8, [0.1] * 6)])
    with pytest.raises(ConfigError, match=r"new_items: BPR cannot score items it has not trained on"):
        recommend(result["checkpoint"], ["3"], new_items=path)


def test_tied_scores_are_ranked_at_random_for_each_user_not_by_item_id():
    from recbole_metammf.trainer import break_ties

    distinct = torch.tensor([[0.1, 0.3, -torch.inf, 0.2]])
    assert break_ties(distinct, torch.Generator().manual_seed(0)) is distinct  # no ties: unchanged
    scores = torch.zeros(200, 50)
    scores[:, 7], scores[:, 3] = 2.0, -torch.inf
    broken = break_ties(scores, torch.Generator().manual_seed(0))
    top = torch.topk(broken, 10).indices
    assert (top[:, 0] == 7).all() and not (top == 3).any() and torch.isneginf(broken[:, 3]).all()
    assert len({tuple(row) for row in top[:, 1:].tolist()}) == 200  # each user has an order of their own
    assert top[:, 1:].float().mean() == pytest.approx(24.5, abs=2.0)  # not the lowest ids first
    again = break_ties(scores, torch.Generator().manual_seed(0))
    assert torch.equal(broken, again)  # fixed by the seed
    # with the metrics' depth, ties below the top depth + 1 leave the scores alone; a tie inside is broken
    deep = torch.tensor([[0.9, 0.8, 0.7, 0.1, 0.1, 0.1]])
    assert break_ties(deep, torch.Generator().manual_seed(0), depth=3) is deep  # the top 3 are certain
    assert break_ties(deep, torch.Generator().manual_seed(0), depth=4) is not deep  # which 0.1 is 4th?
    torch.testing.assert_close(break_ties(scores, torch.Generator().manual_seed(0), depth=10), broken)
