"""The demo report's arithmetic on hand-made result rows: group statistics, the verdict's
wording and ASR at matched helpfulness (interpolation along each method's alpha path), each
checked against values worked out by hand."""

from __future__ import annotations

import dataclasses

import pytest

from plot_ray.demo import PROFILES
from plot_ray.demo.report import alpha_path, asr_at_level, group_stats, matched_table, verdicts

PROFILE = dataclasses.replace(
    PROFILES["default"], name="t", methods=("dpo", "aot"), alphas=(0.0, 0.3, 1.0)
)
# (method, alpha) -> (over-refusal, mean ASR) per seed
POINTS = {
    ("dpo", 0.0): [(0.47, 0.05), (0.47, 0.09)],
    ("dpo", 0.3): [(0.04, 0.09), (0.06, 0.09)],
    ("dpo", 1.0): [(0.03, 0.16), (0.03, 0.16)],
    # AOT's path turns back: over-refusal 0.2 -> 0.5 -> 0.1
    ("aot", 0.0): [(0.2, 0.10)],
    ("aot", 0.3): [(0.5, 0.20)],
    ("aot", 1.0): [(0.1, 0.05)],
}


def _rows() -> list[dict]:
    rows = []
    for (method, alpha), seeds in POINTS.items():
        for seed, (refusal, asr) in enumerate(seeds):
            ident = {
                "model": f"{method}-a{alpha:g}-s{seed}",
                "method": method,
                "variant": "vanilla" if alpha == 0 else "plot",
                "alpha": alpha,
                "seed": seed,
                "ablation": "",
            }
            rows.append({**ident, "metric": "over_refusal", "value": refusal, "n": 40})
            rows.append({**ident, "metric": "asr/mean", "value": asr, "n": 24})
    # an ablation run never joins a method's path
    rows.append({**rows[-1], "model": "x", "ablation": "cost=index", "value": 0.0})
    return rows


def test_group_stats_are_mean_and_sample_std_over_the_matching_runs():
    s = group_stats(_rows(), "asr/mean", method="dpo", alpha=0.0, ablation="")
    assert s["mean"] == pytest.approx(0.07)
    assert s["std"] == pytest.approx(0.0282842712)  # sqrt(((.02)^2 + (.02)^2) / 1)
    assert (s["runs"], s["n"]) == (2, 24)
    assert group_stats(_rows(), "asr/mean", method="aot", alpha=0.0, ablation="")["std"] is None
    assert group_stats(_rows(), "asr/mean", method="sft") is None


def test_alpha_path_holds_group_means_in_alpha_order():
    path = alpha_path(_rows(), "dpo", PROFILE.alphas)
    assert [a for a, _, _ in path] == [0.0, 0.3, 1.0]
    assert path[1][1:] == pytest.approx((0.05, 0.09))


@pytest.mark.parametrize(
    ("method", "level", "asr", "alphas"),
    [
        # 0.07 + (0.4 - 0.47) * (0.09 - 0.07) / (0.05 - 0.47)
        ("dpo", 0.4, 0.07 + 0.07 * 0.02 / 0.42, (0.0, 0.3)),
        # on the second segment: 0.09 + (0.04 - 0.05) * (0.16 - 0.09) / (0.03 - 0.05)
        ("dpo", 0.04, 0.125, (0.3, 1.0)),
        # a path's own point: both segments meet there at 0.09
        ("dpo", 0.05, 0.09, (0.0, 0.3)),
        # crossed twice: 0.1 + 0.1 * 0.1 / 0.3 on the first segment, 0.2 - 0.2 * 0.15 / 0.4
        # on the second; the lower one counts
        ("aot", 0.3, 0.125, (0.3, 1.0)),
        ("aot", 0.05, None, None),  # below the path's reach: no extrapolation
        ("dpo", 0.6, None, None),
    ],
)
def test_asr_at_level_interpolates_along_the_path_and_takes_the_lowest_crossing(
    method, level, asr, alphas
):
    hit = asr_at_level(alpha_path(_rows(), method, PROFILE.alphas), level)
    if asr is None:
        assert hit is None
    else:
        assert hit[0] == pytest.approx(asr)
        assert hit[1] == alphas


