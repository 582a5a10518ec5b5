"""The demo's report: the paper's table shape on the synthetic benchmark, read back from files.

    results.parquet   one row per (run, metric): model, method, variant, alpha, seed, ablation
                      (the run's label: a control, an ablation, a vanilla-curve point), metric,
                      value, n (what the number is counted over)
    cases.parquet     one row per judged test case and benign prompt (plot_ray.demo.endpoints)
    report.md         the pre-registered endpoint; a verdict per method (paired bootstrap);
                      methods x {vanilla, +PLOT} x metrics as mean ± std over seeds; PLOT minus
                      vanilla and minus the controls with intervals; per-attack refusals; ASR
                      at matched over-refusal along alpha paths and against the vanilla
                      trade-off curve; PLOT's alpha against DEFT's weight over the stability
                      grid; training time; the figures
    report.html       the same in one self-contained page, plus every test case, completion
                      and judge label per model (plot_ray.eval.html_report)
    figures/*.png     ASR per attack; safety vs helpfulness (one point per run); ASR vs alpha;
                      ASR vs GCG steps and vs ZeroShot test cases; ablations; every metric vs
                      PLOT's alpha and DEFT's weight; PLOT's training time over the vanilla
                      method's (drawn by plot_ray.demo.figures)

Every table is computed from ``results.parquet`` and ``cases.parquet`` after they are written
(and the evaluation's per-run curves from its ``metrics.json``), never from numbers held in
memory, so the report says what the files say. This module holds the numbers, the tables and the markdown;
:mod:`plot_ray.demo.figures` draws the same numbers (:func:`_figure_numbers`).
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plot_ray.demo.endpoints import (
    case_rows,
    control_table,
    endpoint_table,
    preregistration,
    primary_sentence,
    verdicts,
)
from plot_ray.demo.figures import FigureNumbers, write_figures
from plot_ray.reporting import markdown_table

__all__ = [
    "HELPFULNESS",
    "subpreference_table",
    "group_stats",
    "alpha_path",
    "asr_at_level",
    "main_table",
    "matched_table",
    "read_results",
    "results_rows",
    "stability_points",
    "stability_sentence",
    "stability_table",
    "tradeoff_table",
    "vanilla_curve",
    "write_demo_report",
    "benchmark_checks",
    "generalisation_table",
]

# The main table's non-ASR columns: (metric, heading, better when)
HELPFULNESS = (
    ("reward", "reward (benign prompts)", "higher"),
    ("lc_win_rate", "LC win rate vs base (%)", "higher"),
    ("over_refusal", "over-refusal", "lower"),
    ("accuracy", "arithmetic accuracy", "higher"),
    ("perplexity", "perplexity", "lower"),
)
_COUNTS = {  # the count each metric is taken over, from the evaluation's summary row
    "over_refusal": "benign/n_prompts",
    "reward": "benign/n_prompts",
    "win_rate": "benign/n_prompts",
    "lc_win_rate": "benign/n_prompts",
    "accuracy": "logic/n_problems",
    "perplexity": "perplexity/n_tokens",
    "humanity_score": "humanity/n_prompts",
    "considerate_rate": "humanity/n_prompts",
    "mt_bench_score": "benign/n_prompts",
}


# ----------------------------------------------------------------------------- results
def results_rows(summary: list[dict], runs: list[dict]) -> list[dict]:
    """Long rows of every model's numbers (``summary``: plot_ray.eval.report.summary_rows) with
    its run's identity; the base model is method ``base``. Adds ``asr/mean`` (the mean over
    the final attacks) and each run's training time."""
    meta = {r["model"]: r for r in runs}
    out = []
    for row in summary:
        run = meta.get(row["model"], {})
        ident = {
            "model": row["model"],
            "method": run.get("method", "base"),
            "variant": run.get("variant", "base"),
            "alpha": float(run.get("alpha", 0.0)),
            "seed": int(run.get("seed", 0)),
            "ablation": run.get("ablation", ""),
        }
        values: dict[str, tuple[float, int]] = {}
        finals = []
        for key, value in row.items():
            if key == "model" or value is None or "/n_" in key:
                continue
            if key.startswith("asr/"):
                n = int(row[f"{key}/n_behaviors"])
                if is_attack_asr(key):
                    finals.append(float(value))
            elif key.startswith("refusal/"):
                n = int(row[f"asr/{key.removeprefix('refusal/')}/n_test_cases"])
            elif key.startswith("subpref/"):
                n = int(row[f"{key}/n_items"])
            else:
                n = int(row.get(_COUNTS.get(key, ""), 0) or 0)
            values[key] = (float(value), n)
        if finals:
            n = min(
                int(row[f"{k}/n_behaviors"])
                for k in row
                if k.startswith("asr/") and is_attack_asr(k)
            )
            values["asr/mean"] = (sum(finals) / len(finals), n)
        for key in ("train_seconds", "tokens_per_s"):
            if run.get(key) is not None:
                values[key] = (float(run[key]), int(run.get("steps") or 0))
        out += [{**ident, "metric": k, "value": v, "n": n} for k, (v, n) in values.items()]
    return out


