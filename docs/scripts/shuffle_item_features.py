r"""A control dataset for "do the features carry the gain?": a copy of a RecBole dataset whose items keep their
ids and interactions but wear another item's features (one seeded permutation of the .item rows' feature
columns, the same for every modality, so each item gets a real item's whole feature set and the features'
distribution is unchanged; only the link between an item and its own content is cut).

    python docs/scripts/shuffle_item_features.py --src dataset/tiktok --dst dataset --name tiktok_shuffled
    python run_benchmark.py --dataset=tiktok_shuffled --config_files=dataset/tiktok_shuffled/tiktok_shuffled.yaml ...

A model whose score is the same on the copy does not use what the features say about each item.
"""

import argparse
import os
import shutil
import sys

import numpy as np


def shuffled_copy(src, dst, name, seed=0):
    source = os.path.basename(os.path.normpath(src))
    target = os.path.join(dst, name)
    if os.path.exists(target):
        sys.exit(f"error: {target} exists; remove it or choose another --name")
    files = sorted(os.listdir(src))
    item_file = f"{source}.item"
    if item_file not in files:
        sys.exit(f"error: {src} has no {item_file}")
    with open(os.path.join(src, item_file), encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    rows = [row.split("\t") for row in rows if row]
    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = [[row[0], *rows[j][1:]] for row, j in zip(rows, order)]  # the id stays, the features move
    os.makedirs(target)
    for file in files:
        if not file.startswith(source + "."):
            continue
        out = os.path.join(target, name + file[len(source):])
        if file == item_file:
            with open(out, "w", encoding="utf-8") as f:
                f.write("\n".join([header, *("\t".join(row) for row in shuffled)]) + "\n")
        elif file.endswith(".yaml"):
            with open(os.path.join(src, file), encoding="utf-8") as f:
                text = f.read()
            with open(out, "w", encoding="utf-8") as f:
                f.write(f"# {name}: {source} with each item's features replaced by another item's "
                        f"(docs/scripts/shuffle_item_features.py, seed {seed})\n" + text)
        else:
            shutil.copyfile(os.path.join(src, file), out)
    moved = float(np.mean(order != np.arange(len(rows))))
    print(f"{target}: {len(rows)} items, {moved:.1%} wear another item's features (seed {seed})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="a dataset folder, e.g. dataset/tiktok")
    parser.add_argument("--dst", default="dataset", help="folder to write NAME/ into (default dataset)")
    parser.add_argument("--name", required=True, help="name of the copy, e.g. tiktok_shuffled")
    parser.add_argument("--seed", type=int, default=0, help="seed of the permutation (default 0)")
    args = parser.parse_args(argv)
    shuffled_copy(args.src, args.dst, args.name, args.seed)


if __name__ == "__main__":
    main()
