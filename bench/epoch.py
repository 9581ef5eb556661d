r"""Seconds per training epoch, full-ranking evaluation time and peak memory, model by model, in one run.

    python bench/epoch.py --dataset=tiktok [--models=MetaMMF_MF,MetaMMF_GCN,BPR,LightGCN] [--epochs=3] [--key=value ...]
    python bench/epoch.py --synthetic=tiktok --scale=1 [--work=DIR] [--epochs=1]      # the paper's full TikTok shape

Each model runs in its own child process (so that its peak RSS is its own) with the settings of a
side-by-side benchmark (``properties/benchmark/models.yaml``: one batch size, sampler and learning
rate for all, 64-d embeddings in total; ``--key=value`` overrides): RecBole loads the data, the model
is built, RecBole's trainer trains ``--epochs`` epochs (``_train_epoch``: the BPR sampler, forward,
backward, Adam) and evaluates the validation split once with full ranking over all items.

Figures per model: seconds per training epoch (median over the epochs), evaluation seconds, peak RSS
of the process, peak GPU memory on CUDA; MetaMMF's times also as ratios to BPR's and LightGCN's.
``--synthetic=SHAPE`` first writes the generator's data at ``--scale`` (``python -m
dataset_converters.synthetic``, then the MMGCN converter) into ``--work`` (kept and reused) and saves
RecBole's loaded dataset there (``save_dataset``) for later loads with the same data settings. Everything printed is
appended, with the machine and the date, to docs/BENCHMARKS.md.
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile

from common import REPO_ROOT, add_report_option, machine, publish, run_timed, stamp

from recbole_metammf.cmdline import clean_argv, parse_config_files, parse_settings_or_exit
from recbole_metammf.files import md_table

DEFAULT_MODELS = ["MetaMMF_MF", "MetaMMF_GCN", "BPR", "LightGCN"]
BASELINES = ["BPR", "LightGCN"]  # MetaMMF's times are given as ratios to these


class FirstBatches:
    r"""The first ``n`` batches of a RecBole training loader (everything else is the loader's)."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)

    def __len__(self):
        return min(self.n, len(self.loader))

    def __getattr__(self, name):
        return getattr(self.loader, name)


def profiler_activities(device):
    import torch

    activities = [torch.profiler.ProfilerActivity.CPU]
    return activities + [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else activities


def child(spec):
    r"""One model: load, build, train ``epochs`` epochs, evaluate the validation split; prints JSON."""
    import resource
    import time

    import torch

    from recbole_metammf.pipeline import build_model, build_trainer, load_data, make_config

    def synchronize(device):
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # RecBole's Config would read this process's own arguments
    config = make_config(config_dict=spec["config_dict"], config_file_list=spec["config_files"] or None, command_line=False)
    start = time.perf_counter()
    data = load_data(config)
    dataset, train_data, valid_data = data.dataset, data.train, data.valid
    load_seconds = time.perf_counter() - start

    start = time.perf_counter()
    model = build_model(config, data)
    trainer = build_trainer(config, model)
    build_seconds = time.perf_counter() - start
    device = config["device"]

    epochs = []
    batches = len(train_data)
    timed_data = FirstBatches(train_data, spec["batches"]) if spec["batches"] else train_data
    for epoch in range(spec["epochs"]):
        synchronize(device)
        start = time.perf_counter()
        trainer._train_epoch(timed_data, epoch, show_progress=spec["progress"])
        synchronize(device)
        # with --batches, the epoch's time is extrapolated from the batches timed
        epochs.append((time.perf_counter() - start) * batches / len(timed_data))
    profile = None
    if spec["profile"]:  # one more epoch, not timed: the profiler slows what it records
        with torch.profiler.profile(activities=profiler_activities(device)) as profiler:
            trainer._train_epoch(timed_data, spec["epochs"], show_progress=False)
            synchronize(device)
        sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        profile = profiler.key_averages().table(sort_by=sort_by, row_limit=spec["profile"])
    trainer.eval_collector.data_collect(train_data)  # what fit() does first: item counts of ItemCoverage etc.
    start = time.perf_counter()
    result = trainer.evaluate(valid_data, load_best_model=False, show_progress=spec["progress"])
    synchronize(device)
    eval_seconds = time.perf_counter() - start
    print(json.dumps({
        "model": config["model"],
        "device": str(device),
        "load_seconds": load_seconds,
        "build_seconds": build_seconds,
        "epoch_seconds": epochs,
        "train_batches": batches,
        "eval_seconds": eval_seconds,
        "valid_ndcg@20": result.get("ndcg@20"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "profile": profile,
        "users": dataset.user_num - 1,
        "items": dataset.item_num - 1,
        "interactions": dataset.inter_num,
    }))


def synthetic_dataset(shape, scale, seed, work):
    r"""The generator's ``shape`` at ``scale`` as RecBole atomic files under ``work`` (made once, then reused)."""
    name = f"syn_{shape}"
    atomic = os.path.join(work, "atomic")
    if not os.path.isfile(os.path.join(atomic, name, f"{name}.yaml")):
        raw = os.path.join(work, "raw")
        print(f"writing synthetic {shape} (scale {scale:g}, seed {seed}) to {work}", flush=True)
        run_timed("dataset_converters.synthetic", ["--shape", shape, "--scale", str(scale), "--seed", str(seed), "--dst", raw, "-q"])
        run_timed("dataset_converters", ["--format", "mmgcn", "--src", raw, "--dst", atomic, "--name", name, "-q"])
    return name, atomic, [os.path.join(atomic, name, f"{name}.yaml")]


def seconds(value):
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def ratio(value, base):
    return f"{value / base:.2f}x" if base else "-"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # one model, in the process main() started for it
        child(json.loads(argv[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a dataset RecBole finds (e.g. tiktok, shipped in dataset/)")
    source.add_argument("--synthetic", choices=["tiktok", "kwai", "movielens"], help="the generator's shape")
    parser.add_argument("--scale", type=float, default=1.0, help="with --synthetic: 1 = the paper's Table 1 counts")
    parser.add_argument("--seed", type=int, default=2023, help="with --synthetic: the generator's seed")
    parser.add_argument("--work", default=None, help="with --synthetic: folder for the data (default: a temporary one)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs timed per model (default: 3)")
    parser.add_argument("--batches", type=int, default=None,
                        help="time only the first N batches of each epoch and scale to the whole epoch (slow models at paper scale)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="run one more epoch per model under torch.profiler; report its N costliest operators")
    parser.add_argument("--config_files", default=None, help="config files, separated by spaces or commas")
    parser.add_argument("--progress", action="store_true", help="RecBole's progress bars for each epoch")
    add_report_option(parser)
    args, rest = parser.parse_known_args(argv)

    overrides = parse_settings_or_exit(parser, rest)
    from recbole_metammf.experiments.benchmark.plan import build_runs
    config_files = parse_config_files(args.config_files) or []
    if args.synthetic:
        work = args.work or tempfile.mkdtemp(prefix=f"epoch_{args.synthetic}_")
        dataset, data_path, dataset_files = synthetic_dataset(args.synthetic, args.scale, args.seed, work)
        config_files = dataset_files + config_files
        # RecBole pickles the loaded dataset once and unpickles it for each model
        overrides = {"data_path": data_path, "save_dataset": True, **overrides}
        overrides.setdefault("checkpoint_dir", os.path.join(work, "saved"))
        command = f"python bench/epoch.py --synthetic={args.synthetic} --scale={args.scale:g} --seed={args.seed}"
    else:
        dataset = args.dataset
        command = f"python bench/epoch.py --dataset={dataset}"
    overrides.setdefault("checkpoint_dir", tempfile.mkdtemp(prefix="epoch_saved_"))
    models = [m for m in args.models.split(",") if m]
    if args.models != ",".join(DEFAULT_MODELS):
        command += f" --models={args.models}"
    command += f" --epochs={args.epochs}" + (f" --batches={args.batches}" if args.batches else "")
    command += f" --profile={args.profile}" if args.profile else "" + "".join(f" {item}" for item in rest)

    checkpoint_dir = overrides.pop("checkpoint_dir")  # nothing is saved but RecBole's dataset, if asked
    with clean_argv():
        runs = build_runs(dataset, models, [2020], overrides, config_files)
    rows = []
    for run in runs:
        spec = {"config_dict": {**run.config_dict, "seed": run.seed, "checkpoint_dir": checkpoint_dir}, "config_files": [], "epochs": args.epochs,
                "progress": args.progress, "batches": args.batches,
                "profile": args.profile}
        print(f"{run.model}: {args.epochs} epoch(s) and one evaluation ...", flush=True)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        if out.returncode != 0:
            sys.exit(f"error: {run.model} failed (exit {out.returncode}); its messages are above")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))

    first = rows[0]
    per_model = {row["model"]: row for row in rows}
    epoch_time = {row["model"]: statistics.median(row["epoch_seconds"]) for row in rows}
    on_gpu = any(row["peak_gpu_mb"] is not None for row in rows)
    bases = [base for base in BASELINES if base in per_model]
    header = ["model", "train s/epoch"] + [f"vs {b}" for b in bases] + ["eval s"] + [f"vs {b}" for b in bases]
    header += ["peak RSS (GB)"] + (["peak GPU (GB)"] if on_gpu else []) + ["batches", "parameters", "valid NDCG@20"]
    lines = [
        f"### Epoch: {dataset}" + (f" (synthetic, scale {args.scale:g})" if args.synthetic else ""),
        "",
        f"`{command}` — {stamp()}, {machine()}, device {first['device']}.",
        f"{first['users']:,} users, {first['items']:,} items, {first['interactions']:,} interactions; "
        f"settings of properties/benchmark/models.yaml (train_batch_size {runs[0].config_dict.get('train_batch_size')}); "
        f"{args.epochs} epoch(s) timed per model (median shown"
        + (f"; each epoch's time extrapolated from its first {args.batches} batches" if args.batches else "")
        + "), then one full-ranking evaluation of the validation split.",
        "",
    ]
    table = []
    for row in rows:
        model = row["model"]
        cells = [model, seconds(epoch_time[model])] + [ratio(epoch_time[model], epoch_time[b]) for b in bases]
        cells += [seconds(row["eval_seconds"])] + [ratio(row["eval_seconds"], per_model[b]["eval_seconds"]) for b in bases]
        cells += [f"{row['peak_rss_mb'] / 1024:.2f}"] + ([f"{(row['peak_gpu_mb'] or 0) / 1024:.2f}"] if on_gpu else [])
        cells += [str(row["train_batches"]), f"{row['parameters']:,}", f"{row['valid_ndcg@20']:.4f}"]
        table.append(cells)
    lines += [md_table(header, table), "", "epochs (s): " + "; ".join(
        f"{row['model']} " + ", ".join(seconds(s) for s in row["epoch_seconds"]) for row in rows
    ) + "; data load (s): " + ", ".join(f"{row['model']} {row['load_seconds']:.1f}" for row in rows)
        + "; model and trainer built (s): " + ", ".join(f"{row['model']} {row['build_seconds']:.1f}" for row in rows), ""]
    for row in rows:
        if row["profile"]:
            lines += [f"torch.profiler, {row['model']}, one more epoch (not timed above):", "", "```", row["profile"].rstrip(), "```", ""]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
