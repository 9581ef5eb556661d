r"""Time adding new items to a trained model and recommending for users (the target: 1,000 new
items and 1,000 users of tiktok under 5 s on 2 cores).

    python bench/new_items.py --checkpoint=saved/MetaMMF_LightGCN-<time>.pth [--items=1000] [--users=1000]

The new items are copies of random catalogue items' raw feature rows (from the dataset's ``.item``
file) with Gaussian noise of 1 % of each field's spread, written to a temporary ``.item`` file. Timed
separately: loading the checkpoint with its data (:func:`load_data_and_model`), adding the items
(:func:`recbole_metammf.cold_start.add_new_items`: reading and checking the file, scaling, extending
the model) and ranking (:func:`recbole_metammf.recommend.recommend_topk`, top-20, for ``--users`` users).
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from common import add_report_option, machine, publish, stamp

from recbole_metammf.cold_start import add_new_items
from recbole_metammf.quick_start import load_data_and_model
from recbole_metammf.recommend import recommend_topk


def write_new_items(dataset, fields, n_items, path, seed=0):
    r"""``n_items`` new items (tokens ``new0``, ``new1``, ...) perturbed from random rows of the dataset's raw ``.item`` file."""
    separator, seq_separator = dataset.config["field_separator"], dataset.config["seq_separator"]
    with open(os.path.join(dataset.dataset_path, f"{dataset.dataset_name}.item"), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split(separator)
        rows = [line.rstrip("\n").split(separator) for line in f if line.strip()]
    names = [column.split(":")[0] for column in header]
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(rows), n_items)
    blocks = []
    for field in fields:
        column = names.index(field)
        block = np.array([rows[i][column].split(seq_separator) for i in picked], dtype=np.float64)
        blocks.append(block + 0.01 * block.std() * rng.normal(size=block.shape))
    with open(path, "w", encoding="utf-8") as f:
        f.write(separator.join([f"{dataset.iid_field}:token"] + [f"{field}:float_seq" for field in fields]) + "\n")
        for k in range(n_items):
            values = [seq_separator.join(f"{x:.6g}" for x in block[k]) for block in blocks]
            f.write(separator.join([f"new{k}"] + values) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a trained model of a feature-based recommender")
    parser.add_argument("--items", type=int, default=1000, help="new items (default: 1000)")
    parser.add_argument("--users", type=int, default=1000, help="users to recommend for (default: 1000)")
    parser.add_argument("--topk", type=int, default=20)
    add_report_option(parser)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    config, model, _, train_data, _, _ = load_data_and_model(args.checkpoint)
    load_seconds = time.perf_counter() - start
    dataset = train_data.dataset
    users = [str(token) for token in dataset.field2id_token[dataset.uid_field][1 : args.users + 1]]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "new.item")
        write_new_items(dataset, model.modalities, args.items, path)
        start = time.perf_counter()
        add_new_items(model, dataset, path)
        add_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ranked = recommend_topk(model, dataset, users, topk=args.topk)
    rank_seconds = time.perf_counter() - start
    with_new = sum(any(item.startswith("new") for item in items) for items in ranked.values())

    publish(
        [
            f"## New items: {config['model']} on {config['dataset']} ({stamp()})",
            "",
            f"{machine()}, {torch.get_num_threads()} threads. `python bench/new_items.py --checkpoint=... "
            f"--items={args.items} --users={args.users}`",
            "",
            "| step | seconds |",
            "| --- | --- |",
            f"| load the checkpoint and its data | {load_seconds:.2f} |",
            f"| add {args.items} new items (read, check, scale, extend the model) | {add_seconds:.2f} |",
            f"| top-{args.topk} for {len(users)} users among {dataset.item_num - 1} items | {rank_seconds:.2f} |",
            f"| add + recommend | {add_seconds + rank_seconds:.2f} |",
            "",
            f"{with_new} of {len(users)} users have a new item in their top-{args.topk}.",
            "",
        ],
        args.report,
    )


if __name__ == "__main__":
    main()
