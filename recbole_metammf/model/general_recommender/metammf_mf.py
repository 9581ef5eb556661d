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
"""

import torch
import torch.nn as nn
from recbole.model.init import xavier_uniform_initialization

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import MetaFusionTower, MetaInformationExtractor
from recbole_metammf.utils import ConfigError, require_int


class MetaMMF_MF(MultimodalRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feature_dim = self.item_features.shape[1]
        self.d_s = config["d_s"]
        self.cp_rank = config["cp_rank"]
        self.fusion_layers = list(config["fusion_layers"])
        self.static_weight = config["static_weight"]
        self.embedding_size = config["embedding_size"]  # d_c
        extractor_hidden = config["extractor_hidden"] or feature_dim

        self.meta_extractor = MetaInformationExtractor(feature_dim, extractor_hidden, self.d_s)
        self.fusion = MetaFusionTower(
            feature_dim, self.fusion_layers, self.d_s, self.cp_rank, self.static_weight, config["dropout"]
        )
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.user_embedding = nn.Embedding(self.n_users, self.fusion_layers[-1] + self.embedding_size)
        self.apply(xavier_uniform_initialization)  # Linear and Embedding; fusion layers init themselves

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "d_s", minimum=1)
        require_int(config, "cp_rank", minimum=0, note="0 = full 3-D tensor")
        require_int(config, "embedding_size", minimum=1)
        if config["extractor_hidden"] is not None:
            require_int(config, "extractor_hidden", minimum=1, note="or null for the feature width")
        layers = config["fusion_layers"]
        if (
            not isinstance(layers, (list, tuple))
            or not layers
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in layers)
        ):
            raise ConfigError(
                f"fusion_layers: got {layers!r}; expected a non-empty list of positive widths, the last = d_m, e.g. [32]"
            )
        if not isinstance(config["static_weight"], bool):
            raise ConfigError(f"static_weight: got {config['static_weight']!r}; expected True or False")

    def item_representation(self, items=None):
        r"""``e_i = [e_i^m ; e_i^c]`` (Eq. 16) of ``items``, or of all items."""
        if items is None:
            features, id_embedding = self.item_features, self.item_embedding.weight
        else:
            features, id_embedding = self.item_features[items], self.item_embedding(items)
        fused = self.fusion(features, self.meta_extractor(features))
        return torch.cat([fused, id_embedding], dim=-1)

    def forward(self, items=None):
        return self.user_embedding.weight, self.item_representation(items)
