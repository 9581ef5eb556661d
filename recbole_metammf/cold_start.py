r"""Cold-start items: the ``cold_start: item`` protocol, and new items added to a trained model.

**Protocol** (``cold_start: item``, ``cold_item_ratio: 0.2``; see docs/COLDSTART.md). Of the items with
at least one interaction (in any part of the split), a share ``cold_item_ratio`` is held out, chosen
by a generator seeded with ``seed`` (independent of the split's own randomness); half of them (rounded
down) are the *validation* cold items, the others the *test* cold items. Then, after RecBole has split
the interactions as usual (a fixed ``benchmark_filename`` split or a random one):

* training = the training part without any interaction of a held-out item;
* validation = every interaction (of every part) with a validation cold item; test = likewise with
  a test cold item. The warm items' validation and test interactions are left out: they are the
  warm protocol's evaluation, neither trained on nor evaluated here;
* each evaluated user's items are ranked among the cold items of that part only (``candidate_items``
  of the evaluation dataset; the trainer scores the others ``-inf``), and once more among all items
  (results ``all_items/<metric>``). Early stopping and model selection use the cold validation ranking.

The held-out items keep their ids and their rows of the item feature table, so that a feature-based
model can score them. They are never sampled as training negatives (:func:`exclude_from_negatives`),
and their ID embedding rows are zero (:func:`forget_items`): with no gradient reaching them they stay
zero through training, so a never-trained item is scored from its features alone.

**New items** (:func:`add_new_items`): a ``.item`` file with the dataset's modality fields is appended
to a trained model's catalogue (features scaled as the training data's, ID part zero, no graph edges)
and to the dataset's token maps, so that :func:`recbole_metammf.recommend.recommend_topk` can
recommend them without retraining.
"""

import os
from typing import List
from logging import getLogger

import numpy as np
import torch
import torch.nn as nn
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data import data_preparation as recbole_data_preparation
from recbole.data.dataset import Dataset
from recbole.data.interaction import cat_interactions
from recbole.utils import ModelType

from recbole_metammf.model.abstract_recommender import FusionMFBackbone, modality_features
from recbole_metammf.utils import ConfigError, DataError, modality_scaling

# the key under which each result of the ranking among all items is reported, e.g. all_items/recall@20
ALL_ITEMS_PREFIX = "all_items/"


class ColdStartDataset(Dataset):
    r"""RecBole's :class:`~recbole.data.dataset.Dataset` whose :meth:`build` applies the cold-item
    protocol (see the module's docstring) to the parts RecBole's own ``build`` returns.

    After ``build``: ``cold_valid_items`` and ``cold_test_items`` (sorted internal item ids) on the
    dataset and its parts, and ``candidate_items`` (a boolean mask over item ids) on the validation
    and test parts."""

    def build(self):
        parts = super().build()
        everything = cat_interactions([part.inter_feat for part in parts])
        valid_items, test_items = choose_cold_items(self, everything[self.iid_field].numpy())
        self.cold_valid_items, self.cold_test_items = valid_items, test_items
        cold = np.concatenate([valid_items, test_items])
        train = parts[0].inter_feat
        kept = ~torch.from_numpy(np.isin(train[self.iid_field].numpy(), cold))
        item_ids = everything[self.iid_field].numpy()
        built = [self.copy(train[kept])]
        for items in (valid_items, test_items):
            part = self.copy(everything[torch.from_numpy(np.isin(item_ids, items))])
            part.candidate_items = torch.zeros(self.item_num, dtype=torch.bool)
            part.candidate_items[torch.from_numpy(items)] = True
            built.append(part)
        getLogger().info(
            f"cold start: {len(cold)} items held out ({len(valid_items)} validation, {len(test_items)} test, "
            f"seed {self.config['seed']}); training keeps {int(kept.sum())} of {len(train)} training interactions; "
            f"{len(built[1])} validation and {len(built[2])} test interactions with held-out items"
        )
        return built


