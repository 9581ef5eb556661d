r"""The plan of a benchmark: presets (``properties/benchmark/<preset>.yaml``), the per-model settings of
``properties/benchmark/models.yaml``, and the runs (model x seed x preset variant), each checked once
before anything trains."""

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from logging import getLogger

from recbole_metammf.cmdline import clean_argv
from recbole_metammf.errors import ConfigError
from recbole_metammf.experiments.benchmark import BENCHMARK_DIR, FIRST_SEED, HARMONISATION_FILE, preset_names
from recbole_metammf.files import read_yaml
from recbole_metammf.registry import get_model
from recbole_metammf.paths import model_yaml
from recbole_metammf.utils import to_plain

METRICS = [f"{name}@{k}" for k in (10, 20) for name in ("precision", "recall", "hit", "ndcg")]
SHORT_NAMES = {"precision": "P", "recall": "R", "hit": "Hit", "ndcg": "NDCG", "itemcoverage": "ItemCoverage",
               "averagepopularity": "AveragePopularity", "giniindex": "GiniIndex"}
RUNNER_KEYS = ("seed", "checkpoint_dir")  # set per run by the runner; not part of a run's identity


def short_metric(metric):
    from recbole_metammf.cold_start import ALL_ITEMS_PREFIX

    if metric.startswith(ALL_ITEMS_PREFIX):  # cold start: the same users ranked among all items
        return "all items " + short_metric(metric[len(ALL_ITEMS_PREFIX):])
    name, k = metric.split("@")
    return f"{SHORT_NAMES.get(name, name)}@{k}"


def is_metammf(model):
    return model.startswith("MetaMMF")


MAX_SEED_COUNT = 100  # a larger "count" is a seed written without its comma


def parse_seeds(text):
    r"""``"5"`` -> five seeds from 2020; ``"1,7,42"`` -> those seeds (``"7,"`` is the single seed 7)."""
    text = str(text).strip()
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()] if "," in text else int(text)
    except ValueError:
        raise ConfigError(f"seeds: got {text!r}; expected a count (5) or a comma-separated list (2020,2021)") from None
    if isinstance(seeds, int):
        if seeds > MAX_SEED_COUNT:  # --seeds=2020 meant the seed, not 2,020 runs of every model
            raise ConfigError(
                f"seeds: got {text!r}, a count of {seeds} seeds (at most {MAX_SEED_COUNT}); "
                f"for the single seed {seeds} write --seeds={seeds}, (a list of one)"
            )
        seeds = list(range(FIRST_SEED, FIRST_SEED + seeds))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: got {text!r}; expected at least one seed and no repeats")
    return seeds


def load_preset(name_or_path):
    r"""A preset: ``properties/benchmark/<name>.yaml`` or a YAML file of the same form (``title``,
    ``models``, ``variants``: label -> overrides, optionally ``base``: overrides under every variant, ``plot_against``,
    ``movielens_meta_parameters`` and ``floor``: False to leave out the floor model (Pop), which a preset otherwise
    runs beside its variants). A preset that compares choices against a model's defaults of one day pins them in
    ``base``, so that its labels ("paper", "defaults") keep their meaning when the defaults change."""
    path = name_or_path if os.path.isfile(name_or_path) else os.path.join(BENCHMARK_DIR, f"{name_or_path}.yaml")
    if not os.path.isfile(path) or os.path.abspath(path) == os.path.abspath(HARMONISATION_FILE):
        raise ConfigError(f"preset: {name_or_path!r} is neither a YAML file nor one of {', '.join(preset_names())}")
    preset = read_yaml(path)
    variants = preset.get("variants")
    if not isinstance(variants, dict) or not variants or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError(f"preset {path}: 'variants' must map each label to a dict of overrides")
    if not isinstance(preset.get("base", {}), dict):
        raise ConfigError(f"preset {path}: 'base' must be a dict of overrides under every variant; got {preset['base']!r}")
    if not isinstance(preset.get("models", []), list):
        raise ConfigError(f"preset {path}: 'models' must be a list of model names")
    if not isinstance(preset.get("floor", True), bool):
        raise ConfigError(f"preset {path}: 'floor' must be true or false (run Pop beside the variants); got {preset['floor']!r}")
    preset["name"] = os.path.splitext(os.path.basename(path))[0]
    preset["path"] = path
    return preset


