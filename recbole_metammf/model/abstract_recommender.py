r"""Base classes of the plugin's recommenders.

* :class:`RepresentationRecommender` — inner-product scores of user and item representations,
  BPR + L2 loss (Eq. 19), representations computed once per evaluation. Every model of the plugin
  but Pop derives from it.
* :class:`MultimodalRecommender` — the same with the item modality features as a buffer; every
  multimodal model of the plugin derives from it.
* :class:`IDGraphRecommender` — ID embeddings of users and items through a stack of graph
  convolutions on the training user-item graph (the ID-only GraphSAGE and GAT baselines).
* :class:`FusionMFBackbone` — MetaMMF_MF's matrix-factorisation backbone (Eq. 16) with the fusion
  left to the subclass: MetaMMF_MF supplies the meta-learned fusion, the static fusion baselines
  (:class:`StaticFusionRecommender`) supply static early / late / hybrid fusion.
* :class:`LearnedGraphLayers` — mixin of the models with learned graph layers (IDGraphRecommender, FusionGCNBackbone): the
  keys of their layers and the training batch's edges left out of its message passing.
* :class:`FusionGCNBackbone` — mixin adding MetaMMF_GCN's graph convolution (Eq. 17-18) to any
  of those: ``class X_GCN(FusionGCNBackbone, X_MF)``.

So MetaMMF and its static-fusion counterparts share every line but the fusion.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_uniform_initialization
from recbole.model.loss import BPRLoss, EmbLoss
from recbole.utils import InputType

from recbole_metammf.model.layers import (
    MeanAggregationGCN,
    StaticFusion,
    edge_keys,
    knn_adjacency,
    light_gcn,
    mean_aggregation_adjacency,
    normalized_training_graph,
    scale_modality,
    split_modalities,
    target_major,
    training_graph,
    without_pairs,
)
from recbole_metammf.utils import ConfigError, DataError, modality_scaling, require_int


def modality_features(dataset, modalities, scaling="none"):
    r"""The item modality features, each scaled by ``scaling`` (:func:`scale_modality`) and
    concatenated in the order of ``modalities``.

    They come from RecBole's item features, so row ``j`` belongs to internal item id ``j`` and
    row 0 is the padding item. Returns the ``(n_items, sum of dims)`` float tensor and the dims.
    The modalities are float_seq fields of the dataset's ``.item`` file: :class:`recbole_metammf.config.Config`
    checked that before loading the data.
    """
    item_feat = dataset.get_item_feature()
    blocks = [item_feat[m].float() for m in modalities]
    for name, block in zip(modalities, blocks):
        bad = ~torch.isfinite(block)
        if bad.any():
            row = int(bad.any(dim=1).nonzero()[0])
            token = dataset.id2token(dataset.iid_field, row)
            raise DataError(f"item field '{name}' holds NaN or inf (item '{token}', internal id {row})")
    blocks = [scale_modality(block, scaling) for block in blocks]
    return torch.cat(blocks, dim=1), [block.shape[1] for block in blocks]


class RepresentationRecommender(GeneralRecommender):
    r"""A general recommender scored by the inner product of user and item representations, trained
    with BPR (Eq. 19).

    Subclasses implement :meth:`forward`, which returns the representations of all users and those
    of the requested items (all items when ``items`` is None). In evaluation mode the
    representations of all users and items are computed once and reused for every user batch.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.reg_weight = config["reg_weight"]
        self.loss_fct = BPRLoss()
        self._representations = None

    @classmethod
    def check_config(cls, config):
        r"""Refuse bad values of the keys this model reads, before any data is loaded."""

    def forward(self, items=None):
        raise NotImplementedError

    def train(self, mode=True):
        self._representations = None  # parameters change in training; recompute for the next evaluation
        return super().train(mode)

    def all_representations(self):
        r"""``(users, items)`` representations of everything; cached while the model is in eval mode."""
        if self.training:
            return self.forward()
        if self._representations is None:
            self._representations = self.forward()
        return self._representations

    def l2_regularizer(self):
        r"""``||Phi||^2`` over all parameters (Eq. 19)."""
        return sum(parameter.pow(2).sum() for parameter in self.parameters())

    def regularizer(self, users, pos_items, neg_items, scored_items=None):
        r"""The term weighted by ``reg_weight`` in the loss; Eq. 19's :meth:`l2_regularizer` unless a
        model follows another reference (GRCN and MMGCN regularise the batch's embeddings).
        ``scored_items``: the positive and negative items' representations of the pass that scored them
        (:meth:`calculate_loss`), for a regulariser of those representations not to compute them again."""
        return self.l2_regularizer()

    def bpr_loss(self, user_e, pos_e, neg_e):
        r"""BPR of the batch's users against their positive and negative items' representations."""
        return self.loss_fct((user_e * pos_e).sum(-1), (user_e * neg_e).sum(-1))

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        pos_items, neg_items = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        user_all, item_repr = self.forward(torch.cat([pos_items, neg_items]))
        pos_e, neg_e = item_repr.chunk(2)
        bpr = self.bpr_loss(user_all[users], pos_e, neg_e)
        return bpr + self.reg_weight * self.regularizer(users, pos_items, neg_items, (pos_e, neg_e))

    def predict(self, interaction):
        user_all, item_all = self.all_representations()
        return (user_all[interaction[self.USER_ID]] * item_all[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        user_all, item_all = self.all_representations()
        return (user_all[interaction[self.USER_ID]] @ item_all.t()).view(-1)


class MultimodalRecommender(RepresentationRecommender):
    r"""A :class:`RepresentationRecommender` that reads item modality features (``modalities``):
    their concatenation, scaled by ``normalize_modalities``, is the non-persistent buffer
    ``item_features`` (row ``j`` = internal item id ``j``), with the width of each in ``modality_dims``.
    """

    requires_modalities = True  # Config adds ``modalities`` to the item columns RecBole loads

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.modalities = list(config["modalities"])
        features, self.modality_dims = modality_features(dataset, self.modalities, modality_scaling(config))
        self.register_buffer("item_features", features, persistent=False)

    @classmethod
    def check_config(cls, config):
        r"""Refuse bad values of the keys this model reads, before any data is loaded."""
        super().check_config(config)
        modalities = config["modalities"]
        if not isinstance(modalities, (list, tuple)) or not modalities or not all(isinstance(m, str) for m in modalities):
            raise ConfigError(
                f"modalities: got {modalities!r}; expected a non-empty list of item float_seq field names, "
                "e.g. [v_feat, a_feat]"
            )
        modality_scaling(config)


class FusionMFBackbone(MultimodalRecommender):
    r"""The MF backbone of MetaMMF_MF (Eq. 16), whatever the fusion.

    A subclass supplies the fusion: :meth:`build_fusion` creates its modules and returns the width of
    each *branch* it outputs, :meth:`fuse` maps the concatenated features of items to the list of
    branch outputs, and ``branch_weights`` (default ``(1.0,)``) weighs the branches' scores.

    Branch ``b`` of item ``i`` is ``e_i^b = [fused_b(x_i) ; e_i^c]`` with the item's ID embedding
    ``e_i^c`` (``embedding_size = d_c``, shared by the branches); each branch has its own user
    embedding ``e_u^b`` of the same width, and the score is ``sum_b w_b e_u^b . e_i^b``. With one
    branch of weight 1 (MetaMMF, early fusion) this is exactly Eq. 16. Several branches are
    decision-level (late) fusion: each branch is scored on its own and the scores are combined.

    ``id_combination: sum`` makes ``e_i^b = fused_b(x_i) + e_i^c`` instead (``d_m = d_c``): the fused
    features then shift a full-width ID embedding rather than take half of its dimensions, so the
    model can represent every item LightGCN or BPR of the same width can.

    ``regularization``: ``parameters`` = Eq. 19's ``reg_weight * ||Phi||^2`` over all parameters;
    ``embeddings`` = ``reg_weight`` times RecBole's ``EmbLoss`` of the batch's layer-0 user embeddings and
    item representations ``e_i``, the fused half included (RecBole LightGCN's convention, and VBPR's
    reference code's): it keeps ``e_i^m`` from outgrowing the ID half, which Eq. 19 at 1e-6 does not.

    ``item_graph_k > 0`` adds, on every backbone (MF, GCN, LightGCN), the item-item graph of the multimodal
    models that propagate over one (LATTICE, Zhang et al., MM 2021, Sec. 3.2-3.3, which shows it on MF, NGCF and
    LightGCN backbones; FREEDOM, Zhou & Shen, MM 2023): the fixed kNN graph ``S = sum_m S_m / M`` of each
    modality's raw features (cosine similarity, each item's ``item_graph_k`` nearest items, LATTICE's
    similarity-weighted ``S_m = D^{-1/2} A_m D^{-1/2}``, built once), and the scored item representation
    becomes the backbone's plus ``h_i / ||h_i||`` with ``h = S^{L_i} e^(0)`` over ``n_item_layers`` layers,
    LATTICE's combination (:meth:`add_item_graph`). LATTICE and FREEDOM propagate the ID embeddings; here
    ``e^(0)`` is the layer-0 item representation ``e_i``, the fused features included. ``0`` = none (the paper).
    """

    ID_COMBINATIONS = ("concat", "sum")
    REGULARIZATIONS = ("parameters", "embeddings")
    scores_layer0 = True  # the scored representations are the layer-0 ones (a graph backbone sets False)

    branch_weights = (1.0,)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.fusion_layers = list(config["fusion_layers"])
        self.embedding_size = config["embedding_size"]  # d_c
        self.id_combination = config["id_combination"]
        self.regularization = config["regularization"]
        self.emb_loss = EmbLoss()
        self.branch_dims = list(self.build_fusion(config))
        if self.id_combination == "sum" and any(dim != self.embedding_size for dim in self.branch_dims):
            raise ConfigError(
                f"id_combination: sum adds the fused features to the ID embedding, so their widths must agree: "
                f"fused {self.branch_dims} (fusion_layers' last), embedding_size {self.embedding_size}; "
                f"e.g. embedding_size: 64 with fusion_layers: [64]"
            )
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.user_embedding = nn.Embedding(self.n_users, sum(self.branch_widths))
        self.apply(xavier_uniform_initialization)  # Linear and Embedding; meta fusion layers init themselves
        self.fusion_scale = None
        if config["balance_fusion"]:
            self.fusion_scale = nn.Parameter(self._initial_balance())
        self.n_item_layers = config["n_item_layers"]
        self.item_graph_k = config["item_graph_k"]
        # raw features: the cosine of min-max-scaled ones is high for every pair (their shared offset)
        item_adjacency = self.item_graph(modality_features(dataset, self.modalities)[0]) if self.item_graph_k > 0 else None
        self.register_buffer("item_adjacency", item_adjacency, persistent=False)

    def item_graph(self, raw_features):
        r"""LATTICE's initial item-item graph ``S`` of the items' raw (unscaled, concatenated) features, row 0
        the padding item: each modality's ``item_graph_k``-nearest-neighbour graph by cosine, similarity-weighted
        and normalised ``D^{-1/2} S D^{-1/2}``, mixed equally over the modalities."""
        return knn_adjacency(split_modalities(raw_features, self.modality_dims), self.item_graph_k, similarity_weighted=True)

    @torch.no_grad()
    def _initial_balance(self):
        r"""One scale per branch: mean ``|e_i^c|`` over mean ``|fused_b(x_i)|`` at initialisation, so that
        the fused and the ID halves of ``e_i`` start at the same size whatever the features' scale
        (min-max features give ``|e_i^m|`` about 25x ``|e_i^c|`` on tiktok, and the fused half then
        decides every score)."""
        was_training = self.training
        self.eval()  # no dropout in the measurement
        fused = self.fuse(self.item_features[1:])
        id_norm = self.item_embedding.weight[1:].norm(dim=1).mean()
        scales = torch.stack([id_norm / branch.norm(dim=1).mean().clamp_min(1e-12) for branch in fused])
        self.train(was_training)
        return scales

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "embedding_size", minimum=1)
        require_int(config, "item_graph_k", minimum=0)
        require_int(config, "n_item_layers", minimum=1)
        if not isinstance(config["balance_fusion"], bool):
            raise ConfigError(f"balance_fusion: got {config['balance_fusion']!r}; expected True or False")
        if config["id_combination"] not in cls.ID_COMBINATIONS:
            raise ConfigError(
                f"id_combination: got {config['id_combination']!r}; expected concat (e_i = [e_i^m ; e_i^c], Eq. 16) "
                "or sum (e_i = e_i^m + e_i^c)"
            )
        if config["regularization"] not in cls.REGULARIZATIONS:
            raise ConfigError(
                f"regularization: got {config['regularization']!r}; expected parameters (Eq. 19) "
                "or embeddings (RecBole's EmbLoss of the batch's layer-0 embeddings)"
            )
        layers = config["fusion_layers"]
        if (
            not isinstance(layers, (list, tuple))
            or not layers
            or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in layers)
        ):
            raise ConfigError(
                f"fusion_layers: got {layers!r}; expected a non-empty list of positive widths, the last = d_m, e.g. [32]"
            )

    def build_fusion(self, config):
        r"""Create the fusion modules; return the output width of each branch."""
        raise NotImplementedError

    def fuse(self, features):
        r"""The list of branch outputs ``(n, branch_dims[b])`` of items with concatenated ``features``."""
        raise NotImplementedError

    @property
    def branch_widths(self):
        r"""Width of each branch's user and item embeddings: fused part + ID part (concat), or the ID part's (sum)."""
        if self.id_combination == "sum":
            return list(self.branch_dims)
        return [dim + self.embedding_size for dim in self.branch_dims]

    def branch_representations(self, items=None):
        r"""``e_i^b = [fused_b(x_i) ; e_i^c]`` (or their sum) of each branch ``b``, for ``items`` or all items."""
        if items is None:
            features, id_embedding = self.item_features, self.item_embedding.weight
        else:
            features, id_embedding = self.item_features[items], self.item_embedding(items)
        fused = self.fuse(features)
        if self.fusion_scale is not None:
            fused = [scale * branch for scale, branch in zip(self.fusion_scale, fused)]
        if self.id_combination == "sum":
            return [branch + id_embedding for branch in fused]
        return [torch.cat([branch, id_embedding], dim=-1) for branch in fused]

    def combine_branches(self, item_branches):
        r"""Item side of ``sum_b w_b e_u^b . e_i^b`` as one inner product with the concatenated user
        branches: ``[w_1 e_i^1 ; ... ; w_B e_i^B]``."""
        if len(item_branches) == 1 and self.branch_weights[0] == 1.0:
            return item_branches[0]
        return torch.cat([weight * branch for weight, branch in zip(self.branch_weights, item_branches)], dim=-1)

    def item_representation(self, items=None):
        r"""``e_i = [e_i^m ; e_i^c]`` (Eq. 16) of ``items``, or of all items (branches weighted and concatenated)."""
        return self.combine_branches(self.branch_representations(items))

    def add_item_graph(self, item_all, item_ego):
        r"""``item_all + h / ||h||``, ``h = S^{L_i} item_ego``, with the item-item graph ``S`` (``item_graph_k``);
        ``item_all`` itself without one."""
        if self.item_adjacency is None:
            return item_all
        h = item_ego
        for _ in range(self.n_item_layers):
            h = self.item_adjacency @ h
        return item_all + F.normalize(h, dim=1)

    def forward(self, items=None):
        if self.item_adjacency is None:
            return self.user_embedding.weight, self.item_representation(items)
        item_ego = self.item_representation()  # the graph's term needs every item's
        item_all = self.add_item_graph(item_ego, item_ego)
        return self.user_embedding.weight, (item_all if items is None else item_all[items])

    def regularizer(self, users, pos_items, neg_items, scored_items=None):
        if self.regularization == "parameters":
            return self.l2_regularizer()
        scored_layer0 = self.scores_layer0 and self.item_adjacency is None
        if scored_items is None or not scored_layer0:  # on MF without the item graph the scored items are the layer-0 ones
            scored_items = self.item_representation(torch.cat([pos_items, neg_items])).chunk(2)
        return self.emb_loss(self.user_embedding(users), *scored_items)


