"""The multimodal baseline zoo: VBPR, static early/late/hybrid fusion (MF and GCN), MMGCN, GRCN, LATTICE."""

import json
import math
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
from recbole_metammf.registry import get_model, get_trainer
from recbole_metammf.utils import REPO_ROOT, ConfigError

from conftest import BASELINES, build, fit_one_batch, write_tiny_dataset

STATIC = [name for name in BASELINES if "Fusion_" in name]
METRICS = [f"{m}@{k}" for m in ["precision", "recall", "hit", "ndcg"] for k in [10, 20]]


pytestmark = pytest.mark.usefixtures("one_thread")


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
    _, model, _, _, _ = build("LateFusion_MF", {**tiny_config, "item_graph_k": 0})  # the fusion alone (the graph: test_models)
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


@pytest.mark.parametrize("regularization", ["factors", "embeddings", "parameters"])
def test_vbpr_regularizers_weigh_what_their_reference_does(regularization, tiny_config):
    """factors (the VBPR paper): the batch's latent factors and biases, E and beta' free; embeddings (MMRec):
    the batch's representations, so E too; parameters (Eq. 19): everything, items outside the batch too."""
    _, model, train_data, _, _ = build("VBPR", {**tiny_config, "regularization": regularization})
    batch = next(iter(train_data))
    users, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    model.zero_grad()
    model.regularizer(users, pos, neg).backward()
    projection_grad = sum(p.grad.abs().sum() for p in model.projection.parameters() if p.grad is not None)
    outside = torch.ones(model.n_items, dtype=torch.bool)
    outside[torch.cat([pos, neg])] = False
    outside_grad = model.item_embedding.weight.grad[outside].abs().sum()
    if regularization == "factors":
        assert projection_grad == 0 and model.feature_bias.weight.grad is None and outside_grad == 0
        batch_factors = [model.user_embedding(users), model.item_embedding(torch.cat([pos, neg])),
                         model.item_bias_embedding(torch.cat([pos, neg]))]
        expected = sum(f.pow(2).sum() for f in batch_factors) / len(users)
        torch.testing.assert_close(model.regularizer(users, pos, neg), expected)
    elif regularization == "embeddings":
        assert projection_grad > 0 and outside_grad == 0
    else:
        assert projection_grad > 0 and outside_grad > 0


