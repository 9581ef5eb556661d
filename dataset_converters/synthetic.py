r"""Synthetic multimodal data of the paper's shapes, in the MMGCN raw format.

``python -m dataset_converters.synthetic --shape {movielens,tiktok,kwai} --scale S --seed N --dst DIR``
writes ``DIR/train.npy``, ``val.npy``, ``test.npy``, ``user_item_dict.npy`` and the MMGCN feature
files (``FeatureVideo_normal.npy``, ``FeatureAudio_avg_normal.npy``, ``FeatureText_stl_normal.npy``)
with the user / item / interaction counts of the paper's Table 1 times S and its feature widths
(Liu et al., TOIS 2023); ``python -m dataset_converters --format mmgcn --src DIR ...`` converts it.

The generative model:

* every item i has latent factors ``z_i`` (K = 16), a popularity ``b_i`` and a *kind* ``c_i``
  (one of 8);
* modality m of item i is ``w_im * (z_i R_{c_i,m}) P_m + Q_m[c_i] + noise``: the factors pass through
  a rotation ``R`` that depends on the item's kind *and* the modality, scaled by an item-specific
  weight ``w_im`` (Dirichlet over the item's modalities: some items say it all visually, others in
  text). The kind is visible in every modality (``Q_m``). So how the modalities relate to each other
  and to the factors differs from item to item: a fusion whose weights depend on the item (MetaMMF)
  can undo it, one fixed fusion for all items sees only part of it;
* user u has factors ``p_u``; u's items are drawn without replacement from
  ``softmax(alpha * p_u . z_i / sqrt(K) + b_i)`` (Gumbel top-k), per-user counts log-normal
  (at least 3), and every item first gets one user (the best of 8 random ones) so none is empty;
* per user, about 10 % of the items go to validation and 10 % to test (at least one each); the
  item's first-assigned user keeps it in training so that every item is in the training set.

Besides the MMGCN files it writes ``synthetic.json`` (counts, settings) and ``latent.npz`` (the
factors, kinds and modality weights: the ground truth), which the converter ignores.

Deterministic for a seed (the same numbers on any machine with the same numpy).
"""

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

logger = logging.getLogger("dataset_converters")

#: Table 1 of the paper and its feature widths; kwai has no acoustic modality.
SHAPES = {
    "movielens": {"users": 55485, "items": 5986, "interactions": 1239508, "dims": {"v": 2048, "a": 128, "t": 100}},
    "tiktok": {"users": 36656, "items": 76085, "interactions": 726065, "dims": {"v": 128, "a": 128, "t": 128}},
    "kwai": {"users": 7010, "items": 86483, "interactions": 298492, "dims": {"v": 2048, "t": 128}},
}
FEATURE_FILES = {"v": "FeatureVideo_normal.npy", "a": "FeatureAudio_avg_normal.npy", "t": "FeatureText_stl_normal.npy"}

N_FACTORS = 16
N_KINDS = 8
MIN_PER_USER = 3
SEED_CANDIDATES = 8
ALPHA = 2.5  # strength of the user-item affinity against popularity
NOISE = 0.5
KIND_CODE = 0.5
ITEM_CHUNK = 8192  # feature rows generated at a time (fixed: results do not depend on memory)
SCORE_BLOCK = 16_000_000  # user x item scores held at a time


def _counts(shape, scale):
    spec = SHAPES[shape]
    n_users = max(MIN_PER_USER, int(round(spec["users"] * scale)))
    n_items = max(2 * MIN_PER_USER, int(round(spec["items"] * scale)))
    target = int(round(spec["interactions"] * scale))
    return n_users, n_items, target


