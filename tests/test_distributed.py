"""Training in several processes through RecBole's torch.distributed path, for real: two CPU
processes with the gloo backend, started by quick_start.run (and the command line) as a user would."""

import glob
import math
import os
import runpy
import socket
import subprocess
import sys

import pytest
import torch

import recbole_metammf.distributed as distributed
import recbole_metammf.quick_start as quick_start
from recbole_metammf.quick_start import load_data_and_model, run
from recbole_metammf.checkpoint import load_checkpoint
from recbole_metammf.registry import get_model, get_trainer
from recbole_metammf.utils import REPO_ROOT, ConfigError

METRICS = [f"{m}@{k}" for m in ["precision", "recall", "hit", "ndcg"] for k in [10, 20]]
N_TRAIN_PAIRS, N_USERS = 540, 60  # conftest.write_tiny_dataset: 60 users, 9 training items each


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def probe_dir(config_dict):
    return os.path.join(os.path.dirname(config_dict["checkpoint_dir"]), "probe")


def probed_process(local_rank, model, dataset, config_file_list, config_dict, saved, queue):
    """The launch's own per-process function, with probes that record what this process did:
    the (user, positive item) pairs it trained on, its batch sizes, the checkpoints it wrote, the
    users it scored in each evaluation, its parameters after training and its results."""
    import recbole.trainer.trainer as recbole_trainer

    import recbole_metammf.trainer as trainer_module

    probe = {"pairs": {}, "batch_sizes": [], "saves": 0, "eval_users": [], "result": None}
    model_class = get_model(model)
    calculate_loss = model_class.calculate_loss

    def recording_loss(self, interaction):
        users, items = interaction[self.USER_ID].tolist(), interaction[self.ITEM_ID].tolist()
        probe["pairs"].setdefault(probe["epoch"], []).extend(zip(users, items))
        probe["batch_sizes"].append(len(users))
        return calculate_loss(self, interaction)

    train_epoch = trainer_module.SafeCheckpointMixin._train_epoch

    def recording_epoch(self, train_data, epoch_idx, *args, **kwargs):
        probe["epoch"] = epoch_idx
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    fit = trainer_module.SafeCheckpointMixin.fit

    def recording_fit(self, *args, **kwargs):
        result = fit(self, *args, **kwargs)
        probe["parameters"] = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        return result

    evaluate = trainer_module.SafeCheckpointMixin.evaluate

    def recording_evaluate(self, *args, **kwargs):
        probe["eval_users"].append(0)
        return evaluate(self, *args, **kwargs)

    full_sort = recbole_trainer.Trainer._full_sort_batch_eval

    def recording_full_sort(self, batched_data):
        out = full_sort(self, batched_data)
        probe["eval_users"][-1] += out[1].shape[0]
        return out

    save = trainer_module.save_checkpoint

    def counting_save(state, path):
        probe["saves"] += 1
        save(state, path)

    run_one = quick_start.run_recbole_metammf

    def recording_run(*args, **kwargs):
        probe["result"] = run_one(*args, **kwargs)
        return probe["result"]

    model_class.calculate_loss = recording_loss
    trainer_module.SafeCheckpointMixin._train_epoch = recording_epoch
    trainer_module.SafeCheckpointMixin.fit = recording_fit
    trainer_module.SafeCheckpointMixin.evaluate = recording_evaluate
    recbole_trainer.Trainer._full_sort_batch_eval = recording_full_sort
    trainer_module.save_checkpoint = counting_save
    quick_start.run_recbole_metammf = recording_run
    distributed._run_process(local_rank, model, dataset, config_file_list, config_dict, saved, queue)
    os.makedirs(probe_dir(config_dict), exist_ok=True)
    torch.save(probe, os.path.join(probe_dir(config_dict), f"rank{local_rank}.pt"))


def evaluate_in_one_process(checkpoint):
    """The checkpoint's test metrics, evaluated in this process over all test users."""
    config, model, _, train_data, _, test_data = load_data_and_model(checkpoint)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)
    return trainer.evaluate(test_data, load_best_model=False)


