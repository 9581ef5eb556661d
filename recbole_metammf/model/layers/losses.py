r"""Losses and regularisers of the baselines: BM3's alignment, UltraGCN's constraints, InvRL's invariance
penalty and stochastic gates, InfoNCE (MICRO, LGMRec)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def cosine_alignment_loss(online, target):
    r"""BM3's alignment of an online view to a target view (Zhou et al., WWW 2023, Eq. 6-7):
    ``1 - mean_b cos(online_b, target_b)``, no gradient into ``target`` (a stop-gradient, as BYOL's)."""
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


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

    def extra_repr(self):
        return f"dim={self.mu.numel()}, sigma={self.sigma}"


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
