r"""The paper's analyses that need no training loop: parameter counts, plots and the t-SNE of Fig. 4.

Used by :mod:`recbole_metammf.experiments.benchmark` (``run_benchmark.py``):

* :func:`tower_parameters` — parameters of a meta fusion tower (Eq. 12) with ``T`` full or CP (Table 4),
  counted from :class:`~recbole_metammf.model.layers.MetaFusionTower` itself on PyTorch's ``meta``
  device (no memory, no data); :func:`fusion_tower_parameters` — the same counts of a built model's tower.
* :func:`plot_valid_curves` (Fig. 6), :func:`plot_against` (Fig. 5) — matplotlib PNGs.
* :func:`tsne_of_checkpoint`, :func:`plot_tsne` (Fig. 4) — the final representations of a few sampled
  users and their test items, embedded in 2-D by scikit-learn's t-SNE, coloured by user, with the
  mean silhouette coefficient (users as cluster labels).
"""

import inspect
import os

import numpy as np
import torch

from recbole_metammf.model.layers import MetaFusionTower

def _count(module):
    return sum(p.numel() for p in module.parameters())


def tower_parameters(in_dim, fusion_layers, d_s, cp_rank):
    r"""Parameters of ``MetaFusionTower(in_dim, fusion_layers, d_s, cp_rank, ...)``: ``meta_learner``
    (the tensors ``T`` or their CP factors, the per-item part), ``static`` (the shared ``W``) and ``tower``
    (both). Built on the ``meta`` device: the full MovieLens tensor (15 M floats) is never allocated."""
    with torch.device("meta"):
        with_static = MetaFusionTower(in_dim, list(fusion_layers), d_s, cp_rank, True, 0.0)
        meta_only = MetaFusionTower(in_dim, list(fusion_layers), d_s, cp_rank, False, 0.0)
    tower, meta = _count(with_static), _count(meta_only)
    return {"meta_learner": meta, "static": tower - meta, "tower": tower}


def movielens_meta_parameters(ranks, in_dim=2276, fusion_layers=(1024, 512, 256, 32), d_s=5):
    r"""Table 4's parameter comparison at the paper's MovieLens tower: one row per rank (0 = full
    tensor), with the meta-learner's share of the full tensor's."""
    full = tower_parameters(in_dim, fusion_layers, d_s, 0)["meta_learner"]
    rows = []
    for rank in ranks:
        counts = tower_parameters(in_dim, fusion_layers, d_s, rank)
        rows.append({"cp_rank": rank, **counts, "meta_learner_vs_full": counts["meta_learner"] / full})
    return rows


def fusion_tower_parameters(model):
    r"""The parameter counts of ``model``'s meta fusion tower (a MetaMMF model, trained or not), as
    :func:`tower_parameters` gives them, with its input width and layer widths; None for a model
    without a meta fusion tower."""
    tower = next((module for module in model.modules() if isinstance(module, MetaFusionTower)), None)
    if tower is None:
        return None
    static = sum(layer.weight.numel() for layer in tower.layers if layer.weight is not None)
    total = _count(tower)
    return {
        "in_dim": tower.layers[0].in_dim,
        "fusion_layers": [layer.out_dim for layer in tower.layers],
        "meta_learner": total - static,
        "static": static,
        "tower": total,
    }


# ---------------------------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)


