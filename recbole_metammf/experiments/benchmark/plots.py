r"""The figures of a benchmark: validation curves (Fig. 6), test metrics against a preset's key (Fig. 5) and
the t-SNE of sampled users and their test items (Fig. 4); drawn by :mod:`recbole_metammf.analysis`."""

import logging
import os
import re

from recbole_metammf import analysis
from recbole_metammf.experiments.benchmark import FLOOR_MODEL
from recbole_metammf.cmdline import clean_argv
from recbole_metammf.experiments.benchmark.plan import short_metric
from recbole_metammf.experiments.benchmark.summary import mean_std, test_values, valid_values
from recbole_metammf.files import write_json


def plot_curves(groups, output_dir):
    valid_metric = next((r["valid_metric"] for g in groups.values() for r in g["records"]), "ndcg@20")
    curves = {
        label: [[(epoch, values.get(valid_metric)) for epoch, values in r["valid_curve"] if values.get(valid_metric) is not None]
                for r in g["records"]]
        for label, g in groups.items() if g["records"] and g["model"] != FLOOR_MODEL
    }
    floors = {
        label: mean_std(list(valid_values(g).values()))[0]
        for label, g in groups.items() if g["records"] and g["model"] == FLOOR_MODEL
    }
    path = os.path.join(output_dir, "valid_curves.png")
    analysis.plot_valid_curves(curves, short_metric(valid_metric), path, floors=floors)
    return path


def plot_preset_axis(groups, key, output_dir, metrics=("recall@20", "ndcg@20")):
    points = {}
    for group in groups.values():
        if key not in group["overrides"] or not group["records"]:
            continue
        cells = {m: mean_std(list(test_values(group, m).values())) for m in metrics}
        points.setdefault(group["model"], []).append((group["overrides"][key], cells))
    if not points:
        return None
    path = os.path.join(output_dir, f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', key)}.png")
    analysis.plot_against(points, key, [m for m in metrics], path)
    return path


def run_tsne(groups, output_dir, n_users=10, seed=2020):
    r"""Fig. 4 for the first seed's run of every label (models without readable representations are
    skipped with a warning); writes ``tsne.png`` and ``tsne.json`` (silhouette per label)."""
    logger = logging.getLogger()
    results = {}
    for label, group in groups.items():
        if not group["records"] or not group["records"][0].get("checkpoint"):
            continue
        record = group["records"][0]
        with clean_argv():
            try:
                result = analysis.tsne_of_checkpoint(os.path.join(output_dir, record["checkpoint"]), n_users, seed)
            except analysis.RepresentationsUnavailable as error:
                logger.warning(f"t-SNE: {label} skipped: {error}")
                continue
        results[label] = {"run_id": record["run_id"], "seed": record["seed"], **result}
    if results:
        analysis.plot_tsne(results, os.path.join(output_dir, "tsne.png"))
    write_json(os.path.join(output_dir, "tsne.json"), results)
    return results
