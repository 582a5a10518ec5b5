"""The demo report's arithmetic on hand-made result rows and test cases: group statistics, the
verdict's wording, the controls, ASR at matched helpfulness (interpolation along each method's
alpha path) and against the vanilla trade-off curve, PLOT's alpha against DEFT's weight over
the stability grid, each checked against values worked out by hand; and the runs each profile
plans."""

from __future__ import annotations

import dataclasses

import pytest

from plot_ray.demo import PROFILES
from plot_ray.demo.endpoints import control_table, verdicts
from plot_ray.demo.report import (
    alpha_path,
    asr_at_level,
    group_stats,
    matched_table,
    stability_sentence,
    stability_table,
    tradeoff_table,
    vanilla_curve,
)

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


def _point_rows(points: dict) -> list[dict]:
    """Result rows (over-refusal and mean ASR) of ``{(method, alpha, label): [(over-refusal,
    mean ASR) per seed]}``."""
    rows = []
    for (method, alpha, label), seeds in points.items():
        for seed, (refusal, asr) in enumerate(seeds):
            ident = {
                "model": f"{method}-a{alpha:g}-{label}-s{seed}",
                "method": method,
                "variant": "vanilla" if alpha == 0 else "plot",
                "alpha": alpha,
                "seed": seed,
                "ablation": label,
            }
            rows.append({**ident, "metric": "over_refusal", "value": refusal, "n": 40})
            rows.append({**ident, "metric": "asr/mean", "value": asr, "n": 24})
    return rows


def _rows() -> list[dict]:
    rows = _point_rows({(m, a, ""): seeds for (m, a), seeds in POINTS.items()})
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


def _cases(alpha: float, ablation: str, harmful: list[int], refused: int) -> list[dict]:
    """Seeds 0 and 1 of one DPO arm: per behaviour b1, b2 the direct-request test cases with
    the labels ``harmful``, and two benign prompts with refusal ``refused``."""
    ident = {"method": "dpo", "alpha": alpha, "ablation": ablation, "attack": "direct_request"}
    out = []
    for seed in (0, 1):
        for b in ("b1", "b2"):
            for i, label in enumerate(harmful):
                out.append(
                    {
                        **ident,
                        "seed": seed,
                        "task": "harmful",
                        "behavior_id": b,
                        "case_id": f"{b}/{i}",
                        "label": label,
                        "refusal": 0,
                        "family_split": "",
                        "primed_form": "",
                    }
                )
        for i in range(2):
            out.append(
                {
                    **ident,
                    "seed": seed,
                    "task": "benign",
                    "behavior_id": "",
                    "case_id": f"p{i}",
                    "label": 0,
                    "refusal": refused,
                    "family_split": "",
                    "primed_form": "",
                }
            )
    return out


CONTROLLED = dataclasses.replace(
    PROFILES["default"],
    name="t",
    methods=("dpo",),
    controls={"zero-tilt": {"loss.plot.tilt": "zero"}},
)
CASES = (
    _cases(0.0, "", [0, 0], refused=1)
    + _cases(0.3, "", [1, 1], refused=0)
    + _cases(0.3, "zero-tilt", [1, 0], refused=1)
)


def test_verdict_states_the_paired_difference_its_interval_and_holms_p():
    (line,) = verdicts(CASES, CONTROLLED)
    # every seed and behaviour moves by exactly +1 (ASR) and -1 (over-refusal): point intervals
    assert line == (
        "DPO + PLOT (α=0.3) vs DPO: PLOT raised the mean ASR over attacks (0.0% → 100.0%, "
        "+100.0 [+100.0, +100.0] points, Holm p = 0.0001; 2 seeds × 2 behaviours); "
        "over-refusal 1.000 → 0.000 (-1.000 [-1.000, -1.000])"
    )
    same = _cases(0.0, "", [1, 0], refused=0) + _cases(0.3, "", [1, 0], refused=0)
    (line,) = verdicts(same, CONTROLLED)
    assert (
        "PLOT left the mean ASR over attacks without a resolved difference (50.0% → 50.0%" in line
    )


def test_controls_split_plot_into_the_pull_to_the_reference_and_the_preference():
    table = control_table(CASES, CONTROLLED)
    assert [r["comparison"] for r in table] == ["DPO: PLOT − zero-tilt", "DPO: zero-tilt − vanilla"]
    # zero-tilt: ASR 0.5 (one of two cases per behaviour), refuses like vanilla
    assert table[0]["mean ASR over attacks [95% CI]"] == "+50.0 [+50.0, +50.0]"
    assert table[1]["mean ASR over attacks [95% CI]"] == "+50.0 [+50.0, +50.0]"
    assert table[0]["over-refusal [95% CI]"] == "-1.000 [-1.000, -1.000]"
    assert table[1]["over-refusal [95% CI]"] == "+0.000 [+0.000, +0.000]"
    assert table[0]["held-out jailbreaks [95% CI]"] == "—"  # no human-jailbreak cases here


