r"""MICRO: LATTICE's latent item graphs per modality, fused per item by attention, with a contrastive loss.

Zhang et al., "Latent Structure Mining with Contrastive Modality Fusion for Multimedia
Recommendation", IEEE TKDE 2022 (arXiv 2111.00678), Sec. 3; reference code: github.com/CRIPAC-DIG/MICRO
``codes/Models.py`` and ``codes/main.py``, settings from ``codes/utility/parser.py``. MICRO is the
authors' extension of LATTICE, and is written here as a subclass of the plugin's
:class:`~recbole_metammf.model.general_recommender.lattice.LATTICE`, whose graph code it shares.

* Modality-aware graphs, as LATTICE: per modality ``m`` the kNN graph (``knn_k``, cosine values kept,
  ``D^{-1/2} S D^{-1/2}``) of the raw features, ``S_m`` (fixed), and of the projected features
  ``W_m x^m + b_m``, ``A_m`` (learned: rebuilt with gradients at the first batch of every epoch, then
  used detached); mixed ``A~_m = lambda_coeff S_m + (1 - lambda_coeff) A_m``.
* One item view per modality, from the item ID embeddings: ``h_m = A~_m^{L} e_i`` (``n_item_layers`` = L).
  Unlike LATTICE, the modalities' graphs are not summed into one.
* Contrastive modality fusion, per item: ``alpha_{i,m} = softmax_m q(h_{i,m})`` with the query
  ``q(h) = w^T tanh(W h + b)``; the fused view ``h_i = sum_m alpha_{i,m} h_{i,m}``.
* Item representation ``e_i^CF + h_i / ||h_i||`` with ``e^CF`` from LightGCN (``n_layers``) on the
  training graph; score ``e_u . e_i``.
* Loss: ``BPR + reg_weight * (||e_u||^2 + ||e_i+||^2 + ||e_i-||^2) / (2 B) + cl_weight * sum_m mean_i l_m(i)``,
  the batch's final embeddings regularised as the reference's ``bpr_loss``, and ``l_m`` GRACE's InfoNCE
  between the modality view and the fused view (:func:`grace_info_nce`, the values of
  :func:`~recbole_metammf.model.layers.info_nce_loss` computed by row blocks in place):

      l_m(i) = -log exp(s(h_{i,m}, h_i) / tau) / ( sum_j exp(s(h_{i,m}, h_j) / tau) + sum_{j != i} exp(s(h_{i,m}, h_{j,m}) / tau) )

  with ``s`` the cosine similarity and ``tau`` = ``temperature``.

Generalised from the reference's image and text to any ``modalities``: one graph pair, view, attention
score and contrastive term per modality (with one modality the attention is 1 and the fused view is the
modality's own).

Differs from the reference, and why:

* the anchors of the contrastive loss are the batch's items (positives and negatives, each once), not
  every item at every batch; the negatives are all items, as the reference. The per-anchor loss is the
  reference's; its mean is taken over the batch's items, which costs O(batch x n_items) instead of
  O(n_items^2) per step (Kwai's 86k items make the latter 7e9 similarities a batch); on tiktok this
  InfoNCE, 2 x 2 products of ~3,500 anchors by 6,709 items a batch, is most of an epoch's time, which is
  why it runs by blocks (:class:`_BlockLogSumExp`) rather than through autograd's logsumexp;
* LightGCN normalises the training graph ``D^{-1/2} A D^{-1/2}`` (LightGCN's definition and the
  plugin's LATTICE), where the reference's data loader gives ``D^{-1} (A + I)``; so a comparison with
  LATTICE measures MICRO's fusion, not the normalisation;
* the features are not fine-tuned (the reference's ``nn.Embedding.from_pretrained(..., freeze=False)``
  reaches them only through the learned graphs' weights at one batch an epoch), as the plugin's LATTICE;
* evaluation uses the learned graphs of the last training epoch (saved with the checkpoint) rather than
  rebuilding them from the current projections at every test, as LATTICE here;
* RecBole's padding item 0 has no item-item edges, is never an anchor, and is left out of the negatives;
* the training loop, early stopping (10 epochs without a better validation NDCG@20, the reference: 10 on
  recall@20), the learning rate schedule (none; the reference decays it by 0.96 every 50 epochs) and the
  evaluation (RecBole's full ranking) are the plugin's.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.loss import EmbLoss

from recbole_metammf.model.general_recommender.lattice import LATTICE
from recbole_metammf.model.layers import propagate
from recbole_metammf.utils import require_number

_BLOCK_ELEMENTS = 1 << 20  # similarities per row block of the fused InfoNCE (4 MiB): each block stays in cache


class _BlockLogSumExp(torch.autograd.Function):
    r"""``log sum_{j != excluded_b} exp(a_b . k_j)`` per row ``b`` of ``a`` (``(B, d)``) against ``k``
    (``(N, d)``), by row blocks, each in place (similarities, then their softmax ``p_b``, kept for the
    backward: ``d a_b = sum_j p_bj k_j``, ``d k_j = sum_b p_bj a_b``); autograd's logsumexp instead keeps
    several ``B x N`` temporaries and passes over them a dozen times."""

    @staticmethod
    def forward(ctx, a, k, excluded):
        rows = max(1, _BLOCK_ELEMENTS // max(1, k.shape[0]))
        out = torch.empty(a.shape[0], dtype=a.dtype, device=a.device)
        softmax = torch.empty(a.shape[0], k.shape[0], dtype=a.dtype, device=a.device)
        for start in range(0, a.shape[0], rows):
            block = softmax[start : start + rows]
            torch.mm(a[start : start + rows], k.t(), out=block)
            block[torch.arange(len(block), device=a.device), excluded[start : start + rows]] = float("-inf")
            top = block.amax(dim=1, keepdim=True)
            total = block.sub_(top).exp_().sum(dim=1, keepdim=True)
            block.div_(total)
            out[start : start + rows] = total.log_().add_(top).squeeze(1)
        ctx.save_for_backward(a, k, softmax)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, k, softmax = ctx.saved_tensors
        rows = max(1, _BLOCK_ELEMENTS // max(1, k.shape[0]))
        grad_a, grad_k = torch.empty_like(a), torch.zeros_like(k)
        for start in range(0, a.shape[0], rows):
            stop = start + rows
            weight = softmax[start:stop] * grad[start:stop, None]  # p_bj * grad_b
            torch.mm(weight, k, out=grad_a[start:stop])
            grad_k.addmm_(weight.t(), a[start:stop])
        return grad_a, grad_k, None


def grace_info_nce(anchors, positives, candidates, temperature, anchor_candidates, anchor_rows):
    r""":func:`recbole_metammf.model.layers.info_nce_loss` with the intra-view term (GRACE), one loss
    per anchor, in one pass over ``[candidates; anchor_candidates]`` by row blocks: the same values up to
    float rounding, with one ``B x N`` matrix (the softmax) instead of autograd's several temporaries."""
    anchors = F.normalize(anchors, dim=-1) / temperature
    keys = torch.cat([F.normalize(candidates, dim=-1), F.normalize(anchor_candidates, dim=-1)])
    log_denominator = _BlockLogSumExp.apply(anchors, keys, anchor_rows + len(candidates))
    return log_denominator - (anchors * F.normalize(positives, dim=-1)).sum(-1)


