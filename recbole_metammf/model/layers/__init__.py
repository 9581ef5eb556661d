r"""Reusable layers of the plugin's models.

Equation numbers refer to Liu et al., "Dynamic Multimodal Fusion via Meta-Learning Towards
Micro-Video Recommendation", ACM TOIS 2023.

* :class:`MetaInformationExtractor` — Eq. 7, the item's meta information ``s_i`` from its features.
* :class:`MetaFusionLayer` — Eq. 8/11 (full tensor) and Eq. 15 (CP decomposition): a linear map
  whose weight ``W_i = W + T x_3 s_i`` is generated per item, applied without ever building ``W_i``.
* :class:`MetaFusionTower` — Eq. 12, a stack of meta fusion layers with LeakyReLU between them.
* :class:`MeanAggregationGCN` — Eq. 18, GraphSAGE-style mean aggregation on the user-item graph.

Shared by the baselines (``docs/BASELINES.md``):

* :class:`StaticFusionTower`, :class:`StaticFusion` — the static early / late / hybrid fusion that
  replaces the meta-learned fusion in the paper's Table 3 baselines (same widths, no biases).
* :class:`ModalityProjection` — per-modality (or concatenated) linear projection of the item features.
* :func:`without_pairs` — the training graph less a batch's user-item pairs (``drop_batch_edges``), on an
  edge index in :func:`target_major` order, whose :func:`edge_keys` a model keeps for the search.
* :func:`propagate`, :func:`mean_edge_weight`, :func:`symmetric_edge_weight` — weighted message
  passing (``out_dst += w * x_src``) with differentiable edge weights; :func:`sparse_adjacency` —
  the same as a sparse matrix for graphs whose weights are fixed (3-5x faster on CPU);
  :func:`light_gcn` — LightGCN propagation.
* :func:`knn_graph` — the item-item k-nearest-neighbour graph of cosine similarities (LATTICE, FREEDOM);
  :func:`normalized_knn_graph` — the same without the padding item, normalised (LATTICE's ``S_m``, FREEDOM's);
  :func:`knn_adjacency` — the fixed, normalised, modality-mixed item-item graph built from it (FREEDOM, the
  fusion backbones' ``item_graph_k``).
* :class:`GraphConvolutionStack` — ``L`` torch-geometric convolutions with LeakyReLU and dropout
  between them; :class:`MeanAggregationGCN` (SAGEConv, MetaMMF_GCN and GraphSAGE) and
  :class:`AttentionGCN` (GATConv, GAT) are two of them.
* :func:`degree_sensitive_edge_sample` — FREEDOM's degree-sensitive pruning of the user-item graph.
* :func:`cosine_alignment_loss` — BM3's stop-gradient cosine alignment of two views.
* :class:`FeatureOffset` — fine-tuning of fixed input features (BM3, FREEDOM) as a learned offset.
* :func:`info_nce_loss` — InfoNCE of cosine similarities, with an optional intra-view term (MICRO, LGMRec).
* :func:`hypergraph_propagation` — LGMRec's item -> hyperedge -> user/item message passing.
* :func:`ultragcn_constraint_weights`, :func:`ultragcn_constraint_loss` — UltraGCN's constraint weights and
  weighted BCE (InvRL's backbone); :func:`irm_gradient_penalty` and :class:`StochasticGate` — InvRL's
  invariance penalty across environments and its gates on feature dimensions.
"""

from recbole_metammf.model.layers.fusion import (
    MetaInformationExtractor,
    MetaFusionLayer,
    MetaFusionTower,
    scale_modality,
    split_modalities,
    StaticFusionTower,
    StaticFusion,
    ModalityProjection,
    FeatureOffset,
)
from recbole_metammf.model.layers.graph import (
    GraphConvolutionStack,
    MeanAggregationGCN,
    AttentionGCN,
    mean_aggregation_adjacency,
    bipartite_edge_index,
    without_pairs,
    edge_keys,
    target_major,
    training_graph,
    normalized_training_graph,
    propagate,
    mean_edge_weight,
    symmetric_edge_weight,
    sparse_adjacency,
    light_gcn,
    degree_sensitive_edge_sample,
    hypergraph_propagation,
)
from recbole_metammf.model.layers.knn import (
    knn_graph,
    normalized_knn_graph,
    knn_adjacency,
)
from recbole_metammf.model.layers.losses import (
    cosine_alignment_loss,
    ultragcn_constraint_weights,
    ultragcn_constraint_loss,
    irm_gradient_penalty,
    StochasticGate,
    info_nce_loss,
)

__all__ = [
    "MetaInformationExtractor",
    "MetaFusionLayer",
    "MetaFusionTower",
    "scale_modality",
    "split_modalities",
    "StaticFusionTower",
    "StaticFusion",
    "ModalityProjection",
    "FeatureOffset",
    "GraphConvolutionStack",
    "MeanAggregationGCN",
    "AttentionGCN",
    "mean_aggregation_adjacency",
    "bipartite_edge_index",
    "without_pairs",
    "edge_keys",
    "target_major",
    "training_graph",
    "normalized_training_graph",
    "propagate",
    "mean_edge_weight",
    "symmetric_edge_weight",
    "sparse_adjacency",
    "light_gcn",
    "degree_sensitive_edge_sample",
    "hypergraph_propagation",
    "knn_graph",
    "normalized_knn_graph",
    "knn_adjacency",
    "cosine_alignment_loss",
    "ultragcn_constraint_weights",
    "ultragcn_constraint_loss",
    "irm_gradient_penalty",
    "StochasticGate",
    "info_nce_loss",
]
