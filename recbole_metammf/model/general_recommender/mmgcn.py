r"""MMGCN: multi-modal graph convolution network.

Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized Recommendation of
Micro-video", ACM MM 2019, Section 3. One user-item graph per modality ``m``, the same training
interactions on each; on graph ``m`` a user node starts from a learned preference ``u_m`` and an
item node from its (projected) features ``i_m``. Each of the ``n_layers`` layers, for every node:

* aggregation (Eq. 1-2, mean aggregation): ``h_m = LeakyReLU(W_1 mean_{j in N} x_j)``;
* combination (Eq. 3-5): ``x_hat_m = LeakyReLU(W_2 x_m) + e_id`` with the node's ID embedding
  ``e_id`` (shared by the modalities), then ``x_m' = LeakyReLU(W_3 [h_m ; x_hat_m])``
  (``combination: concat``) or ``LeakyReLU(W_3 h_m + x_hat_m)`` (``combination: add``).

The representations are summed over the modalities (here averaged, which only rescales) and the
score is the inner product (Eq. 6); BPR loss and ``reg_weight * ||Phi||^2``. Node inputs are
L2-normalised, and each modality's features are first projected to ``embedding_size`` (as the
authors' code does for wide features) so that every layer has one width.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_uniform_initialization

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import ModalityProjection, bipartite_edge_index, mean_edge_weight, sparse_adjacency
from recbole_metammf.utils import ConfigError, require_int


class MMGCNLayer(nn.Module):
    r"""One MMGCN layer on one modality's graph: aggregation, then combination with the ID embedding."""

    def __init__(self, dim, concat):
        super().__init__()
        self.concat = concat
        self.aggregate = nn.Linear(dim, dim, bias=False)  # W_1
        self.transform = nn.Linear(dim, dim)  # W_2
        self.combine = nn.Linear(2 * dim if concat else dim, dim)  # W_3

    def forward(self, x, id_embedding, adjacency):
        r"""``adjacency``: the mean-aggregation matrix of the user-item graph (sparse, rows sum to 1)."""
        h = F.leaky_relu(self.aggregate(adjacency @ x))
        x_hat = F.leaky_relu(self.transform(x)) + id_embedding
        if self.concat:
            return F.leaky_relu(self.combine(torch.cat([h, x_hat], dim=1)))
        return F.leaky_relu(self.combine(h) + x_hat)


class MMGCN(MultimodalRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.n_layers = config["n_layers"]
        concat = config["combination"] == "concat"
        n_modalities = len(self.modality_dims)

        self.projection = ModalityProjection(self.modality_dims, self.embedding_size)
        self.preference = nn.ModuleList(nn.Embedding(self.n_users, self.embedding_size) for _ in range(n_modalities))
        self.id_embedding = nn.Embedding(self.n_users + self.n_items, self.embedding_size)
        self.layers = nn.ModuleList(
            nn.ModuleList(MMGCNLayer(self.embedding_size, concat) for _ in range(self.n_layers))
            for _ in range(n_modalities)
        )
        self.apply(xavier_uniform_initialization)
        n_nodes = self.n_users + self.n_items
        edge_index = bipartite_edge_index(dataset.inter_matrix(form="coo"), self.n_users)
        adjacency = sparse_adjacency(edge_index, mean_edge_weight(edge_index, n_nodes), n_nodes)
        self.register_buffer("adjacency", adjacency, persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "embedding_size", minimum=1)
        require_int(config, "n_layers", minimum=1)
        if config["combination"] not in ("concat", "add"):
            raise ConfigError(f"combination: got {config['combination']!r}; expected 'concat' or 'add'")

    def forward(self, items=None):
        id_embedding = self.id_embedding.weight
        projected = self.projection(self.item_features)
        representation = 0
        for preference, item_input, layers in zip(self.preference, projected, self.layers):
            x = F.normalize(torch.cat([preference.weight, item_input], dim=0), dim=1)
            for layer in layers:
                x = layer(x, id_embedding, self.adjacency)
            representation = representation + x
        representation = representation / len(self.layers)
        user_all, item_all = torch.split(representation, [self.n_users, self.n_items])
        return user_all, (item_all if items is None else item_all[items])