def probe_checkpoints(script_name, model_names, tiny_config):
    """Runs docs/scripts/<script_name> on a one-epoch checkpoint of each model; yields (model name, finished process)."""
    script = os.path.join(REPO_ROOT, "docs", "scripts", script_name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for model_name in model_names:
        checkpoint = run_recbole_metammf(model_name, "tiny", config_dict={**tiny_config, "epochs": 1})["checkpoint"]
        yield model_name, subprocess.run(
            [sys.executable, script, checkpoint], capture_output=True, text=True, timeout=300, env=env)


def test_vbpr_score_probe_reads_a_checkpoint(tiny_config):
    """docs/scripts/probe_vbpr_scores.py (docs/BASELINES.md, "VBPR against its references"): one line per part of
    Eq. 2 and the top-20 popularity; a checkpoint of another model is refused by name."""
    for model_name, done in probe_checkpoints("probe_vbpr_scores.py", ("VBPR", "BPR"), tiny_config):
        if model_name == "VBPR":
            assert done.returncode == 0, done.stderr
            parts = [line for line in done.stdout.splitlines() if "Spearman with popularity" in line]
            assert [line.split("item norm")[0].strip() for line in parts] == [
                "latent factors", "content (theta_u . E f_i)", "item bias"]
            assert "top-20 mean popularity" in done.stdout
        else:
            assert done.returncode == 1 and "holds a BPR, not a VBPR" in done.stderr


@pytest.mark.parametrize(
    "model_name,override,key",
    [
        ("VBPR", {"feature_embedding_size": 0}, "feature_embedding_size"),
        ("VBPR", {"item_bias": "yes"}, "item_bias"),
        ("VBPR", {"regularization": "l2"}, "regularization"),
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


# ---- ID-only graph baselines: GraphSAGE, GAT ----------------------------------------------------

ID_GRAPH_BASELINES = ["GraphSAGE", "GAT"]


def dense_training_graph(model, dataset):
    r"""The training user-item graph as a dense ``(n_nodes, n_nodes)`` 0/1 matrix (both directions)."""
    matrix = dataset.inter_matrix(form="coo")
    n_nodes = model.n_users + model.n_items
    dense = torch.zeros(n_nodes, n_nodes)
    users = torch.as_tensor(matrix.row, dtype=torch.long)
    items = torch.as_tensor(matrix.col, dtype=torch.long) + model.n_users
    dense[users, items] = 1.0
    dense[items, users] = 1.0
    return dense


@pytest.mark.parametrize("model_name", ID_GRAPH_BASELINES)
def test_id_graph_baselines_train_and_evaluate_end_to_end(model_name, tiny_config):
    result = run_recbole_metammf(model_name, "tiny", config_dict={**tiny_config, "epochs": 1})
    assert result["epochs"] == 1
    assert set(METRICS) <= set(result["test_result"])
    assert all(0.0 <= result["test_result"][m] <= 1.0 for m in METRICS)
    assert load_checkpoint(result["checkpoint"])["config"]["model"] == model_name
    # ID only: no item features loaded, 64-d ID embeddings, two layers (the paper's Sec. 5.3)
    config, model, train_data, _, test_data = build(model_name, {**tiny_config, "eval_batch_size": 91 * 7})
    assert not hasattr(model, "item_features") and "v_feat" not in config["load_col"]["item"]
    assert model.embedding_size == 64 and len(model.gnn.convs) == 2
    path = os.path.join(REPO_ROOT, "properties", "model", f"{model_name}.yaml")
    lines = [line for line in open(path, encoding="utf-8") if line.strip() and not line.startswith(("#", " "))]
    assert lines and all("#" in line for line in lines)
    # trains, scores consistently, and computes its representations once per evaluation
    losses = fit_one_batch(model, next(iter(train_data)), steps=8)
    assert losses[-1] < 0.7 * losses[0]
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert len(test_data) > 3
    assert_scores_agree_and_representations_computed_once(model, trainer, train_data, test_data)


def assert_scores_agree_and_representations_computed_once(model, trainer, train_data, test_data):
    r"""full_sort_predict agrees with predict, and one evaluation over all of ``test_data`` calls forward once."""
    model.eval()
    users, items = torch.tensor([1, 5, 9, 30, 59]), torch.tensor([1, 2, 40, 77, 90])
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
        torch.testing.assert_close(scores[torch.arange(5), items], model.predict({model.USER_ID: users, model.ITEM_ID: items}))
    calls = []
    original_forward = model.forward
    model.forward = lambda *args, **kwargs: calls.append(1) or original_forward(*args, **kwargs)
    trainer.eval_collector.data_collect(train_data)
    trainer.evaluate(test_data, load_best_model=False)
    assert len(calls) == 1


def test_graphsage_layer_is_self_weight_plus_mean_of_neighbours(tiny_config):
    """e' = W_1 e + W_2 mean_{j in N(i)} e_j on the training graph; the model is two such layers with
    LeakyReLU, from its ID embeddings."""
    _, model, train_data, _, _ = build("GraphSAGE", tiny_config)
    model.eval()  # no dropout
    adjacency = dense_training_graph(model, train_data._dataset)
    degree = adjacency.sum(1, keepdim=True)
    mean = adjacency / degree.clamp_min(1)  # isolated nodes (the padding item) aggregate nothing
    torch.manual_seed(0)
    x = torch.randn(adjacency.shape[0], 64)
    with torch.no_grad():
        for conv in model.gnn.convs:
            w_self, w_neighbours = conv.lin_r.weight, conv.lin_l.weight
            assert conv.lin_l.bias is None
            torch.testing.assert_close(conv(x, model.graph_structure), x @ w_self.t() + (mean @ x) @ w_neighbours.t())
        h = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
        for conv in model.gnn.convs:
            h = F.leaky_relu(h @ conv.lin_r.weight.t() + (mean @ h) @ conv.lin_l.weight.t(), model.gnn.negative_slope)
        user_all, item_all = model.forward()
    torch.testing.assert_close(torch.cat([user_all, item_all]), h)


def test_gcn_layer_step_probe_freezes_or_slows_the_graph_layer_weights_only(tiny_config):
    """docs/scripts/probe_gcn_layer_steps.py (docs/RESULTS.md, "The GCN backbone's swings"): ``frozen`` fixes every
    W_1, W_2 of the mean-aggregation layers at I/2 and trains the rest; ``started at I/2`` starts them there and
    trains them; ``layer lr x 0.1`` gives those weights, and only those, a tenth of the learning rate; the swing is
    the mean step of the curve over its mean."""
    import runpy

    from recbole_metammf.pipeline import build as build_pipeline, make_config, train_and_test

    probe = runpy.run_path(os.path.join(REPO_ROOT, "docs", "scripts", "probe_gcn_layer_steps.py"))
    assert probe["swing"]([0.0] * 10 + [1.0, 3.0, 1.0, 3.0]) == pytest.approx(2.0 / 2.0)
    # --runs=DIR: the same swing of each run's saved curve, with the validation coverage at the best and last epochs
    runs_dir = os.path.join(tiny_config["checkpoint_dir"], "bench", "runs")
    os.makedirs(runs_dir)
    scores = [0.0] * 10 + [1.0, 3.0, 1.0, 3.0, 1.0]
    curve = [[e, {"ndcg@20": v, "itemcoverage@20": e / 100}] for e, v in enumerate(scores)]
    with open(os.path.join(runs_dir, "GraphSAGE__seed2020.json"), "w") as f:
        json.dump({"label": "GraphSAGE", "valid_metric": "ndcg@20", "valid_curve": curve}, f)
    with open(os.path.join(runs_dir, "Pop__seed2020.json"), "w") as f:  # one epoch: no swing
        json.dump({"label": "Pop", "valid_metric": "ndcg@20", "valid_curve": curve[:1]}, f)
    (row,) = probe["swings_of_runs"](os.path.dirname(runs_dir)).items()
    assert row[0] == "GraphSAGE" and row[1] == [(pytest.approx(2.0 / (9.0 / 5)), 0.11, 0.14)]
    script = os.path.join(REPO_ROOT, "docs", "scripts", "probe_gcn_layer_steps.py")
    for arguments, message in [
        (["--model=GraphSAG"], "error: model: 'GraphSAG'"),
        (["--runs=nowhere"], "--runs=nowhere: no runs/"),
        (["--variants=frozen,thawed"], "error: --variants: got ['thawed']"),
    ]:
        done = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr

    pipeline = build_pipeline(make_config(config_dict={**tiny_config, "model": "GraphSAGE"}, command_line=False))
    weights = probe["graph_layer_weights"](pipeline.model)
    assert len(weights) == 2 * len(pipeline.model.gnn.convs)
    embeddings_before = pipeline.model.user_embedding.weight.detach().clone()
    probe["frozen"](pipeline)
    optimised = {id(p) for group in pipeline.trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(w) for w in weights}
    train_and_test(pipeline, saved=False, verbose=False, test=False)
    for weight in weights:
        torch.testing.assert_close(weight, torch.eye(64) / 2)
    assert not torch.equal(pipeline.model.user_embedding.weight, embeddings_before)  # the rest trains

    pipeline = build_pipeline(make_config(config_dict={**tiny_config, "model": "GraphSAGE"}, command_line=False))
    probe["started_at_half_identity"](pipeline)
    weights = probe["graph_layer_weights"](pipeline.model)
    for weight in weights:
        torch.testing.assert_close(weight, torch.eye(64) / 2)
    train_and_test(pipeline, saved=False, verbose=False, test=False)
    assert all(weight.requires_grad and not torch.equal(weight, torch.eye(64) / 2) for weight in weights)  # then learned

    for name, expected in [("layer outputs L2-normalised", [True, True]), ("inner layer outputs L2-normalised", [True, False])]:
        pipeline = build_pipeline(make_config(config_dict={**tiny_config, "model": "GraphSAGE"}, command_line=False))
        probe["VARIANTS"][name](pipeline)
        assert [conv.normalize for conv in pipeline.model.gnn.convs] == expected
        model = pipeline.model.eval()  # no dropout
        with torch.no_grad():
            outputs = model.gnn.layer_outputs(torch.randn(model.n_users + model.n_items, 64), model.graph_structure)
        assert [bool(torch.allclose(o.norm(dim=1), torch.ones(len(o)))) for o in outputs[1:]] == expected

    pipeline = build_pipeline(make_config(config_dict={**tiny_config, "model": "GraphSAGE"}, command_line=False))
    probe["layer_lr_tenth"](pipeline)
    rest, layers = pipeline.trainer.optimizer.param_groups
    assert {id(p) for p in layers["params"]} == {id(w) for w in probe["graph_layer_weights"](pipeline.model)}
    assert layers["lr"] == pytest.approx(pipeline.config["learning_rate"] / 10)
    assert rest["lr"] == pytest.approx(pipeline.config["learning_rate"])
    assert len(rest["params"]) + len(layers["params"]) == len(list(pipeline.model.parameters()))

    pipeline = build_pipeline(make_config(config_dict={**tiny_config, "model": "LightGCN"}, command_line=False))
    assert probe["graph_layer_weights"](pipeline.model) == []  # nothing to freeze: the probe runs it as shipped only


def test_gat_attention_over_a_nodes_neighbours_sums_to_one_and_matches_hand_computation(tiny_config):
    _, model, train_data, _, _ = build("GAT", tiny_config)
    model.eval()
    conv = model.gnn.convs[0]
    # node 0 has neighbours 1, 2, 3 (and GATConv's self-loop); node 1 has neighbour 0
    edge_index = torch.tensor([[1, 2, 3, 0], [0, 0, 0, 1]])
    torch.manual_seed(0)
    x = torch.randn(4, 64)
    with torch.no_grad():
        out, (edges, alpha) = conv(x, edge_index, return_attention_weights=True)
        alpha = alpha.view(-1)
        totals = torch.zeros(4).index_add_(0, edges[1], alpha)
        torch.testing.assert_close(totals, torch.ones(4))  # every node has at least its self-loop
        z = x @ conv.lin.weight.t()
        source, target = z @ conv.att_src.view(-1), z @ conv.att_dst.view(-1)
        neighbours = torch.tensor([1, 2, 3, 0])
        expected = torch.softmax(F.leaky_relu(source[neighbours] + target[0], 0.2), dim=0)
        into_zero = edges[1] == 0
        order = torch.argsort(edges[0][into_zero])
        torch.testing.assert_close(alpha[into_zero][order], expected[torch.argsort(neighbours)])
        torch.testing.assert_close(out[0], expected @ z[neighbours] + conv.bias)
        # node 3 has only its self-loop: attention 1 on itself
        torch.testing.assert_close(out[3], z[3] + conv.bias)
    # the model attends over the training graph: both directions of every interaction, as an edge index
    n_train = train_data._dataset.inter_num
    assert model.graph_structure.shape == (2, 2 * n_train)
    torch.testing.assert_close(model.graph_structure[:, n_train:], model.graph_structure[:, :n_train].flip(0))


# ---- FREEDOM ------------------------------------------------------------------------------------


def test_freedom_freezes_the_knn_graph_of_the_features(tiny_config):
    from recbole_metammf.model.layers import split_modalities

    config = {**tiny_config, "modality_weights": [0.3, 0.7]}
    _, model, train_data, _, _ = build("FREEDOM", config)
    assert model.knn_k == 10 and model.modality_weights == [0.3, 0.7]
    k, n = model.knn_k, model.n_items
    expected = torch.zeros(n, n)
    for block, weight in zip(split_modalities(model.item_features, model.modality_dims), [0.3, 0.7]):
        unit = F.normalize(block[1:], dim=1)
        neighbours = (unit @ unit.t()).topk(k, dim=1).indices + 1  # each item's 10 most similar items, itself included
        binary = torch.zeros(n, n)
        binary[torch.arange(1, n).repeat_interleave(k), neighbours.reshape(-1)] = 1.0
        expected += weight * binary / k  # D^-1/2 A D^-1/2 of a graph with k entries per row: 1/k
    frozen = model.item_adjacency.to_dense()
    torch.testing.assert_close(frozen, expected)
    assert (frozen[0] == 0).all() and (frozen[:, 0] == 0).all()  # the padding item has no neighbours
    torch.testing.assert_close(frozen[1:].sum(1), torch.ones(n - 1))
    assert (frozen.diagonal()[1:] > 0).all()
    # frozen: training leaves it as it was, and it propagates the item ID embeddings once
    fit_one_batch(model, next(iter(train_data)), steps=2)
    torch.testing.assert_close(model.item_adjacency.to_dense(), expected)
    model.eval()
    with torch.no_grad():
        _, item_all = model.forward()
        ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
        lightgcn = light_gcn_reference(ego, model.norm_adjacency.to_dense(), 2)[model.n_users :]
        torch.testing.assert_close(item_all, lightgcn + expected @ model.item_embedding.weight)
    # equal weights by default
    _, default, _, _, _ = build("FREEDOM", tiny_config)
    assert default.modality_weights == [0.5, 0.5]


def light_gcn_reference(x, adjacency, n_layers):
    layers = [x]
    for _ in range(n_layers):
        layers.append(adjacency @ layers[-1])
    return sum(layers) / len(layers)


def test_degree_sensitive_pruning_draws_edges_by_inverse_degree():
    from recbole_metammf.model.layers import degree_sensitive_edge_sample

    # users 0, 1; items 2, 3, 4; degrees u0 = 3, u1 = 1, i2 = 2, i3 = i4 = 1
    edges = torch.tensor([[0, 0, 0, 1], [2, 3, 4, 2]])
    weight = torch.tensor([1 / 6**0.5, 1 / 3**0.5, 1 / 3**0.5, 1 / 2**0.5])
    torch.manual_seed(0)
    draws = 20000
    counts = torch.zeros(4)
    for _ in range(draws):
        kept = degree_sensitive_edge_sample(edges, 5, keep_ratio=0.25)  # int(4 * 0.25) = 1 edge
        assert kept.shape == (2, 1)
        counts += (edges == kept).all(0).float()
    torch.testing.assert_close(counts / draws, weight / weight.sum(), atol=0.012, rtol=0)
    kept = degree_sensitive_edge_sample(edges, 5, keep_ratio=0.5)
    assert kept.shape == (2, 2) and len({tuple(edge) for edge in kept.t().tolist()}) == 2  # without replacement


def test_freedom_prunes_its_user_item_graph_once_per_epoch(tiny_config):
    _, model, train_data, _, _ = build("FREEDOM", tiny_config)
    n_edges = model.interaction_edges.shape[1]
    assert n_edges == train_data._dataset.inter_num and model.edge_dropout == 0.8
    model.train()
    pruned = model.user_item_graph()
    assert pruned is model.user_item_graph()  # one draw for the whole epoch
    n_kept = pruned._nnz() // 2  # both directions
    assert n_kept == int(n_edges * (1 - 0.8)) and abs(n_kept - 0.2 * n_edges) <= 1  # the reference's count
    # normalised anew: 1 / sqrt(d_u d_i) with the degrees of the kept graph
    dense = pruned.to_dense()
    binary = (dense > 0).float()
    degree = binary.sum(1)
    rows, cols = binary.nonzero().t()
    torch.testing.assert_close(dense[rows, cols], (degree[rows] * degree[cols]).rsqrt())
    kept_pairs = {(u, i) for u, i in zip(rows.tolist(), cols.tolist()) if u < model.n_users}
    all_pairs = set(zip(model.interaction_edges[0].tolist(), model.interaction_edges[1].tolist()))
    assert kept_pairs <= all_pairs
    model.train()  # the trainer does this at the start of every epoch: a new draw
    assert not torch.equal(model.user_item_graph().to_dense(), dense)
    model.eval()  # evaluation uses the whole graph
    assert model.user_item_graph() is model.norm_adjacency and model.norm_adjacency._nnz() == 2 * n_edges


def test_freedom_loss_is_bpr_plus_weighted_modality_bpr(tiny_config):
    _, model, train_data, _, _ = build("FREEDOM", {**tiny_config, "edge_dropout": 0.0, "reg_weight": 0.5})
    batch = next(iter(train_data))
    users, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    with torch.no_grad():
        user_all, item_all = model.forward()
        u = user_all[users]

        def bpr(p, q):
            return -F.logsigmoid((u * p).sum(-1) - (u * q).sum(-1)).mean()

        expected = bpr(item_all[pos], item_all[neg])
        for layer, block in zip(model.projection.projections, torch.split(model.item_features, model.modality_dims, 1)):
            expected = expected + 0.5 * bpr(layer(block[pos]), layer(block[neg]))
        torch.testing.assert_close(model.calculate_loss(batch), expected)


# ---- BM3 ----------------------------------------------------------------------------------------


def test_bm3_alignment_vanishes_for_identical_views():
    from recbole_metammf.model.layers import cosine_alignment_loss

    torch.manual_seed(0)
    z = torch.randn(7, 5, requires_grad=True)
    torch.testing.assert_close(cosine_alignment_loss(z, z), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(cosine_alignment_loss(3 * z, z), torch.tensor(0.0), atol=1e-6, rtol=0)  # scale-free
    torch.testing.assert_close(cosine_alignment_loss(z, -z), torch.tensor(2.0))
    target = torch.randn(7, 5, requires_grad=True)
    cosine_alignment_loss(z, target).backward()
    assert target.grad is None and z.grad is not None  # a stop-gradient on the target view


def test_bm3_loss_without_dropout_and_identity_predictor_reduces_to_cosine_alignments(tiny_config):
    """With no target dropout and f = identity: the graph terms are 2 (1 - mean cos(h_u, h_i)), the
    intra-modality terms vanish, the inter-modality terms are 1 - mean cos(W_m x_i^m + b_m, h_i)."""
    _, model, train_data, _, _ = build("BM3", {**tiny_config, "n_layers": 1})  # the dense check below is one layer
    assert model.n_layers == 1 and model.cl_weight == 2.0 and model.reg_weight == 0.1
    model.target_dropout = 0.0
    with torch.no_grad():
        model.predictor.weight.copy_(torch.eye(64))
        model.predictor.bias.zero_()
    batch = next(iter(train_data))
    users, items = batch[model.USER_ID], batch[model.ITEM_ID]
    # LightGCN (one layer) on the dense normalised training graph, plus the item ID embedding
    adjacency = dense_training_graph(model, train_data._dataset)
    d = adjacency.sum(1).clamp_min(1).rsqrt()
    normalized = d[:, None] * adjacency * d[None, :]
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    h = (ego + normalized @ ego) / 2
    h_u, h_i = h[: model.n_users], h[model.n_users :] + model.item_embedding.weight.detach()
    cos = F.cosine_similarity
    expected = 2 * (1 - cos(h_u[users], h_i[items], dim=-1).mean())
    for layer, block in zip(model.projection.projections, torch.split(model.item_features, model.modality_dims, 1)):
        with torch.no_grad():
            latent = layer(block[items])  # the fine-tuning offset starts at zero
        expected = expected + 2.0 * (1 - cos(latent, h_i[items], dim=-1).mean())
    expected = expected + 0.1 * (h_u.norm() + h_i.norm()) / model.n_items
    model.train()
    torch.testing.assert_close(model.calculate_loss(batch).detach(), expected, atol=1e-5, rtol=1e-5)
    # the scores are the predictor's outputs: with f = identity, h_u . h_i
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: torch.tensor([3])})
    torch.testing.assert_close(scores, h_i @ h_u[3], atol=1e-5, rtol=1e-5)


def test_bm3_predictor_bias_starts_as_pytorchs_unless_zero_is_asked(tiny_config):
    """The reference keeps nn.Linear's default bias, which outweighs W h at initialisation (every f(h_u) alike)."""
    _, reference, _, _, _ = build("BM3", tiny_config)
    assert reference.predictor.bias.abs().sum() > 0
    _, zeroed, _, _, _ = build("BM3", {**tiny_config, "zero_predictor_bias": True})
    assert torch.equal(zeroed.predictor.bias, torch.zeros(64))
    with pytest.raises(ConfigError, match="zero_predictor_bias: got 'yes'"):
        build("BM3", {**tiny_config, "zero_predictor_bias": "yes"})


def test_bm3_view_probe_reads_a_checkpoint_and_refuses_another_model(tiny_config):
    """docs/scripts/probe_bm3_views.py (docs/BASELINES.md, "What held BM3 at Pop's level"): the cosines of each
    modality's projection and of the users' and items' views, their popularity; another model is refused by name."""
    for model_name, done in probe_checkpoints("probe_bm3_views.py", ("BM3", "BPR"), tiny_config):
        if model_name == "BM3":
            assert done.returncode == 0, done.stderr
            projections = [line.split()[2] for line in done.stdout.splitlines() if "projection of" in line]
            assert projections == list(tiny_config["modalities"])  # one line per modality, in order
            for view in ("f(h_i)", "f(h_u)", "Spearman(||f(h_i)||, popularity)", "top-20 mean popularity"):
                assert view in done.stdout
        else:
            assert done.returncode == 1 and "holds a BPR, not a BM3" in done.stderr


def test_bm3_and_freedom_fine_tune_their_features_as_an_offset(tiny_config):
    for name in ["BM3", "FREEDOM"]:
        _, model, train_data, _, _ = build(name, tiny_config)
        assert "feature_offset.delta" in model.state_dict() and "item_features" not in model.state_dict()
        raw = model.item_features.clone()
        fit_one_batch(model, next(iter(train_data)), steps=2)
        assert model.feature_offset.delta.abs().sum() > 0 and torch.equal(model.item_features, raw)
        _, frozen, _, _, _ = build(name, {**tiny_config, "fine_tune_features": False})
        assert frozen.feature_offset is None


@pytest.mark.parametrize(
    "model_name,override,key",
    [
        ("GAT", {"heads": 0}, "heads"),
        ("GAT", {"attention_dropout": 1.0}, "attention_dropout"),
        ("GraphSAGE", {"layer_combination": "max"}, "layer_combination"),
        ("GraphSAGE", {"n_layers": 0}, "n_layers"),
        ("BM3", {"cl_weight": -1.0}, "cl_weight"),
        ("BM3", {"target_dropout": 1.0}, "target_dropout"),
        ("FREEDOM", {"modality_weights": [1.0]}, "modality_weights"),
        ("FREEDOM", {"modality_weights": [0.5, 0.6]}, "modality_weights"),
        ("FREEDOM", {"edge_dropout": 1.0}, "edge_dropout"),
        ("FREEDOM", {"fine_tune_features": "yes"}, "fine_tune_features"),
    ],
)
def test_graph_and_self_supervised_baseline_settings_are_refused_before_loading(model_name, override, key, tiny_config):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        Config(model=model_name, dataset="tiny", config_dict={**tiny_config, **override})


# ---- InvRL --------------------------------------------------------------------------------------

# the mask learned in seconds on the tiny dataset: one round, short loops
INVRL_FAST = {"warmup_epochs": 1, "invariant_rounds": 1, "environment_iterations": 2, "environment_epochs": 2,
              "mask_epochs": 2, "n_environments": 3, "environment_batch_size": 128}


def test_ultragcn_constraint_weights_match_hand_computation():
    import scipy.sparse as sp

    from recbole_metammf.model.layers import ultragcn_constraint_weights

    # 2 users x 3 items: d_u = (2, 1), d_i = (2, 1, 0)
    matrix = sp.coo_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [0, 1, 0])), shape=(2, 3))
    beta_u, beta_i = ultragcn_constraint_weights(matrix)
    torch.testing.assert_close(beta_u, torch.tensor([3**0.5 / 2, 2**0.5]))
    torch.testing.assert_close(beta_i, torch.tensor([1 / 3**0.5, 1 / 2**0.5, 1.0]))
    # beta_u beta_i = (1 / d_u) sqrt((d_u + 1) / (d_i + 1)), UltraGCN's Eq. 11
    torch.testing.assert_close(beta_u[0] * beta_i[1], torch.tensor(0.5 * (3 / 2) ** 0.5))
    torch.testing.assert_close(beta_u[1] * beta_i[0], torch.tensor((2 / 3) ** 0.5))


