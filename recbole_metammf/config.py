r"""RecBole's :class:`Config`, extended for the plugin.

On top of RecBole's own defaults it reads, in this order (later wins, and anything the user gives
in files, dicts or on the command line wins over all of them):

* ``properties/overall.yaml`` — the evaluation protocol of the paper, shared by every model;
* ``properties/model/<Model>.yaml`` — the plugin model's defaults;
* ``properties/dataset/<dataset>.yaml`` — the dataset's settings (its modalities, its split).

For a multimodal model the item fields named in ``modalities`` are added to ``load_col``. Before any
data is loaded, every key given is checked against the keys RecBole and the plugin declare (a typo
is refused with close matches, naming the file and line it came from), the common RecBole values
(:mod:`recbole_metammf.config_checks`), the model's keys, ``gpu_id`` against the GPUs present, and
that the dataset's folder and interaction files exist. Command-line and dict values are parsed as
Python literals (``ast.literal_eval``), never evaluated as code, and YAML is read with a safe loader.

In a multi-process run (``local_rank`` set by :func:`recbole_metammf.quick_start.run`) the process
group uses nccl on GPUs and gloo on CPU; RecBole 1.2.1 always asks for nccl and a GPU.
"""

import difflib
import os
import sys
from typing import Any, Dict, List, Optional, Union

import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.model.abstract_recommender import AbstractRecommender

from recbole_metammf.cmdline import parse_value
from recbole_metammf.compat import missing_model_package, physical_gpu_count
from recbole_metammf.config_checks import check_values, ignored_key_messages, recbole_download_names, unknown_key_messages
from recbole_metammf.files import SafeLoader
from recbole_metammf.paths import model_yaml
from recbole_metammf.registry import get_model
from recbole_metammf.utils import DATASET_DIR, PROPERTIES_DIR, ConfigError, modality_scaling


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


def read_config_file(path):
    r"""A config file's settings and the line of each key, ``(settings, {key: line})``, read with the
    safe loader. An unreadable file, malformed YAML, or YAML that is not ``key: value`` lines is a
    :class:`ConfigError` naming the file and the line (yaml's own message names ``"<unicode string>"``)."""
    try:
        with open(path, encoding="utf-8") as f:
            loader = SafeLoader(f)
            try:
                node = loader.get_single_node()
                settings = {} if node is None else loader.construct_document(node)
            finally:
                loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config_files: {path}{where}: not valid YAML ({error.problem or error.context})") from None
    except yaml.YAMLError as error:  # e.g. bytes that are not UTF-8
        raise ConfigError(f"config_files: {path}: not valid YAML ({error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config_files: {path}: not a UTF-8 text file ({error.reason})") from None
    except OSError as error:  # missing, a directory, no permission
        raise ConfigError(f"config_files: {path}: cannot be read ({error.strerror or error})") from None
    if not isinstance(settings, dict):
        raise ConfigError(
            f"config_files: {path}, line {node.start_mark.line + 1}: expected settings as `key: value` lines "
            f"(a YAML mapping), got a {type(settings).__name__}"
        )
    return settings, {str(key.value): key.start_mark.line + 1 for key, _ in node.value} if node else {}


# (user, item) rows scored at once for a model without full_sort_predict (RecBole's own default, 4096, is one
# user per batch on tiktok: slow; 2^18 rows keep an MLP's activations in hundreds of MB)
PAIRWISE_EVAL_BATCH_SIZE = 2**18


def _checks_keys_of(model):
    r"""Whether the keys given with ``model`` are checked: always for a model named by a string or a
    class of RecBole's or the plugin's; a class of the user's own may read keys no yaml declares."""
    return model is None or isinstance(model, str) or model.__module__.split(".")[0] in ("recbole", "recbole_metammf")


