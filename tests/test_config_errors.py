"""Bad input on the command line, in config files and checkpoints gets a one-line `error: ...` and exit
status 1, before any data loads where it can, without a traceback and without a checkpoint written;
and the log of a good run records what the run really used (command, device, split, resume points).

Most cases run the command line in this process (a fresh Python costs seconds of imports each);
test_refusals_in_a_fresh_process runs some of them as real processes to check the exit status and
stderr end to end."""

import glob
import os
import re
import runpy
import shlex
import subprocess
import sys

import pytest
import torch
import yaml

import recbole_metammf.pipeline as pipeline
from recbole_metammf.checkpoint import CheckpointError
from recbole_metammf.compat import physical_gpu_count
from recbole_metammf.config import Config
from recbole_metammf.config_checks import known_keys
from recbole_metammf.quick_start import load_data_and_model
from recbole_metammf.utils import PROPERTIES_DIR, REPO_ROOT, ConfigError

from conftest import write_tiny_dataset

SCRIPT = os.path.join(REPO_ROOT, "run_recbole_metammf.py")
TIKTOK = ["--model=MetaMMF_MF", "--dataset=tiktok"]


@pytest.fixture
def workdir(in_tmp_cwd):
    """A working directory with the tiny dataset and a config file that points to it."""
    root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / "data"))
    settings = {
        "data_path": root, "benchmark_filename": ["train", "valid", "test"], "modalities": fields,
        "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id"]},
        "train_batch_size": 128, "show_progress": False, "checkpoint_dir": str(in_tmp_cwd / "saved"),
    }
    (in_tmp_cwd / "tiny.yaml").write_text(yaml.safe_dump(settings))
    return in_tmp_cwd


@pytest.fixture
def no_data_loading(monkeypatch):
    def refuse(config):
        raise AssertionError("the data was loaded before the settings were checked")

    monkeypatch.setattr(pipeline, "create_dataset", refuse)


def run_cli(monkeypatch, capsys, *args):
    """The command line in this process: (exit code, everything it printed)."""
    monkeypatch.setattr(sys, "argv", [SCRIPT, *args])
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(SCRIPT, run_name="__main__")
    out, err = capsys.readouterr()
    return stopped.value.code, out + err


def assert_refused(result, first_line, workdir):
    """Exit status 1 with `error: <first_line>`, no traceback, no checkpoint."""
    code, printed = result
    assert isinstance(code, str) and code.startswith("error: "), code  # sys.exit(message): status 1
    assert re.match(first_line, code.splitlines()[0][len("error: "):]), code
    assert "Traceback" not in printed + code
    assert not glob.glob(str(workdir / "saved" / "*")), "a checkpoint was written"


# ---- keys: unknown ones refused, every real one accepted --------------------------------------


def test_unknown_key_on_the_command_line_is_refused_with_close_matches(workdir, no_data_loading, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, *TIKTOK, "--cp_rnk=8")
    assert_refused(result, r"cp_rnk: unknown key \(from the command line\); close matches: cp_rank", workdir)


def test_unknown_key_in_a_config_file_names_the_file_and_line(workdir, no_data_loading, monkeypatch, capsys):
    (workdir / "typo.yaml").write_text("epochs: 1\n# the rank\ncp_rnk: 8\n")
    result = run_cli(monkeypatch, capsys, *TIKTOK, "--config_files=typo.yaml")
    assert_refused(result, r"cp_rnk: unknown key \(in typo.yaml, line 3\); close matches: cp_rank", workdir)


def test_every_unknown_key_is_listed_and_config_dicts_are_checked_too(workdir, no_data_loading):
    with pytest.raises(ConfigError) as refused:
        Config("MetaMMF_MF", "tiktok", config_dict={"lerning_rate": 0.1, "embeding_size": 8})
    lines = str(refused.value).splitlines()
    assert lines[0].startswith("lerning_rate: unknown key (from the config dict); close matches: learning_rate")
    assert lines[1].startswith("embeding_size: unknown key (from the config dict); close matches: embedding_size")


def test_a_key_only_other_models_read_is_named_with_its_models_and_the_close_keys(workdir, no_data_loading):
    assert Config("MetaMMF_MF", "tiktok", config_dict={"cp_rank": 8, "epochs": 3}).ignored_key_messages == []
    assert Config("LightGCN", "tiktok", config_dict={"n_layers": 2, "reg_weight": 1e-4}).ignored_key_messages == []
    (message,) = Config("LightGCN", "tiktok", config_dict={"cp_rank": 8}).ignored_key_messages
    assert message == ("cp_rank: given (from the config dict) but LightGCN does not read it "
                       "(a setting of MetaMMF_GCN, MetaMMF_LightGCN, MetaMMF_MF), so it changes nothing")
    (message,) = Config("MetaMMF_MF", "tiktok", config_dict={"n_layers": 2}).ignored_key_messages
    assert message.startswith("n_layers: given (from the config dict) but MetaMMF_MF does not read it (a setting of ")
    assert message.endswith("so it changes nothing; MetaMMF_MF's close keys: n_item_layers, fusion_layers")


