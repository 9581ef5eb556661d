r"""Compatibility shims for the pinned third-party versions; each says who needs it and when it can go."""

import contextlib
import copy
import os
import warnings

import torch
from recbole.evaluator import Collector as RecBoleCollector
from torch.nn.parallel import DistributedDataParallel


def silence_known_warnings():
    r"""Warnings raised inside RecBole 1.2.1 on every run, which users cannot act on."""
    # pandas 2.2 warns about RecBole 1.2.1's `df[field].fillna(..., inplace=True)` (dataset.py);
    # remove when RecBole stops using chained inplace fillna (or when the pandas<2.3 pin goes).
    warnings.filterwarnings("ignore", category=FutureWarning, message="A value is trying to be set on a copy")
    # torch >= 2.4 deprecates torch.cuda.amp.GradScaler, which RecBole 1.2.1's trainer builds every epoch;
    # remove when RecBole uses torch.amp.GradScaler.
    warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch.cuda.amp.GradScaler")
    # pandas 2.x deprecates Series.agg(len) on a column of sequences, which RecBole 1.2.1's
    # Dataset._normalize (dataset.py:712, `feat[field].agg(len)`) calls on every min-max scaled
    # float_seq field; remove when RecBole uses Series.transform(len) (or the pandas pin goes below 2.1).
    warnings.filterwarnings("ignore", category=FutureWarning, message=r"using <built-in function len> in Series.agg")
    # torch (1.13 to at least 2.13) warns on every sparse CSR tensor it builds; MetaMMF_GCN's mean
    # aggregation is a CSR product (PyG's spmm path). Remove when torch calls CSR support stable.
    warnings.filterwarnings("ignore", category=UserWarning, message="Sparse CSR tensor support is in beta state")


@contextlib.contextmanager
def keeping_anomaly_mode():
    r"""Leave torch's autograd anomaly mode as it was around an import of RecBole's model packages.

    RecBole 1.2.1's ``sequential_recommender/sine.py`` calls ``torch.autograd.set_detect_anomaly(True)``
    when it is imported, which happens whenever a model name is looked up beyond RecBole's general
    models (an unknown name, a sequential model, the close matches of an error message). Anomaly mode then
    stays on for the process: every backward pass several times slower, and a NaN that a later
    ``torch.where`` would discard (LATTICE's ``0 ** -0.5``) becomes an error. Remove when RecBole drops that line.
    """
    enabled, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(enabled, check_nan)


@contextlib.contextmanager
def without_recbole_ddp(config):
    r"""Build a RecBole trainer without the DistributedDataParallel wrapper of its constructor.

    RecBole 1.2.1's ``AbstractTrainer.__init__`` wraps the model in
    ``DistributedDataParallel(model, device_ids=[local_rank])``, which torch refuses for a model on the
    CPU (gloo runs), and converts BatchNorm to SyncBatchNorm, which runs on CUDA only. The constructor
    reads ``single_spec`` for nothing else, so it is shown ``True`` while it runs and
    :class:`recbole_metammf.trainer.SafeCheckpointMixin` builds the wrapper itself. Remove when RecBole
    passes ``device_ids`` only for CUDA modules.
    """
    single_spec = config["single_spec"]
    config["single_spec"] = True
    try:
        yield
    finally:
        config["single_spec"] = single_spec