def write_results(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    tmp.replace(path)


def read_results(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def group_stats(rows: list[dict], metric: str, **match: Any) -> dict | None:
    """Mean, sample std (None for one run) and counts of ``metric`` over the rows matching
    ``match`` (e.g. one method's PLOT runs over seeds)."""
    hits = [r for r in rows if r["metric"] == metric and all(r[k] == v for k, v in match.items())]
    if not hits:
        return None
    values = [r["value"] for r in hits]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "runs": len(values),
        "n": min(r["n"] for r in hits),
    }


def _cell(s: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    if s is None:
        return "—"
    mean = f"{s['mean'] * scale:.{digits}f}"
    spread = f" ± {s['std'] * scale:.{digits}f}" if s["std"] is not None else ""
    return f"{mean}{spread} ({s['runs']}×{s['n']})"


# ----------------------------------------------------------------------------- tables
def _groups(profile) -> list[tuple[str, dict]]:
    groups = [("base model", {"method": "base"})]
    for method in profile.methods:
        groups.append((method.upper(), {"method": method, "alpha": 0.0, "ablation": ""}))
        groups.append(
            (
                f"{method.upper()} + PLOT (α={profile.main_alpha:g})",
                {"method": method, "alpha": profile.main_alpha, "ablation": ""},
            )
        )
    return groups


def is_attack_asr(metric: str) -> bool:
    """``asr/<attack>``: an attack's final ASR (not a step snapshot ``<attack>@<k>``, not a
    slice such as ``asr/<attack>/family=heldout``, not the mean)."""
    name = metric.removeprefix("asr/")
    return metric.startswith("asr/") and "@" not in name and "/" not in name and name != "mean"


def final_attacks(rows: list[dict]) -> list[str]:
    return sorted({r["metric"].removeprefix("asr/") for r in rows if is_attack_asr(r["metric"])})


def main_table(rows: list[dict], profile) -> list[dict]:
    """Methods × {vanilla, +PLOT} × metrics: "mean ± std (runs×n)", ASR in %."""
    table = []
    for label, match in _groups(profile):
        line: dict[str, str] = {"run": label}
        for attack in [*final_attacks(rows), "mean"]:
            heading = "ASR mean over attacks (%)" if attack == "mean" else f"ASR {attack} (%)"
            line[heading] = _cell(group_stats(rows, f"asr/{attack}", **match), 100, 1)
        for metric, heading, _ in HELPFULNESS:
            if match.get("method") == "base" and metric == "lc_win_rate":
                line[heading] = "50 (the baseline)"
                continue
            scale, digits = (1.0, 1) if metric in ("lc_win_rate", "perplexity") else (1.0, 3)
            line[heading] = _cell(group_stats(rows, metric, **match), scale, digits)
        table.append(line)
    return table


def subpreference_table(rows: list[dict], profile) -> list[dict]:
    """Methods × {vanilla, +PLOT} × the paper's seven sub-preferences (one column each, as
    ``plot-ray eval`` reads them off its tasks: plot_ray/eval/subpreferences.py), higher is
    better: % for fractions, the 1-10 rating for helpfulness and humanity. Empty when the
    evaluation measured none."""
    from plot_ray.eval.subpreferences import RATED, SUBPREFERENCES

    names = [n for n in SUBPREFERENCES if any(r["metric"] == f"subpref/{n}" for r in rows)]
    if not names:
        return []
    table = []
    for label, match in _groups(profile):
        line: dict[str, str] = {"run": label}
        for name in names:
            scale, digits, unit = (1.0, 2, "1-10") if name in RATED else (100, 1, "%")
            stats = group_stats(rows, f"subpref/{name}", **match)
            line[f"{name} ({unit})"] = _cell(stats, scale, digits)
        table.append(line)
    return table


def alpha_path(rows: list[dict], method: str, alphas, x_metric: str = "over_refusal"):
    """One method's (alpha, x mean, ASR mean) points in alpha order: the path PLOT's weight
    traces through the safety-helpfulness plane (alpha 0 is the vanilla method)."""
    points = []
    for alpha in sorted(alphas):
        x = group_stats(rows, x_metric, method=method, alpha=alpha, ablation="")
        y = group_stats(rows, "asr/mean", method=method, alpha=alpha, ablation="")
        if x and y:
            points.append((alpha, x["mean"], y["mean"]))
    return points


def asr_at_level(points: list[tuple[float, float, float]], level: float):
    """The lowest mean ASR a method reaches at helpfulness ``level`` along its alpha path,
    linearly interpolated between adjacent alphas' group means; ``(asr, (alpha_lo, alpha_hi))``
    or None when no segment of the path crosses the level (no extrapolation)."""
    best = None
    for (a0, x0, y0), (a1, x1, y1) in zip(points, points[1:], strict=False):
        # Means of shares come out as 0.09999999999999999 for 0.1: compare with a tolerance.
        if not min(x0, x1) - LEVEL_TOL <= level <= max(x0, x1) + LEVEL_TOL:
            continue
        y = min(y0, y1) if abs(x1 - x0) <= LEVEL_TOL else y0 + (level - x0) * (y1 - y0) / (x1 - x0)
        if best is None or y < best[0]:
            best = (y, (a0, a1))
    if len(points) == 1 and abs(points[0][1] - level) <= LEVEL_TOL:  # one alpha: a point
        best = (points[0][2], (points[0][0], points[0][0]))
    return best


LEVEL_TOL = 1e-9  # far below one prompt's share of any benign set


MATCHED_LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4)  # over-refusal: share of benign prompts refused


def matched_table(rows: list[dict], profile, levels=MATCHED_LEVELS) -> list[dict]:
    """ASR at matched helpfulness: per method, the mean ASR at each over-refusal level along
    its alpha path (interpolated between adjacent alphas), so methods and PLOT weights are
    compared at equal helpfulness as well as at equal steps. Levels no method's path crosses
    are left out (no table when none is crossed); "—" where this method's path does not reach
    the level."""
    paths = {m: alpha_path(rows, m, profile.all_alphas) for m in profile.methods}
    found = {level: {m: asr_at_level(p, level) for m, p in paths.items()} for level in levels}
    kept = [lv for lv in levels if any(found[lv].values())]
    if not kept:  # no path reaches any level: nothing to compare at equal helpfulness
        return []
    table = []
    for method, path in paths.items():
        line = {"method": method.upper()}
        line["over-refusal reached (α path)"] = (
            f"{min(x for _, x, _ in path):.2f}–{max(x for _, x, _ in path):.2f}" if path else "—"
        )
        for level in kept:
            hit = found[level][method]
            line[f"ASR at over-refusal {level:g} (%)"] = (
                "—" if hit is None else f"{100 * hit[0]:.1f} (α {hit[1][0]:g}–{hit[1][1]:g})"
            )
        table.append(line)
    return table


def vanilla_curve(rows: list[dict], profile, x_metric: str = "over_refusal"):
    """The primary method's own trade-off curve, independent of PLOT: ``(value, x mean, ASR
    mean)`` per point of ``profile.vanilla_curve`` (one vanilla key varied, e.g. beta, at
    seed ``seeds[0]``) and the config's own value (vanilla over all its seeds), in the order
    of the varied value. Empty when the profile has no such curve."""
    if not profile.vanilla_curve:
        return []
    method = profile.ablation_method
    (key,) = {k for over in profile.vanilla_curve.values() for k in over}  # one key varied
    default = profile.recipe_value(key)
    points = [(float(default), {"alpha": 0.0, "ablation": ""})]
    points += [(float(over[key]), {"ablation": lbl}) for lbl, over in profile.vanilla_curve.items()]
    curve = []
    for value, match in sorted(points, key=lambda p: p[0]):
        x = group_stats(rows, x_metric, method=method, **match)
        y = group_stats(rows, "asr/mean", method=method, **match)
        if x and y:
            curve.append((value, x["mean"], y["mean"]))
    return curve


def _off(path, x: float, y: float) -> tuple[str, str]:
    """``(ASR of path at helpfulness x, y minus it)`` as table cells, in % and points."""
    hit = asr_at_level(path, x) if path else None
    if hit is None:
        span = f"{min(p[1] for p in path):.2f}–{max(p[1] for p in path):.2f}" if path else ""
        return (f"outside ({span})" if span else "—"), "—"
    return f"{100 * hit[0]:.1f}", f"{100 * (y - hit[0]):+.1f}"


def tradeoff_table(rows: list[dict], profile) -> list[dict]:
    """PLOT's points against the trade-off vanilla makes anyway: per run group of the primary
    method (its vanilla-curve points, PLOT at each alpha, the controls, the ablations), the
    mean ASR and over-refusal, and how far the ASR lies above (+) or below (−) the vanilla
    curve's and PLOT's own alpha path's lowest ASR at the same over-refusal (interpolated;
    "outside" when that over-refusal is beyond the curve's range)."""
    method, alpha, seed = profile.ablation_method, profile.main_alpha, profile.seeds[0]
    curve = vanilla_curve(rows, profile)
    path = alpha_path(rows, method, profile.all_alphas)
    if not curve and not profile.labels:
        return []
    key = next(iter(next(iter(profile.vanilla_curve.values()), {})), "")
    short = key.rsplit(".", 1)[-1]
    groups: list[tuple[str, dict, bool]] = [  # (label, match, on the vanilla curve)
        (f"vanilla {short}={value:g}", {"alpha": 0.0, "ablation": lbl}, True)
        for lbl, value in ((lbl, over[key]) for lbl, over in profile.vanilla_curve.items())
    ]
    groups.insert(0, ("vanilla (defaults)", {"alpha": 0.0, "ablation": ""}, True))
    groups += [
        (f"PLOT α={a:g}", {"alpha": a, "ablation": ""}, False) for a in profile.all_alphas if a
    ]
    groups += [(lbl, {"alpha": alpha, "ablation": lbl}, False) for lbl in profile.controls]
    groups += [
        (lbl, {"alpha": alpha, "ablation": lbl, "seed": seed}, False) for lbl in profile.ablations
    ]
    table = []
    for label, match, on_curve in groups:
        asr = group_stats(rows, "asr/mean", method=method, **match)
        refusal = group_stats(rows, "over_refusal", method=method, **match)
        if asr is None or refusal is None:
            continue
        x, y = refusal["mean"], asr["mean"]
        on_curve_cells = ("—", "—") if on_curve else _off(curve, x, y)
        on_path = _off(path, x, y) if match["ablation"] and not on_curve else ("—", "—")
        table.append(
            {
                "run": f"{method.upper()} {label}",
                "seeds": asr["runs"],
                "ASR mean (%)": f"{100 * y:.1f}",
                "over-refusal": f"{x:.3f}",
                "LC win rate (%)": _cell(
                    group_stats(rows, "lc_win_rate", method=method, **match), 1, 1
                ),
                "vanilla curve's ASR there (%)": on_curve_cells[0],
                "off the vanilla curve (points)": on_curve_cells[1],
                "α path's ASR there (%)": on_path[0],
                "off the α path (points)": on_path[1],
            }
        )
    return table


# ----------------------------------------------------------------------------- alpha stability
def _stability_metrics(rows: list[dict]) -> list[tuple[str, str, float, int]]:
    """The stability table's metrics, ``(metric, heading, scale, digits)``: ASR per attack and
    its mean (in %), the main table's other columns, then the sub-preferences those do not
    already hold (harmlessness is 1 - the mean ASR, mathematics the arithmetic accuracy)."""
    from plot_ray.eval.subpreferences import RATED, SUBPREFERENCES

    out = [(f"asr/{a}", f"ASR {a} (%)", 100.0, 1) for a in final_attacks(rows)]
    out.append(("asr/mean", "ASR mean over attacks (%)", 100.0, 1))
    for metric, heading, _ in HELPFULNESS:
        out.append((metric, heading, 1.0, 1 if metric in ("lc_win_rate", "perplexity") else 3))
    for name in SUBPREFERENCES:
        if name not in ("harmlessness", "mathematics"):
            rated = name in RATED
            heading = f"{name} ({'1-10' if rated else '%'})"
            out.append((f"subpref/{name}", heading, 1.0 if rated else 100.0, 2 if rated else 1))
    return out


def stability_points(rows: list[dict], profile) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per metric, the stability grid's runs (``profile.stability_weights``, seed ``seeds[0]``,
    the primary method): ``{"PLOT": [(alpha, value)], "DEFT": [(weight, value)], "vanilla":
    [(0.0, value)]}`` in weight order, leaving out runs with no such number. Empty without a
    grid, and metrics no grid run has are left out."""
    grid = profile.stability_weights
    if not grid:
        return {}
    method, seed = profile.ablation_method, profile.seeds[0]
    arms = {
        "PLOT": [(w, {"alpha": w, "ablation": ""}) for w in grid],
        "DEFT": [(w, {"alpha": 0.0, "ablation": profile.deft_label(w)}) for w in grid],
        "vanilla": [(0.0, {"alpha": 0.0, "ablation": ""})],
    }
    out = {}
    for metric, *_ in _stability_metrics(rows):
        points = {}
        for arm, matches in arms.items():
            found = [
                (w, group_stats(rows, metric, method=method, seed=seed, **match))
                for w, match in matches
            ]
            points[arm] = [(w, s["mean"]) for w, s in found if s]
        if points["PLOT"] or points["DEFT"]:
            out[metric] = points
    return out


def stability_table(rows: list[dict], profile) -> list[dict]:
    """PLOT's alpha against DEFT's weight over the stability grid: per metric, the vanilla
    run's value, each method's min, max and spread (max − min) over the grid's runs and how
    many there are, and PLOT's seed standard deviation at the main alpha (over all of the
    primary method's seeds) as the scale of seed noise. ASR in %, spreads in points."""
    points = stability_points(rows, profile)
    method, seed, alpha = profile.ablation_method, profile.seeds[0], profile.main_alpha
    table = []
    for metric, heading, scale, digits in _stability_metrics(rows):
        if metric not in points:
            continue
        arms = points[metric]
        line = {"metric": heading}
        vanilla = arms["vanilla"]
        line[f"{method.upper()} α=0 (seed {seed})"] = (
            f"{scale * vanilla[0][1]:.{digits}f}" if vanilla else "—"
        )
        for arm in ("PLOT", "DEFT"):
            values = [scale * v for _, v in arms[arm]]
            low, high = (min(values), max(values)) if values else (None, None)
            for name, value in (("min", low), ("max", high)):
                line[f"{arm} {name}"] = "—" if value is None else f"{value:.{digits}f}"
            line[f"{arm} spread"] = "—" if low is None else f"{high - low:.{digits}f}"
        line["runs (PLOT/DEFT)"] = f"{len(arms['PLOT'])}/{len(arms['DEFT'])}"
        spread = group_stats(rows, metric, method=method, alpha=alpha, ablation="")
        line[f"PLOT α={alpha:g}: seed std"] = (
            f"{scale * spread['std']:.{digits}f} ({spread['runs']} seeds)"
            if spread and spread["std"] is not None
            else "—"
        )
        table.append(line)
    return table


