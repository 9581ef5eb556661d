"""The multimodal baseline zoo: VBPR, static early/late/hybrid fusion (MF and GCN), MMGCN, GRCN, LATTICE."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from recbole_metammf.config import Config
from recbole_metammf.model.general_recommender import grcn as grcn_module
from recbole_metammf.model.layers import knn_graph, propagate, symmetric_edge_weight
from recbole_metammf.quick_start import run_recbole_metammf
from recbole_metammf.trainer import load_checkpoint
from recbole_metammf.utils import REPO_ROOT, ConfigError, get_model, get_trainer

from conftest import BASELINES, build, fit_one_batch, write_tiny_dataset

STATIC = [name for name in BASELINES if "Fusion_" in name]
METRICS = [f"{m}@{k}" for m in ["precision", "recall", "hit", "ndcg"] for k in [10, 20]]


@pytest.fixture(autouse=True)
def one_thread():
    """Two shared cores: OpenMP threads spinning against other jobs make small ops 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model_name", BASELINES)
def test_one_epoch_end_to_end(model_name, tiny_config):
    result = run_recbole_metammf(model_name, "tiny", config_dict={**tiny_config, "epochs": 1})
    assert result["epochs"] == 1
    assert set(METRICS) <= set(result["test_result"])
    assert all(0.0 <= result["test_result"][m] <= 1.0 for m in METRICS)
    checkpoint = load_checkpoint(result["checkpoint"])  # weights_only=True
    assert checkpoint["config"]["model"] == model_name


@pytest.mark.parametrize("model_name", BASELINES)
def test_training_reduces_the_loss(model_name, tiny_config):
    _, model, train_data, _, _ = build(model_name, tiny_config)
    losses = fit_one_batch(model, next(iter(train_data)), steps=8)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("model_name", BASELINES)
def test_full_sort_predict_agrees_with_predict(model_name, tiny_config):
    _, model, _, _, _ = build(model_name, tiny_config)
    model.eval()
    users = torch.tensor([1, 5, 9, 30, 59])
    items = torch.tensor([1, 2, 40, 77, 90])
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
        pointwise = model.predict({model.USER_ID: users, model.ITEM_ID: items})
    assert scores.shape == (len(users), model.n_items)
    torch.testing.assert_close(scores[torch.arange(len(users)), items], pointwise)


