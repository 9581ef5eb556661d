r"""Compatibility shims for the pinned third-party versions; each says who needs it and when it can go."""

import warnings


def silence_known_warnings():
    r"""Warnings raised inside RecBole 1.2.1 on every run, which users cannot act on."""
    # pandas 2.2 warns about RecBole 1.2.1's `df[field].fillna(..., inplace=True)` (dataset.py);
    # remove when RecBole stops using chained inplace fillna (or when the pandas<2.3 pin goes).
    warnings.filterwarnings("ignore", category=FutureWarning, message="A value is trying to be set on a copy")
    # torch >= 2.4 deprecates torch.cuda.amp.GradScaler, which RecBole 1.2.1's trainer builds every epoch;
    # remove when RecBole uses torch.amp.GradScaler.
    warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch.cuda.amp.GradScaler")
