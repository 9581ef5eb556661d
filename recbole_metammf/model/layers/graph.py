r"""The user-item graph and message passing over it: the training graph, its normalised adjacency,
graph convolution stacks (Eq. 18; GAT), LightGCN propagation, FREEDOM's edge sampling, LGMRec's hypergraph."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.nn import GATConv, SAGEConv
from torch_geometric.nn.inits import glorot
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import coalesce, degree, scatter, to_torch_csr_tensor


class GraphConvolutionStack(nn.Module):
    r"""``L`` graph convolution layers: ``e^{(l)} = dropout(LeakyReLU(conv_l(e^{(l-1)}, graph)))``.

    ``negative_slope``: LeakyReLU's slope below zero (0.01, PyTorch's default, is the authors' code; 1.0
    makes the layers linear). ``last_activation=False`` leaves the last layer linear (no LeakyReLU there). ``layer_combination``:
    ``last`` = ``e^{(L)}``, ``mean`` = the mean of ``e^{(0)} .. e^{(L)}`` (LightGCN's combination).
    The convolutions (torch-geometric layers mapping ``dim`` to ``dim``) are the subclass's; the graph
    is given at call time in whatever form they take (an edge index, a sparse matrix).
    """

    LAYER_COMBINATIONS = ("last", "mean")

    def __init__(self, convs, dropout=0.0, last_activation=True, layer_combination="last", negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope
        if layer_combination not in self.LAYER_COMBINATIONS:
            raise ValueError(f"layer_combination: got {layer_combination!r}; expected one of {self.LAYER_COMBINATIONS}")
        self.layer_combination = layer_combination
        self.convs = nn.ModuleList(convs)
        self.dropout = nn.Dropout(dropout)
        self.last_activation = last_activation

    def layer_outputs(self, x, graph):
        r"""``[e^{(0)}, e^{(1)}, .., e^{(L)}]``: the input and each layer's output (after its activation and dropout)."""
        layers = [x]
        for n, conv in enumerate(self.convs):
            x = conv(x, graph)
            if self.last_activation or n < len(self.convs) - 1:
                x = F.leaky_relu(x, self.negative_slope)
            x = self.dropout(x)
            layers.append(x)
        return layers

    def forward(self, x, graph):
        layers = self.layer_outputs(x, graph)
        return layers[-1] if self.layer_combination == "last" else torch.stack(layers).mean(dim=0)

    def extra_repr(self):
        return (
            f"n_layers={len(self.convs)}, negative_slope={self.negative_slope}, last_activation={self.last_activation}, "
            f"layer_combination={self.layer_combination}"
        )


class MeanAggregationGCN(GraphConvolutionStack):
    r"""Eq. 18: ``e^{(l)} = LeakyReLU(W_1 e^{(l-1)} + W_2 mean_{j in N(i)} e_j^{(l-1)})``, ``L`` layers.

    torch-geometric's :class:`SAGEConv` with mean aggregation and no bias is exactly this update.
    The graph is given at call time, as an edge index or, faster, as the sparse CSR matrix of
    :func:`mean_aggregation_adjacency` (one sparse-dense product per layer instead of a gather and
    a scatter over the edges: 17 vs 32 ms per layer, forward and backward, on tiktok's graph).

    ``last_activation=False`` leaves the last layer linear, as the authors' code does (the paper's
    Eq. 18 applies LeakyReLU at every layer). ``layer_combination``: ``last`` = ``e^{(L)}`` (the paper
    and the authors' code), ``mean`` = the mean of ``e^{(0)} .. e^{(L)}`` (LightGCN's combination).
    """

    def __init__(self, dim, n_layers, dropout=0.0, last_activation=True, layer_combination="last", negative_slope=0.01):
        convs = [SAGEConv(dim, dim, aggr="mean", bias=False) for _ in range(n_layers)]
        for conv in convs:
            glorot(conv.lin_l.weight)  # Xavier, as the paper; PyG defaults to Kaiming
            glorot(conv.lin_r.weight)
        super().__init__(convs, dropout, last_activation, layer_combination, negative_slope)


class AttentionGCN(GraphConvolutionStack):
    r"""Graph attention layers (Velickovic et al., ICLR 2018, Eq. 1-4; torch-geometric's :class:`GATConv`):
    ``e^{(l)}_i = sum_{j in N(i) + i} alpha_ij W e^{(l-1)}_j + b`` with
    ``alpha_ij = softmax_j LeakyReLU_0.2(a_src . W e_j + a_dst . W e_i)`` over ``i``'s neighbours and
    ``i`` itself (a self-loop), then LeakyReLU and dropout between layers as :class:`GraphConvolutionStack`.
    ``heads`` attention heads are averaged (``concat=False``), so every layer stays ``dim`` wide.
    The graph is an edge index (``edge_index[1]`` = the target).
    """

    def __init__(self, dim, n_layers, heads=1, attention_dropout=0.0, dropout=0.0, last_activation=True,
                 layer_combination="last", negative_slope=0.01):
        convs = [GATConv(dim, dim, heads=heads, concat=False, dropout=attention_dropout) for _ in range(n_layers)]
        super().__init__(convs, dropout, last_activation, layer_combination, negative_slope)


def edge_keys(edge_index, n_nodes):
    r"""One integer per edge, ``target * n_nodes + source``: increasing along a :func:`target_major` index."""
    return edge_index[1] * n_nodes + edge_index[0]


def target_major(edge_index, n_nodes):
    r"""``edge_index`` without repeated edges, sorted by target and then by source: the order of the rows
    of ``A^T`` (rows = targets), in which :func:`mean_aggregation_adjacency` and :func:`without_pairs`
    need no sort."""
    keys = torch.unique(edge_keys(edge_index, n_nodes))
    return torch.stack([keys % n_nodes, torch.div(keys, n_nodes, rounding_mode="floor")])


def mean_aggregation_adjacency(edge_index, n_nodes, presorted=False):
    r"""The graph of ``edge_index`` as the binary sparse CSR matrix ``A^T`` (rows = targets) that
    :class:`SAGEConv` reduces with ``mean`` (PyG's ``spmm``); repeated edges count once, as N(i) is a set.
    An edge index already in :func:`target_major` order is used as it is; ``presorted=True`` says so
    without the check (the training batches' graphs of ``drop_batch_edges``, cut from a target-major index)."""
    if not presorted:
        keys = edge_keys(edge_index, n_nodes)
        if keys.numel() > 1 and not bool((keys[1:] > keys[:-1]).all()):
            edge_index = target_major(edge_index, n_nodes)
    targets, sources = edge_index[1], edge_index[0]
    row_pointers = torch.zeros(n_nodes + 1, dtype=torch.long, device=edge_index.device)
    row_pointers[1:] = torch.bincount(targets, minlength=n_nodes).cumsum(0)
    values = torch.ones(sources.numel(), device=edge_index.device)
    return torch.sparse_csr_tensor(row_pointers, sources, values, size=(n_nodes, n_nodes), check_invariants=False)


def without_pairs(edge_index, n_users, n_nodes, users, items, keys=None):
    r"""``edge_index`` of a user-item graph of ``n_nodes`` nodes in :func:`target_major` order (both
    directions, item ``j`` = node ``n_users + j``) without the user-item pairs ``(users[k], items[k])``, in
    either direction; the rest keeps its order. A binary search per pair: no pass sorts the edges.
    ``keys``: the index's :func:`edge_keys`, when the caller keeps them (a fixed graph searched every batch)."""
    if keys is None:
        keys = edge_keys(edge_index, n_nodes)
    if keys.numel() == 0:
        return edge_index
    items = items + n_users
    removed = torch.cat([items * n_nodes + users, users * n_nodes + items])  # user -> item, item -> user
    position = torch.searchsorted(keys, removed).clamp_(max=keys.numel() - 1)
    keep = torch.ones(keys.numel(), dtype=torch.bool, device=keys.device)
    keep[position[keys[position] == removed]] = False
    return edge_index[:, keep]


def bipartite_edge_index(interaction_matrix, n_users):
    r"""Edge index of the user-item graph (users ``0..n_users-1``, item ``j`` is node ``n_users + j``),
    both directions, from a scipy COO user x item matrix."""
    users = torch.as_tensor(interaction_matrix.row, dtype=torch.long)
    items = torch.as_tensor(interaction_matrix.col, dtype=torch.long) + n_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


def training_graph(dataset, n_users):
    r"""Edge index of the user-item graph of the training interactions (RecBole hands a model the
    training dataset), both directions: what every graph model of the package propagates on.

    Built once per dataset and kept on it (as RecBole-GNN's dataset keeps its graph), so the graph
    models built on one loaded dataset share it; treat it as read-only."""
    cached = getattr(dataset, "_metammf_training_graph", None)
    # RecBole's Dataset.copy is a shallow copy with new interactions: a cache inherited that way is stale
    if cached is None or cached[0] != n_users or cached[1] is not dataset.inter_feat:
        cached = (n_users, dataset.inter_feat, bipartite_edge_index(dataset.inter_matrix(form="coo"), n_users))
        dataset._metammf_training_graph = cached
    return cached[2]


def normalized_training_graph(dataset, n_users, n_items, normalization="symmetric"):
    r"""The training graph as a sparse ``(n_users + n_items)^2`` matrix, weighted ``symmetric``
    (``D^{-1/2} A D^{-1/2}``, LightGCN) or ``mean`` (each row averages the node's neighbours)."""
    edge_index, n_nodes = training_graph(dataset, n_users), n_users + n_items
    weight = {"symmetric": symmetric_edge_weight, "mean": mean_edge_weight}[normalization](edge_index, n_nodes)
    return sparse_adjacency(edge_index, weight, n_nodes)


def propagate(x, edge_index, edge_weight=None, n_nodes=None):
    r"""One step of message passing: ``out_dst = sum_{(src, dst)} w_(src,dst) x_src`` (PyG's ``scatter``).

    ``edge_index``: ``(2, E)`` source and target rows; ``edge_weight``: ``(E,)`` or None (all ones).
    Differentiable with respect to ``x`` and ``edge_weight`` (refined or learned graphs)."""
    src, dst = edge_index
    messages = x[src] if edge_weight is None else x[src] * edge_weight.unsqueeze(-1)
    return scatter(messages, dst, dim=0, dim_size=x.shape[0] if n_nodes is None else n_nodes, reduce="sum")


def mean_edge_weight(edge_index, n_nodes):
    r"""Weights ``1 / deg(dst)``: :func:`propagate` then averages over each node's neighbours."""
    return 1.0 / degree(edge_index[1], n_nodes)[edge_index[1]]


def symmetric_edge_weight(edge_index, n_nodes, edge_weight=None):
    r"""``D^{-1/2} A D^{-1/2}``: weight ``a_(src,dst) / sqrt(d_dst d_src)``, ``d`` the weighted in-degree
    (the row sums of ``A`` with rows = targets); PyG's ``gcn_norm`` without self-loops."""
    _, weight = gcn_norm(edge_index, edge_weight, n_nodes, add_self_loops=False)
    return weight


def sparse_adjacency(edge_index, edge_weight, n_nodes):
    r"""The fixed-weight graph as a coalesced sparse COO matrix ``A`` (rows = targets), so that
    ``A @ x`` equals :func:`propagate` ``(x, edge_index, edge_weight)``. No gradient flows into the weights."""
    indices = torch.stack([edge_index[1], edge_index[0]])
    size = (n_nodes, n_nodes)
    return torch.sparse_coo_tensor(indices, edge_weight.detach(), size, check_invariants=False).coalesce()


def light_gcn(x, adjacency, n_layers):
    r"""LightGCN propagation (He et al., SIGIR 2020): the mean of ``x`` and its ``n_layers``
    propagations ``A^l x`` by the (normalised, sparse) ``adjacency``."""
    layers = [x]
    for _ in range(n_layers):
        layers.append(adjacency @ layers[-1])
    return torch.stack(layers).mean(dim=0)


def degree_sensitive_edge_sample(edge_index, n_nodes, keep_ratio):
    r"""FREEDOM's degree-sensitive edge pruning (Zhou & Shen, MM 2023, Sec. 3.2): ``int(E * keep_ratio)``
    of the ``E`` edges of ``edge_index`` (one direction, e.g. user -> item), drawn without replacement
    with probability proportional to ``1 / sqrt(d_src d_dst)``, the degrees counted over both ends of
    the edges; so an edge between popular nodes is the likeliest to be dropped. Returns the kept columns.
    """
    n_keep = int(edge_index.shape[1] * keep_ratio)
    src, dst = edge_index
    deg = degree(src, n_nodes) + degree(dst, n_nodes)
    weight = deg[src].rsqrt() * deg[dst].rsqrt()
    kept = torch.multinomial(weight, n_keep, replacement=False)
    return edge_index[:, kept]


def hypergraph_propagation(item_assignment, user_assignment, item_embeddings, n_layers):
    r"""LGMRec's hypergraph message passing (Guo et al., AAAI 2024, Sec. "Global hypergraph embedding"):
    with ``H_i`` (``n_items x K``) and ``H_u`` (``n_users x K``) the soft memberships in ``K`` hyperedges,
    each layer gathers the items into the hyperedges, ``z = H_i^T e_i``, and spreads them back,
    ``e_i <- H_i z``, ``e_u = H_u z`` (the users from the last layer's ``z``). Returns ``(e_u, e_i)``."""
    items = item_embeddings
    for _ in range(n_layers):
        hyperedges = item_assignment.t() @ items
        items, users = item_assignment @ hyperedges, user_assignment @ hyperedges
    return users, items
