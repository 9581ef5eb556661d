"""MetaMMF_MF / MetaMMF_GCN end to end through the same path users run, the plugin's config, and the keys every
fusion backbone shares (the item-item graph, the ID combination, the regulariser)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from recbole_metammf.config import Config, parse_value
from recbole_metammf.quick_start import load_data_and_model, run_recbole_metammf
from recbole_metammf.checkpoint import load_checkpoint
from recbole_metammf.registry import get_model, get_trainer
from recbole_metammf.utils import DATASET_DIR, REPO_ROOT, ConfigError

from conftest import BASELINES, build, dense_knn_graph, fit_one_batch, write_tiny_dataset

METRICS = [f"{m}@{k}" for m in ["precision", "recall", "hit", "ndcg"] for k in [10, 20]]


def assert_metrics(result):
    assert set(METRICS) <= set(result["test_result"])
    assert all(0.0 <= result["test_result"][m] <= 1.0 for m in METRICS)


@pytest.mark.parametrize("model_name", ["MetaMMF_MF", "MetaMMF_GCN"])
def test_train_and_evaluate_on_shipped_tiktok(model_name, in_tmp_cwd):
    assert os.path.isfile(os.path.join(DATASET_DIR, "tiktok", "tiktok.item"))
    result = run_recbole_metammf(
        model_name, "tiktok", config_dict={"epochs": 1, "show_progress": False, "eval_batch_size": 409600}
    )
    assert_metrics(result)
    assert result["epochs"] == 1
    checkpoint = load_checkpoint(result["checkpoint"])  # weights_only=True
    assert checkpoint["config"]["model"] == model_name
    assert checkpoint["config"]["final"]["modalities"] == ["v_feat", "a_feat"]


@pytest.mark.parametrize("model_name", ["MetaMMF_MF", "MetaMMF_GCN"])
@pytest.mark.parametrize(
    "variant",
    [{"cp_rank": 0}, {"static_weight": False}, {"d_s": 3, "cp_rank": 8}, {"fusion_layers": [128, 64, 32]}],
    ids=["full-tensor", "no-static-weight", "ds3-R8", "three-layers"],
)
def test_variants_train_and_evaluate(model_name, variant, tiny_config):
    result = run_recbole_metammf(model_name, "tiny", config_dict={**tiny_config, **variant, "epochs": 1})
    assert_metrics(result)


def test_training_reduces_the_loss(tiny_config):
    config, model, train_data, _, _ = build("MetaMMF_GCN", tiny_config)
    losses = fit_one_batch(model, next(iter(train_data)), steps=20)
    assert losses[-1] < 0.5 * losses[0]


def test_one_modality_dataset(in_tmp_cwd, tiny_config):
    root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / "mono"), name="mono", dims=(8,))
    config = {**tiny_config, "dataset": "mono", "data_path": root, "modalities": ["v_feat"], "epochs": 1}
    result = run_recbole_metammf("MetaMMF_GCN", "mono", config_dict=config)
    assert_metrics(result)


def test_features_are_aligned_buffers(tiny_config):
    _, model, train_data, _, _ = build("MetaMMF_GCN", {**tiny_config, "normalize_modalities": False})
    _, _, blocks = write_tiny_dataset(tiny_config["data_path"])
    dataset = train_data._dataset
    assert model.item_features.shape == (dataset.item_num, 14)
    assert torch.all(model.item_features[0] == 0)  # padding item
    for token in ["0", "17", "89"]:
        row = dataset.token2id("item_id", token)
        expected = torch.tensor([*blocks[0][int(token)], *blocks[1][int(token)]], dtype=torch.float32)
        torch.testing.assert_close(model.item_features[row], expected, atol=1e-4, rtol=1e-4)
    assert "item_features" in dict(model.named_buffers())
    assert "item_features" not in model.state_dict()  # rebuilt from the dataset, not saved


@pytest.mark.parametrize("model_name", ["MetaMMF_MF", "MetaMMF_GCN"])
def test_full_sort_predict_agrees_with_predict(model_name, tiny_config):
    _, model, _, _, test_data = build(model_name, tiny_config)
    model.eval()
    users = torch.tensor([1, 5, 9, 30])
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users}).view(len(users), -1)
        items = torch.tensor([1, 2, 40, 77])
        pointwise = model.predict({model.USER_ID: users, model.ITEM_ID: items})
    torch.testing.assert_close(scores[torch.arange(len(users)), items], pointwise)


@pytest.mark.parametrize("model_name", ["MetaMMF_MF", "MetaMMF_GCN"] + BASELINES)
def test_item_representations_computed_once_per_evaluation(model_name, tiny_config):
    config_dict = {**tiny_config, "eval_batch_size": 91 * 7}  # 7 users per batch: several batches
    config, model, train_data, _, test_data = build(model_name, config_dict)
    assert len(test_data) > 3
    calls = []
    original_forward = model.forward
    model.forward = lambda *args, **kwargs: calls.append(1) or original_forward(*args, **kwargs)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)  # what fit() does first: item counts for ItemCoverage / GiniIndex
    trainer.evaluate(test_data, load_best_model=False)
    assert len(calls) == 1
    trainer.evaluate(test_data, load_best_model=False)
    assert len(calls) == 2  # a new evaluation recomputes (model.eval() drops the cache)


def test_builtin_model_runs_and_reloads_safely(tiny_config):
    result = run_recbole_metammf("LightGCN", "tiny", config_dict=tiny_config)
    assert_metrics(result)
    checkpoint = load_checkpoint(result["checkpoint"])
    assert checkpoint["config"]["model"] == "LightGCN"
    with pytest.raises(Exception):  # RecBole's own checkpoints fail this way; ours do not
        torch.load(result["checkpoint"], weights_only=True, map_location="cpu")["config"]["nonexistent"]


def test_load_data_and_model_restores_the_trained_model(tiny_config):
    result = run_recbole_metammf("MetaMMF_MF", "tiny", config_dict=tiny_config)
    config, model, _, _, _, _ = load_data_and_model(result["checkpoint"])
    saved = load_checkpoint(result["checkpoint"])["state_dict"]
    assert config["cp_rank"] == 16
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name])


def test_cli_overrides_and_config_files(in_tmp_cwd):
    root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / "data"))
    config_file = in_tmp_cwd / "tiny.yaml"
    config_file.write_text(
        "benchmark_filename: [train, valid, test]\n"
        "load_col: {inter: [user_id, item_id], item: [item_id]}\n"
        f"modalities: [{', '.join(fields)}]\n"
        "show_progress: False\n"
    )
    command = [
        sys.executable, os.path.join(REPO_ROOT, "run_recbole_metammf.py"), "--model=MetaMMF_MF", "--dataset=tiny",
        f"--data_path={root}", f"--config_files={config_file}", "--epochs=1", "--cp_rank=8",
        "--fusion_layers=[16,8]", "--static_weight=False", "--reg_weight=1e-5",
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "test result" in log
    assert "fusion_layers = [16, 8]" in log and "static_weight = False" in log and "cp_rank = 8" in log
    assert "reg_weight = 1e-05" in log


def test_cli_reports_a_bad_value_without_traceback(in_tmp_cwd):
    command = [
        sys.executable, os.path.join(REPO_ROOT, "run_recbole_metammf.py"), "--model=MetaMMF_MF", "--dataset=tiktok", "--d_s=0"
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "d_s: got 0" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "override,key",
    [
        ({"d_s": 0}, "d_s"),
        ({"cp_rank": -1}, "cp_rank"),
        ({"modalities": []}, "modalities"),
        ({"fusion_layers": []}, "fusion_layers"),
        ({"fusion_layers": [32, 0]}, "fusion_layers"),
        ({"n_layers": 0}, "n_layers"),
        ({"static_weight": "yes"}, "static_weight"),
        ({"standardize_meta": 1}, "standardize_meta"),
        ({"center_meta_input": "no"}, "center_meta_input"),
        ({"id_combination": "add"}, "id_combination"),
        ({"regularization": "l2"}, "regularization"),
    ],
)
def test_bad_values_are_refused_before_loading(override, key, tiny_config):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        Config(model="MetaMMF_GCN", dataset="tiny", config_dict={**tiny_config, **override})


def test_missing_modality_lists_the_fields(tiny_config):
    with pytest.raises(ConfigError, match=r"modalities: \['t_feat'\].*tiny.item \(it has \['v_feat', 'a_feat'\]"):
        Config(model="MetaMMF_MF", dataset="tiny", config_dict={**tiny_config, "modalities": ["v_feat", "t_feat"]})


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match="MetaMMF_GCN"):
        get_model("MetaMMF_GNC")


def test_command_line_values_are_literals_not_code():
    assert parse_value("[128,64,32]") == [128, 64, 32]
    assert parse_value("False") is False and parse_value("false") is False
    assert parse_value("1e-6") == 1e-6
    assert parse_value("uniform") == "uniform"
    payload = "__import__('os').getcwd()"
    assert parse_value(payload) == payload


def test_cli_needs_a_model_and_a_dataset(in_tmp_cwd):
    command = [sys.executable, os.path.join(REPO_ROOT, "run_recbole_metammf.py"), "--dataset=tiktok"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "model: not given" in out.stderr and "Traceback" not in out.stderr


def test_modalities_are_min_max_normalised_by_default_and_unit_length_for_the_gcn_backbone(tiny_config):
    config, model, _, _, _ = build("MetaMMF_LightGCN", tiny_config)
    assert config["normalize_field"] == ["v_feat", "a_feat"]
    features = model.item_features[1:]  # row 0 is padding
    for start, dim in [(0, 8), (8, 6)]:
        block = features[:, start : start + dim]
        assert block.min().item() == pytest.approx(0.0, abs=1e-6)
        assert block.max().item() == pytest.approx(1.0, abs=1e-6)
    _, gcn, _, _, _ = build("MetaMMF_GCN", tiny_config)  # l2, chosen on validation (properties/model/MetaMMF_GCN.yaml)
    for block in torch.split(gcn.item_features[1:], gcn.modality_dims, dim=1):
        torch.testing.assert_close(block.norm(dim=1), torch.ones(len(block)))


def test_centred_meta_input_is_eq7_with_a_shifted_bias(tiny_config):
    """center_meta_input: the extractor reads x_i - mean(x); the same s_i as the paper's extractor whose
    first bias is b_1 - W_1 mean(x), for warm items and for the padding row alike."""
    paper = {**tiny_config, "standardize_meta": False, "center_meta_input": False}
    _, centred, *_ = build("MetaMMF_MF", {**paper, "center_meta_input": True})
    _, plain, *_ = build("MetaMMF_MF", paper)
    plain.load_state_dict(centred.state_dict())
    features = centred.item_features
    offset = features[1:].mean(dim=0)
    torch.testing.assert_close(centred.meta_input_offset, offset)
    with torch.no_grad():
        first = plain.meta_extractor.mlp[0]
        first.bias -= first.weight @ offset
        torch.testing.assert_close(centred.fuse(features)[0], plain.fuse(features)[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "model_name",
    ["MetaMMF_MF", "EarlyFusion_MF", "MetaMMF_GCN", "LateFusion_GCN", "MetaMMF_LightGCN", "EarlyFusion_LightGCN"],
)
def test_item_graph_adds_the_normalised_knn_propagation_of_the_layer0_items(model_name, tiny_config):
    config = {**tiny_config, "n_layers": 1, "item_graph_k": 4, "n_item_layers": 2}
    _, model, train_data, _, _ = build(model_name, config)
    _, without, _, _, _ = build(model_name, {**config, "item_graph_k": 0})
    without.load_state_dict(model.state_dict())
    model.eval(), without.eval()
    item_feat = train_data._dataset.get_item_feature()
    raw = [item_feat[m].double().numpy() for m in model.modalities]  # the graph reads the unscaled features
    s = sum(dense_knn_graph(block, 4) for block in raw) / len(raw)
    with torch.no_grad():
        user_all, item_all = model.forward()
        user_backbone, item_backbone = without.forward()  # the backbone alone
        ego = model.item_representation().double().numpy()
    h = s @ (s @ ego)
    norm = np.linalg.norm(h, axis=1, keepdims=True)
    expected = item_backbone.double().numpy() + h / np.maximum(norm, 1e-12)
    np.testing.assert_allclose(item_all.double().numpy(), expected, rtol=1e-4, atol=1e-6)
    assert torch.equal(user_all, user_backbone)  # users as the backbone's
    assert (norm[1:] > 0).all()


@pytest.mark.parametrize("key, value", [("item_graph_k", -1), ("item_graph_k", 2.5), ("n_item_layers", 0)])
def test_a_bad_item_graph_setting_is_refused(key, value, tiny_config):
    with pytest.raises(ConfigError, match=key):
        build("MetaMMF_LightGCN", {**tiny_config, "item_graph_k": 4, key: value})


@pytest.mark.parametrize("model_name", ["MetaMMF_MF", "MetaMMF_LightGCN", "EarlyFusion_MF"])
def test_summed_id_combination_adds_the_fused_features_to_a_full_width_id_embedding(model_name, tiny_config):
    settings = {**tiny_config, "id_combination": "sum", "embedding_size": 16, "fusion_layers": [16]}
    _, summed, *_ = build(model_name, settings)
    assert summed.user_embedding.weight.shape[1] == 16
    with torch.no_grad():
        fused = summed.fuse(summed.item_features)[0]
        torch.testing.assert_close(summed.item_representation(), fused + summed.item_embedding.weight)
    _, concatenated, *_ = build(model_name, {**settings, "id_combination": "concat"})
    assert concatenated.item_representation().shape[1] == concatenated.user_embedding.weight.shape[1] == 32
    with pytest.raises(ConfigError, match=r"id_combination: sum .* fused \[8\] .* embedding_size 16"):
        build(model_name, {**settings, "fusion_layers": [8]})


@pytest.mark.parametrize("item_graph_k", [0, 4])
@pytest.mark.parametrize("model_name", ["MetaMMF_MF", "MetaMMF_GCN", "LateFusion_MF"])
def test_embedding_regularization_weighs_the_batch_layer0_embeddings_fused_half_included(model_name, item_graph_k, tiny_config):
    graph = {"drop_batch_edges": False} if model_name.endswith("_GCN") else {}  # the loss on the graph forward() uses
    config = {**tiny_config, "regularization": "embeddings", "reg_weight": 0.5, "item_graph_k": item_graph_k, **graph}
    _, model, train_data, _, _ = build(model_name, config)
    batch = next(iter(train_data))
    users, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    model.eval()  # no dropout: the same representations twice
    with torch.no_grad():
        items = model.item_representation(torch.cat([pos, neg]))
        expected = model.emb_loss(model.user_embedding(users), *items.chunk(2))
        torch.testing.assert_close(model.regularizer(users, pos, neg), expected)
        user_all, item_all = model.forward()  # what is scored: layer-0 on MF, the graph layers' output on GCN (+ the item graph's)
        bpr = model.bpr_loss(user_all[users], item_all[pos], item_all[neg])
        torch.testing.assert_close(model.calculate_loss(batch), bpr + 0.5 * expected)
    model.train()
    model.zero_grad()
    model.regularizer(users, pos, neg).backward()
    outside = torch.ones(model.n_items, dtype=torch.bool)
    outside[torch.cat([pos, neg])] = False
    assert model.item_embedding.weight.grad[outside].abs().sum() == 0  # only the batch's items
    fusion = [p for name, p in model.named_parameters() if not name.startswith(("user_embedding", "item_embedding", "gcn"))]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion)  # the fused half is held in check


def test_looking_up_recbole_models_leaves_autograd_anomaly_mode_off():
    """RecBole's sine.py turns anomaly mode on at import; a lookup that imports it must not leave it on."""
    code = (
        "import torch\n"
        "from recbole_metammf.registry import get_model, known_model_names\n"
        "try:\n    get_model('NoSuchModel')\nexcept Exception:\n    pass\n"
        "assert get_model('SINE').__name__ == 'SINE' and 'SINE' in known_model_names()\n"
        "print(torch.is_anomaly_enabled())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
