r"""Base class of the plugin's multimodal recommenders."""

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.loss import BPRLoss
from recbole.utils import FeatureSource, FeatureType, InputType

from recbole_metammf.utils import ConfigError


def modality_features(dataset, modalities):
    r"""The item modality features, concatenated in the order of ``modalities``.

    They come from RecBole's item features, so row ``j`` belongs to internal item id ``j`` and
    row 0 is the padding item. Returns the ``(n_items, sum of dims)`` float tensor and the dims.
    """
    float_seq_fields = [
        field
        for field, ftype in dataset.field2type.items()
        if ftype == FeatureType.FLOAT_SEQ
        and dataset.field2source.get(field) == FeatureSource.ITEM
        and not field.startswith(dataset.config["NEG_PREFIX"])  # RecBole's copies for sampled negatives
    ]
    missing = [m for m in modalities if m not in float_seq_fields]
    if missing:
        raise ConfigError(
            f"modalities: {missing} not among the float_seq item fields of dataset '{dataset.dataset_name}' "
            f"(it has {float_seq_fields or 'none'}; is the .item file in the dataset folder?)"
        )
    item_feat = dataset.get_item_feature()
    blocks = [item_feat[m].float() for m in modalities]
    for name, block in zip(modalities, blocks):
        bad = ~torch.isfinite(block)
        if bad.any():
            row = int(bad.any(dim=1).nonzero()[0])
            token = dataset.id2token(dataset.iid_field, row)
            raise ValueError(f"item field '{name}' holds NaN or inf (item '{token}', internal id {row})")
    return torch.cat(blocks, dim=1), [block.shape[1] for block in blocks]


class MultimodalRecommender(GeneralRecommender):
    r"""A general recommender that reads item modality features and trains with BPR (Eq. 19).

    Subclasses implement :meth:`forward`, which returns the representations of all users and those
    of the requested items (all items when ``items`` is None). In evaluation mode the
    representations of all users and items are computed once and reused for every user batch.
    """

    input_type = InputType.PAIRWISE
    requires_modalities = True  # Config adds ``modalities`` to the item columns RecBole loads

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.modalities = list(config["modalities"])
        features, self.modality_dims = modality_features(dataset, self.modalities)
        self.register_buffer("item_features", features, persistent=False)
        self.reg_weight = config["reg_weight"]
        self.loss_fct = BPRLoss()
        self._representations = None

    @classmethod
    def check_config(cls, config):
        r"""Refuse bad values of the keys this model reads, before any data is loaded."""
        modalities = config["modalities"]
        if not isinstance(modalities, (list, tuple)) or not modalities or not all(isinstance(m, str) for m in modalities):
            raise ConfigError(
                f"modalities: got {modalities!r}; expected a non-empty list of item float_seq field names, "
                "e.g. [v_feat, a_feat]"
            )

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

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        pos_items, neg_items = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        user_all, item_repr = self.forward(torch.cat([pos_items, neg_items]))
        user_e = user_all[users]
        pos_e, neg_e = item_repr.chunk(2)
        bpr = self.loss_fct((user_e * pos_e).sum(-1), (user_e * neg_e).sum(-1))
        return bpr + self.reg_weight * self.l2_regularizer()

    def predict(self, interaction):
        user_all, item_all = self.all_representations()
        return (user_all[interaction[self.USER_ID]] * item_all[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        user_all, item_all = self.all_representations()
        return (user_all[interaction[self.USER_ID]] @ item_all.t()).view(-1)