def test_a_level_that_a_mean_reaches_only_up_to_rounding_is_reached():
    """The regression: DPO's alpha-0.3 over-refusal was fmean([0.05, 0.125, 0.125]), which is
    0.09999999999999999, and the 0.1 level was dropped from the matched table."""
    import statistics

    mean = statistics.fmean([0.05, 0.125, 0.125])
    assert mean < 0.1  # the float the report met
    path = [(0.0, 0.4, 0.2), (0.3, mean, 0.3)]
    assert asr_at_level(path, 0.1) == (pytest.approx(0.3), (0.0, 0.3))
    assert asr_at_level([(0.3, mean, 0.25)], 0.1) == (0.25, (0.3, 0.3))


def test_asr_at_level_of_a_single_point():
    assert asr_at_level([(0.3, 0.2, 0.1)], 0.2) == (0.1, (0.3, 0.3))
    assert asr_at_level([(0.3, 0.2, 0.1)], 0.1) is None
    assert asr_at_level([], 0.1) is None


def test_no_matched_table_when_no_path_reaches_a_level():
    assert matched_table(_rows(), PROFILE, levels=(0.01, 0.9)) == []


def test_matched_table_cells():
    table = matched_table(_rows(), PROFILE, levels=(0.01, 0.05, 0.2, 0.3))
    assert table == [
        {
            "method": "DPO",
            "over-refusal reached (α path)": "0.03–0.47",
            # 0.01 is reached by neither method: no column
            "ASR at over-refusal 0.05 (%)": "9.0 (α 0–0.3)",
            # 0.07 + (0.2 - 0.47) * 0.02 / -0.42 = 0.082857
            "ASR at over-refusal 0.2 (%)": "8.3 (α 0–0.3)",
            "ASR at over-refusal 0.3 (%)": "7.8 (α 0–0.3)",  # 0.078095
        },
        {
            "method": "AOT",
            "over-refusal reached (α path)": "0.10–0.50",
            "ASR at over-refusal 0.05 (%)": "—",
            # first segment 0.10 at its start; second 0.2 - 0.3 * 0.15 / 0.4 = 0.0875
            "ASR at over-refusal 0.2 (%)": "8.8 (α 0.3–1)",
            "ASR at over-refusal 0.3 (%)": "12.5 (α 0.3–1)",
        },
    ]


def test_verdict_states_the_direction_and_size_against_the_seed_spread():
    profile = dataclasses.replace(PROFILE, methods=("dpo",))
    (line,) = verdicts(_rows(), profile)
    # +2.0 points; spreads 2.83 (vanilla) and 0 (PLOT) points: rms sqrt((8 + 0) / 2) = 2.0
    assert line.startswith(
        "DPO + PLOT (α=0.3) vs DPO: PLOT raised the mean ASR by 2.0 points (7.0% → 9.0%; "
        "1.0× the seed spread of 2.0 points): not beyond seed noise"
    )
    assert "over-refusal 0.47 → 0.05 (lower is better)" in line


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_run_of_every_profile_is_a_valid_config(name, tmp_path):
    # every trial of the demo's sweeps, checked as the sweep would check it before starting:
    # an ablation that is invalid (or a no-op the config refuses) fails here, not an hour in
    from plot_ray.config import load_config, validate_config
    from plot_ray.demo.pipeline import eval_overrides, run_name, sweep_configs
    from plot_ray.tune import check_space

    profile = PROFILES[name]
    sweeps = sweep_configs(tmp_path, profile)
    counts = [check_space(base, validate_config(base).tune) for base in sweeps]
    main = len(profile.methods) * len(profile.alphas) * len(profile.seeds)
    primary = 2 * len(profile.primary_seeds)  # the primary method's vanilla and PLOT runs
    controls = len(profile.controls) * len(profile.seeds_of(profile.ablation_method))
    extra = len(profile.curve_alphas) + len(profile.ablations) + len(profile.vanilla_curve)
    assert counts == [n for n in (main, primary, controls, extra) if n]
    # ...and the evaluation of all of them (model names are checked there)
    method, alpha = profile.ablation_method, profile.main_alpha
    runs = [
        {"model": run_name(m, a, s), "path": str(tmp_path / "r")}
        for m in profile.methods
        for a in profile.alphas
        for s in profile.seeds_of(m)
    ]
    runs += [
        {"model": run_name(method, alpha, s, label), "path": "r"}
        for label in profile.controls
        for s in profile.seeds_of(method)
    ]
    runs += [
        {"model": run_name(method, alpha, 0, label), "path": "r"} for label in profile.ablations
    ]
    runs += [
        {"model": run_name(method, 0.0, 0, label), "path": "r"} for label in profile.vanilla_curve
    ]
    ev = load_config(overrides=eval_overrides(tmp_path, profile, runs)).eval
    assert len({m.name for m in ev.models}) == len(runs) + 1  # the base model too
