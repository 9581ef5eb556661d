r"""Top-K recommendations from a trained checkpoint, by original user and item tokens.

Works for the plugin's models and RecBole's built-in general, traditional (Pop, ItemKNN, ...) and
knowledge-aware recommenders alike: each scores all items for a batch of user ids with ``full_sort_predict``. Items the user interacted with in
the training split are never recommended (nor the padding item); the validation and test items are
candidates, as in RecBole's full-ranking evaluation.

    from recbole_metammf.recommend import recommend
    recommend("saved/MetaMMF_GCN-....pth", ["12", "345"], topk=20)   # {"12": ["item", ...], ...}

For many calls, load once with :func:`recbole_metammf.quick_start.load_data_and_model` and call
:func:`recommend_topk` with the model and ``train_data.dataset``. Items that were not in training
(a ``.item`` file of features) join with ``recommend(..., new_items=FILE)`` or, once loaded,
:func:`recbole_metammf.cold_start.add_new_items` ``(model, train_data.dataset, FILE)``.
"""

import os
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import ModelType

from recbole_metammf.cold_start import add_new_items
from recbole_metammf.quick_start import load_data_and_model
from recbole_metammf.utils import ConfigError, DataError

# sequential and context-aware models need a history or features besides the user id
_RANKS_ALL_ITEMS_BY_USER = (ModelType.GENERAL, ModelType.TRADITIONAL, ModelType.KNOWLEDGE)


def _user_ids(dataset, users):
    r"""Internal ids of the user tokens; an unknown token is refused with a few valid ones."""
    field = dataset.uid_field
    known = dataset.field2token_id[field]
    unknown = [user for user in users if user not in known or known[user] == 0]  # id 0 is RecBole's [PAD]
    if unknown:
        examples = [str(token) for token in dataset.field2id_token[field][1:6]]
        raise ConfigError(
            f"users: {unknown} not among the {dataset.user_num - 1} users of dataset '{dataset.dataset_name}' "
            f"(user tokens look like {', '.join(examples)})"
        )
    return torch.tensor([known[user] for user in users], dtype=torch.long)


@torch.no_grad()
def recommend_topk(
    model: torch.nn.Module,
    train_dataset,
    users: Iterable,
    topk: int = 20,
    with_scores: bool = False,
    batch_size: int = 256,
) -> Dict[str, Union[List[str], List[Tuple[str, float]]]]:
    r"""Each user's ``topk`` highest-scored items not seen in ``train_dataset``, best first.

    ``users`` are original user tokens (strings); returns ``{user: [item token, ...]}``, or lists of
    ``(item token, score)`` pairs with ``with_scores``. A user with fewer than ``topk`` unseen items
    gets all of them. Tied scores are ordered by internal item id, so the lists of two ``topk`` agree.
    """
    users = [str(user) for user in users]
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ConfigError(f"topk: got {topk!r}; expected an integer >= 1")
    if model.type not in _RANKS_ALL_ITEMS_BY_USER:
        raise ConfigError(
            f"model: {type(model).__name__} is a {model.type.name} model; recommend supports the models that rank "
            f"all items from a user id alone ({', '.join(t.name for t in _RANKS_ALL_ITEMS_BY_USER)})"
        )
    user_ids = _user_ids(train_dataset, users)
    seen = train_dataset.inter_matrix(form="csr")  # training interactions, rows = internal user ids
    model.eval()
    recommendations = {}
    for start in range(0, len(users), batch_size):
        batch = user_ids[start : start + batch_size]
        interaction = Interaction({model.USER_ID: batch.to(model.device)})
        scores = model.full_sort_predict(interaction).view(len(batch), -1).float().cpu()
        scores[:, 0] = -torch.inf  # padding item
        starts, ends = seen.indptr[batch.numpy()], seen.indptr[batch.numpy() + 1]
        rows = np.repeat(np.arange(len(batch)), ends - starts)
        columns = np.concatenate([seen.indices[start:end] for start, end in zip(starts, ends)]) if len(batch) else []
        scores[torch.from_numpy(rows), torch.as_tensor(columns, dtype=torch.long)] = -torch.inf  # the training items
        k = min(topk, scores.shape[1])
        # a stable sort breaks ties by item id, so a user's top-K is the prefix of any longer top list
        # (torch.topk orders tied items arbitrarily)
        top_scores, top_items = torch.sort(scores, dim=1, descending=True, stable=True)
        top_scores, top_items = top_scores[:, :k], top_items[:, :k]
        for row, user in enumerate(users[start : start + batch_size]):
            keep = torch.isfinite(top_scores[row])  # fewer unseen items than topk
            tokens = train_dataset.id2token(train_dataset.iid_field, top_items[row][keep].numpy())
            tokens = [str(token) for token in np.atleast_1d(tokens)]
            recommendations[user] = (
                list(zip(tokens, top_scores[row][keep].tolist())) if with_scores else tokens
            )
    return recommendations


def recommend(
    model_file: str, users: Iterable, topk: int = 20, with_scores: bool = False, new_items: Optional[str] = None
) -> Dict[str, Union[List[str], List[Tuple[str, float]]]]:
    r"""Load the checkpoint ``model_file`` (safely) and return :func:`recommend_topk` for ``users``.

    ``new_items``: a ``.item`` file of items to add to the catalogue first, without retraining
    (:func:`recbole_metammf.cold_start.add_new_items`); they are candidates like any unseen item."""
    if new_items is not None and not os.path.isfile(new_items):  # before the minutes of loading
        raise DataError(f"new_items: {new_items} does not exist or is not a file; expected a RecBole .item file of the new items")
    _, model, _, train_data, _, _ = load_data_and_model(model_file)
    if new_items is not None:
        add_new_items(model, train_data.dataset, new_items)
    return recommend_topk(model, train_data.dataset, users, topk=topk, with_scores=with_scores)