class LearnedGraphLayers:
    r"""Mixin of the graph models whose layers have weights and a LeakyReLU (GraphSAGE-style Eq. 18, GAT):
    the keys of their :class:`~recbole_metammf.model.layers.GraphConvolutionStack` and ``drop_batch_edges``.

    ``negative_slope``: LeakyReLU's slope below zero. With PyTorch's 0.01 (the authors' code) every
    layer's output is nearly non-negative, and the mean of non-negative vectors over a node's neighbours
    is nearly the same vector for every node (docs/RESULTS.md, "MetaMMF_GCN: the cause of the popularity
    collapse"; ``docs/scripts/probe_gcn_spread.py`` measures it).

    ``drop_batch_edges``: the training batch's positive (user, item) edges are left out of the graph
    that computes the batch's loss. On the whole training graph a positive pair's representations read
    the very edge BPR asks them to predict (``i`` is among ``u``'s neighbours and ``u`` among ``i``'s),
    which a negative, and every test item, lacks; torch-geometric's ``RandomLinkSplit(disjoint_train_ratio=...)``
    separates supervision edges from message-passing edges for that reason. Evaluation uses the whole
    training graph.
    """

    def init_graph_layers(self, config, dataset):
        r"""The training graph (RecBole hands the model the training dataset; built once), as the buffer
        ``graph_structure`` in the form the layers take (:meth:`graph`), and its edge index in the order
        :func:`without_pairs` searches."""
        self.drop_batch_edges = config["drop_batch_edges"]
        self._batch_graph = None
        n_nodes, edge_index = self.n_users + self.n_items, training_graph(dataset, self.n_users)
        self.register_buffer("graph_structure", self.graph(edge_index, n_nodes), persistent=False)
        self.register_buffer("edge_index", target_major(edge_index, n_nodes), persistent=False)
        self.register_buffer("edge_keys", edge_keys(self.edge_index, n_nodes), persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "n_layers", minimum=1)
        for key in ("last_activation", "drop_batch_edges"):
            if not isinstance(config[key], bool):
                raise ConfigError(f"{key}: got {config[key]!r}; expected True or False")
        slope = config["negative_slope"]
        if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0.0 <= slope <= 1.0:
            raise ConfigError(
                f"negative_slope: got {slope!r}; expected a number in [0, 1] (LeakyReLU's slope below zero: "
                "0.01 = the authors' code, 1.0 = linear layers)"
            )
        if config["layer_combination"] not in MeanAggregationGCN.LAYER_COMBINATIONS:
            raise ConfigError(
                f"layer_combination: got {config['layer_combination']!r}; expected last (the layer-L output, "
                "the paper's Eq. 18) or mean (the mean of the layers 0..L, as LightGCN)"
            )

    def graph(self, edge_index, n_nodes, presorted=False):
        r"""The graph ``edge_index`` in the form the layers take it (default: the edge index itself);
        ``presorted``: ``edge_index`` is in :func:`target_major` order."""
        return edge_index

    def message_graph(self):
        r"""The graph of this forward pass: the training graph less the batch's edges, or all of it."""
        return self.graph_structure if self._batch_graph is None else self._batch_graph

    def calculate_loss(self, interaction):
        if not self.drop_batch_edges:
            return super().calculate_loss(interaction)
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        n_nodes = self.n_users + self.n_items
        kept = without_pairs(self.edge_index, self.n_users, n_nodes, users, items, keys=self.edge_keys)
        self._batch_graph = self.graph(kept, n_nodes, presorted=True)
        try:
            return super().calculate_loss(interaction)
        finally:
            self._batch_graph = None


