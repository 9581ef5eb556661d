"""run_benchmark.py — side-by-side runs, the Table 2 summary with the paired t-test, resume,
presets (the paper's analyses), plots, and the data-free parameter count of Table 4."""

import csv
import glob
import json
import math
import os
import runpy
import subprocess
import sys

import pytest
import yaml
from scipy import stats

import recbole_metammf.quick_start as quick_start
from conftest import KILL_EPOCH, build, kill_mid_epoch
from recbole_metammf import analysis
from recbole_metammf.checkpoint import load_checkpoint, save_checkpoint
from recbole_metammf.experiments.benchmark import plan
from recbole_metammf.experiments.benchmark import summary as tables
from recbole_metammf.utils import PROPERTIES_DIR, REPO_ROOT, ConfigError

SCRIPT = os.path.join(REPO_ROOT, "run_benchmark.py")
PATIENCE_REPLAY = os.path.join(REPO_ROOT, "docs", "scripts", "patience_replay.py")
PAIRED_TTEST = os.path.join(REPO_ROOT, "docs", "scripts", "paired_ttest.py")
MODELS = ["BPR", "MetaMMF_MF", "MetaMMF_GCN"]
PNG = b"\x89PNG\r\n\x1a\n"


def cli():
    return runpy.run_path(SCRIPT)["main"]  # the script's main(argv), without running it as __main__


@pytest.fixture
def tiny_yaml(tiny_config, in_tmp_cwd):
    """The tiny dataset's settings as a config file for every run (the runner sets seed and checkpoints)."""
    settings = {k: v for k, v in tiny_config.items() if k not in ("dataset", "seed", "checkpoint_dir", "epochs")}
    path = in_tmp_cwd / "tiny.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG, path


