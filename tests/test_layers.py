"""The factorised meta fusion equals the explicit per-item formula W_i = W + T x_3 s_i."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from recbole_metammf.model.layers import (
    MeanAggregationGCN,
    MetaFusionLayer,
    MetaFusionTower,
    MetaInformationExtractor,
    knn_adjacency,
    mean_aggregation_adjacency,
)


def naive_tensor(layer):
    """T as an (out, in, d_s) tensor, summed from the CP factors one rank-1 term at a time."""
    if layer.cp_rank == 0:
        return layer.tensor.detach().permute(2, 0, 1).clone()
    A, B, C = layer.factor_out.detach(), layer.factor_in.detach(), layer.factor_meta.detach()
    tensor = torch.zeros(layer.out_dim, layer.in_dim, layer.d_s, dtype=A.dtype)
    for r in range(layer.cp_rank):
        tensor += A[:, r, None, None] * B[None, :, r, None] * C[None, None, :, r]
    return tensor


def naive_tower(tower, features, meta):
    """Build W_i for every item and layer explicitly and apply it item by item."""
    outputs = []
    for i in range(features.shape[0]):
        h = features[i]
        for n, layer in enumerate(tower.layers):
            if n > 0:
                h = F.leaky_relu(h)
            W_i = torch.einsum("oiz,z->oi", naive_tensor(layer), meta[i])
            if layer.weight is not None:
                W_i = W_i + layer.weight.detach()
            h = W_i @ h
        outputs.append(h)
    return torch.stack(outputs)


@pytest.mark.parametrize(
    "cp_rank,static_weight,widths",
    list(itertools.product([0, 4], [True, False], [[7], [12, 9, 5]])),
)
def test_tower_equals_per_item_weights(cp_rank, static_weight, widths):
    torch.manual_seed(cp_rank + 10 * static_weight + len(widths))
    n_items, in_dim, d_s = 23, 10, 3
    tower = MetaFusionTower(in_dim, widths, d_s, cp_rank=cp_rank, static_weight=static_weight).double()
    extractor = MetaInformationExtractor(in_dim, 8, d_s).double()
    features = torch.randn(n_items, in_dim, dtype=torch.float64)
    meta = extractor(features)
    with torch.no_grad():
        fast = tower(features, meta)
        slow = naive_tower(tower, features, meta)
    assert fast.shape == (n_items, widths[-1])
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    # the meta information matters: another s_i gives another output unless T is zero
    assert not torch.allclose(tower(features, meta + 1.0), fast)


def test_standardized_meta_information_spreads_items_with_nearly_parallel_features():
    torch.manual_seed(3)
    # min-max-like features: a large common positive offset, small item-specific parts
    features = 1.0 + 0.01 * torch.randn(200, 12, dtype=torch.float64)
    plain = MetaInformationExtractor(12, 12, 4).double()
    standardized = MetaInformationExtractor(12, 12, 4, standardize=True).double()
    standardized.mlp.load_state_dict(plain.mlp.state_dict())
    with torch.no_grad():
        s_plain, s_std = plain(features), standardized(features)
    assert s_plain.std(dim=0).max() < 0.05  # the defect: s_i nearly the same for every item
    torch.testing.assert_close(s_std.mean(dim=0), torch.zeros(4).double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(s_std.var(dim=0, unbiased=False), torch.ones(4).double(), atol=1e-2, rtol=0)
    # the same map up to a per-component affine transform (so W absorbs the offset, T the scale)
    centred = s_plain - s_plain.mean(dim=0)
    torch.testing.assert_close(s_std * s_plain.std(dim=0, unbiased=False), centred, atol=1e-5, rtol=1e-2)
    # evaluation uses the running statistics: an item's s_i does not depend on the other items scored
    standardized.eval()
    with torch.no_grad():
        alone = standardized(features[:1])
        together = standardized(features)[:1]
    torch.testing.assert_close(alone, together)


@pytest.mark.parametrize("cp_rank", [0, 5])
def test_float32_layer_matches_explicit_weights(cp_rank):
    torch.manual_seed(0)
    layer = MetaFusionLayer(16, 8, 4, cp_rank=cp_rank)
    h, s = torch.randn(50, 16), torch.randn(50, 4)
    with torch.no_grad():
        explicit = torch.einsum("noi,ni->no", layer.item_weights(s), h)
        torch.testing.assert_close(layer(h, s), explicit, atol=1e-5, rtol=1e-4)


def test_cp_parameter_count_is_small_at_the_movielens_tower():
    full = MetaFusionLayer(2276, 1024, 5, cp_rank=0, static_weight=False)
    cp = MetaFusionLayer(2276, 1024, 5, cp_rank=16, static_weight=False)
    n_full = sum(p.numel() for p in full.parameters())
    n_cp = sum(p.numel() for p in cp.parameters())
    assert n_full == 2276 * 1024 * 5
    assert n_cp == 16 * (2276 + 1024 + 5)
    assert n_cp / n_full < 0.01


def test_mean_aggregation_on_the_sparse_adjacency_equals_the_edge_list():
    r"""MetaMMF_GCN aggregates with a CSR product (faster); it must be Eq. 18's mean over each node's
    neighbour set, as the gather/scatter on the edge list computes it, with gradients to match."""
    torch.manual_seed(0)
    n_nodes = 30
    edges = torch.randint(0, n_nodes, (2, 120))
    edges = torch.cat([edges, edges[:, :10]], dim=1)  # repeated edges: N(i) is a set, each counts once
    unique = torch.unique(edges, dim=1)
    gcn = MeanAggregationGCN(8, n_layers=2)
    x = torch.randn(n_nodes, 8, requires_grad=True)
    weights = torch.randn(n_nodes, 8)

    by_edges = gcn(x, unique)
    (by_edges * weights).sum().backward()
    grad_by_edges, x.grad = x.grad, None
    by_csr = gcn(x, mean_aggregation_adjacency(edges, n_nodes))
    (by_csr * weights).sum().backward()

    torch.testing.assert_close(by_csr, by_edges)
    torch.testing.assert_close(x.grad, grad_by_edges)
    # and the mean itself, by hand for one node with neighbours
    adjacency = mean_aggregation_adjacency(edges, n_nodes).to_dense()
    node = int(unique[1, 0])
    neighbours = unique[0, unique[1] == node]
    torch.testing.assert_close(adjacency[node].nonzero().flatten(), neighbours.sort().values)


def test_meta_fusion_modules_print_their_widths_rank_and_meta_length():
    tower = MetaFusionTower(14, [32, 8], d_s=5, cp_rank=4, static_weight=False)
    assert "dims=[14, 32, 8], d_s=5, cp_rank=4, static_weight=False" in repr(tower)
    assert "in_dim=14, out_dim=32, d_s=5, cp_rank=4, static_weight=False" in repr(tower.layers[0])
    assert "cp_rank=0 (full tensor)" in repr(MetaFusionLayer(3, 2, d_s=2, cp_rank=0))
    assert repr(MetaInformationExtractor(14, 20, 5)).startswith(
        "MetaInformationExtractor(\n  in_dim=14, hidden_dim=20, d_s=5, standardize=False"
    )


def test_layers_package_reexports_every_public_name_of_its_modules():
    import recbole_metammf.model.layers as layers
    from recbole_metammf.model.layers import fusion, graph, knn, losses

    for module in (fusion, graph, knn, losses):
        public = {name for name, value in vars(module).items()
                  if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__}
        assert public <= set(layers.__all__), public - set(layers.__all__)
        assert all(getattr(layers, name) is getattr(module, name) for name in public)


def test_training_graph_is_built_once_per_dataset_and_never_inherited_by_a_copy(tiny_config):
    from conftest import build

    from recbole_metammf.model.layers import training_graph

    _, model, train_data, _, _ = build("MetaMMF_GCN", tiny_config)
    train = train_data._dataset
    graph = training_graph(train, model.n_users)
    assert training_graph(train, model.n_users) is graph  # shared by every model built on this dataset
    assert graph.shape[1] == 2 * len(train.inter_feat)
    half = train.copy(train.inter_feat[: len(train.inter_feat) // 2])  # RecBole's shallow copy
    assert training_graph(half, model.n_users).shape[1] == 2 * (len(train.inter_feat) // 2)
    assert training_graph(train, model.n_users) is graph


def test_an_item_whose_nearest_items_point_away_keeps_finite_nonnegative_edges():
    # row 0: the padding item; item 3 points away from items 1 and 2, so two of its 3 nearest have cosine < 0
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [-1.0, -0.05]])
    adjacency = knn_adjacency([x], 3, similarity_weighted=True).to_dense()
    assert torch.isfinite(adjacency).all() and (adjacency >= 0).all()
    torch.testing.assert_close(adjacency[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))  # its own edge, normalised
