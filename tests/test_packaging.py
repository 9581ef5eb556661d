"""Packaging: the wheel carries properties/ and the bundled tiktok data, its command runs from any folder,
and the command's --help loads neither torch nor RecBole."""

import os
import subprocess
import sys
import zipfile

import pytest

from recbole_metammf.utils import REPO_ROOT


def test_help_loads_neither_torch_nor_recbole():
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['recbole-metammf', '--help']\n"
        "try:\n    runpy.run_module('recbole_metammf', run_name='__main__')\n"
        "except SystemExit as stop:\n    assert stop.code in (0, None), stop.code\n"
        "heavy = sorted(name for name in ('torch', 'recbole', 'pandas') if name in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--model MODEL" in done.stdout and "python -m recbole_metammf" in done.stdout


@pytest.mark.parametrize("script", ["run_benchmark.py", "run_tune.py", "bench/epoch.py"])
def test_help_of_the_experiment_scripts_loads_neither_torch_nor_recbole(script):
    probe = (
        "import os, runpy, sys\n"
        f"path = {os.path.join(REPO_ROOT, script)!r}\n"
        "sys.argv = [path, '--help']\n"
        "sys.path.insert(0, os.path.dirname(path))  # what `python SCRIPT` does\n"
        "try:\n    runpy.run_path(path, run_name='__main__')\n"
        "except SystemExit as stop:\n    assert stop.code in (0, None), stop.code\n"
        "heavy = sorted(name for name in ('torch', 'recbole', 'ray', 'pandas') if name in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--config_files" in done.stdout


def test_the_wheel_runs_the_bundled_dataset_from_an_empty_folder(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"), REPO_ROOT],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = os.listdir(tmp_path / "wheel")
    with zipfile.ZipFile(tmp_path / "wheel" / wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        archive.extractall(tmp_path / "site")
    for name in ["properties/overall.yaml", "properties/model/MetaMMF_GCN.yaml", "dataset/tiktok/tiktok.item",
                 "dataset/tiktok/tiktok.train.inter"]:
        assert f"recbole_metammf/_data/{name}" in names, name
    assert "recbole-metammf = recbole_metammf.cli:main" in entry_points

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "OMP_NUM_THREADS": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import recbole_metammf.utils as u; print(u.PROPERTIES_DIR)"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=120,
    )
    assert where.stdout.strip() == str(tmp_path / "site" / "recbole_metammf" / "_data" / "properties"), where.stderr
    run = subprocess.run(
        [sys.executable, "-m", "recbole_metammf", "--model=Pop", "--dataset=tiktok", "--show_progress=False"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test result" in run.stdout + run.stderr
