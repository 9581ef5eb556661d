r"""Which part of a trained VBPR ranks, and does it know popularity (docs/BASELINES.md, "VBPR against its references").

    python docs/scripts/probe_vbpr_scores.py CHECKPOINT [CHECKPOINT ...]

VBPR's score is a sum of three inner products (Eq. 2): the latent factors ``gamma_u . gamma_i``, the content part
``theta_u . E f_i`` and the item bias ``beta_i + beta' . f_i``. For each checkpoint (a best or ``-last.pth`` file of
``run_recbole_metammf.py`` or ``run_benchmark.py``) it prints, per part, the mean norm of the items' part, the mean
over users of the standard deviation of that part's scores across items (the part with the largest spread is the one
that ranks), and the Spearman correlation between each item's score from that part, averaged over users, and its
number of training interactions; then the mean training popularity of the top-20 lists (training items not
removed; Pop's: the 20 most popular).
"""

import sys

import torch
from scipy.stats import spearmanr

from recbole_metammf.quick_start import load_data_and_model


def probe(checkpoint):
    config, model, dataset, train_data, _, _ = load_data_and_model(checkpoint)
    if type(model).__name__ != "VBPR":
        raise SystemExit(f"error: {checkpoint} holds a {type(model).__name__}, not a VBPR")
    model.eval()
    popularity = torch.bincount(
        torch.as_tensor(train_data.dataset.inter_feat[model.ITEM_ID]), minlength=model.n_items
    ).float()[1:]
    with torch.no_grad():
        users, items = model.forward()
        users, items = users[1:], items[1:]  # row 0: RecBole's padding
        widths = [model.embedding_size, model.feature_embedding_size] + ([1] if model.item_bias else [])
        names = ["latent factors", "content (theta_u . E f_i)", "item bias"][: len(widths)]
        print(f"{checkpoint}: {config['dataset']}, regularization {config['regularization']}, reg_weight {config['reg_weight']}")
        for name, user_part, item_part in zip(names, users.split(widths, dim=1), items.split(widths, dim=1)):
            scores = user_part @ item_part.t()
            rho = spearmanr(scores.mean(0).numpy(), popularity.numpy())[0]
            print(
                f"  {name:27s} item norm {item_part.norm(dim=1).mean():7.3f}   score spread within a user "
                f"{scores.std(dim=1).mean():7.3f}   Spearman with popularity {rho:+.2f}"
            )
        top = (users @ items.t()).topk(20, dim=1).indices
        print(f"  top-20 mean popularity {popularity[top].mean():.1f} (Pop's top-20: {popularity.topk(20).values.mean():.1f})")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for path in sys.argv[1:]:
        probe(path)