def _per_user_counts(rng, n_users, n_items, target, seeds_per_user):
    r"""Interactions per user: log-normal, >= MIN_PER_USER and >= the user's seeds, summing to ``target`` if possible."""
    cap = max(MIN_PER_USER, n_items // 2)
    lo = np.maximum(MIN_PER_USER, seeds_per_user)
    feasible_max = int(np.maximum(lo, cap).sum())
    if target > feasible_max or target < lo.sum():
        new = int(min(max(target, lo.sum()), feasible_max))
        logger.warning(
            f"{target} interactions do not fit {n_users} users x {n_items} items "
            f"(at least {MIN_PER_USER} per user, at most half the items each, every item once): generating {new}"
        )
        target = new
    w = rng.lognormal(0.0, 0.8, n_users)
    n = np.maximum(lo, np.minimum(cap, np.floor(w / w.sum() * target).astype(np.int64)))
    hi = np.maximum(lo, cap)
    # move the total onto the target one interaction per chosen user at a time
    for _ in range(10_000):
        diff = target - int(n.sum())
        if diff == 0:
            break
        eligible = np.nonzero(n < hi if diff > 0 else n > lo)[0]
        if len(eligible) == 0:
            break
        pick = rng.choice(eligible, size=min(abs(diff), len(eligible)), replace=False)
        n[pick] += 1 if diff > 0 else -1
    return n


def generate(shape, scale, seed, dst, progress=True):
    r"""Write the MMGCN raw files of a synthetic dataset into ``dst``; returns a summary dict."""
    if shape not in SHAPES:
        raise ValueError(f"--shape: '{shape}'; expected one of {', '.join(SHAPES)}")
    if not scale > 0:
        raise ValueError(f"--scale: {scale}; expected a positive number")
    start = time.time()
    rng = np.random.default_rng(seed)
    n_users, n_items, target = _counts(shape, scale)
    dims = SHAPES[shape]["dims"]
    logger.info(f"synthetic {shape} x {scale}: {n_users} users, {n_items} items, ~{target} interactions, dims {dims}")

    # latent model
    z = rng.standard_normal((n_items, N_FACTORS)).astype(np.float32)
    pop = rng.standard_normal(n_items).astype(np.float32)
    kind = rng.integers(0, N_KINDS, n_items)
    p_user = rng.standard_normal((n_users, N_FACTORS)).astype(np.float32)
    scale_uz = np.float32(ALPHA / np.sqrt(N_FACTORS))

    # every item gets one user: the best-scoring of SEED_CANDIDATES random users
    cand = rng.integers(0, n_users, (n_items, SEED_CANDIDATES))
    cand_score = scale_uz * np.einsum("ick,ik->ic", p_user[cand], z) + rng.gumbel(size=cand.shape).astype(np.float32)
    seed_user = cand[np.arange(n_items), cand_score.argmax(1)]
    seeds_per_user = np.bincount(seed_user, minlength=n_users)
    n_per_user = _per_user_counts(rng, n_users, n_items, target, seeds_per_user)
    extra = n_per_user - np.minimum(seeds_per_user, n_per_user)

    # the rest: Gumbel top-k per user over the items not already his
    order = np.argsort(seed_user, kind="stable")
    seed_start = np.concatenate([[0], np.cumsum(seeds_per_user)])
    users_out, items_out = [], []
    block = max(1, SCORE_BLOCK // n_items)
    bar = tqdm(total=n_users, unit="users", desc="interactions", disable=not progress or n_users * n_items < 50_000_000)
    zt = np.ascontiguousarray(z.T)
    for s in range(0, n_users, block):
        e = min(n_users, s + block)
        k_block = extra[s:e]
        kmax = int(k_block.max())
        if kmax > 0:
            logits = scale_uz * (p_user[s:e] @ zt) + pop
            u01 = rng.random(logits.shape, dtype=np.float32)
            np.maximum(u01, np.float32(1e-12), out=u01)
            logits -= np.log(-np.log(u01))
            sel = order[seed_start[s]:seed_start[e]]
            logits[seed_user[sel] - s, sel] = -np.inf
            top = np.argpartition(-logits, kmax - 1, axis=1)[:, :kmax]
            vals = np.take_along_axis(logits, top, 1)
            top = np.take_along_axis(top, np.argsort(-vals, axis=1, kind="stable"), 1)
            keep = np.arange(kmax)[None, :] < k_block[:, None]
            rows = np.broadcast_to(np.arange(s, e)[:, None], top.shape)
            users_out.append(rows[keep])
            items_out.append(top[keep])
        bar.update(e - s)
    bar.close()
    users = np.concatenate(users_out + [seed_user]).astype(np.int64)
    items = np.concatenate(items_out + [np.arange(n_items)]).astype(np.int64)
    is_seed = np.concatenate([np.zeros(len(users) - n_items), np.ones(n_items)])

    # per-user split: seeds sort last, so they stay in training
    key = rng.random(len(users)) + is_seed
    srt = np.lexsort((key, users))
    users, items = users[srt], items[srt]
    counts = np.bincount(users, minlength=n_users)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(users)) - first[users]
    n_test = np.maximum(1, np.round(0.1 * counts)).astype(np.int64)
    n_val = np.maximum(1, np.round(0.1 * counts)).astype(np.int64)
    split = np.where(rank < n_test[users], 2, np.where(rank < (n_test + n_val)[users], 1, 0))

    os.makedirs(os.path.dirname(os.path.abspath(dst)) or ".", exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".synthetic.tmp-", dir=os.path.dirname(os.path.abspath(dst)))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        tr = split == 0
        offset_items = items + n_users  # MMGCN stores items offset by the user count
        np.save(os.path.join(tmp, "train.npy"), np.stack([users[tr], offset_items[tr]], 1))
        for code, fname in ((1, "val.npy"), (2, "test.npy")):
            m = split == code
            bounds = np.concatenate([[0], np.cumsum(np.bincount(users[m], minlength=n_users))])
            its = offset_items[m]
            lists = np.empty(n_users, dtype=object)
            for u in range(n_users):
                lists[u] = [u] + its[bounds[u]:bounds[u + 1]].tolist()
            np.save(os.path.join(tmp, fname), lists, allow_pickle=True)
        bounds = np.concatenate([[0], np.cumsum(np.bincount(users[tr], minlength=n_users))])
        its = offset_items[tr]
        uid = {u: set(its[bounds[u]:bounds[u + 1]].tolist()) for u in range(n_users)}
        np.save(os.path.join(tmp, "user_item_dict.npy"), np.array(uid, dtype=object), allow_pickle=True)

        # features: item-specific mixing of the factors into each modality
        mods = list(dims)
        weights = rng.dirichlet(np.ones(len(mods)), n_items).astype(np.float32) * len(mods)
        for j, m in enumerate(mods):
            d = dims[m]
            rot = np.linalg.qr(rng.standard_normal((N_KINDS, N_FACTORS, N_FACTORS)))[0].astype(np.float32)
            proj = (rng.standard_normal((N_FACTORS, d)) / np.sqrt(N_FACTORS)).astype(np.float32)
            code = (KIND_CODE * rng.standard_normal((N_KINDS, d))).astype(np.float32)
            out = np.lib.format.open_memmap(os.path.join(tmp, FEATURE_FILES[m]), mode="w+", dtype=np.float32, shape=(n_items, d))
            for s in tqdm(range(0, n_items, ITEM_CHUNK), desc=FEATURE_FILES[m], disable=not progress or n_items * d < 20_000_000):
                e = min(n_items, s + ITEM_CHUNK)
                mixed = np.einsum("ik,ikl->il", z[s:e], rot[kind[s:e]])
                x = (weights[s:e, j:j + 1] * mixed) @ proj + code[kind[s:e]]
                x += NOISE * rng.standard_normal((e - s, d), dtype=np.float32)
                out[s:e] = x
            out.flush()
            del out
        # the ground truth, for diagnostics (the converter ignores it)
        np.savez(
            os.path.join(tmp, "latent.npz"), item_factors=z, item_kind=kind, item_popularity=pop,
            modality_weights=weights, modalities=np.array(mods), user_factors=p_user,
        )
        meta = {
            "shape": shape, "scale": scale, "seed": seed, "users": n_users, "items": n_items,
            "interactions": int(len(users)), "train": int(tr.sum()), "valid": int((split == 1).sum()),
            "test": int((split == 2).sum()), "dims": dims, "item_offset": n_users,
        }
        with open(os.path.join(tmp, "synthetic.json"), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.exists(dst):
            if os.listdir(dst):
                raise FileExistsError(f"{dst}: exists and is not empty")
            os.rmdir(dst)
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta["seconds"] = round(time.time() - start, 2)
    meta["bytes"] = sum(os.path.getsize(os.path.join(dst, f)) for f in os.listdir(dst))
    logger.info(
        f"synthetic {shape}: {n_users} users, {n_items} items, {meta['interactions']} interactions "
        f"(train {meta['train']} / valid {meta['valid']} / test {meta['test']}) in {meta['seconds']} s, "
        f"{meta['bytes'] / 1e6:.1f} MB written to {dst}"
    )
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dataset_converters.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", required=True, choices=list(SHAPES))
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the paper's user/item/interaction counts")
    p.add_argument("--seed", type=int, default=2023)
    p.add_argument("--dst", required=True, help="folder to write the MMGCN raw files into (new or empty)")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    from dataset_converters.__main__ import LOG_DATEFMT, LOG_FORMAT

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    try:
        generate(args.shape, args.scale, args.seed, args.dst, progress=not args.quiet)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
