r"""MetaMMF_GCN: MetaMMF's dynamically fused item embeddings propagated on the user-item graph.

Liu et al., ACM TOIS 2023, Section 4.4 (Eq. 17-18):

* Eq. 17: the initial node embeddings are those of MetaMMF_MF — users' ID embeddings and items'
  ``[e_i^m ; e_i^c]`` from the meta-learned fusion (:class:`MetaMMF_MF`).
* Eq. 18: ``n_layers`` GraphSAGE-style mean-aggregation layers over the training interactions,
  ``e^(l) = LeakyReLU(W_1 e^(l-1) + W_2 mean_{j in N(i)} e_j^(l-1))``.
* The score is the inner product of the users' and items' layer-``L`` outputs; BPR loss (Eq. 19).

Two training choices the paper leaves open, made on validation (docs/RESULTS.md, "MetaMMF_GCN: the
cause of the popularity collapse"): LeakyReLU's slope (``negative_slope``; the authors' 0.01 leaves every
output non-negative and all users' neighbour means alike, so the default is 1.0, linear layers) and
``drop_batch_edges`` (the batch's positive edges are not in the graph its loss is computed on); and
``normalize_modalities: l2`` (min-max features make every fused item nearly the same vector).

The graph convolution is :class:`FusionGCNBackbone`, shared with EarlyFusion_GCN, LateFusion_GCN and
HybridFusion_GCN; the fusion is MetaMMF_MF's.
"""

from recbole_metammf.model.abstract_recommender import FusionGCNBackbone
from recbole_metammf.model.general_recommender.metammf_mf import MetaMMF_MF


class MetaMMF_GCN(FusionGCNBackbone, MetaMMF_MF):
    r"""MetaMMF_MF's meta-learned fusion (Eq. 7-16) on MetaMMF_GCN's graph convolution (Eq. 17-18)."""