def choose_cold_items(dataset, interacted_item_ids):
    r"""The validation and test cold items (sorted internal ids): a share ``cold_item_ratio`` of the
    items in ``interacted_item_ids``, drawn with ``numpy.random.default_rng(seed)`` from those items
    in the order of their original tokens (so the choice does not depend on RecBole's id remapping)."""
    config = dataset.config
    items = np.unique(interacted_item_ids)
    tokens = np.asarray(dataset.id2token(dataset.iid_field, items)).astype(str)
    items = items[np.argsort(tokens, kind="stable")]
    n_cold = int(round(config["cold_item_ratio"] * len(items)))
    n_valid = n_cold // 2
    if n_valid == 0:
        raise ConfigError(
            f"cold_item_ratio: got {config['cold_item_ratio']}, which holds out {n_cold} of the {len(items)} items with "
            f"interactions of dataset '{dataset.dataset_name}'; at least 2 are needed (one for validation, one for test)"
        )
    chosen = items[np.random.default_rng(config["seed"]).permutation(len(items))[:n_cold]]
    return np.sort(chosen[:n_valid]), np.sort(chosen[n_valid:])


def create_dataset(config):
    r"""RecBole's ``create_dataset``, or a :class:`ColdStartDataset` with ``cold_start: item``."""
    if config["cold_start"] is None:
        return recbole_create_dataset(config)
    if config["MODEL_TYPE"] not in (ModelType.GENERAL, ModelType.TRADITIONAL):
        raise ConfigError(
            f"cold_start: item works with general and traditional models (a user id ranks all items); "
            f"{config['model']} is a {config['MODEL_TYPE'].name} model"
        )
    modes = config["eval_args"]["mode"]
    modes = modes.values() if isinstance(modes, dict) else [modes]
    if any(mode != "full" for mode in modes):
        raise ConfigError(
            f"cold_start: item ranks the held-out items in full (eval_args mode: full); got mode {config['eval_args']['mode']!r}"
        )
    return ColdStartDataset(config)


def exclude_from_negatives(train_data, items):
    r"""Never sample ``items`` as negatives of ``train_data``: its sampler's uniform draw takes the
    other items only (from NumPy's global generator, as RecBole's, so runs and resumes stay exact)."""
    sampler = train_data._sampler
    if sampler is None or not len(items):
        return
    allowed = np.setdiff1d(np.arange(1, sampler.item_num), items)
    sampler._uni_sampling = lambda sample_num: allowed[np.random.randint(0, len(allowed), sample_num)]


def data_preparation(config, dataset):
    r"""RecBole's ``data_preparation``; for a :class:`ColdStartDataset`, the held-out items are then
    left out of the training negatives (a ``popularity`` sampler draws from training items already)."""
    train_data, valid_data, test_data = recbole_data_preparation(config, dataset)
    if isinstance(dataset, ColdStartDataset) and config["train_neg_sample_args"]["distribution"] == "uniform":
        exclude_from_negatives(train_data, held_out_items(dataset))
    return train_data, valid_data, test_data


def held_out_items(dataset):
    r"""The cold items of a built :class:`ColdStartDataset` (validation and test), else none."""
    if not hasattr(dataset, "cold_valid_items"):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([dataset.cold_valid_items, dataset.cold_test_items])


def item_id_embeddings(model):
    r"""The model's embedding tables indexed by item id (one row per item, ``item`` in the name):
    the ID part of the item representations (``item_embedding``, VBPR's ``item_bias_embedding``, ...)."""
    n_items = getattr(model, "n_items", None)
    return [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.Embedding) and module.num_embeddings == n_items and "item" in name.rsplit(".", 1)[-1].lower()
    ]


def forget_items(model, dataset):
    r"""Zero the ID embedding rows of the held-out items of ``dataset`` (none in the warm protocol):
    the defined ID part of a never-trained item, which stays zero through training. The items are in no
    batch, as positives or negatives, and have no user-item edges, but an item-item graph of the
    features (``item_graph_k``) adds a held-out item's ``e_i`` to its warm neighbours' representations,
    so their gradient would reach its ID row and train it on their interactions; a hook zeroes those
    rows of the gradient (Adam then moves nothing; the L2 term's gradient is 0 at 0)."""
    items = torch.as_tensor(held_out_items(dataset), dtype=torch.long)
    if len(items):
        for table in item_id_embeddings(model):
            rows = items.to(table.weight.device)
            with torch.no_grad():
                table.weight[rows] = 0
            table.weight.register_hook(lambda grad, rows=rows: grad.index_fill(0, rows, 0))


# ---------------------------------------------------------------------------------------------------
# new items for a trained model


def _split_line(line, separator):
    return line.rstrip("\n").rstrip("\r").split(separator)


