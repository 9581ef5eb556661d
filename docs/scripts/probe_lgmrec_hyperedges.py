r"""What a trained LGMRec's hyperedges hold, and which part of its representation ranks (docs/BASELINES.md, "LGMRec").

    python docs/scripts/probe_lgmrec_hyperedges.py CHECKPOINT [CHECKPOINT ...]

For each checkpoint (a best or ``-last.pth`` file of ``run_recbole_metammf.py`` or ``run_benchmark.py``) it prints, per
modality, how many items have each hyperedge as their largest membership and the mean largest membership of items and
users (1 = one-hot: all members of one hyperedge share one global embedding); then the mean norm of the three parts of
``E = E^c + sum_m E^m / ||E^m|| + alpha E^H / ||E^H||`` and, over 2,000 sampled (user, item) pairs (seed 0), the standard
deviation of the score each user part contributes: the part with the largest spread is the one that ranks.
"""

import sys

import torch

from recbole_metammf.model.layers import split_modalities
from recbole_metammf.quick_start import load_data_and_model


@torch.no_grad()
def probe(model):
    model.eval()
    n_users = model.n_users
    blocks = split_modalities(model.item_features, model.modality_dims)
    for name, block, hyperedges in zip(model.modalities, blocks, model.hyperedges.projections):
        item, user = model.memberships(block, hyperedges)
        sizes = torch.bincount(item[1:].argmax(dim=1), minlength=item.shape[1]).tolist()
        print(f"  {name}: items per hyperedge (largest membership) {sizes}; mean largest membership: "
              f"items {item[1:].max(dim=1).values.mean():.3f}, users {user[1:].max(dim=1).values.mean():.3f}")
    collaborative, modality, global_, _ = model.representation_parts()
    full = collaborative + modality + global_
    generator = torch.Generator().manual_seed(0)
    users = torch.randint(1, n_users, (2000,), generator=generator)
    items = n_users + torch.randint(1, model.n_items, (2000,), generator=generator)
    for name, part in [("collaborative E^c", collaborative), ("modalities", modality), ("alpha * global", global_)]:
        spread = (part[users] * full[items]).sum(dim=1).std()
        print(f"  {name}: mean norm users {part[1:n_users].norm(dim=1).mean():.3f}, items {part[n_users + 1:].norm(dim=1).mean():.3f}; "
              f"std of the score from the user part {spread:.3f}")


def main(paths):
    if not paths:
        sys.exit(__doc__)
    for path in paths:
        print(path)
        probe(load_data_and_model(path)[1])


if __name__ == "__main__":
    main(sys.argv[1:])