def test_ultragcn_constraint_loss_weighs_positives_and_averages_negatives():
    from recbole_metammf.model.layers import ultragcn_constraint_loss

    pos, neg = torch.tensor([0.0, 2.0]), torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    pos_beta, neg_beta = torch.tensor([0.5, 1.0]), torch.tensor([[1.0, 0.0], [2.0, 1.0]])
    sp_ = F.softplus  # BCE(s, 1) = softplus(-s), BCE(s, 0) = softplus(s)
    w1, w2, w3, w4 = 1.0, 2.0, 0.5, 3.0
    expected = (w1 + w2 * 0.5) * sp_(torch.tensor(0.0)) + (w1 + w2 * 1.0) * sp_(torch.tensor(-2.0))
    expected = expected + ((w3 + w4) * sp_(torch.tensor(0.0)) + w3 * sp_(torch.tensor(1.0))) / 2
    expected = expected + ((w3 + 2 * w4) * sp_(torch.tensor(-1.0)) + (w3 + w4) * sp_(torch.tensor(0.0))) / 2
    torch.testing.assert_close(ultragcn_constraint_loss(pos, neg, pos_beta, neg_beta, (w1, w2, w3, w4)), expected)


def test_irm_penalty_vanishes_when_environments_agree_and_is_positive_when_they_differ():
    from recbole_metammf.model.layers import irm_gradient_penalty

    g = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    assert irm_gradient_penalty([g, g.clone(), g.clone()]) == 0
    # hand: mean (0, 1); V = (1 + 1, 1 + 1) = (2, 2); weighted (0.5, 1) -> (1, 2); sum of squares 5
    g1, g2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 2.0]])
    torch.testing.assert_close(irm_gradient_penalty([g1, g2], torch.tensor([0.5, 1.0])), torch.tensor(5.0))
    torch.testing.assert_close(irm_gradient_penalty([g1, g2]), torch.tensor(8.0))
    # from real risks: a linear model's squared error gradients on two environments
    w = torch.tensor([[1.0, -1.0]], requires_grad=True)
    x = torch.tensor([[1.0, 2.0], [0.0, 1.0]])

    def gradient(inputs, targets):
        risk = ((inputs @ w.t()).view(-1) - targets).pow(2).mean()
        return torch.autograd.grad(risk, w, create_graph=True)[0]

    same = [gradient(x, torch.tensor([0.0, 1.0])), gradient(x, torch.tensor([0.0, 1.0]))]
    assert irm_gradient_penalty(same) == 0
    differ = [gradient(x, torch.tensor([0.0, 1.0])), gradient(torch.tensor([[2.0, 0.0], [1.0, 1.0]]), torch.tensor([3.0, -1.0]))]
    penalty = irm_gradient_penalty(differ)
    assert penalty > 0
    penalty.backward()
    assert w.grad is not None and w.grad.abs().sum() > 0  # differentiable through the gradients (create_graph)


