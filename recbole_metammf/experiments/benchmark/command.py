r"""The benchmark command: plan the runs, run what is not finished, and write the tables, the plots and
``summary.md`` (the report, with the machine and the command) to the output folder."""

import datetime
import json
import logging
import os

from recbole_metammf.experiments.benchmark import DEFAULT_MODELS, FIRST_SEED, FLOOR_MODEL
from recbole_metammf.experiments.benchmark.plan import build_runs, check_runs, load_preset
from recbole_metammf.experiments.benchmark.plots import plot_curves, plot_preset_axis, run_tsne
from recbole_metammf.experiments.benchmark.run import run_all
from recbole_metammf.experiments.benchmark.summary import (
    MIN_COVERAGE,
    comparison_tables,
    diagnosis_tables,
    efficiency_tables,
    fmt_number,
    group_records,
    movielens_table,
    runs_csv,
    twin_tables,
    variant_comparison_tables,
    variant_tables,
)
from recbole_metammf.files import atomic_write_text, make_output_dir, md_table, write_json
from recbole_metammf.utils import PROPERTIES_DIR


def benchmark(dataset, models=None, seeds=(FIRST_SEED,), output_dir="benchmark", overrides=None, config_files=None,
              preset=None, plot_tsne=False, tsne_users=10, command=None, progress=True):
    r"""Run (or resume) a benchmark and write its tables and plots to ``output_dir``.

    Returns a dict with ``runs`` (the :class:`RunSpec` list), ``records`` (by run id), ``failures``,
    ``comparison`` (Table 2 rows; None with a preset) and the written ``files``."""
    logger = logging.getLogger()
    preset = load_preset(preset) if isinstance(preset, str) else preset
    models = list(models or (preset or {}).get("models") or DEFAULT_MODELS)
    floor = FLOOR_MODEL if preset and preset.get("floor", True) else None  # a preset's variants beside the floor
    runs = build_runs(dataset, models, list(seeds), overrides, config_files, preset, floor=floor)
    settings = check_runs(runs)
    make_output_dir(output_dir)
    records, failures = run_all(runs, output_dir, progress=progress, settings=settings)

    groups = group_records(runs, records)
    files = {}
    sections = []
    title = preset["title"] if preset else f"Benchmark on {dataset}"
    n_finished = sum(len(g["records"]) for g in groups.values())
    machines = sorted({json.dumps(r["machine"], sort_keys=True) for g in groups.values() for r in g["records"]})
    stopping = sorted({(r["config"].get("valid_metric"), r["config"]["stopping_step"])
                       for g in groups.values() for r in g["records"] if "stopping_step" in r.get("config", {})})
    header = [
        f"# {title}",
        "",
        f"- command: `{command}`" if command else None,
        f"- dataset: `{dataset}`; seeds: {', '.join(map(str, seeds))}; runs finished: {n_finished} of {len(runs)}",
        f"- written: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        *[f"- machine: {', '.join(f'{k} {v}' for k, v in json.loads(m).items())}" for m in machines],
        *[f"- early stopping: validation {metric}, patience {patience} epochs (`stopping_step`)"
          for metric, patience in stopping],
        "- settings shared by every model: `properties/overall.yaml` and `properties/benchmark/models.yaml`"
        + (f"; variants from `{os.path.relpath(preset['path'], os.path.dirname(PROPERTIES_DIR))}`" if preset else ""),
    ]
    sections.append("\n".join(line for line in header if line is not None))

    table_rows = None
    if preset:
        md, csv_table = variant_tables(groups)
        sections.append(f"## Test results (mean ± std over seeds)\n\n{md}")
        comparison_md, comparison_csv = variant_comparison_tables(groups)
        if comparison_md:
            sections.append(
                "## Each variant against its model's first variant (paired over seeds)\n\n" + comparison_md + "\n\n"
                "*valid (selection)*: the best validation score, what a variant is chosen by; the test rows are for "
                "the record. *change*: (variant − reference) / reference; *p-value*: paired t-test "
                "(`scipy.stats.ttest_rel`) over the seeds both ran (— with fewer than 2)."
            )
            atomic_write_text(os.path.join(output_dir, "variants.csv"), comparison_csv)
            files["variants.csv"] = os.path.join(output_dir, "variants.csv")
    else:
        md, csv_table, table_rows = comparison_tables(groups)
        sections.append(
            "## Test results (mean ± std over seeds; Table 2, one row per metric)\n\n" + md + "\n\n"
            "Best of each row in bold. *best MetaMMF* / *strongest other*: the MetaMMF model and the other model "
            "with the best mean validation score (the runs' `valid_metric` at their best epoch; chosen on validation, "
            "the same pair in every row); *improv.*: (best MetaMMF − strongest other) / strongest other; "
            "*p-value*: paired t-test (`scipy.stats.ttest_rel`) between the two over the seeds both ran "
            "(— with fewer than 2 seeds). Std is the sample standard deviation."
        )
    atomic_write_text(os.path.join(output_dir, "summary.csv"), csv_table)
    files["summary.csv"] = os.path.join(output_dir, "summary.csv")

    md, csv_table = twin_tables(groups)
    if md:
        sections.append(
            "## The fusion alone: each MetaMMF model against its static-fusion twin (test, mean over seeds)\n\n" + md
            + "\n\n*static twin*: the same backbone, widths and settings with the meta fusion replaced by one static "
            "tower (`T = 0`); *p-value*: paired t-test over the seeds both ran."
        )
        atomic_write_text(os.path.join(output_dir, "twins.csv"), csv_table)
        files["twins.csv"] = os.path.join(output_dir, "twins.csv")

    md, csv_table, diagnosis = diagnosis_tables(groups)
    sections.append(
        "## What each model ranks (test split, mean over seeds)\n\n" + md + "\n\n"
        "RecBole's ItemCoverage@20 (share of the items in at least one top-20 list), AveragePopularity@20 (mean "
        "number of training interactions of the recommended items) and GiniIndex@20 (1 = every list the same "
        f"items). *flag*: test recall@20 or NDCG@20 at or below {FLOOR_MODEL}'s (the floor; shown when {FLOOR_MODEL} "
        f"ran), or ItemCoverage@20 under {MIN_COVERAGE:.0%}: such a result is a defect to find, not a finding; "
        "*epoch bound (k of n seeds)*: k runs reached `epochs` with their best validation within the patience, so "
        "early stopping did not end them and they may still have been improving: give every model a higher "
        "`--epochs` before comparing."
    )
    atomic_write_text(os.path.join(output_dir, "ranked.csv"), csv_table)
    files["ranked.csv"] = os.path.join(output_dir, "ranked.csv")

    md, csv_table = efficiency_tables(groups)
    sections.append(
        "## Training cost\n\n" + md + "\n\n*epochs trained* includes the `stopping_step` epochs after the best one; "
        "*s / epoch*: wall time of a training epoch (evaluation excluded); *parameters*: all trainable parameters "
        "of the model; *fusion tower*: the meta fusion tower alone (Eq. 12), the meta-learner part (T or its CP "
        "factors) plus the static W."
    )
    atomic_write_text(os.path.join(output_dir, "efficiency.csv"), csv_table)
    atomic_write_text(os.path.join(output_dir, "runs.csv"), runs_csv(groups))
    files["efficiency.csv"] = os.path.join(output_dir, "efficiency.csv")
    files["runs.csv"] = os.path.join(output_dir, "runs.csv")

    if preset and preset.get("movielens_meta_parameters"):
        spec = preset["movielens_meta_parameters"]
        md, rows = movielens_table(spec)
        write_json(os.path.join(output_dir, "movielens_meta_parameters.json"), rows)
        sections.append(
            f"## Meta-learner parameters at the paper's MovieLens tower (no data needed)\n\n"
            f"Tower {spec.get('in_dim', 2276)} → {' → '.join(map(str, spec.get('fusion_layers', [1024, 512, 256, 32])))}, "
            f"d_s = {spec.get('d_s', 5)}, counted from `MetaFusionTower`:\n\n{md}"
        )

    plots = []
    if n_finished:
        plots.append(("Validation metric per epoch (Fig. 6)", plot_curves(groups, output_dir)))
        if preset and preset.get("plot_against"):
            path = plot_preset_axis(groups, preset["plot_against"], output_dir)
            if path:
                plots.append((f"Test metrics against {preset['plot_against']} (Fig. 5)", path))
    if plot_tsne and n_finished:
        run_tsne(groups, output_dir, tsne_users, seeds[0])
    for caption, path in plots:
        sections.append(f"## {caption}\n\n![{caption}]({os.path.basename(path)})")
        files[os.path.basename(path)] = path
    tsne_path = os.path.join(output_dir, "tsne.json")
    if os.path.isfile(tsne_path):
        with open(tsne_path, encoding="utf-8") as f:
            tsne = {label: r for label, r in json.load(f).items() if r.get("run_id") in records}
        if tsne:
            md = md_table(
                ["model", "run", "users", "points", "silhouette, t-SNE 2-D", "silhouette, items only (t-SNE 2-D)",
                 "silhouette, representations (cosine)"],
                [[label, r["run_id"], len(r["users"]), r["n_points"], fmt_number(r.get("silhouette_tsne"), 3),
                  fmt_number(r.get("silhouette_items_tsne"), 3), fmt_number(r.get("silhouette_cosine"), 3)]
                 for label, r in tsne.items()],
            )
            sections.append(
                "## t-SNE of sampled users and their test items (Fig. 4)\n\n" + md + "\n\nMean silhouette "
                "coefficient (from -1 to 1, higher = tighter, better separated groups) with the sampled users as "
                "clusters: each user with its test items (first column, what the figure shows), the test items "
                "alone (second; inner-product models often place users and items in separate regions, which "
                "pulls the first column down), and all points in the representation space (third).\n\n"
                "![t-SNE](tsne.png)"
            )
            files["tsne.png"] = os.path.join(output_dir, "tsne.png")
    if failures:
        sections.append("## Failed runs (retried by the next invocation)\n\n" + "\n".join(
            f"- {run.label} seed {run.seed}: {type(error).__name__}: {error}" for run, error in failures))
    atomic_write_text(os.path.join(output_dir, "summary.md"), "\n\n".join(sections) + "\n")
    files["summary.md"] = os.path.join(output_dir, "summary.md")
    logger.info(f"benchmark: tables and plots in {output_dir} (summary.md)")
    return {"runs": runs, "records": records, "failures": failures, "comparison": table_rows, "diagnosis": diagnosis,
            "files": files}
