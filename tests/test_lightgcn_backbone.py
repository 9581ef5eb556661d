"""LightGCN propagation of fused embeddings (MetaMMF_LightGCN, EarlyFusion_LightGCN), the feature
scalings, the authors' linear last GCN layer, and the ranking-diagnosis metrics in every result."""

import numpy as np
import pytest
import torch

from recbole_metammf.model.layers import MeanAggregationGCN, scale_modality
from recbole_metammf.quick_start import run_recbole_metammf
from recbole_metammf.utils import ConfigError

from conftest import build

RANKED = ["itemcoverage@20", "averagepopularity@20", "giniindex@20"]


def dense_normalised_adjacency(train_data, n_users, n_items):
    r"""``D^{-1/2} A D^{-1/2}`` of the user-item graph, in numpy, independently of the package."""
    coo = train_data._dataset.inter_matrix(form="coo")
    n = n_users + n_items
    a = np.zeros((n, n))
    a[coo.row, n_users + coo.col] = 1.0
    a[n_users + coo.col, coo.row] = 1.0
    degree = a.sum(1)
    inv = np.where(degree > 0, degree ** -0.5, 0.0)
    return inv[:, None] * a * inv[None, :]


@pytest.mark.parametrize("model_name", ["MetaMMF_LightGCN", "EarlyFusion_LightGCN"])
def test_lightgcn_backbone_is_the_mean_of_propagated_fused_embeddings(model_name, tiny_config):
    _, model, train_data, _, _ = build(model_name, {**tiny_config, "n_layers": 3})
    model.eval()
    with torch.no_grad():
        user_all, item_all = model.forward()
        ego = torch.cat([model.user_embedding.weight, model.item_representation()]).double().numpy()
    a = dense_normalised_adjacency(train_data, model.n_users, model.n_items)
    layers = [ego]
    for _ in range(3):
        layers.append(a @ layers[-1])
    expected = np.mean(layers, axis=0)
    got = torch.cat([user_all, item_all]).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_embedding_regularisation_is_recbole_lightgcns(tiny_config):
    _, model, train_data, _, _ = build("MetaMMF_LightGCN", {**tiny_config, "regularization": "embeddings", "reg_weight": 0.5})
    batch = next(iter(train_data))
    users, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    model.train()
    torch.manual_seed(0)
    loss = model.calculate_loss(batch)
    with torch.no_grad():
        user_all, item_all = model.forward()
        ego_items = model.item_representation()
        bpr = -torch.nn.functional.logsigmoid(
            (user_all[users] * item_all[pos]).sum(-1) - (user_all[users] * item_all[neg]).sum(-1)
        ).mean()
        # RecBole's EmbLoss without require_pow: sum of Frobenius norms over the batch size
        reg = (model.user_embedding.weight[users].norm() + ego_items[pos].norm() + ego_items[neg].norm()) / len(users)
    assert loss.item() == pytest.approx((bpr + 0.5 * reg).item(), rel=1e-5)


def test_lightgcn_backbone_trains_and_reports_what_it_ranks(tiny_config):
    result = run_recbole_metammf("MetaMMF_LightGCN", "tiny", config_dict={**tiny_config, "epochs": 2})
    test = result["test_result"]
    assert set(RANKED) <= set(test)
    assert 0.0 < test["itemcoverage@20"] <= 1.0
    assert 0.0 <= test["giniindex@20"] <= 1.0
    assert test["averagepopularity@20"] > 0


def test_a_bad_regularisation_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="regularization: got 'l1'"):
        build("MetaMMF_LightGCN", {**tiny_config, "regularization": "l1"})


def test_standard_scaling_gives_centred_modalities_of_unit_mean_squared_norm():
    block = torch.cat([torch.zeros(1, 6), torch.rand(50, 6) * 5 + 3])
    scaled = scale_modality(block, "standard")
    assert torch.equal(scaled[0], torch.zeros(6))  # padding row stays zero
    assert torch.allclose(scaled[1:].mean(0), torch.zeros(6), atol=1e-5)
    assert scaled[1:].pow(2).sum(1).mean().item() == pytest.approx(49 / 50, rel=1e-4)  # ddof 1 variance


def test_l2_scaling_gives_unit_norm_items():
    block = torch.cat([torch.zeros(1, 4), torch.randn(10, 4) * 7])
    scaled = scale_modality(block, "l2")
    assert torch.allclose(scaled[1:].norm(dim=1), torch.ones(10))
    assert torch.equal(scaled[0], torch.zeros(4))


def test_scalings_reach_the_model_and_a_bad_one_is_refused(tiny_config):
    _, raw, _, _, _ = build("MetaMMF_GCN", {**tiny_config, "normalize_modalities": "none"})
    _, standard, _, _, _ = build("MetaMMF_GCN", {**tiny_config, "normalize_modalities": "standard"})
    dims = raw.modality_dims
    for block_raw, block_std in zip(torch.split(raw.item_features, dims, 1), torch.split(standard.item_features, dims, 1)):
        assert torch.allclose(block_std, scale_modality(block_raw, "standard"))
    with pytest.raises(ConfigError, match="normalize_modalities: got 'zscore'"):
        build("MetaMMF_GCN", {**tiny_config, "normalize_modalities": "zscore"})


def test_linear_last_layer_is_the_authors_gcn():
    torch.manual_seed(0)
    gcn = MeanAggregationGCN(4, 2, dropout=0.0, last_activation=False)
    x = torch.randn(5, 4)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 0, 3, 2, 0, 4]])
    first, second = gcn.convs
    expected = second(torch.nn.functional.leaky_relu(first(x, edge_index)), edge_index)
    assert torch.allclose(gcn(x, edge_index), expected)
    assert (gcn(x, edge_index) < -0.1).any()  # negative outputs survive: no LeakyReLU at the end
    assert "last_activation=False" in repr(gcn)


def test_mean_layer_combination_averages_layers_zero_to_l(tiny_config):
    torch.manual_seed(0)
    gcn = MeanAggregationGCN(4, 2, dropout=0.0, layer_combination="mean")
    x = torch.randn(5, 4)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 0, 3, 2, 0, 4]])
    first, second = gcn.convs
    h1 = torch.nn.functional.leaky_relu(first(x, edge_index))
    h2 = torch.nn.functional.leaky_relu(second(h1, edge_index))
    assert torch.allclose(gcn(x, edge_index), (x + h1 + h2) / 3)
    assert "layer_combination=mean" in repr(gcn)
    with pytest.raises(ConfigError, match="layer_combination: got 'sum'"):
        build("MetaMMF_GCN", {**tiny_config, "layer_combination": "sum"})
