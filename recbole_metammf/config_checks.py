r"""Which config keys exist, and checks of the common RecBole keys' values, run before any data loads.

RecBole takes any key it is given and ignores the ones nothing reads, so a typo (``--cp_rnk=8``)
trains with the default silently. Here a key must be declared somewhere: in RecBole's argument
lists or its ``properties/`` yaml files (overall, datasets, every model, the quick-start presets),
among the keys RecBole 1.2.1 reads without a default (:data:`recbole_metammf.compat.RECBOLE_KEYS_WITHOUT_DEFAULT`),
or in the plugin's ``properties/overall.yaml``, ``properties/dataset/*.yaml`` and ``properties/model/*.yaml``.
The keys of every model are accepted for every model, so that one setting can go to all the models
of a benchmark (``run_benchmark.py --models=BPR,MetaMMF_MF --cp_rank=8``); a model that does not read
a key it is given is named in a warning (:func:`ignored_key_messages`), and a sweep refuses to search
over such a key.

RecBole checks few values, late, and with tracebacks: ``epochs: 0`` trains nothing and saves an
untrained model, ``train_batch_size: 0`` never ends, ``learning_rate: abc`` fails inside the
optimizer after the data has loaded, a ``valid_metric`` that is not evaluated fails after the first
epoch. :func:`check_values` refuses these first, naming the key, the value and what is accepted.
"""

import difflib
import functools
import glob
import math
import os
import re

import recbole
import yaml
from recbole.evaluator.register import metric_types, metrics_dict
from recbole.utils import dataset_arguments, evaluation_arguments, general_arguments, training_arguments

from recbole_metammf.compat import RECBOLE_KEYS_WITHOUT_DEFAULT
from recbole_metammf.paths import MODEL_PROPERTIES_DIR
from recbole_metammf.utils import PROPERTIES_DIR, ConfigError, require_int

RECBOLE_PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.realpath(recbole.__file__)), "properties")
# dataset name -> download address, not settings
_DOWNLOAD_LISTS = ("url.yaml", "kg_url.yaml")


def _yaml_keys(path):
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)  # only the keys are needed (RecBole's `1e-5` floats stay strings here)
    return {str(key) for key in data} if isinstance(data, dict) else set()


def _model_yaml_files():
    return glob.glob(os.path.join(RECBOLE_PROPERTIES_DIR, "model", "*.yaml")) + glob.glob(os.path.join(MODEL_PROPERTIES_DIR, "*.yaml"))


@functools.lru_cache(maxsize=None)
def shared_keys():
    r"""The keys any model may read: RecBole's argument lists and the keys it reads without a default,
    and every yaml of RecBole's and the plugin's ``properties/`` but the models' (overall, datasets,
    RecBole's quick-start presets), as a frozenset."""
    keys = set(general_arguments + training_arguments + evaluation_arguments + dataset_arguments)
    keys |= set(RECBOLE_KEYS_WITHOUT_DEFAULT) | {"model", "dataset"}
    model_files = {os.path.realpath(path) for path in _model_yaml_files()}
    files = glob.glob(os.path.join(RECBOLE_PROPERTIES_DIR, "**", "*.yaml"), recursive=True)
    files += [os.path.join(PROPERTIES_DIR, "overall.yaml")]
    files += glob.glob(os.path.join(PROPERTIES_DIR, "dataset", "*.yaml"))
    for path in files:
        if os.path.basename(path) not in _DOWNLOAD_LISTS and os.path.isfile(path) and os.path.realpath(path) not in model_files:
            keys |= _yaml_keys(path)
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def model_keys():
    r"""Model name -> the keys of its defaults file (RecBole's ``properties/model/<Model>.yaml`` and the plugin's)."""
    keys = {}
    for path in _model_yaml_files():
        name = os.path.splitext(os.path.basename(path))[0]
        keys[name] = keys.get(name, frozenset()) | _yaml_keys(path)
    return keys


@functools.lru_cache(maxsize=None)
def known_keys():
    r"""Every key RecBole or the plugin declares (see the module's docstring), as a frozenset."""
    return shared_keys().union(*model_keys().values())