@pytest.mark.parametrize("dims", [(8,), (8, 6, 5)], ids=["one-modality", "three-modalities"])
@pytest.mark.parametrize("model_name", BASELINES)
def test_any_number_of_modalities(model_name, dims, in_tmp_cwd, tiny_config):
    root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / "mm"), name="mm", dims=dims)
    config = {**tiny_config, "dataset": "mm", "data_path": root, "modalities": fields}
    _, model, train_data, _, _ = build(model_name, config)
    assert model.modality_dims == list(dims)
    model.calculate_loss(next(iter(train_data))).backward()
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: torch.tensor([1, 2])})
    assert scores.shape == (2 * model.n_items,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("backbone", ["MF", "GCN"])
def test_static_fusion_shares_metammf_backbone(backbone, tiny_config):
    """EarlyFusion_X is MetaMMF_X with T = 0: same backbone parameters, and the same scores once
    MetaMMF's meta part is zeroed and the static weights are copied over."""
    config = {**tiny_config, "dropout": 0.0}
    _, meta, _, _, _ = build(f"MetaMMF_{backbone}", config)
    _, early, _, _, _ = build(f"EarlyFusion_{backbone}", config)
    fusion_keys = ("fusion.", "meta_extractor.")
    meta_state = {k: v for k, v in meta.state_dict().items() if not k.startswith(fusion_keys)}
    early_state = {k: v for k, v in early.state_dict().items() if not k.startswith(fusion_keys)}
    assert {k: v.shape for k, v in meta_state.items()} == {k: v.shape for k, v in early_state.items()}
    assert len(meta_state) >= 2
    with torch.no_grad():
        meta.item_features.copy_(early.item_features)  # the same inputs whatever each model's feature settings
        meta.load_state_dict(early_state, strict=False)
        meta_layer, static_layer = meta.fusion.layers[0], early.fusion.early.layers[0]
        meta_layer.weight.copy_(static_layer.weight)
        meta_layer.factor_out.zero_()  # T = 0: W_i = W for every item
    meta.eval()
    early.eval()
    with torch.no_grad():
        for a, b in zip(meta.forward(), early.forward()):
            torch.testing.assert_close(a, b)


def test_late_and_hybrid_fusion_are_decision_level(tiny_config):
    """Late fusion's score is the mean of per-modality scores, each from one modality's features only."""
    _, model, _, _, _ = build("LateFusion_MF", tiny_config)
    model.eval()
    users, items = torch.tensor([3, 4]), torch.tensor([10, 11])
    with torch.no_grad():
        user_branches = torch.split(model.user_embedding.weight[users], model.branch_widths, dim=1)
        v, a = torch.split(model.item_features[items], model.modality_dims, dim=1)
        id_part = model.item_embedding(items)
        per_modality = [
            (u * torch.cat([tower(x), id_part], dim=1)).sum(-1)
            for u, tower, x in zip(user_branches, model.fusion.late, [v, a])
        ]
        expected = (per_modality[0] + per_modality[1]) / 2
        torch.testing.assert_close(model.predict({model.USER_ID: users, model.ITEM_ID: items}), expected)
    _, hybrid, _, _, _ = build("HybridFusion_MF", tiny_config)
    assert hybrid.branch_weights == (0.5, 0.25, 0.25)
    assert hybrid.user_embedding.weight.shape[1] == 3 * 64


def test_knn_graph_matches_dense_computation():
    torch.manual_seed(0)
    x = torch.randn(40, 7)
    k = 5
    edge_index, similarity = knn_graph(x, k, chunk_size=16)  # several row blocks
    dense = F.normalize(x, dim=1) @ F.normalize(x, dim=1).t()
    top = dense.topk(k, dim=1)
    kept = torch.zeros_like(dense).scatter_(1, top.indices, top.values)
    sparse = torch.zeros_like(dense)
    sparse[edge_index[1], edge_index[0]] = similarity
    torch.testing.assert_close(sparse, kept)
    # D^-1/2 S D^-1/2 applied by propagate equals the dense product
    weight = symmetric_edge_weight(edge_index, 40, similarity)
    d = kept.sum(1).pow(-0.5)
    normalized = d[:, None] * kept * d[None, :]
    h = torch.randn(40, 3)
    torch.testing.assert_close(propagate(h, edge_index, weight), normalized @ h)


def test_lattice_refreshes_its_learned_graph_once_per_epoch(tiny_config):
    _, model, train_data, _, _ = build("LATTICE", tiny_config)
    assert "learned_edge_weight" in model.state_dict()  # evaluation uses the graph the checkpoint was trained with
    assert "initial_edge_weight" not in model.state_dict()  # rebuilt from the features
    assert model.initial_edge_index.shape == (2, 2, (model.n_items - 1) * model.knn_k)
    assert not (model.initial_edge_index == 0).any()  # the padding item has no edges
    calls = []
    original = model.learn_graphs
    model.learn_graphs = lambda: calls.append(1) or original()
    batch = next(iter(train_data))
    model.train()  # RecBole's trainer does this at the start of every epoch
    model.calculate_loss(batch).backward()
    assert model.graph_learner.projections[0].weight.grad is not None  # the refresh batch trains the graph learner
    model.calculate_loss(batch)
    assert len(calls) == 1
    model.eval()
    model.full_sort_predict({model.USER_ID: torch.tensor([1])})
    model.train()
    model.calculate_loss(batch)
    assert len(calls) == 2
    # through RecBole's trainer: one refresh per training epoch, none for evaluation
    config, model, train_data, valid_data, _ = build("LATTICE", {**tiny_config, "epochs": 3})
    calls.clear()
    original = model.learn_graphs
    model.learn_graphs = lambda: calls.append(1) or original()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    assert len(train_data) > 1 and len(calls) == 3


def test_grcn_routes_on_one_direction_of_edges(tiny_config):
    """GRCN as the reference (Model_routing.py): the routing GAT gets the one-direction user -> item
    edges, so its messages reach item rows only and the user preferences come out unchanged; the
    affinities, the content representations and the ID convolution use both directions."""
    _, model, train_data, _, _ = build("GRCN", tiny_config)
    src, dst = model.edge_index
    n_train = train_data._dataset.inter_num
    assert model.edge_index.shape == (2, n_train)
    assert (src < model.n_users).all() and (dst >= model.n_users).all()
    both = model.both_directions
    assert both.shape == (2, 2 * n_train) and torch.equal(both[:, n_train:], model.edge_index.flip(0))
    with torch.no_grad():
        content = F.normalize(F.leaky_relu(model.projection(model.item_features)[0]), dim=1)
        preference = F.normalize(model.preference[0].weight, dim=1)
        x_hat, _ = grcn_module.attention_propagate(torch.cat([preference, content]), model.edge_index)
        assert (x_hat[: model.n_users] == 0).all() and x_hat[model.n_users :].abs().sum() > 0
        assert model.route(preference, content) is preference
        model.routing_direction = "item_to_user"  # the paper's Eq. 2-4: users gather their items
        routed = model.route(preference, content)
        assert not torch.allclose(routed, preference)
        torch.testing.assert_close(routed.norm(dim=1), torch.ones(model.n_users))


def test_grcn_edge_weights_and_regulariser_follow_the_reference(tiny_config):
    _, model, train_data, _, _ = build("GRCN", tiny_config)
    assert model.weight_mode == "confid" and not model.pruning
    assert model.embedding_size == 64 and model.content_size == 64
    n_nodes = model.n_users + model.n_items
    assert model.confidence.weight.std() < 3 * (2 / (n_nodes + 2)) ** 0.5  # xavier_normal_: near 0, as the reference
    model.eval()
    with torch.no_grad():
        user_all, item_all = model.forward()
        assert user_all.shape[1] == 64 + 2 * 64  # [ID ; content per modality]
        # the ID part: e + A_w e + A_w^2 e with the weights max_m a_m * c_m(src), negative weights kept
        both = model.both_directions
        affinities = []
        for m, projected in enumerate(model.projection(model.item_features)):
            x = torch.cat([F.normalize(model.preference[m].weight, dim=1), F.normalize(F.leaky_relu(projected), dim=1)])
            affinities.append(grcn_module.attention_propagate(x, both)[1])
        weight = (torch.stack(affinities, 1) * model.confidence.weight[both[0]]).max(dim=1).values
        assert (weight < 0).any()
        dense = torch.zeros(n_nodes, n_nodes)
        dense.index_put_((both[1], both[0]), weight, accumulate=True)
        e = F.normalize(model.id_embedding.weight, dim=1)
        expected = e + dense @ e + dense @ (dense @ e)
        torch.testing.assert_close(torch.cat([user_all, item_all])[:, :64], expected, atol=1e-5, rtol=1e-4)
    batch = next(iter(train_data))
    users, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    ids = model.id_embedding.weight
    expected_reg = (ids[users].pow(2).mean() + (ids[pos + model.n_users].pow(2).mean() + ids[neg + model.n_users].pow(2).mean()) / 2
                    + sum(p.weight[users].pow(2).mean() for p in model.preference))
    torch.testing.assert_close(model.regularizer(users, pos, neg), expected_reg)


def test_mmgcn_trains_its_id_embeddings_and_preferences(tiny_config):
    """The reference never registers them as parameters (so never trains them); here they are."""
    _, model, train_data, _, _ = build("MMGCN", tiny_config)
    names = dict(model.named_parameters())
    assert "id_embedding.weight" in names and "preference.0.weight" in names
    model.calculate_loss(next(iter(train_data))).backward()
    assert model.id_embedding.weight.grad.abs().sum() > 0 and model.preference[0].weight.grad.abs().sum() > 0
    # first layer from the raw features (latent_size 0), 64-d after; concat combination; mean over modalities
    assert model.projection is None and model.latent_size == 0
    assert [layers[0].aggregate.in_features for layers in model.layers] == model.modality_dims
    assert model.layers[0][0].combine.in_features == model.modality_dims[0] + 64
    assert model.layers[0][1].combine.in_features == 128
    model.eval()
    with torch.no_grad():
        user_all, item_all = model.forward()
        outputs = []
        for preference, block, layers in zip(model.preference, model.modality_inputs(), model.layers):
            x = F.normalize(torch.cat([preference.weight, block]), dim=1)
            for layer in layers:
                h = F.leaky_relu(layer.aggregate(model.adjacency @ x))
                x_hat = F.leaky_relu(layer.transform(x)) + model.id_embedding.weight
                x = F.leaky_relu(layer.combine(torch.cat([h, x_hat], dim=1)))
            outputs.append(x)
        torch.testing.assert_close(torch.cat([user_all, item_all]), sum(outputs) / len(outputs))
    _, projected, _, _, _ = build("MMGCN", {**tiny_config, "latent_size": 16, "combination": "add"})
    assert [layers[0].aggregate.in_features for layers in projected.layers] == [16, 16]
    assert projected.layers[0][0].combine.in_features == 16


@pytest.mark.parametrize(
    "model_name,override,key",
    [
        ("VBPR", {"feature_embedding_size": 0}, "feature_embedding_size"),
        ("VBPR", {"item_bias": "yes"}, "item_bias"),
        ("EarlyFusion_MF", {"fusion_layers": []}, "fusion_layers"),
        ("LateFusion_GCN", {"n_layers": 0}, "n_layers"),
        ("MMGCN", {"combination": "mean"}, "combination"),
        ("GRCN", {"weight_mode": "min"}, "weight_mode"),
        ("GRCN", {"content_size": 0}, "content_size"),
        ("GRCN", {"routing_direction": "both"}, "routing_direction"),
        ("MMGCN", {"latent_size": -1}, "latent_size"),
        ("LATTICE", {"lambda_coeff": 1.5}, "lambda_coeff"),
        ("LATTICE", {"knn_k": 0}, "knn_k"),
        ("HybridFusion_MF", {"modalities": []}, "modalities"),
    ],
)
def test_bad_values_are_refused_before_loading(model_name, override, key, tiny_config):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        Config(model=model_name, dataset="tiny", config_dict={**tiny_config, **override})


def test_every_baseline_has_a_commented_yaml():
    for name in BASELINES:
        path = os.path.join(REPO_ROOT, "properties", "model", f"{name}.yaml")
        lines = [line for line in open(path, encoding="utf-8") if line.strip() and not line.startswith(("#", " "))]
        assert lines and all("#" in line for line in lines), name
        assert get_model(name).__name__ == name


def test_cli_runs_a_baseline(in_tmp_cwd):
    root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / "data"))
    command = [
        sys.executable, os.path.join(REPO_ROOT, "run_recbole_metammf.py"), "--model=LATTICE", "--dataset=tiny",
        f"--data_path={root}", "--benchmark_filename=['train','valid','test']", f"--modalities={fields}",
        "--load_col={'inter':['user_id','item_id'],'item':['item_id']}", "--epochs=1", "--show_progress=False",
        "--knn_k=5",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test result" in out.stdout + out.stderr and "knn_k = 5" in out.stdout + out.stderr


def test_pop_scores_every_training_interaction_whatever_the_batch(tiny_config):
    # RecBole 1.2.1's Pop counts an item once per batch; the plugin's counts each interaction
    from recbole.model.general_recommender.pop import Pop as RecBolePop

    counts = {}
    for batch_size in (16, 100000):  # many batches, and one batch holding every repeat
        config, model, train_data, _, _ = build("Pop", {**tiny_config, "train_batch_size": batch_size})
        assert isinstance(model, RecBolePop) and type(model) is not RecBolePop
        for interaction in train_data:
            model.calculate_loss(interaction)
        counts[batch_size] = model.item_cnt.squeeze(1)
    items = train_data._dataset.inter_feat[config["ITEM_ID_FIELD"]]
    expected = torch.bincount(items, minlength=len(counts[16])).to(counts[16].dtype)
    assert expected.max() > 1  # the tiny data repeats items, so the count is really tested
    assert torch.equal(counts[16], expected) and torch.equal(counts[100000], expected)
