r"""HybridFusion_MF: MetaMMF_MF with static hybrid (feature- and decision-level) fusion — a static fusion baseline of
Liu et al., ACM TOIS 2023 (Table 3).

Fusion: the early branch (tower over ``x_i``) and the ``M`` late branches (one tower per modality), each scored on its own; score = 1/2 early score + 1/2 mean of the late scores. Towers have MetaMMF's ``fusion_layers`` widths, LeakyReLU between layers and no
biases (:class:`~recbole_metammf.model.layers.StaticFusion`). Everything else — the ID embedding
``e_i^c``, the user embeddings, scoring, BPR + L2 loss — is MetaMMF_MF's own backbone
(:class:`~recbole_metammf.model.abstract_recommender.FusionMFBackbone`), so the only difference
measured against MetaMMF_MF is the fusion.
"""

from recbole_metammf.model.abstract_recommender import StaticFusionRecommender


class HybridFusion_MF(StaticFusionRecommender):
    fusion_mode = "hybrid"
