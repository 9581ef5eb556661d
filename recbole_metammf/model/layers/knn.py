r"""The item-item k-nearest-neighbour graph of cosine similarities (LATTICE, FREEDOM, the fusion backbones' ``item_graph_k``)."""

import torch
import torch.nn.functional as F

from recbole_metammf.model.layers.graph import sparse_adjacency, symmetric_edge_weight


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


def normalized_knn_graph(x, k, similarity_weighted=True):
    r"""The :func:`knn_graph` of the rows of ``x`` but its row 0 (RecBole's padding item: no edges), normalised
    ``D^{-1/2} A D^{-1/2}``, as ``(edge_index, weight)``; ``A`` weighted by the cosine similarities (LATTICE's
    ``S_m``; differentiable with respect to ``x``, for its learned graphs) or binary (FREEDOM's). A negative
    similarity weighs 0: an item whose nearest rows point away from it (an outlier) would otherwise get a
    negative degree, whose ``D^{-1/2}`` is NaN (LATTICE's reference does not guard this; its features are
    non-negative)."""
    edge_index, similarity = knn_graph(x[1:], k)
    edge_index = edge_index + 1
    return edge_index, symmetric_edge_weight(edge_index, x.shape[0], similarity.clamp(min=0) if similarity_weighted else None)


@torch.no_grad()
def knn_adjacency(blocks, k, weights=None, similarity_weighted=False):
    r"""The fixed item-item graph ``S = sum_m w_m D^{-1/2} A_m D^{-1/2}`` of the feature ``blocks`` (one
    ``(n_items, d_m)`` tensor per modality, row 0 RecBole's padding item, which gets no edges), as a sparse
    ``(n_items, n_items)`` matrix. ``A_m`` is the :func:`normalized_knn_graph` of block ``m``: binary (FREEDOM's frozen
    graph) or weighted by the cosine similarities (``similarity_weighted``, LATTICE's initial graph ``S_m``);
    ``weights`` default to ``1 / M`` each. Repeated edges of several modalities are summed."""
    weights = [1.0 / len(blocks)] * len(blocks) if weights is None else list(weights)
    indices, values = [], []
    for block, weight in zip(blocks, weights):
        edge_index, edge_weight = normalized_knn_graph(block, k, similarity_weighted)
        indices.append(edge_index)
        values.append(weight * edge_weight)
    return sparse_adjacency(torch.cat(indices, dim=1), torch.cat(values), blocks[0].shape[0])