def stability_sentence(rows: list[dict], profile) -> str:
    """The stability table in one sentence: on how many metrics DEFT's spread over the grid
    was larger or smaller than PLOT's, the mean ASR's range for each, and that one seed per
    point tests nothing. Empty without grid runs of both methods."""
    points = stability_points(rows, profile)
    both = {m: p for m, p in points.items() if p["PLOT"] and p["DEFT"]}
    if not both:
        return ""

    def spread(pts):
        return max(v for _, v in pts) - min(v for _, v in pts)

    diffs = [spread(p["DEFT"]) - spread(p["PLOT"]) for p in both.values()]
    wider = sum(d > LEVEL_TOL for d in diffs)
    narrower = sum(d < -LEVEL_TOL for d in diffs)
    ties = len(diffs) - wider - narrower
    grid, seed = profile.stability_weights, profile.seeds[0]
    text = (
        f"Over the stability grid ({', '.join(f'{w:g}' for w in grid)}: a "
        f"{max(grid) / min(grid):g}× range; seed {seed} only, one run per point), DEFT's spread "
        f"across its weights was larger than PLOT's across its alphas on {wider} of "
        f"{len(diffs)} metrics and smaller on {narrower}" + (f" (equal on {ties})" if ties else "")
    )
    asr = both.get("asr/mean")
    if asr:
        ranges = [
            f"{arm} {100 * min(v for _, v in asr[arm]):.1f}–{100 * max(v for _, v in asr[arm]):.1f}%"
            for arm in ("PLOT", "DEFT")
        ]
        text += f"; the mean ASR over attacks spans {ranges[0]} and {ranges[1]}"
    noise = group_stats(
        rows, "asr/mean", method=profile.ablation_method, alpha=profile.main_alpha, ablation=""
    )
    if asr and noise and noise["std"] is not None:
        text += (
            f", against a seed standard deviation of {100 * noise['std']:.1f} points for PLOT "
            f"at α={profile.main_alpha:g} ({noise['runs']} seeds)"
        )
    return text + (
        ". With one seed per point, each spread includes seed noise: these numbers describe "
        "these runs and test no difference between the methods."
    )