def test_a_key_the_model_does_not_read_is_a_warning_in_the_runs_log(tiny_config, monkeypatch):
    from recbole_metammf.quick_start import run_recbole_metammf

    monkeypatch.setattr("sys.argv", ["notebook"])
    run_recbole_metammf("BPR", "tiny", config_dict={**tiny_config, "epochs": 1, "item_graph_k": 10}, saved=False)
    [log_file] = glob.glob(os.path.join("log", "BPR", "*.log"))
    log = open(log_file, encoding="utf-8").read()
    assert re.search(r"WARNING  item_graph_k: given \(from the config dict\) but BPR does not read it \(a setting of "
                     r"EarlyFusion_GCN, .* and \d+ more\), so it changes nothing", log)


def test_a_setting_without_its_equals_sign_is_refused(workdir, no_data_loading, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, *TIKTOK, "--epochs", "5")
    assert_refused(result, r"--epochs: not an option; settings are given as --key=value", workdir)


def test_a_key_given_twice_with_two_values_is_refused(workdir, no_data_loading, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, *TIKTOK, "--epochs=1", "--epochs=2")
    assert_refused(result, r"epochs: given twice on the command line, as '1' and '2'", workdir)


# the options of the scripts themselves (run_recbole_metammf.py, run_benchmark.py, run_tune.py, bench/, docs/scripts/)
SCRIPT_OPTIONS = {
    "model", "dataset", "config_files", "resume", "checkpoint", "users", "topk", "nproc", "world_size", "ip",
    "port", "group_offset", "models", "seeds", "output", "preset", "tsne_users", "space", "metric", "name",
    "address", "scheduler", "batches", "profile", "scale", "synthetic", "work", "report", "key",
    "new_items", "items", "latent",  # latent: docs/scripts/probe_meta_information.py
    "runs", "variants",  # docs/scripts/probe_gcn_layer_steps.py
    "repeats",  # bench/resume_point.py
}


def _setting_dicts(node):
    """Every dict of settings in a benchmark preset / models file (common, base, models.X, variants.X)."""
    for key in ("common", "base"):
        if isinstance(node.get(key), dict):
            yield node[key]
    for key in ("models", "variants"):
        if isinstance(node.get(key), dict):
            yield from (value for value in node[key].values() if isinstance(value, dict))


def test_every_key_the_package_uses_is_accepted():
    used = set()
    for path in glob.glob(os.path.join(PROPERTIES_DIR, "benchmark", "*.yaml")):
        for settings in _setting_dicts(yaml.safe_load(open(path))):
            used |= set(settings)
    for path in glob.glob(os.path.join(PROPERTIES_DIR, "tune", "*.yaml")):
        used |= set(yaml.safe_load(open(path)))
    # what the benchmark and sweep runners add to every run's config dict
    used |= {"seed", "checkpoint_dir", "show_progress", "metric_decimal_place", "train_neg_sample_args", "gpu_id", "state"}
    used |= {"local_rank", "nproc", "world_size", "offset", "ip", "port"}  # the launch keys of recbole_metammf.distributed
    documents = [os.path.join(REPO_ROOT, "README.md")] + glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
    documents = [path for path in documents if not path.endswith("BASELINES.md")]  # quotes other programs' flags
    for path in documents:
        used |= set(re.findall(r"--([A-Za-z_][A-Za-z0-9_]*)=", open(path, encoding="utf-8").read()))
    assert sorted(used - SCRIPT_OPTIONS - known_keys()) == []


# ---- values of the common RecBole keys, refused before the data loads -------------------------


