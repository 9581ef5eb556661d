"""Shared fixtures: a small multimodal dataset written as RecBole atomic files, and a clean cwd."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest


# the plugin's multimodal baselines
BASELINES = [
    "VBPR",
    "EarlyFusion_MF",
    "LateFusion_MF",
    "HybridFusion_MF",
    "EarlyFusion_GCN",
    "LateFusion_GCN",
    "HybridFusion_GCN",
    "MMGCN",
    "GRCN",
    "LATTICE",
    "BM3",
    "FREEDOM",
]


def write_tiny_dataset(root, name="tiny", n_users=60, n_items=90, dims=(8, 6), seed=0):
    """A learnable toy dataset with a fixed train/valid/test split and one float_seq field per dim.

    Users and items share latent factors; each item's features are a mix of its factors, so the
    features carry signal. Returns the folder that holds ``name/``."""
    rng = np.random.default_rng(seed)
    user_factors = rng.normal(size=(n_users, 4))
    item_factors = rng.normal(size=(n_items, 4))
    scores = user_factors @ item_factors.T
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    splits = {"train": [], "valid": [], "test": []}
    for u in range(n_users):
        liked = np.argsort(-scores[u])[:12]
        rng.shuffle(liked)
        splits["train"] += [(u, i) for i in liked[:9]]
        splits["valid"] += [(u, int(liked[9]))]
        splits["test"] += [(u, i) for i in liked[10:12]]
    for split, rows in splits.items():
        with open(os.path.join(folder, f"{name}.{split}.inter"), "w") as f:
            f.write("user_id:token\titem_id:token\n")
            f.writelines(f"{u}\t{i}\n" for u, i in rows)
    fields = ["v_feat", "a_feat", "t_feat"][: len(dims)]
    blocks = [item_factors @ rng.normal(size=(4, d)) + 0.1 * rng.normal(size=(n_items, d)) for d in dims]
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\t" + "\t".join(f"{field}:float_seq" for field in fields) + "\n")
        for i in range(n_items):
            f.write(f"{i}\t" + "\t".join(" ".join(f"{x:.6g}" for x in block[i]) for block in blocks) + "\n")
    return root, fields, blocks


@pytest.fixture
def one_thread():
    """Two shared cores: OpenMP threads spinning against other jobs make small ops 100x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_command_line_settings(monkeypatch):
    """RecBole's Config reads every --key=value of sys.argv, and this package refuses unknown keys:
    pytest's own options (--durations=10, --timeout=60) are not settings of the runs under test."""
    monkeypatch.setattr(sys, "argv", sys.argv[:1])


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch):
    """Run in a temporary working directory: RecBole writes log/ and saved/ there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_config(in_tmp_cwd):
    """Config dict for the tiny dataset, with a fast training schedule."""
    root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / "data"))
    return {
        "dataset": "tiny",
        "data_path": root,
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id"]},
        "modalities": fields,
        "epochs": 2,
        "train_batch_size": 128,
        "eval_batch_size": 4096,
        "show_progress": False,
        "checkpoint_dir": str(in_tmp_cwd / "saved"),
        "seed": 2020,
    }


# ---- killing a run mid-epoch (the resume tests) ------------------------------------------------

KILL_EPOCH = 3
# The child is the real command line, with one test-only hook: at batch 2 of epoch KILL_EPOCH it writes
# a marker and sleeps, so the test kills it (SIGKILL) mid-epoch at a known point whatever the machine's load.
CHILD = """
import os, runpy, sys, time
from recbole_metammf.trainer import SafeCheckpointMixin
check = SafeCheckpointMixin._check_nan
def check_then_hang(self, loss):
    check(self, loss)
    if self._epoch == {epoch} and self._batch == 2:
        open({marker!r}, "w").close()
        time.sleep(600)
SafeCheckpointMixin._check_nan = check_then_hang
sys.argv = [{script!r}] + {args!r}
runpy.run_path({script!r}, run_name="__main__")
"""


def kill_mid_epoch(tmp, script, args):
    """Run ``script`` with ``args`` in a child process and SIGKILL it in epoch KILL_EPOCH."""
    marker = str(tmp / "hanging")
    code = CHILD.format(epoch=KILL_EPOCH, marker=marker, script=script, args=args)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not os.path.exists(marker):
            assert child.poll() is None, f"the run ended before epoch {KILL_EPOCH}: {child.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "the run did not reach the kill point in 300 s"
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)  # no clean-up, like a lost machine
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def build(model_name, config_dict, seed=2020):
    r"""Config, model and data loaders of ``model_name`` on ``config_dict``'s dataset (the model initialised after ``init_seed(seed)``)."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_metammf.config import Config
    from recbole_metammf.registry import get_model

    config = Config(model=model_name, dataset=config_dict["dataset"], config_dict=config_dict)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(seed, True)
    model = get_model(model_name)(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def fit_one_batch(model, batch, steps, lr=1e-2):
    r"""The training losses of ``steps`` Adam steps on one batch."""
    import torch

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def dense_knn_graph(features, k):
    r"""LATTICE's initial item-item graph of one modality, in numpy: each item's ``k`` most cosine-similar items
    (itself included, the padding row 0 left out), weighted by the similarity (a negative one by 0), ``D^{-1/2} S D^{-1/2}``."""
    x = features[1:] / np.linalg.norm(features[1:], axis=1, keepdims=True)
    similarity = x @ x.T
    s = np.zeros((len(features), len(features)))
    for row in range(len(x)):
        neighbours = np.argsort(-similarity[row])[:k]
        s[row + 1, neighbours + 1] = np.maximum(similarity[row, neighbours], 0)
    degree = s.sum(1)
    inv = np.zeros_like(degree)
    inv[degree > 0] = degree[degree > 0] ** -0.5
    return inv[:, None] * s * inv[None, :]