def test_stochastic_gate_mask_open_probability_and_regulariser_match_hand_computation():
    import math

    from recbole_metammf.model.layers import StochasticGate

    gate = StochasticGate(5, sigma=0.1)
    with torch.no_grad():
        gate.mu.copy_(torch.tensor([-1.0, -0.2, 0.0, 0.3, 0.8]))
    torch.testing.assert_close(gate.mask(), torch.tensor([0.0, 0.3, 0.5, 0.8, 1.0]))
    phi = [0.5 * (1 + math.erf((m + 0.5) / 0.1 / math.sqrt(2))) for m in [-1.0, -0.2, 0.0, 0.3, 0.8]]
    torch.testing.assert_close(gate.open_probability(), torch.tensor(phi))
    torch.testing.assert_close(gate.regularizer(), torch.tensor(1.0 + 0.04 + 0.0 + 0.09 + 0.64))
    x = torch.full((4, 5), 2.0)
    gate.eval()
    torch.testing.assert_close(gate(x), 2.0 * gate.mask().expand(4, 5))  # no noise in evaluation
    gate.train()
    torch.manual_seed(0)
    noisy = gate(x) / 2.0
    assert (noisy >= 0).all() and (noisy <= 1).all() and not torch.equal(noisy, gate(x) / 2.0)  # fresh noise per call
    assert (noisy - gate.mask()).abs().max() < 5 * 0.1
    gate.regularizer().backward()
    torch.testing.assert_close(gate.mu.grad, 2 * gate.mu.detach())