class FusionGCNBackbone(LearnedGraphLayers):
    r"""Mixin: MetaMMF_GCN's backbone (Eq. 17-18) over a :class:`FusionMFBackbone` subclass.

    ``class X_GCN(FusionGCNBackbone, X_MF)``: the initial node embeddings of each branch are X_MF's
    (users' ``e_u^b``, items' ``e_i^b``); each branch goes through its own ``n_layers`` mean-aggregation
    graph convolution on the training interactions, and the score is ``sum_b w_b`` of the inner
    products of the layer-``L`` outputs. One branch is exactly MetaMMF_GCN.
    """

    scores_layer0 = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_layers = config["n_layers"]
        last_activation = config["last_activation"]
        gcns = [
            MeanAggregationGCN(
                width, self.n_layers, config["dropout"], last_activation, config["layer_combination"], config["negative_slope"]
            )
            for width in self.branch_widths
        ]
        self.gcn = gcns[0] if len(gcns) == 1 else nn.ModuleList(gcns)  # one branch keeps MetaMMF_GCN's names
        self.init_graph_layers(config, dataset)

    def graph(self, edge_index, n_nodes, presorted=False):
        return mean_aggregation_adjacency(edge_index, n_nodes, presorted)  # a sparse matrix: one product per layer

    def forward(self, items=None):
        gcns = [self.gcn] if isinstance(self.gcn, MeanAggregationGCN) else list(self.gcn)
        user_branches = torch.split(self.user_embedding.weight, self.branch_widths, dim=1)
        users_out, items_out = [], []
        item_branches = self.branch_representations()
        for gcn, user_branch, item_branch in zip(gcns, user_branches, item_branches):
            nodes = gcn(torch.cat([user_branch, item_branch], dim=0), self.message_graph())
            user_all, item_all = torch.split(nodes, [self.n_users, self.n_items])
            users_out.append(user_all)
            items_out.append(item_all)
        user_all = users_out[0] if len(users_out) == 1 else torch.cat(users_out, dim=1)
        item_all = self.add_item_graph(self.combine_branches(items_out), self.combine_branches(item_branches))
        return user_all, (item_all if items is None else item_all[items])


