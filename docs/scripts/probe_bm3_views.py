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

import torch
from scipy.stats import spearmanr

from probe_gcn_spread import mean_pairwise_cosine, probed_models


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
    for name, config, model, train_dataset in probed_models(__doc__, "BM3"):
        report(f"{name}, normalize_modalities {config['normalize_modalities']}", model, train_dataset)


if __name__ == "__main__":
    main()