def test_invrl_loss_is_ultragcn_constraint_loss_plus_its_l2_terms(tiny_config):
    _, model, train_data, _, _ = build("InvRL", {**tiny_config, "negative_num": 4})
    assert model.negative_num == 4 and model.constraint_weights == (1.0, 1.0, 1.0, 1.0)
    batch = next(iter(train_data))
    users, items = batch[model.USER_ID], batch[model.ITEM_ID]
    model.train()
    torch.manual_seed(7)
    loss = model.calculate_loss(batch)
    torch.manual_seed(7)
    negatives = torch.randint(1, model.n_items, (len(users), 4))
    assert (negatives > 0).all()  # never the padding item
    with torch.no_grad():
        u = model.user_embedding.weight
        items_e = torch.cat([model.item_embedding.weight, model.projection(model.item_features)], 1)  # mask all ones
        degree_u = torch.bincount(model.train_users, minlength=model.n_users).float()
        degree_i = torch.bincount(model.train_items, minlength=model.n_items).float()
        beta_u, beta_i = (degree_u + 1).sqrt() / degree_u, (degree_i + 1).rsqrt()
        pos = (u[users] * items_e[items]).sum(-1)
        neg = (u[users].unsqueeze(1) * items_e[negatives]).sum(-1)
        expected = ((1 + beta_u[users] * beta_i[items]) * F.softplus(-pos)).sum()
        expected = expected + ((1 + beta_u[users, None] * beta_i[negatives]) * F.softplus(neg)).mean(1).sum()
        expected = expected + 1e-4 * (u.pow(2).sum() + 2 * model.item_embedding.weight.pow(2).sum())
        expected = expected + 0.1 * (model.projection.weight.pow(2).sum() + model.projection.bias.pow(2).sum())
    torch.testing.assert_close(loss.detach(), expected)


