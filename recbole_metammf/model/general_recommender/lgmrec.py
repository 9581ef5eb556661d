r"""LGMRec: local graph embeddings of IDs and of each modality, plus global hypergraph embeddings.

Guo et al., "LGMRec: Local and Global Graph Learning for Multimodal Recommendation", AAAI 2024
(Sec. "Methodology": local graph embedding, global hypergraph embedding, fusion and prediction,
optimisation); reference code: github.com/georgeguo-cn/LGMRec ``models/lgmrec.py`` (the same as
enoche/MMRec ``src/models/lgmrec.py``, which fixes one typo, below), settings from MMRec
``src/configs/model/LGMRec.yaml`` (its Baby column).

* Collaborative graph embedding (CGE): LightGCN (``n_layers``) from the ID embeddings on the training
  graph ``D^{-1/2} A D^{-1/2}``, the mean of layers ``0..L``: ``E^c``.
* Modality graph embedding (MGE), per modality ``m``: items ``x_i^m W_m`` (no bias), users the mean of
  their items', ``e_u^m = mean_{i in N(u)} x_i^m W_m``; then ``n_modality_layers`` propagations by the
  same normalised graph (the last layer, no mean): ``E^m``. Local embeddings ``E^L = E^c + sum_m E^m / ||E^m||``
  (each row L2-normalised).
* Global hypergraph embedding (GHE): ``K`` = ``n_hyperedges`` learnable hyperedges per modality, item
  memberships ``H_i^m = softmax_K((x_i^m V_m + g) / tau)`` (Gumbel noise ``g`` in training), user
  memberships ``H_u^m = softmax_K((sum_{i in N(u)} x_i^m V_m + g) / tau)``, both with dropout
  (``hyperedge_dropout``); ``n_hyper_layers`` of ``z = H_i^T e_i``, ``e_i <- H_i z``, ``e_u = H_u z`` from
  the CGE items (:func:`~recbole_metammf.model.layers.hypergraph_propagation`): ``E^{H,m}``;
  ``E^H = sum_m E^{H,m}``.
* Representations ``E = E^L + alpha E^H / ||E^H||``; score ``e_u . e_i``.
* Loss: ``BPR + cl_weight * L_HCL + reg_weight * (||e_u|| + ||e_i+|| + ||e_i-||) / B`` (Frobenius norms of
  the batch's final embeddings, not squared, as the reference), with the hypergraph contrastive loss

      L_HCL = sum_{m < m'} [ sum_{u in batch} l(E^{H,m}_u, E^{H,m'}_u; E^{H,m'}_U) + sum_{i+ in batch} l(E^{H,m}_i, E^{H,m'}_i; E^{H,m'}_I) ]

  ``l(a, p; C) = -log exp(s(a, p)/tau) / sum_{c in C} exp(s(a, c)/tau)`` (cosine ``s``; the candidates
  ``C`` are all users, or all items; :func:`~recbole_metammf.model.layers.info_nce_loss`), summed over
  the batch as the reference; ``tau`` = ``temperature`` (0.2, the reference's, for the Gumbel softmax too).

Generalised from the reference's image and text to any ``modalities``: one projection, hyperedge set and
hypergraph view each; the contrastive loss runs over every pair ``m < m'`` (for two modalities exactly the
reference's ``(image, text)`` term; with one modality there is no pair and no contrastive term).

Differs from the reference, and why:

* the user memberships of the text modality are ``softmax(ut_hyper)`` as in MMRec's copy; the authors'
  repository assigns them to ``uv_hyper`` (overwriting the image ones) and leaves ``ut_hyper`` unnormalised,
  a typo MMRec fixed;
* evaluation uses ``softmax(logits / tau)``, without Gumbel noise (the reference draws noise at every
  test too): scores are deterministic and computed once per evaluation;
* RecBole's padding item 0 belongs to no hyperedge (its membership row is zero) and is left out of the
  item candidates of the contrastive loss; it has no edges;
* ``embedding_size`` is both MMRec's ``embedding_size`` and ``feat_embed_dim`` (both 64; the local
  embeddings add them, so they must be equal);
* the reference's ``cf_model: mf`` alternative is left out (its yaml runs ``lightgcn``);
* the training loop, early stopping (10 epochs without a better validation NDCG@20, the reference: 20 on
  recall@20) and the evaluation (RecBole's full ranking) are the plugin's.
"""

import itertools

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.loss import EmbLoss

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import (
    ModalityProjection,
    hypergraph_propagation,
    info_nce_loss,
    light_gcn,
    normalized_training_graph,
    split_modalities,
)
from recbole_metammf.utils import require_int, require_number


