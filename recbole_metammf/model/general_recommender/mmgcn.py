r"""MMGCN: multi-modal graph convolution network.

Wei et al., "MMGCN: Multi-modal Graph Convolution Network for Personalized Recommendation of
Micro-video", ACM MM 2019, Section 3, written after the authors' code (github.com/weiyinwei/MMGCN,
``Model_MMGCN.py`` / ``BaseModel.py``, run as its README's TikTok command). One user-item graph per
modality ``m``, the training interactions in both directions, no self-loops; on graph ``m`` a user
node starts from a learned preference ``u_m`` and an item node from its features ``i_m`` (raw, or
projected to ``latent_size`` by a linear layer), ``x = norm([u_m ; i_m])``. Each of the
``n_layers`` layers, for every node:

* aggregation (Eq. 1-2, ``aggr_mode = mean``): ``h = LeakyReLU(mean_{j in N} x_j W_1)`` (no bias);
* combination (Eq. 3-5): ``x_hat = LeakyReLU(W_2 x + b_2) + e_id`` with the node's ID embedding
  ``e_id`` (``embedding_size``, shared by the modalities and added in every layer), then
  ``x' = LeakyReLU(W_3 [h ; x_hat] + b_3)`` (``combination: concat``) or
  ``LeakyReLU(W_3 h + b_3 + x_hat)`` (``combination: add``).

The first layer maps the modality's width to ``embedding_size``, the later ones keep it. The
representation is the mean over the modalities of the last layer's output (the reference's
``(v_rep + a_rep + t_rep) / 3``) and the score the inner product (Eq. 6). Loss: BPR plus
``reg_weight`` times the batch mean of the squared ID embeddings of the batch's users and items
plus the mean squared user preference (the reference's ``loss``). Initialisation as the reference:
``xavier_normal_`` for the ID embeddings, the preferences, ``W_1``, ``W_2`` and the first layer's
``W_3``; PyTorch's default for the rest.

Unlike the reference, the ID embeddings and the preferences are trained: the reference builds them
as ``xavier_normal_(torch.rand(..., requires_grad=True)).cuda()``, a plain tensor that is never a
module parameter, so its optimizer never updates them (and its regulariser has no gradient).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import normalized_training_graph, split_modalities
from recbole_metammf.utils import ConfigError, require_int


class MMGCNLayer(nn.Module):
    r"""One MMGCN layer on one modality's graph: aggregation, then combination with the ID embedding.

    ``in_dim``: the width of the layer's input; ``dim``: the ID embedding's and the output's width."""

    def __init__(self, in_dim, dim, concat, first):
        super().__init__()
        self.concat = concat
        self.aggregate = nn.Linear(in_dim, in_dim, bias=False)  # W_1 (reference conv_embed_l)
        self.transform = nn.Linear(in_dim, dim)  # W_2 (linear_layer_l)
        self.combine = nn.Linear(in_dim + dim if concat else in_dim, dim)  # W_3 (g_layer_l)
        nn.init.xavier_normal_(self.aggregate.weight)
        nn.init.xavier_normal_(self.transform.weight)
        if first:  # the reference initialises g_layer1 only; later g_layers keep PyTorch's default
            nn.init.xavier_normal_(self.combine.weight)

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
        self.latent_size = config["latent_size"]
        self.n_layers = config["n_layers"]
        concat = config["combination"] == "concat"
        n_nodes = self.n_users + self.n_items

        # the reference's dim_latent: a linear projection (PyTorch's default init) of the features, or none
        if self.latent_size:
            self.projection = nn.ModuleList(nn.Linear(dim, self.latent_size) for dim in self.modality_dims)
            widths = [self.latent_size] * len(self.modality_dims)
        else:
            self.projection = None
            widths = list(self.modality_dims)
        self.preference = nn.ModuleList(nn.Embedding(self.n_users, width) for width in widths)
        self.id_embedding = nn.Embedding(n_nodes, self.embedding_size)
        for embedding in [self.id_embedding, *self.preference]:
            nn.init.xavier_normal_(embedding.weight)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                MMGCNLayer(width if n == 0 else self.embedding_size, self.embedding_size, concat, first=n == 0)
                for n in range(self.n_layers)
            )
            for width in widths
        )
        adjacency = normalized_training_graph(dataset, self.n_users, self.n_items, "mean")
        self.register_buffer("adjacency", adjacency, persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "embedding_size", minimum=1)
        require_int(config, "latent_size", minimum=0)
        require_int(config, "n_layers", minimum=1)
        if config["combination"] not in ("concat", "add"):
            raise ConfigError(f"combination: got {config['combination']!r}; expected 'concat' or 'add'")

    def modality_inputs(self):
        r"""Each modality's item input: the raw features, or their projection to ``latent_size``."""
        blocks = split_modalities(self.item_features, self.modality_dims)
        if self.projection is None:
            return list(blocks)
        return [projection(block) for projection, block in zip(self.projection, blocks)]

    def forward(self, items=None):
        id_embedding = self.id_embedding.weight
        representation = 0
        for preference, item_input, layers in zip(self.preference, self.modality_inputs(), self.layers):
            x = F.normalize(torch.cat([preference.weight, item_input], dim=0), dim=1)
            for layer in layers:
                x = layer(x, id_embedding, self.adjacency)
            representation = representation + x
        representation = representation / len(self.layers)
        user_all, item_all = torch.split(representation, [self.n_users, self.n_items])
        return user_all, (item_all if items is None else item_all[items])

    def regularizer(self, users, pos_items, neg_items, scored_items=None):
        r"""The reference's ``reg_embedding_loss``: the batch mean of the squared ID embeddings of users
        and items, plus the mean squared preference (all users; the reference takes the visual
        modality's only, here every modality's)."""
        users2 = torch.cat([users, users])
        items2 = torch.cat([pos_items, neg_items]) + self.n_users
        weight = self.id_embedding.weight
        reg = (weight[users2].pow(2) + weight[items2].pow(2)).mean()
        for preference in self.preference:
            reg = reg + preference.weight.pow(2).mean()
        return reg

