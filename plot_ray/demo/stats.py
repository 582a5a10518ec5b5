"""Statistics across runs: a paired bootstrap over seeds and units, and Holm's correction.

    paired_difference(a, b) -> Difference(estimate, low, high, p, n_seeds, n_units)
    holm(p_values)          -> the Holm-adjusted p-values, in the same order

Two arms of an experiment (a method without and with PLOT) are trained with the same seeds and
evaluated on the same units (behaviours for ASR, prompts for over-refusal). ``a[s, u]`` is arm
A's score on unit ``u`` in seed ``s``'s run (for ASR, the fraction of that behaviour's test cases
judged harmful), ``b`` likewise. The statistic is the mean of ``b - a`` over seeds and units:
the difference of the arms' mean scores, HarmBench's ASR averaged over seeds when units are
behaviours. The bootstrap resamples seeds and units with replacement, the same draw for both
arms (a seed's two runs and a behaviour's two sets of test cases stay paired), so the interval
carries both sources of noise: which seeds trained and which behaviours were asked.

Pure numpy, no Ray; the report's numbers recompute from the per-test-case table with these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Difference", "holm", "paired_difference"]


@dataclass(frozen=True)
class Difference:
    """``estimate`` (B minus A, in the scores' units), its ``level`` interval ``[low, high]``
    (bootstrap percentiles), the two-sided bootstrap ``p`` (the share of resampled differences
    on the far side of zero, doubled; at least ``1 / resamples``), the grid's size, and each
    arm's mean over the same seeds and units (``mean_b - mean_a == estimate``)."""

    estimate: float
    low: float
    high: float
    p: float
    n_seeds: int
    n_units: int
    level: float = 0.95
    resamples: int = 10_000
    mean_a: float = float("nan")
    mean_b: float = float("nan")

    @property
    def resolved(self) -> str:
        """ "lower", "higher" or "none": where the whole interval lies relative to zero."""
        if self.high < 0:
            return "lower"
        if self.low > 0:
            return "higher"
        return "none"


def paired_difference(
    a: Sequence[Sequence[float]] | np.ndarray,
    b: Sequence[Sequence[float]] | np.ndarray,
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Mean of ``b - a`` over a (seeds x units) grid with a paired bootstrap interval and p.

    Args:
        a, b: ``[S, U]`` scores of the two arms; NaN where a unit has no observation in a seed
            (such units are left out of both arms, in every seed).
        resamples: bootstrap draws of seeds and units (each with replacement).
        level: the interval's coverage.
        seed: the bootstrap's random generator.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must be [seeds, units] of one shape, got {a.shape}, {b.shape}")
    keep = ~(np.isnan(a).any(0) | np.isnan(b).any(0))
    diff = (b - a)[:, keep]
    n_seeds, n_units = diff.shape
    if n_seeds == 0 or n_units == 0:
        raise ValueError("no seed or no unit observed in both arms")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    units = rng.integers(0, n_units, size=(resamples, n_units))
    # mean over the drawn seeds and units of diff[s, u] = mean_s (mean_u diff[s, u])
    per_seed = np.stack([diff[:, u].mean(1) for u in units])  # [resamples, S]
    stats = np.take_along_axis(per_seed, seeds, axis=1).mean(1)
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    far = min(int((stats <= 0).sum()), int((stats >= 0).sum()))
    p = min(1.0, max(2 * far, 1) / resamples)
    return Difference(
        float(diff.mean()),
        float(low),
        float(high),
        p,
        n_seeds,
        n_units,
        level,
        resamples,
        mean_a=float(a[:, keep].mean()),
        mean_b=float(b[:, keep].mean()),
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (family-wise error across the tests), in the
    order given: the k-th smallest p is multiplied by (m - k + 1), and the adjusted values are
    made non-decreasing in that order and capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
