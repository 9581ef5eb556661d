r"""Side-by-side benchmarks and the paper's analyses behind ``run_benchmark.py``.

Every model × seed (× preset variant) is one call of :func:`recbole_metammf.quick_start.objective_function`,
so RecBole's built-in models and the plugin's share the data split, negative sampler, trainer, early
stopping and full-ranking evaluator. What the models share on top of ``properties/overall.yaml``, and
the per-model keys that give every model a total embedding size of 64, are in
``properties/benchmark/models.yaml``; presets (``properties/benchmark/<preset>.yaml``) run labelled
variants of a model through the same runner.

Output folder ``DIR``:

* ``runs/<label>__seed<seed>__<hash>.json`` — one finished run: its config, validation curve, test
  metrics, seconds per epoch, epochs to the best validation score, parameter counts. The hash covers
  the model, the dataset and every setting of the run except the seed (in the name) and where its
  checkpoint goes, so a repeated command skips exactly the runs it already finished. Written
  atomically (temporary file, then rename): a killed benchmark leaves only whole files. The hash
  covers what the benchmark passes (models.yaml, config files, preset variant, --key=value); a model's
  defaults file (``properties/model/<Model>.yaml``) is checked instead: a finished run that trained with
  another value of one of its keys is moved to ``stale/`` and run again. Neither covers
  ``properties/overall.yaml`` nor the code: after changing those, use a new output folder.
* ``stale/`` — finished runs set aside because their model's defaults changed since (kept, in no table).
* ``checkpoints/<run id>/`` — the best checkpoint of each run (t-SNE rebuilds models from them).
* ``summary.md`` / ``summary.csv`` — the table (without a preset: the paper's Table 2 with one row per
  metric, a column per model, the best MetaMMF model's improvement over the strongest other model
  and the p-value of a paired t-test over seeds; with a preset: one row per variant), ``efficiency.csv``
  (epochs, seconds per epoch, parameters), ``runs.csv`` (one row per run), ``valid_curves.png``
  (Fig. 6), ``<key>.png`` for a preset's ``plot_against`` (Fig. 5), ``tsne.png`` / ``tsne.json`` (Fig. 4).

Phases: :mod:`.plan` (presets and the runs: model x seed x variant), :mod:`.run` (each run trained once,
its record kept, finished runs skipped), :mod:`.summary` (means, the paired t-test, the tables),
:mod:`.plots` (Fig. 4-6) and :mod:`.command` (:func:`~.command.benchmark`, which writes ``summary.md``).
This module holds only what the command line shows in ``--help``, the default models and the presets (it loads
neither torch nor RecBole).
"""

import os

from recbole_metammf.paths import PROPERTIES_DIR

# Table 2: the floor, the ID models, the multimodal baselines, the static-fusion twin and MetaMMF on three backbones
DEFAULT_MODELS = [
    "Pop", "BPR", "NGCF", "LightGCN", "VBPR", "MMGCN", "GRCN", "LATTICE",
    "EarlyFusion_MF", "EarlyFusion_GCN", "EarlyFusion_LightGCN", "MetaMMF_MF", "MetaMMF_GCN", "MetaMMF_LightGCN",
]
FLOOR_MODEL = "Pop"  # every side-by-side table carries Pop (model/general_recommender/pop.py: RecBole's, counting fixed) as the floor
FIRST_SEED = 2020  # RecBole's default seed; --seeds=N runs 2020, 2021, ...

BENCHMARK_DIR = os.path.join(PROPERTIES_DIR, "benchmark")  # the presets and the harmonisation file
HARMONISATION_FILE = os.path.join(BENCHMARK_DIR, "models.yaml")


def preset_names():
    r"""The presets of ``properties/benchmark/`` (every YAML file but the harmonisation file)."""
    harmonisation = os.path.basename(HARMONISATION_FILE)
    return sorted(name[:-5] for name in os.listdir(BENCHMARK_DIR) if name.endswith(".yaml") and name != harmonisation)