BAD_VALUES = [
        ("--epochs=0", r"epochs: got 0; expected an integer >= 1"),
        ("--epochs='x'", r"epochs: got 'x'; expected an integer >= 1"),
        ("--train_batch_size=0", r"train_batch_size: got 0; expected an integer >= 1"),
        ("--eval_batch_size=0", r"eval_batch_size: got 0; expected an integer >= 1"),
        ("--learning_rate=abc", r"learning_rate: got 'abc'; expected a finite number > 0"),
        ("--learning_rate=0", r"learning_rate: got 0; expected a finite number > 0"),
        ("--dropout=2", r"dropout: got 2; expected a dropout probability 0 <= p < 1"),
        ("--reg_weight=nan", r"reg_weight: got 'nan'; expected a finite number >= 0"),
        ("--reg_weight=-1e-3", r"reg_weight: got -0.001; expected a finite number >= 0"),
        ("--embedding_size=0", r"embedding_size: got 0; expected a width, an integer >= 1"),
        ("--metrics=['Recall','NDGC']", r"metrics: 'NDGC' is not a RecBole metric; close matches: NDCG"),
        ("--topk=[0,10]", r"topk: got \[0, 10\]; expected an integer >= 1 or a non-empty list of them"),
        ("--topk=[5]", r"valid_metric: got 'NDCG@20', but 20 is not among topk \[5\]"),
        ("--valid_metric=MRR@10", r"valid_metric: got 'MRR@10', but MRR is not among metrics"),
]


@pytest.mark.parametrize("setting,first_line", BAD_VALUES, ids=[setting[2:] for setting, _ in BAD_VALUES])
def test_bad_value_is_refused_before_the_data_loads(setting, first_line, workdir, no_data_loading, monkeypatch, capsys):
    assert_refused(run_cli(monkeypatch, capsys, *TIKTOK, setting), first_line, workdir)


@pytest.mark.parametrize("model,setting", [("LightGCN", "--embedding_size=0"), ("NeuMF", "--mlp_hidden_size=[64,0]")])
def test_a_width_of_zero_is_refused_for_recbole_models_too(model, setting, workdir, no_data_loading, monkeypatch, capsys):
    key = setting[2:].split("=")[0]
    result = run_cli(monkeypatch, capsys, f"--model={model}", "--dataset=tiktok", setting)
    assert_refused(result, rf"{key}: got .*0\]?; expected a width, an integer >= 1", workdir)


def test_topk_beyond_the_number_of_items_is_refused_once_the_data_has_loaded(workdir, monkeypatch, capsys):
    result = run_cli(
        monkeypatch, capsys, "--model=MetaMMF_MF", "--dataset=tiny", "--config_files=tiny.yaml", "--topk=[10,20,100]"
    )
    assert_refused(result, r"topk: got \[10, 20, 100\], but dataset 'tiny' has 90 items; every cut-off must be <= 90", workdir)


def test_a_gpu_that_is_not_there_is_refused_naming_the_gpus_present(workdir, no_data_loading, monkeypatch, capsys):
    absent = max(3, physical_gpu_count() or 0, torch.cuda.device_count())
    result = run_cli(monkeypatch, capsys, *TIKTOK, f"--gpu_id={absent}")
    assert_refused(result, rf"gpu_id: got '{absent}', but ", workdir)
    code, _ = result
    assert ("built without CUDA" in code or "GPU" in code) and "--gpu_id=''" in code


# ---- config files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,first_line",
    [
        ("epochs: 1\nlearning_rate: [0.1\n", r"config_files: bad.yaml, line 3: not valid YAML \(expected ',' or ']'"),
        ("epochs: 1\n  cp_rank: 8\n", r"config_files: bad.yaml, line 2: not valid YAML \(mapping values are not allowed"),
        ("- epochs: 1\n- cp_rank: 8\n", r"config_files: bad.yaml, line 1: expected settings as `key: value` lines \(a YAML mapping\), got a list"),
        ("x: !!python/object/apply:os.system ['touch executed']\n", r"config_files: bad.yaml, line 1: not valid YAML \(could not determine a constructor"),
    ],
    ids=["unclosed-list", "bad-indent", "a-list", "python-tag"],
)
def test_malformed_config_file_is_refused_naming_file_and_line(text, first_line, workdir, no_data_loading, monkeypatch, capsys):
    (workdir / "bad.yaml").write_text(text)
    assert_refused(run_cli(monkeypatch, capsys, *TIKTOK, "--config_files=bad.yaml"), first_line, workdir)
    assert not (workdir / "executed").exists()


def test_a_config_file_that_is_a_directory_is_refused(workdir, no_data_loading, monkeypatch, capsys):
    os.mkdir(workdir / "settings")
    result = run_cli(monkeypatch, capsys, *TIKTOK, "--config_files=settings")
    assert_refused(result, r"config_files: settings: cannot be read \(Is a directory\)", workdir)


# ---- datasets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["MetaMMF_MF", "BPR"])
def test_a_dataset_that_does_not_exist_is_named_with_the_folders_searched(model, workdir, no_data_loading, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, f"--model={model}", "--dataset=tiktk")
    searched = re.escape(os.path.join(str(workdir), "dataset", "tiktk"))
    assert_refused(result, rf"dataset: 'tiktk' not found \(no folder {searched} nor .*\); close matches: tiktok", workdir)