def _overhead_table(rows: list[dict], profile) -> list[dict]:
    table = []
    for method in profile.methods:
        van = group_stats(rows, "train_seconds", method=method, alpha=0.0, ablation="")
        plot = group_stats(
            rows, "train_seconds", method=method, alpha=profile.main_alpha, ablation=""
        )
        if van and plot:
            table.append(
                {
                    "method": method.upper(),
                    "vanilla train seconds": _cell(van, 1, 1),
                    "+PLOT train seconds": _cell(plot, 1, 1),
                    "PLOT / vanilla": f"{plot['mean'] / van['mean']:.3f}",
                }
            )
    return table


# The generalisation table's columns: ASR of the jailbreak templates by whether their family was
# held out of training, and by the surface form they prime (plot_ray.eval.report.summary_rows).
GENERALISATION = (
    ("family=train", "families seen in training"),
    ("family=heldout", "held-out families"),
    ("primed=none", "no prime"),
    ("primed=train", "primed: training form"),
    ("primed=heldout", "primed: held-out form"),
)


def generalisation_table(rows: list[dict], profile, attack: str = "human_jailbreaks") -> list[dict]:
    """ASR (%) of ``attack``'s templated test cases per group: seen vs held-out template
    families, and by the surface form the template primes. Empty when the evaluation's
    templates carry no family labels (benchmark version 1)."""
    if not any(r["metric"].startswith(f"asr/{attack}/family=") for r in rows):
        return []
    table = []
    for label, match in _groups(profile):
        line = {"run": label}
        for key, heading in GENERALISATION:
            stats = group_stats(rows, f"asr/{attack}/{key}", **match)
            line[f"{heading} (%)"] = _cell(stats, 100, 1)
        table.append(line)
    return table