def test_invrl_learns_its_mask_once_after_the_warmup_and_its_loss_decreases(tiny_config):
    config, model, train_data, valid_data, _ = build("InvRL", {**tiny_config, **INVRL_FAST, "epochs": 4})
    assert torch.equal(model.feature_mask, torch.ones(sum(model.modality_dims)))
    calls, epoch_losses = [], []
    original = model.learn_invariant_mask
    model.learn_invariant_mask = lambda: calls.append(model._epochs_started) or original()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    for epoch in range(4):  # the trainer's own epoch: train(), then every batch
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        epoch_losses.append(float(loss))
    assert calls == [2]  # at the first batch after warmup_epochs = 1, once
    assert bool(model.mask_learned) and "feature_mask" in model.state_dict()
    mask = model.feature_mask
    assert ((mask >= 0) & (mask <= 1)).all() and not torch.equal(mask, torch.ones_like(mask))
    assert set(model.environment.unique().tolist()) <= {0, 1, 2} and len(model.environment) == train_data._dataset.inter_num
    assert epoch_losses[-1] < epoch_losses[0]
    # the scores use the masked features
    model.eval()
    with torch.no_grad():
        masked = model.full_sort_predict({model.USER_ID: torch.tensor([3])})
        items = torch.cat([model.item_embedding.weight, model.projection(model.item_features * mask)], 1)
    torch.testing.assert_close(masked, items @ model.user_embedding.weight[3])


def test_invrl_passes_the_checks_of_every_baseline(tiny_config, in_tmp_cwd):
    """The parametrised checks above but the one-batch loss drop (UltraGCN's N(0, 0.01) initialisation and
    fresh negatives at every step take more than 8 steps; the loss over epochs is tested above)."""
    test_one_epoch_end_to_end("InvRL", tiny_config)
    test_full_sort_predict_agrees_with_predict("InvRL", tiny_config)
    for dims in [(8,), (8, 6, 5)]:
        test_any_number_of_modalities("InvRL", dims, in_tmp_cwd, tiny_config)
    path = os.path.join(REPO_ROOT, "properties", "model", "InvRL.yaml")
    lines = [line for line in open(path, encoding="utf-8") if line.strip() and not line.startswith(("#", " "))]
    assert lines and all("#" in line for line in lines) and get_model("InvRL").__name__ == "InvRL"


def test_invrl_without_rounds_is_ultragcn_with_an_unmasked_mlp(tiny_config):
    _, model, train_data, _, _ = build("InvRL", {**tiny_config, "warmup_epochs": 1, "invariant_rounds": 0})
    batch = next(iter(train_data))
    for _ in range(3):
        model.train()
        model.calculate_loss(batch)
    assert not bool(model.mask_learned) and torch.equal(model.feature_mask, torch.ones_like(model.feature_mask))


@pytest.mark.parametrize(
    "override,key",
    [
        ({"constraint_weights": [1, 1, 1]}, "constraint_weights"),
        ({"gate_sigma": -0.1}, "gate_sigma"),
        ({"invariant_rounds": -1}, "invariant_rounds"),
        ({"warmup_epochs": 0}, "warmup_epochs"),
        ({"n_environments": 0}, "n_environments"),
    ],
)
def test_invrl_bad_settings_are_refused_before_loading(override, key, tiny_config):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        Config(model="InvRL", dataset="tiny", config_dict={**tiny_config, **override})


# ---- MICRO and LGMRec ---------------------------------------------------------------------------

CONTRASTIVE_BASELINES = ["MICRO", "LGMRec"]


@pytest.mark.parametrize("model_name", CONTRASTIVE_BASELINES)
def test_micro_and_lgmrec_train_for_epochs_and_evaluate_end_to_end(model_name, in_tmp_cwd, tiny_config):
    result = run_recbole_metammf(model_name, "tiny", config_dict={**tiny_config, "epochs": 1})
    assert result["epochs"] == 1 and set(METRICS) <= set(result["test_result"])
    assert all(0.0 <= result["test_result"][m] <= 1.0 for m in METRICS)
    assert load_checkpoint(result["checkpoint"])["config"]["model"] == model_name
    path = os.path.join(REPO_ROOT, "properties", "model", f"{model_name}.yaml")
    lines = [line for line in open(path, encoding="utf-8") if line.strip() and not line.startswith(("#", " "))]
    assert lines and all("#" in line for line in lines)
    # three epochs of the plugin's trainer: the epoch loss falls
    config, model, train_data, _, test_data = build(model_name, {**tiny_config, "learning_rate": 0.01})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    losses = [float(trainer._train_epoch(train_data, epoch, show_progress=False)) for epoch in range(3)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[2] < losses[1] < losses[0]
    assert_scores_agree_and_representations_computed_once(model, trainer, train_data, test_data)
    # any number of modalities
    for dims in [(8,), (8, 6, 5)]:
        root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / f"mm{len(dims)}"), name="mm", dims=dims)
        _, other, other_data, _, _ = build(model_name, {**tiny_config, "dataset": "mm", "data_path": root, "modalities": fields})
        assert other.modality_dims == list(dims)
        other.calculate_loss(next(iter(other_data))).backward()


def test_info_nce_loss_matches_hand_computation():
    from recbole_metammf.model.layers import info_nce_loss

    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # two anchors
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # their positives
    c = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-3.0, 0.0]])  # the other view's candidates (the positives among them)
    tau, r = 0.5, 2**-0.5
    # cosines of anchor 0 (e_x) with the candidates: r, 0, -1; of anchor 1 (e_y): r, 1, 0
    hand = torch.tensor([
        -math.log(math.exp(r / tau) / (math.exp(r / tau) + math.exp(0) + math.exp(-1 / tau))),
        -math.log(math.exp(1 / tau) / (math.exp(r / tau) + math.exp(1 / tau) + math.exp(0))),
    ])
    torch.testing.assert_close(info_nce_loss(a, p, c, tau), hand)
    # GRACE's intra-view negatives (MICRO): the anchor's own view, without the anchor itself
    d = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, -1.0]])  # anchor 0 is row 0, anchor 1 is row 1
    # anchor 0 against rows 1, 2 of d: cosines 0, r; anchor 1 against rows 0, 2: 0, -r
    intra = torch.tensor([math.exp(0) + math.exp(r / tau), math.exp(0) + math.exp(-r / tau)])
    hand_intra = torch.tensor([
        -math.log(math.exp(r / tau) / (math.exp(r / tau) + 1 + math.exp(-1 / tau) + intra[0])),
        -math.log(math.exp(1 / tau) / (math.exp(r / tau) + math.exp(1 / tau) + 1 + intra[1])),
    ])
    torch.testing.assert_close(info_nce_loss(a, p, c, tau, d, torch.tensor([0, 1])), hand_intra)
    # no overflow at a small temperature
    assert torch.isfinite(info_nce_loss(a, p, c, 1e-3)).all()


