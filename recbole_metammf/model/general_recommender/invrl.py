r"""InvRL: invariant representation learning for multimedia recommendation.

Du et al., "Invariant Representation Learning for Multimedia Recommendation", ACM MM 2022;
reference code: github.com/nickwzk/InvRL (``UltraGCN.py``, ``InvRL.py``, ``main.py``'s defaults,
which are its TikTok settings: the repository ships TikTok only).

The recommender (the reference's ``UltraGCNNet``):

* user ``u``: ``e_u`` of width ``embedding_size + feature_embedding_size``; item ``i``:
  ``e_i = [v_i ; W (m * x_i) + b]``, ``v_i`` an ID embedding, ``x_i`` the concatenation of the item's
  ``modalities`` (each L2-normalised, as the reference: ``normalize_modalities: l2``), ``m`` the
  invariance mask on the feature dimensions (all ones until it is learned), ``W, b`` the reference's
  ``MLP`` (one linear layer). Score ``e_u . e_i``.
* loss: UltraGCN's constraint loss without its item-item term (the reference keeps only this one):
  ``sum (w1 + w2 beta_u beta_i) BCE(s_ui, 1) + sum mean_j (w3 + w4 beta_u beta_j) BCE(s_uj, 0)``
  over the batch's positives and ``negative_num`` uniform negatives per positive, with
  ``beta_u = sqrt(d_u + 1) / d_u``, ``beta_i = 1 / sqrt(d_i + 1)``
  (:func:`~recbole_metammf.model.layers.ultragcn_constraint_weights`,
  :func:`~recbole_metammf.model.layers.ultragcn_constraint_loss`), plus
  ``reg_weight (||E_U||^2 + item_reg_scale ||V||^2) + projection_reg_weight (||W||^2 + ||b||^2)``
  at every batch, as the reference's ``regs``.

Learning the mask ``m`` (the reference's ``solve``: ``invariant_rounds`` rounds, each of two stages),
with the embeddings ``e_u, v_i`` of the trained UltraGCN frozen:

1. heterogeneous environment learning (``frontend``): the training interactions are split at random
   into ``n_environments`` environments; a linear head ``W_e, b_e`` per environment is fitted on its
   interactions only (``environment_epochs`` epochs, the constraint loss,
   ``environment_reg_weight (||W_e||^2 + ||b_e||^2 + mean |W_e * m_prev|)``, ``m_prev`` the previous
   round's mask, 0 in the first); every interaction then moves to the environment whose head scores
   it highest (``argmax_e s_e(u, i)``, the reference's ``cal_error``: the environment that fits it
   best), until at most ``environment_tolerance`` of the interactions move, or
   ``environment_iterations`` times;
2. invariant learning (``backend``): a fresh head ``W`` (no bias) over the gated features
   ``x * g``, ``g = clamp(mu + sigma eps + 1/2, 0, 1)``
   (:class:`~recbole_metammf.model.layers.StochasticGate`), is trained for ``mask_epochs`` epochs;
   each step takes one batch of every environment and minimises

       mean_e L_e + alpha sum ((sum_e (dL_e/dW - mean_e dL_e/dW)^2) * (mu + 1/2))^2 + lambda ||mu||^2

   (:func:`~recbole_metammf.model.layers.irm_gradient_penalty`; ``L_e`` the constraint loss of
   environment ``e``'s batch plus ``environment_reg_weight ||W||^2``). The mask is
   ``m = clamp(mu + 1/2, 0, 1)``; ``alpha`` (``irm_weight``) and ``lambda`` (``gate_reg_weight``)
   grow by ``weight_growth`` after every round.

Then the recommender is trained on ``m * x``.

Differs from the reference, and why:

* two stages in one ``trainer.fit``: the reference pretrains UltraGCN (its own run, early-stopped),
  learns the mask from the saved model, then trains a fresh UltraGCN with the mask. Here the first
  ``warmup_epochs`` epochs of RecBole's training are the pretraining (mask all ones); at the first
  batch after them the model learns the mask from its current embeddings, in its own loops over the
  training interactions (its own Adam optimisers on the heads and the gate, its own batches of
  ``environment_batch_size``), and training goes on from the same embeddings and head with the mask
  (the reference starts the final model from fresh ``U, V, MLP``). A restart would let the
  validation score fall while RecBole's early stopping counts, so that the run could end on the
  unmasked warm-up model; warm-starting keeps the best checkpoint an InvRL one;
* one set of weights for the whole run: the final stage's (``p_embp`` reg 1e-4, ``p_ctx`` reg 0.1,
  ``wdi`` 2); the reference pretrains with 1e-4 / 0.01 / 1. The mask-learning heads use the
  reference's ``p_proj`` reg 0.01 (``environment_reg_weight``) and ``learning_rate``;
* RecBole's sampled negative is not used: the loss draws its own ``negative_num`` uniform negatives
  over all items (as the reference; like it, a draw may hit a positive);
* the reference's TikTok text is a learned bag of word embeddings, initialised from the pretrained
  model; here every modality is a fixed feature field (this tiktok has no text);
* a backend step averages over the environments that hold interactions (the reference divides by
  ``n_environments`` whatever); an environment's batches cycle within an epoch until the largest
  environment has been seen once (the reference reshuffles an exhausted environment);
* the frozen part of the reference's per-environment ``regs`` (``U``, ``V``) is left out: it has no gradient;
* RecBole's padding item 0 has an ID embedding and is never drawn as a negative; the training loop,
  early stopping and full-ranking evaluation are the plugin's.
"""

