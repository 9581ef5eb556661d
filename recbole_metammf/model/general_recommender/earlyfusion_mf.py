r"""EarlyFusion_MF: MetaMMF_MF with static early (feature-level) fusion — a static fusion baseline of
Liu et al., ACM TOIS 2023 (Table 3).

Fusion: one static tower over the concatenated modality features ``x_i``: ``e_i^m = tower(x_i)``; one branch, exactly Eq. 16 with the meta fusion replaced by ``W_i = W``. Towers have MetaMMF's ``fusion_layers`` widths, LeakyReLU between layers and no
biases (:class:`~recbole_metammf.model.layers.StaticFusion`). Everything else — the ID embedding
``e_i^c``, the user embeddings, scoring, BPR + L2 loss — is MetaMMF_MF's own backbone
(:class:`~recbole_metammf.model.abstract_recommender.FusionMFBackbone`), so the only difference
measured against MetaMMF_MF is the fusion.
"""

from recbole_metammf.model.abstract_recommender import StaticFusionRecommender


class EarlyFusion_MF(StaticFusionRecommender):
    fusion_mode = "early"