@pytest.mark.parametrize("block_elements", [1, 7, 1 << 20])
def test_micro_blocked_info_nce_equals_the_plain_one_with_its_gradients(block_elements, monkeypatch):
    r"""MICRO's fused InfoNCE (row blocks, softmax kept in place) against layers.info_nce_loss: losses and
    the gradients into both views, for row blocks of one row, a few rows, and all rows at once."""
    from recbole_metammf.model.general_recommender import micro as micro_module
    from recbole_metammf.model.layers import info_nce_loss

    monkeypatch.setattr(micro_module, "_BLOCK_ELEMENTS", block_elements)
    generator = torch.Generator().manual_seed(0)
    for tau in [0.5, 0.05]:
        view = torch.randn(31, 8, generator=generator, requires_grad=True)
        fused = torch.randn(31, 8, generator=generator, requires_grad=True)
        items = torch.randperm(30, generator=generator)[:12] + 1  # anchors: 12 distinct real items
        weights = torch.rand(12, generator=generator)  # a loss that is not a plain sum
        results = []
        for fn in (info_nce_loss, micro_module.grace_info_nce):
            loss = fn(view[items], fused[items], fused[1:], tau, view[1:], items - 1)
            results.append((loss, *torch.autograd.grad((weights * loss).sum(), [view, fused])))
        for fast, plain in zip(results[1], results[0]):
            torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def dense_knn_graph(x, k):
    r"""An independent dense kNN graph: cosine top-k per row (values kept), ``D^{-1/2} S D^{-1/2}``, row 0 (padding) empty."""
    unit = F.normalize(x[1:], dim=1)
    cosine = unit @ unit.t()
    values, neighbours = cosine.topk(k, dim=1)
    graph = torch.zeros_like(cosine).scatter_(1, neighbours, values)
    d = graph.sum(1).rsqrt()
    graph = d[:, None] * graph * d[None, :]
    return F.pad(graph, (1, 0, 1, 0))


def test_micro_views_mix_the_raw_and_the_learned_knn_graph_of_each_modality(tiny_config):
    from recbole_metammf.model.layers import split_modalities

    _, model, _, _, _ = build("MICRO", tiny_config)
    assert (model.knn_k, model.lambda_coeff, model.n_item_layers, model.n_layers) == (10, 0.9, 1, 2)
    assert model.modal_weight is None and "modal_weight" not in model.state_dict()  # LATTICE's global weights are not used
    model.eval()
    learned = list(zip(model.learned_edge_index, model.learned_edge_weight))
    with torch.no_grad():
        views = model.modality_views(learned)
        projected = model.graph_learner(model.item_features)
        for view, raw, transformed in zip(views, split_modalities(model.item_features, model.modality_dims), projected):
            mixed = 0.9 * dense_knn_graph(raw, 10) + 0.1 * dense_knn_graph(transformed, 10)
            torch.testing.assert_close(view, mixed @ model.item_embedding.weight)
    assert len(views) == 2 and not torch.allclose(views[0], views[1])  # one view per modality, not one mixed graph


def test_micro_attention_is_a_per_item_softmax_over_modalities(tiny_config):
    _, model, _, _, _ = build("MICRO", tiny_config)
    model.eval()
    learned = list(zip(model.learned_edge_index, model.learned_edge_weight))
    with torch.no_grad():
        views = model.modality_views(learned)
        alpha = model.modality_attention(views)
        first, _, second = model.query
        scores = torch.stack([torch.tanh(h @ first.weight.t() + first.bias) @ second.weight[0] for h in views], dim=1)
        hand = scores.exp() / scores.exp().sum(1, keepdim=True)
        torch.testing.assert_close(alpha, hand)
        torch.testing.assert_close(alpha.sum(1), torch.ones(model.n_items))
        assert alpha.shape == (model.n_items, 2) and alpha[:, 0].std() > 0  # per item, not one weight for all
        fused = alpha[:, :1] * views[0] + alpha[:, 1:] * views[1]
        torch.testing.assert_close(model.item_graph_convolution(learned), fused)
        # the item representation: LightGCN's + the L2-normalised fused view
        _, item_all = model.forward()
        ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
        lightgcn = light_gcn_reference(ego, model.ui_adjacency.to_dense(), 2)[model.n_users :]
        torch.testing.assert_close(item_all, lightgcn + F.normalize(fused, dim=1))


def test_micro_loss_is_bpr_plus_embedding_norms_plus_weighted_grace_infonce(tiny_config):
    _, model, train_data, _, _ = build("MICRO", {**tiny_config, "reg_weight": 0.01})
    assert model.cl_weight == 0.03 and model.temperature == 0.5
    batch = next(iter(train_data))
    users, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    model.eval()  # the graphs of the last refresh (at construction); MICRO has no dropout
    with torch.no_grad():
        user_all, item_all = model.forward()
        views, fused = model._views
        u, p, q = user_all[users], item_all[pos], item_all[neg]
        expected = -F.logsigmoid((u * p).sum(-1) - (u * q).sum(-1)).mean()
        expected = expected + 0.01 * (u.pow(2).sum() + p.pow(2).sum() + q.pow(2).sum()) / (2 * len(users))
        anchors = torch.unique(torch.cat([pos, neg]))
        for view in views:
            z1, z2 = F.normalize(view[1:], dim=1), F.normalize(fused[1:], dim=1)  # the padding item is no candidate
            between, refl = torch.exp(z1 @ z2.t() / 0.5), torch.exp(z1 @ z1.t() / 0.5)
            rows = anchors - 1
            per_item = -torch.log(between[rows, rows] / (between[rows].sum(1) + refl[rows].sum(1) - refl[rows, rows]))
            expected = expected + 0.03 * per_item.mean()
        torch.testing.assert_close(model.calculate_loss(batch), expected)


