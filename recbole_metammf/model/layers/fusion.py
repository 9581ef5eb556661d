r"""Fusion of the item modality features: the meta-learned fusion of MetaMMF (Eq. 7, 8/11, 12, 15) and the
static fusions, projections and feature scalings of the baselines."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class MetaInformationExtractor(nn.Module):
    r"""Eq. 7: ``s_i = W_2 ReLU(W_1 x_i + b_1) + b_2``, the meta information of item ``i``.

    Args:
        in_dim: width of ``x_i``, the concatenated modality features.
        hidden_dim: width of the hidden layer (the authors' code uses ``in_dim``).
        d_s: length of the meta information.
        standardize: each of the ``d_s`` components standardised over the items (batch normalisation
            without affine parameters: the statistics of the items in the forward pass while training,
            running statistics in evaluation and for items added later). Not in the paper. Why: when the
            features of all items are nearly parallel (min-max scaling makes every feature positive), the
            MLP sees mostly their common offset and ``s_i`` hardly varies between items, so every item
            gets about the same ``W_i``; standardised, ``s_i`` spreads by construction. The lost offset
            ``T x_3 mean(s)`` is a static weight, which ``W`` already holds.
    """

    def __init__(self, in_dim, hidden_dim, d_s, standardize=False):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, d_s))
        # eps far below BatchNorm's 1e-5: the spread to restore can be that small (std 0.03 on synthetic min-max data)
        self.standardize = nn.BatchNorm1d(d_s, eps=1e-8, affine=False) if standardize else None

    def forward(self, features):
        s = self.mlp(features)
        return s if self.standardize is None else self.standardize(s)

    def extra_repr(self):
        first, last = self.mlp[0], self.mlp[-1]
        return (
            f"in_dim={first.in_features}, hidden_dim={first.out_features}, d_s={last.out_features}, "
            f"standardize={self.standardize is not None}"
        )


class MetaFusionLayer(nn.Module):
    r"""One meta-learned fusion layer: ``h_i' = W_i h_i`` with ``W_i = W + T x_3 s_i`` (no bias, Eq. 11).

    ``T`` is the full ``out x in x d_s`` tensor when ``cp_rank == 0`` (Eq. 8/11), otherwise its CP
    decomposition ``sum_r a_r o b_r o c_r`` with factors ``A (out x R)``, ``B (in x R)``,
    ``C (d_s x R)`` (Eq. 15). The per-item weight is applied, never built:

    * CP:   ``h W_i^T = h W^T + ((h B) * (s C)) A^T``, ``h B`` and ``h W^T`` as one GEMM against ``[B ; W^T]``
    * full: ``h W_i^T = h W^T + sum_z s_z (h T_z^T)``, one GEMM against ``[T ; W^T]``, ``T`` laid out as ``(in, d_s * out)``

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
            if self.weight is None:
                return ((h @ self.factor_in) * (s @ self.factor_meta)) @ self.factor_out.t()
            # h B and h W^T in one GEMM: the wide input h (the features, at the first layer) is read once
            both = h @ torch.cat([self.factor_in, self.weight.t()], dim=1)
            return (both[:, : self.cp_rank] * (s @ self.factor_meta)) @ self.factor_out.t() + both[:, self.cp_rank :]
        tensor = self.tensor.view(self.in_dim, -1)
        if self.weight is None:
            return torch.bmm(s.unsqueeze(1), (h @ tensor).view(-1, self.d_s, self.out_dim)).squeeze(1)
        # h T and h W^T in one GEMM, as the CP path: h is read once
        both = h @ torch.cat([tensor, self.weight.t()], dim=1)
        projected = both[:, : self.d_s * self.out_dim].view(-1, self.d_s, self.out_dim)
        return torch.bmm(s.unsqueeze(1), projected).squeeze(1) + both[:, self.d_s * self.out_dim :]

    def extra_repr(self):
        rank = f"cp_rank={self.cp_rank}" + (" (full tensor)" if self.cp_rank == 0 else "")
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, d_s={self.d_s}, {rank}, static_weight={self.weight is not None}"

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

    def extra_repr(self):
        first = self.layers[0]
        dims = [first.in_dim] + [layer.out_dim for layer in self.layers]
        return f"dims={dims}, d_s={first.d_s}, cp_rank={first.cp_rank}, static_weight={first.weight is not None}"


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
        self.mode = mode

    def forward(self, features):
        branches = [] if self.early is None else [self.early(features)]
        if self.late is not None:
            blocks = split_modalities(features, self.modality_dims)
            branches += [tower(block) for tower, block in zip(self.late, blocks)]
        return branches

    def extra_repr(self):
        return f"mode={self.mode}, modality_dims={self.modality_dims}, branch_weights={self.branch_weights}"


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

    def extra_repr(self):
        return f"modality_dims={self.modality_dims}, concatenate={self.concatenate}"


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

    def extra_repr(self):
        n, dim = self.delta.shape
        return f"n={n}, dim={dim}"
