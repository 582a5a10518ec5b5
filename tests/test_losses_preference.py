"""Preference distributions from token counts: hand-made examples and every bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plot_ray.config import PlotConfig
from plot_ray.losses import PreferenceTargets, preference_distribution, preference_tilt

# Q+ = [3/4, 1/4, 0, 0], Q- = [1/4, 1/4, 1/2, 0]  ->  Q_diff = [1/2, 0, -1/2, 0]; token 3 unseen.
POS = [3, 1, 0, 0]
NEG = [1, 1, 2, 0]


def _t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_shift_on_observed_support():
    # Q_diff - min over S = [1, 1/2, 0] -> / (3/2); the unseen token stays at 0
    out = preference_distribution(POS, NEG, "shift")
    torch.testing.assert_close(out, _t(2 / 3, 1 / 3, 0, 0))


def test_shift_on_the_whole_vocabulary():
    # min over V is -1/2: [1, 1/2, 0, 1/2] / 2
    out = preference_distribution(POS, NEG, "shift", support="vocab")
    torch.testing.assert_close(out, _t(0.5, 0.25, 0, 0.25))


def test_relu():
    torch.testing.assert_close(preference_distribution(POS, NEG, "relu"), _t(1, 0, 0, 0))


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_softmax_with_temperature(tau):
    # Q_diff / max|Q_diff| = [1, 0, -1] on S
    e = [math.exp(1 / tau), 1.0, math.exp(-1 / tau)]
    expected = _t(*(x / sum(e) for x in e), 0.0)
    torch.testing.assert_close(preference_distribution(POS, NEG, "softmax", tau=tau), expected)


def test_smoothing_mixes_with_uniform_on_the_support():
    out = preference_distribution(POS, NEG, "shift", smoothing=0.1)
    torch.testing.assert_close(out, _t(0.9 * 2 / 3 + 0.1 / 3, 0.9 / 3 + 0.1 / 3, 0.1 / 3, 0))
    out = preference_distribution(POS, NEG, "relu", support="vocab", smoothing=1.0)
    torch.testing.assert_close(out, _t(0.25, 0.25, 0.25, 0.25))


def test_accepts_tensors_arrays_and_lists_of_any_numeric_dtype():
    ref = preference_distribution(POS, NEG)
    torch.testing.assert_close(
        preference_distribution(np.array(POS), np.array(NEG, dtype=np.int32)), ref
    )
    torch.testing.assert_close(
        preference_distribution(torch.tensor(POS), torch.tensor(NEG).float()), ref
    )
    assert float(ref.sum()) == pytest.approx(1.0)


def test_tilt_is_normalised_q_diff_over_tau():
    torch.testing.assert_close(preference_tilt(POS, NEG, tau=0.5), _t(2, 0, -2, 0))


@pytest.mark.parametrize(
    "pos, neg, match",
    [
        ([0, 0, 0], [1, 2, 0], "pos_counts are all zero"),
        ([1, 2, 0], [0, 0, 0], "neg_counts are all zero"),
        ([0, 0, 0], [0, 0, 0], "all zero"),
        ([1, -1, 3], [1, 1, 1], "negative counts at token ids \\[1\\]"),
        ([1, 1, 1], [1, float("nan"), 1], "non-finite"),
        ([1, float("inf"), 1], [1, 1, 1], "non-finite"),
        ([1, 2, 3], [1, 2], "same vocabulary"),
        ([[1, 2], [3, 4]], [[1, 2], [3, 4]], "1-D"),
        ([True, False], [True, True], "real counts"),
        ([2, 4, 0], [1, 2, 0], "no PLOT signal"),  # identical frequencies: Q_diff == 0
    ],
)
def test_bad_counts_raise(pos, neg, match):
    with pytest.raises(ValueError, match=match):
        preference_distribution(pos, neg)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"transform": "sigmoid"}, "transform"),
        ({"support": "all"}, "support"),
        ({"tau": 0.0}, "tau"),
        ({"smoothing": 1.5}, "smoothing"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        preference_distribution(POS, NEG, **kwargs)


def test_targets_from_count_matrices_and_config():
    pos = torch.tensor([POS, [0, 5, 5, 0]])
    neg = torch.tensor([NEG, [0, 5, 0, 5]])
    cfg = PlotConfig(transform="relu", tau=0.5)
    targets = PreferenceTargets.from_counts(pos, neg, cfg, names=["harmless", "logic"])
    assert targets.names == ["harmless", "logic"] and len(targets) == 2
    assert targets.targets.dtype == torch.float32 and targets.targets.shape == (2, 4)
    torch.testing.assert_close(targets.targets[0], torch.tensor([1.0, 0, 0, 0]))
    torch.testing.assert_close(
        targets.targets[1], torch.tensor([0.0, 0, 1, 0])
    )  # Q_diff = [0, 0, .5, -.5]
    torch.testing.assert_close(targets.log_tilts[0], torch.tensor([2.0, 0, -2, 0]))
    assert targets.index("logic") == 1
    ext = targets.extremes(k=1)
    assert ext["harmless"] == {"preferred": [(0, 0.5)], "rejected": [(2, -0.5)]}
    # keyword overrides win over the config
    shifted = PreferenceTargets.from_counts(pos, neg, cfg, transform="shift")
    torch.testing.assert_close(shifted.targets[0], torch.tensor([2 / 3, 1 / 3, 0, 0]))


def test_targets_errors_name_the_subpreference():
    pos = torch.tensor([POS, [0, 0, 0, 0]])
    neg = torch.tensor([NEG, [1, 1, 0, 0]])
    with pytest.raises(ValueError, match="'coding': pos_counts are all zero"):
        PreferenceTargets.from_counts(pos, neg, names=["math", "coding"])
    with pytest.raises(ValueError, match="2 names for 1 rows"):
        PreferenceTargets.from_counts(POS, NEG, names=["a", "b"])
    with pytest.raises(ValueError, match="both be \\(C, V\\)"):
        PreferenceTargets.from_counts(torch.ones(2, 4), torch.ones(2, 5))
    with pytest.raises(KeyError, match="unknown sub-preference"):
        PreferenceTargets.from_counts(POS, NEG).index("nope")
