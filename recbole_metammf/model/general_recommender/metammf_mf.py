r"""MetaMMF_MF: meta-learned dynamic multimodal fusion on a matrix-factorisation backbone.

Liu et al., "Dynamic Multimodal Fusion via Meta-Learning Towards Micro-Video Recommendation",
ACM TOIS 2023, Section 4 (Eq. 7-16):

* Eq. 7: meta information ``s_i = MLP(x_i)`` of item ``i`` from its concatenated modality features.
* Eq. 11/15: each fusion layer's weight ``W_i = W + T x_3 s_i`` is generated from ``s_i``
  (``T`` full, or CP-decomposed with rank ``cp_rank``).
* Eq. 12: fusion tower ``e_i^m`` of widths ``fusion_layers`` (the last is ``d_m``).
* Eq. 16: ``e_i = [e_i^m ; e_i^c]`` with an ID embedding ``e_i^c`` of size ``embedding_size``;
  users get an embedding of size ``d_m + d_c`` and the score is ``e_u . e_i``.
* Eq. 19: BPR loss plus ``reg_weight * ||Phi||^2`` (:class:`MultimodalRecommender`).

The backbone (Eq. 16, ID embeddings, scoring) is :class:`FusionMFBackbone`, shared with the static
fusion baselines (EarlyFusion_MF, LateFusion_MF, HybridFusion_MF); this class supplies the fusion.
"""

from recbole_metammf.model.abstract_recommender import FusionMFBackbone
from recbole_metammf.model.layers import MetaFusionTower, MetaInformationExtractor
from recbole_metammf.utils import ConfigError, require_int


class MetaMMF_MF(FusionMFBackbone):
    def build_fusion(self, config):
        r"""Eq. 7 (meta information extractor) and Eq. 11/12/15 (meta fusion tower); one branch of width ``d_m``."""
        feature_dim = self.item_features.shape[1]
        self.d_s = config["d_s"]
        self.cp_rank = config["cp_rank"]
        self.static_weight = config["static_weight"]
        extractor_hidden = config["extractor_hidden"] or feature_dim

        # center_meta_input: the extractor reads x_i minus the mean over the catalogue's items (a change of
        # b_1 in Eq. 7, so the same functions; what changes is that min-max features' common offset no
        # longer dominates W_1 x_i and its gradient). The fusion tower still reads x_i itself.
        offset = self.item_features[1:].mean(dim=0) if config["center_meta_input"] else None
        self.register_buffer("meta_input_offset", offset, persistent=False)
        self.meta_extractor = MetaInformationExtractor(
            feature_dim, extractor_hidden, self.d_s, standardize=config["standardize_meta"]
        )
        self.fusion = MetaFusionTower(
            feature_dim, self.fusion_layers, self.d_s, self.cp_rank, self.static_weight, config["dropout"]
        )
        return [self.fusion_layers[-1]]

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "d_s", minimum=1)
        require_int(config, "cp_rank", minimum=0, note="0 = full 3-D tensor")
        if config["extractor_hidden"] is not None:
            require_int(config, "extractor_hidden", minimum=1, note="or null for the feature width")
        for key in ("static_weight", "standardize_meta", "center_meta_input"):
            if not isinstance(config[key], bool):
                raise ConfigError(f"{key}: got {config[key]!r}; expected True or False")

    def meta_information(self, features):
        r"""``s_i`` (Eq. 7) of items with concatenated ``features`` (centred first with ``center_meta_input``)."""
        return self.meta_extractor(features if self.meta_input_offset is None else features - self.meta_input_offset)

    def fuse(self, features):
        r"""``e_i^m`` (Eq. 12) from the item's features and its meta information ``s_i`` (Eq. 7)."""
        return [self.fusion(features, self.meta_information(features))]
