r"""How long a paper-scale dataset takes from the synthetic generator to a loaded RecBole dataset.

    python bench/dataset_load.py --shape tiktok --scale 1 [--work DIR] [--seed 2023]

Four steps, each timed (wall seconds) and with the peak RSS of the process that ran it:

1. generate: ``python -m dataset_converters.synthetic`` (MMGCN raw files);
2. convert: ``python -m dataset_converters --format mmgcn`` (RecBole atomic files, ``float_seq`` text);
3. first load: RecBole's ``create_dataset`` from the atomic files with ``save_dataset: True`` (it
   parses the text, then pickles the loaded dataset); the time spent parsing the ``.item`` file is
   reported on its own (RecBole's ``Dataset._load_feat`` for the item file);
4. saved load: ``create_dataset`` again, which finds the saved dataset and unpickles it.

It prints the figures and appends them, with the machine and the date, to docs/BENCHMARKS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from common import REPO_ROOT, add_report_option, machine, publish, run_timed, stamp


LOAD_CHILD = r"""
import json, resource, sys, time
from recbole.data import create_dataset
from recbole.data.dataset import Dataset
from recbole.utils import FeatureSource
from recbole_metammf.config import Config

name, data_path, checkpoint_dir = sys.argv[1:4]
config = Config(model="MetaMMF_MF", dataset=name, config_file_list=[f"{data_path}/{name}/{name}.yaml"],
                config_dict={"data_path": data_path, "checkpoint_dir": checkpoint_dir, "save_dataset": True})
item_seconds = []
load_feat = Dataset._load_feat

def timed_load_feat(self, filepath, source):  # measurement only: the item file's share of the load
    start = time.perf_counter()
    result = load_feat(self, filepath, source)
    if source == FeatureSource.ITEM:
        item_seconds.append(time.perf_counter() - start)
    return result

Dataset._load_feat = timed_load_feat
start = time.perf_counter()
dataset = create_dataset(config)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "item_parse_seconds": sum(item_seconds), "users": dataset.user_num - 1,
                  "items": dataset.item_num - 1, "interactions": dataset.inter_num,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def load_once(name, data_path, checkpoint_dir):
    out = subprocess.run(
        [sys.executable, "-c", LOAD_CHILD, name, data_path, checkpoint_dir],
        check=True, cwd=REPO_ROOT, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", required=True, choices=["movielens", "tiktok", "kwai"])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=2023)
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary folder)")
    add_report_option(parser)
    args = parser.parse_args(argv)

    work = args.work or tempfile.mkdtemp(prefix=f"load_{args.shape}_")
    raw, atomic, saved = (os.path.join(work, part) for part in ("raw", "atomic", "saved"))
    name = f"syn_{args.shape}"
    rows = []
    seconds, peak = run_timed("dataset_converters.synthetic", ["--shape", args.shape,
                               "--scale", str(args.scale), "--seed", str(args.seed), "--dst", raw, "-q"])
    rows.append(("generate (MMGCN raw files)", seconds, peak))
    seconds, peak = run_timed("dataset_converters", ["--format", "mmgcn", "--src", raw,
                               "--dst", atomic, "--name", name, "-q"])
    rows.append(("convert to atomic files", seconds, peak))
    item_mb = os.path.getsize(os.path.join(atomic, name, f"{name}.item")) / 1e6
    first = load_once(name, atomic, saved)
    rows.append((f"first RecBole load (of which .item parsing {first['item_parse_seconds']:.1f} s)",
                 first["seconds"], first["peak_rss_mb"]))
    again = load_once(name, atomic, saved)
    rows.append(("RecBole load from the saved dataset (save_dataset)", again["seconds"], again["peak_rss_mb"]))

    saved_mb = sum(os.path.getsize(os.path.join(saved, f)) for f in os.listdir(saved)) / 1e6
    lines = [
        f"### Dataset load: synthetic {args.shape}, scale {args.scale:g}",
        "",
        f"`python bench/dataset_load.py --shape {args.shape} --scale {args.scale:g} --seed {args.seed}` — "
        f"{stamp()}, {machine()}.",
        f"{first['users']:,} users, {first['items']:,} items, {first['interactions']:,} interactions; "
        f"`.item` {item_mb:,.0f} MB of text, saved dataset {saved_mb:,.0f} MB.",
        "",
        "| step | seconds | peak RSS (MB) |",
        "| --- | --- | --- |",
    ] + [f"| {step} | {sec:.1f} | {mb:,.0f} |" for step, sec, mb in rows] + [
        "",
        f"speed-up of the saved load over the first load: {first['seconds'] / again['seconds']:.1f}x",
        "",
    ]
    publish(lines, args.report)


if __name__ == "__main__":
    main()