def test_three_models_two_seeds_table_resume_and_plots(tiny_yaml, in_tmp_cwd, monkeypatch):
    out = in_tmp_cwd / "bench"
    argv = ["--dataset=tiny", f"--models={','.join(MODELS)}", "--seeds=2", f"--output={out}",
            f"--config_files={tiny_yaml}", "--epochs=1", "--no-progress"]
    result = cli()(argv + ["--plot-tsne", "--tsne-users=6"])
    assert not result["failures"]

    # one plain JSON per model x seed, with what the issue asks for
    run_files = sorted(os.listdir(out / "runs"))
    assert len(run_files) == 6
    records = {}
    for name in run_files:
        with open(out / "runs" / name) as f:
            record = json.load(f)
        records[(record["label"], record["seed"])] = record
        assert name == f"{record['label']}__seed{record['seed']}__{record['run_id'].rsplit('__', 1)[1]}.json"
        assert record["config_dict"]["seed"] == record["seed"] and record["config"]["reproducibility"] is True
        assert record["config"]["embedding_size"] == (64 if record["model"] == "BPR" else 32)
        assert len(record["valid_curve"]) == 1 and record["epochs"] == 1 and record["epochs_to_best"] == 1
        assert record["train_seconds_per_epoch"] > 0 and record["n_parameters"] > 0
        assert set(plan.METRICS) <= set(record["test_result"])
        assert os.path.isfile(out / record["checkpoint"])
    assert set(records) == {(m, s) for m in MODELS for s in (2020, 2021)}
    assert records[("MetaMMF_MF", 2020)]["fusion_tower_parameters"]["meta_learner"] == 16 * (14 + 32 + 5)
    assert records[("BPR", 2020)]["fusion_tower_parameters"] is None
    # different seeds are different runs of the same settings
    assert records[("BPR", 2020)]["run_id"].rsplit("__", 1)[1] == records[("BPR", 2021)]["run_id"].rsplit("__", 1)[1]

    # the summary: one row per metric, a column per model, improvement and the paired t-test's p-value
    rows = read_csv(out / "summary.csv")
    assert [row["metric"] for row in rows] == plan.METRICS
    assert {"improvement_pct", "p_value", "best_metammf", "strongest_other"} <= set(rows[0])
    # the compared pair is chosen on validation, the same in every row
    valid_mean = {m: sum(records[(m, s)]["best_valid_score"] for s in (2020, 2021)) / 2 for m in MODELS}
    chosen = max(("MetaMMF_MF", "MetaMMF_GCN"), key=valid_mean.get)
    for row in rows:
        metric = row["metric"]
        assert row["strongest_other"] == "BPR" and row["best_metammf"] == chosen
        assert row["paired_seeds"] == "2"
        best = [records[(row["best_metammf"], s)]["test_result"][metric] for s in (2020, 2021)]
        other = [records[("BPR", s)]["test_result"][metric] for s in (2020, 2021)]
        expected = stats.ttest_rel(best, other).pvalue
        p_value = float(row["p_value"])
        assert (math.isnan(p_value) and math.isnan(expected)) or p_value == pytest.approx(expected)
        assert float(row["improvement_pct"]) == pytest.approx((sum(best) - sum(other)) / sum(other) * 100)
        for model in MODELS:
            values = [records[(model, s)]["test_result"][metric] for s in (2020, 2021)]
            assert float(row[f"{model} mean"]) == pytest.approx(sum(values) / 2)
    summary = (out / "summary.md").read_text()
    header = next(line for line in summary.splitlines() if line.startswith("| metric"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "metric", *MODELS, "best MetaMMF", "strongest other", "improv. (%)", "p-value"
    ]
    table_rows = [line for line in summary.splitlines() if line.startswith("| ") and "@" in line.split("|")[1]]
    assert [line.split("|")[1].strip() for line in table_rows] == [
        "P@10", "R@10", "Hit@10", "NDCG@10", "P@20", "R@20", "Hit@20", "NDCG@20"
    ]
    assert len(read_csv(out / "runs.csv")) == 6
    assert [row["label"] for row in read_csv(out / "efficiency.csv")] == MODELS

    # the plots, next to the tables
    assert_png(out / "valid_curves.png")
    assert_png(out / "tsne.png")
    with open(out / "tsne.json") as f:
        tsne = json.load(f)
    assert set(tsne) == set(MODELS)
    for entry in tsne.values():
        assert len(entry["users"]) == 6 and entry["n_points"] == 6 * 3  # each tiny user has 2 test items
        assert -1 <= entry["silhouette_tsne"] <= 1

    # repeated: nothing is trained again, the run files are untouched
    mtimes = {name: os.stat(out / "runs" / name).st_mtime_ns for name in run_files}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(quick_start, "objective_function", no_training)
    again = cli()(argv)
    assert not again["failures"] and len(again["records"]) == 6
    assert {name: os.stat(out / "runs" / name).st_mtime_ns for name in run_files} == mtimes
    assert read_csv(out / "summary.csv") == rows


def test_preset_variants_efficiency_and_parameter_counts(tiny_yaml, in_tmp_cwd):
    preset = in_tmp_cwd / "mine.yaml"
    preset.write_text(yaml.safe_dump({
        "title": "CP against the full tensor",
        "models": ["MetaMMF_MF"],
        "variants": {"cp_rank=0": {"cp_rank": 0}, "cp_rank=8": {"cp_rank": 8}},
        "plot_against": "cp_rank",
        "movielens_meta_parameters": {"ranks": [0, 16]},
    }))
    out = in_tmp_cwd / "cp"
    result = cli()([f"--preset={preset}", "--dataset=tiny", "--seeds=2020,", f"--output={out}",
                    f"--config_files={tiny_yaml}", "--epochs=1", "--no-progress"])
    assert not result["failures"]
    labels = [row["label"] for row in read_csv(out / "summary.csv")]
    assert labels == ["Pop", "MetaMMF_MF[cp_rank=0]", "MetaMMF_MF[cp_rank=8]"]  # the floor beside the variants
    efficiency = {row["label"]: row for row in read_csv(out / "efficiency.csv") if row["label"] != "Pop"}
    assert int(efficiency["MetaMMF_MF[cp_rank=0]"]["fusion_meta_learner"]) == 14 * 32 * 5
    assert int(efficiency["MetaMMF_MF[cp_rank=8]"]["fusion_meta_learner"]) == 8 * (14 + 32 + 5)
    assert all(float(row["seconds_per_epoch_mean"]) > 0 and row["epochs_to_best_mean"] == "1.0" for row in efficiency.values())
    full = int(efficiency["MetaMMF_MF[cp_rank=0]"]["n_parameters"])
    assert full - int(efficiency["MetaMMF_MF[cp_rank=8]"]["n_parameters"]) == 14 * 32 * 5 - 8 * 51
    summary = (out / "summary.md").read_text()
    assert "MovieLens tower" in summary and "| CP, R = 16 | 94,592 | 0.63% |" in summary
    assert "| MetaMMF_MF[cp_rank=8] | MetaMMF_MF[cp_rank=0] | valid (selection) |" in summary
    assert [row["metric"] for row in read_csv(out / "variants.csv")] == ["valid", "recall@20", "ndcg@20"]
    assert_png(out / "cp_rank.png")
    assert_png(out / "valid_curves.png")


def test_movielens_tower_cp_cuts_the_meta_learner_to_about_one_percent():
    rows = {row["cp_rank"]: row for row in analysis.movielens_meta_parameters([0, 8, 16, 32])}
    widths = [2276, 1024, 512, 256, 32]
    pairs = list(zip(widths, widths[1:]))
    assert rows[0]["meta_learner"] == 5 * sum(i * o for i, o in pairs)
    assert rows[16]["meta_learner"] == 16 * sum(i + o + 5 for i, o in pairs)
    assert rows[0]["static"] == rows[16]["static"] == sum(i * o for i, o in pairs)
    assert 0.003 < rows[16]["meta_learner_vs_full"] < 0.013 and rows[32]["meta_learner_vs_full"] < 0.013


SHIPPED_PRESETS = sorted(
    os.path.basename(path)[:-5] for path in glob.glob(os.path.join(PROPERTIES_DIR, "benchmark", "*.yaml"))
    if not path.endswith("models.yaml")
)


@pytest.mark.parametrize("name", SHIPPED_PRESETS)
def test_shipped_presets_build_valid_runs(name, tiny_yaml, caplog):
    preset = plan.load_preset(name)
    runs = plan.build_runs("tiny", preset["models"], [2020], {"epochs": 1}, [tiny_yaml], preset, floor="Pop")
    assert len(runs) == len(preset["models"]) * len(preset["variants"]) + 1
    assert (runs[0].label, runs[0].variant, runs[0].overrides) == ("Pop", None, {})  # the floor, without variants
    assert len({run.run_id for run in runs}) == len(runs)
    assert all(run.label == f"{run.model}[{run.variant}]" for run in runs[1:])
    plan.check_runs(runs)  # every variant is a valid config (the models' own checks)
    assert not [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()]  # each key reaches a model that reads it


def test_a_setting_given_to_every_model_is_named_for_the_models_that_do_not_read_it(tiny_yaml, caplog):
    runs = plan.build_runs("tiny", ["BPR", "MetaMMF_MF"], [2020], {"cp_rank": 8}, [tiny_yaml])
    plan.check_runs(runs)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["benchmark: BPR: cp_rank: given (from the config dict) but BPR does not read it "
                      "(a setting of MetaMMF_GCN, MetaMMF_LightGCN, MetaMMF_MF), so it changes nothing"]


def test_preset_base_lies_under_every_variant_and_keeps_paper_labels_meaning_the_paper(tiny_yaml, tmp_path):
    path = tmp_path / "pinned.yaml"
    path.write_text(yaml.safe_dump({"models": ["BPR"], "base": {"reg_weight": 0.5, "epochs": 3},
                                    "variants": {"a": {}, "b": {"reg_weight": 0.1}}}))
    runs = plan.build_runs("tiny", ["BPR"], [1], {"epochs": 1}, [tiny_yaml], plan.load_preset(str(path)))
    assert [(run.variant, run.config_dict["reg_weight"], run.config_dict["epochs"]) for run in runs] == [
        ("a", 0.5, 1), ("b", 0.1, 1)]  # the variant wins over the base, the command line over both
    path.write_text(yaml.safe_dump({"models": ["BPR"], "base": [1], "variants": {"a": {}}}))
    with pytest.raises(ConfigError, match="'base' must be a dict"):
        plan.load_preset(str(path))
    # the selection tables' "paper" rows stay the paper's settings whatever today's defaults are
    for name in ("gcn_activation", "gcn_choices"):
        preset = plan.load_preset(name)
        run = plan.build_runs("tiny", ["MetaMMF_GCN"], [1], {}, [tiny_yaml], preset)[0]
        assert run.variant == "paper"
        assert {key: run.config_dict[key] for key in ("negative_slope", "drop_batch_edges", "normalize_modalities")} == {
            "negative_slope": 0.01, "drop_batch_edges": False, "normalize_modalities": True}


PRESETS_MEASURED_WITH_PATIENCE_50 = {"ablations"}  # the others' tables date from before the benchmark's 50


@pytest.mark.parametrize("name", SHIPPED_PRESETS)
def test_benchmark_patience_is_50_and_presets_measured_with_10_keep_it(name, tiny_yaml):
    """The benchmark's patience (models.yaml) is 50, longer than the paper's 10 that single runs keep; the shipped
    presets measured with 10 pin it so that they reproduce the docs' figures; the command line wins over both."""
    plain = plan.build_runs("tiny", ["BPR"], [1], {"epochs": 1}, [tiny_yaml])[0]
    assert plain.config_dict["stopping_step"] == 50
    with open(os.path.join(PROPERTIES_DIR, "overall.yaml")) as f:
        assert yaml.safe_load(f)["stopping_step"] == 10
    preset = plan.load_preset(name)
    runs = plan.build_runs("tiny", preset["models"], [1], {"epochs": 1}, [tiny_yaml], preset)
    assert {run.config_dict["stopping_step"] for run in runs} == {50 if name in PRESETS_MEASURED_WITH_PATIENCE_50 else 10}
    runs = plan.build_runs("tiny", preset["models"], [1], {"epochs": 1, "stopping_step": 30}, [tiny_yaml], preset)
    assert {run.config_dict["stopping_step"] for run in runs} == {30}
    # a run records the preset's keys with the values it was given: the command line's, where it replaced the base's
    assert all(run.overrides.get("stopping_step", 30) == 30 for run in runs)


def test_a_command_line_value_for_a_key_the_preset_varies_is_refused(tiny_yaml):
    preset = plan.load_preset("ablations")
    with pytest.raises(ConfigError, match=r"cp_rank: varied by the preset 'ablations' \(.*ablations\.yaml\), so a value "
                                          r"given for the whole benchmark would replace the variants' own"):
        plan.build_runs("tiny", preset["models"], [1], {"epochs": 1, "cp_rank": 8}, [tiny_yaml], preset)
    with pytest.raises(ConfigError, match=r"^fusion_layers, static_weight: varied by the preset"):
        plan.build_runs("tiny", preset["models"], [1], {"static_weight": True, "fusion_layers": [32]}, [tiny_yaml], preset)


def test_run_identity_and_harmonisation(tiny_yaml, tmp_path):
    base = plan.build_runs("tiny", ["BPR", "MetaMMF_GCN"], [1, 2], {"epochs": 1}, [tiny_yaml])
    assert [(r.label, r.seed) for r in base] == [("BPR", 1), ("MetaMMF_GCN", 1), ("BPR", 2), ("MetaMMF_GCN", 2)]
    bpr, metammf = base[0].config_dict, base[1].config_dict
    assert bpr["embedding_size"] == 64
    assert metammf["embedding_size"] + metammf["fusion_layers"][-1] == 64
    assert bpr["train_neg_sample_args"] == metammf["train_neg_sample_args"]
    same = plan.build_runs("tiny", ["BPR"], [1], {"epochs": 1}, [tiny_yaml])[0]
    changed = plan.build_runs("tiny", ["BPR"], [1], {"epochs": 2}, [tiny_yaml])[0]
    assert same.run_id == base[0].run_id and changed.run_id != base[0].run_id
    with pytest.raises(ConfigError, match="seed"):
        plan.build_runs("tiny", ["BPR"], [1], {"seed": 3})
    with pytest.raises(ConfigError, match="close matches"):
        plan.build_runs("tiny", ["LightGCNN"], [1])
    with pytest.raises(ConfigError, match="preset"):
        plan.load_preset("nonexistent")
    bad_floor = tmp_path / "bad_floor.yaml"
    bad_floor.write_text(yaml.safe_dump({"models": ["BPR"], "variants": {"a": {}}, "floor": "yes"}))
    with pytest.raises(ConfigError, match="'floor' must be true or false"):
        plan.load_preset(str(bad_floor))
    with_floor = plan.build_runs("tiny", ["Pop", "BPR"], [1], {"epochs": 1}, [tiny_yaml], floor="Pop")
    assert [run.label for run in with_floor] == ["Pop", "BPR"]  # already among the models: not twice
    assert plan.parse_seeds("3") == [2020, 2021, 2022] and plan.parse_seeds("7,") == [7]
    with pytest.raises(ConfigError, match=r"a count of 2020 seeds .*--seeds=2020,"):
        plan.parse_seeds("2020")  # the seed meant, not 2,020 runs per model


def test_p_value_needs_two_seeds_and_failed_runs_are_retried(tiny_yaml, in_tmp_cwd, monkeypatch):
    def fake(config_dict=None, config_file_list=None, saved=True, **kwargs):
        if config_dict["model"] == "LightGCN" and not os.environ.get("LIGHTGCN_WORKS"):
            os.makedirs(config_dict["checkpoint_dir"])  # a resume point left by the epochs before the failure
            open(os.path.join(config_dict["checkpoint_dir"], "LightGCN-x-last.pth"), "wb").close()
            raise RuntimeError("boom")
        score = 0.1 if config_dict["model"] == "LightGCN" else 0.2
        metrics = {m: score for m in plan.METRICS}
        return {"best_valid_score": score, "best_valid_result": metrics, "test_result": metrics, "epochs": 1,
                "train_seconds_per_epoch": 0.5, "valid_history": [(0, metrics)], "n_parameters": 7, "checkpoint": None}

    monkeypatch.setattr(quick_start, "objective_function", fake)
    out = in_tmp_cwd / "fake"
    argv = ["--dataset=tiny", "--models=LightGCN,MetaMMF_MF", "--seeds=1", f"--output={out}",
            f"--config_files={tiny_yaml}", "--no-progress"]
    with pytest.raises(SystemExit, match="1 run"):
        cli()(argv)
    assert len(os.listdir(out / "runs")) == 1 and len(os.listdir(out / "failed")) == 1
    # a failure is not an interruption: its retry starts again, not from what the failed attempt left
    assert not glob.glob(str(out / "checkpoints" / "LightGCN__*"))
    monkeypatch.setenv("LIGHTGCN_WORKS", "1")
    result = cli()(argv)
    assert not result["failures"] and len(os.listdir(out / "runs")) == 2 and not os.listdir(out / "failed")
    row = read_csv(out / "summary.csv")[0]
    assert row["p_value"] == "nan" and row["paired_seeds"] == "1"  # one seed: no t-test
    assert float(row["improvement_pct"]) == pytest.approx(100.0)
    assert "| — |" in (out / "summary.md").read_text()


def test_a_finished_run_whose_model_defaults_changed_is_set_aside_and_made_again(in_tmp_cwd, monkeypatch):
    from recbole_metammf.experiments.benchmark import run as runner

    calls = []

    def fake(config_dict=None, **kwargs):
        calls.append(config_dict["model"])
        metrics = {m: 0.1 for m in plan.METRICS}
        return {"best_valid_score": 0.1, "best_valid_result": metrics, "test_result": metrics, "epochs": 1,
                "train_seconds_per_epoch": 0.5, "valid_history": [(0, metrics)], "n_parameters": 7, "checkpoint": None,
                "config": {"reg_weight": 1e-4, "n_layers": 2}}

    monkeypatch.setattr(quick_start, "objective_function", fake)
    (spec,) = plan.build_runs("tiny", ["LightGCN"], [2020])
    out = str(in_tmp_cwd / "bench")
    records, _ = runner.run_all([spec], out, progress=False)
    assert calls == ["LightGCN"] and records[spec.run_id]["config"]["reg_weight"] == 1e-4
    # the defaults resolve as the run recorded them: the finished run is kept
    records, _ = runner.run_all([spec], out, progress=False, settings={"LightGCN": {"reg_weight": 1e-4, "n_layers": 2}})
    assert calls == ["LightGCN"] and spec.run_id in records
    # a key added since, at the value that reproduces the behaviour before it: still current
    added = {"LightGCN": {"reg_weight": 1e-4, "n_layers": 2, "item_graph_k": 0}}
    assert runner.changed_defaults(records[spec.run_id], added["LightGCN"]) == {}
    # ... at another value, or a key whose old behaviour is not declared: what the run trained with differs or is unknown
    assert runner.changed_defaults(records[spec.run_id], {"item_graph_k": 10}) == {"item_graph_k": (0, 10)}
    assert runner.changed_defaults(records[spec.run_id], {"added_later": True}) == {"added_later": (runner.MISSING, True)}
    # the log names a key the record lacks as such, with the value it was compared as
    described = runner.describe_changes(records[spec.run_id], {"item_graph_k": (0, 10), "added_later": (runner.MISSING, True),
                                                                "reg_weight": (1e-4, 1e-5)})
    assert described == ("no item_graph_k, made before the key existed, as item_graph_k=0 (now 10), "
                         "no added_later (now True), reg_weight=0.0001 (now 1e-05)")
    # a default changed since: set aside, made again
    changed = {"LightGCN": {"reg_weight": 1e-5, "n_layers": 2}}
    assert runner.changed_defaults(records[spec.run_id], changed["LightGCN"]) == {"reg_weight": (1e-4, 1e-5)}
    records, _ = runner.run_all([spec], out, progress=False, settings=changed)
    assert calls == ["LightGCN", "LightGCN"] and spec.run_id in records
    stale = glob.glob(os.path.join(out, "stale", f"{spec.run_id}.*.json"))
    assert len(stale) == 1 and json.load(open(stale[0]))["config"]["reg_weight"] == 1e-4


def test_a_killed_run_goes_on_from_its_last_epoch_to_the_record_of_an_uninterrupted_one(tiny_yaml, in_tmp_cwd, capfd):
    argv = ["--dataset=tiny", "--models=MetaMMF_GCN", "--seeds=2020,", f"--config_files={tiny_yaml}", "--epochs=5", "--no-progress"]
    (whole,) = cli()(argv + [f"--output={in_tmp_cwd / 'whole'}"])["records"].values()
    out = in_tmp_cwd / "killed"
    kill_mid_epoch(in_tmp_cwd, SCRIPT, argv + [f"--output={out}"])
    [last] = glob.glob(str(out / "checkpoints" / "*" / "*-last.pth"))
    assert load_checkpoint(last)["epoch"] == KILL_EPOCH - 1
    assert not os.path.isdir(out / "runs") or not os.listdir(out / "runs")

    capfd.readouterr()
    (resumed,) = cli()(argv + [f"--output={out}"])["records"].values()
    assert f"MetaMMF_GCN seed 2020 goes on after epoch {KILL_EPOCH - 1} from {last}" in capfd.readouterr().err
    # the whole run's record, as if it had not stopped: every epoch's validation, the same selection and test
    for key in ("run_id", "valid_curve", "best_valid_result", "test_result", "epochs", "epoch_of_best", "n_parameters"):
        assert resumed[key] == whole[key], key
    assert [epoch for epoch, _ in resumed["valid_curve"]] == list(range(5))
    assert resumed["resumed_after_epoch"] == KILL_EPOCH - 1 and whole["resumed_after_epoch"] is None
    assert resumed["train_seconds_per_epoch"] > 0 and resumed["wall_seconds"] > 0
    assert not glob.glob(str(out / "checkpoints" / "*" / "*-last.pth"))  # finished: nothing left to resume


def test_a_resume_point_is_used_only_when_it_is_the_runs_own(tiny_config, in_tmp_cwd):
    from recbole_metammf.experiments.benchmark import run as runner

    (spec,) = plan.build_runs("tiny", ["BPR"], [2020])
    folder = str(in_tmp_cwd / "checkpoints")
    assert runner.interrupted_attempt(folder, spec) == (None, None)  # nothing there: a fresh start, nothing to say
    result = quick_start.objective_function(
        config_dict={**spec.config_dict, **tiny_config, "epochs": 1, "seed": 2020, "checkpoint_dir": folder},
        command_line=False,
    )
    last = result["last_checkpoint"]
    with_tiny = plan.RunSpec(**{**spec.__dict__, "config_dict": {**spec.config_dict, **tiny_config, "epochs": 1}})
    path, checkpoint = runner.interrupted_attempt(folder, with_tiny)
    assert path == last and checkpoint["epoch"] == 0
    # another seed, another setting, a model default changed since: not this run's
    other_seed = plan.RunSpec(**{**with_tiny.__dict__, "seed": 2021})
    assert runner.interrupted_attempt(folder, other_seed) == (None, f"{last} was written with other settings (seed)")
    other_lr = plan.RunSpec(**{**with_tiny.__dict__, "config_dict": {**with_tiny.config_dict, "learning_rate": 0.5}})
    assert runner.interrupted_attempt(folder, other_lr)[1] == f"{last} was written with other settings (learning_rate)"
    assert runner.interrupted_attempt(folder, with_tiny, {"embedding_size": 7})[1].endswith("(embedding_size)")
    # written before the history was kept, or unreadable: named, and the run starts again
    state = load_checkpoint(last)
    del state["valid_history"]
    save_checkpoint(state, last)
    assert "does not hold the run's validation history" in runner.interrupted_attempt(folder, with_tiny)[1]
    with open(last, "wb") as f:
        f.write(b"not a checkpoint")
    assert runner.interrupted_attempt(folder, with_tiny)[1].startswith(last)


def test_cli_refuses_what_is_not_a_setting(tiny_yaml, in_tmp_cwd):
    with pytest.raises(SystemExit):
        cli()(["--output=x", "--models=BPR", "stray"])
    with pytest.raises(SystemExit, match="seed"):
        cli()(["--output=x", "--dataset=tiny", "--models=BPR", "--seed=3", f"--config_files={tiny_yaml}"])


def test_cli_refuses_an_output_folder_it_cannot_create_before_any_run(tiny_yaml, in_tmp_cwd):
    (in_tmp_cwd / "a_file").write_text("")
    before = sorted(os.listdir(in_tmp_cwd))
    with pytest.raises(SystemExit) as stopped:
        cli()(["--output=a_file/results", "--dataset=tiny", "--models=BPR", "--seeds=1", f"--config_files={tiny_yaml}"])
    assert str(stopped.value.code).startswith("error: --output: cannot create a_file/results (Not a directory)")
    assert sorted(os.listdir(in_tmp_cwd)) == before  # nothing trained: no log, no checkpoint folder


def _group(model, seeds_to_results):
    records = [{"seed": seed, "test_result": result} for seed, result in seeds_to_results.items()]
    return {"model": model, "variant": None, "overrides": {}, "records": records}


def test_results_at_or_below_pop_or_with_low_coverage_are_flagged():
    base = {"itemcoverage@20": 0.2, "averagepopularity@20": 50.0, "giniindex@20": 0.9}
    groups = {
        "Pop": _group("Pop", {1: {**base, "recall@20": 0.06, "ndcg@20": 0.034, "itemcoverage@20": 0.006}}),
        "Good": _group("Good", {1: {**base, "recall@20": 0.09, "ndcg@20": 0.041}}),
        "BelowPop": _group("BelowPop", {1: {**base, "recall@20": 0.07, "ndcg@20": 0.030}}),
        "Narrow": _group("Narrow", {1: {**base, "recall@20": 0.08, "ndcg@20": 0.040, "itemcoverage@20": 0.03}}),
    }
    flags = {row["label"]: row["flags"] for row in tables.ranking_diagnosis(groups)}
    assert flags["Good"] == []
    assert flags["BelowPop"] == ["at or below Pop"]
    assert flags["Narrow"] == ["coverage < 5%"]
    assert flags["Pop"] == ["coverage < 5%"]  # the floor is not compared with itself
    md, csv_text, _ = tables.diagnosis_tables(groups)
    assert "| BelowPop | 0.2000 | 50.0 | 0.9000 | **at or below Pop** |" in md
    assert csv_text.splitlines()[0] == "label,itemcoverage@20,averagepopularity@20,giniindex@20,flags"


def test_benchmark_summary_has_pop_and_what_each_model_ranks(tiny_yaml, in_tmp_cwd, capfd):
    out = in_tmp_cwd / "bench_pop"
    result = cli()(["--dataset=tiny", "--models=Pop,BPR", "--seeds=1", f"--output={out}",
                    f"--config_files={tiny_yaml}", "--epochs=1", "--no-progress"])
    assert not result["failures"]
    assert {row["label"] for row in result["diagnosis"]} == {"Pop", "BPR"}
    summary = (out / "summary.md").read_text()
    assert "## What each model ranks" in summary
    rows = read_csv(out / "ranked.csv")
    assert [row["label"] for row in rows] == ["Pop", "BPR"]
    assert all(0 < float(row["itemcoverage@20"]) <= 1 for row in rows)
    # one epoch of a bound of one: early stopping did not end BPR's run
    assert "epoch bound (1 of 1 seeds)" in rows[1]["flags"]
    assert "BPR seed 2020 reached the epoch bound (epochs=1)" in capfd.readouterr().err  # RecBole's log handler


def test_a_run_that_the_epoch_bound_ended_while_its_validation_rose_is_flagged():
    def record(epochs, epochs_to_best, bound=300, patience=50):
        return {"epochs": epochs, "epochs_to_best": epochs_to_best, "config": {"epochs": bound, "stopping_step": patience}}

    assert tables.cut_by_epoch_bound(record(300, 300))  # best at the last epoch
    assert tables.cut_by_epoch_bound(record(300, 250))  # 50 epochs without gain: one short of early stopping
    assert not tables.cut_by_epoch_bound(record(300, 249))  # early stopping ended it at the bound
    assert not tables.cut_by_epoch_bound(record(155, 104))  # early stopping ended it before the bound
    assert not tables.cut_by_epoch_bound({"epochs": 300, "epochs_to_best": 300, "config": {}})  # nothing to judge by
    base = {"recall@20": 0.1, "ndcg@20": 0.05, "itemcoverage@20": 0.2, "averagepopularity@20": 50.0, "giniindex@20": 0.9}
    group = _group("LightGCN", {2020: base, 2021: base, 2022: base})
    for rec, (epochs, to_best) in zip(group["records"], [(300, 298), (300, 240), (120, 70)]):
        rec.update(record(epochs, to_best))
    (row,) = tables.ranking_diagnosis({"LightGCN": group})
    assert row["flags"] == ["epoch bound (1 of 3 seeds)"]


def test_each_metammf_model_is_compared_with_its_static_twin_by_a_paired_t_test():
    meta = {2020: 0.10, 2021: 0.12, 2022: 0.11}
    twin = {2020: 0.09, 2021: 0.10, 2022: 0.10}
    groups = {
        "MetaMMF_LightGCN": _group("MetaMMF_LightGCN", {s: {"recall@20": v, "ndcg@20": v / 2} for s, v in meta.items()}),
        "EarlyFusion_LightGCN": _group("EarlyFusion_LightGCN", {s: {"recall@20": v, "ndcg@20": v / 2} for s, v in twin.items()}),
        "MetaMMF_MF": _group("MetaMMF_MF", {2020: {"recall@20": 0.03, "ndcg@20": 0.01}}),  # no twin ran: no row
    }
    rows = tables.twin_comparison(groups)
    assert [(r["metammf"], r["twin"], r["metric"]) for r in rows] == [
        ("MetaMMF_LightGCN", "EarlyFusion_LightGCN", "recall@20"), ("MetaMMF_LightGCN", "EarlyFusion_LightGCN", "ndcg@20")]
    recall = rows[0]
    assert recall["improvement_pct"] == pytest.approx((0.11 - 0.29 / 3) / (0.29 / 3) * 100)
    assert recall["p_value"] == pytest.approx(stats.ttest_rel([0.10, 0.12, 0.11], [0.09, 0.10, 0.10]).pvalue)
    assert recall["paired_seeds"] == 3
    md, csv = tables.twin_tables(groups)
    assert "| MetaMMF_LightGCN | EarlyFusion_LightGCN | R@20 |" in md and csv.startswith("metammf,twin,metric")
    assert tables.twin_tables({"MetaMMF_MF": groups["MetaMMF_MF"]}) == ("", "")


def test_each_preset_variant_is_compared_with_its_models_first_variant_by_a_paired_t_test():
    def variant(model, name, valid, recall):
        g = _group(model, {s: {"recall@20": r, "ndcg@20": r / 2} for s, r in recall.items()})
        g["variant"] = name
        for r in g["records"]:
            r["best_valid_score"] = valid[r["seed"]]
        return g

    seeds = (2020, 2021, 2022)
    groups = {
        "M[defaults]": variant("M", "defaults", dict(zip(seeds, (0.040, 0.042, 0.041))), dict(zip(seeds, (0.09, 0.10, 0.095)))),
        "M[depth=2]": variant("M", "depth=2", dict(zip(seeds, (0.038, 0.041, 0.039))), dict(zip(seeds, (0.08, 0.09, 0.09)))),
        "N[defaults]": variant("N", "defaults", {2020: 0.03}, {2020: 0.05}),  # another model's own reference
    }
    rows = tables.variant_comparison(groups)
    assert [(r["label"], r["reference"], r["metric"]) for r in rows] == [
        ("M[depth=2]", "M[defaults]", m) for m in ("valid", "recall@20", "ndcg@20")]
    valid = rows[0]
    assert valid["mean"] == pytest.approx(0.118 / 3) and valid["reference_mean"] == pytest.approx(0.041)
    assert valid["change_pct"] == pytest.approx((0.118 / 3 - 0.041) / 0.041 * 100)
    assert valid["p_value"] == pytest.approx(stats.ttest_rel([0.038, 0.041, 0.039], [0.040, 0.042, 0.041]).pvalue)
    assert valid["paired_seeds"] == 3
    md, csv = tables.variant_comparison_tables(groups)
    assert "| M[depth=2] | M[defaults] | valid (selection) |" in md and csv.startswith("label,reference,metric")
    assert tables.variant_comparison_tables({"M[defaults]": groups["M[defaults]"]}) == ("", "")


def test_cold_start_summary_adds_the_ranking_among_all_items_and_others_do_not():
    def group(model, recall, everything=None):
        result = {"recall@20": recall, "ndcg@20": recall / 2}
        if everything is not None:
            result.update({"all_items/recall@20": everything, "all_items/ndcg@20": everything / 2})
        g = _group(model, {2020: result, 2021: dict(result)})
        for r in g["records"]:
            r["best_valid_score"] = recall
        return g

    cold = {"MetaMMF_LightGCN": group("MetaMMF_LightGCN", 0.06, 0.001), "VBPR": group("VBPR", 0.05, 0.003)}
    metrics = [row["metric"] for row in tables.comparison(cold)]
    assert metrics[-2:] == ["all_items/recall@20", "all_items/ndcg@20"]
    md, _, _ = tables.comparison_tables(cold)
    assert "| all items R@20 |" in md and "| all items NDCG@20 |" in md
    warm = {"MetaMMF_LightGCN": group("MetaMMF_LightGCN", 0.06), "VBPR": group("VBPR", 0.05)}
    assert not any(row["metric"].startswith("all_items/") for row in tables.comparison(warm))


@pytest.mark.parametrize(
    "model_name,source",
    [("Pop", None), ("LightGCN", "forward"), ("BPR", "embeddings"), ("MetaMMF_LightGCN", "all_representations")],
)
def test_final_representations_are_read_where_a_model_has_them_and_refused_for_pop(model_name, source, tiny_config):
    _, model, *_ = build(model_name, tiny_config)
    if source is None:  # RecBole's Pop: a forward() that returns None, no embeddings
        with pytest.raises(analysis.RepresentationsUnavailable, match="Pop"):
            analysis.final_representations(model)
        return
    users, items = analysis.final_representations(model)
    assert users.shape == (model.n_users, users.shape[1]) and items.shape == (model.n_items, users.shape[1])


def test_tsne_skips_a_model_without_representations_and_draws_the_others(tiny_yaml, in_tmp_cwd):
    out = in_tmp_cwd / "bench_tsne"
    cli()(["--dataset=tiny", "--models=Pop,BPR", "--seeds=1", f"--output={out}", f"--config_files={tiny_yaml}",
           "--epochs=1", "--no-progress", "--plot-tsne", "--tsne-users=4"])
    with open(out / "tsne.json") as f:
        assert set(json.load(f)) == {"BPR"}
    assert_png(out / "tsne.png")  # Pop skipped (with a warning in the log), no traceback


def test_patience_replay_reselects_what_early_stopping_selected(tiny_yaml, in_tmp_cwd):
    """docs/scripts/patience_replay.py (docs/RESULTS.md, "The protocol's patience"): replayed on a run's saved
    validation curve with the run's own patience, RecBole's rule selects the run's best epoch and ends where the
    run ended; a longer patience than the run's own is marked open-ended when the curve stops short."""
    out = in_tmp_cwd / "bench"
    result = cli()(["--dataset=tiny", "--models=BPR", "--seeds=1", f"--output={out}", f"--config_files={tiny_yaml}",
                    "--epochs=15", "--stopping_step=1", "--no-progress"])
    assert not result["failures"]
    assert "- early stopping: validation NDCG@20, patience 1 epochs (`stopping_step`)" in (out / "summary.md").read_text()
    (path,) = glob.glob(str(out / "runs" / "*.json"))
    with open(path) as f:
        run = json.load(f)
    script = runpy.run_path(PATIENCE_REPLAY)
    curve = [(epoch, metrics["ndcg@20"]) for epoch, metrics in run["valid_curve"]]
    selected, score, stopped = script["replay"](curve, 1)
    assert selected == run["epoch_of_best"] and score == pytest.approx(run["best_valid_score"])
    assert stopped == (curve[-1][0] if len(curve) < 15 else None)
    # patience 0 stops at the first evaluation without a gain, never later than patience 1
    selected0, _, stopped0 = script["replay"](curve, 0)
    assert selected0 <= selected and (stopped0 is not None or stopped is None)

    done = subprocess.run([sys.executable, PATIENCE_REPLAY, str(out), "--patience", "1,5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("| BPR")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["BPR", "2020", "1", str(len(curve))]
    assert cells[4] == f"{selected} ({score:.4f})"
    assert cells[5].endswith("+") == (len(curve) < 15)
    done = subprocess.run([sys.executable, PATIENCE_REPLAY, str(out), "--models", "LightGCN"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--models LightGCN: no runs of them" in done.stderr


def test_paired_ttest_script_pairs_the_seeds_both_ran_and_names_what_it_refuses(tmp_path):
    """docs/scripts/paired_ttest.py: scipy's paired t-test over the seeds both folders ran (a seed only one ran is
    left out); an unknown label or metric is refused with what the runs have, exit 1, no traceback."""
    valid = {"A": [0.30, 0.32, 0.35, 0.31], "B": [0.28, 0.31, 0.30]}
    for name, folder in (("A", "one"), ("B", "two")):
        os.makedirs(tmp_path / folder / "runs", exist_ok=True)
        for seed, score in zip([2020, 2021, 2022, 2023], valid[name]):
            with open(tmp_path / folder / "runs" / f"M__seed{seed}.json", "w") as f:
                json.dump({"label": "M", "seed": seed, "best_valid_score": score,
                           "test_result": {"ndcg@20": score / 2}}, f)

    def paired(*arguments):
        return subprocess.run([sys.executable, PAIRED_TTEST, *arguments], capture_output=True, text=True, timeout=120)

    done = paired(str(tmp_path / "one"), "M", "M", "--b-from", str(tmp_path / "two"), "--metrics", "ndcg@20")
    assert done.returncode == 0, done.stderr
    p = stats.ttest_rel(valid["A"][:3], valid["B"]).pvalue
    lines = done.stdout.splitlines()
    assert lines[0].startswith("best_valid_score: M 0.3233, M 0.2967, +9.0 %") and f"paired p = {p:.3g} over 3 seeds" in lines[0]
    assert lines[1].startswith("ndcg@20: M 0.1617, M 0.1483") and f"paired p = {p:.3g}" in lines[1]
    done = paired(str(tmp_path / "one"), "M", "M", "--metrics", "valid")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: --metrics: ['valid'] not in the runs (they have ['best_valid_score', 'ndcg@20']" in done.stderr
    done = paired(str(tmp_path / "one"), "M", "N")
    assert done.returncode == 1 and "error: no runs of 'N'" in done.stderr and "it has ['M']" in done.stderr
    done = paired(str(tmp_path / "nowhere"), "M", "M")
    assert done.returncode == 1 and "no such benchmark folder" in done.stderr
