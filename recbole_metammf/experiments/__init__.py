r"""Experiments on top of the training pipeline: side-by-side benchmarks (:mod:`.benchmark`: plan, run,
summary, command) and Ray Tune sweeps (:mod:`.tune`: space, trial, results, sweep)."""