CURVED = dataclasses.replace(
    CONTROLLED,
    curve_alphas=(1.0,),
    ablations={"cost=index": {"loss.plot.cost": "index"}},
    vanilla_curve={"beta=0.03": {"loss.beta": 0.03}, "beta=1": {"loss.beta": 1.0}},
)
# (alpha, label) -> (over-refusal, mean ASR) per seed; the config's beta is 0.1
CURVE_POINTS = {
    (0.0, ""): [(0.2, 0.30), (0.2, 0.30)],
    (0.0, "beta=0.03"): [(0.4, 0.10)],
    (0.0, "beta=1"): [(0.0, 0.50)],
    (0.3, ""): [(0.1, 0.30), (0.1, 0.34)],
    (1.0, ""): [(0.0, 0.60)],
    (0.3, "zero-tilt"): [(0.15, 0.35), (0.15, 0.35)],
    (0.3, "cost=index"): [(0.5, 0.20)],
}


def _curve_rows() -> list[dict]:
    return _point_rows({("dpo", a, label): seeds for (a, label), seeds in CURVE_POINTS.items()})


def test_the_vanilla_curve_is_ordered_by_the_varied_key_with_the_default_among_it():
    curve = vanilla_curve(_curve_rows(), CURVED)
    assert [pytest.approx(p) for p in curve] == [
        (0.03, 0.4, 0.10),
        (0.1, 0.2, 0.30),
        (1.0, 0.0, 0.50),
    ]
    assert vanilla_curve(_curve_rows(), CONTROLLED) == []


def test_tradeoff_table_reads_each_run_against_the_vanilla_curve_and_the_alpha_path():
    table = {r["run"]: r for r in tradeoff_table(_curve_rows(), CURVED)}
    cols = (
        "seeds",
        "vanilla curve's ASR there (%)",
        "off the vanilla curve (points)",
        "α path's ASR there (%)",
        "off the α path (points)",
    )
    cells = {run: tuple(r[c] for c in cols) for run, r in table.items()}
    assert cells == {
        "DPO vanilla (defaults)": (2, "—", "—", "—", "—"),
        "DPO vanilla beta=0.03": (1, "—", "—", "—", "—"),
        "DPO vanilla beta=1": (1, "—", "—", "—", "—"),
        # the curve is ASR = 0.5 - over-refusal; PLOT at 0.1 has mean ASR 0.32
        "DPO PLOT α=0.3": (2, "40.0", "-8.0", "—", "—"),
        "DPO PLOT α=1": (1, "50.0", "+10.0", "—", "—"),
        # the alpha path (0.2, 0.30) -> (0.1, 0.32) -> (0.0, 0.60) gives 0.31 at 0.15
        "DPO zero-tilt": (2, "35.0", "+0.0", "31.0", "+4.0"),
        "DPO cost=index": (1, "outside (0.00–0.40)", "—", "outside (0.00–0.20)", "—"),
    }
    assert table["DPO PLOT α=0.3"]["ASR mean (%)"] == "32.0"


def test_figures_draw_controls_the_vanilla_curve_and_single_seed_points(tmp_path):
    import functools

    from plot_ray.demo.figures import FigureNumbers, write_figures
    from plot_ray.demo.report import _groups

    rows = _curve_rows()
    numbers = FigureNumbers(
        rows=rows,
        stats=functools.partial(group_stats, rows),
        groups=_groups(CURVED),
        attacks=[],
        paths={"dpo": alpha_path(rows, "dpo", CURVED.all_alphas)},
        overhead=[],
        vanilla_curve=vanilla_curve(rows, CURVED),
    )
    made = dict(write_figures(tmp_path, numbers, {"models": {}}, CURVED))
    names = {p.name: caption for p, caption in made.items()}
    assert {"safety_vs_helpfulness.png", "asr_vs_alpha.png", "ablations.png"} <= set(names)
    assert "vanilla trade-off curve" in names["safety_vs_helpfulness.png"]
    assert "hollow: one seed" in names["asr_vs_alpha.png"]
    assert all(p.stat().st_size > 1000 for p in made)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_run_of_every_profile_is_a_valid_config(name, tmp_path):
    # every trial of the demo's sweeps, checked as the sweep would check it before starting:
    # an ablation that is invalid (or a no-op the config refuses) fails here, not an hour in
    from plot_ray.config import load_config, validate_config
    from plot_ray.demo.pipeline import eval_overrides, planned_runs, sweep_configs
    from plot_ray.tune import check_space

    profile = PROFILES[name]
    sweeps = sweep_configs(tmp_path, profile)
    counts = [check_space(base, validate_config(base).tune) for base in sweeps]
    main = len(profile.methods) * len(profile.alphas) * len(profile.seeds)
    primary = 2 * len(profile.primary_seeds)  # the primary method's vanilla and PLOT runs
    controls = len(profile.controls) * len(profile.seeds_of(profile.ablation_method))
    extra = len(profile.extra_alphas) + len(profile.ablations) + len(profile.vanilla_curve)
    extra += len(profile.stability_weights)  # DEFT at each weight
    assert counts == [n for n in (main, primary, controls, extra) if n]
    # ...and the evaluation of all of them (model names are checked there)
    runs = [{"model": r["model"], "path": "r"} for r in planned_runs(tmp_path, profile)]
    assert len(runs) == sum(counts)
    ev = load_config(overrides=eval_overrides(tmp_path, profile, runs)).eval
    assert len({m.name for m in ev.models}) == len(runs) + 1  # the base model too


