r"""RecBole's :class:`Config`, extended for the plugin.

On top of RecBole's own defaults it reads, in this order (later wins, and anything the user gives
in files, dicts or on the command line wins over all of them):

* ``properties/overall.yaml`` — the evaluation protocol of the paper, shared by every model;
* ``properties/model/<Model>.yaml`` — the plugin model's defaults;
* ``properties/dataset/<dataset>.yaml`` — the dataset's settings (its modalities, its split).

For a multimodal model the item fields named in ``modalities`` are added to ``load_col``, and the
model's keys are checked before any data is loaded. Command-line and dict values are parsed as
Python literals (``ast.literal_eval``), never evaluated as code, and YAML is read with a safe loader.

In a multi-process run (``local_rank`` set by :func:`recbole_metammf.quick_start.run`) the process
group uses nccl on GPUs and gloo on CPU; RecBole 1.2.1 always asks for nccl and a GPU.
"""

import ast
import os
import re

import torch
import yaml
from recbole.config import Config as RecBoleConfig

from recbole_metammf.utils import DATASET_DIR, PROPERTIES_DIR, ConfigError, get_model, modality_scaling


class _SafeLoader(yaml.SafeLoader):
    r"""YAML's safe loader, reading ``1e-6`` as a float like RecBole's loader does."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_value(text):
    r"""A command-line value as a Python literal (``[128,64,32]``, ``1e-6``, ``False``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in ("none", "null", "~"):
            return None
        return text


DIST_BACKENDS = ("nccl", "gloo")


def gpu_id_string(gpu_id):
    r"""``gpu_id`` as RecBole keeps it: ``"0,1"`` from ``(0, 1)``, ``[0, 1]`` or ``"0,1"``; ``""`` = no GPU."""
    if isinstance(gpu_id, (tuple, list)):
        return ",".join(map(str, gpu_id))
    return "" if gpu_id is None else str(gpu_id)


def distributed_backend_and_device(config):
    r"""The ``torch.distributed`` backend and the device of process ``local_rank`` of a multi-process
    run, checked before any process group starts: nccl with one GPU per process when CUDA is
    available and ``gpu_id`` is not empty, else gloo on the CPU; ``dist_backend`` forces one."""
    backend = config.get("dist_backend")
    if backend is not None and backend not in DIST_BACKENDS:
        raise ConfigError(f"dist_backend: got {backend!r}; expected nccl, gloo or null (nccl on GPUs, gloo on CPU)")
    gpu_id, nproc = gpu_id_string(config["gpu_id"]), config["nproc"]
    use_cuda = bool(gpu_id) and torch.cuda.is_available()
    if use_cuda:
        # CUDA_VISIBLE_DEVICES = gpu_id, so process local_rank uses cuda:local_rank (RecBole's mapping)
        n_gpus = min(len(gpu_id.split(",")), torch.cuda.device_count())
        if n_gpus < nproc:
            raise ConfigError(
                f"gpu_id: got {gpu_id!r}, {n_gpus} GPU(s) for nproc={nproc} processes; give one GPU per "
                f"process (e.g. --nproc=4 --gpu_id=0,1,2,3), or --gpu_id='' to run the processes on the CPU (gloo)"
            )
    elif backend == "nccl":
        raise ConfigError(
            f"dist_backend: got 'nccl', which needs a GPU per process, but gpu_id={gpu_id!r} and CUDA "
            f"available={torch.cuda.is_available()}; use gloo or leave dist_backend unset"
        )
    device = torch.device("cuda", config["local_rank"]) if use_cuda else torch.device("cpu")
    return backend or ("nccl" if use_cuda else "gloo"), device


def parse_config_files(text):
    r"""``--config_files`` as a list of paths (separated by spaces or commas), or None when not given."""
    return text.replace(",", " ").split() if text else None


class Config(RecBoleConfig):
    def _build_yaml_loader(self):
        return _SafeLoader

    def _convert_config_dict(self, config_dict):
        return {key: parse_value(value) if isinstance(value, str) else value for key, value in config_dict.items()}

    def _get_model_and_dataset(self, model, dataset):
        if model is None and "model" not in self.external_config_dict:
            raise ConfigError("model: not given; pass --model=NAME, a config file or config dict with 'model'")
        if dataset is None and "dataset" not in self.external_config_dict:
            raise ConfigError("dataset: not given; pass --dataset=NAME, a config file or config dict with 'dataset'")
        model = model if model is not None else self.external_config_dict["model"]
        dataset = dataset if dataset is not None else self.external_config_dict["dataset"]
        if isinstance(model, str):
            return model, get_model(model), dataset
        return model.__name__, model, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        if not os.path.isdir(PROPERTIES_DIR):
            raise FileNotFoundError(
                f"{PROPERTIES_DIR} not found: install recbole-metammf from its source tree with `pip install -e .`"
            )
        # RecBole's own dataset/ folder is relative to the working directory; the shipped data is not
        if os.path.isdir(os.path.join(DATASET_DIR, dataset)):
            self.internal_config_dict["data_path"] = DATASET_DIR
        for name in ["overall.yaml", os.path.join("model", f"{model}.yaml")]:
            path = os.path.join(PROPERTIES_DIR, name)
            if os.path.isfile(path):
                self._update_internal_config_dict(path)
        dataset_file = os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml")
        if os.path.isfile(dataset_file):
            dataset_keys = self._update_internal_config_dict(dataset_file) or {}
            self.parameters["Dataset"] += [key for key in dataset_keys if key not in self.parameters["Dataset"]]

    def _init_device(self):
        r"""RecBole's device choice in one process. With ``local_rank`` (one process of a multi-process
        run), RecBole 1.2.1 starts an nccl process group on ``cuda:local_rank`` whatever the machine;
        here the backend and device come from :func:`distributed_backend_and_device` (gloo on CPU).
        The rest is RecBole's: ranks other than 0 log errors only and show no progress bars."""
        config = self.final_config_dict
        if "local_rank" not in config:
            super()._init_device()
            return
        config["gpu_id"] = gpu_id_string(config["gpu_id"])
        os.environ["CUDA_VISIBLE_DEVICES"] = config["gpu_id"]
        backend, device = distributed_backend_and_device(config)
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before the group starts: nccl binds each rank to its GPU
        torch.distributed.init_process_group(
            backend=backend,
            rank=config["local_rank"] + config["offset"],
            world_size=config["world_size"],
            init_method=f"tcp://{config['ip']}:{config['port']}",
        )
        config["dist_backend"] = backend
        config["device"] = device
        config["single_spec"] = False
        if config["local_rank"] != 0:
            config["state"] = "error"
            config["show_progress"] = False
            config["verbose"] = False
            # rank 0 of the node writes the saved dataset / dataloaders; two writers would interleave
            config["save_dataset"] = False
            config["save_dataloaders"] = False

    def _set_default_parameters(self):
        super()._set_default_parameters()
        if hasattr(self.model_class, "check_config"):
            self.model_class.check_config(self)
        if getattr(self.model_class, "requires_modalities", False):
            self._load_modality_columns()

    def _load_modality_columns(self):
        r"""Add the modality fields to the item columns RecBole loads (``load_col: None`` loads all)."""
        load_col = self.final_config_dict.get("load_col")
        if load_col is None:
            return
        load_col = dict(load_col)
        item_columns = list(load_col.get("item") or [])
        for field in [self.final_config_dict["ITEM_ID_FIELD"]] + list(self.final_config_dict["modalities"]):
            if field not in item_columns:
                item_columns.append(field)
        load_col["item"] = item_columns
        self.final_config_dict["load_col"] = load_col
        self._check_modalities_in_item_file()
        if modality_scaling(self.final_config_dict) == "minmax" and not self.final_config_dict.get("normalize_field"):
            # RecBole's min-max normalisation of each field; only the multimodal models load these fields
            self.final_config_dict["normalize_field"] = list(self.final_config_dict["modalities"])

    def _check_modalities_in_item_file(self):
        r"""Refuse modalities that the dataset's ``.item`` header does not declare as ``float_seq``."""
        item_file = os.path.join(self.final_config_dict["data_path"], f"{self.dataset}.item")
        modalities = self.final_config_dict["modalities"]
        if not os.path.isfile(item_file):
            raise ConfigError(f"modalities: {modalities} need the item features file {item_file}, which does not exist")
        with open(item_file, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split(self.final_config_dict["field_separator"])
        float_seq = [column.split(":")[0] for column in header if column.endswith(":float_seq")]
        missing = [m for m in modalities if m not in float_seq]
        if missing:
            raise ConfigError(
                f"modalities: {missing} not among the float_seq fields of {item_file} (it has {float_seq or 'none'})"
            )
