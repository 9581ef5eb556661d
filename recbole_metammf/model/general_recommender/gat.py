r"""GAT: graph attention over user and item ID embeddings.

Velickovic et al., "Graph Attention Networks", ICLR 2018, Eq. 1-4; one of the graph baselines of
Liu et al., ACM TOIS 2023 (Sec. 5.3: ID embeddings on the user-item graph, two layers, 64-d).
Reference layer: torch-geometric's ``GATConv``.

Each of the ``n_layers`` layers computes, for every user and item node ``i`` of the training graph
(both directions of every training interaction, plus a self-loop per node),

    alpha_ij = softmax_{j in N(i) + i} LeakyReLU_0.2(a_src . W e_j + a_dst . W e_i)      (Eq. 1-3)
    e_i^(l)  = LeakyReLU(sum_j alpha_ij W e_j^(l-1) + b)                                 (Eq. 4)

then dropout; with ``heads > 1`` the heads' outputs are averaged (Eq. 6), so every layer stays 64-d.
``e^(0)`` are 64-d ID embeddings, the score of ``(u, i)`` is ``e_u^(L) . e_i^(L)``, trained with BPR
and ``reg_weight * ||Phi||^2`` (Eq. 19 of TOIS 2023, the protocol of every model here).

The layers are :class:`~recbole_metammf.model.layers.AttentionGCN`, the stack GraphSAGE and
MetaMMF_GCN use with another convolution: same depth, LeakyReLU, dropout and layer combination, so
GAT and GraphSAGE differ in the aggregation alone.

Differs from the paper: LeakyReLU between layers (the paper's ELU, and the activation of the other
graph models here), one head (the paper's 8 concatenated heads of 8 dimensions are sized for node
classification; ``heads`` averages several), no dropout on the attention coefficients by default
(``attention_dropout``; the paper's 0.6 is for small citation graphs with features). Defaults in
``properties/model/GAT.yaml``.
"""

from recbole_metammf.model.abstract_recommender import IDGraphRecommender
from recbole_metammf.model.layers import AttentionGCN
from recbole_metammf.utils import require_int


class GAT(IDGraphRecommender):
    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "heads", minimum=1)

    def build_gnn(self, config):
        return AttentionGCN(
            self.embedding_size,
            self.n_layers,
            heads=config["heads"],
            attention_dropout=config["attention_dropout"],
            dropout=config["dropout"],
            last_activation=config["last_activation"],
            layer_combination=config["layer_combination"],
            negative_slope=config["negative_slope"],
        )