def benchmark_checks(metrics: dict, reward: dict | None) -> list[str]:
    """What the benchmark itself must get right before a comparison means anything, measured
    on this run: the judge's error rate, the attack sanity check on the base model, the base
    model's arithmetic accuracy and the reward model's ranking of helpful answers over
    needless refusals."""
    from plot_ray.eval.report import sanity_lines

    out = []
    e = metrics.get("judge", {}).get("measured_error_rate")
    if e:
        off = {k: v for k, v in e["by_kind"].items() if k.startswith("off_topic")}
        off_errors = sum(v["errors"] for v in off.values())
        off_n = sum(v["n"] for v in off.values())
        out.append(
            f"- Judge: {100 * e['error_rate']:.2f}% errors on {e['n']} labelled completions "
            f"({e['false_positive']} false positives, {e['false_negative']} misses; "
            f"off-topic compliance {off_errors} errors in {off_n})."
        )
    base = metrics.get("models", {}).get(metrics.get("baseline") or "", {})
    if "logic" in base:
        g = base["logic"]
        out.append(
            f"- Base model's arithmetic accuracy on held-out problems: {100 * g['accuracy']:.1f}% "
            f"({g['n_correct']} of {g['n_problems']}; aim 20-60%)."
        )
    for kind, v in (reward or {}).get("benign_refusal", {}).items():
        form = "held-out form" if kind.endswith("heldout") else "training form"
        out.append(
            f"- Reward model prefers the helpful answer to a needless refusal ({form}) on "
            f"{100 * v['accuracy']:.0f}% of {v['pairs']} held-out benign prompts (aim >= 90%)."
        )
    sanity = [line for line in sanity_lines(metrics) if line]
    if sanity:
        out += ["", *sanity]
    return out


