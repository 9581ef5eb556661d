r"""Side-by-side benchmark of RecBole's and the plugin's models, and the paper's analyses as presets.

    python run_benchmark.py --dataset=tiktok --models=BPR,NGCF,LightGCN,MetaMMF_MF,MetaMMF_GCN --seeds=5 \
        --output=results/tiktok [--config_files=a.yaml] [--plot-tsne] [--key=value ...]

Every model x seed runs through recbole_metammf.quick_start.objective_function with the same split,
negative sampler, evaluator and early stopping on validation (properties/overall.yaml) and the settings of
properties/benchmark/models.yaml: a patience of 50 epochs (the paper's 10 is what single runs keep; add
--stopping_step=10 for it), the total embedding size 64 and the per-model keys. DIR gets one JSON per run (runs/), the
summary table (summary.md, summary.csv: mean +- std, improvement of the best MetaMMF model over the
strongest other model and the paired t-test p-value), efficiency.csv, runs.csv and the plots.
Repeating the command with the same --output skips the runs already finished.

The paper's analyses (properties/benchmark/<preset>.yaml, or your own YAML file of the same form):

    python run_benchmark.py --preset=depth  --dataset=tiktok --seeds=5 --output=results/depth   # Table 3
    python run_benchmark.py --preset=cp     --dataset=tiktok --seeds=5 --output=results/cp      # Table 4
    python run_benchmark.py --preset=static --dataset=tiktok --seeds=5 --output=results/static  # Table 5
    python run_benchmark.py --preset=rank   --dataset=tiktok --seeds=5 --output=results/rank    # Fig. 5
    python run_benchmark.py --preset=ablations --dataset=tiktok --seeds=5 --output=results/ablations_p50  # Tables 3-5 on MetaMMF_LightGCN

and the choices each MetaMMF backbone leaves open, selected on validation: gcn_choices, mf_choices,
lightgcn_choices, lightgcn_scaling, id_combination, ... (--help lists them all; each file's first lines say
what it compares).

--plot-tsne adds Fig. 4 (t-SNE of sampled users and their test items, with the silhouette coefficient)
for the first seed of every model; the validation curves (Fig. 6) are always drawn.
"""

import argparse
import logging
import shlex
import sys

from recbole_metammf.cmdline import parse_config_files, parse_settings_or_exit
from recbole_metammf.errors import ConfigError
from recbole_metammf.experiments.benchmark import DEFAULT_MODELS, preset_names

# torch, RecBole and the benchmark load in main(), after the options are read: `--help` answers at once


def parse_args(argv):
    r"""This command's options, and the ``--key=value`` settings passed on to every run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--dataset", "-d", default="tiktok", help="dataset name (default: tiktok)")
    parser.add_argument(
        "--models", default=None,
        help=f"comma-separated model names (default: the preset's, else {','.join(DEFAULT_MODELS)})",
    )
    parser.add_argument("--seeds", default="5", help="a count N (seeds 2020 .. 2020+N-1) or a list 1,2,3 (default: 5)")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="where runs, tables and plots go")
    parser.add_argument("--preset", default=None, help=f"a file of properties/benchmark/ ({', '.join(preset_names())}) or a preset YAML file")
    parser.add_argument("--config_files", default=None, help="config files for every run, separated by spaces or commas")
    parser.add_argument("--plot-tsne", "--plot_tsne", dest="plot_tsne", action="store_true",
                        help="also draw the t-SNE of Fig. 4 (first seed of every model)")
    parser.add_argument("--tsne-users", "--tsne_users", dest="tsne_users", type=int, default=10,
                        help="users sampled for the t-SNE (default: 10)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    args, rest = parser.parse_known_args(argv)
    return args, parse_settings_or_exit(parser, rest)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args, overrides = parse_args(argv)
    from recbole_metammf.experiments.benchmark.command import benchmark
    from recbole_metammf.experiments.benchmark.plan import parse_seeds

    if not logging.getLogger().handlers:  # each run installs RecBole's handlers; until then, the console
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s  %(message)s")
    config_files = parse_config_files(args.config_files)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    try:
        result = benchmark(
            dataset=args.dataset,
            models=models,
            seeds=parse_seeds(args.seeds),
            output_dir=args.output,
            overrides=overrides,
            config_files=config_files,
            preset=args.preset,
            plot_tsne=args.plot_tsne,
            tsne_users=args.tsne_users,
            command=" ".join(["python run_benchmark.py", *map(shlex.quote, argv)]),
            progress=args.progress,
        )
    except (ConfigError, FileNotFoundError) as error:  # the user can fix these
        sys.exit(f"error: {error}")
    if result["failures"]:
        sys.exit(f"error: {len(result['failures'])} run(s) failed (see {args.output}/failed/); repeat the command to retry them")
    return result


if __name__ == "__main__":
    main()