from logging import getLogger

import torch
import torch.nn as nn

from recbole_metammf.model.abstract_recommender import MultimodalRecommender
from recbole_metammf.model.layers import (
    StochasticGate,
    irm_gradient_penalty,
    ultragcn_constraint_loss,
    ultragcn_constraint_weights,
)
from recbole_metammf.utils import ConfigError, require_int

INT_KEYS = {  # key -> minimum
    "embedding_size": 1,
    "feature_embedding_size": 1,
    "negative_num": 1,
    "warmup_epochs": 1,
    "invariant_rounds": 0,
    "n_environments": 1,
    "environment_iterations": 1,
    "environment_epochs": 1,
    "mask_epochs": 1,
    "environment_batch_size": 1,
}
NON_NEGATIVE_KEYS = [
    "item_reg_scale",
    "projection_reg_weight",
    "environment_reg_weight",
    "environment_tolerance",
    "irm_weight",
    "gate_reg_weight",
    "gate_sigma",
    "weight_growth",
]


class InvRL(MultimodalRecommender):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        for key in list(INT_KEYS) + NON_NEGATIVE_KEYS:
            setattr(self, key, config[key])
        self.constraint_weights = tuple(float(w) for w in config["constraint_weights"])
        self.learning_rate = config["learning_rate"]
        self.logger = getLogger()

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size + self.feature_embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.projection = self.new_head(bias=True)  # the reference's MLP
        nn.init.normal_(self.user_embedding.weight, std=0.01)  # as the reference
        nn.init.normal_(self.item_embedding.weight, std=0.01)

        interactions = dataset.inter_matrix(form="coo")  # the training interactions
        beta_user, beta_item = ultragcn_constraint_weights(interactions)
        self.register_buffer("beta_user", beta_user, persistent=False)
        self.register_buffer("beta_item", beta_item, persistent=False)
        self.register_buffer("train_users", torch.as_tensor(interactions.row, dtype=torch.long), persistent=False)
        self.register_buffer("train_items", torch.as_tensor(interactions.col, dtype=torch.long), persistent=False)
        self.register_buffer("environment", torch.zeros_like(self.train_users), persistent=False)
        self.register_buffer("feature_mask", torch.ones(self.item_features.shape[1]))  # m, saved with the model
        self.register_buffer("mask_learned", torch.tensor(False))
        self._epochs_started = 0

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        for key, minimum in INT_KEYS.items():
            require_int(config, key, minimum=minimum)
        for key in NON_NEGATIVE_KEYS:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{key}: got {value!r}; expected a number >= 0")
        weights = config["constraint_weights"]
        if (
            not isinstance(weights, (list, tuple))
            or len(weights) != 4
            or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)
        ):
            raise ConfigError(f"constraint_weights: got {weights!r}; expected four numbers [w1, w2, w3, w4], e.g. [1, 1, 1, 1]")

    def new_head(self, bias):
        r"""A linear map of the concatenated features to ``feature_embedding_size``, initialised as the reference's MLP."""
        head = nn.Linear(self.item_features.shape[1], self.feature_embedding_size, bias=bias).to(self.item_features.device)
        nn.init.normal_(head.weight, std=0.01)
        if bias:
            nn.init.zeros_(head.bias)
        return head

    def train(self, mode=True):
        if mode:
            self._epochs_started += 1  # the trainer calls train() at the start of every epoch
        return super().train(mode)

    def forward(self, items=None):
        features = self.item_features if items is None else self.item_features[items]
        ids = self.item_embedding.weight if items is None else self.item_embedding(items)
        return self.user_embedding.weight, torch.cat([ids, self.projection(features * self.feature_mask)], dim=1)

    def constraint_loss(self, user_all, item_all, users, items):
        r"""UltraGCN's constraint loss of the positive pairs ``(users, items)`` against ``negative_num`` uniform negatives each."""
        negatives = torch.randint(1, self.n_items, (len(users), self.negative_num), device=users.device)
        user_e = user_all[users]
        pos_scores = (user_e * item_all[items]).sum(-1)
        neg_scores = (user_e.unsqueeze(1) * item_all[negatives]).sum(-1)
        beta_u = self.beta_user[users]
        pos_beta, neg_beta = beta_u * self.beta_item[items], beta_u.unsqueeze(1) * self.beta_item[negatives]
        return ultragcn_constraint_loss(pos_scores, neg_scores, pos_beta, neg_beta, self.constraint_weights)

    def calculate_loss(self, interaction):
        if self.training and not self.mask_learned and self.invariant_rounds and self._epochs_started > self.warmup_epochs:
            self.learn_invariant_mask()
        user_all, item_all = self.forward()
        loss = self.constraint_loss(user_all, item_all, interaction[self.USER_ID], interaction[self.ITEM_ID])
        reg = user_all.pow(2).sum() + self.item_reg_scale * self.item_embedding.weight.pow(2).sum()
        projection_reg = sum(p.pow(2).sum() for p in self.projection.parameters())
        return loss + self.reg_weight * reg + self.projection_reg_weight * projection_reg

    # ---- the mask: heterogeneous environments, then invariant learning (the reference's solve) -----

    def head_loss(self, head, users, items, features=None):
        r"""Constraint loss of one batch for a head over the (unmasked or gated) features, the embeddings frozen."""
        features = self.item_features if features is None else features
        item_all = torch.cat([self.item_embedding.weight.detach(), head(features)], dim=1)
        return self.constraint_loss(self.user_embedding.weight.detach(), item_all, users, items)

    def batches(self, rows):
        r"""``rows`` (indices of training interactions) shuffled, in batches of ``environment_batch_size``."""
        return rows[torch.randperm(len(rows), device=rows.device)].split(self.environment_batch_size)

    def fit_environment_head(self, rows, previous_mask):
        r"""Stage 1: one environment's head ``W_e, b_e``, fitted on its interactions ``rows``."""
        head = self.new_head(bias=True)
        optimizer = torch.optim.Adam(head.parameters(), lr=self.learning_rate)
        for _ in range(self.environment_epochs):
            for batch in self.batches(rows):
                loss = self.head_loss(head, self.train_users[batch], self.train_items[batch])
                reg = sum(p.pow(2).sum() for p in head.parameters()) + (head.weight * previous_mask).abs().mean()
                optimizer.zero_grad()
                (loss + self.environment_reg_weight * reg).backward()
                optimizer.step()
        return head

    def learn_environments(self, previous_mask):
        r"""Stage 1: the environment of every training interaction, from a random start."""
        n = len(self.train_users)
        environment = torch.randint(0, self.n_environments, (n,), device=self.train_users.device)
        for iteration in range(1, self.environment_iterations + 1):
            scores = []
            for e in range(self.n_environments):
                head = self.fit_environment_head((environment == e).nonzero().view(-1), previous_mask)
                with torch.no_grad():
                    item_all = torch.cat([self.item_embedding.weight, head(self.item_features)], dim=1)
                    scores.append((self.user_embedding.weight[self.train_users] * item_all[self.train_items]).sum(-1))
            assigned = torch.stack(scores).argmax(dim=0)
            moved = int((assigned != environment).sum())
            environment = assigned
            if moved <= self.environment_tolerance * n:
                break
        self.logger.info(f"InvRL environments: {iteration} iterations, {moved} of {n} interactions moved at the last")
        return environment

    def learn_gate(self, environment, irm_weight, gate_reg_weight):
        r"""Stage 2: the gate ``mu`` and a head ``W`` under the invariance penalty; returns ``clamp(mu + 1/2, 0, 1)``."""
        head, gate = self.new_head(bias=False), StochasticGate(self.item_features.shape[1], self.gate_sigma)
        gate.to(self.item_features.device).train()
        optimizer = torch.optim.Adam([head.weight, gate.mu], lr=self.learning_rate)
        groups = [(environment == e).nonzero().view(-1) for e in range(self.n_environments)]
        groups = [rows for rows in groups if len(rows)]
        for _ in range(self.mask_epochs):
            batches = [self.batches(rows) for rows in groups]
            for step in range(max(len(b) for b in batches)):
                losses, gradients = [], []
                for environment_batches in batches:
                    batch = environment_batches[step % len(environment_batches)]
                    loss = self.head_loss(head, self.train_users[batch], self.train_items[batch], gate(self.item_features))
                    loss = loss + self.environment_reg_weight * head.weight.pow(2).sum()
                    losses.append(loss)
                    gradients.append(torch.autograd.grad(loss, head.weight, create_graph=True)[0])
                penalty = irm_gradient_penalty(gradients, gate.mu + 0.5)
                total = torch.stack(losses).mean() + irm_weight * penalty + gate_reg_weight * gate.regularizer()
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
        return gate.mask().detach()

    def learn_invariant_mask(self):
        r"""``invariant_rounds`` rounds of stage 1 and stage 2; sets ``feature_mask``."""
        mask = torch.zeros_like(self.feature_mask)  # the reference's first round has no previous mask
        irm_weight, gate_reg_weight = self.irm_weight, self.gate_reg_weight
        for round_ in range(self.invariant_rounds):
            self.environment = self.learn_environments(mask)
            mask = self.learn_gate(self.environment, irm_weight, gate_reg_weight)
            irm_weight, gate_reg_weight = irm_weight * self.weight_growth, gate_reg_weight * self.weight_growth
            self.logger.info(
                f"InvRL round {round_ + 1}: mask mean {mask.mean():.4f}, min {mask.min():.4f}, max {mask.max():.4f}"
            )
        self.feature_mask.copy_(mask)
        self.mask_learned.fill_(True)