class FusionLightGCNBackbone:
    r"""Mixin: LightGCN propagation (He et al., SIGIR 2020) over a :class:`FusionMFBackbone` subclass.

    ``class X_LightGCN(FusionLightGCNBackbone, X_MF)``: the layer-0 embeddings are X_MF's (users'
    ``e_u``, items' ``[e_i^m ; e_i^c]``, one branch); they are propagated ``n_layers`` times by the
    symmetrically normalised training graph ``D^{-1/2} A D^{-1/2}`` (no weights, no nonlinearity) and the
    layers averaged. The paper calls MetaMMF model-agnostic (Sec. 4.4); this is the backbone that the
    strongest ID model of the field uses.

    ``regularization`` (:class:`FusionMFBackbone`): with ``embeddings`` the layer-0 embeddings of the batch
    come from the same pass as the propagated ones.
    """

    scores_layer0 = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if len(self.branch_dims) != 1:
            raise ConfigError(f"{type(self).__name__}: LightGCN propagation takes one branch, got {len(self.branch_dims)}")
        self.n_layers = config["n_layers"]
        adjacency = normalized_training_graph(dataset, self.n_users, self.n_items, "symmetric")
        self.register_buffer("norm_adjacency", adjacency, persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "n_layers", minimum=0)

    def propagate(self):
        r"""Layer-0 embeddings of all users and items (``e_u``, ``[e_i^m ; e_i^c]``) and their final
        representations: LightGCN's (plus the item-item graph's term with ``item_graph_k``)."""
        user_ego, item_ego = self.user_embedding.weight, self.item_representation()
        nodes = light_gcn(torch.cat([user_ego, item_ego]), self.norm_adjacency, self.n_layers)
        user_all, item_all = torch.split(nodes, [self.n_users, self.n_items])
        return (user_ego, item_ego), (user_all, self.add_item_graph(item_all, item_ego))

    def forward(self, items=None):
        _, (user_all, item_all) = self.propagate()
        return user_all, (item_all if items is None else item_all[items])

    def calculate_loss(self, interaction):
        if self.regularization == "parameters":
            return super().calculate_loss(interaction)
        # the layer-0 embeddings of the batch come from the same pass as the propagated ones
        users = interaction[self.USER_ID]
        pos_items, neg_items = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        (user_ego, item_ego), (user_all, item_all) = self.propagate()
        bpr = self.bpr_loss(user_all[users], item_all[pos_items], item_all[neg_items])
        reg = self.emb_loss(user_ego[users], item_ego[pos_items], item_ego[neg_items])
        return bpr + self.reg_weight * reg