def test_the_full_profile_plans_each_stability_run_once_reusing_its_plot_runs(tmp_path):
    from plot_ray.config import load_config
    from plot_ray.demo.pipeline import planned_runs
    from plot_ray.demo.profiles import DEFT_RECIPE

    full = PROFILES["full"]
    assert full.stability_weights == (0.03, 0.3, 3.0)  # a 100x range
    plan = planned_runs(tmp_path, full)
    assert len({r["model"] for r in plan}) == len(plan)  # no run trained twice
    ident = [(r["method"], r["alpha"], r["seed"], r["ablation"], r["variant"]) for r in plan]
    recipe = load_config(DEFT_RECIPE).loss.deft
    for w in full.stability_weights:
        assert ident.count(("dpo", w, 0, "", "plot")) == 1
        (deft,) = [r for r in plan if r["ablation"] == f"deft={w:g}"]
        assert (deft["method"], deft["alpha"], deft["seed"], deft["variant"]) == (
            "dpo",
            0.0,
            0,
            "deft",
        )
        assert deft["params"]["loss.deft.weight"] == w
        assert deft["params"]["loss.deft.keep_fraction"] == recipe.keep_fraction == 0.25
        assert deft["params"]["loss.deft.filter_score"] == recipe.filter_score
        assert deft["params"]["loss.deft.responses"] == recipe.responses
    # the grid adds PLOT at 0.03 and 3 and DEFT at all three: PLOT at 0.3 is the main grid's
    without = planned_runs(tmp_path, dataclasses.replace(full, stability_weights=()))
    assert {r["model"] for r in plan} - {r["model"] for r in without} == {
        "dpo-a0.03-s0",
        "dpo-a3-s0",
        "dpo-a0-deft-0.03-s0",
        "dpo-a0-deft-0.3-s0",
        "dpo-a0-deft-3-s0",
    }
    assert {r["model"] for r in without} <= {r["model"] for r in plan}
    # quick and default train no grid
    assert not PROFILES["quick"].stability_weights and not PROFILES["default"].stability_weights


STABLE = dataclasses.replace(
    PROFILES["default"], name="s", methods=("dpo",), stability_weights=(0.03, 0.3, 3.0)
)
# (alpha, label, seed) -> direct request, human jailbreaks, over-refusal, reward (seed 0 unless
# said); asr/mean is the two attacks' mean
STABLE_RUNS = {
    (0.0, "", 0): (0.50, 0.30, 0.20, 1.0),
    (0.03, "", 0): (0.50, 0.30, 0.20, 1.0),
    (0.3, "", 0): (0.45, 0.35, 0.15, 1.1),
    (0.3, "", 1): (0.55, 0.25, 0.25, 0.9),  # seed 1: the seed std only, not the grid
    (3.0, "", 0): (0.40, 0.10, 0.10, 1.2),
    (0.0, "deft=0.03", 0): (0.50, 0.30, 0.20, 1.0),
    (0.0, "deft=0.3", 0): (0.30, 0.20, 0.40, 0.5),
    (0.0, "deft=3", 0): (0.10, 0.10, 0.90, -1.0),
    (0.3, "cost=index", 0): (0.99, 0.99, 0.99, 9.0),  # not on the grid
}


def _stable_rows() -> list[dict]:
    rows = []
    for (alpha, label, seed), (dr, hj, refusal, reward) in STABLE_RUNS.items():
        ident = {
            "model": f"{alpha}-{label}-{seed}",
            "method": "dpo",
            "variant": "deft" if label.startswith("deft") else "plot" if alpha else "vanilla",
            "alpha": alpha,
            "seed": seed,
            "ablation": label,
        }
        values = {
            "asr/direct_request": dr,
            "asr/human_jailbreaks": hj,
            "asr/mean": (dr + hj) / 2,
            "over_refusal": refusal,
            "reward": reward,
        }
        rows += [{**ident, "metric": k, "value": v, "n": 20} for k, v in values.items()]
    return rows