def plot_valid_curves(curves, valid_metric, path, floors=None):
    r"""Fig. 6: the validation metric after each epoch. ``curves``: label -> list of per-seed curves,
    each a list of ``(epoch, value)``; one colour per label, the mean over seeds as a thick line (over
    the epochs every seed reached) and each seed as a thin one. ``floors``: label -> value, drawn as a
    dashed horizontal line (Pop, which does not train by epochs)."""
    plt = _pyplot()
    many = len(curves) > 10  # tab10 would repeat colours: tab20, and a second line style past 10
    fig, ax = plt.subplots(figsize=(9 if many else 7, 4.5))
    colours = plt.get_cmap("tab20" if many else "tab10")
    for n, (label, seed_curves) in enumerate(curves.items()):
        colour = colours(n % colours.N)
        style = "--" if many and n % 2 else "-"
        for curve in seed_curves:
            if curve:
                epochs, values = zip(*curve)
                ax.plot([e + 1 for e in epochs], values, color=colour, alpha=0.25, linewidth=0.6, linestyle=style)
        length = min((len(c) for c in seed_curves if c), default=0)
        if length:
            mean = np.mean([[v for _, v in c[:length]] for c in seed_curves if c], axis=0)
            epochs = [e + 1 for e, _ in seed_curves[0][:length]]
            ax.plot(epochs, mean, color=colour, linewidth=2, linestyle=style, marker="o", markersize=3, label=label)
    for label, value in (floors or {}).items():
        ax.axhline(value, color="black", linestyle=":", linewidth=1.5, label=f"{label} (floor)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {valid_metric}")
    ax.set_title(f"Convergence: validation {valid_metric} per epoch")
    ax.grid(alpha=0.3)
    if many:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_against(points, key, metrics, path):
    r"""Fig. 5: test metrics against the value of an override ``key`` (e.g. ``cp_rank``).
    ``points``: model -> list of ``(value, {metric: (mean, std)})``."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for model, rows in points.items():
            rows = sorted(rows, key=lambda row: (str(type(row[0])), row[0]))
            xs = [row[0] for row in rows]
            means = [row[1][metric][0] for row in rows]
            stds = [row[1][metric][1] if np.isfinite(row[1][metric][1]) else 0.0 for row in rows]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=model)
        values = sorted({x for rows in points.values() for x, _ in rows}, key=str)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in values):
            values = sorted(values)
            ax.set_xscale("log", base=2)
            ax.minorticks_off()
            ax.set_xticks(values, [str(x) for x in values])
        ax.set_xlabel(key)
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Test metrics against {key} (mean ± std over seeds)")
    fig.tight_layout()  # the second panel's y label would overlap the first panel's tick labels
    _save(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- t-SNE


class RepresentationsUnavailable(ValueError):
    r"""The model exposes no final user / item representations this module knows how to read."""


@torch.no_grad()
def final_representations(model):
    r"""``(users, items)`` final representations of a trained model, in eval mode: the plugin's
    ``all_representations()``; else a ``forward()`` that takes no arguments and returns both (RecBole's
    LightGCN, NGCF); else the ``user_embedding`` / ``item_embedding`` tables (RecBole's BPR)."""
    model.eval()
    found = None
    if hasattr(model, "all_representations"):
        found = model.all_representations()[:2]
    elif not [
        p
        for p in inspect.signature(model.forward).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]:
        output = model.forward()  # RecBole's Pop has one too, returning None
        if isinstance(output, (tuple, list)) and len(output) >= 2 and all(torch.is_tensor(t) for t in output[:2]):
            found = output[:2]
    if found is None and hasattr(model, "user_embedding") and hasattr(model, "item_embedding"):
        found = model.user_embedding.weight, model.item_embedding.weight
    if found is None:
        raise RepresentationsUnavailable(
            f"{type(model).__name__}: no all_representations(), forward() returning (users, items) or "
            "user_embedding / item_embedding to read final representations from"
        )
    users, items = found
    return users.detach().float().cpu().numpy(), items.detach().float().cpu().numpy()


def sample_users(test_dataset, n_users, seed, min_items=2):
    r"""Tokens of ``n_users`` users drawn at random (generator ``seed``) among those with at least
    ``min_items`` test items (fewer if not enough users have that many), and each one's test item ids."""
    uid_field, iid_field = test_dataset.uid_field, test_dataset.iid_field
    uids = test_dataset.inter_feat[uid_field].numpy()
    iids = test_dataset.inter_feat[iid_field].numpy()
    items = {}
    for u, i in zip(uids, iids):
        items.setdefault(int(u), []).append(int(i))
    for threshold in range(min_items, 0, -1):
        candidates = sorted(
            (str(test_dataset.id2token(uid_field, u)), u) for u, its in items.items() if len(its) >= threshold
        )
        if len(candidates) >= n_users:
            break
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(candidates), size=min(n_users, len(candidates)), replace=False)
    return [(candidates[k][0], items[candidates[k][1]]) for k in sorted(chosen)]


