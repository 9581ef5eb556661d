r"""GRCN: graph-refined convolutional network.

Wei et al., "Graph-Refined Convolutional Network for Multimedia Recommendation with Implicit
Feedback", ACM MM 2020, Section 3. The user-item graph of implicit feedback holds noisy edges;
GRCN scores each edge by how well the item's content fits the user's preference, prunes and
re-weights the edges, and runs the ID graph convolution on that refined graph.

* Graph refining, per modality ``m`` (Sec. 3.2): item content ``i_m = norm(LeakyReLU(W_m x_i^m + b_m))``
  (``content_size``), a learned user preference ``u_m``, refined by ``n_routing`` rounds of routing
  ``u_m <- norm(u_m + sum_{i in N(u)} softmax_{i in N(u)}(u_m . i_m) i_m)``. Every edge then gets
  an affinity per modality, ``softmax`` of ``x_src . x_dst`` over the target's neighbours, and the
  content representation of each node is ``x + sum_j a_(j, x) x_j`` with ``x = [u_m ; i_m]``.
* Edge weight (``weight_mode``): ``confid`` = max over modalities of the affinity times a learned
  per-node, per-modality confidence of the message's source (the paper's default), ``mean``, or ``max``;
  ``pruning: True`` cuts negative weights to zero (ReLU).
* Graph convolution (Sec. 3.3): ID embeddings ``e = norm(e_id)``, ``n_layers`` weighted-sum
  aggregations on the refined graph, ``e* = e + e^(1) + ... + e^(L)``.
* Prediction (Sec. 3.4): ``[e* ; content_1 ; ... ; content_M]`` for users and items, inner product;
  BPR loss and ``reg_weight * ||Phi||^2``.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_uniform_initialization
from torch_geometric.utils import softmax

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import ModalityProjection, bipartite_edge_index, propagate
from recbole_metammf.utils import ConfigError, require_int


class GRCN(MultimodalRecommender):
    WEIGHT_MODES = ("confid", "mean", "max")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.content_size = config["content_size"]
        self.n_layers = config["n_layers"]
        self.n_routing = config["n_routing"]
        self.weight_mode = config["weight_mode"]
        self.pruning = config["pruning"]
        n_modalities = len(self.modality_dims)
        n_nodes = self.n_users + self.n_items

        self.projection = ModalityProjection(self.modality_dims, self.content_size)
        self.preference = nn.ModuleList(nn.Embedding(self.n_users, self.content_size) for _ in range(n_modalities))
        self.id_embedding = nn.Embedding(n_nodes, self.embedding_size)
        if self.weight_mode == "confid":
            self.confidence = nn.Embedding(n_nodes, n_modalities)
        self.apply(xavier_uniform_initialization)
        # both directions: the first half user -> item, the second item -> user
        edge_index = bipartite_edge_index(dataset.inter_matrix(form="coo"), self.n_users)
        self.register_buffer("edge_index", edge_index, persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        for key in ["embedding_size", "content_size", "n_layers"]:
            require_int(config, key, minimum=1)
        require_int(config, "n_routing", minimum=0)
        if config["weight_mode"] not in cls.WEIGHT_MODES:
            raise ConfigError(f"weight_mode: got {config['weight_mode']!r}; expected one of {list(cls.WEIGHT_MODES)}")
        if not isinstance(config["pruning"], bool):
            raise ConfigError(f"pruning: got {config['pruning']!r}; expected True or False")

    def _refine(self, preference, content):
        r"""One modality: the routed user preferences, the affinity of every edge and the content representation."""
        n_nodes = self.n_users + self.n_items
        src, dst = self.edge_index
        to_users = dst < self.n_users  # item -> user edges: a user's neighbourhood
        item_of, user_of = src[to_users] - self.n_users, dst[to_users]
        for _ in range(self.n_routing):
            attention = softmax((preference[user_of] * content[item_of]).sum(-1), user_of, num_nodes=self.n_users)
            routed = propagate(content, torch.stack([item_of, user_of]), attention, n_nodes=self.n_users)
            preference = F.normalize(preference + routed, dim=1)
        x = torch.cat([preference, content], dim=0)
        affinity = softmax((x[src] * x[dst]).sum(-1), dst, num_nodes=n_nodes)
        return x + propagate(x, self.edge_index, affinity), affinity

    def forward(self, items=None):
        contents, affinities = [], []
        for m, projected in enumerate(self.projection(self.item_features)):
            content = F.normalize(F.leaky_relu(projected), dim=1)
            preference = F.normalize(self.preference[m].weight, dim=1)
            representation, affinity = self._refine(preference, content)
            contents.append(representation)
            affinities.append(affinity)
        affinity = torch.stack(affinities, dim=1)  # (edges, modalities)
        if self.weight_mode == "mean":
            weight = affinity.mean(dim=1)
        elif self.weight_mode == "max":
            weight = affinity.max(dim=1).values
        else:
            weight = (affinity * self.confidence(self.edge_index[0])).max(dim=1).values
        if self.pruning:
            weight = F.relu(weight)

        e = F.normalize(self.id_embedding.weight, dim=1)
        id_representation = e
        for _ in range(self.n_layers):
            e = propagate(e, self.edge_index, weight)
            id_representation = id_representation + e
        representation = torch.cat([id_representation] + contents, dim=1)
        user_all, item_all = torch.split(representation, [self.n_users, self.n_items])
        return user_all, (item_all if items is None else item_all[items])
