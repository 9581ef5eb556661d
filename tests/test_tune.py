"""Ray Tune sweep end to end on the tiny dataset: 4 trials that train (d_s {2, 5} x cp_rank {4, 8})
and 2 that crash (cp_rank -1 is refused) and are retried, 2 epochs each, through run_tune.py's CLI;
then the table, the best config and a training run from it; and a sweep on a two-node Ray cluster."""

import csv
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import ray
import yaml

from recbole_metammf.config import Config
from recbole_metammf.quick_start import run_recbole_metammf
from recbole_metammf.experiments.tune.space import parse_space
from recbole_metammf.utils import REPO_ROOT, ConfigError

# the script at the repository root, wherever pytest puts sys.path
_spec = importlib.util.spec_from_file_location("run_tune", os.path.join(REPO_ROOT, "run_tune.py"))
run_tune = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_tune)


def test_space_kinds():
    space = parse_space({"d_s": {"range": [2, 10]}, "lr": {"loguniform": [1e-8, 1.0]}, "k": {"choice": [1, 2]}, "x": 3})
    assert space["d_s"] == {"grid_search": list(range(2, 11))}
    assert space["x"] == 3
    for bad in ({"d_s": {"grid": []}}, {"r": {"loguniform": [0, 1]}}, {"r": {"uniform": [1, 2], "grid": [1]}}):
        try:
            parse_space(bad)
        except ConfigError:
            continue
        raise AssertionError(f"{bad} accepted")


