r"""VBPR: visual Bayesian personalised ranking, over all the item's modalities.

He & McAuley, "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", AAAI 2016, Eq. 2:

    x_ui = alpha + beta_u + beta_i + gamma_u . gamma_i + theta_u . (E f_i) + beta' . f_i

* ``f_i``: the item's features — here the concatenation of its ``modalities`` (the paper: one visual
  feature); ``E`` (``feature_embedding_size x F``) projects it into the preference space.
* ``gamma_u, gamma_i``: latent factors of size ``embedding_size``; ``theta_u``: the user's preference
  over the projected features, of size ``feature_embedding_size``.
* ``alpha`` and ``beta_u`` do not change a user's ranking nor the BPR difference ``x_ui - x_uj``, so
  they are left out; the item bias ``beta_i + beta' . f_i`` is kept (``item_bias: True``).

As an inner product: ``e_u = [gamma_u ; theta_u ; 1]``, ``e_i = [gamma_i ; E f_i ; beta_i + beta' . f_i]``.
Trained with BPR plus ``reg_weight`` times the regulariser named by ``regularization``:

* ``factors`` — the paper's ``lambda_Theta`` term, per training triple ``(u, i, j)``: the squared norms of
  ``gamma_u, theta_u, gamma_i, gamma_j, beta_i, beta_j``, averaged over the batch; ``E`` and ``beta'`` are
  not regularised (the paper's ``lambda_E = 0``: they are few and shared by every item);
* ``embeddings`` — the reference code's (enoche/MMRec ``src/models/vbpr.py``): RecBole's ``EmbLoss`` of the
  batch's whole representations, ``E f_i`` included;
* ``parameters`` — Eq. 19 of the MetaMMF paper, ``||Phi||^2`` over all parameters.
"""

import torch
import torch.nn as nn
from recbole.model.init import xavier_uniform_initialization
from recbole.model.loss import EmbLoss

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import ModalityProjection
from recbole_metammf.utils import ConfigError, require_int


class VBPR(MultimodalRecommender):
    REGULARIZATIONS = ("factors", "embeddings", "parameters")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.feature_embedding_size = config["feature_embedding_size"]
        self.item_bias = config["item_bias"]
        self.regularization = config["regularization"]
        self.emb_loss = EmbLoss()

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size + self.feature_embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.projection = ModalityProjection(self.modality_dims, self.feature_embedding_size, bias=False, concatenate=True)
        if self.item_bias:
            self.item_bias_embedding = nn.Embedding(self.n_items, 1)  # beta_i
            self.feature_bias = nn.Linear(self.item_features.shape[1], 1, bias=False)  # beta'
        self.apply(xavier_uniform_initialization)
        if self.item_bias:
            nn.init.zeros_(self.item_bias_embedding.weight)
            nn.init.zeros_(self.feature_bias.weight)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "embedding_size", minimum=1)
        require_int(config, "feature_embedding_size", minimum=1)
        if not isinstance(config["item_bias"], bool):
            raise ConfigError(f"item_bias: got {config['item_bias']!r}; expected True or False")
        if config["regularization"] not in cls.REGULARIZATIONS:
            raise ConfigError(
                f"regularization: got {config['regularization']!r}; expected factors (the VBPR paper's lambda_Theta), "
                "embeddings (the reference code's EmbLoss) or parameters (Eq. 19, ||Phi||^2)"
            )

    def forward(self, items=None):
        if items is None:
            features, gamma = self.item_features, self.item_embedding.weight
        else:
            features, gamma = self.item_features[items], self.item_embedding(items)
        (projected,) = self.projection(features)
        item_repr = [gamma, projected]
        user_repr = [self.user_embedding.weight]
        if self.item_bias:
            bias = self.feature_bias(features)
            bias = bias + (self.item_bias_embedding.weight if items is None else self.item_bias_embedding(items))
            item_repr.append(bias)
            user_repr.append(torch.ones_like(self.user_embedding.weight[:, :1]))
        return torch.cat(user_repr, dim=1), torch.cat(item_repr, dim=1)

    def regularizer(self, users, pos_items, neg_items, scored_items=None):
        if self.regularization == "parameters":
            return self.l2_regularizer()
        items = torch.cat([pos_items, neg_items])
        if self.regularization == "embeddings":
            if scored_items is None:
                scored_items = self.forward(items)[1].chunk(2)
            return self.emb_loss(self.user_embedding(users), *scored_items)
        factors = [self.user_embedding(users), self.item_embedding(items)]
        if self.item_bias:
            factors.append(self.item_bias_embedding(items))
        return sum(factor.pow(2).sum() for factor in factors) / users.shape[0]
