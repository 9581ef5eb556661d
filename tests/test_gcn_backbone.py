"""The learned graph layers of MetaMMF_GCN, the *Fusion_GCN models, GraphSAGE and GAT: LeakyReLU's slope
and the training batch's edges left out of the graph its loss is computed on."""

import pytest
import torch
import torch.nn.functional as F

from recbole_metammf.config import Config
from recbole_metammf.model.layers import (
    MeanAggregationGCN,
    edge_keys,
    mean_aggregation_adjacency,
    target_major,
    without_pairs,
)
from recbole_metammf.utils import ConfigError

from conftest import build

LEARNED_GRAPH_MODELS = ["MetaMMF_GCN", "EarlyFusion_GCN", "LateFusion_GCN", "GraphSAGE", "GAT"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_without_pairs_removes_exactly_the_pairs_in_both_directions():
    # users 0, 1 and items 0, 1, 2 (nodes 2, 3, 4): edges u0-i0, u0-i1, u1-i1, u1-i2, both directions
    users, items = torch.tensor([0, 0, 1, 1]), torch.tensor([2, 3, 3, 4])
    edge_index = target_major(torch.stack([torch.cat([users, items]), torch.cat([items, users])]), 5)
    # target-major: sorted by target, then source
    assert edge_index.t().tolist() == [[2, 0], [3, 0], [3, 1], [4, 1], [0, 2], [0, 3], [1, 3], [1, 4]]
    kept = without_pairs(edge_index, 2, 5, torch.tensor([0, 1]), torch.tensor([1, 2]))  # u0-i1 and u1-i2
    assert sorted(kept.t().tolist()) == [[0, 2], [1, 3], [2, 0], [3, 1]]
    assert without_pairs(edge_index, 2, 5, torch.tensor([1]), torch.tensor([0])).shape == edge_index.shape  # not an edge


def test_the_adjacency_of_a_target_major_edge_index_equals_the_one_of_any_order():
    torch.manual_seed(0)
    edge_index = torch.randint(0, 30, (2, 200))  # unsorted, with repeated edges and self-loops
    dense = torch.zeros(30, 30)
    dense[edge_index[1], edge_index[0]] = 1.0  # rows = targets; a repeated edge counts once
    for edges in (edge_index, target_major(edge_index, 30)):
        torch.testing.assert_close(mean_aggregation_adjacency(edges, 30).to_dense(), dense)


def test_slope_one_makes_the_layers_linear_and_the_default_is_pytorchs_leaky_relu():
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 0, 3, 2, 0, 4]])
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    linear = MeanAggregationGCN(4, 2, negative_slope=1.0)
    torch.testing.assert_close(linear(2 * x - 3 * y, edge_index), 2 * linear(x, edge_index) - 3 * linear(y, edge_index))
    default = MeanAggregationGCN(4, 2)
    first, second = default.convs
    expected = F.leaky_relu(second(F.leaky_relu(first(x, edge_index)), edge_index))
    torch.testing.assert_close(default(x, edge_index), expected)
    assert "negative_slope=0.01" in repr(default) and "negative_slope=1.0" in repr(linear)


@pytest.mark.parametrize("model_name", LEARNED_GRAPH_MODELS)
def test_the_batch_loss_is_computed_without_the_batchs_edges_and_evaluation_with_all(model_name, tiny_config):
    config = {**tiny_config, "dropout": 0.0}
    _, dropping, train_data, _, _ = build(model_name, {**config, "drop_batch_edges": True})
    _, plain, _, _, _ = build(model_name, {**config, "drop_batch_edges": False})
    plain.load_state_dict(dropping.state_dict())
    batch = next(iter(train_data))
    users, items = batch[plain.USER_ID], batch[plain.ITEM_ID]
    edge_index = plain.edge_index
    n_nodes = plain.n_users + plain.n_items
    # independently: the edges of the batch's (user, positive item) pairs, found by a Python set
    pairs = {(int(u), int(i) + plain.n_users) for u, i in zip(users, items)}
    keep = [(a, b) not in pairs and (b, a) not in pairs for a, b in edge_index.t().tolist()]
    reduced = edge_index[:, torch.tensor(keep)]
    assert reduced.shape[1] == edge_index.shape[1] - 2 * len(pairs)
    full = plain.graph_structure
    plain.graph_structure = plain.graph(reduced, n_nodes)
    torch.manual_seed(0)
    expected = plain.calculate_loss(batch)
    plain.graph_structure = full
    torch.manual_seed(0)
    torch.testing.assert_close(dropping.calculate_loss(batch), expected)
    torch.manual_seed(0)
    assert not torch.allclose(plain.calculate_loss(batch), expected)  # the edges matter to the loss
    dropping.eval()
    plain.eval()
    with torch.no_grad():
        for a, b in zip(dropping.forward(), plain.forward()):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "override,key",
    [
        ({"negative_slope": 2.0}, "negative_slope"),
        ({"negative_slope": "linear"}, "negative_slope"),
        ({"drop_batch_edges": "yes"}, "drop_batch_edges"),
    ],
)
@pytest.mark.parametrize("model_name", ["MetaMMF_GCN", "GraphSAGE"])
def test_bad_graph_layer_settings_are_refused_before_loading(model_name, override, key, tiny_config):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        Config(model=model_name, dataset="tiny", config_dict={**tiny_config, **override})


def test_without_pairs_with_kept_keys_equals_without_and_its_graph_needs_no_sort():
    torch.manual_seed(0)
    n_users, n_items = 6, 9
    n_nodes = n_users + n_items
    users = torch.randint(0, n_users, (25,))
    items = torch.randint(0, n_items, (25,)) + n_users
    edge_index = target_major(torch.stack([torch.cat([users, items]), torch.cat([items, users])]), n_nodes)
    batch_users, batch_items = users[:5], items[:5] - n_users
    plain = without_pairs(edge_index, n_users, n_nodes, batch_users, batch_items)
    kept = without_pairs(edge_index, n_users, n_nodes, batch_users, batch_items, keys=edge_keys(edge_index, n_nodes))
    assert torch.equal(plain, kept) and kept.shape[1] < edge_index.shape[1]
    torch.testing.assert_close(
        mean_aggregation_adjacency(kept, n_nodes, presorted=True).to_dense(),
        mean_aggregation_adjacency(kept.flip(1), n_nodes).to_dense(),  # reversed order: sorted by the check
    )
