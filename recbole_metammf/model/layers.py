r"""Reusable layers of the plugin's models.

Equation numbers refer to Liu et al., "Dynamic Multimodal Fusion via Meta-Learning Towards
Micro-Video Recommendation", ACM TOIS 2023.

* :class:`MetaInformationExtractor` — Eq. 7, the item's meta information ``s_i`` from its features.
* :class:`MetaFusionLayer` — Eq. 8/11 (full tensor) and Eq. 15 (CP decomposition): a linear map
  whose weight ``W_i = W + T x_3 s_i`` is generated per item, applied without ever building ``W_i``.
* :class:`MetaFusionTower` — Eq. 12, a stack of meta fusion layers with LeakyReLU between them.
* :class:`MeanAggregationGCN` — Eq. 18, GraphSAGE-style mean aggregation on the user-item graph.

Shared by the baselines (``docs/BASELINES.md``):

* :class:`StaticFusionTower`, :class:`StaticFusion` — the static early / late / hybrid fusion that
  replaces the meta-learned fusion in the paper's Table 3 baselines (same widths, no biases).
* :class:`ModalityProjection` — per-modality (or concatenated) linear projection of the item features.
* :func:`propagate`, :func:`mean_edge_weight`, :func:`symmetric_edge_weight` — weighted message
  passing (``out_dst += w * x_src``) with differentiable edge weights; :func:`sparse_adjacency` —
  the same as a sparse matrix for graphs whose weights are fixed (3-5x faster on CPU);
  :func:`light_gcn` — LightGCN propagation.
* :func:`knn_graph` — the item-item k-nearest-neighbour graph of cosine similarities (LATTICE, FREEDOM).
* :class:`GraphConvolutionStack` — ``L`` torch-geometric convolutions with LeakyReLU and dropout
  between them; :class:`MeanAggregationGCN` (SAGEConv, MetaMMF_GCN and GraphSAGE) and
  :class:`AttentionGCN` (GATConv, GAT) are two of them.
* :func:`degree_sensitive_edge_sample` — FREEDOM's degree-sensitive pruning of the user-item graph.
* :func:`cosine_alignment_loss` — BM3's stop-gradient cosine alignment of two views.
* :class:`FeatureOffset` — fine-tuning of fixed input features (BM3, FREEDOM) as a learned offset.
* :func:`info_nce_loss` — InfoNCE of cosine similarities, with an optional intra-view term (MICRO, LGMRec).
* :func:`hypergraph_propagation` — LGMRec's item -> hyperedge -> user/item message passing.
* :func:`ultragcn_constraint_weights`, :func:`ultragcn_constraint_loss` — UltraGCN's constraint weights and
  weighted BCE (InvRL's backbone); :func:`irm_gradient_penalty` and :class:`StochasticGate` — InvRL's
  invariance penalty across environments and its gates on feature dimensions.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.nn import GATConv, SAGEConv
from torch_geometric.nn.inits import glorot
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import coalesce, degree, scatter, to_torch_csr_tensor


class MetaInformationExtractor(nn.Module):
    r"""Eq. 7: ``s_i = W_2 ReLU(W_1 x_i + b_1) + b_2``, the meta information of item ``i``.

    Args:
        in_dim: width of ``x_i``, the concatenated modality features.
        hidden_dim: width of the hidden layer (the authors' code uses ``in_dim``).
        d_s: length of the meta information.
    """

    def __init__(self, in_dim, hidden_dim, d_s):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, d_s))

    def forward(self, features):
        return self.mlp(features)


class MetaFusionLayer(nn.Module):
    r"""One meta-learned fusion layer: ``h_i' = W_i h_i`` with ``W_i = W + T x_3 s_i`` (no bias, Eq. 11).

    ``T`` is the full ``out x in x d_s`` tensor when ``cp_rank == 0`` (Eq. 8/11), otherwise its CP
    decomposition ``sum_r a_r o b_r o c_r`` with factors ``A (out x R)``, ``B (in x R)``,
    ``C (d_s x R)`` (Eq. 15). The per-item weight is applied, never built:

    * CP:   ``h W_i^T = h W^T + ((h B) * (s C)) A^T``
    * full: ``h W_i^T = h W^T + sum_z s_z (h T_z^T)``, one GEMM against ``T`` laid out as ``(in, d_s * out)``

    ``static_weight=False`` drops ``W`` (the Table 5 ablation).
    """

    def __init__(self, in_dim, out_dim, d_s, cp_rank=16, static_weight=True):
        super().__init__()
        self.in_dim, self.out_dim, self.d_s, self.cp_rank = in_dim, out_dim, d_s, cp_rank
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim)) if static_weight else None
        if cp_rank > 0:
            self.factor_out = nn.Parameter(torch.empty(out_dim, cp_rank))  # A
            self.factor_in = nn.Parameter(torch.empty(in_dim, cp_rank))  # B
            self.factor_meta = nn.Parameter(torch.empty(d_s, cp_rank))  # C
        else:
            # stored as (in, d_s, out) so that h @ tensor.view(in, -1) is a single GEMM
            self.tensor = nn.Parameter(torch.empty(in_dim, d_s, out_dim))
        self.reset_parameters()

    def reset_parameters(self):
        for parameter in self.parameters():
            nn.init.xavier_uniform_(parameter)

    def forward(self, h, s):
        r"""``h``: ``(n, in_dim)`` inputs, ``s``: ``(n, d_s)`` meta information of the same items."""
        if self.cp_rank > 0:
            out = ((h @ self.factor_in) * (s @ self.factor_meta)) @ self.factor_out.t()
        else:
            projected = (h @ self.tensor.view(self.in_dim, -1)).view(-1, self.d_s, self.out_dim)
            out = torch.bmm(s.unsqueeze(1), projected).squeeze(1)
        if self.weight is not None:
            out = out + h @ self.weight.t()
        return out

    def item_weights(self, s):
        r"""The explicit per-item weights ``W_i`` of shape ``(n, out, in)``: for tests and benchmarks only."""
        if self.cp_rank > 0:
            tensor = torch.einsum("or,ir,zr->oiz", self.factor_out, self.factor_in, self.factor_meta)
        else:
            tensor = self.tensor.permute(2, 0, 1)
        weights = torch.einsum("oiz,nz->noi", tensor, s)
        return weights if self.weight is None else weights + self.weight


class MetaFusionTower(nn.Module):
    r"""Eq. 12: ``h^{n} = LeakyReLU(W_i^{n} h^{n-1})`` for every layer but the last, no biases.

    Args:
        in_dim: width of the concatenated modality features.
        fusion_layers: output width of each layer; the last is ``d_m``.
        d_s, cp_rank, static_weight: see :class:`MetaFusionLayer`.
        dropout: dropout on the hidden activations between layers.
    """

    def __init__(self, in_dim, fusion_layers, d_s, cp_rank=16, static_weight=True, dropout=0.0):
        super().__init__()
        widths = [in_dim] + list(fusion_layers)
        self.layers = nn.ModuleList(
            MetaFusionLayer(widths[n], widths[n + 1], d_s, cp_rank, static_weight) for n in range(len(fusion_layers))
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, features, meta_information):
        h = features
        for n, layer in enumerate(self.layers):
            if n > 0:
                h = self.dropout(F.leaky_relu(h))
            h = layer(h, meta_information)
        return h


class GraphConvolutionStack(nn.Module):
    r"""``L`` graph convolution layers: ``e^{(l)} = dropout(LeakyReLU(conv_l(e^{(l-1)}, graph)))``.

    ``last_activation=False`` leaves the last layer linear (no LeakyReLU there). ``layer_combination``:
    ``last`` = ``e^{(L)}``, ``mean`` = the mean of ``e^{(0)} .. e^{(L)}`` (LightGCN's combination).
    The convolutions (torch-geometric layers mapping ``dim`` to ``dim``) are the subclass's; the graph
    is given at call time in whatever form they take (an edge index, a sparse matrix).
    """

    LAYER_COMBINATIONS = ("last", "mean")

    def __init__(self, convs, dropout=0.0, last_activation=True, layer_combination="last"):
        super().__init__()
        if layer_combination not in self.LAYER_COMBINATIONS:
            raise ValueError(f"layer_combination: got {layer_combination!r}; expected one of {self.LAYER_COMBINATIONS}")
        self.layer_combination = layer_combination
        self.convs = nn.ModuleList(convs)
        self.dropout = nn.Dropout(dropout)
        self.last_activation = last_activation

    def forward(self, x, graph):
        layers = [x]
        for n, conv in enumerate(self.convs):
            x = conv(x, graph)
            if self.last_activation or n < len(self.convs) - 1:
                x = F.leaky_relu(x)
            x = self.dropout(x)
            layers.append(x)
        return x if self.layer_combination == "last" else torch.stack(layers).mean(dim=0)

    def extra_repr(self):
        return f"n_layers={len(self.convs)}, last_activation={self.last_activation}, layer_combination={self.layer_combination}"


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

    def __init__(self, dim, n_layers, dropout=0.0, last_activation=True, layer_combination="last"):
        convs = [SAGEConv(dim, dim, aggr="mean", bias=False) for _ in range(n_layers)]
        for conv in convs:
            glorot(conv.lin_l.weight)  # Xavier, as the paper; PyG defaults to Kaiming
            glorot(conv.lin_r.weight)
        super().__init__(convs, dropout, last_activation, layer_combination)


class AttentionGCN(GraphConvolutionStack):
    r"""Graph attention layers (Velickovic et al., ICLR 2018, Eq. 1-4; torch-geometric's :class:`GATConv`):
    ``e^{(l)}_i = sum_{j in N(i) + i} alpha_ij W e^{(l-1)}_j + b`` with
    ``alpha_ij = softmax_j LeakyReLU_0.2(a_src . W e_j + a_dst . W e_i)`` over ``i``'s neighbours and
    ``i`` itself (a self-loop), then LeakyReLU and dropout between layers as :class:`GraphConvolutionStack`.
    ``heads`` attention heads are averaged (``concat=False``), so every layer stays ``dim`` wide.
    The graph is an edge index (``edge_index[1]`` = the target).
    """

    def __init__(self, dim, n_layers, heads=1, attention_dropout=0.0, dropout=0.0, last_activation=True,
                 layer_combination="last"):
        convs = [GATConv(dim, dim, heads=heads, concat=False, dropout=attention_dropout) for _ in range(n_layers)]
        super().__init__(convs, dropout, last_activation, layer_combination)


def mean_aggregation_adjacency(edge_index, n_nodes):
    r"""The graph of ``edge_index`` as the binary sparse CSR matrix ``A^T`` (rows = targets) that
    :class:`SAGEConv` reduces with ``mean`` (PyG's ``spmm``); repeated edges count once, as N(i) is a set."""
    edge_index = coalesce(edge_index, num_nodes=n_nodes)
    with torch.sparse.check_sparse_tensor_invariants(enable=False):  # built valid; checks cost a pass over the edges
        return to_torch_csr_tensor(edge_index.flip(0), size=(n_nodes, n_nodes))


def bipartite_edge_index(interaction_matrix, n_users):
    r"""Edge index of the user-item graph (users ``0..n_users-1``, item ``j`` is node ``n_users + j``),
    both directions, from a scipy COO user x item matrix."""
    users = torch.as_tensor(interaction_matrix.row, dtype=torch.long)
    items = torch.as_tensor(interaction_matrix.col, dtype=torch.long) + n_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


def training_graph(dataset, n_users):
    r"""Edge index of the user-item graph of the training interactions (RecBole hands a model the
    training dataset), both directions: what every graph model of the package propagates on."""
    return bipartite_edge_index(dataset.inter_matrix(form="coo"), n_users)


def normalized_training_graph(dataset, n_users, n_items, normalization="symmetric"):
    r"""The training graph as a sparse ``(n_users + n_items)^2`` matrix, weighted ``symmetric``
    (``D^{-1/2} A D^{-1/2}``, LightGCN) or ``mean`` (each row averages the node's neighbours)."""
    edge_index, n_nodes = training_graph(dataset, n_users), n_users + n_items
    weight = {"symmetric": symmetric_edge_weight, "mean": mean_edge_weight}[normalization](edge_index, n_nodes)
    return sparse_adjacency(edge_index, weight, n_nodes)


def scale_modality(block, scaling):
    r"""One modality's ``(n_items, dim)`` features scaled by ``scaling``: ``standard`` = each dimension to
    zero mean and unit variance over the items, then divided by ``sqrt(dim)`` so that every modality
    has unit mean squared norm whatever its width; ``l2`` = each item's vector to unit norm; ``none``
    and ``minmax`` (done by RecBole when the data loads) leave it. Row 0 (padding) stays zero."""
    if scaling in ("none", "minmax"):
        return block
    rows = block[1:]
    if scaling == "standard":
        rows = (rows - rows.mean(dim=0)) / rows.std(dim=0).clamp_min(1e-12) / rows.shape[1] ** 0.5
    elif scaling == "l2":
        rows = F.normalize(rows, dim=1)
    else:
        raise ValueError(f"scaling: got {scaling!r}; expected minmax, standard, l2 or none")
    return torch.cat([torch.zeros_like(block[:1]), rows])


def split_modalities(features, modality_dims):
    r"""The concatenated features ``(n, sum(modality_dims))`` as one ``(n, d_m)`` block per modality."""
    return torch.split(features, list(modality_dims), dim=-1)


class StaticFusionTower(nn.Module):
    r"""The static counterpart of :class:`MetaFusionTower`: ``h^{n} = LeakyReLU(W^{n} h^{n-1})`` between
    layers, no biases, one ``W^{n}`` shared by every item (``W_i = W``, i.e. ``T = 0`` in Eq. 11).

    Args:
        in_dim: width of the input features.
        fusion_layers: output width of each layer.
        dropout: dropout on the hidden activations between layers.
    """

    def __init__(self, in_dim, fusion_layers, dropout=0.0):
        super().__init__()
        widths = [in_dim] + list(fusion_layers)
        self.layers = nn.ModuleList(nn.Linear(widths[n], widths[n + 1], bias=False) for n in range(len(fusion_layers)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, features):
        h = features
        for n, layer in enumerate(self.layers):
            if n > 0:
                h = self.dropout(F.leaky_relu(h))
            h = layer(h)
        return h


class StaticFusion(nn.Module):
    r"""Static multimodal fusion of the concatenated item features, as one or more *branches*.

    * ``early`` (feature level): one :class:`StaticFusionTower` over the concatenated features; one branch.
    * ``late`` (decision level): one tower per modality; one branch per modality, each scored on its
      own and the scores averaged (``branch_weights = 1/M``).
    * ``hybrid``: both; the early score and the mean of the late scores averaged
      (``branch_weights = [1/2] + [1/(2M)] * M``).

    ``forward`` returns the list of branch outputs, each ``(n, fusion_layers[-1])``; how a branch is
    scored (inner product, graph convolution first) is the backbone's business.
    """

    MODES = ("early", "late", "hybrid")

    def __init__(self, modality_dims, fusion_layers, mode, dropout=0.0):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode: got {mode!r}; expected one of {self.MODES}")
        self.modality_dims = list(modality_dims)
        n_modalities = len(self.modality_dims)
        self.early = StaticFusionTower(sum(self.modality_dims), fusion_layers, dropout) if mode != "late" else None
        self.late = (
            nn.ModuleList(StaticFusionTower(dim, fusion_layers, dropout) for dim in self.modality_dims)
            if mode != "early"
            else None
        )
        if mode == "early":
            self.branch_weights = [1.0]
        elif mode == "late":
            self.branch_weights = [1.0 / n_modalities] * n_modalities
        else:
            self.branch_weights = [0.5] + [0.5 / n_modalities] * n_modalities
        self.branch_dims = [fusion_layers[-1]] * len(self.branch_weights)

    def forward(self, features):
        branches = [] if self.early is None else [self.early(features)]
        if self.late is not None:
            blocks = split_modalities(features, self.modality_dims)
            branches += [tower(block) for tower, block in zip(self.late, blocks)]
        return branches


class ModalityProjection(nn.Module):
    r"""Linear projections of the item features: ``W_m x_i^m (+ b_m)`` for each modality ``m``, or one
    ``E x_i`` of the concatenation when ``concatenate`` (VBPR's ``E``). Returns a list of ``(n, out_dim)``."""

    def __init__(self, modality_dims, out_dim, bias=True, concatenate=False):
        super().__init__()
        self.modality_dims = list(modality_dims)
        self.concatenate = concatenate
        in_dims = [sum(self.modality_dims)] if concatenate else self.modality_dims
        self.projections = nn.ModuleList(nn.Linear(dim, out_dim, bias=bias) for dim in in_dims)

    def forward(self, features):
        blocks = [features] if self.concatenate else split_modalities(features, self.modality_dims)
        return [projection(block) for projection, block in zip(self.projections, blocks)]


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


@torch.no_grad()
def _knn_indices(normalized, k, chunk_size):
    rows = []
    for start in range(0, normalized.shape[0], chunk_size):
        similarity = normalized[start : start + chunk_size] @ normalized.t()
        rows.append(similarity.topk(k, dim=1).indices)
    return torch.cat(rows)


def knn_graph(x, k, chunk_size=2048):
    r"""The k-nearest-neighbour graph of the rows of ``x`` by cosine similarity (each row's own ``k``
    most similar rows, itself included), as ``(edge_index, similarity)`` with ``edge_index[1] = i``
    (the row) and ``edge_index[0] = j`` (its neighbour), so that :func:`propagate` sums over a row's
    neighbours. The ``n x n`` similarity is never held: rows are ranked ``chunk_size`` at a time, and
    the kept similarities are recomputed from ``x``, so they are differentiable with respect to ``x``.
    """
    k = min(k, x.shape[0])
    normalized = F.normalize(x, dim=1)
    neighbours = _knn_indices(normalized.detach(), k, chunk_size)  # (n, k)
    rows = torch.arange(x.shape[0], device=x.device).repeat_interleave(k)
    cols = neighbours.reshape(-1)
    similarity = (normalized[rows] * normalized[cols]).sum(-1)
    return torch.stack([cols, rows]), similarity


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


def cosine_alignment_loss(online, target):
    r"""BM3's alignment of an online view to a target view (Zhou et al., WWW 2023, Eq. 6-7):
    ``1 - mean_b cos(online_b, target_b)``, no gradient into ``target`` (a stop-gradient, as BYOL's)."""
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class FeatureOffset(nn.Module):
    r"""Fine-tuned input features: ``x + delta`` with ``delta`` a zero-initialised ``(n, dim)`` parameter.

    The same training as making the features themselves a parameter (``nn.Embedding.from_pretrained(x,
    freeze=False)``, as BM3's and FREEDOM's code do: the gradient in ``delta`` is the gradient in ``x``),
    while the features stay a non-persistent buffer of the model and only ``delta`` is saved."""

    def __init__(self, n, dim):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(n, dim))

    def forward(self, features, rows=None):
        return features + (self.delta if rows is None else self.delta[rows])


def ultragcn_constraint_weights(interaction_matrix, epsilon=1e-10):
    r"""UltraGCN's constraint weights (Mao et al., CIKM 2021, Eq. 11-12) from a scipy user x item matrix:
    ``beta_u = sqrt(d_u + 1) / d_u`` and ``beta_i = 1 / sqrt(d_i + 1)``, so that ``beta_u beta_i =
    (1 / d_u) sqrt((d_u + 1) / (d_i + 1))``; a user of degree 0 counts as degree ``epsilon`` (as the
    reference). Returns two float tensors, ``(n_users,)`` and ``(n_items,)``."""
    matrix = interaction_matrix.tocsr()
    matrix.data[:] = 1.0  # a repeated interaction counts once
    user_degree = torch.as_tensor(matrix.sum(axis=1), dtype=torch.float64).view(-1).clamp_min(epsilon)
    item_degree = torch.as_tensor(matrix.sum(axis=0), dtype=torch.float64).view(-1)
    return ((user_degree + 1).sqrt() / user_degree).float(), (item_degree + 1).rsqrt().float()


def ultragcn_constraint_loss(pos_scores, neg_scores, pos_beta, neg_beta, weights=(1.0, 1.0, 1.0, 1.0)):
    r"""UltraGCN's weighted binary cross-entropy over positives and sampled negatives (the constraint
    loss ``L_C``, as InvRL's UltraGCN code writes it): with ``(w1, w2, w3, w4) = weights``,

        L = sum_b (w1 + w2 beta_b) BCE(pos_b, 1) + sum_b mean_n (w3 + w4 beta_bn) BCE(neg_bn, 0)

    ``pos_scores, pos_beta``: ``(B,)``; ``neg_scores, neg_beta``: ``(B, N)`` (``beta = beta_u beta_i``)."""
    w1, w2, w3, w4 = weights
    positive = F.binary_cross_entropy_with_logits(
        pos_scores, torch.ones_like(pos_scores), weight=w1 + w2 * pos_beta, reduction="sum"
    )
    negative = F.binary_cross_entropy_with_logits(
        neg_scores, torch.zeros_like(neg_scores), weight=w3 + w4 * neg_beta, reduction="none"
    )
    return positive + negative.mean(dim=-1).sum()


def irm_gradient_penalty(gradients, weight=None):
    r"""InvRL's invariance penalty on the gradients of one parameter in each environment (Du et al.,
    MM 2022; the reference's ``loss_p``): ``V = sum_e (g_e - mean_e g_e)^2`` elementwise, then
    ``sum (V * weight)^2`` with ``weight`` broadcast over ``V`` (the gate ``mu + 1/2`` on the input
    columns; all ones when None). Zero exactly when every environment has the same gradient."""
    stacked = torch.stack(list(gradients))
    variance = (stacked - stacked.mean(dim=0)).pow(2).sum(dim=0)
    if weight is not None:
        variance = variance * weight
    return variance.pow(2).sum()


class StochasticGate(nn.Module):
    r"""Stochastic gates on the input dimensions (Yamada et al., ICML 2020, as InvRL's
    ``FeatureSelector``): in training ``x * clamp(mu + sigma eps + 1/2, 0, 1)`` with fresh
    ``eps ~ N(0, 1)`` at every call; in evaluation the noise is off and the gate is :meth:`mask`.

    * :meth:`mask` — ``clamp(mu + 1/2, 0, 1)``, the gate without noise (what InvRL keeps), in ``[0, 1]``;
    * :meth:`open_probability` — ``P(mu + sigma eps + 1/2 > 0) = Phi((mu + 1/2) / sigma)``, the
      expected number of open gates per dimension (STG's L0 term; InvRL logs it, does not train on it);
    * :meth:`regularizer` — ``||mu||^2``, the term InvRL trains with (``lam * sum mu^2``).
    ``mu`` starts at 0 (every gate half open), as the reference."""

    def __init__(self, dim, sigma):
        super().__init__()
        self.sigma = sigma
        self.mu = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        z = self.mu + 0.5
        if self.training:
            z = z + self.sigma * torch.randn_like(self.mu)
        return x * z.clamp(0.0, 1.0)

    def mask(self):
        return (self.mu + 0.5).clamp(0.0, 1.0)

    def open_probability(self):
        return 0.5 * (1 + torch.erf((self.mu + 0.5) / self.sigma / 2**0.5))

    def regularizer(self):
        return self.mu.pow(2).sum()


def info_nce_loss(anchors, positives, candidates, temperature, anchor_candidates=None, anchor_rows=None):
    r"""InfoNCE with cosine similarity ``s``, one loss per anchor (no reduction):

        l_b = -log  exp(s(a_b, p_b) / tau) / ( sum_j exp(s(a_b, c_j) / tau) + sum_{j != r_b} exp(s(a_b, d_j) / tau) )

    ``anchors``, ``positives``: ``(B, d)``, row ``b`` a positive pair; ``candidates``: ``(N, d)``, the
    other view's rows the anchor is contrasted with (the positive among them, as LGMRec's and MICRO's
    code). ``anchor_candidates`` (optional, ``(N', d)``) adds the anchor's own view as negatives
    (GRACE's intra-view term, MICRO), leaving out row ``anchor_rows[b]``, the anchor itself.
    Computed as a log-sum-exp: no ``exp`` overflows at small ``tau``. Costs ``O(B N)``, never ``N x N``."""
    anchors, positives = F.normalize(anchors, dim=-1), F.normalize(positives, dim=-1)
    log_denominator = torch.logsumexp(anchors @ F.normalize(candidates, dim=-1).t() / temperature, dim=1)
    if anchor_candidates is not None:
        intra = anchors @ F.normalize(anchor_candidates, dim=-1).t() / temperature
        rows = torch.arange(len(anchors), device=anchors.device)
        intra.index_put_((rows, anchor_rows), torch.tensor(float("-inf"), device=intra.device))  # not the anchor itself
        log_denominator = torch.logaddexp(log_denominator, torch.logsumexp(intra, dim=1))
    return log_denominator - (anchors * positives).sum(-1) / temperature


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
