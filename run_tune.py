r"""Hyper-parameter sweep with Ray Tune, on this machine or on a Ray cluster.

    python run_tune.py --model=MetaMMF_GCN --dataset=tiktok --space=properties/tune/metammf.yaml \
        [--num-samples N] [--scheduler asha|fifo] [--metric ndcg@20] [--cpus-per-trial C] [--gpus-per-trial G] \
        [--address ADDR] [--output DIR] [--name NAME] [--resume] [--key=value ...]

Every --key=value that is not an option above is a RecBole / model setting given to every trial
(e.g. --epochs=50 --train_batch_size=3000). Each trial reports the validation metric after every
epoch, so ASHA stops poor trials early; the test split is evaluated once, for the best trial, which
is trained again from the best_config.yaml written for it. Output in DIR/NAME (default
tune_results/<model>-<dataset>): results.csv, results.md, best_config.yaml, best_result.json.

Continue an interrupted sweep with the same --output/--name (or --model/--dataset) and --resume.
"""

import argparse
import os
import sys

from recbole_metammf.cmdline import parse_config_files, parse_settings_or_exit
from recbole_metammf.errors import ConfigError
from recbole_metammf.paths import TUNE_SPACES_DIR

# torch, RecBole and Ray load in main(), after the options are read: `--help` answers at once


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--model", "-m", default="MetaMMF_GCN", help="model name (default: MetaMMF_GCN)")
    parser.add_argument("--dataset", "-d", default="tiktok", help="dataset name (default: tiktok)")
    parser.add_argument("--space", default=os.path.join(TUNE_SPACES_DIR, "metammf.yaml"),
                        help="search space YAML (default: the package's properties/tune/metammf.yaml)")
    parser.add_argument("--config_files", default=None, help="config files every trial reads, by spaces or commas")
    parser.add_argument("--num-samples", type=int, default=1, help="samples of the random keys per grid point")
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default="asha")
    parser.add_argument("--grace-period", type=int, default=5, help="ASHA: epochs every trial gets (default 5)")
    parser.add_argument("--reduction-factor", type=int, default=3, help="ASHA: keep 1/this at each rung (default 3)")
    parser.add_argument("--metric", default=None, help="validation metric to select on (default: valid_metric, NDCG@20)")
    parser.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs per trial (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=None,
                        help="GPUs per trial, fractions allowed (default: 0 without GPUs, else a share, >= 0.25)")
    parser.add_argument("--address", default=None, help="join this Ray cluster (e.g. auto or HEAD:6379)")
    parser.add_argument("--output", default="tune_results", help="folder of the experiments (default tune_results)")
    parser.add_argument("--name", default=None, help="experiment name (default <model>-<dataset>)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep DIR/NAME")
    parser.add_argument("--max-failures", type=int, default=1, help="retries of a crashed trial (default 1)")
    parser.add_argument("--no-test", action="store_true", help="skip training and testing the best config again")
    parser.add_argument("--verbose", type=int, default=1, help="Ray Tune verbosity 0-3 (default 1)")
    args, rest = parser.parse_known_args(argv)
    return args, parse_settings_or_exit(parser, rest)


def main(argv=None):
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    if argv is None:  # RecBole's Config also reads --key=value from sys.argv: leave it only the settings
        sys.argv = sys.argv[:1] + [f"--{key}={value}" for key, value in overrides.items()]
    from recbole_metammf.experiments.tune.sweep import quiet_ray_logs, run_sweep

    quiet_ray_logs()
    try:
        summary = run_sweep(
            args.model,
            args.dataset,
            space=args.space,
            config_dict=overrides,
            config_files=parse_config_files(args.config_files),
            num_samples=args.num_samples,
            scheduler=args.scheduler,
            metric=args.metric,
            cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial,
            address=args.address,
            output=args.output,
            name=args.name,
            resume=args.resume,
            max_failures=args.max_failures,
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
            test_best=not args.no_test,
            verbose=args.verbose,
        )
    except (ConfigError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    with open(summary["markdown"], encoding="utf-8") as f:
        print(f.read())
    print(f"results: {summary['csv']}\n         {summary['markdown']}")
    if summary["interrupted"]:
        sys.exit("interrupted: run the same command with --resume to continue the sweep")
    if summary["best_config"]:
        fixed = summary["fixed"]
        print(f"best config: {summary['best_config']}")
        print(f"train it:    python run_recbole_metammf.py --model={fixed['model']} "
              f"--dataset={fixed['dataset']} --config_files={summary['best_config']}")
    else:
        sys.exit("error: no trial finished; see the error column above")


if __name__ == "__main__":
    main()