@functools.lru_cache(maxsize=None)
def recbole_download_names():
    r"""The dataset names RecBole 1.2.1 offers to download when their folder is missing."""
    return frozenset(_yaml_keys(os.path.join(RECBOLE_PROPERTIES_DIR, "dataset", "url.yaml")))


def unknown_key_messages(sources):
    r"""One message per given key that no one declares, in the order given.

    ``sources``: ``(keys, where)`` pairs, highest precedence first (command line, config dict, files),
    where ``where(key)`` says where that key was given, e.g. ``"from the command line"``."""
    known = known_keys()
    candidates = sorted(known)  # a fixed order: difflib keeps it among equally close matches
    messages, seen = [], set()
    for keys, where in sources:
        for key in keys:
            if key in known or key in seen:
                continue
            seen.add(key)
            close = difflib.get_close_matches(str(key), candidates, n=3)
            hint = f"close matches: {', '.join(close)}" if close else "not a setting of RecBole, recbole-metammf or their models"
            messages.append(f"{key}: unknown key ({where(key)}); {hint}")
    return messages


def ignored_key_messages(model, sources):
    r"""One message per given key that only other models' defaults declare: ``model`` (a name) does not
    read it, so it changes nothing (a key meant for another model, or a slip for one of its own).
    ``sources`` as in :func:`unknown_key_messages`; unknown keys are that function's."""
    shared, by_model = shared_keys(), model_keys()
    own = by_model.get(model, frozenset())
    messages, seen = [], set()
    for keys, where in sources:
        for key in keys:
            if key in shared or key in own or key in seen:
                continue
            seen.add(key)
            readers = sorted(name for name, declared in by_model.items() if key in declared)
            if not readers:
                continue
            named = ", ".join(readers[:4]) + (f" and {len(readers) - 4} more" if len(readers) > 4 else "")
            close = difflib.get_close_matches(str(key), sorted(own), n=3)
            hint = f"; {model}'s close keys: {', '.join(close)}" if close else ""
            messages.append(f"{key}: given ({where(key)}) but {model} does not read it (a setting of {named}), "
                            f"so it changes nothing{hint}")
    return messages


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require_numbers(config, key, accepted, test, lists=True):
    r"""``config[key]`` (a number, or with ``lists`` a non-empty list of numbers) is finite and passes ``test``."""
    value = config[key]
    items = list(value) if lists and isinstance(value, (list, tuple)) and value else [value]
    if not all(_is_number(v) and math.isfinite(v) and test(v) for v in items):
        raise ConfigError(f"{key}: got {value!r}; expected {accepted}")


# dropout rates (dropout, dropout_prob, hidden_dropout_prob, mess_dropout, node_dropout_rate, ...) and
# regularisation weights (reg_weight, reg_weights, ssl_reg, proto_reg, weight_decay, ...) of any model
_DROPOUT_KEY = re.compile(r"dropout")
_REG_KEY = re.compile(r"(^|_)reg(_|$)|^weight_decay$")
# widths (embedding_size, hidden_size, kg_embedding_size, mlp_hidden_size, user_hidden_size_list, ...): a width
# of 0 builds a model that trains and scores nothing, with exit 0
_WIDTH_KEY = re.compile(r"(embedding|hidden)_size(_list)?$")


def check_values(config):
    r"""The types and ranges of the common RecBole keys in the final ``config`` dict, before RecBole reads them."""
    for key in ("epochs", "train_batch_size", "eval_batch_size"):
        require_int(config, key, 1)
    _require_numbers(config, "learning_rate", "a finite number > 0, e.g. 0.001", lambda v: v > 0, lists=False)
    for key, value in config.items():
        if value is None or not isinstance(key, str):  # None: the model does not use it
            continue
        if _DROPOUT_KEY.search(key):
            _require_numbers(config, key, "a dropout probability 0 <= p < 1 (or a list of them)", lambda v: 0 <= v < 1)
        elif _REG_KEY.search(key):
            _require_numbers(config, key, "a finite number >= 0 (or a list of them)", lambda v: v >= 0)
        elif _WIDTH_KEY.search(key) and not (isinstance(value, (list, tuple)) and not value):
            _require_numbers(
                config, key, "a width, an integer >= 1 (or a list of them)", lambda v: isinstance(v, int) and v >= 1
            )
    check_metrics(config)
    check_cold_start(config)


