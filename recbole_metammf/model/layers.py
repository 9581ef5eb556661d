r"""Reusable layers of the plugin's models.

Equation numbers refer to Liu et al., "Dynamic Multimodal Fusion via Meta-Learning Towards
Micro-Video Recommendation", ACM TOIS 2023.

* :class:`MetaInformationExtractor` — Eq. 7, the item's meta information ``s_i`` from its features.
* :class:`MetaFusionLayer` — Eq. 8/11 (full tensor) and Eq. 15 (CP decomposition): a linear map
  whose weight ``W_i = W + T x_3 s_i`` is generated per item, applied without ever building ``W_i``.
* :class:`MetaFusionTower` — Eq. 12, a stack of meta fusion layers with LeakyReLU between them.
* :class:`MeanAggregationGCN` — Eq. 18, GraphSAGE-style mean aggregation on the user-item graph.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.nn import SAGEConv
from torch_geometric.nn.inits import glorot


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


class MeanAggregationGCN(nn.Module):
    r"""Eq. 18: ``e^{(l)} = LeakyReLU(W_1 e^{(l-1)} + W_2 mean_{j in N(i)} e_j^{(l-1)})``, ``L`` layers.

    torch-geometric's :class:`SAGEConv` with mean aggregation and no bias is exactly this update.
    The edge index (both directions of every training interaction) is given at call time.
    """

    def __init__(self, dim, n_layers, dropout=0.0):
        super().__init__()
        self.convs = nn.ModuleList(SAGEConv(dim, dim, aggr="mean", bias=False) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)
        for conv in self.convs:
            glorot(conv.lin_l.weight)  # Xavier, as the paper; PyG defaults to Kaiming
            glorot(conv.lin_r.weight)

    def forward(self, x, edge_index):
        for conv in self.convs:
            x = self.dropout(F.leaky_relu(conv(x, edge_index)))
        return x


def bipartite_edge_index(interaction_matrix, n_users):
    r"""Edge index of the user-item graph (users ``0..n_users-1``, item ``j`` is node ``n_users + j``),
    both directions, from a scipy COO user x item matrix."""
    users = torch.as_tensor(interaction_matrix.row, dtype=torch.long)
    items = torch.as_tensor(interaction_matrix.col, dtype=torch.long) + n_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])
