r"""BM3: bootstrapped latent representations of users, items and modalities, without negatives.

Zhou et al., "Bootstrap Latent Representations for Multi-modal Recommendation", WWW 2023 (the
method section: encoders, contrastive view generator, multi-modal contrastive loss);
reference code: github.com/enoche/BM3 ``src/models/bm3.py`` (the same file as enoche/MMRec
``src/models/bm3.py``), settings from MMRec ``src/configs/model/BM3.yaml`` and the BM3 README.

* Encoders: LightGCN over the training user-item graph from 64-d ID embeddings,
  ``h = mean_{l=0..L} (D^{-1/2} A D^{-1/2})^l e``, the item's ID embedding added once more,
  ``h_i <- h_i + e_i`` (as the code); per modality ``m`` a linear projection of its features,
  ``h_i^m = W_m x_i^m + b_m`` (64-d).
* Contrastive view generator: no separate target network; a target is the online representation
  with a stop-gradient and dropout, ``h~ = dropout_p(sg(h))``, for users, items and each modality.
* Predictor: one linear layer ``f`` (64 -> 64) shared by every view.
* Multi-modal contrastive loss, with ``c(a, b) = 1 - mean cos(a, b)`` over the batch of positive pairs ``(u, i)``
  (:func:`~recbole_metammf.model.layers.cosine_alignment_loss`):

      L = c(f(h_u), h~_i) + c(f(h_i), h~_u)                                   graph reconstruction
        + cl_weight * sum_m [ c(f(h_i^m), h~_i) + c(f(h_i^m), h~_i^m) ]        inter- and intra-modality alignment
        + reg_weight * (||h_U||_F + ||h_I||_F) / n_items                      the code's EmbLoss of all online h

* Score: ``f(h_u) . f(h_i)``, as the reference. The targets carry no gradient, so the modality terms
  train ``f`` and the projections only: the features shape the scores through the shared ``f``.

Generalised from the reference's image and text to any ``modalities``: one projection and two
alignment terms per modality. The features are fine-tuned, as the reference's
``nn.Embedding.from_pretrained(..., freeze=False)``, through a zero-initialised learned offset
(:class:`~recbole_metammf.model.layers.FeatureOffset`; ``fine_tune_features``), so the raw features
stay a buffer.

Differs from the reference, and why:

* the batch comes from the plugin's BPR sampler, whose sampled negatives BM3 ignores (the reference
  turns negative sampling off); the batch's positive pairs are the same;
* the modality projections and their targets are computed for the batch's items only (the
  reference projects every item's features at every batch: the same loss, O(batch) instead of
  O(n_items) per step), so a repeated item of a batch gets its own dropout mask;
* RecBole's padding item 0 takes part in the LightGCN propagation (it has no edges) and in ``n_items``;
* the training loop, early stopping (10 epochs without a better validation NDCG@20, the reference:
  20 on recall@20) and the evaluation (RecBole's full ranking) are the plugin's. On tiktok this one matters:
  the first epochs rank by popularity (the predictor's bias outweighs the small ID part, so every ``f(h_u)`` is
  nearly the same vector), validation then dips before BM3 learns, and 10 epochs of patience stop it in the
  dip (docs/BASELINES.md, "What held BM3 at Pop's level"). ``zero_predictor_bias`` (not the reference's) starts
  the bias at zero, for that check.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import (
    FeatureOffset,
    ModalityProjection,
    cosine_alignment_loss,
    light_gcn,
    normalized_training_graph,
)
from recbole_metammf.utils import ConfigError, require_int


class BM3(MultimodalRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.target_dropout = config["target_dropout"]
        self.cl_weight = config["cl_weight"]

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)  # as the reference
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.predictor = nn.Linear(self.embedding_size, self.embedding_size)
        nn.init.xavier_normal_(self.predictor.weight)  # as the reference
        if config["zero_predictor_bias"]:  # else PyTorch's default, as the reference
            nn.init.zeros_(self.predictor.bias)
        self.projection = ModalityProjection(self.modality_dims, self.embedding_size)
        for layer in self.projection.projections:
            nn.init.xavier_normal_(layer.weight)
        self.feature_offset = FeatureOffset(*self.item_features.shape) if config["fine_tune_features"] else None

        adjacency = normalized_training_graph(dataset, self.n_users, self.n_items, "symmetric")
        self.register_buffer("norm_adjacency", adjacency, persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "embedding_size", minimum=1)
        require_int(config, "n_layers", minimum=0)
        weight = config["cl_weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ConfigError(f"cl_weight: got {weight!r}; expected a number >= 0")
        for key in ("fine_tune_features", "zero_predictor_bias"):
            if not isinstance(config[key], bool):
                raise ConfigError(f"{key}: got {config[key]!r}; expected True or False")

    def online(self):
        r"""The online graph representations ``h_u`` and ``h_i + e_i`` of all users and items."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        user_all, item_all = torch.split(light_gcn(ego, self.norm_adjacency, self.n_layers), [self.n_users, self.n_items])
        return user_all, item_all + self.item_embedding.weight

    def modality_latents(self, items):
        r"""``h_i^m = W_m x_i^m + b_m`` of ``items``, one ``(len(items), embedding_size)`` tensor per modality."""
        features = self.item_features[items]
        if self.feature_offset is not None:
            features = self.feature_offset(features, items)
        return self.projection(features)

    def forward(self, items=None):
        user_all, item_all = self.online()
        if items is not None:
            item_all = item_all[items]
        return self.predictor(user_all), self.predictor(item_all)

    def target(self, h):
        r"""A target view: the online representation with a stop-gradient and dropout."""
        return F.dropout(h.detach(), self.target_dropout, training=self.training)

    def calculate_loss(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]  # the sampled negatives are not used
        user_all, item_all = self.online()
        user_target, item_target = self.target(user_all)[users], self.target(item_all)[items]
        loss = cosine_alignment_loss(self.predictor(user_all[users]), item_target) + cosine_alignment_loss(
            self.predictor(item_all[items]), user_target
        )
        alignment = 0
        for latent in self.modality_latents(items):
            online = self.predictor(latent)
            alignment = alignment + cosine_alignment_loss(online, item_target)
            alignment = alignment + cosine_alignment_loss(online, self.target(latent))
        reg = (user_all.norm() + item_all.norm()) / self.n_items
        return loss + self.reg_weight * reg + self.cl_weight * alignment
