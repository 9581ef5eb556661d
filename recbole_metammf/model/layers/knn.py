r"""The item-item k-nearest-neighbour graph of cosine similarities (LATTICE, FREEDOM)."""

import torch
import torch.nn.functional as F


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
