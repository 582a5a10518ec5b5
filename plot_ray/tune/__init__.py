"""Ray Tune sweeps over any config keys: one Ray Train + DeepSpeed run per trial.

- :mod:`~plot_ray.tune.space`: ``tune.space`` (+ ``tune.seeds``, ``tune.variants``) → Tune
  distributions; every trial validated first.
- :mod:`~plot_ray.tune.sweep`: :func:`run_sweep`, the Tuner, its scheduler (ASHA) and search
  algorithm (Optuna), and the function trainable.
- :mod:`~plot_ray.tune.report`: ``trials.parquet``, ``summary.md``, ``metric_vs_alpha.png``,
  ``validation_curves.png``.
"""

from plot_ray.tune.report import SweepResult
from plot_ray.tune.space import (
    check_space,
    grid_points,
    param_space,
    trial_config,
    trial_overrides,
)
from plot_ray.tune.sweep import (
    concurrency,
    run_sweep,
    scheduler,
    searcher,
    sweep_dir,
)

__all__ = [
    "SweepResult",
    "check_space",
    "concurrency",
    "grid_points",
    "param_space",
    "run_sweep",
    "scheduler",
    "searcher",
    "sweep_dir",
    "trial_config",
    "trial_overrides",
]