def ddp_without_buffer_sync(module, device_ids):
    r"""``DistributedDataParallel(module, device_ids=device_ids)`` that never sends buffers, neither at
    construction nor before a forward (``broadcast_buffers=False``).

    torch 2.13 deprecates ``broadcast_buffers`` for ``forward_sync_buffers``, whose ``False`` still
    broadcasts every buffer at construction; its warning says to keep ``broadcast_buffers=False`` until
    an ``init_sync_buffers`` option exists. Switch to that option when torch has it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`broadcast_buffers` is deprecated")
        return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)


def make_recbole_dirs(config):
    r"""Create the folders RecBole creates at the start of every run (``log/<model>/``, relative to the
    working directory, and ``checkpoint_dir``) before RecBole does: runs, trials or processes started
    together (two benchmarks side by side, a sweep, a multi-process run) race there.

    RecBole 1.2.1's ``ensure_dir`` tests for the folder, then creates it without ``exist_ok``: when two
    processes start together both can see it missing and one stops with ``FileExistsError: './log'``
    (seen with two processes of BPR on tiktok, and two VBPR runs started together). Remove when
    ``ensure_dir`` passes ``exist_ok=True``.
    """
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    os.makedirs(config["checkpoint_dir"], exist_ok=True)


class Collector(RecBoleCollector):
    r"""RecBole's evaluation collector, moving only tensors to the CPU.

    RecBole 1.2.1's ``get_data_struct`` calls ``.cpu()`` on everything it collected, but the
    ``data.num_items`` (an int) that ``GiniIndex`` needs and the ``data.count_items`` (a Counter) that
    ``ItemCoverage`` / ``AveragePopularity`` need are not tensors: ``AttributeError: 'int' object has no
    attribute 'cpu'`` at the first evaluation. Remove when RecBole skips non-tensors there.
    """

    def get_data_struct(self):
        data = self.data_struct._data_dict
        for key, value in data.items():
            if isinstance(value, torch.Tensor):
                data[key] = value.cpu()
        returned_struct = copy.deepcopy(self.data_struct)
        for key in ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]:
            if key in self.data_struct:
                del self.data_struct[key]
        return returned_struct


# Keys RecBole 1.2.1 reads from its config without a default in any of its properties/*.yaml files:
# the launch settings of its multi-process runs, values it derives itself, and a few settings that
# only some models, metrics or data transforms read. recbole_metammf.config_keys accepts them next to
# the keys of the yaml files. Review when the RecBole pin changes (grep its code for config["...").
RECBOLE_KEYS_WITHOUT_DEFAULT = (
    # torch.distributed launch (RecBole's run_recboles / the plugin's quick_start.run)
    "local_rank", "world_size", "nproc", "offset", "ip", "port", "single_spec", "verbose",
    # derived by RecBole's Config, trainers, models or transforms
    "device", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "valid_neg_sample_args", "test_neg_sample_args",
    "feature_num", "MASK_INDEX", "MASK_ITEM_SEQ", "POS_ITEMS", "NEG_ITEMS", "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN",
    "REORDER_ITEM_SEQ", "INVERSE_ITEM_SEQ",
    # read without a default by one metric, dataset, transform, trainer or model
    "tail_ratio", "token_num_threshold", "encoding", "eta", "xgb_early_stopping_rounds",
    "cin", "contrast", "sim", "use_filter", "has_residual", "norm",
)


# RecBole 1.2.1 models that import an optional package only once training runs (NCL's k-means at the first
# epoch, KGAT's graph at the first batch): without it the run ends in a ModuleNotFoundError traceback after the
# data has loaded. Checked when the config is built instead. Review when the RecBole pin changes.
RECBOLE_MODEL_PACKAGES = {"NCL": ("faiss", "faiss-cpu or faiss-gpu"), "KGAT": ("dgl", "dgl")}


def missing_model_package(model_name):
    r"""``(module, pip name)`` of the optional package RecBole's ``model_name`` needs and this environment
    lacks, else ``None``."""
    import importlib.util

    module, pip_name = RECBOLE_MODEL_PACKAGES.get(model_name, (None, None))
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return module, pip_name


def physical_gpu_count():
    r"""How many GPUs the machine has, without initialising CUDA; ``None`` when that cannot be told.

    RecBole 1.2.1 sets ``CUDA_VISIBLE_DEVICES`` to ``gpu_id`` before torch first touches CUDA, so
    ``gpu_id`` names physical GPUs; ``torch.cuda.device_count()`` cannot count them without fixing the
    visible devices first. torch's private ``_raw_device_count_nvml`` asks the driver (NVML) instead;
    torch 1.13 to at least 2.13 have it. Replace it when torch offers a public NVML count.
    """
    if not torch.backends.cuda.is_built():
        return 0
    count = getattr(torch.cuda, "_raw_device_count_nvml", None)
    if count is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Can't initialize NVML" when there is no driver: unknown, said below
            n = count()
    except OSError:  # no libnvidia-ml (no NVIDIA driver, or a ROCm build): unknown
        return None
    return n if n >= 0 else None


# on import: every module that runs RecBole imports this one (config, trainer, quick_start)
silence_known_warnings()
