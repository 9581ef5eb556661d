r"""Hyper-parameter sweeps with Ray Tune (2.6.3, the version RecBole 1.2.1 allows).

Unlike RecBole's own Ray example, each trial reports the validation metric after every epoch
(from inside RecBole's trainer), so ASHA can stop poor trials early; trials never evaluate the test
split (model selection uses validation only); the best configuration is trained once more at the
end, from the ``best_config.yaml`` written for it, and only that run is tested.

    python run_tune.py --model=MetaMMF_GCN --dataset=tiktok --space=properties/tune/metammf.yaml

The search space is YAML, one key per hyper-parameter::

    d_s: {grid: [2, 3, 4, 5]}          # every value (grids multiply)
    cp_rank: {range: [4, 32, 4]}        # grid over range(4, 32 + 1, 4), inclusive
    learning_rate: {choice: [1e-4, 1e-3]}   # one value at random per sample
    dropout: {uniform: [0.0, 0.5]}
    reg_weight: {loguniform: [1e-8, 1]}
    embedding_size: 32                  # a plain value: fixed for every trial

``--num-samples N`` draws N samples of the random keys for every grid point.

Phases: :mod:`.space` (the search-space language), :mod:`.trial` (one trial, reporting after every epoch),
:mod:`.results` (the trials' rows from Ray's ``ResultGrid``, the tables, ``best_config.yaml``) and
:mod:`.sweep` (:func:`~.sweep.run_sweep`).
"""