def read_item_features(path, id_field, fields, widths, separator="\t", seq_separator=" "):
    r"""The item tokens and one ``(n, width)`` float64 array per field of a RecBole ``.item`` file,
    checked: the header declares the id (``token``) and each field (``float_seq``), every row has
    each field's width, and every value is a finite number. Errors are :class:`DataError` naming
    the file, the line and the item."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"new_items: cannot read {path} ({getattr(error, 'strerror', None) or error}); expected a RecBole .item file")
    if not lines:
        raise DataError(f"new_items: {path} is empty; expected a header such as {id_field}:token\tv_feat:float_seq")
    header = [column.strip() for column in _split_line(lines[0], separator)]
    names = [column.split(":")[0] for column in header]
    if f"{id_field}:token" not in header:
        raise DataError(f"new_items: {path} has no item id column '{id_field}:token' (its header: {header})")
    missing = [field for field in fields if f"{field}:float_seq" not in header]
    if missing:
        raise DataError(
            f"new_items: {path} lacks the float_seq field(s) {missing} that the model reads (its header: {header}); "
            f"expected the model's modalities {list(fields)}"
        )
    id_column, columns = names.index(id_field), [names.index(field) for field in fields]
    tokens, blocks = [], [np.empty((len(lines) - 1, width)) for width in widths]
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = _split_line(line, separator)
        if len(values) != len(header):
            raise DataError(f"new_items: {path}, line {number}: {len(values)} columns, the header has {len(header)}")
        token = values[id_column].strip()
        where = f"new_items: {path}, line {number} (item '{token}')"
        for field, column, width, block in zip(fields, columns, widths, blocks):
            try:
                row = np.array(values[column].split(seq_separator) if values[column].strip() else [], dtype=np.float64)
            except ValueError:
                raise DataError(f"{where}: '{field}' is not a list of numbers: {values[column][:40]!r}") from None
            if len(row) != width:
                raise DataError(f"{where}: '{field}' has {len(row)} values; the model's '{field}' has {width}")
            if not np.isfinite(row).all():
                raise DataError(f"{where}: '{field}' holds NaN or inf")
            block[len(tokens)] = row
        tokens.append(token)
    if not tokens:
        raise DataError(f"new_items: {path} holds no items (a header only)")
    return tokens, [block[: len(tokens)] for block in blocks]


def _raw_ranges(dataset, fields):
    r"""``(min, max)`` of each raw field, which RecBole's min-max ``normalize_field`` divided by (it keeps
    no record of them): the raw values, in the dataset's ``.item`` file, at the places where the
    normalised features are 0 and 1. Only those rows' numbers are parsed."""
    config = dataset.config
    separator, seq_separator = config["field_separator"], config["seq_separator"]
    features = dataset.get_item_feature()
    wanted = {}  # item token -> [(field, value index, which end)]
    for field in fields:
        block = features[field][1:]  # row 0: padding
        width = block.shape[1]
        for end, flat in (("min", int(block.argmin())), ("max", int(block.argmax()))):
            token = str(dataset.id2token(dataset.iid_field, flat // width + 1))
            wanted.setdefault(token, []).append((field, flat % width, end))
    path = os.path.join(dataset.dataset_path, f"{dataset.dataset_name}.item")
    found = {}
    with open(path, encoding="utf-8") as f:
        names = [column.split(":")[0] for column in _split_line(f.readline(), separator)]
        id_column = names.index(dataset.iid_field)
        for line in f:
            values = _split_line(line, separator)
            for field, index, end in wanted.get(values[id_column], ()):
                found[field, end] = float(values[names.index(field)].split(seq_separator)[index])
    return [(found[field, "min"], found[field, "max"]) for field in fields]


def scale_new_features(model, dataset, blocks):
    r"""The new items' raw ``blocks`` scaled as the model's training features were
    (``normalize_modalities``): min-max with the training data's range, ``standard`` with its items'
    mean and deviation, ``l2`` per item, ``none`` as given. Returns the concatenated float tensor."""
    scaling = modality_scaling(dataset.config)
    fields = model.modalities
    if scaling == "minmax":
        ranges = _raw_ranges(dataset, fields)
        blocks = [(block - low) / (high - low) if high > low else np.ones_like(block) for block, (low, high) in zip(blocks, ranges)]
    scaled = []
    for field, block in zip(fields, blocks):
        block = torch.as_tensor(block, dtype=torch.float32)
        if scaling == "standard":
            reference = dataset.get_item_feature()[field][1:].float()  # the dataset's own items (row 0: padding)
            block = (block - reference.mean(dim=0)) / reference.std(dim=0).clamp_min(1e-12) / block.shape[1] ** 0.5
        elif scaling == "l2":
            block = torch.nn.functional.normalize(block, dim=1)
        scaled.append(block)
    return torch.cat(scaled, dim=1)


def _pad_square(matrix, size):
    r"""A sparse square ``matrix`` (COO or CSR) grown to ``size x size`` with empty rows and columns."""
    if matrix.layout == torch.sparse_csr:
        crow = matrix.crow_indices()
        crow = torch.cat([crow, crow[-1:].expand(size - matrix.shape[0])])
        return torch.sparse_csr_tensor(crow, matrix.col_indices(), matrix.values(), (size, size))
    return torch.sparse_coo_tensor(matrix.indices(), matrix.values(), (size, size), is_coalesced=matrix.is_coalesced())


def _inductive_models():
    from recbole_metammf.model.general_recommender.vbpr import VBPR

    return FusionMFBackbone, VBPR


@torch.no_grad()
def extend_model(model, features, raw_features=None):
    r"""Append items with ``features`` (already scaled) to ``model``'s catalogue: feature rows, zero
    ID embedding rows and isolated nodes in its training graph (a new item has no interactions). A
    model with an item-item graph of the features (``item_graph_k``) gets that graph built again over
    ``raw_features``, every item's unscaled features, new ones last, so that a new item has its feature
    neighbours, as a held-out item of the cold-start protocol has; without them its node is isolated."""
    n_new, n_nodes = features.shape[0], model.n_users + model.n_items
    grown = {n_nodes: n_nodes + n_new, model.n_items: model.n_items + n_new}  # user-item and item-item graphs
    for table in item_id_embeddings(model):
        weight = table.weight
        table.weight = nn.Parameter(torch.cat([weight, weight.new_zeros(n_new, weight.shape[1])]), requires_grad=weight.requires_grad)
        table.num_embeddings += n_new
    model.item_features = torch.cat([model.item_features, features.to(model.item_features)])
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            square = buffer.dim() == 2 and buffer.shape[0] == buffer.shape[1]
            if buffer.layout != torch.strided and square and buffer.shape[0] in grown:
                setattr(module, name, _pad_square(buffer, grown[buffer.shape[0]]))
    model.n_items += n_new
    if raw_features is not None and getattr(model, "item_adjacency", None) is not None:
        model.item_adjacency = model.item_graph(raw_features.to(model.item_features))
    model._representations = None


def add_new_items(model: nn.Module, dataset: Dataset, item_file: str) -> List[str]:
    r"""Add the items of ``item_file`` (a ``.item`` file with the model's ``modalities`` as
    ``float_seq`` fields, the widths of the training data's) to a trained ``model`` and to
    ``dataset``'s item tokens, without retraining. Returns the new item tokens.

    Works for the models that score an item from its features: MetaMMF_MF / _GCN / _LightGCN, the
    static fusions (EarlyFusion_*, LateFusion_*, HybridFusion_*) and VBPR. A new item's ID part is
    zero and it has no user-item edges, as a held-out item of the cold-start protocol; with an item-item
    graph of the features (``item_graph_k``) it joins that graph as such an item does."""
    if not isinstance(model, _inductive_models()):
        raise ConfigError(
            f"new_items: {type(model).__name__} cannot score items it has not trained on; new items work with the "
            "MetaMMF models, the static fusions (EarlyFusion_*, LateFusion_*, HybridFusion_*) and VBPR"
        )
    config = dataset.config
    field = dataset.iid_field
    tokens, blocks = read_item_features(
        item_file, field, model.modalities, model.modality_dims, config["field_separator"], config["seq_separator"]
    )
    known = dataset.field2token_id[field]
    seen = set()
    for token in tokens:
        if token in known or token in seen:
            where = f"the catalogue of dataset '{dataset.dataset_name}'" if token in known else item_file + " already"
            raise DataError(f"new_items: item '{token}' is in {where}; a new item needs a new token")
        seen.add(token)
    raw = None
    if getattr(model, "item_adjacency", None) is not None:  # its item-item graph is built again over every item
        raw = torch.cat([modality_features(dataset, model.modalities)[0], torch.as_tensor(np.concatenate(blocks, axis=1)).float()])
    extend_model(model, scale_new_features(model, dataset, blocks), raw)
    first = len(dataset.field2id_token[field])
    dataset.field2id_token[field] = np.concatenate([dataset.field2id_token[field], np.array(tokens)])
    known.update({token: first + k for k, token in enumerate(tokens)})
    return tokens
