r"""Train and test a model on a dataset: the plugin's MetaMMF models or any RecBole built-in model.
The command itself is :mod:`recbole_metammf.cli` (installed as ``recbole-metammf``); ``--help`` lists its options.

    python run_recbole_metammf.py --model=MetaMMF_GCN --dataset=tiktok [--key=value ...]
"""

from recbole_metammf.cli import main

if __name__ == "__main__":
    main()