@pytest.mark.parametrize("model_name", ["MetaMMF_GCN"])
def test_two_gloo_processes_split_the_data_and_keep_one_model(model_name, tiny_config, monkeypatch):
    monkeypatch.setattr(distributed, "_run_process", probed_process)  # spawn pickles it by name
    result = run(model_name, "tiny", config_dict=tiny_config, nproc=2, port=free_port())
    probes = [torch.load(os.path.join(probe_dir(tiny_config), f"rank{r}.pt"), weights_only=False) for r in range(2)]

    # each epoch, the two processes trained on disjoint halves of the training pairs, in batches of
    # train_batch_size / world_size (RecBole's DistributedSampler)
    for epoch in range(tiny_config["epochs"]):
        pairs = [set(probe["pairs"][epoch]) for probe in probes]
        assert len(pairs[0]) == len(pairs[1]) == N_TRAIN_PAIRS // 2
        assert not pairs[0] & pairs[1]
        assert len(pairs[0] | pairs[1]) == N_TRAIN_PAIRS
    assert all(max(probe["batch_sizes"]) == tiny_config["train_batch_size"] // 2 for probe in probes)

    # ... and DDP averaged the gradients: the same parameters in both processes after training
    assert probes[0]["parameters"].keys() == probes[1]["parameters"].keys()
    for name, tensor in probes[0]["parameters"].items():
        assert torch.equal(tensor, probes[1]["parameters"][name]), name

    # each evaluation scored half of the users in each process, and both got the gathered metrics
    assert all(probe["eval_users"][-1] == N_USERS // 2 for probe in probes)
    assert probes[0]["result"]["test_result"] == probes[1]["result"]["test_result"]
    assert all(math.isfinite(result["test_result"][m]) and 0 <= result["test_result"][m] <= 1 for m in METRICS)

    # only rank 0 wrote checkpoints: one best and one last, both loading with weights_only=True and
    # rebuilding a one-process config (no launch keys); the gathered test metrics are those of the
    # best checkpoint evaluated over all users in one process (up to RecBole's 4-decimal rounding)
    assert probes[0]["saves"] > 0 and probes[1]["saves"] == 0
    files = sorted(glob.glob(os.path.join(tiny_config["checkpoint_dir"], "*")))
    assert files == sorted([result["checkpoint"], result["last_checkpoint"]])
    for path in files:
        checkpoint = load_checkpoint(path)
        assert not {"local_rank", "world_size", "nproc"} & set(checkpoint["config"]["external"])
    assert load_checkpoint(result["last_checkpoint"])["epoch"] == tiny_config["epochs"] - 1
    # per-user metrics gather exactly; ItemCoverage / GiniIndex / AveragePopularity are per-list-set
    # measures that RecBole averages over the ranks' halves, so they are not compared
    one_process = evaluate_in_one_process(result["checkpoint"])
    per_user = [m for m in one_process if m.split("@")[0] in ("precision", "recall", "hit", "ndcg")]
    assert {m: result["test_result"][m] for m in per_user} == pytest.approx({m: one_process[m] for m in per_user}, abs=1.5e-4)

    # the result crossed the process boundary as plain data
    assert result["model"] == model_name and result["epochs"] == tiny_config["epochs"]
    assert [epoch for epoch, _ in result["valid_history"]] == list(range(tiny_config["epochs"]))


def test_command_line_runs_a_recbole_model_in_two_processes(tiny_config, in_tmp_cwd):
    command = [
        sys.executable, os.path.join(REPO_ROOT, "run_recbole_metammf.py"), "--model=BPR", "--dataset=tiny",
        f"--data_path={tiny_config['data_path']}", "--benchmark_filename=['train','valid','test']",
        "--load_col={'inter':['user_id','item_id'],'item':['item_id']}", "--epochs=1", "--show_progress=False",
        "--nproc=2", f"--port={free_port()}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "test result" in log and "dist_backend = gloo" in log
    assert len(glob.glob(str(in_tmp_cwd / "saved" / "BPR-*-last.pth"))) == 1


@pytest.mark.parametrize(
    "kwargs,config,message",
    [
        ({"nproc": 0, "world_size": 2}, {}, r"^nproc: got 0; expected an integer >= 1"),
        ({"nproc": 2, "world_size": 1}, {}, r"^world_size: got 1; expected an integer >= 2"),
        ({"nproc": 2, "world_size": 3, "group_offset": 2}, {}, r"^group_offset: got 2; .*expected group_offset <= 1"),
        ({"nproc": 2}, {"dist_backend": "mpi"}, r"^dist_backend: got 'mpi'; expected nccl, gloo or null"),
        ({"nproc": 2}, {"dist_backend": "nccl", "gpu_id": ""}, r"^dist_backend: got 'nccl', which needs a GPU"),
    ],
    ids=["nproc", "world_size", "group_offset", "unknown-backend", "nccl-without-gpu"],
)
def test_bad_launch_settings_are_refused_before_any_process_starts(kwargs, config, message, tiny_config, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("processes started before the settings were checked")

    monkeypatch.setattr(distributed.mp, "spawn", refuse)
    with pytest.raises(ConfigError, match=message):
        run("MetaMMF_GCN", "tiny", config_dict={**tiny_config, **config}, **kwargs)


def test_resume_is_refused_with_several_processes(monkeypatch):
    script = os.path.join(REPO_ROOT, "run_recbole_metammf.py")
    monkeypatch.setattr(sys, "argv", [script, "--resume=x-last.pth", "--nproc=2"])
    with pytest.raises(SystemExit, match=r"^error: nproc: a run is resumed in one process"):
        runpy.run_path(script, run_name="__main__")
