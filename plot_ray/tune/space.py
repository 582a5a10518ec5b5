"""The search space of a sweep: ``tune.space`` (dotted config keys → distributions) as Ray Tune
distributions, and every trial's configuration validated before anything starts.

Trial parameters are flat ``{dotted key: value}`` dicts, applied to the sweep's base config as
overrides, so a trial is exactly the run ``plot-ray train --config BASE key=value ...`` would do.
With ``tune.variants`` a trial also has a ``variant`` parameter, the name of the set of
overrides (``tune.variants.<name>``) it applies on top of the others.
"""

from __future__ import annotations

import itertools
from typing import Any

from plot_ray.config import ConfigError, PlotRayConfig, TuneConfig, apply_overrides, validate_config

__all__ = [
    "SEED_KEY",
    "VARIANT_KEY",
    "param_space",
    "grid_points",
    "trial_config",
    "trial_overrides",
    "with_variant",
    "check_space",
]

SEED_KEY = "train.seed"  # tune.seeds is a grid over this key
VARIANT_KEY = "variant"  # tune.variants is a grid over this parameter (a name, not a config key)
_GRID_LIMIT = 10_000  # more points than this are not checked one by one


def param_space(tune_cfg: TuneConfig) -> dict[str, Any]:
    """``tune.space`` + ``tune.seeds`` as a Ray Tune ``param_space`` (flat dotted keys).

    With ``tune.search=optuna`` every dimension must be one Optuna can sample: a ``grid`` is
    refused (naming its key), and ``tune.seeds`` must hold one seed, which becomes a constant.
    """
    from ray import tune

    optuna = tune_cfg.search == "optuna"
    space: dict[str, Any] = {}
    for key, dist in tune_cfg.space.items():
        kind, values = next(iter(dist.items()))
        if kind == "grid" and optuna:
            # Optuna samples one value per trial; it cannot promise every grid value a trial.
            raise ConfigError(
                f"tune.space.{key}: tune.search=optuna samples each trial's values and cannot "
                f"run a grid: write {{choice: {list(values)}}} (Optuna picks among them) or "
                "use tune.search=basic to run every value"
            )
        if kind == "grid":
            space[key] = tune.grid_search(list(values))
        elif kind == "choice":
            space[key] = tune.choice(list(values))
        elif kind == "uniform":
            space[key] = tune.uniform(*values)
        elif kind == "loguniform":
            space[key] = tune.loguniform(*values)
        else:  # randint: [low, high)
            space[key] = tune.randint(*values)
    if SEED_KEY in space:
        raise ConfigError(f"tune.space.{SEED_KEY}: use tune.seeds for seeds")
    if tune_cfg.variants:
        if optuna:
            raise ConfigError(
                "tune.variants: tune.search=optuna samples each trial's values and cannot "
                "promise every variant a trial; use tune.search=basic"
            )
        space[VARIANT_KEY] = tune.grid_search(list(tune_cfg.variants))
    if optuna:
        if len(tune_cfg.seeds) != 1:
            raise ConfigError(
                f"tune.seeds={list(tune_cfg.seeds)}: tune.search=optuna cannot repeat its "
                "sampled configurations per seed; give one seed (or use tune.search=basic, "
                "whose grid runs every configuration with every seed)"
            )
        space[SEED_KEY] = tune_cfg.seeds[0]
    else:
        space[SEED_KEY] = tune.grid_search(list(tune_cfg.seeds))
    return space


def grid_points(tune_cfg: TuneConfig) -> list[dict[str, Any]]:
    """Every combination of the listed values (grid and choice) and the ends of each range, with
    the seeds: the configurations :func:`check_space` validates."""
    axes: dict[str, list] = {SEED_KEY: list(tune_cfg.seeds)}
    for key, dist in tune_cfg.space.items():
        kind, values = next(iter(dist.items()))
        if kind == "randint":
            values = [values[0], values[1] - 1]
        axes[key] = list(values)
    if tune_cfg.variants:
        axes[VARIANT_KEY] = list(tune_cfg.variants)
    keys = list(axes)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]


def with_variant(params: dict[str, Any], variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A trial's parameters with its ``variant``'s overrides (from ``tune.variants``) spelled
    out beside its name; unchanged for a trial without one."""
    return {**params, **variants.get(params.get(VARIANT_KEY), {})}


def trial_overrides(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as config overrides: its ``variant`` (if any) replaced by that
    variant's keys from the base config's ``tune.variants``."""
    variants = (base.get("tune") or {}).get("variants") or {}
    if VARIANT_KEY in params and params[VARIANT_KEY] not in variants:
        raise ConfigError(
            f"trial variant {params[VARIANT_KEY]!r} is not in tune.variants ({list(variants)})"
        )
    return {k: v for k, v in with_variant(params, variants).items() if k != VARIANT_KEY}


def trial_config(base: dict[str, Any], params: dict[str, Any], **extra: Any) -> PlotRayConfig:
    """The validated config of one trial: ``base`` (a raw config dict) + ``params`` (its
    variant's keys in place of its name) + ``extra``."""
    return validate_config(apply_overrides(base, {**trial_overrides(base, params), **extra}))


def check_space(base: dict[str, Any], tune_cfg: TuneConfig) -> int:
    """Validate the configuration at every grid point (and range end) before the sweep starts;
    raises :class:`ConfigError` naming the point and the key. Returns the number of points."""
    points = grid_points(tune_cfg)
    for point in points[:_GRID_LIMIT]:
        try:
            trial_config(base, point)
        except ConfigError as exc:
            where = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ConfigError(f"the sweep's trial {{{where}}} is invalid: {exc}") from None
    return len(points)