def test_lgmrec_memberships_are_softmaxes_over_hyperedges(tiny_config):
    from recbole_metammf.model.layers import split_modalities

    _, model, train_data, _, _ = build("LGMRec", tiny_config)
    assert (model.n_hyperedges, model.n_hyper_layers, model.temperature, model.alpha) == (4, 1, 0.2, 0.3)
    dense = dense_training_graph(model, train_data._dataset)[: model.n_users, model.n_users :]  # R, users x items
    blocks = split_modalities(model.item_features, model.modality_dims)
    model.eval()
    with torch.no_grad():
        for block, hyperedges in zip(blocks, model.hyperedges.projections):
            item, user = model.memberships(block, hyperedges)
            assert item.shape == (model.n_items, 4) and user.shape == (model.n_users, 4)
            logits = block @ hyperedges.weight.t()
            torch.testing.assert_close(item[1:], torch.softmax(logits[1:] / 0.2, dim=1))
            torch.testing.assert_close(user, torch.softmax(dense @ logits / 0.2, dim=1))  # a user's items' logits summed
            assert (item[0] == 0).all()  # the padding item joins no hyperedge
            torch.testing.assert_close(item[1:].sum(1), torch.ones(model.n_items - 1))
        # training: Gumbel noise, still distributions over the hyperedges, a new draw each time
        model.train()
        item, user = model.memberships(blocks[0], model.hyperedges.projections[0])
        again, _ = model.memberships(blocks[0], model.hyperedges.projections[0])
        torch.testing.assert_close(user.sum(1), torch.ones(model.n_users))
        torch.testing.assert_close(item[1:].sum(1), torch.ones(model.n_items - 1))
        assert not torch.allclose(item, again)


def test_lgmrec_representation_is_local_plus_weighted_global_by_dense_computation(tiny_config):
    from recbole_metammf.model.layers import hypergraph_propagation, split_modalities

    _, model, train_data, _, _ = build("LGMRec", {**tiny_config, "n_hyper_layers": 2})
    n_users = model.n_users
    adjacency = dense_training_graph(model, train_data._dataset)
    d = adjacency.sum(1).clamp_min(1).rsqrt()
    normalized = d[:, None] * adjacency * d[None, :]
    r = adjacency[:n_users, n_users:]
    model.eval()
    with torch.no_grad():
        ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
        cf = light_gcn_reference(ego, normalized, 2)
        local, global_ = cf.clone(), 0
        for block, w, v in zip(split_modalities(model.item_features, model.modality_dims),
                               model.feature_projection.projections, model.hyperedges.projections):
            items = block @ w.weight.t()
            nodes = torch.cat([r @ items / r.sum(1, keepdim=True).clamp_min(1), items])  # users: the mean of their items
            local += F.normalize(normalized @ (normalized @ nodes), dim=1)  # two propagations, the last kept
            h_i = torch.softmax(block @ v.weight.t() / 0.2, dim=1) * (torch.arange(model.n_items) > 0).float()[:, None]
            h_u = torch.softmax(r @ (block @ v.weight.t()) / 0.2, dim=1)
            z = h_i.t() @ cf[n_users:]  # layer 1: items into the hyperedges and back
            z = h_i.t() @ (h_i @ z)  # layer 2
            global_ = global_ + torch.cat([h_u @ z, h_i @ z])
        expected = local + 0.3 * F.normalize(global_, dim=1)
        user_all, item_all = model.forward()
        torch.testing.assert_close(torch.cat([user_all, item_all]), expected)
    # the hypergraph layers on a 3-item, 2-hyperedge example
    h_i = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    h_u = torch.tensor([[0.0, 1.0]])
    e = torch.tensor([[1.0], [2.0], [4.0]])
    users, items = hypergraph_propagation(h_i, h_u, e, 1)
    # hyperedges: [1 + 1, 1 + 4] = [2, 5]; items: [2, 3.5, 5]; the user: 5
    torch.testing.assert_close(items, torch.tensor([[2.0], [3.5], [5.0]]))
    torch.testing.assert_close(users, torch.tensor([[5.0]]))


def test_lgmrec_loss_is_bpr_plus_hypergraph_infonce_over_modality_pairs_plus_norms(in_tmp_cwd, tiny_config, monkeypatch):
    from recbole_metammf.model.general_recommender import lgmrec as lgmrec_module

    _, model, train_data, _, _ = build("LGMRec", {**tiny_config, "cl_weight": 0.1, "reg_weight": 0.01})
    batch = next(iter(train_data))
    users, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]

    def infonce_sum(a, b, candidates):
        a, b, candidates = F.normalize(a, dim=1), F.normalize(b, dim=1), F.normalize(candidates, dim=1)
        return -torch.log(torch.exp((a * b).sum(1) / 0.2) / torch.exp(a @ candidates.t() / 0.2).sum(1)).sum()

    model.eval()  # no Gumbel noise, no dropout
    with torch.no_grad():
        user_all, item_all, views = model.representations()
        u, p, q = user_all[users], item_all[pos], item_all[neg]
        expected = -F.logsigmoid((u * p).sum(-1) - (u * q).sum(-1)).mean()
        expected = expected + 0.01 * (u.norm() + p.norm() + q.norm()) / len(users)
        (uv, iv), (ut, it) = views
        expected = expected + 0.1 * (infonce_sum(uv[users], ut[users], ut) + infonce_sum(iv[pos], it[pos], it[1:]))
        torch.testing.assert_close(model.calculate_loss(batch), expected)
    # three modalities: three pairs; one modality: no pair, no contrastive term
    for dims, n_pairs in [((8, 6, 5), 3), ((8,), 0)]:
        root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / f"mm{len(dims)}"), name="mm", dims=dims)
        _, other, other_data, _, _ = build("LGMRec", {**tiny_config, "dataset": "mm", "data_path": root, "modalities": fields})
        other.eval()
        batch = next(iter(other_data))
        calls = []
        original = lgmrec_module.info_nce_loss
        monkeypatch.setattr(lgmrec_module, "info_nce_loss", lambda *args: calls.append(1) or original(*args))
        with torch.no_grad():
            other.calculate_loss(batch)
        monkeypatch.undo()
        assert len(calls) == 2 * n_pairs  # one user and one item term per pair


@pytest.mark.parametrize(
    "model_name,override,key",
    [
        ("MICRO", {"cl_weight": -1.0}, "cl_weight"),
        ("MICRO", {"temperature": 0}, "temperature"),
        ("MICRO", {"lambda_coeff": 2.0}, "lambda_coeff"),
        ("LGMRec", {"temperature": 0.0}, "temperature"),
        ("LGMRec", {"hyperedge_dropout": 1.0}, "hyperedge_dropout"),
        ("LGMRec", {"n_hyperedges": 0}, "n_hyperedges"),
        ("LGMRec", {"n_hyper_layers": 0}, "n_hyper_layers"),
        ("LGMRec", {"alpha": "big"}, "alpha"),
    ],
)
def test_micro_and_lgmrec_settings_are_refused_before_loading(model_name, override, key, tiny_config):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        Config(model=model_name, dataset="tiny", config_dict={**tiny_config, **override})