def test_a_dataset_without_its_interaction_files_is_refused(workdir, no_data_loading, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, "--model=BPR", "--dataset=tiny", f"--data_path={workdir / 'data'}")
    assert_refused(
        result, r"dataset: .*tiny has no tiny.inter \(.*\); for its fixed split set benchmark_filename: \['train', 'valid', 'test'\]",
        workdir,
    )


# ---- checkpoints -------------------------------------------------------------------------------


def _write_not_checkpoints(folder):
    """Files that --resume / --checkpoint must refuse: {name: what the message says}."""
    torch.save({"config": {"model": "MetaMMF_MF", "dataset": "tiny", "external": {}}, "state_dict": {}, "epoch": 0,
                "cur_step": 0, "best_valid_score": 0.1, "optimizer": {}, "padding": torch.zeros(4096)}, folder / "whole.pth")
    data = (folder / "whole.pth").read_bytes()
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    (folder / "notes.pth").write_text("hello, not a checkpoint\n")
    torch.save({"weight": torch.zeros(2)}, folder / "state_dict.pth")
    os.mkdir(folder / "a_folder")
    return {
        "truncated.pth": r"truncated.pth is not a readable checkpoint \(truncated, damaged, or not written by torch\)",
        "notes.pth": r"notes.pth is not a readable checkpoint \(truncated, damaged, or not written by torch\)",
        "state_dict.pth": r"state_dict.pth is not a checkpoint of recbole-metammf: it holds a dict of \['weight'\]",
        "a_folder": r"a_folder is a directory, not a checkpoint",
    }


def test_resume_refuses_what_is_not_a_checkpoint_naming_the_path(workdir, no_data_loading, monkeypatch, capsys):
    for name, first_line in _write_not_checkpoints(workdir).items():
        assert_refused(run_cli(monkeypatch, capsys, f"--resume={name}"), first_line, workdir)


def test_recommend_and_load_data_and_model_refuse_what_is_not_a_checkpoint(workdir, no_data_loading, monkeypatch, capsys):
    for name, first_line in _write_not_checkpoints(workdir).items():
        assert_refused(run_cli(monkeypatch, capsys, "--recommend", f"--checkpoint={name}", "--users=1"), first_line, workdir)
        with pytest.raises(CheckpointError, match=first_line):
            load_data_and_model(name)


# ---- recommend ---------------------------------------------------------------------------------


def test_recommend_with_no_users_is_refused(workdir, no_data_loading, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, "--recommend", "--checkpoint=saved/x.pth", "--users=,")
    assert_refused(result, r"users: got ','; expected user tokens separated by commas", workdir)


def test_recommend_refuses_settings_it_would_ignore(workdir, no_data_loading, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, "--recommend", "--checkpoint=saved/x.pth", "--users=1", "--epochs=3")
    assert_refused(result, r"--epochs=3: not an option of --recommend", workdir)


def test_a_checkpoints_config_ignores_the_calling_programs_arguments(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["my_script.py", "--output=somewhere"])
    with pytest.raises(ConfigError, match=r"^output: unknown key \(from the command line\)"):
        Config("MetaMMF_MF", "tiktok")  # RecBole's way: the command line is read
    config = Config("MetaMMF_MF", "tiktok", command_line=False)  # what load_data_and_model builds
    assert "output" not in config.final_config_dict


# ---- a fresh process, end to end --------------------------------------------------------------


