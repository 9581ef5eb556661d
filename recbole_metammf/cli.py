r"""Train and test a model on a dataset: the plugin's MetaMMF models or any RecBole built-in model.

    recbole-metammf --model=MetaMMF_GCN --dataset=tiktok [--config_files="a.yaml b.yaml"] [--key=value ...]

(the same as `python -m recbole_metammf ...` and, in the repository, `python run_recbole_metammf.py ...`).

Any RecBole or model key can be given as --key=value (e.g. --epochs=5 --cp_rank=8 "--fusion_layers=[128,64,32]").

Train in several processes (RecBole's torch.distributed: the batches and evaluated users are split,
gradients averaged): on the CPU (gloo), on one GPU per process (nccl), or on several nodes:

    recbole-metammf --model=MetaMMF_GCN --dataset=tiktok --nproc=2 --gpu_id=''
    recbole-metammf --model=MetaMMF_GCN --dataset=tiktok --nproc=4 --gpu_id=0,1,2,3
    recbole-metammf ... --nproc=4 --world_size=8 --ip=NODE0 --port=5678 --group_offset=4  # node 2 of 2

Continue a run that was stopped or killed (its settings come from the checkpoint; --key=value overrides them):

    recbole-metammf --resume=saved/MetaMMF_GCN-<time>-last.pth [--epochs=500]

Print each user's top-K items, by original token, leaving out the items the user has in training:

    recbole-metammf --recommend --checkpoint=saved/MetaMMF_GCN-<time>.pth --users=12,345 --topk=20
    recbole-metammf --recommend --checkpoint=... --users=12 --new_items=new.item   # items added without retraining
"""

import argparse
import sys

from recbole_metammf.cmdline import parse_config_files, parse_settings

# torch and RecBole load in main(), after the options are read: `--help` answers at once


def parse_own_options(argv):
    r"""The options this script reads, and the other arguments. Only the others are left in
    ``sys.argv`` for RecBole's Config, which reads every ``--key=value`` there (in recommend mode,
    ``--topk=20`` would otherwise change the evaluation cut-offs and ``--users`` become a config key)."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        add_help="--recommend" not in argv,  # `--recommend --help` shows the recommend options
    )
    parser.add_argument("--model", "-m", default=None, help="model name (or `model:` in a config file)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (or `dataset:` in a config file)")
    parser.add_argument("--config_files", default=None, help="config files, separated by spaces or commas")
    parser.add_argument("--resume", default=None, metavar="PATH", help="continue training from this checkpoint")
    parser.add_argument("--recommend", action="store_true", help="print top-K items (see --recommend --help)")
    distributed = parser.add_argument_group("several processes (RecBole's torch.distributed options)")
    distributed.add_argument("--nproc", type=int, default=1, help="processes on this node (default: 1)")
    distributed.add_argument("--world_size", type=int, default=-1, help="processes on all nodes (default: nproc)")
    distributed.add_argument("--ip", default="localhost", help="address of the first node (default: localhost)")
    distributed.add_argument("--port", type=int, default=5678, help="free TCP port on the first node (default: 5678)")
    distributed.add_argument(
        "--group_offset", type=int, default=0, help="global rank of this node's first process (default: 0)"
    )
    args, rest = parser.parse_known_args(argv)
    if args.recommend:  # its options only in this mode: when training, --topk=[10,20] is RecBole's key
        recommend = argparse.ArgumentParser(prog=f"{parser.prog} --recommend", allow_abbrev=False)
        recommend.add_argument("--checkpoint", required=True, metavar="PATH", help="the trained model")
        recommend.add_argument("--users", required=True, help="user tokens, separated by commas")
        recommend.add_argument("--topk", type=int, default=20, help="items per user (default: 20)")
        recommend.add_argument(
            "--new_items", default=None, metavar="FILE.item",
            help="items to add to the catalogue without retraining (the dataset's float_seq fields; docs/COLDSTART.md)",
        )
        recommend_args, rest = recommend.parse_known_args(rest)
        vars(args).update(vars(recommend_args))
    return args, rest


def print_recommendations(args, rest):
    from recbole_metammf.recommend import recommend
    from recbole_metammf.utils import ConfigError

    if rest:  # the checkpoint holds the settings; a --key=value here would be ignored
        raise ConfigError(
            f"{rest[0]}: not an option of --recommend, which takes --checkpoint, --users, --topk and --new_items "
            "(the other settings come from the checkpoint)"
        )
    users = [user for user in args.users.split(",") if user]
    if not users:
        raise ConfigError(f"users: got {args.users!r}; expected user tokens separated by commas, e.g. --users=0,1,2")
    for user, items in recommend(args.checkpoint, users, topk=args.topk, new_items=args.new_items).items():
        print(f"{user}\t{' '.join(items)}")


def check_settings(rest):
    r"""Every argument left for RecBole's Config is a ``--key=value`` setting; RecBole would ignore the
    others with a warning (``--epochs 5`` trains for the default number of epochs)."""
    parse_settings(rest)


def main():
    r"""The ``recbole-metammf`` command (and ``python -m recbole_metammf``, ``run_recbole_metammf.py``)."""
    args, rest = parse_own_options(sys.argv[1:])
    from recbole_metammf.quick_start import run, run_recbole_metammf
    from recbole_metammf.checkpoint import CheckpointError
    from recbole_metammf.trainer import NonFiniteLossError
    from recbole_metammf.utils import ConfigError, DataError

    sys.argv = sys.argv[:1] + rest
    config_files = parse_config_files(args.config_files)
    try:
        if args.recommend:
            print_recommendations(args, rest)
            return
        check_settings(rest)
        if args.resume:
            if args.nproc != 1 or args.world_size > 0:
                raise ConfigError(
                    "nproc: a run is resumed in one process (the checkpoint holds the whole model and optimizer "
                    "state); leave out --nproc and --world_size with --resume"
                )
            run_recbole_metammf(args.model, args.dataset, config_files, resume=args.resume)
        else:
            # model and dataset may also come from a config file (e.g. a sweep's best_config.yaml)
            run(
                model=args.model, dataset=args.dataset, config_file_list=config_files, nproc=args.nproc,
                world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset,
            )
    except (ConfigError, DataError, CheckpointError, NonFiniteLossError, FileNotFoundError) as error:  # the user can fix these
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
