"""Reliability: safe checkpoints, kill and resume, determinism, recommend, clear errors for bad configs,
and the finite-loss / finite-feature checks."""

import argparse
import glob
import os
import runpy
import sys

import pytest
import torch
import yaml

import recbole_metammf.pipeline as pipeline
from recbole_metammf.checkpoint import CheckpointError, load_checkpoint
from recbole_metammf.model.general_recommender import MetaMMF_MF
from recbole_metammf.quick_start import load_data_and_model, run_recbole_metammf
from recbole_metammf.recommend import recommend, recommend_topk
from recbole_metammf.registry import get_model
from recbole_metammf.trainer import NonFiniteLossError
from recbole_metammf.utils import REPO_ROOT, ConfigError, DataError

from conftest import KILL_EPOCH, kill_mid_epoch, write_tiny_dataset

SCRIPT = os.path.join(REPO_ROOT, "run_recbole_metammf.py")
PLAIN = (str, int, float, bool, type(None))


def run_cli(monkeypatch, *args):
    """The command line, in this process (cheaper than a subprocess on a loaded machine)."""
    monkeypatch.setattr(sys, "argv", [SCRIPT, *args])
    runpy.run_path(SCRIPT, run_name="__main__")


def assert_plain(value, where="config"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), where
            assert_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{where}[{i}]")
    else:
        assert isinstance(value, PLAIN), f"{where} is {type(value).__name__}"