class StaticFusionRecommender(FusionMFBackbone):
    r"""MetaMMF_MF's backbone with static fusion (:class:`~recbole_metammf.model.layers.StaticFusion`)
    of mode ``fusion_mode`` (``early``, ``late`` or ``hybrid``) in place of the meta-learned fusion:
    towers of the same ``fusion_layers`` widths, LeakyReLU between layers, no biases."""

    fusion_mode = None

    def build_fusion(self, config):
        self.fusion = StaticFusion(self.modality_dims, self.fusion_layers, self.fusion_mode, config["dropout"])
        self.branch_weights = tuple(self.fusion.branch_weights)
        return self.fusion.branch_dims

    def fuse(self, features):
        return self.fusion(features)


class IDGraphRecommender(LearnedGraphLayers, RepresentationRecommender):
    r"""ID embeddings of users and items through a :class:`~recbole_metammf.model.layers.GraphConvolutionStack`
    on the training user-item graph (both directions, users ``0..n_users-1``, item ``j`` = node
    ``n_users + j``), scored by the inner product of the outputs, BPR and ``reg_weight * ||Phi||^2``.

    No item features: the ID-only graph baselines of the paper (GraphSAGE, GAT). A subclass builds the
    stack (:meth:`build_gnn`) and says in which form it takes the graph (:meth:`graph`).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        xavier_uniform_initialization(self.user_embedding)  # Xavier, as the paper (Sec. 5.1.3)
        xavier_uniform_initialization(self.item_embedding)
        self.gnn = self.build_gnn(config)
        self.init_graph_layers(config, dataset)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "embedding_size", minimum=1)

    def build_gnn(self, config):
        r"""The graph convolution stack (``embedding_size`` wide, ``n_layers`` deep)."""
        raise NotImplementedError

    def forward(self, items=None):
        nodes = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        nodes = self.gnn(nodes, self.message_graph())
        user_all, item_all = torch.split(nodes, [self.n_users, self.n_items])
        return user_all, (item_all if items is None else item_all[items])
