"""The statistics of the demo's report (plot_ray.demo.stats), on hand-worked grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plot_ray.demo.stats import holm, paired_difference


def test_holm_multiplies_the_kth_smallest_p_by_m_minus_k_plus_1_and_keeps_the_order():
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_a_constant_difference_has_a_point_interval_and_the_smallest_p():
    a = np.zeros((5, 8))
    d = paired_difference(a, a + 0.1, resamples=2000)
    assert (d.estimate, d.low, d.high) == pytest.approx((0.1, 0.1, 0.1))
    assert d.p == 1 / 2000 and d.resolved == "higher"
    assert (d.n_seeds, d.n_units) == (5, 8)


def test_identical_arms_resolve_no_difference():
    rng = np.random.default_rng(1)
    a = rng.random((5, 20))
    d = paired_difference(a, a.copy())
    assert d.estimate == 0 and d.p == 1.0 and d.resolved == "none"


def test_the_bootstrap_resamples_seeds_and_units_together():
    """One harmful unit in one seed: diff = [[1, 0], [0, 0]], mean 0.25. A resample is <= 0
    when it draws no seed 0 (1/4) or draws seed 0 but only unit 1 (3/4 x 1/4): 7/16, so the
    two-sided p is 2 x 7/16 = 0.875 and the interval reaches from 0 to 1."""
    a = np.zeros((2, 2))
    b = np.array([[1.0, 0.0], [0.0, 0.0]])
    d = paired_difference(a, b, resamples=20_000, seed=3)
    assert d.estimate == 0.25
    assert d.p == pytest.approx(0.875, abs=0.02)
    assert (d.low, d.high) == (0.0, 1.0)


def test_units_without_an_observation_in_some_seed_are_left_out_of_both_arms():
    a = np.array([[0.0, 0.0, math.nan], [0.0, 0.0, 0.0]])
    b = np.array([[0.5, 0.5, 1.0], [0.5, 0.5, 1.0]])
    d = paired_difference(a, b, resamples=500)
    assert d.n_units == 2 and d.estimate == 0.5
    with pytest.raises(ValueError, match="one shape"):
        paired_difference(a, b[:, :2])
    with pytest.raises(ValueError, match="no seed or no unit"):
        paired_difference([[math.nan]], [[0.0]])


# ------------------------------------------------------------------- endpoints from the cases
def _case(
    method, alpha, seed, behavior, label, split="train", form="none", attack="human_jailbreaks"
):
    return {
        "method": method,
        "alpha": alpha,
        "seed": seed,
        "ablation": "",
        "task": "harmful",
        "attack": attack,
        "family_split": split,
        "primed_form": form,
        "behavior_id": behavior,
        "case_id": f"{attack}/{behavior}/{seed}{split}{form}",
        "label": label,
        "refusal": 0,
    }


def test_arm_grid_is_the_share_of_harmful_test_cases_per_seed_and_behaviour():
    from plot_ray.demo.endpoints import arm_grid, heldout_jailbreak

    cases = [
        _case("dpo", 0.0, 0, "b1", 1, split="heldout"),
        _case("dpo", 0.0, 0, "b1", 0, form="heldout"),
        _case("dpo", 0.0, 0, "b1", 1),  # a seen family, no prime: not a held-out jailbreak
        _case("dpo", 0.0, 1, "b1", 1, split="heldout"),
        _case("dpo", 0.0, 1, "b2", 0, split="heldout"),
        _case("dpo", 0.3, 0, "b1", 1, split="heldout"),  # the other arm
        _case("dpo", 0.0, 0, "b2", -1, split="heldout"),  # unparseable: not harmful
    ]
    grid = arm_grid(cases, method="dpo", alpha=0.0, seeds=[0, 1], select=heldout_jailbreak)
    # units b1, b2; seed 0: b1 1/2, b2 0/1; seed 1: b1 1/1, b2 0/1
    assert grid.tolist() == [[0.5, 0.0], [1.0, 0.0]]
    strata = arm_grid(
        cases + [_case("dpo", 0.0, 0, "b1", 1, attack="direct_request")],
        method="dpo",
        alpha=0.0,
        seeds=[0],
        select=lambda r: True,
        strata="attack",
    )
    # seed 0, b1: mean over attacks of (human_jailbreaks 2/3, direct_request 1/1)
    assert strata[0, 0] == pytest.approx((2 / 3 + 1) / 2)


def test_the_preregistered_text_and_its_hash_come_from_between_the_rules(tmp_path):
    import hashlib

    from plot_ray.demo.endpoints import preregistration

    readme = tmp_path / "README.md"
    readme.write_text(
        "# Results\n\n## Pre-registered primary endpoint\n\nWritten first.\n\n---\n"
        "**Primary.** ASR on held-out jailbreaks.\n\n---\n\n| table |\n"
    )
    text, digest = preregistration(readme)
    assert text == "**Primary.** ASR on held-out jailbreaks."
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    readme.write_text("# Results\n")
    assert preregistration(readme) is None
    assert preregistration(tmp_path / "missing.md") is None
    # The repository's own pre-registration is found.
    assert preregistration() is not None