def test_stability_table_gives_each_methods_range_over_the_grid(tmp_path):
    from matplotlib.image import imread

    from plot_ray.demo.figures import DPI, write_figures
    from plot_ray.demo.report import _figure_numbers

    rows = _stable_rows()
    cols = ["DPO α=0 (seed 0)", "PLOT min", "PLOT max", "PLOT spread"]
    cols += ["DEFT min", "DEFT max", "DEFT spread", "runs (PLOT/DEFT)", "PLOT α=0.3: seed std"]
    table = {r["metric"]: [r[c] for c in cols] for r in stability_table(rows, STABLE)}
    assert table == {  # no LC win rate, accuracy or perplexity rows: no run has them
        # PLOT 50, 45, 40; DEFT 50, 30, 10; seeds 0.45 and 0.55: std 0.1 / sqrt(2)
        "ASR direct_request (%)": ["50.0", "40.0", "50.0", "10.0"]
        + ["10.0", "50.0", "40.0", "3/3", "7.1 (2 seeds)"],
        # PLOT 30, 35, 10; DEFT 30, 20, 10
        "ASR human_jailbreaks (%)": ["30.0", "10.0", "35.0", "25.0"]
        + ["10.0", "30.0", "20.0", "3/3", "7.1 (2 seeds)"],
        # PLOT 40, 40, 25; DEFT 40, 25, 10; both seeds' means are 0.40
        "ASR mean over attacks (%)": ["40.0", "25.0", "40.0", "15.0"]
        + ["10.0", "40.0", "30.0", "3/3", "0.0 (2 seeds)"],
        "reward (benign prompts)": ["1.000", "1.000", "1.200", "0.200"]
        + ["-1.000", "1.000", "2.000", "3/3", "0.141 (2 seeds)"],
        "over-refusal": ["0.200", "0.100", "0.200", "0.100"]
        + ["0.200", "0.900", "0.700", "3/3", "0.071 (2 seeds)"],
    }
    assert stability_sentence(rows, STABLE) == (
        "Over the stability grid (0.03, 0.3, 3: a 100× range; seed 0 only, one run per point), "
        "DEFT's spread across its weights was larger than PLOT's across its alphas on 4 of 5 "
        "metrics and smaller on 1; the mean ASR over attacks spans PLOT 25.0–40.0% and DEFT "
        "10.0–40.0%, against a seed standard deviation of 0.0 points for PLOT at α=0.3 "
        "(2 seeds). With one seed per point, each spread includes seed noise: these numbers "
        "describe these runs and test no difference between the methods."
    )
    # the sub-preferences the other rows do not hold get rows of their own (coding: PLOT 60,
    # 60, 70; DEFT 60, 40, 20)
    coding = {0.03: 0.6, 0.3: 0.6, 3.0: 0.7, "deft=0.03": 0.6, "deft=0.3": 0.4, "deft=3": 0.2}
    with_coding = rows + [
        {**r, "metric": "subpref/coding", "value": coding[r["ablation"] or r["alpha"]]}
        for r in rows
        if r["metric"] == "reward" and r["seed"] == 0 and (r["ablation"] or r["alpha"]) in coding
    ]
    (row,) = [r for r in stability_table(with_coding, STABLE) if r["metric"] == "coding (%)"]
    assert [row[c] for c in cols[1:-2]] == ["60.0", "70.0", "10.0", "20.0", "60.0", "40.0"]
    # a missing DEFT run shrinks its count; without a grid there is no table
    fewer = [r for r in rows if r["ablation"] != "deft=3"]
    assert stability_table(fewer, STABLE)[0]["runs (PLOT/DEFT)"] == "3/2"
    assert stability_table(fewer, STABLE)[0]["DEFT spread"] == "20.0"
    unstable = dataclasses.replace(STABLE, stability_weights=())
    assert stability_table(rows, unstable) == [] and stability_sentence(rows, unstable) == ""

    # the figure draws the same points: one panel per metric, 4 a row (2.7 x 2.3 inches each)
    numbers = _figure_numbers(rows, STABLE, [])
    assert numbers.stability["asr/mean"]["DEFT"] == [(0.03, 0.40), (0.3, 0.25), (3.0, 0.10)]
    assert numbers.stability["asr/mean"]["vanilla"] == [(0.0, 0.40)]
    made = dict(write_figures(tmp_path, numbers, {"models": {}}, STABLE))
    (figure,) = [p for p in made if p.name == "alpha_stability.png"]
    assert "DEFT's weight" in made[figure]
    pixels = imread(figure)
    assert pixels.shape[:2] == (round(2 * 2.3 * DPI), round(4 * 2.7 * DPI))
    assert pixels[..., :3].std() > 0.05  # lines and text, not a blank canvas