def assert_same_weights(path_a, path_b):
    a, b = load_checkpoint(path_a)["state_dict"], load_checkpoint(path_b)["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def train_items_by_user(config_dict):
    """The training pairs, read from the atomic file itself (not through RecBole)."""
    seen = {}
    path = os.path.join(config_dict["data_path"], "tiny", "tiny.train.inter")
    with open(path) as f:
        next(f)
        for line in f:
            user, item = line.split()
            seen.setdefault(user, set()).add(item)
    return seen


# ---- safe checkpoints -----------------------------------------------------------------------


def test_best_and_last_checkpoints_load_with_weights_only(tiny_config):
    result = run_recbole_metammf("MetaMMF_MF", "tiny", config_dict=tiny_config)
    for path in [result["checkpoint"], result["last_checkpoint"]]:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # the safe loader, nothing allow-listed
        assert_plain(checkpoint["config"])
        assert checkpoint["config"]["final"]["modalities"] == ["v_feat", "a_feat"]
        assert all(isinstance(t, torch.Tensor) for t in checkpoint["state_dict"].values())
    last = load_checkpoint(result["last_checkpoint"])
    assert result["last_checkpoint"] == result["checkpoint"][: -len(".pth")] + "-last.pth"
    assert last["epoch"] == tiny_config["epochs"] - 1 and last["last"] is True
    assert last["best_checkpoint"] == os.path.basename(result["checkpoint"])
    assert {"python", "numpy", "torch", "dataloader"} <= set(last["rng"])
    assert not glob.glob(os.path.join(tiny_config["checkpoint_dir"], "*.tmp-*"))  # atomic writes leave no temp file


def test_a_pickled_checkpoint_is_refused_clearly(in_tmp_cwd):
    path = in_tmp_cwd / "recbole.pth"
    torch.save({"config": argparse.Namespace(model="BPR"), "state_dict": {}}, path)  # like RecBole's own
    with pytest.raises(CheckpointError, match="not a checkpoint of recbole-metammf"):
        load_checkpoint(path)


# ---- kill and resume --------------------------------------------------------------------------

def test_killed_run_resumes_to_the_same_result_as_an_uninterrupted_one(tiny_config, in_tmp_cwd, monkeypatch):
    settings = {**tiny_config, "epochs": 5}
    uninterrupted = run_recbole_metammf(
        "MetaMMF_GCN", "tiny", config_dict={**settings, "checkpoint_dir": str(in_tmp_cwd / "uninterrupted")}
    )

    config_file = in_tmp_cwd / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    kill_mid_epoch(in_tmp_cwd, SCRIPT, ["--model=MetaMMF_GCN", "--dataset=tiny", f"--config_files={config_file}"])
    [last] = glob.glob(os.path.join(settings["checkpoint_dir"], "*-last.pth"))
    assert load_checkpoint(last)["epoch"] == KILL_EPOCH - 1  # the last finished epoch, intact

    resumed = run_recbole_metammf(resume=last)  # model, dataset and settings from the checkpoint
    assert resumed["first_epoch"] == KILL_EPOCH and resumed["epochs"] == 5 - KILL_EPOCH
    assert resumed["test_result"] == uninterrupted["test_result"]
    assert resumed["best_valid_result"] == uninterrupted["best_valid_result"]
    assert resumed["valid_history"] == uninterrupted["valid_history"][KILL_EPOCH:]
    # the epochs before the kill, as the checkpoint kept them
    earlier = resumed["before_resume"]
    assert [tuple(entry) for entry in earlier["valid_history"]] == uninterrupted["valid_history"][:KILL_EPOCH]
    assert len(earlier["epoch_train_seconds"]) == KILL_EPOCH and earlier["fit_seconds"] > sum(earlier["epoch_train_seconds"])
    assert uninterrupted["before_resume"] == {"valid_history": [], "epoch_train_seconds": [], "fit_seconds": 0.0}
    assert_same_weights(resumed["checkpoint"], uninterrupted["checkpoint"])
    assert_same_weights(resumed["last_checkpoint"], uninterrupted["last_checkpoint"])

    # resuming a finished run trains nothing and keeps the best checkpoint (RecBole would overwrite it)
    before = os.path.getmtime(resumed["checkpoint"])
    run_cli(monkeypatch, f"--resume={last}")
    assert os.path.getmtime(resumed["checkpoint"]) == before
    assert_same_weights(resumed["checkpoint"], uninterrupted["checkpoint"])


def test_resume_refuses_another_model(tiny_config, monkeypatch):
    result = run_recbole_metammf("MetaMMF_MF", "tiny", config_dict={**tiny_config, "epochs": 1})
    with pytest.raises(SystemExit, match="error: model: got 'BPR', but the checkpoint .* was written for 'MetaMMF_MF'"):
        run_cli(monkeypatch, "--model=BPR", f"--resume={result['last_checkpoint']}")


# ---- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["MetaMMF_MF", "MetaMMF_GCN"])
def test_same_seed_gives_identical_metrics(model_name, tiny_config, in_tmp_cwd):
    # one batch of all 540 training pairs: large enough for torch's parallel (atomic) gradient accumulation
    # on CPU, which made every repeated backward differ in the last bits before reproducibility enabled
    # torch's deterministic algorithms
    settings = {**tiny_config, "train_batch_size": 540}
    runs = [
        run_recbole_metammf(model_name, "tiny", config_dict={**settings, "checkpoint_dir": str(in_tmp_cwd / f"run{i}")})
        for i in range(2)
    ]
    assert runs[0]["test_result"] == runs[1]["test_result"]
    assert runs[0]["valid_history"] == runs[1]["valid_history"]
    assert_same_weights(runs[0]["checkpoint"], runs[1]["checkpoint"])


# ---- bad configs, refused before any data is loaded ------------------------------------------


@pytest.fixture
def no_data_loading(monkeypatch):
    def refuse(config):
        raise AssertionError("data loaded before the config was checked")

    monkeypatch.setattr(pipeline, "create_dataset", refuse)


@pytest.mark.parametrize(
    "override,message",
    [
        ({"d_s": 0}, r"^d_s: got 0; expected an integer >= 1"),
        ({"cp_rank": -1}, r"^cp_rank: got -1; expected an integer >= 0 \(0 = full 3-D tensor\)"),
        ({"modalities": []}, r"^modalities: got \[\]; expected a non-empty list"),
        ({"modalities": ["v_feat", "x_feat"]}, r"^modalities: \['x_feat'\] not among .*\(it has \['v_feat', 'a_feat'\]\)"),
        ({"modalities": ["genre"]}, r"^modalities: \['genre'\] not among the float_seq .*\(it has \['v_feat', 'a_feat'\]\)"),
        ({"modalities": ["x_feat"], "load_col": None}, r"^modalities: \['x_feat'\] not among the float_seq .*tiny\.item"),
        ({"fusion_layers": []}, r"^fusion_layers: got \[\]; expected a non-empty list of positive widths"),
        ({"fusion_layers": [64, -32]}, r"^fusion_layers: got \[64, -32\]; expected a non-empty list of positive widths"),
    ],
    ids=["d_s", "cp_rank", "empty-modalities", "absent-modality", "not-float_seq", "absent-modality-all-columns",
         "empty-layers", "negative-width"],
)
def test_bad_config_is_refused_naming_key_value_and_accepted(override, message, tiny_config, no_data_loading):
    if override.get("modalities") == ["genre"]:  # a real item field, but a token, not a float_seq
        item_file = os.path.join(tiny_config["data_path"], "tiny", "tiny.item")
        lines = open(item_file).read().splitlines()
        lines = [lines[0] + "\tgenre:token"] + [line + "\tdrama" for line in lines[1:]]
        open(item_file, "w").write("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=message):
        run_recbole_metammf("MetaMMF_GCN", "tiny", config_dict={**tiny_config, **override})


def test_unknown_model_lists_close_matches(tiny_config, no_data_loading):
    with pytest.raises(ConfigError, match=r"^model: 'MetaMMF_GNC' is neither .*close matches: MetaMMF_GCN"):
        run_recbole_metammf("MetaMMF_GNC", "tiny", config_dict=tiny_config)
    with pytest.raises(ConfigError, match="close matches: .*LightGCN"):
        get_model("LightGNC")


def test_cli_names_the_key_without_a_traceback(tiny_config, monkeypatch, capsys):
    with pytest.raises(SystemExit, match=r"^error: cp_rank: got -1"):
        run_cli(
            monkeypatch, "--model=MetaMMF_MF", "--dataset=tiny", f"--data_path={tiny_config['data_path']}",
            "--modalities=['v_feat']", "--cp_rank=-1",
        )


# ---- training health --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_training_naming_epoch_and_batch(bad, tiny_config, monkeypatch):
    calls = []
    calculate_loss = MetaMMF_MF.calculate_loss

    def poisoned(self, interaction):
        calls.append(1)
        loss = calculate_loss(self, interaction)
        return loss * bad if len(calls) == 5 + 3 else loss  # 5 batches an epoch: epoch 1, batch 2

    monkeypatch.setattr(MetaMMF_MF, "calculate_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=rf"^training loss is {bad} at epoch 1, batch 2 "):
        run_recbole_metammf("MetaMMF_MF", "tiny", config_dict={**tiny_config, "epochs": 3})
    assert len(calls) == 8  # stopped at once


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_features_are_refused_at_load(bad, in_tmp_cwd, tiny_config):
    root, fields, _ = write_tiny_dataset(str(in_tmp_cwd / "broken"))
    item_file = os.path.join(root, "tiny", "tiny.item")
    lines = open(item_file).read().splitlines()
    token, v_feat, a_feat = lines[8].split("\t")
    lines[8] = "\t".join([token, v_feat, " ".join([bad] + a_feat.split()[1:])])
    open(item_file, "w").write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"item field 'a_feat' holds NaN or inf \(item '{token}'"):
        run_recbole_metammf("MetaMMF_MF", "tiny", config_dict={**tiny_config, "data_path": root})


# ---- recommend --------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["MetaMMF_GCN", "LightGCN", "ItemKNN"])
def test_recommend_returns_k_unseen_items_per_user(model_name, tiny_config):
    result = run_recbole_metammf(model_name, "tiny", config_dict={**tiny_config, "epochs": 1})
    seen = train_items_by_user(tiny_config)
    users = sorted(seen, key=int)
    recommendations = recommend(result["checkpoint"], users, topk=20, with_scores=True)
    assert list(recommendations) == users
    for user, ranked in recommendations.items():
        items = [item for item, _ in ranked]
        scores = [score for _, score in ranked]
        assert len(items) == 20 == len(set(items))
        assert not set(items) & seen[user]
        assert set(items) <= {str(i) for i in range(90)}
        assert scores == sorted(scores, reverse=True)

    # the scores are the model's own full ranking over the unseen items
    config, model, _, train_data, _, _ = load_data_and_model(result["checkpoint"])
    dataset = train_data.dataset
    uid = dataset.token2id(dataset.uid_field, users[3])
    with torch.no_grad():
        model.eval()
        scores = model.full_sort_predict({model.USER_ID: torch.tensor([uid])}).view(-1)
    unseen = [i for i in range(1, dataset.item_num) if dataset.id2token(dataset.iid_field, i) not in seen[users[3]]]
    best = sorted(unseen, key=lambda i: -scores[i].item())[:20]
    assert recommend_topk(model, dataset, [users[3]], topk=20)[users[3]] == list(dataset.id2token(dataset.iid_field, best))

    # fewer unseen items than K: all of them
    everything = recommend_topk(model, dataset, [users[0]], topk=1000)[users[0]]
    assert len(everything) == 90 - len(seen[users[0]])


def test_recommend_command_and_its_errors(tiny_config, monkeypatch, capsys):
    result = run_recbole_metammf("MetaMMF_MF", "tiny", config_dict={**tiny_config, "epochs": 1})
    capsys.readouterr()
    run_cli(monkeypatch, "--recommend", f"--checkpoint={result['checkpoint']}", "--users=3,17", "--topk=5")
    lines = capsys.readouterr().out.strip().splitlines()
    seen = train_items_by_user(tiny_config)
    assert [line.split("\t")[0] for line in lines] == ["3", "17"]
    for line in lines:
        user, items = line.split("\t")
        assert len(items.split()) == 5 and not set(items.split()) & seen[user]

    with pytest.raises(SystemExit, match=r"error: users: \['nobody'\] not among the 60 users .*look like 0, 1, 2"):
        run_cli(monkeypatch, "--recommend", f"--checkpoint={result['checkpoint']}", "--users=3,nobody")
    with pytest.raises(SystemExit, match=r"error: topk: got 0; expected an integer >= 1"):
        run_cli(monkeypatch, "--recommend", f"--checkpoint={result['checkpoint']}", "--users=3", "--topk=0")
    with pytest.raises(SystemExit, match="error: .*missing.pth"):
        run_cli(monkeypatch, "--recommend", "--checkpoint=missing.pth", "--users=3")


def test_a_checkpoint_rebuilds_with_the_model_settings_it_trained_with_not_todays_defaults():
    from recbole_metammf.checkpoint import rebuild_settings

    saved = {
        "model": "MetaMMF_MF",
        "dataset": "tiktok",
        # trained when center_meta_input defaulted to False (properties/model/MetaMMF_MF.yaml says True now)
        "final": {"center_meta_input": False, "d_s": 5, "cp_rank": 16, "epochs": 300, "gpu_id": "0"},
        "external": {"d_s": 3, "epochs": 2},
    }
    settings = rebuild_settings(saved)
    assert settings["center_meta_input"] is False and settings["cp_rank"] == 16
    assert settings["d_s"] == 3 and settings["epochs"] == 2  # the user's own settings win
    assert "gpu_id" not in settings  # not a key of the model's yaml: left to the loading machine
    # a checkpoint from before `final` was recorded, and a RecBole model: the user's settings alone
    assert rebuild_settings({**saved, "final": None}) == saved["external"]
    assert rebuild_settings({**saved, "model": "BPR"}) == saved["external"]
    # trained before MetaMMF_GCN had negative_slope and drop_batch_edges: the behaviour of that code
    before_keys = {"model": "MetaMMF_GCN", "final": {"d_s": 5, "normalize_modalities": True}, "external": {}}
    settings = rebuild_settings(before_keys)
    assert settings["negative_slope"] == 0.01 and settings["drop_batch_edges"] is False
    assert settings["normalize_modalities"] is True
    recorded = {**before_keys, "final": {**before_keys["final"], "negative_slope": 1.0, "drop_batch_edges": True}}
    assert rebuild_settings(recorded)["negative_slope"] == 1.0 and rebuild_settings(recorded)["drop_batch_edges"] is True
