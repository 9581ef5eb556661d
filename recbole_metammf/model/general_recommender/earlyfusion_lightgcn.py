r"""EarlyFusion_LightGCN: MetaMMF_LightGCN with static early (feature-level) fusion.

The static-fusion twin of :class:`MetaMMF_LightGCN` (as EarlyFusion_MF / EarlyFusion_GCN are of
MetaMMF_MF / MetaMMF_GCN, Liu et al., ACM TOIS 2023, Table 3): the same LightGCN propagation
(:class:`~recbole_metammf.model.abstract_recommender.FusionLightGCNBackbone`) of initial embeddings
``[tower(x_i) ; e_i^c]``, where one static tower (``T = 0`` in Eq. 11) replaces the meta-learned
fusion. Comparing the two measures the fusion alone.
"""

from recbole_metammf.model.abstract_recommender import FusionLightGCNBackbone
from recbole_metammf.model.general_recommender.earlyfusion_mf import EarlyFusion_MF


class EarlyFusion_LightGCN(FusionLightGCNBackbone, EarlyFusion_MF):
    r"""EarlyFusion_MF's static fusion on LightGCN propagation."""
