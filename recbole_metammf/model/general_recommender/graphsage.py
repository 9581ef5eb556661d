r"""GraphSAGE: mean-aggregation graph convolution of user and item ID embeddings.

Hamilton, Ying & Leskovec, "Inductive Representation Learning on Large Graphs", NeurIPS 2017, Alg. 1
with the mean aggregator; one of the graph baselines of Liu et al., ACM TOIS 2023 (Sec. 5.3: ID
embeddings on the user-item graph, two layers, 64-d). Reference layer: torch-geometric's ``SAGEConv``.

Each of the ``n_layers`` layers computes, for every user and item node ``i`` of the training graph,

    e_i^(l) = LeakyReLU(W_1 e_i^(l-1) + W_2 mean_{j in N(i)} e_j^(l-1))

(Alg. 1 lines 4-5 with the concatenation ``W [e_i ; mean]`` written as ``W_1 e_i + W_2 mean``), then
dropout; ``e^(0)`` are 64-d ID embeddings, the score of ``(u, i)`` is ``e_u^(L) . e_i^(L)``, trained
with BPR and ``reg_weight * ||Phi||^2`` (Eq. 19 of TOIS 2023, the protocol of every model here).

The layers are :class:`~recbole_metammf.model.layers.MeanAggregationGCN`, the convolution of
MetaMMF_GCN (TOIS 2023, Eq. 18), so GraphSAGE is MetaMMF_GCN with ID embeddings in place of the
fused item embeddings, and a comparison of the two measures what the multimodal features add.

Differs from Alg. 1: no neighbour sampling (the whole neighbourhood is averaged: the graph is
small, and sampling only approximates this mean), no L2 normalisation of each layer's output (the
scores are inner products, whose norms carry popularity), no bias (as Eq. 18). Defaults
(``properties/model/GraphSAGE.yaml``) are MetaMMF_GCN's backbone, linear layers (``negative_slope: 1.0``)
and the batch's edges left out of its message passing (``drop_batch_edges``) included: both chosen on
validation against a measured popularity collapse (docs/RESULTS.md).
"""

from recbole_metammf.model.abstract_recommender import IDGraphRecommender
from recbole_metammf.model.layers import MeanAggregationGCN, mean_aggregation_adjacency


class GraphSAGE(IDGraphRecommender):
    def build_gnn(self, config):
        return MeanAggregationGCN(
            self.embedding_size,
            self.n_layers,
            config["dropout"],
            config["last_activation"],
            config["layer_combination"],
            config["negative_slope"],
        )

    def graph(self, edge_index, n_nodes, presorted=False):
        return mean_aggregation_adjacency(edge_index, n_nodes, presorted)  # a sparse matrix: one product per layer
