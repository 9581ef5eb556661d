r"""FREEDOM: a frozen item-item graph of the features and a denoised (pruned) user-item graph.

Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation", ACM MM 2023 (the method section: frozen item-item graph, degree-sensitive edge
pruning, the two graph convolutions and the loss); reference code: github.com/enoche/FREEDOM
``src/models/freedom.py`` (the same as enoche/MMRec ``src/models/freedom.py``), settings from
MMRec ``src/configs/model/FREEDOM.yaml``.

* Frozen item-item graph, built once from the features before training: per modality ``m`` the
  ``knn_k``-nearest-neighbour graph of cosine similarities (each item's own ``k`` most similar items,
  itself included, :func:`~recbole_metammf.model.layers.knn_graph`), binary, normalised
  ``S_m = D^{-1/2} A_m D^{-1/2}`` (every row has ``k`` entries, so each is ``1/k``); the graph is
  ``S = sum_m w_m S_m`` (``modality_weights``; the reference: ``0.1 S_image + 0.9 S_text``).
* Item side: ``h = S^{L_i} e_i`` from the item ID embeddings (``n_item_layers`` = L_i = 1).
* User-item side: LightGCN (``n_layers`` = 2) from the ID embeddings, the mean of layers ``0..L``, on
  the symmetrically normalised training graph. In training the graph is *denoised* at every epoch:
  degree-sensitive edge pruning keeps ``int((1 - edge_dropout) E)`` of the ``E`` training interactions,
  drawn without replacement with probability proportional to ``1 / sqrt(d_u d_i)``
  (:func:`~recbole_metammf.model.layers.degree_sensitive_edge_sample`), and the kept graph is
  normalised anew; evaluation uses the whole graph.
* Representations: ``e_u = LightGCN_u``, ``e_i = LightGCN_i + h_i``; score ``e_u . e_i``.
* Loss: ``BPR(e_u, e_i+, e_i-) + reg_weight * sum_m BPR(e_u, W_m x_{i+}^m + b_m, W_m x_{i-}^m + b_m)``:
  the projected features enter the loss only, aligning the users with each modality.

Generalised from the reference's image and text to any ``modalities``: one kNN graph, projection and
BPR term per modality, the graphs mixed by ``modality_weights`` (null = equal weights; the
reference's ``mm_image_weight: 0.1`` is ``[0.1, 0.9]`` for ``[image, text]``). The features are
fine-tuned (``fine_tune_features``), as the reference's ``nn.Embedding.from_pretrained(...,
freeze=False)``, through a zero-initialised learned offset
(:class:`~recbole_metammf.model.layers.FeatureOffset`); the frozen graph comes from the raw features.

Differs from the reference, and why:

* the pruned graph is drawn at the first training batch of each epoch (RecBole calls ``model.train()``
  when an epoch starts; MMRec's trainer calls ``pre_epoch_processing``): the same once-per-epoch draw;
* RecBole's padding item 0 has no item-item edges (its zero features have no cosine; the reference has
  no padding row) and no user-item edges;
* the frozen graph is rebuilt from the features when the model is built (the reference caches it in a
  file next to the data); the kNN search runs in row blocks, never holding the ``n x n`` similarity;
* the projections are applied to the batch's positive and negative items only (the reference projects
  every item at every batch: the same loss, O(batch) per step);
* the reference's unused keys (``lambda_coeff``, ``cf_model``, ``degree_ratio``, ``weight_size``) are left out;
* the training loop, early stopping (10 epochs without a better validation NDCG@20, the reference: 20 on
  recall@20) and the evaluation (RecBole's full ranking) are the plugin's.
"""

import math

import torch
import torch.nn as nn

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import (
    FeatureOffset,
    ModalityProjection,
    degree_sensitive_edge_sample,
    knn_adjacency,
    light_gcn,
    sparse_adjacency,
    split_modalities,
    symmetric_edge_weight,
    training_graph,
)
from recbole_metammf.utils import ConfigError, require_int


