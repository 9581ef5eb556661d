r"""Model and trainer lookup: the plugin's models first, then RecBole's; RecBole's trainers with the
plugin's checkpoints and checks (:class:`recbole_metammf.trainer.SafeCheckpointMixin`)."""

import difflib
import functools
import importlib
import pkgutil

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_metammf.compat import keeping_anomaly_mode
from recbole_metammf.errors import ConfigError
from recbole_metammf.trainer import SafeCheckpointMixin

_PLUGIN_MODELS = "recbole_metammf.model.general_recommender"
_RECBOLE_MODEL_PACKAGES = [
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.sequential_recommender",
    "recbole.model.knowledge_aware_recommender",
]


def _module_names(package):
    module = importlib.import_module(package)
    return [name for _, name, _ in pkgutil.iter_modules(module.__path__)]


def known_model_names():
    r"""Class names of the plugin's models and RecBole's (for error messages)."""
    names = []
    for package in [_PLUGIN_MODELS] + _RECBOLE_MODEL_PACKAGES:
        with keeping_anomaly_mode():
            module = importlib.import_module(package)
        names += [name for name in dir(module) if name[:1].isupper() and isinstance(getattr(module, name), type)]
    return sorted(set(names))


def get_model(model_name):
    r"""The model class named ``model_name``: the plugin's if it has one, otherwise RecBole's."""
    if model_name.lower() in _module_names(_PLUGIN_MODELS):
        module = importlib.import_module(f"{_PLUGIN_MODELS}.{model_name.lower()}")
        if hasattr(module, model_name):
            return getattr(module, model_name)
    try:
        with keeping_anomaly_mode():
            return recbole_get_model(model_name)
    except (ValueError, AttributeError, ImportError):  # RecBole imports its exlib package (lightgbm) last
        close = difflib.get_close_matches(model_name, known_model_names(), n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(f"model: {model_name!r} is neither a recbole_metammf nor a RecBole model{hint}") from None


@functools.lru_cache(maxsize=None)
def get_trainer(model_type, model_name):
    r"""RecBole's trainer for the model, with checkpoints that load with ``weights_only=True``."""
    trainer_class = recbole_get_trainer(model_type, model_name)
    return type(trainer_class.__name__, (SafeCheckpointMixin, trainer_class), {})
