r"""MetaMMF_GCN: MetaMMF's dynamically fused item embeddings propagated on the user-item graph.

Liu et al., ACM TOIS 2023, Section 4.4 (Eq. 17-18):

* Eq. 17: the initial node embeddings are those of MetaMMF_MF — users' ID embeddings and items'
  ``[e_i^m ; e_i^c]`` from the meta-learned fusion (:class:`MetaMMF_MF`).
* Eq. 18: ``n_layers`` GraphSAGE-style mean-aggregation layers over the training interactions,
  ``e^(l) = LeakyReLU(W_1 e^(l-1) + W_2 mean_{j in N(i)} e_j^(l-1))``.
* The score is the inner product of the users' and items' layer-``L`` outputs; BPR loss (Eq. 19).
"""

import torch

from recbole_metammf.model.general_recommender.metammf_mf import MetaMMF_MF
from recbole_metammf.model.layers import MeanAggregationGCN, bipartite_edge_index
from recbole_metammf.utils import require_int


class MetaMMF_GCN(MetaMMF_MF):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_layers = config["n_layers"]
        dim = self.fusion_layers[-1] + self.embedding_size
        self.gcn = MeanAggregationGCN(dim, self.n_layers, config["dropout"])
        # training interactions only (RecBole hands the model the training dataset); built once
        edge_index = bipartite_edge_index(dataset.inter_matrix(form="coo"), self.n_users)
        self.register_buffer("edge_index", edge_index, persistent=False)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require_int(config, "n_layers", minimum=1)

    def forward(self, items=None):
        nodes = torch.cat([self.user_embedding.weight, self.item_representation()], dim=0)
        nodes = self.gcn(nodes, self.edge_index)
        user_all, item_all = torch.split(nodes, [self.n_users, self.n_items])
        return user_all, (item_all if items is None else item_all[items])