class FREEDOM(MultimodalRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.knn_k = config["knn_k"]
        self.n_item_layers = config["n_item_layers"]
        self.n_layers = config["n_layers"]
        self.edge_dropout = config["edge_dropout"]
        weights = config["modality_weights"]
        self.modality_weights = [1.0 / len(self.modality_dims)] * len(self.modality_dims) if weights is None else list(weights)

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)  # as the reference
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.projection = ModalityProjection(self.modality_dims, self.embedding_size)  # PyTorch's init, as the reference
        self.feature_offset = FeatureOffset(*self.item_features.shape) if config["fine_tune_features"] else None

        self.n_nodes = self.n_users + self.n_items
        edge_index = training_graph(dataset, self.n_users)
        self.register_buffer("interaction_edges", edge_index[:, : edge_index.shape[1] // 2], persistent=False)  # user -> item
        self.register_buffer("norm_adjacency", self.normalized_graph(edge_index), persistent=False)
        self.register_buffer("item_adjacency", self.frozen_item_graph(), persistent=False)
        self._pruned_adjacency = None

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        for key in ["embedding_size", "knn_k"]:
            require_int(config, key, minimum=1)
        require_int(config, "n_item_layers", minimum=0)
        require_int(config, "n_layers", minimum=0)
        if not isinstance(config["fine_tune_features"], bool):
            raise ConfigError(f"fine_tune_features: got {config['fine_tune_features']!r}; expected True or False")
        weights, n_modalities = config["modality_weights"], len(config["modalities"])
        if weights is not None and (
            not isinstance(weights, (list, tuple))
            or len(weights) != n_modalities
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights)
            or not math.isclose(sum(weights), 1.0, rel_tol=1e-6)
        ):
            raise ConfigError(
                f"modality_weights: got {weights!r}; expected null (equal weights) or {n_modalities} numbers >= 0 "
                "summing to 1, one per modality (the reference's [0.1, 0.9] for [image, text])"
            )

    def normalized_graph(self, edge_index):
        r"""``D^{-1/2} A D^{-1/2}`` of the user-item edges (both directions) as a sparse matrix."""
        return sparse_adjacency(edge_index, symmetric_edge_weight(edge_index, self.n_nodes), self.n_nodes)

    def frozen_item_graph(self):
        r"""``S = sum_m w_m D^{-1/2} A_m D^{-1/2}``, ``A_m`` the binary kNN graph of modality ``m``, as a sparse matrix."""
        blocks = split_modalities(self.item_features, self.modality_dims)
        return knn_adjacency(blocks, self.knn_k, self.modality_weights)

    @torch.no_grad()
    def pruned_graph(self):
        r"""The normalised graph of the interactions kept by one degree-sensitive pruning draw."""
        kept = degree_sensitive_edge_sample(self.interaction_edges, self.n_nodes, 1.0 - self.edge_dropout)
        return self.normalized_graph(torch.cat([kept, kept.flip(0)], dim=1))

    def train(self, mode=True):
        if mode:
            self._pruned_adjacency = None  # the trainer calls train() at the start of every epoch: a new draw
        return super().train(mode)

    def user_item_graph(self):
        r"""The pruned graph of this epoch in training (drawn at its first batch), the whole graph otherwise."""
        if not self.training or self.edge_dropout == 0:
            return self.norm_adjacency
        if self._pruned_adjacency is None:
            self._pruned_adjacency = self.pruned_graph()
        return self._pruned_adjacency

    def forward(self, items=None):
        h = self.item_embedding.weight
        for _ in range(self.n_item_layers):
            h = self.item_adjacency @ h
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        user_all, item_all = torch.split(light_gcn(ego, self.user_item_graph(), self.n_layers), [self.n_users, self.n_items])
        item_all = item_all + h
        return user_all, (item_all if items is None else item_all[items])

    def modality_latents(self, items):
        r"""``W_m x_i^m + b_m`` of ``items``, one ``(len(items), embedding_size)`` tensor per modality."""
        features = self.item_features[items]
        if self.feature_offset is not None:
            features = self.feature_offset(features, items)
        return self.projection(features)

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        pos_items, neg_items = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        user_all, item_all = self.forward()
        user_e = user_all[users]
        loss = self.bpr_loss(user_e, item_all[pos_items], item_all[neg_items])
        modality = 0
        for latent in self.modality_latents(torch.cat([pos_items, neg_items])):
            pos_m, neg_m = latent.chunk(2)
            modality = modality + self.bpr_loss(user_e, pos_m, neg_m)
        return loss + self.reg_weight * modality
