r"""HybridFusion_GCN: MetaMMF_GCN with static hybrid (feature- and decision-level) fusion — a static fusion baseline of
Liu et al., ACM TOIS 2023 (Table 3).

The initial node embeddings are HybridFusion_MF's; each branch then goes through MetaMMF_GCN's
mean-aggregation graph convolution (Eq. 17-18, :class:`~recbole_metammf.model.abstract_recommender.FusionGCNBackbone`,
one GCN per branch so that late fusion stays decision-level). The only difference measured against
MetaMMF_GCN is the fusion.
"""

from recbole_metammf.model.abstract_recommender import FusionGCNBackbone
from recbole_metammf.model.general_recommender.hybridfusion_mf import HybridFusion_MF


class HybridFusion_GCN(FusionGCNBackbone, HybridFusion_MF):
    r"""HybridFusion_MF's static fusion on MetaMMF_GCN's graph convolution."""
