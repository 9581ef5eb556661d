"""The benchmark scripts under bench/ run end to end on small inputs and report consistent figures.

They are timings, not tests: what is checked here is that they run, that the fusion benchmark's two
paths agree, and that the epoch benchmark's table is built from the runs it made."""

import os
import re
import subprocess
import sys

import yaml

from conftest import write_tiny_dataset

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def run_script(name, *args):
    out = subprocess.run([sys.executable, os.path.join(BENCH, name), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_fusion_benchmark_checks_both_paths_agree(tmp_path):
    report = tmp_path / "report.md"
    stdout = run_script("fusion.py", "--shape", "movielens", "--items", "12", "--repeats", "1", "--rounds", "1", "--report", str(report))
    assert "same outputs and gradients: yes" in stdout
    package, explicit = (float(x) for x in re.findall(r"\| (\d+\.\d+) \|$", stdout, flags=re.M))
    ratio = float(re.search(r"^ratio: (\S+)$", stdout, flags=re.M).group(1))
    assert abs(ratio - explicit / package) <= 0.05 * ratio + 0.1
    # several rounds: one ratio each, the median reported between the smallest and the largest
    stdout = run_script("fusion.py", "--shape", "movielens", "--items", "12", "--repeats", "1", "--rounds", "3", "--report", str(report))
    low, middle, high = (float(x) for x in re.search(r"min / median / max of 3: (\S+) / (\S+) / (\S+)$", stdout, flags=re.M).groups())
    assert low <= middle <= high and float(re.search(r"^ratio: (\S+)$", stdout, flags=re.M).group(1)) == middle
    assert "2276 -> 1024 -> 512 -> 256 -> 32" in report.read_text()


def tiny_config_file(tmp_path):
    root, fields, _ = write_tiny_dataset(str(tmp_path / "data"))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data_path": root,
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id"]},
        "modalities": fields,
        "train_batch_size": 128,
    }))
    return config


def table_rows(report, models):
    rows = {}
    for line in report.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in models:
            rows[cells[0]] = cells
    return rows


def test_epoch_benchmark_times_each_model_and_gives_ratios(tmp_path):
    config = tiny_config_file(tmp_path)
    report = tmp_path / "report.md"
    run_script("epoch.py", "--dataset=tiny", "--models=MetaMMF_GCN,BPR", "--epochs=2", f"--config_files={config}",
               f"--report={report}", "--reproducibility=False")
    rows = table_rows(report, ("MetaMMF_GCN", "BPR"))
    assert set(rows) == {"MetaMMF_GCN", "BPR"}
    gcn, bpr = rows["MetaMMF_GCN"], rows["BPR"]
    # model | train s/epoch | vs BPR | eval s | vs BPR | peak RSS | batches | parameters | valid NDCG@20
    assert bpr[2] == "1.00x" and bpr[4] == "1.00x"
    assert abs(float(gcn[2].rstrip("x")) - float(gcn[1]) / float(bpr[1])) < 0.02 * float(gcn[2].rstrip("x")) + 0.01
    assert gcn[6] == bpr[6] == "5"  # 540 training pairs / 128 per batch, the same batches for both
    assert float(gcn[5]) > 0.1  # peak RSS in GB of a process that imported torch and RecBole
    assert "train_batch_size 128" in report.read_text()


def test_resume_point_benchmark_gives_its_cost_against_the_epoch_it_follows(tmp_path):
    config = tiny_config_file(tmp_path)
    report = tmp_path / "report.md"
    run_script("resume_point.py", "--dataset=tiny", "--models=MetaMMF_MF,LightGCN", "--repeats=2",
               f"--config_files={config}", f"--report={report}")
    rows = table_rows(report, ("MetaMMF_MF", "LightGCN"))
    assert set(rows) == {"MetaMMF_MF", "LightGCN"}
    for model, epoch, point, ratio, megabytes in rows.values():
        assert float(epoch) > 0 and float(point) > 0
        assert abs(float(ratio) - float(point) / float(epoch)) < 0.02 * float(ratio) + 0.002
        assert 0 < float(megabytes) < 10  # parameters and Adam's moments of a 60-user, 90-item model
    assert f"--config_files={config}" in report.read_text()
