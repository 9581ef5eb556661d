r"""MovieLens-100K as RecBole bundles it, with item text and category features: a second real dataset, offline.

    python -m dataset_converters.movielens --dst dataset --name ml100k [--seed 2020] [--text-dim 64]

The project tunes nothing on this data; it is here so that a choice made on tiktok's validation split can be
checked on real data of another kind (films, dense ratings, text instead of video and audio) before it becomes a
default. Source: ``recbole/dataset_example/ml-100k`` of the installed RecBole (943 users, 1,682 items, 100,000
ratings), so it needs no download. Written as a RecBole dataset with a fixed split, like the converters' output:

* interactions: every rating is one implicit interaction; per user, a seeded random 80 / 10 / 10 split into
  train / valid / test (every ML-100K user has at least 20 ratings, so each gets validation and test items);
* ``t_feat``: the title's text, TF-IDF over its words and character 3-5-grams, reduced to ``--text-dim``
  dimensions by truncated SVD (latent semantic analysis) and scaled to unit length per item, as sentence
  embeddings are (no pretrained language model is reachable offline; this is the classic text embedding
  scikit-learn provides);
* ``c_feat``: a small categorical vector, the 19 genre flags of the film plus a one-hot of its release decade.
"""

import argparse
import logging
import os
import sys

import numpy as np

from dataset_converters.converted import SPLITS, ConversionError, Converted, Part

logger = logging.getLogger("dataset_converters")

SPLIT_RATIOS = (0.8, 0.1, 0.1)


def recbole_ml100k():
    r"""The folder of RecBole's bundled ml-100k atomic files."""
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


def _read_table(path, columns):
    import pandas as pd

    if not os.path.exists(path):
        raise ConversionError(f"{path}: file not found (RecBole's bundled ml-100k; is recbole installed in full?)")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.split(":")[0] for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConversionError(f"{path}: header {list(df.columns)} lacks {missing}")
    return df


def split_per_user(users, rng, ratios=SPLIT_RATIOS):
    r"""A label 0 / 1 / 2 (train / valid / test) per interaction: each user's interactions shuffled and cut by ``ratios``."""
    labels = np.zeros(len(users), dtype=np.int64)
    order = np.argsort(users, kind="stable")
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    for rows in np.split(order, bounds):
        rows = rng.permutation(rows)
        n_valid = max(1, int(round(len(rows) * ratios[1])))
        n_test = max(1, int(round(len(rows) * ratios[2])))
        labels[rows[len(rows) - n_valid - n_test:len(rows) - n_test]] = 1
        labels[rows[len(rows) - n_test:]] = 2
    return labels


def text_features(texts, dim, seed):
    r"""TF-IDF (words and character 3-5-grams) -> truncated SVD to ``dim`` -> unit length per row."""
    from scipy.sparse import hstack
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b").fit_transform(texts)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit_transform(texts)
    tfidf = hstack([words, chars]).tocsr()
    if dim >= min(tfidf.shape):
        raise ConversionError(f"--text-dim: {dim}; expected fewer than {min(tfidf.shape)} (the TF-IDF matrix is {tfidf.shape[0]} x {tfidf.shape[1]})")
    reduced = TruncatedSVD(n_components=dim, random_state=seed).fit_transform(tfidf)
    return normalize(reduced).astype(np.float32)


def category_features(genres, years):
    r"""Genre flags (one column per genre seen) and a one-hot of the release decade (a column for unknown)."""
    names = sorted({g for gs in genres for g in gs.split()})
    flags = np.array([[g in gs.split() for g in names] for gs in genres], dtype=np.float32)
    decades = [int(y) // 10 * 10 if y.isdigit() else None for y in years]
    known = sorted({d for d in decades if d is not None})
    onehot = np.zeros((len(years), len(known) + 1), dtype=np.float32)
    for row, d in enumerate(decades):
        onehot[row, known.index(d) if d is not None else len(known)] = 1.0
    return np.hstack([flags, onehot])


def read(src, seed=2020, text_dim=64):
    r"""RecBole's ml-100k atomic files -> :class:`Converted` with a fixed per-user split and ``t_feat`` / ``c_feat``."""
    inter_path = os.path.join(src, "ml-100k.inter")
    item_path = os.path.join(src, "ml-100k.item")
    inter = _read_table(inter_path, ["user_id", "item_id"])
    item = _read_table(item_path, ["item_id", "movie_title", "release_year", "class"])
    user_ids = sorted(set(inter["user_id"]), key=int)
    item_ids = sorted(set(inter["item_id"]), key=int)
    missing = sorted(set(item_ids) - set(item["item_id"]), key=int)
    if missing:
        raise ConversionError(f"{item_path}: no row for item_id {missing[:10]} (rated in {inter_path})")
    uid = {u: k for k, u in enumerate(user_ids)}
    iid = {i: k for k, i in enumerate(item_ids)}
    users = inter["user_id"].map(uid).to_numpy(dtype=np.int64)
    items = inter["item_id"].map(iid).to_numpy(dtype=np.int64)
    labels = split_per_user(users, np.random.default_rng(seed))
    lines = np.arange(2, len(inter) + 2)
    parts = {s: Part(users[labels == k], items[labels == k], inter_path, rows=lines[labels == k], row_label="line")
             for k, s in enumerate(SPLITS)}
    item = item.drop_duplicates("item_id").set_index("item_id").loc[item_ids]
    titles = item["movie_title"].tolist()
    features = {
        "t_feat": (text_features(titles, text_dim, seed), item_path + " (movie_title)"),
        "c_feat": (category_features(item["class"].tolist(), item["release_year"].tolist()), item_path + " (class, release_year)"),
    }
    for fld, (arr, where) in features.items():
        logger.info(f"{fld}: {where}, {arr.shape[0]} items x {arr.shape[1]}")
    return Converted(
        n_users=len(user_ids), n_items=len(item_ids), parts=parts, features=features,
        sources=["ml-100k.inter", "ml-100k.item"], src_name="recbole/dataset_example/ml-100k",
    )


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dataset_converters.movielens", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dst", required=True, help="folder to write the dataset folder NAME into (e.g. dataset)")
    p.add_argument("--name", default="ml100k")
    p.add_argument("--seed", type=int, default=2020, help="seed of the split and of the SVD (default 2020)")
    p.add_argument("--text-dim", type=int, default=64, help="dimensions of the title's text embedding (default 64)")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    from dataset_converters import writer
    from dataset_converters.__main__ import run_command

    def convert():
        if args.text_dim < 1:
            raise ConversionError(f"--text-dim: {args.text_dim}; expected a positive integer")
        writer.check_name(args.name)
        writer.check_dst(args.dst, args.name)  # fail before the work, not after it
        conv = read(recbole_ml100k(), seed=args.seed, text_dim=args.text_dim)
        # recorded in the yaml; no paths, so that a conversion reads the same wherever it ran
        command = f"python -m dataset_converters.movielens --dst DST --name {args.name} --seed {args.seed} --text-dim {args.text_dim}"
        writer.write_dataset(conv, args.dst, args.name, command=command)

    return run_command(convert, args.quiet)


if __name__ == "__main__":
    sys.exit(main())