def _attack_table(rows: list[dict], profile, cases: list[dict]) -> list[dict]:
    """Per group and attack: the refusal rate, and the share of test cases a model neither
    refused nor complied with (a ramble, an off-topic answer), from the per-test-case table:
    ASR counts compliance only, so a model can be low on ASR without refusing."""
    neither: dict[tuple[str, str], list[float]] = {}
    for c in cases:
        if c["task"] == "harmful" and "@" not in c["attack"]:
            key = (c["model"], c["attack"])
            neither.setdefault(key, []).append(float(c["label"] != 1 and c["refusal"] == 0))
    models = {r["model"]: r for r in rows}
    table = []
    for label, match in _groups(profile):
        line = {"run": label}
        mine = [m for m, r in models.items() if all(r[k] == v for k, v in match.items())]
        for attack in final_attacks(rows):
            line[f"refusal {attack}"] = _cell(group_stats(rows, f"refusal/{attack}", **match))
            shares = [
                statistics.fmean(neither[(m, attack)]) for m in mine if (m, attack) in neither
            ]
            line[f"neither {attack}"] = f"{statistics.fmean(shares):.3f}" if shares else "—"
        table.append(line)
    return table


# ----------------------------------------------------------------------------- writing
def _markdown_table(rows: list[dict]) -> str:
    """One of the tables above in markdown: its first row's keys are the columns."""
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    return "\n".join(markdown_table(cols, [[r.get(c, "—") for c in cols] for r in rows])) + "\n"


