r"""LateFusion_MF: MetaMMF_MF with static late (decision-level) fusion — a static fusion baseline of
Liu et al., ACM TOIS 2023 (Table 3).

Fusion: one static tower per modality, ``e_i^{m,k} = tower_k(x_i^k)``; each modality is a branch ``[e_i^{m,k} ; e_i^c]`` with its own user embedding, scored on its own, and the ``M`` scores are averaged. Towers have MetaMMF's ``fusion_layers`` widths, LeakyReLU between layers and no
biases (:class:`~recbole_metammf.model.layers.StaticFusion`). Everything else — the ID embedding
``e_i^c``, the user embeddings, scoring, BPR + L2 loss — is MetaMMF_MF's own backbone
(:class:`~recbole_metammf.model.abstract_recommender.FusionMFBackbone`), so the only difference
measured against MetaMMF_MF is the fusion.
"""

from recbole_metammf.model.abstract_recommender import StaticFusionRecommender


class LateFusion_MF(StaticFusionRecommender):
    fusion_mode = "late"
