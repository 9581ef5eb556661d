r"""MetaMMF_LightGCN: MetaMMF's dynamically fused item embeddings on LightGCN propagation.

Liu et al., ACM TOIS 2023, call MetaMMF model-agnostic (Sec. 4.4): the meta-learned fusion gives the
initial item embeddings ``e_i = [e_i^m ; e_i^c]`` (Eq. 7-16, :class:`MetaMMF_MF`), and any graph
backbone may propagate them. Here it is LightGCN's (He et al., SIGIR 2020; reference code
kuandeng/LightGCN, RecBole's ``LightGCN``): ``E^(l+1) = D^{-1/2} A D^{-1/2} E^(l)``, the final
representation the mean of layers ``0..L``, score the inner product, BPR loss (Eq. 19) with either
MetaMMF's L2 over all parameters or RecBole LightGCN's ``EmbLoss`` of the batch's layer-0 embeddings
(``regularization``). The propagation is
:class:`~recbole_metammf.model.abstract_recommender.FusionLightGCNBackbone`, shared with
EarlyFusion_LightGCN, so the two differ in the fusion alone.
"""

from recbole_metammf.model.abstract_recommender import FusionLightGCNBackbone
from recbole_metammf.model.general_recommender.metammf_mf import MetaMMF_MF


class MetaMMF_LightGCN(FusionLightGCNBackbone, MetaMMF_MF):
    r"""MetaMMF_MF's meta-learned fusion (Eq. 7-16) on LightGCN propagation."""