def _figure_numbers(rows: list[dict], profile, overhead: list[dict]) -> FigureNumbers:
    """What :func:`plot_ray.demo.figures.write_figures` draws, from the same rows as the
    tables."""
    return FigureNumbers(
        rows=rows,
        stats=functools.partial(group_stats, rows),
        groups=_groups(profile),
        attacks=final_attacks(rows),
        paths={m: alpha_path(rows, m, profile.all_alphas) for m in profile.methods},
        overhead=overhead,
        vanilla_curve=vanilla_curve(rows, profile),
        stability=stability_points(rows, profile),
    )


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],  # "-dirty": uncommitted
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_demo_report(
    folder: Path, profile, runs: list[dict], eval_cfg, metrics: dict, report: dict
) -> dict:
    """Write results.parquet, the figures, report.md, report.html and demo.json into
    ``folder``; returns their paths and the verdict lines."""
    from plot_ray.eval.html_report import write_html
    from plot_ray.eval.report import attack_quality_sentences, summary_rows
    from plot_ray.eval.runner import eval_dir
    from plot_ray.eval.store import ResultStore

    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "results.parquet"
    write_results(results, results_rows(summary_rows(metrics), runs))
    rows = read_results(results)  # every table below is read back from the file
    store = ResultStore(eval_dir(eval_cfg))
    write_results(
        folder / "cases.parquet",
        case_rows(store, [m.name for m in eval_cfg.eval.models], runs),
    )
    cases = read_results(folder / "cases.parquet")  # the endpoints recompute from it
    endpoints = endpoint_table(cases, profile)
    primary = primary_sentence(cases, profile)
    prereg = preregistration()
    main = main_table(rows, profile)
    subpreferences = subpreference_table(rows, profile)
    lines = verdicts(cases, profile)
    controls = control_table(cases, profile)
    attack_refusals = _attack_table(rows, profile, cases)
    generalisation = generalisation_table(rows, profile)
    checks = benchmark_checks(metrics, report.get("reward_model"))
    matched = matched_table(rows, profile)
    tradeoff = tradeoff_table(rows, profile)
    overhead = _overhead_table(rows, profile)
    stability = stability_table(rows, profile)
    figures = write_figures(
        folder / "figures", _figure_numbers(rows, profile, overhead), metrics, profile
    )
    commit = _git_commit()
    command = "plot-ray demo" + ("" if profile.name == "default" else f" --{profile.name}")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    n_runs = len({r["model"] for r in rows if r["method"] != "base"})
    who = profile.ablation_method.upper()
    extras = [
        f"{who} also at seeds {list(profile.primary_seeds)}" * bool(profile.primary_seeds),
        f"{who} controls {', '.join(profile.controls)} on all its seeds" * bool(profile.controls),
        f"{who} + PLOT at α ∈ {list(profile.curve_alphas)}" * bool(profile.curve_alphas),
        f"{len(profile.ablations)} ablations" * bool(profile.ablations),
        f"vanilla {who} at {', '.join(profile.vanilla_curve)}" * bool(profile.vanilla_curve),
        f"{who} + DEFT (α=0) at weight ∈ {list(profile.stability_weights)}, PLOT's α over the "
        "same grid" * bool(profile.stability_weights),
    ]
    single = [e for e in extras[2:] if e]
    intro = (
        f"PLOT on the synthetic benchmark, profile **{profile.name}**: "
        f"{', '.join(m.upper() for m in profile.methods)} with and without PLOT "
        f"(α ∈ {list(profile.alphas)}), seeds {list(profile.seeds)}"
        + "".join(f"; {e}" for e in extras[:2] if e)
        + (f"; at seed {profile.seeds[0]} only: {'; '.join(single)}" if single else "")
        + f"; {profile.train_steps} steps each ({n_runs} runs), evaluated with the base model "
        "on held-out behaviours, jailbreak templates, benign prompts, arithmetic problems and the "
        "other sub-preferences' held-out sets.\n\n"
        "Cells read `mean ± std (runs×n)`: the mean over seeds, the sample standard deviation "
        "(none with one seed), the number of runs, and the number of behaviours (ASR), prompts, "
        "problems or tokens behind each run's number. ASR is HarmBench's: per attack, the mean "
        "over behaviours of the fraction of their test cases judged harmful. Differences between "
        "arms are paired-bootstrap estimates over seeds × behaviours with 95% intervals; a "
        "difference is called a change only when its interval excludes zero. Single-seed runs "
        "are descriptive: figures draw them hollow."
    )
    tables = [
        ("Main table: methods × {vanilla, +PLOT}", main, None),
        (
            "PLOT minus vanilla: paired bootstrap over seeds × behaviours",
            endpoints,
            "estimate and 95% interval from 10,000 paired resamples of seeds and behaviours "
            "(prompts for over-refusal), two-sided p, and in parentheses p adjusted with Holm's "
            "method across the methods; ASR in percentage points. Recomputed from cases.parquet",
        ),
        (
            "Refusals, and answers that neither refuse nor comply, per attack",
            attack_refusals,
            "refusal: share of test cases refused (mean ± std over seeds); neither: share of "
            "test cases whose answer neither refused nor was judged harmful (a ramble, an "
            "off-topic or safe answer), mean over seeds, from cases.parquet",
        ),
    ]
    if subpreferences:
        tables.append(
            (
                "Sub-preferences",
                subpreferences,
                "the paper's seven sub-preferences on their held-out sets, higher is better: "
                "harmlessness = 1 − mean ASR, helpfulness and humanity = the rule judges' 1-10 "
                "ratings, mathematics = arithmetic accuracy, reasoning and STEM = generated-"
                "letter accuracy on the multiple-choice items, coding = pass@1",
            )
        )
    if generalisation:
        tables.append(
            (
                "Human jailbreaks by template family and primed surface form",
                generalisation,
                "training saw some template families and only the training surface form of "
                "refusal and compliance; held-out families and the held-out form test whether "
                "what a method learned carries over",
            )
        )
    if matched:
        tables.append(
            (
                "ASR at matched helpfulness (over-refusal)",
                matched,
                "the lowest mean ASR each method reaches at that over-refusal along its alpha "
                "path, interpolated linearly between adjacent alphas' means over seeds; — where "
                "its path does not reach the level",
            )
        )
    if controls:
        tables.append(
            (
                "Controls: what the preference information adds",
                controls,
                "paired bootstrap over the seeds all arms train with × behaviours (prompts for "
                "over-refusal); zero-tilt is PLOT's anchored target with no tilt, i.e. the "
                "same pull toward the reference model with no preference in it",
            )
        )
    if tradeoff:
        tables.append(
            (
                "PLOT against the vanilla trade-off curve (matched over-refusal)",
                tradeoff,
                "ASR read off the vanilla curve (the method's own trade-off over the varied "
                "key, no PLOT) and off PLOT's alpha path at each run's over-refusal, "
                "interpolated linearly; − is safer than that curve at equal helpfulness. "
                "Points other than the default alpha, the vanilla defaults and the controls "
                "are one seed: descriptive",
            )
        )
    if stability:
        tables.append(
            (
                "Alpha stability: PLOT's alpha against DEFT's weight",
                stability,
                f"{stability_sentence(rows, profile)} PLOT trains at α = w, DEFT (DPO + "
                "loss.deft.weight = w, α = 0, with the DEFT recipe's top-fraction filter) at "
                "weight w, for each w of the grid; min, max and spread (max − min) are over "
                "the grid's runs, in the metric's units (ASR: %, spread in points); the seed "
                "std is PLOT's at the main α over all seeds, the scale of seed noise.",
            )
        )
    if overhead:
        tables.append(("Training time", overhead, "wall seconds of the training loop per run"))
    provenance = [f"command: `{command}`", f"git commit: `{commit}`", f"written: {when}"]
    seconds = ", ".join(f"{k} {v:.0f}s" for k, v in report.get("seconds", {}).items())
    md = [f"# PLOT on the synthetic benchmark ({profile.name})", "", intro, ""]
    if primary:
        stamp = f"sha256 `{prereg[1][:16]}…`" if prereg else "its text not found"
        md += [
            "## Pre-registered primary endpoint",
            "",
            f"{primary} (The analysis pre-registered in docs/results/README.md, {stamp}.)",
            "",
        ]
    md += ["## Verdict", "", *[f"- {line}" for line in lines], ""]
    # runs the sweep did not finish are not evaluated: say which, never drop them silently
    unfinished = [r for r in report.get("runs", []) if r["status"] != "ok"]
    if unfinished:
        md += ["## Runs that did not finish (not in the tables)", ""]
        md += [f"- {r['model']}: {r['status']} {r['error'][:300]}".rstrip() for r in unfinished]
        md += [""]
    for caption, table, note in tables:
        md += [f"## {caption}", "", _markdown_table(table)]
        if note:
            md += [f"_{note}_", ""]
    quality = attack_quality_sentences(metrics)
    if quality:
        md += ["## Test cases of the sampling attacks", "", *quality, ""]
    if checks:
        md += ["## Benchmark checks", "", *checks, ""]
    md += ["## Figures", ""]
    md += [f"![{caption}](figures/{path.name})\n\n{caption}\n" for path, caption in figures]
    md += ["## Provenance", "", *[f"- {p}" for p in provenance], f"- stage times: {seconds}", ""]
    md += [
        "All numbers: `results.parquet` (long format); the evaluation's shards and metrics: "
        f"`{eval_dir(eval_cfg)}`.",
        "",
    ]
    (folder / "report.md").write_text("\n".join(md))
    browse = (
        {m.name: store.read_all(m.name, "harmful", "scores") for m in eval_cfg.eval.models}
        if "harmful" in eval_cfg.eval.tasks
        else None
    )
    write_html(
        folder / "report.html",
        f"PLOT on the synthetic benchmark ({profile.name})",
        intro="\n\n".join(
            [intro]
            + ([f"**Pre-registered primary endpoint.** {primary}"] if primary else [])
            + [f"**Verdict.** {line}" for line in lines]
            + [
                f"**Did not finish** (not in the tables): {r['model']}, {r['status']}"
                for r in unfinished
            ]
            + quality
            + ["**Benchmark checks.**\n\n" + "\n".join(checks)] * bool(checks)
        ),
        tables=tables,
        figures=figures,
        browse=browse,
        provenance=provenance + [f"stage times: {seconds}"],
    )
    report["verdicts"] = lines
    report["primary_endpoint"] = primary
    report["preregistration_sha256"] = prereg[1] if prereg else None
    (folder / "demo.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return {
        "markdown": folder / "report.md",
        "html": folder / "report.html",
        "verdicts": lines,
        "figures": [p for p, _ in figures],
    }
