r"""The lowest cosine similarity among the kept edges of the item-item kNN graphs (docs/BASELINES.md, LATTICE's
negative similarities; docs/RESULTS.md, "The MF backbone's default").

    python docs/scripts/probe_knn_similarity.py --dataset=tiktok [--config_files=FILE] [--k=10]
    python docs/scripts/probe_knn_similarity.py CHECKPOINT [CHECKPOINT ...]

With ``--dataset``: the graphs of ``item_graph_k`` (each modality's raw features, as the fusion backbones build
them). With LATTICE (or MICRO) checkpoints: its initial graphs (its own features) and its learned graphs (the
trained ``graph_learner``'s projections). A negative kept similarity weighs 0 since 2026-12-07; before, it lowered
the item's degree, and a negative degree made ``D^{-1/2}`` NaN. For each graph it prints the lowest kept similarity,
the number of kept edges below 0 and the lowest weighted degree.
"""

import argparse

import torch

from recbole_metammf.model.layers.knn import knn_graph


def report(name, x, k):
    edge_index, similarity = knn_graph(x[1:], k)  # row 0: RecBole's padding item
    degree = torch.zeros(x.shape[0] - 1).index_add_(0, edge_index[1], similarity)
    print(f"{name}: lowest kept similarity {similarity.min().item():.4f}, {int((similarity < 0).sum())} edges below 0, "
          f"lowest degree {degree.min().item():.3f} (k = {k})")


def from_dataset(dataset, config_files, k):
    from recbole_metammf.cold_start import create_dataset, data_preparation
    from recbole_metammf.config import Config
    from recbole_metammf.model.abstract_recommender import modality_features

    config = Config("MetaMMF_MF", dataset, config_file_list=config_files, command_line=False)
    train = data_preparation(config, create_dataset(config))[0]._dataset
    raw, dims = modality_features(train, config["modalities"])
    for name, block in zip(config["modalities"], torch.split(raw, dims, dim=1)):
        report(f"{dataset} {name} (raw)", block, k)


@torch.no_grad()
def from_checkpoint(path):
    from recbole_metammf.quick_start import load_data_and_model

    _, model, *_ = load_data_and_model(path)
    if not hasattr(model, "graph_learner"):
        raise SystemExit(f"error: {path} holds a {type(model).__name__}, which learns no item-item graph (LATTICE, MICRO do)")
    model.eval()
    for name, block in zip(model.modalities, torch.split(model.item_features, model.modality_dims, dim=1)):
        report(f"{path}: {name} initial", block, model.knn_k)
    for name, projected in zip(model.modalities, model.graph_learner(model.item_features)):
        report(f"{path}: {name} learned", projected, model.knn_k)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*")
    parser.add_argument("--dataset")
    parser.add_argument("--config_files", nargs="*")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    if not args.dataset and not args.checkpoints:
        parser.error("give --dataset=NAME or checkpoints")
    if args.dataset:
        from_dataset(args.dataset, args.config_files, args.k)
    for path in args.checkpoints:
        from_checkpoint(path)


if __name__ == "__main__":
    main()