@dataclass
class RunSpec:
    r"""One run of the benchmark: a model (or a preset variant of it) with one seed."""

    label: str
    model: str
    seed: int
    config_dict: dict  # everything the run is given except the runner's keys
    variant: str = None
    overrides: dict = field(default_factory=dict)  # the preset variant's overrides

    @property
    def digest(self):
        identity = json.dumps(to_plain(self.config_dict), sort_keys=True)
        return hashlib.sha1(identity.encode("utf-8")).hexdigest()[:8]

    @property
    def run_id(self):
        safe_label = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", self.label).strip("-")
        return f"{safe_label}__seed{self.seed}__{self.digest}"


def build_runs(dataset, models, seeds, overrides=None, config_files=None, preset=None, harmonisation=HARMONISATION_FILE,
               floor=None):
    r"""The runs of a benchmark, seed by seed (all models of the first seed come first, so an
    interrupted benchmark has whole comparisons). A run's settings, later wins: ``common`` and the
    model's entry in ``harmonisation``, the ``config_files`` in order, the preset variant, ``overrides``.
    ``floor`` (a model name, e.g. Pop): run it too, first in each seed and without the preset's
    variants, unless it is among ``models``, so that a preset's table has the floor beside its variants."""
    overrides = dict(overrides or {})
    for key in RUNNER_KEYS:
        if key in overrides:
            hint = "use --seeds" if key == "seed" else "the benchmark keeps each run's checkpoint under DIR/checkpoints"
            raise ConfigError(f"{key}: set by the benchmark for each run ({hint})")
    harmonised = read_yaml(harmonisation) if harmonisation else {}
    common, per_model = dict(harmonised.get("common") or {}), dict(harmonised.get("models") or {})
    from_files = {}
    for path in config_files or []:
        from_files.update(read_yaml(path))
    for key in ("model", "dataset", *RUNNER_KEYS):
        from_files.pop(key, None)
    base = dict(preset.get("base") or {}) if preset else {}
    variant_settings = preset["variants"] if preset else {}
    variants = {label: {**base, **settings} for label, settings in variant_settings.items()} if preset else {None: {}}
    varied = sorted({key for settings in variant_settings.values() for key in settings} & set(overrides))
    if varied:  # the command line wins over a variant, which would make the variants alike
        raise ConfigError(
            f"{', '.join(varied)}: varied by the preset {preset['name']!r} ({preset['path']}), so a value given for the "
            f"whole benchmark would replace the variants' own; leave it out, or copy the preset and change its variants")
    models = list(dict.fromkeys(models))  # once each, in the order given
    for model in models:
        get_model(model)  # an unknown name fails now, with close matches
    schedule = [(model, variants) for model in models]
    if floor and floor not in models:
        schedule.insert(0, (floor, {None: {}}))
    runs = []
    for seed in seeds:
        for model, model_variants in schedule:
            for variant, variant_overrides in model_variants.items():
                config_dict = {
                    **common,
                    **dict(per_model.get(model) or {}),
                    **from_files,
                    **variant_overrides,
                    **overrides,
                    "model": model,
                    "dataset": dataset,
                }
                label = model if variant is None else f"{model}[{variant}]"
                # the variant's keys with the values the run is given (a base key may be overridden)
                in_effect = {key: config_dict[key] for key in variant_overrides}
                runs.append(RunSpec(label, model, seed, config_dict, variant, in_effect))
    return runs


def model_default_keys(model):
    r"""The keys of ``model``'s own defaults file: the plugin's ``properties/model/<Model>.yaml``, else RecBole's."""
    from recbole_metammf.config_checks import RECBOLE_PROPERTIES_DIR

    for path in (model_yaml(model), os.path.join(RECBOLE_PROPERTIES_DIR, "model", f"{model}.yaml")):
        if os.path.isfile(path):
            return list(read_yaml(path) or {})
    return []


def check_runs(runs):
    r"""Build each label's Config once before anything trains: a bad key or value stops the benchmark
    at once (the models' ``check_config``), not after hours of other runs. Returns, per label, the final
    value of every key of the model's defaults file, which a finished run's record is checked against
    (:func:`~recbole_metammf.experiments.benchmark.run.run_all`): the run's hash does not cover those defaults."""
    from recbole_metammf.config import Config

    settings = {}
    for run in runs:
        if run.label in settings:
            continue
        with clean_argv():
            try:
                config = Config(config_dict={**run.config_dict, "seed": run.seed})
            except ConfigError as error:
                raise ConfigError(f"{run.label}: {error}") from None
        for message in config.ignored_key_messages:  # e.g. a --key=value the benchmark gives every model
            getLogger().warning(f"benchmark: {run.label}: {message}")
        final = config.final_config_dict
        settings[run.label] = {key: to_plain(final[key]) for key in model_default_keys(run.model) if key in final}
    return settings