def check_cold_start(config):
    r"""``cold_start`` is null (off) or ``item``, and ``cold_item_ratio`` a share strictly between 0 and 1."""
    mode = config.get("cold_start")
    if mode is not None and mode != "item":
        raise ConfigError(
            f"cold_start: got {mode!r}; expected item (hold out a share of the items, docs/COLDSTART.md) or null (off)"
        )
    ratio = config.get("cold_item_ratio", 0.2)
    if not (_is_number(ratio) and math.isfinite(ratio) and 0 < ratio < 1):
        raise ConfigError(
            f"cold_item_ratio: got {ratio!r}; expected a share 0 < r < 1 of the items to hold out, e.g. 0.2 "
            "(half for validation, half for test)"
        )


def _needs_cutoff(metric):
    r"""Whether RecBole evaluates ``metric`` at the ``topk`` cut-offs (``NDCG@10``), not once (``AUC``, ``GAUC``)."""
    return bool({"rec.topk", "rec.items"} & set(metrics_dict[metric.lower()].metric_need))


def check_metrics(config):
    r"""``metrics`` are RecBole metrics, ``topk`` positive integers, and ``valid_metric`` one of the
    results they give (RecBole would stop with a KeyError after the first epoch)."""
    metrics = config["metrics"]
    names = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise ConfigError(f"metrics: got {metrics!r}; expected a metric name or a non-empty list of them, e.g. [Recall, NDCG]")
    for name in names:
        if name.lower() not in metric_types:
            everything = sorted(metrics_dict[m].__name__ for m in metrics_dict)
            close = difflib.get_close_matches(name, everything, n=3)
            hint = f"close matches: {', '.join(close)}" if close else f"RecBole's metrics: {', '.join(everything)}"
            raise ConfigError(f"metrics: {name!r} is not a RecBole metric; {hint}")

    topk = config["topk"]
    cutoffs = [topk] if isinstance(topk, int) else topk
    if (
        not isinstance(cutoffs, list)
        or not cutoffs
        or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in cutoffs)
    ):
        raise ConfigError(f"topk: got {topk!r}; expected an integer >= 1 or a non-empty list of them, e.g. [10, 20]")

    valid_metric = config["valid_metric"]
    if not isinstance(valid_metric, str):
        raise ConfigError(f"valid_metric: got {valid_metric!r}; expected a metric at a cut-off, e.g. NDCG@{cutoffs[-1]}")
    name, at, cutoff = valid_metric.partition("@")
    if name.lower() not in [m.lower() for m in names]:
        raise ConfigError(
            f"valid_metric: got {valid_metric!r}, but {name} is not among metrics {names}; "
            f"choose one of them or add {name} to metrics"
        )
    if _needs_cutoff(name):
        if not cutoff.isdigit() or int(cutoff) not in cutoffs:
            raise ConfigError(
                f"valid_metric: got {valid_metric!r}, but {cutoff or 'no cut-off'} is not among topk {cutoffs}; "
                f"expected e.g. {name}@{cutoffs[-1]}, or add the cut-off to topk"
            )
    elif at:
        raise ConfigError(f"valid_metric: got {valid_metric!r}, but {name} has no cut-off; expected {name}")


def check_topk_against_items(config, dataset):
    r"""Every ``topk`` cut-off is at most the number of items (known once the dataset has loaded);
    RecBole would stop with a traceback at the first evaluation, after an epoch of training."""
    n_items = dataset.item_num - 1  # id 0 is RecBole's padding item
    topk = config["topk"]
    if max(topk) > n_items:
        raise ConfigError(
            f"topk: got {topk}, but dataset '{config['dataset']}' has {n_items} items; "
            f"every cut-off must be <= {n_items}"
        )