class LGMRec(MultimodalRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.n_modality_layers = config["n_modality_layers"]
        self.n_hyper_layers = config["n_hyper_layers"]
        self.n_hyperedges = config["n_hyperedges"]
        self.alpha = config["alpha"]
        self.cl_weight = config["cl_weight"]
        self.temperature = config["temperature"]

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.feature_projection = ModalityProjection(self.modality_dims, self.embedding_size, bias=False)  # W_m
        self.hyperedges = ModalityProjection(self.modality_dims, self.n_hyperedges, bias=False)  # V_m
        for parameter in self.parameters():
            nn.init.xavier_uniform_(parameter)  # as the reference (every parameter)
        self.hyperedge_dropout = nn.Dropout(config["hyperedge_dropout"])
        self.emb_loss = EmbLoss()

        self.register_buffer("norm_adjacency", normalized_training_graph(dataset, self.n_users, self.n_items), persistent=False)
        interactions = dataset.inter_matrix(form="coo")
        indices = torch.unique(torch.as_tensor(np.vstack([interactions.row, interactions.col]), dtype=torch.long), dim=1)
        degree = torch.bincount(indices[0], minlength=self.n_users).clamp_min(1).float()
        size = (self.n_users, self.n_items)
        binary = torch.sparse_coo_tensor(indices, torch.ones(indices.shape[1]), size, check_invariants=False).coalesce()
        mean = torch.sparse_coo_tensor(indices, 1.0 / degree[indices[0]], size, check_invariants=False).coalesce()
        self.register_buffer("interactions", binary, persistent=False)  # R: user x item, binary
        self.register_buffer("user_mean", mean, persistent=False)  # D_u^{-1} R: a user's mean over its items
        member = torch.ones(self.n_items, 1)
        member[0] = 0.0  # RecBole's padding item joins no hyperedge
        self.register_buffer("item_member", member, persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        for key in ["embedding_size", "n_hyper_layers", "n_hyperedges"]:
            require_int(config, key, minimum=1)
        for key in ["n_layers", "n_modality_layers"]:
            require_int(config, key, minimum=0)
        for key in ["alpha", "cl_weight"]:
            require_number(config, key, lambda v: v >= 0, "a number >= 0")
        require_number(config, "temperature", lambda v: v > 0, "a number > 0")

    def collaborative_embeddings(self):
        r"""CGE: LightGCN of the ID embeddings, all users then all items."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        return light_gcn(ego, self.norm_adjacency, self.n_layers)

    def modality_embeddings(self):
        r"""MGE: ``E^m`` of every modality, ``(n_users + n_items, d)`` each."""
        out = []
        for items in self.feature_projection(self.item_features):
            nodes = torch.cat([self.user_mean @ items, items])
            for _ in range(self.n_modality_layers):
                nodes = self.norm_adjacency @ nodes
            out.append(nodes)
        return out

    def memberships(self, block, hyperedges):
        r"""``(H_i, H_u)`` of one modality: soft memberships in its hyperedges, each row summing to one
        (zero for the padding item); Gumbel noise in training, none in evaluation; no dropout yet."""
        item_logits = hyperedges(block)
        user_logits = self.interactions @ item_logits
        if self.training:
            item, user = (F.gumbel_softmax(x, tau=self.temperature, hard=False, dim=1) for x in (item_logits, user_logits))
        else:
            item, user = (torch.softmax(x / self.temperature, dim=1) for x in (item_logits, user_logits))
        return item * self.item_member, user

    def hypergraph_embeddings(self, item_cf):
        r"""GHE: ``(E^{H,m}_U, E^{H,m}_I)`` of every modality, propagated from the CGE items ``item_cf``."""
        out = []
        for block, hyperedges in zip(split_modalities(self.item_features, self.modality_dims), self.hyperedges.projections):
            item, user = self.memberships(block, hyperedges)
            out.append(hypergraph_propagation(self.hyperedge_dropout(item), self.hyperedge_dropout(user), item_cf, self.n_hyper_layers))
        return out

    def representation_parts(self):
        r"""The three summands of ``E = E^c + sum_m E^m / ||E^m|| + alpha E^H / ||E^H||`` (all users, then all
        items, each ``(n_users + n_items, d)``) and the hypergraph views of the contrastive loss."""
        cf = self.collaborative_embeddings()
        modality = sum(F.normalize(e, dim=1) for e in self.modality_embeddings())
        views = self.hypergraph_embeddings(cf[self.n_users :])
        global_ = sum(torch.cat([users, items]) for users, items in views)
        return cf, modality, self.alpha * F.normalize(global_, dim=1), views

    def representations(self):
        r"""Final user and item representations, and the hypergraph views of the contrastive loss."""
        cf, modality, global_, views = self.representation_parts()
        user_all, item_all = torch.split(cf + modality + global_, [self.n_users, self.n_items])
        return user_all, item_all, views

    def forward(self, items=None):
        user_all, item_all, _ = self.representations()
        return user_all, (item_all if items is None else item_all[items])

    def hypergraph_contrastive_loss(self, views, users, items):
        r"""``L_HCL`` over every pair of modalities, summed over the batch's users and positive items."""
        loss = 0
        for (users_a, items_a), (users_b, items_b) in itertools.combinations(views, 2):
            loss = loss + info_nce_loss(users_a[users], users_b[users], users_b, self.temperature).sum()
            loss = loss + info_nce_loss(items_a[items], items_b[items], items_b[1:], self.temperature).sum()
        return loss

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        pos_items, neg_items = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        user_all, item_all, views = self.representations()
        user_e, pos_e, neg_e = user_all[users], item_all[pos_items], item_all[neg_items]
        bpr = self.bpr_loss(user_e, pos_e, neg_e)
        reg = self.emb_loss(user_e, pos_e, neg_e).squeeze()
        return bpr + self.cl_weight * self.hypergraph_contrastive_loss(views, users, pos_items) + self.reg_weight * reg
