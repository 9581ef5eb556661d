r"""Train and test a model on a dataset: the plugin's MetaMMF models or any RecBole built-in model.

    python run_recbole_metammf.py --model=MetaMMF_GCN --dataset=tiktok [--config_files="a.yaml b.yaml"] [--key=value ...]

Any RecBole or model key can be given as --key=value (e.g. --epochs=5 --cp_rank=8 "--fusion_layers=[128,64,32]").
"""

import argparse
import sys

from recbole_metammf.quick_start import run_recbole_metammf
from recbole_metammf.utils import ConfigError


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default="MetaMMF_GCN", help="model name (default: MetaMMF_GCN)")
    parser.add_argument("--dataset", "-d", default="tiktok", help="dataset name (default: tiktok)")
    parser.add_argument("--config_files", default=None, help="config files, separated by spaces or commas")
    args, _ = parser.parse_known_args()  # the remaining --key=value pairs are read by the Config
    config_files = args.config_files.replace(",", " ").split() if args.config_files else None
    try:
        run_recbole_metammf(model=args.model, dataset=args.dataset, config_file_list=config_files)
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