def tsne_points(users, items, sampled):
    r"""Points (each sampled user, then that user's test items), their user labels and which are users."""
    points, labels, is_user = [], [], []
    for n, (uid, item_ids) in enumerate(sampled):
        points.append(users[uid])
        labels.append(n)
        is_user.append(True)
        for item in item_ids:
            points.append(items[item])
            labels.append(n)
            is_user.append(False)
    return np.asarray(points), np.asarray(labels), np.asarray(is_user)


def tsne_of_checkpoint(checkpoint, n_users=10, seed=2020):
    r"""Fig. 4 for one trained model: rebuild it from ``checkpoint``, take the final representations of
    ``n_users`` sampled users and their test items, embed them with t-SNE and score the clusters.

    Returns a dict: ``coordinates`` (2-D), ``labels`` (user index), ``is_user``, ``users`` (tokens),
    ``silhouette_tsne`` (mean silhouette coefficient of the 2-D embedding, users as clusters — what the
    figure shows), ``silhouette_items_tsne`` (the same over the items alone: do a user's test items lie
    together, whatever the distance between the user and item regions of inner-product models) and
    ``silhouette_cosine`` (all points, in the representation space, cosine distance)."""
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    from recbole_metammf.quick_start import load_data_and_model

    config, model, dataset, _, _, test_data = load_data_and_model(checkpoint)
    users, items = final_representations(model)
    test_dataset = test_data._dataset
    sampled = sample_users(test_dataset, n_users, seed)
    sampled_ids = [(int(test_dataset.token2id(test_dataset.uid_field, token)), its) for token, its in sampled]
    points, labels, is_user = tsne_points(users, items, sampled_ids)
    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3.0)))
    # a few hundred points at most: the exact gradient is cheaper than Barnes-Hut's threads there
    method = "exact" if len(points) <= 1000 else "barnes_hut"
    coordinates = TSNE(
        n_components=2, perplexity=perplexity, init="pca", method=method, random_state=seed
    ).fit_transform(points)
    several = 1 < len(set(labels.tolist())) < len(points)
    items_only = ~is_user
    several_items = 1 < len(set(labels[items_only].tolist())) < int(items_only.sum())
    return {
        "model": config["model"],
        "coordinates": coordinates.tolist(),
        "labels": labels.tolist(),
        "is_user": is_user.tolist(),
        "users": [token for token, _ in sampled],
        "n_points": int(len(points)),
        "perplexity": perplexity,
        "silhouette_tsne": float(silhouette_score(coordinates, labels)) if several else float("nan"),
        "silhouette_cosine": float(silhouette_score(points, labels, metric="cosine")) if several else float("nan"),
        "silhouette_items_tsne": (
            float(silhouette_score(coordinates[items_only], labels[items_only])) if several_items else float("nan")
        ),
    }


def plot_tsne(results, path):
    r"""Fig. 4: one panel per model (``results``: label -> :func:`tsne_of_checkpoint` output); users are
    stars, their test items dots of the same colour; the panel title gives the silhouette coefficient."""
    plt = _pyplot()
    ncols = min(len(results), 5)  # rows of at most 5 panels
    nrows = -(-len(results) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    colours = plt.get_cmap("tab20")
    for ax, (label, result) in zip(axes.flat, results.items()):
        xy = np.asarray(result["coordinates"])
        labels, is_user = np.asarray(result["labels"]), np.asarray(result["is_user"], dtype=bool)
        for n in sorted(set(labels.tolist())):
            colour = colours(n % 20)
            item_rows, user_rows = (labels == n) & ~is_user, (labels == n) & is_user
            ax.scatter(xy[item_rows, 0], xy[item_rows, 1], s=18, color=colour, alpha=0.8)
            ax.scatter(xy[user_rows, 0], xy[user_rows, 1], s=140, color=colour, marker="*", edgecolors="black")
        ax.set_title(f"{label}\nsilhouette {result['silhouette_tsne']:.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("t-SNE of sampled users (stars) and their test items (dots), coloured by user", fontsize=10, y=1.0)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)

