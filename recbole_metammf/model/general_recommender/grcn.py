r"""GRCN: graph-refined convolutional network.

Wei et al., "Graph-Refined Convolutional Network for Multimedia Recommendation with Implicit
Feedback", ACM MM 2020, Section 3, written after the authors' code (github.com/weiyinwei/GRCN,
``Model_routing.py``; MMRec's ``grcn.py`` is the same code). The user-item graph of implicit
feedback holds noisy edges; GRCN scores each edge by how well the item's content fits the user's
preference, re-weights (and optionally prunes) the edges, and runs the ID graph convolution on
that refined graph. ``E`` below is the set of training interactions as one-direction edges
``user -> item``; ``E2 = E + reversed(E)`` both directions (the reference's ``edge_index`` and
``cat(edge_index, edge_index[[1, 0]])``).

* Content, per modality ``m`` (reference ``CGCN``): ``i_m = norm(LeakyReLU(W_m x_i^m + b_m))``
  (``content_size``) and a learned user preference ``u_m = norm(p_m)``.
* Routing (``n_routing`` rounds): ``x = [u_m ; i_m]``, ``x_hat = GAT(x, edges)`` (attention
  ``softmax`` of ``x_src . x_dst`` over each target's incoming edges, ``x_hat_dst = sum a x_src``),
  ``u_m <- norm(u_m + x_hat[users])``. The reference passes ``E`` (``user -> item``), so the messages
  land on the item rows and ``x_hat[users]`` is zero: the routing leaves ``u_m`` as it is
  (``routing_direction: user_to_item``, the default, computed as that no-op). ``item_to_user``
  routes over ``reversed(E)`` instead, the paper's Eq. 2-4 (users gather their items).
* Affinity and content representation: the same attention once more on ``E2``; the content
  representation is ``x + x_hat`` (no activation, the reference's ``has_act = False``) and every
  directed edge of ``E2`` keeps its attention ``a_m``.
* Edge weight (``weight_mode``): ``confid`` = ``max_m a_m * c_m(src)`` with a learned confidence per
  node and modality of the message's source (Xavier-normal initialised, so near 0, and not
  regularised, as in the reference), ``mean`` or ``max`` of the ``a_m``; ``pruning: True`` cuts
  negative weights to zero (the reference's hard pruning; its TikTok command runs without).
* ID graph convolution (reference ``EGCN``, ``aggr = add``): ``e = norm(e_id)``,
  ``e^(l) = sum_{(j, x) in E2} w_(j, x) e_j^(l-1)``, ``e* = e + e^(1) + ... + e^(L)``.
* Prediction: ``[e* ; content_1 ; ... ; content_M]`` (``embedding_size + M * content_size`` wide),
  inner product; BPR loss plus ``reg_weight`` times the batch means of the squared ID embeddings of
  the batch's users and items and of the batch users' preferences (the reference's ``loss``).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_geometric.utils import softmax

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import ModalityProjection, propagate
from recbole_metammf.utils import ConfigError, require_int


def attention_propagate(x, edge_index):
    r"""The reference's ``GATConv`` (no weights): ``a = softmax_{edges into dst}(x_src . x_dst)``,
    ``out_dst = sum a x_src``. Returns ``out`` (one row per node of ``x``) and ``a`` per edge."""
    src, dst = edge_index
    attention = softmax((x[src] * x[dst]).sum(-1), dst, num_nodes=x.shape[0])
    return propagate(x, edge_index, attention), attention


class GRCN(MultimodalRecommender):
    WEIGHT_MODES = ("confid", "mean", "max")
    ROUTING_DIRECTIONS = ("user_to_item", "item_to_user")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.content_size = config["content_size"]
        self.n_layers = config["n_layers"]
        self.n_routing = config["n_routing"]
        self.routing_direction = config["routing_direction"]
        self.weight_mode = config["weight_mode"]
        self.pruning = config["pruning"]
        n_modalities = len(self.modality_dims)
        n_nodes = self.n_users + self.n_items

        # the reference's initialisation: its MLPs keep PyTorch's default, every embedding-like
        # parameter is xavier_normal_ of an (n, d) matrix (std sqrt(2 / (n + d)), about 0.011 for the
        # confidences on tiktok)
        self.projection = ModalityProjection(self.modality_dims, self.content_size)
        self.preference = nn.ModuleList(nn.Embedding(self.n_users, self.content_size) for _ in range(n_modalities))
        self.id_embedding = nn.Embedding(n_nodes, self.embedding_size)
        embeddings = [self.id_embedding, *self.preference]
        if self.weight_mode == "confid":
            self.confidence = nn.Embedding(n_nodes, n_modalities)
            embeddings.append(self.confidence)
        for embedding in embeddings:
            nn.init.xavier_normal_(embedding.weight)
        inter = dataset.inter_matrix(form="coo")
        users = torch.as_tensor(inter.row, dtype=torch.long)
        items = torch.as_tensor(inter.col, dtype=torch.long) + self.n_users
        # E: the training interactions as one-direction user -> item edges (the reference's edge_index)
        self.register_buffer("edge_index", torch.stack([users, items]), persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        for key in ["embedding_size", "content_size", "n_layers"]:
            require_int(config, key, minimum=1)
        require_int(config, "n_routing", minimum=0)
        if config["weight_mode"] not in cls.WEIGHT_MODES:
            raise ConfigError(f"weight_mode: got {config['weight_mode']!r}; expected one of {list(cls.WEIGHT_MODES)}")
        if config["routing_direction"] not in cls.ROUTING_DIRECTIONS:
            raise ConfigError(
                f"routing_direction: got {config['routing_direction']!r}; expected one of {list(cls.ROUTING_DIRECTIONS)}"
            )
        if not isinstance(config["pruning"], bool):
            raise ConfigError(f"pruning: got {config['pruning']!r}; expected True or False")

    @property
    def both_directions(self):
        r"""``E2``: ``E`` (user -> item) followed by the reversed edges (item -> user)."""
        return torch.cat([self.edge_index, self.edge_index.flip(0)], dim=1)

    def route(self, preference, content):
        r"""The user preferences after ``n_routing`` rounds of routing (reference ``CGCN.forward``)."""
        if self.routing_direction == "user_to_item":
            # every message of E goes to an item row, and only the user rows update the preference:
            # x_hat[users] = 0 and norm(u + 0) = u (u is already unit-norm), so the rounds are skipped
            return preference
        edges = self.edge_index.flip(0)
        for _ in range(self.n_routing):
            x_hat, _ = attention_propagate(torch.cat([preference, content]), edges)
            preference = F.normalize(preference + x_hat[: self.n_users], dim=1)
        return preference

    def forward(self, items=None):
        both = self.both_directions
        contents, affinities = [], []
        for m, projected in enumerate(self.projection(self.item_features)):
            content = F.normalize(F.leaky_relu(projected), dim=1)
            preference = self.route(F.normalize(self.preference[m].weight, dim=1), content)
            x = torch.cat([preference, content])
            x_hat, affinity = attention_propagate(x, both)
            contents.append(x + x_hat)
            affinities.append(affinity)
        affinity = torch.stack(affinities, dim=1)  # (|E2|, modalities)
        if self.weight_mode == "mean":
            weight = affinity.mean(dim=1)
        elif self.weight_mode == "max":
            weight = affinity.max(dim=1).values
        else:  # confidence of each message's source: users for E, items for reversed(E)
            weight = (affinity * self.confidence(both[0])).max(dim=1).values
        if self.pruning:
            weight = F.relu(weight)

        e = F.normalize(self.id_embedding.weight, dim=1)
        id_representation = e
        for _ in range(self.n_layers):
            e = propagate(e, both, weight)
            id_representation = id_representation + e
        representation = torch.cat([id_representation] + contents, dim=1)
        user_all, item_all = torch.split(representation, [self.n_users, self.n_items])
        return user_all, (item_all if items is None else item_all[items])

    def regularizer(self, users, pos_items, neg_items, scored_items=None):
        r"""The reference's ``reg_loss``: mean over the batch (and the dimensions) of the squared ID
        embeddings of the users and items and of the users' preferences; MLPs and confidences are not
        regularised."""
        users2 = torch.cat([users, users])
        items2 = torch.cat([pos_items, neg_items]) + self.n_users
        weight = self.id_embedding.weight
        reg = (weight[users2].pow(2) + weight[items2].pow(2)).mean()
        for preference in self.preference:
            reg = reg + preference.weight[users2].pow(2).mean()
        return reg