class Config(RecBoleConfig):
    r"""RecBole's Config with the plugin's defaults and checks (see the module's docstring).

    ``command_line=False``: do not read ``--key=value`` settings from ``sys.argv`` (RecBole always
    does), e.g. when rebuilding a checkpoint's config inside another program."""

    def __init__(
        self,
        model: Union[str, type, None] = None,
        dataset: Optional[str] = None,
        config_file_list: Optional[List[str]] = None,
        config_dict: Optional[Dict[str, Any]] = None,
        command_line: bool = True,
    ) -> None:
        self._read_command_line = command_line
        self._check_keys = _checks_keys_of(model)
        self._file_key_lines = {}  # key -> "in FILE, line N" of the file that set it last
        super().__init__(model, dataset, config_file_list, config_dict)
        # keys meant for other models: warned about once the run's log exists (quick_start.start_logging)
        self.ignored_key_messages = ignored_key_messages(self.model, self._given_keys()) if self._check_keys else []

    def _build_yaml_loader(self):
        return SafeLoader

    def _convert_config_dict(self, config_dict):
        return {key: parse_value(value) if isinstance(value, str) else value for key, value in config_dict.items()}

    def _load_config_files(self, file_list):
        settings = {}
        for path in file_list or []:
            values, lines = read_config_file(path)
            settings.update(values)
            self._file_key_lines.update(
                {key: f"in {path}, line {lines[str(key)]}" if str(key) in lines else f"in {path}" for key in values}
            )
        return settings

    def _load_cmd_line(self):
        r"""The ``--key=value`` arguments of ``sys.argv`` (a value may hold ``=``), as RecBole reads them;
        other arguments belong to the program. A key given twice with two values is refused."""
        if not self._read_command_line or "ipykernel_launcher" in sys.argv[0]:  # RecBole skips notebooks too
            return {}
        settings = {}
        for arg in sys.argv[1:]:
            key, sep, value = arg[2:].partition("=")
            if not arg.startswith("--") or not key or not sep:
                continue
            if key in settings and settings[key] != value:
                raise ConfigError(f"{key}: given twice on the command line, as {settings[key]!r} and {value!r}")
            settings[key] = value
        return self._convert_config_dict(settings)

    def _given_keys(self):
        r"""The keys given, with where each came from, highest precedence first."""
        return [
            (self.cmd_config_dict, lambda key: "from the command line"),
            (self.variable_config_dict, lambda key: "from the config dict"),
            (self.file_config_dict, lambda key: self._file_key_lines.get(key, "from a config file")),
        ]

    def _merge_external_config_dict(self):
        super()._merge_external_config_dict()
        if not self._check_keys:
            return
        messages = unknown_key_messages(self._given_keys())
        if messages:
            raise ConfigError("\n".join(messages))

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
                f"{PROPERTIES_DIR} not found: reinstall recbole-metammf (`pip install .` copies properties/ into the package)"
            )
        # RecBole's own dataset/ folder is relative to the working directory; the shipped data is not
        if os.path.isdir(os.path.join(DATASET_DIR, dataset)):
            self.internal_config_dict["data_path"] = DATASET_DIR
        for path in [os.path.join(PROPERTIES_DIR, "overall.yaml"), model_yaml(model)]:
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
            self._check_gpu_id()
            if self.external_config_dict.get("use_gpu") is False:  # RecBole 1.2.1 ignores it
                config["device"] = torch.device("cpu")
            config["use_gpu"] = config["device"].type == "cuda"  # RecBole logs its default, True, on the CPU too
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
        config["use_gpu"] = device.type == "cuda"
        config["single_spec"] = False
        if config["local_rank"] != 0:
            config["state"] = "error"
            config["show_progress"] = False
            config["verbose"] = False
            # rank 0 of the node writes the saved dataset / dataloaders; two writers would interleave
            config["save_dataset"] = False
            config["save_dataloaders"] = False

    def _check_gpu_id(self):
        r"""A ``gpu_id`` the user gave that names no GPU of this machine is an error: RecBole 1.2.1 runs
        on the CPU then and still logs that GPU and ``use_gpu = True``. RecBole's default gpu_id ("the
        first GPU if there is one") and ``gpu_id: ''`` (the CPU) are not checked."""
        config = self.final_config_dict
        gpu_id = config["gpu_id"]
        default = gpu_id_string(self.internal_config_dict.get("gpu_id"))
        given = "gpu_id" in self.external_config_dict and gpu_id not in ("", default)
        if not given or self.external_config_dict.get("use_gpu") is False:
            return
        n_gpus = physical_gpu_count()
        ids = [part.strip() for part in gpu_id.split(",")]
        absent = [i for i in ids if not i.isdigit() or (n_gpus is not None and int(i) >= n_gpus)]
        if not absent and config["device"].type == "cuda":
            return
        if not torch.backends.cuda.is_built():
            present = f"this torch ({torch.__version__}) is built without CUDA, so no GPU can be used"
        elif n_gpus == 0:
            present = "this machine has no GPU"
        elif n_gpus and not absent:
            present = f"torch cannot use this machine's {n_gpus} GPU(s) (torch.cuda.is_available() is False)"
        elif n_gpus:
            present = f"this machine has {n_gpus} GPU(s): ids {', '.join(map(str, range(n_gpus)))}"
        else:
            present = "torch finds no GPU there (torch.cuda.is_available() is False)"
        raise ConfigError(f"gpu_id: got {gpu_id!r}, but {present}; give the id of a GPU present, or --gpu_id='' to run on the CPU")

    def _loads_atomic_files(self):
        r"""Whether RecBole will read the dataset's atomic files (not its own saved dataset or dataloaders)."""
        return not (self.final_config_dict.get("dataset_save_path") or self.final_config_dict.get("dataloaders_save_path"))

    def _check_dataset_folder(self):
        r"""The dataset's folder exists: otherwise a MetaMMF model stops at its modalities (no dataset
        yaml sets them) and RecBole's models with a traceback. A name RecBole can download is left to
        RecBole (it asks first)."""
        folder = self.final_config_dict["data_path"]  # data_path/dataset by now
        if self._loads_atomic_files() and not os.path.isdir(folder) and self.dataset not in recbole_download_names():
            searched = [os.path.abspath(folder)]
            if "data_path" not in self.external_config_dict:  # the package's own data is looked up too
                searched.append(os.path.join(DATASET_DIR, self.dataset))
            parents = {os.path.dirname(path) for path in searched}
            there = sorted({name for parent in parents if os.path.isdir(parent) for name in os.listdir(parent)
                            if os.path.isdir(os.path.join(parent, name))})
            close = difflib.get_close_matches(self.dataset, there, n=3)
            hint = (f"; close matches: {', '.join(close)}" if close else
                    f"; datasets there: {', '.join(there)}" if there else "; set data_path to the folder that holds it")
            raise ConfigError(f"dataset: {self.dataset!r} not found (no folder {' nor '.join(searched)}){hint}")

    def _check_interaction_files(self):
        r"""The ``.inter`` files RecBole will read exist (it would stop with a traceback while loading)."""
        config, folder = self.final_config_dict, self.final_config_dict["data_path"]
        if not self._loads_atomic_files() or not os.path.isdir(folder):
            return
        parts = config["benchmark_filename"]
        files = [f"{self.dataset}.{part}.inter" for part in parts] if parts else [f"{self.dataset}.inter"]
        missing = [name for name in files if not os.path.isfile(os.path.join(folder, name))]
        if missing:
            holds = sorted(os.listdir(folder))
            split = [name[len(self.dataset) + 1 : -len(".inter")] for name in holds
                     if name.startswith(f"{self.dataset}.") and name.endswith(".inter") and name.count(".") == 2]
            order = ["train", "valid", "test"]
            split.sort(key=lambda part: order.index(part) if part in order else len(order))
            hint = f"; for its fixed split set benchmark_filename: {split}" if split and not parts else ""
            raise ConfigError(
                f"dataset: {folder} has no {', '.join(missing)} (it holds {', '.join(holds[:10]) or 'nothing'}){hint}"
            )

    def _set_default_parameters(self):
        check_values(self.final_config_dict)  # before RecBole reads them: its own checks raise tracebacks
        super()._set_default_parameters()
        self._fit_eval_batch_to_pairwise_models()
        self._check_dataset_folder()
        if self.final_config_dict["benchmark_filename"]:
            # RecBole reads the split from these files and ignores eval_args' split; log the one used
            parts = list(self.final_config_dict["benchmark_filename"])
            self.final_config_dict["eval_args"]["split"] = {"benchmark_filename": parts}
        if "show_progress" not in self.external_config_dict and not sys.stderr.isatty():
            # tqdm's carriage returns make a redirected stderr (a log file, CI) unreadable; the log
            # already has a line per epoch. --show_progress=True still forces the bars.
            self.final_config_dict["show_progress"] = False
        missing = missing_model_package(getattr(self.model_class, "__name__", None))
        if missing:
            raise ConfigError(
                f"model: {self.model_class.__name__} needs the package {missing[0]}, which is not installed "
                f"(pip install {missing[1]}); RecBole imports it only once training has started"
            )
        if hasattr(self.model_class, "check_config"):
            self.model_class.check_config(self)
        if getattr(self.model_class, "requires_modalities", False):
            self._load_modality_columns()
        self._check_interaction_files()

    def _fit_eval_batch_to_pairwise_models(self):
        r"""``eval_batch_size`` of overall.yaml counts scores of a users x items matrix: one product for a model
        with ``full_sort_predict``. A model without it (RecBole's NeuMF, DMF, ConvNCF, ...) is scored by
        ``predict`` on one row per (user, item) pair, RecBole building that many rows at once, and its layers'
        activations for 16.7M rows run out of memory (the process is killed, exit 137). Such models get
        :data:`PAIRWISE_EVAL_BATCH_SIZE` rows unless the user set ``eval_batch_size``."""
        if "eval_batch_size" in self.external_config_dict or not isinstance(self.model_class, type):
            return
        if getattr(self.model_class, "full_sort_predict", None) is not AbstractRecommender.full_sort_predict:
            return
        rows = min(self.final_config_dict["eval_batch_size"], PAIRWISE_EVAL_BATCH_SIZE)
        self.final_config_dict["eval_batch_size"] = rows

    def _load_modality_columns(self):
        r"""Check the modality fields against the dataset's ``.item`` file (the one place they are checked)
        and add them to the item columns RecBole loads (``load_col: None`` loads all)."""
        self._check_modalities_in_item_file()
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
