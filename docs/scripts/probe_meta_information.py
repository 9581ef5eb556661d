r"""What a trained fusion model's item representations know of the synthetic generator's ground truth.

    python docs/scripts/probe_meta_information.py --latent=RAW/latent.npz CHECKPOINT [CHECKPOINT ...]

``RAW`` is the folder ``python -m dataset_converters.synthetic`` wrote (its ``latent.npz``: each item's
kind and latent factors); a CHECKPOINT is a best checkpoint of a model trained on the converted data.
For the raw features, MetaMMF's meta information ``s_i`` (Eq. 7) and the fused half ``e_i^m``, it
prints the 3-fold cross-validated accuracy of a logistic regression predicting the item's kind (chance:
1/8) and the R^2 of a ridge regression predicting its factors: whether ``s_i`` tells items apart in
the way the generator made them differ, which is what dynamic fusion needs (docs/RESULTS.md).
"""

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import cross_val_score

from recbole_metammf.quick_start import load_data_and_model


def probe(features, kind, factors):
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), features, kind, cv=3).mean()
    r2 = cross_val_score(Ridge(alpha=1.0), features, factors, cv=3, scoring="r2").mean()
    return accuracy, r2


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", required=True, help="latent.npz of the generator's output folder")
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args()
    latent = np.load(args.latent)
    for checkpoint in args.checkpoints:
        config, model, dataset, *_ = load_data_and_model(checkpoint)
        model.eval()
        items = dataset.field2id_token[config["ITEM_ID_FIELD"]][1:].astype(int)  # tokens = generator indices
        kind, factors = latent["item_kind"][items], latent["item_factors"][items]
        with torch.no_grad():
            features = model.item_features[1:]
            views = {"raw features x_i": features.numpy(), "fused e_i^m": model.fuse(features)[0].numpy()}
            if hasattr(model, "meta_information"):
                s = model.meta_information(features).numpy()
                views["meta information s_i"] = s
                print(f"{config['model']}: s_i std over items per dimension {np.round(s.std(axis=0), 3).tolist()}")
        for name, view in views.items():
            accuracy, r2 = probe(view, kind, factors)
            print(f"{config['model']}: {name}: kind accuracy {accuracy:.3f}, factors R^2 {r2:.3f}")


if __name__ == "__main__":
    main()
