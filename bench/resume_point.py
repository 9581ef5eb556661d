r"""What a sweep trial's resume point costs per report, against the epoch it follows, model by model.

    python bench/resume_point.py --dataset=tiktok [--models=MetaMMF_LightGCN,MetaMMF_GCN,LightGCN] [--repeats=5]
        [--config_files=a.yaml] [--key=value ...]

Every report of a Ray Tune trial (one per validation) carries the trainer's ``-last`` checkpoint
(``recbole_metammf/experiments/tune/trial.py``): the trainer writes it, and Ray copies its folder into the
trial's ``checkpoint_<n>``. Per model, with the settings of a side-by-side benchmark
(``properties/benchmark/models.yaml``; ``--key=value`` overrides) and seed 2020, this times ``--repeats`` times,
in one process and alternately, (a) one training epoch and one full-ranking validation, what a trial does
between two reports, and (b) the resume point: the trainer's write of the ``-last`` checkpoint, a copy of its
folder (``shutil.copytree``, what Ray's ``Checkpoint.to_directory`` does on one machine) and the removal of the
written file. It prints the medians, (b) / (a) and the file's size, and appends them to docs/BENCHMARKS.md.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from common import add_report_option, machine, publish, stamp

from recbole_metammf.cmdline import clean_argv, parse_config_files, parse_settings_or_exit
from recbole_metammf.files import md_table

DEFAULT_MODELS = ["MetaMMF_LightGCN", "MetaMMF_GCN", "LightGCN"]


def measure(config_dict, repeats, work):
    r"""Median seconds of (epoch + validation) and of the resume point, and the checkpoint's bytes."""
    from recbole_metammf.pipeline import build_model, build_trainer, load_data, make_config

    config = make_config(config_dict=config_dict, command_line=False)
    data = load_data(config)
    trainer = build_trainer(config, build_model(config, data))
    trainer.eval_collector.data_collect(data.train)
    trainer._fit_started = time.perf_counter()
    trainer.last_checkpoint_file = os.path.join(work, "resume_point", "trial-last.pth")
    trainer._train_epoch(data.train, 0, show_progress=False)  # warm-up: first-call allocations, caches
    epoch_seconds, point_seconds, size = [], [], 0
    for epoch in range(1, repeats + 1):
        start = time.perf_counter()
        trainer._train_epoch(data.train, epoch, show_progress=False)
        trainer._valid_epoch(data.valid, show_progress=False)
        epoch_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        trainer._save_last_checkpoint(epoch, data.train, verbose=False)
        copy = os.path.join(work, f"checkpoint_{epoch:06d}")
        shutil.copytree(os.path.dirname(trainer.last_checkpoint_file), copy)
        size = os.path.getsize(trainer.last_checkpoint_file)
        os.remove(trainer.last_checkpoint_file)
        point_seconds.append(time.perf_counter() - start)
        shutil.rmtree(copy)
    return statistics.median(epoch_seconds), statistics.median(point_seconds), size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="tiktok", help="a dataset RecBole finds (default: tiktok)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="epochs and resume points timed per model (default: 5)")
    parser.add_argument("--config_files", default=None, help="config files, separated by spaces or commas")
    add_report_option(parser)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.repeats < 1:
        parser.error(f"--repeats: got {args.repeats}; expected an integer >= 1")
    overrides = parse_settings_or_exit(parser, rest)
    from recbole_metammf.experiments.benchmark.plan import build_runs

    models = [m for m in args.models.split(",") if m]
    with clean_argv():
        runs = build_runs(args.dataset, models, [2020], overrides, parse_config_files(args.config_files) or [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="resume_point_") as work:
        for run in runs:
            print(f"{run.model}: {args.repeats} x (epoch + validation, resume point) ...", flush=True)
            config_dict = {**run.config_dict, "seed": run.seed, "checkpoint_dir": work, "show_progress": False}
            epoch, point, size = measure(config_dict, args.repeats, work)
            rows.append([run.model, f"{epoch:.3g}", f"{point:.3g}", f"{point / epoch:.3f}", f"{size / 1e6:.3g}"])
    command = f"python bench/resume_point.py --dataset={args.dataset} --models={','.join(models)} --repeats={args.repeats}"
    command += (f" --config_files={args.config_files}" if args.config_files else "") + "".join(f" {item}" for item in rest)
    publish([
        f"### A sweep trial's resume point per report: {args.dataset}",
        "",
        f"`{command}` — {stamp()}, {machine()}. Medians of {args.repeats}, alternately in one process, seed 2020, "
        "settings of properties/benchmark/models.yaml.",
        "",
        md_table(["model", "epoch + validation s", "resume point s", "ratio", "checkpoint MB"], rows),
        "",
    ], args.report)


if __name__ == "__main__":
    main()