def test_refusals_in_a_fresh_process(workdir):
    _write_not_checkpoints(workdir)
    cases = [
        (TIKTOK + ["--cp_rnk=8"], "error: cp_rnk: unknown key (from the command line); close matches: cp_rank"),
        (["--resume=truncated.pth"], "error: truncated.pth is not a readable checkpoint"),
        (["--recommend", "--checkpoint=truncated.pth", "--users=,"], "error: users: got ','"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [  # at once: each spends its time importing torch and RecBole
        subprocess.Popen([sys.executable, SCRIPT, *args], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args, _ in cases
    ]
    for process, (args, first_line) in zip(processes, cases):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1, (args, err)
        assert err.splitlines()[0].startswith(first_line), (args, err)
        assert "Traceback" not in out + err
    assert not glob.glob(str(workdir / "saved" / "*"))


# ---- the log of a good run ---------------------------------------------------------------------


def test_log_records_command_device_split_and_every_resume_point(workdir):
    args = ["--model=MetaMMF_MF", "--dataset=tiny", "--config_files=tiny.yaml", "--epochs=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, SCRIPT, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [log_file] = glob.glob(str(workdir / "log" / "MetaMMF_MF" / "*.log"))
    lines = open(log_file, encoding="utf-8").read().splitlines()
    assert lines[0].endswith("INFO  command: " + shlex.join([sys.executable, SCRIPT, *args]))  # to repeat the run
    log = "\n".join(lines)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert re.search(rf"INFO  device: {device}", log)
    assert f"use_gpu = {device == 'cuda'}" in log
    assert "'RS'" not in log and "'split': {'benchmark_filename': ['train', 'valid', 'test']}" in log
    last = re.findall(r"Saving last: (\S+-last\.pth) \(after epoch (\d)", log)  # after every epoch, not only at the end
    assert [epoch for _, epoch in last] == ["0", "1"] and os.path.isfile(last[0][0])


def test_two_runs_in_one_process_each_log_to_their_own_file(tiny_config, monkeypatch):
    from recbole_metammf.quick_start import run_recbole_metammf

    monkeypatch.setattr("sys.argv", ["notebook"])
    for model in ("BPR", "LightGCN"):
        run_recbole_metammf(model, "tiny", config_dict={**tiny_config, "epochs": 1})
    for model in ("BPR", "LightGCN"):
        [log_file] = glob.glob(os.path.join("log", model, "*.log"))
        log = open(log_file, encoding="utf-8").read()
        assert log.count("INFO  command: ") == 1 and f"{model}(" in log  # its own run, and only that one


def test_runs_started_together_do_not_race_for_the_log_folder(tiny_config, monkeypatch):
    import recbole.utils.logger as recbole_logger

    from recbole_metammf.quick_start import objective_function

    def racing_ensure_dir(path):  # RecBole's test-then-create, with another process creating in between
        if not os.path.exists(path):
            os.makedirs(path)
            os.makedirs(path)

    monkeypatch.setattr(recbole_logger, "ensure_dir", racing_ensure_dir)
    objective_function(config_dict={**tiny_config, "model": "BPR", "dataset": "tiny", "epochs": 1}, saved=False, command_line=False)
    assert glob.glob(os.path.join("log", "BPR", "*.log"))


def test_a_redirected_run_prints_no_progress_bars_and_no_known_warnings(workdir):
    settings = yaml.safe_load((workdir / "tiny.yaml").read_text())
    del settings["show_progress"]  # RecBole's default (True): the bars are dropped because stderr is a pipe
    (workdir / "bars.yaml").write_text(yaml.safe_dump(settings))
    args = ["--model=MetaMMF_MF", "--dataset=tiny", "--config_files=bars.yaml", "--epochs=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, SCRIPT, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout + done.stderr
    assert "\r" not in printed and "it/s]" not in printed  # no tqdm bar
    assert "Warning" not in printed, printed[-3000:]  # RecBole 1.2.1's pandas / torch warnings silenced
    assert "show_progress = False" in printed or "epoch 0 training" in printed


def test_models_scored_pair_by_pair_get_an_evaluation_batch_that_fits_in_memory(tiny_config, monkeypatch):
    r"""NeuMF has no full_sort_predict: RecBole scores eval_batch_size (user, item) rows at once, and
    overall.yaml's 16.7M (scores of one matrix product) had the process killed for memory on tiktok."""
    from recbole_metammf.config import PAIRWISE_EVAL_BATCH_SIZE, Config

    monkeypatch.setattr("sys.argv", ["test"])
    default = Config(model="LightGCN", dataset="tiny", config_dict=tiny_config)["eval_batch_size"]
    settings = {key: value for key, value in tiny_config.items() if key != "eval_batch_size"}
    assert Config(model="LightGCN", dataset="tiny", config_dict=settings)["eval_batch_size"] > PAIRWISE_EVAL_BATCH_SIZE
    assert Config(model="NeuMF", dataset="tiny", config_dict=settings)["eval_batch_size"] == PAIRWISE_EVAL_BATCH_SIZE
    assert Config(model="NeuMF", dataset="tiny", config_dict=tiny_config)["eval_batch_size"] == default  # the user's own


def test_a_recbole_model_whose_optional_package_is_missing_is_refused_before_the_data_loads(
    workdir, no_data_loading, monkeypatch, capsys
):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real_find_spec(name, *a))
    result = run_cli(monkeypatch, capsys, "--model=NCL", "--dataset=tiktok")
    assert_refused(result, r"model: NCL needs the package faiss, which is not installed \(pip install faiss-cpu", workdir)
