r"""The package's data folders (``properties/``, ``dataset/``): the repository's in a checkout or an
editable install, else the copies setup.py puts in the package. Loads nothing heavy, so the command
lines' ``--help`` can list what these folders hold."""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_DATA_ROOT = REPO_ROOT if os.path.isfile(os.path.join(REPO_ROOT, "properties", "overall.yaml")) else os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "_data"
)
PROPERTIES_DIR = os.path.join(_DATA_ROOT, "properties")
DATASET_DIR = os.path.join(_DATA_ROOT, "dataset")
MODEL_PROPERTIES_DIR = os.path.join(PROPERTIES_DIR, "model")
TUNE_SPACES_DIR = os.path.join(PROPERTIES_DIR, "tune")  # the search spaces of run_tune.py (--space)


def model_yaml(model):
    r"""Path of the plugin model ``model``'s defaults, ``properties/model/<model>.yaml`` (a built-in RecBole
    model has none)."""
    return os.path.join(MODEL_PROPERTIES_DIR, f"{model}.yaml")

