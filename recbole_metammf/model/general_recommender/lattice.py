r"""LATTICE: latent item-item structure mined from multimodal features, on a LightGCN backbone.

Zhang et al., "Mining Latent Structures for Multimedia Recommendation", ACM MM 2021, Section 3.

* Initial modality-aware graphs (Sec. 3.1.1): per modality ``m``, the cosine similarity of the raw
  features, kNN-sparsified to each item's ``knn_k`` most similar items (values kept) and normalised
  ``S_m = D^{-1/2} S D^{-1/2}``. Built once, at construction.
* Learned graphs (Sec. 3.1.2): the same kNN graph of the transformed features ``W_m x_i^m + b_m``,
  normalised, ``A_m``; with the skip connection ``A~_m = lambda_coeff S_m + (1 - lambda_coeff) A_m``.
* Aggregation (Sec. 3.1.3): ``A = sum_m alpha_m A~_m``, ``alpha = softmax`` of learned weights.
* Item graph convolution (Sec. 3.2): ``h = A^L e_i`` over ``n_item_layers`` layers from the item ID
  embeddings; the item representation is ``e_i^CF + h_i / ||h_i||`` (Sec. 3.3), where ``e^CF`` comes
  from the collaborative backbone, LightGCN with ``n_layers`` layers (the paper's default).
* BPR loss and ``reg_weight * ||Phi||^2``.

The learned graphs are rebuilt, with gradients into ``W_m``, at the first training batch of each
epoch (RecBole calls ``model.train()`` at the start of every epoch), and used detached by the other
batches and by evaluation, as the authors' implementation does. They are kept in persistent buffers,
so a checkpoint evaluates on the graph it was trained with. Nothing ``n x n`` is ever stored:
:func:`~recbole_metammf.model.layers.knn_graph` ranks similarities in row blocks.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_uniform_initialization

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import (
    ModalityProjection,
    light_gcn,
    normalized_knn_graph,
    normalized_training_graph,
    propagate,
    split_modalities,
)
from recbole_metammf.utils import ConfigError, require_int


class LATTICE(MultimodalRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.knn_k = config["knn_k"]
        self.lambda_coeff = config["lambda_coeff"]
        self.n_item_layers = config["n_item_layers"]
        self.n_layers = config["n_layers"]
        n_modalities = len(self.modality_dims)

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.graph_learner = ModalityProjection(self.modality_dims, config["feature_embedding_size"])
        self.modal_weight = nn.Parameter(torch.zeros(n_modalities))  # softmax -> equal weights at the start
        self.apply(xavier_uniform_initialization)

        # user-item graph for LightGCN, D^-1/2 A D^-1/2
        ui_adjacency = normalized_training_graph(dataset, self.n_users, self.n_items, "symmetric")
        self.register_buffer("ui_adjacency", ui_adjacency, persistent=False)
        # initial graphs S_m from the raw features: rebuilt from the dataset, not saved
        initial = [normalized_knn_graph(block, self.knn_k) for block in split_modalities(self.item_features, self.modality_dims)]
        self.register_buffer("initial_edge_index", torch.stack([e for e, _ in initial]), persistent=False)
        self.register_buffer("initial_edge_weight", torch.stack([w for _, w in initial]), persistent=False)
        # learned graphs A_m: saved with the model, refreshed once per training epoch
        with torch.no_grad():
            learned = self.learn_graphs()
        self.register_buffer("learned_edge_index", torch.stack([e for e, _ in learned]))
        self.register_buffer("learned_edge_weight", torch.stack([w for _, w in learned]))
        self._refresh_graphs = False

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        for key in ["embedding_size", "feature_embedding_size", "knn_k", "n_item_layers"]:
            require_int(config, key, minimum=1)
        require_int(config, "n_layers", minimum=0)
        coeff = config["lambda_coeff"]
        if isinstance(coeff, bool) or not isinstance(coeff, (int, float)) or not 0 <= coeff <= 1:
            raise ConfigError(f"lambda_coeff: got {coeff!r}; expected a number in [0, 1]")

    def learn_graphs(self):
        r"""The normalised kNN graphs ``A_m`` of the transformed features, one ``(edge_index, weight)`` per modality."""
        return [normalized_knn_graph(transformed, self.knn_k) for transformed in self.graph_learner(self.item_features)]

    def train(self, mode=True):
        if mode:
            self._refresh_graphs = True  # the trainer calls train() at the start of every epoch
        return super().train(mode)

    def item_graph_convolution(self, learned):
        r"""``h = A^L e_i`` with ``A = sum_m alpha_m (lambda S_m + (1 - lambda) A_m)``, never summed into one matrix."""
        alpha = torch.softmax(self.modal_weight, dim=0)
        h = self.item_embedding.weight
        for _ in range(self.n_item_layers):
            out = 0
            for m, (learned_index, learned_weight) in enumerate(learned):
                initial = propagate(h, self.initial_edge_index[m], self.initial_edge_weight[m])
                refined = propagate(h, learned_index, learned_weight)
                out = out + alpha[m] * (self.lambda_coeff * initial + (1 - self.lambda_coeff) * refined)
            h = out
        return h

    def forward(self, items=None):
        if self.training and self._refresh_graphs:
            learned = self.learn_graphs()  # with gradients into the graph learner, for this batch
            self.learned_edge_index.copy_(torch.stack([e for e, _ in learned]))
            self.learned_edge_weight.copy_(torch.stack([w.detach() for _, w in learned]))
            self._refresh_graphs = False
        else:
            learned = list(zip(self.learned_edge_index, self.learned_edge_weight))
        h = self.item_graph_convolution(learned)
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)
        nodes = light_gcn(ego, self.ui_adjacency, self.n_layers)
        user_all, item_cf = torch.split(nodes, [self.n_users, self.n_items])
        item_all = item_cf + F.normalize(h, dim=1)
        return user_all, (item_all if items is None else item_all[items])