class MICRO(LATTICE):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.cl_weight = config["cl_weight"]
        self.temperature = config["temperature"]
        self.modal_weight = None  # LATTICE's global modality weights: MICRO weighs the modalities per item
        d = self.embedding_size
        self.query = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))  # PyTorch's init, as the reference
        self.emb_loss = EmbLoss()
        self._views = None  # the modality views of the last forward pass, for the contrastive loss

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_number(config, "cl_weight", lambda v: v >= 0, "a number >= 0")
        require_number(config, "temperature", lambda v: v > 0, "a number > 0")

    def modality_views(self, learned):
        r"""``h_m = (lambda S_m + (1 - lambda) A_m)^L e_i`` of every modality, a list of ``(n_items, d)``."""
        views = []
        for m, (learned_index, learned_weight) in enumerate(learned):
            h = self.item_embedding.weight
            for _ in range(self.n_item_layers):
                initial = propagate(h, self.initial_edge_index[m], self.initial_edge_weight[m])
                refined = propagate(h, learned_index, learned_weight)
                h = self.lambda_coeff * initial + (1 - self.lambda_coeff) * refined
            views.append(h)
        return views

    def modality_attention(self, views):
        r"""``alpha_{i,m} = softmax_m q(h_{i,m})``, ``(n_items, n_modalities)``; each row sums to one."""
        return torch.softmax(torch.cat([self.query(h) for h in views], dim=1), dim=1)

    def item_graph_convolution(self, learned):
        r"""The fused view ``h_i = sum_m alpha_{i,m} h_{i,m}`` (LATTICE's forward adds ``h_i / ||h_i||`` to LightGCN's items)."""
        views = self.modality_views(learned)
        alpha = self.modality_attention(views)
        fused = sum(alpha[:, m : m + 1] * h for m, h in enumerate(views))
        self._views = (views, fused)
        return fused

    def contrastive_loss(self, items):
        r"""``sum_m mean_{i in items} l_m(i)``, the modality views against the fused view of the last forward pass."""
        views, fused = self._views
        self._views = None  # not kept (with its autograd graph) until the next batch
        loss = 0
        for h in views:
            per_item = grace_info_nce(h[items], fused[items], fused[1:], self.temperature, h[1:], items - 1)
            loss = loss + per_item.mean()
        return loss

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        pos_items, neg_items = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        user_all, item_all = self.forward()
        user_e, pos_e, neg_e = user_all[users], item_all[pos_items], item_all[neg_items]
        bpr = self.bpr_loss(user_e, pos_e, neg_e)
        reg = self.emb_loss(user_e, pos_e, neg_e, require_pow=True).squeeze()
        contrastive = self.contrastive_loss(torch.unique(torch.cat([pos_items, neg_items])))
        return bpr + self.reg_weight * reg + self.cl_weight * contrastive