def test_sweep_table_and_best_config(tiny_config, in_tmp_cwd, monkeypatch):
    monkeypatch.setattr("sys.argv", ["run_tune.py"])  # RecBole's Config reads sys.argv, not pytest's
    config_file = in_tmp_cwd / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({k: v for k, v in tiny_config.items() if k != "epochs"}))
    space_file = in_tmp_cwd / "space.yaml"
    space_file.write_text("d_s: {grid: [2, 5]}\ncp_rank: {grid: [4, 8, -1]}\n")
    output = in_tmp_cwd / "sweeps"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_tune.main(
            [
                "--model=MetaMMF_GCN",
                "--dataset=tiny",
                f"--space={space_file}",
                f"--config_files={config_file}",
                f"--output={output}",
                "--scheduler",
                "asha",
                "--grace-period=1",
                "--reduction-factor=2",
                "--max-failures=1",
                "--epochs=2",
                "--train_batch_size=256",
            ]
        )
    finally:
        ray.shutdown()

    experiment = output / "MetaMMF_GCN-tiny"
    with open(experiment / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert {"trial", "d_s", "cp_rank", "best_valid_ndcg@20", "best_epoch", "epochs", "status", "pruned", "failures",
            "resumed_after"} <= set(rows[0])
    assert all(r["resumed_after"] == "" for r in rows)  # nothing interrupted them
    ok = [r for r in rows if r["status"] == "TERMINATED"]
    failed = [r for r in rows if r["status"] == "ERROR"]
    assert sorted((int(r["d_s"]), int(r["cp_rank"])) for r in ok) == [(2, 4), (2, 8), (5, 4), (5, 8)]
    for r in ok:
        assert 0.0 <= float(r["best_valid_ndcg@20"]) <= 1.0
        assert 1 <= int(r["epochs"]) <= 2 and 1 <= int(r["best_epoch"]) <= int(r["epochs"])
        # ASHA (grace period 1) prunes a trial after epoch 1, or lets it run both epochs
        assert r["pruned"] == str(int(r["epochs"]) < 2)
    # a crashing trial is retried (max_failures=1), shown as failed, and the sweep goes on
    assert sorted(int(r["cp_rank"]) for r in failed) == [-1, -1]
    assert all(int(r["failures"]) >= 1 and "cp_rank" in r["error"] for r in failed)
    scores = [float(r["best_valid_ndcg@20"]) for r in ok]
    assert scores == sorted(scores, reverse=True)  # best first

    markdown = (experiment / "results.md").read_text()
    assert markdown.count("| TERMINATED |") == 4 and markdown.count("| ERROR |") == 2
    assert "| test |" in markdown  # the best trial, trained again and tested once
    # the trials' resume points, removed at the end (ASHA stopped some trials in a report)
    assert not list(experiment.glob("tune_trial_*/checkpoint_*")) and not list(experiment.glob("tune_trial_*/resume_point"))

    best_config = experiment / "best_config.yaml"
    best = yaml.safe_load(best_config.read_text())
    assert (best["d_s"], best["cp_rank"]) == (int(rows[0]["d_s"]), int(rows[0]["cp_rank"]))
    assert best["model"] == "MetaMMF_GCN" and os.path.isabs(best["data_path"]) and best["epochs"] == 2
    config = Config(model="MetaMMF_GCN", dataset="tiny", config_file_list=[str(best_config)])
    assert config["d_s"] == best["d_s"] and config["cp_rank"] == best["cp_rank"]
    result = run_recbole_metammf(
        "MetaMMF_GCN", "tiny", config_file_list=[str(best_config)], config_dict={"epochs": 1}
    )
    assert result["epochs"] == 1 and "ndcg@20" in result["test_result"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sweep_on_a_two_node_ray_cluster_runs_trials_on_both_nodes(tiny_config, in_tmp_cwd):
    """A real cluster on this machine: `ray start --head` on a loopback port, a second node joining it with
    `ray start --address`, one CPU each; run_tune.py --address runs two one-CPU trials at once, so Ray must
    place one on each node; the trials' own records (Ray's node id, in results.csv) say where they ran."""
    if ray.is_initialized():
        ray.shutdown()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000"]

    def ray_cli(*args):
        return subprocess.run(["ray", *args], env=env, capture_output=True, text=True, timeout=180, check=True)

    config_file = in_tmp_cwd / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({k: v for k, v in tiny_config.items() if k != "epochs"}))
    space_file = in_tmp_cwd / "space.yaml"
    space_file.write_text("d_s: {grid: [2, 5]}\n")
    output = in_tmp_cwd / "sweeps"
    ray_cli("start", "--head", f"--port={port}", "--include-dashboard=false", "--disable-usage-stats", *node)
    try:
        ray_cli("start", f"--address={address}", *node)
        listing = subprocess.run(
            [sys.executable, "-c", "import json, ray; ray.init(address=%r, log_to_driver=False); "
             "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))" % address],
            env=env, capture_output=True, text=True, timeout=180, check=True,
        )
        node_ids = json.loads(listing.stdout.strip().splitlines()[-1])
        assert len(node_ids) == 2
        sweep = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, "run_tune.py"), "--model=MetaMMF_MF", "--dataset=tiny",
             f"--space={space_file}", f"--config_files={config_file}", f"--output={output}", f"--address={address}",
             "--scheduler=fifo", "--cpus-per-trial=1", "--no-test", "--verbose=0", "--epochs=2"],
            env=env, capture_output=True, text=True, timeout=600, cwd=in_tmp_cwd,
        )
        assert sweep.returncode == 0, sweep.stderr[-3000:]
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=180)
    with open(output / "MetaMMF_MF-tiny" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["TERMINATED", "TERMINATED"]
    assert sorted(r["node"] for r in rows) == sorted(n[:12] for n in node_ids)  # one trial on each node


def _table_row(experiment):
    """The one row of a one-trial sweep's results.csv."""
    with open(experiment / "results.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    return row


def _trial_reports(experiment):
    """The one trial's progress.csv rows (every attempt's reports, as Ray appended them); none before it reports."""
    files = list(experiment.glob("tune_trial_*/progress.csv"))
    if not files:
        return []
    (progress,) = files
    with open(progress, newline="") as f:
        return list(csv.DictReader(f))


def _first_attempt_epochs(experiment):
    """The epochs the trial reported before anything stopped it."""
    return [int(r["epoch"]) for r in _trial_reports(experiment) if int(r["resumed_after_epoch"]) == 0]


def test_an_interrupted_sweep_and_a_crashed_trial_go_on_from_the_trials_last_checkpoint(tiny_config, in_tmp_cwd):
    """Once the trial has reported 3 epochs: (1) Ctrl-C (SIGINT) to run_tune.py, then the same command with
    --resume; (2) in another sweep, SIGKILL to the trial's worker, which Ray retries (--max-failures=1).
    Either way the trial's next attempt goes on after its last checkpointed epoch instead of epoch 1, and
    its curve, best score and table row equal those of the same sweep run without interruption."""
    if ray.is_initialized():
        ray.shutdown()
    config_file = in_tmp_cwd / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({**{k: v for k, v in tiny_config.items() if k != "epochs"}, "stopping_step": 100}))
    (in_tmp_cwd / "space.yaml").write_text("d_s: {grid: [4]}\n")
    epochs = 60
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}

    def sweep(name, *extra):
        command = [sys.executable, os.path.join(REPO_ROOT, "run_tune.py"), "--model=MetaMMF_MF", "--dataset=tiny",
                   "--space=space.yaml", f"--config_files={config_file}", "--output=sweeps", f"--name={name}",
                   "--scheduler=fifo", "--no-test", "--verbose=0", "--max-failures=1", f"--epochs={epochs}", *extra]
        return subprocess.Popen(command, env=env, cwd=in_tmp_cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def end(process):
        """Kill ``process`` if it still runs; wait for it and close its stderr."""
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()

    def finish(process):
        try:
            assert process.wait(timeout=600) == 0, process.stderr.read()[-3000:]
        finally:
            end(process)

    def reports_after_epoch_3(name, driver):
        """Wait until sweep ``name``'s trial has reported 3 epochs; its reports so far."""
        deadline = time.monotonic() + 300
        while not [r for r in _trial_reports(in_tmp_cwd / "sweeps" / name) if int(r["epoch"]) >= 3]:
            assert driver.poll() is None, f"the sweep ended before epoch 3: {driver.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "the trial did not report 3 epochs in 300 s"
            time.sleep(0.1)
        return _trial_reports(in_tmp_cwd / "sweeps" / name)

    def resume_points(name):
        folder = in_tmp_cwd / "sweeps" / name
        return list(folder.glob("tune_trial_*/checkpoint_*/trial-last.pth")) + list(folder.glob("tune_trial_*/resume_point/*"))

    finish(sweep("whole"))
    whole = _trial_reports(in_tmp_cwd / "sweeps" / "whole")
    assert not resume_points("whole")  # removed once every trial has ended

    def check_went_on(name, cut_short):
        reports = _trial_reports(in_tmp_cwd / "sweeps" / name)
        after = [r for r in reports if int(r["resumed_after_epoch"]) > 0]
        point = int(after[0]["resumed_after_epoch"])
        assert 1 <= point <= max(cut_short)  # a checkpoint of the first attempt ...
        assert [int(r["epoch"]) for r in after] == list(range(point + 1, epochs + 1))  # ... the next went on after it
        # an epoch run twice: the later attempt's report counts
        assert {int(r["epoch"]): float(r["metric"]) for r in reports} == {int(r["epoch"]): float(r["metric"]) for r in whole}
        row, reference = _table_row(in_tmp_cwd / "sweeps" / name), _table_row(in_tmp_cwd / "sweeps" / "whole")
        assert row["resumed_after"] == str(point) and reference["resumed_after"] == ""
        for key in ("best_valid_ndcg@20", "best_epoch", "epochs", "status"):
            assert row[key] == reference[key], key
        assert row["epochs"] == str(epochs)
        return row

    # (1) Ctrl-C, then --resume
    driver = sweep("interrupted")
    try:
        reports_after_epoch_3("interrupted", driver)
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=300)
    finally:
        end(driver)
    cut_short = _first_attempt_epochs(in_tmp_cwd / "sweeps" / "interrupted")
    assert max(cut_short) < epochs, "the interrupt came after the trial had finished"
    assert "interrupted" in (in_tmp_cwd / "sweeps" / "interrupted" / "results.md").read_text()
    assert resume_points("interrupted")  # kept for --resume
    finish(sweep("interrupted", "--resume"))
    assert check_went_on("interrupted", cut_short)["failures"] == "0"
    assert not resume_points("interrupted")

    # (2) the trial's worker killed: Ray's retry
    driver = sweep("crashed")
    try:
        os.kill(int(reports_after_epoch_3("crashed", driver)[-1]["pid"]), signal.SIGKILL)
    except BaseException:
        end(driver)
        raise
    finish(driver)
    cut_short = _first_attempt_epochs(in_tmp_cwd / "sweeps" / "crashed")
    assert max(cut_short) < epochs, "the kill came after the trial had finished"
    assert check_went_on("crashed", cut_short)["failures"] == "1"


