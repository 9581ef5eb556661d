r"""How alike BM3's views of the items are, and whether its scores know popularity (docs/BASELINES.md, "BM3").

    python docs/scripts/probe_bm3_views.py --dataset=tiktok [--normalize_modalities=standard ...]   # at initialisation
    python docs/scripts/probe_bm3_views.py CHECKPOINT [CHECKPOINT ...]                               # trained

BM3 has no negatives: its alignment terms pull each item's online view ``f(h_i)`` towards the dropout target of its
modality projections ``W_m x_i^m + b_m`` and of its users. Where every item's projection points the same way, the
items' views are pulled together, and a dot-product score then ranks by the size of ``f(h_i)``, which the graph
gives the popular items. For the model (built at initialisation with any ``--key=value``, or each checkpoint) it
prints the mean pairwise cosine, over 2,000 sampled items (seed 0), of each modality's projection, of ``f(h_i)``
and, over 2,000 sampled users, of ``f(h_u)``; the Spearman correlation between the items' ``||f(h_i)||`` and their
training interactions; and the mean training popularity of the top-20 lists of all users (training items not
removed; Pop's: the 20 most popular).
"""

import sys

import torch
from scipy.stats import spearmanr

from recbole_metammf.cmdline import parse_settings
from recbole_metammf.pipeline import build_model, load_data, make_config
from recbole_metammf.quick_start import load_data_and_model

from probe_gcn_spread import mean_pairwise_cosine


@torch.no_grad()
def report(name, model, train_dataset):
    if type(model).__name__ != "BM3":
        raise SystemExit(f"error: {name} holds a {type(model).__name__}, not a BM3")
    model.eval()
    popularity = torch.bincount(
        torch.as_tensor(train_dataset.inter_feat[model.ITEM_ID]), minlength=model.n_items
    ).float()[1:]
    items = torch.arange(1, model.n_items)  # row 0: RecBole's padding
    users, item_views = model.forward()
    users, item_views = users[1:], item_views[1:]
    print(name)
    for modality, latent in zip(model.modalities, model.modality_latents(items)):
        cosine = mean_pairwise_cosine(latent, generator=torch.Generator().manual_seed(0))
        print(f"  projection of {modality:10s} items cos {cosine:.3f}")
    print(f"  f(h_i)                       items cos {mean_pairwise_cosine(item_views, generator=torch.Generator().manual_seed(0)):.3f}")
    print(f"  f(h_u)                       users cos {mean_pairwise_cosine(users, generator=torch.Generator().manual_seed(0)):.3f}")
    rho = spearmanr(item_views.norm(dim=1).numpy(), popularity.numpy())[0]
    print(f"  Spearman(||f(h_i)||, popularity) {rho:+.2f}")
    top = (users @ item_views.t()).topk(20, dim=1).indices
    print(f"  top-20 mean popularity {popularity[top].mean():.1f} (Pop's top-20: {popularity.topk(20).values.mean():.1f}); "
          f"distinct items in the top-20 lists {len(top.unique())} of {len(items)}")


def main():
    arguments = sys.argv[1:]
    if arguments and arguments[0] in ("-h", "--help"):
        print(__doc__)
        return
    checkpoints = [a for a in arguments if not a.startswith("--")]
    if checkpoints:
        for checkpoint in checkpoints:
            config, model, _, train_data, _, _ = load_data_and_model(checkpoint)
            name = f"{config['model']} ({checkpoint}), normalize_modalities {config['normalize_modalities']}"
            report(name, model, train_data.dataset)
        return
    settings = parse_settings([a for a in arguments if a.startswith("--")])
    dataset_name = settings.pop("dataset", "tiktok")
    sys.argv = sys.argv[:1]
    config = make_config("BM3", dataset_name, config_dict=settings, command_line=False)
    data = load_data(config)
    report(f"BM3 at initialisation {settings}", build_model(config, data), data.train.dataset)


if __name__ == "__main__":
    main()