def test_a_trials_history_keeps_each_epoch_of_its_latest_attempt():
    """Ray appends every attempt's reports: one that went on from an older checkpoint repeats epochs,
    one that started again repeats them all; the row of the latest attempt counts."""
    import pandas

    from recbole_metammf.experiments.tune.results import _history

    class Result:
        def __init__(self, epochs):
            self.metrics_dataframe = pandas.DataFrame({"epoch": epochs, "metric": [float(i) for i in range(len(epochs))]})

    resumed = _history(Result([1, 2, 3, 4, 3, 4, 5]))
    assert list(resumed["epoch"]) == [1, 2, 3, 4, 5] and list(resumed["metric"]) == [0, 1, 4, 5, 6]
    restarted = _history(Result([1, 2, 3, 1, 2]))
    assert list(restarted["epoch"]) == [1, 2] and list(restarted["metric"]) == [3, 4]


def test_the_default_search_space_is_the_packages_whatever_the_working_directory(in_tmp_cwd):
    args, _ = run_tune.parse_args(["--model=MetaMMF_MF"])
    assert os.path.isabs(args.space) and os.path.isfile(args.space)
    assert parse_space(yaml.safe_load(open(args.space, encoding="utf-8")))


@pytest.mark.parametrize(
    "option,message",
    [
        ("--num-samples=0", "--num-samples: got 0; expected an integer >= 1"),
        ("--cpus-per-trial=0", "--cpus-per-trial: got 0.0; expected a number > 0"),
        ("--gpus-per-trial=-1", "--gpus-per-trial: got -1.0; expected a number >= 0"),
        ("--reduction-factor=1", "--reduction-factor: got 1; expected an integer >= 2"),
        ("--grace-period=0", "--grace-period: got 0; expected an integer >= 1"),
        ("--space=missing.yaml", "--space: missing.yaml does not exist"),
    ],
)
def test_bad_sweep_options_are_refused_before_anything_is_written(option, message, in_tmp_cwd, monkeypatch):
    monkeypatch.setattr("sys.argv", ["run_tune.py"])
    with pytest.raises(SystemExit) as stopped:
        run_tune.main(["--model=MetaMMF_MF", "--dataset=tiktok", option, "--output=sweeps"])
    assert str(stopped.value.code).startswith(f"error: {message}")
    assert not os.path.exists("sweeps")


def test_a_search_over_a_key_the_model_does_not_read_is_refused_before_anything_is_written(in_tmp_cwd, monkeypatch):
    monkeypatch.setattr("sys.argv", ["run_tune.py"])
    (in_tmp_cwd / "space.yaml").write_text("cp_rank: {grid: [4, 8]}\nlerning_rate: {grid: [0.1]}\n")
    with pytest.raises(SystemExit) as stopped:
        run_tune.main(["--model=LightGCN", "--dataset=tiktok", "--space=space.yaml", "--output=sweeps"])
    assert str(stopped.value.code).splitlines() == [
        "error: lerning_rate: unknown key (in space.yaml); close matches: learning_rate",
        "cp_rank: given (in space.yaml) but LightGCN does not read it (a setting of MetaMMF_GCN, MetaMMF_LightGCN, "
        "MetaMMF_MF), so it changes nothing",
    ]
    assert not os.path.exists("sweeps")
