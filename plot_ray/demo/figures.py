"""The demo report's figures (PNG), drawn from the numbers :mod:`plot_ray.demo.report` reads back
from ``results.parquet`` (:class:`FigureNumbers`) and from the evaluation's ``metrics.json``.

    write_figures(folder, numbers, metrics, profile) -> [(path, caption), ...], in this order:

    asr_per_attack.png               ASR per attack: the base model, each method ± PLOT
    safety_vs_helpfulness.png        one point per run; each method's alpha path (means)
    asr_vs_alpha.png                 mean ASR against alpha per method (the stability claim)
    asr_vs_<attack>_steps.png        ASR against an optimisation attack's steps
    asr_vs_<attack>_test_cases.png   behaviours broken by any of their first k test cases
    ablations.png                    the ablation runs beside the defaults and vanilla
    alpha_stability.png              every metric vs PLOT's alpha and DEFT's weight (log x)
    training_overhead.png            PLOT's training time over the vanilla method's

A figure with nothing to draw (no curves, no ablations, no training times) is left out. Colours
follow the method in every figure (:func:`plot_ray.reporting.method_colour`; the base model
black): where bars or lines tell a method's vanilla and PLOT runs apart, the PLOT ones are a
lighter shade of its colour (:func:`_colour`); the safety-vs-helpfulness points tell alphas
apart by marker instead. A mean over one seed is drawn hollow (markers) or hatched (bars), so
it is not read as a mean over several.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from plot_ray.reporting import lighter, method_colour, save_figure, start_matplotlib

__all__ = ["DPI", "FigureNumbers", "write_figures"]

DPI = 110  # the demo's figures (the evaluation's and the sweep's: plot_ray.reporting.DPI)

Drawn = Iterator[tuple[Any, str, str]]  # (figure, file name, caption), one figure at a time


@dataclass(frozen=True)
class FigureNumbers:
    """What the figures draw, computed by :mod:`plot_ray.demo.report` from the rows of
    ``results.parquet``."""

    rows: list[dict]
    """The rows themselves: one per (run, metric), with the run's identity."""
    stats: Callable[..., dict | None]
    """``stats(metric, **match)``: mean, std, runs and n of ``metric`` over the matching rows
    (:func:`plot_ray.demo.report.group_stats`), None when no row matches."""
    groups: list[tuple[str, dict]]
    """The main table's rows, ``(label, match)``: the base model, then each method vanilla and
    + PLOT at the main alpha."""
    attacks: list[str]
    """The final attacks (no ``<attack>@<step>`` snapshots), sorted."""
    paths: dict[str, list[tuple[float, float, float]]]
    """Each method's ``(alpha, over-refusal, mean ASR)`` points in alpha order
    (:func:`plot_ray.demo.report.alpha_path`)."""
    overhead: list[dict]
    """The training-time table: one row per method with both a vanilla and a PLOT run."""
    vanilla_curve: list[tuple[float, float, float]] = field(default_factory=list)
    """The primary method's vanilla trade-off curve, ``(varied value, over-refusal, mean
    ASR)`` (:func:`plot_ray.demo.report.vanilla_curve`); empty without one."""
    stability: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    """Per metric, the stability grid's ``(weight, value)`` points of ``PLOT``, ``DEFT`` and
    the ``vanilla`` run (:func:`plot_ray.demo.report.stability_points`); empty without one."""


def write_figures(
    folder: Path, numbers: FigureNumbers, metrics: dict, profile
) -> list[tuple[Path, str]]:
    """Draw every figure that has something to show into ``folder``; returns ``(path,
    caption)`` per figure written."""
    plt = start_matplotlib()
    folder.mkdir(parents=True, exist_ok=True)
    made: list[tuple[Path, str]] = []
    for fig, name, caption in chain(
        _asr_per_attack(plt, numbers),
        _safety_vs_helpfulness(plt, numbers, profile),
        _asr_vs_alpha(plt, numbers, profile),
        _attack_curves(plt, numbers, metrics, profile),
        _ablations(plt, numbers, profile),
        _alpha_stability(plt, numbers, profile),
        _training_overhead(plt, numbers),
    ):
        made.append((save_figure(fig, folder / name, dpi=DPI), caption))
    return made


def _colour(method: str, alpha: float = 0.0):
    """A run's colour: its method's (:func:`~plot_ray.reporting.method_colour`), lighter with
    PLOT (``alpha`` > 0)."""
    colour = method_colour(method)
    return lighter(colour) if alpha else colour


def _asr_per_attack(plt, numbers: FigureNumbers) -> Drawn:
    """ASR per attack per method ± PLOT."""
    attacks, groups = numbers.attacks, numbers.groups
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(attacks) + 2), 3.8))
    width = 0.8 / len(groups)
    for i, (label, match) in enumerate(groups):
        stats = [numbers.stats(f"asr/{a}", **match) for a in attacks]
        ax.bar(
            [j + i * width for j in range(len(attacks))],
            [100 * s["mean"] if s else 0 for s in stats],
            width,
            yerr=[100 * (s["std"] or 0) if s else 0 for s in stats],
            label=label,
            color=_colour(match["method"], match.get("alpha", 0.0)),
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(attacks))], attacks)
    ax.set_ylabel("attack success rate (%)")
    ax.set_title("ASR per attack (mean ± std over seeds)")
    ax.legend(fontsize=7)
    yield fig, "asr_per_attack.png", "ASR per attack, per method with and without PLOT"


def _safety_vs_helpfulness(plt, numbers: FigureNumbers, profile) -> Drawn:
    """Safety vs helpfulness, one point per run: colour = method, marker = alpha; the right
    panel draws each method's alpha path through its group means (the matched-helpfulness
    table reads ASR off these lines)."""
    by_model: dict[str, dict] = defaultdict(dict)
    for r in numbers.rows:
        by_model[r["model"]][r["metric"]] = r
    others = [a for a in profile.all_alphas if a not in (0.0, profile.main_alpha)]
    # not P, x, *, s: controls, ablations, DEFT and the base model have those
    markers = {0.0: "o", profile.main_alpha: "^", **dict(zip(others, "vD<>hp", strict=False))}
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0), sharey=True)
    labelled: set[str] = set()
    for m in by_model.values():
        if "asr/mean" not in m:
            continue
        first = next(iter(m.values()))
        if first["method"] == "base":
            style, label = {"marker": "s", "color": method_colour("base")}, "base"
        elif first["ablation"] in profile.controls:
            style = {"marker": "P", "color": _colour(first["method"], first["alpha"])}
            label = f"{first['method'].upper()} {first['ablation']}"
        elif first["ablation"] in profile.deft_runs:
            style = {"marker": "*", "color": method_colour("deft")}
            label = f"{first['method'].upper()} + DEFT"
        elif first["ablation"] in profile.vanilla_curve:
            style = {"marker": "d", "color": _colour(first["method"])}
            label = f"{first['method'].upper()} vanilla curve"
        elif first["ablation"]:
            style, label = {"marker": "x", "color": "grey"}, "ablations"
        else:
            style = {"marker": markers.get(first["alpha"], "o"), "color": _colour(first["method"])}
            label = f"{first['method'].upper()} α={first['alpha']:g}"
        y = 100 * m["asr/mean"]["value"]
        for ax, metric, fallback in (
            (axes[0], "lc_win_rate", 50.0),
            (axes[1], "over_refusal", None),
        ):
            x = m[metric]["value"] if metric in m else fallback
            if x is not None:
                ax.scatter(x, y, alpha=0.75, **style, label=None if label in labelled else label)
                labelled.add(label)
    for method in profile.methods:
        path = numbers.paths[method]
        if len(path) > 1:
            axes[1].plot(
                [x for _, x, _ in path], [100 * y for _, _, y in path], color=_colour(method), lw=1
            )
            for alpha, x, y in path:  # the means the line joins; one seed: hollow
                runs = numbers.stats("asr/mean", method=method, alpha=alpha, ablation="")["runs"]
                _mark(axes[1], x, 100 * y, _colour(method, alpha), runs, "D", ms=8, zorder=3)
    curve = numbers.vanilla_curve
    if curve:
        axes[1].plot(
            [x for _, x, _ in curve],
            [100 * y for _, _, y in curve],
            color=_colour(profile.ablation_method),
            lw=1,
            ls="--",
            label=f"{profile.ablation_method.upper()} vanilla curve",
        )
        axes[1].legend(fontsize=6)
    axes[0].set_xlabel("LC win rate vs base on benign prompts (%)")
    axes[1].set_xlabel("over-refusal (share of benign prompts refused)")
    axes[0].set_ylabel("ASR, mean over attacks (%)")
    axes[0].set_title("safety vs helpfulness (one point per run)", fontsize=9)
    axes[1].set_title("lines: each method's mean over seeds, alpha 0 → max", fontsize=9)
    axes[0].legend(fontsize=6, ncol=2)
    yield (
        fig,
        "safety_vs_helpfulness.png",
        "Safety vs helpfulness, one point per run (colour: method; ○ vanilla, △ PLOT at the "
        "main alpha, other markers other alphas, ■ base, × ablations, ✚ controls, ◆ the vanilla "
        "curve's runs, ★ DEFT); right: each method's alpha path through its means "
        "(large ◇, hollow: one seed) and, dashed, the vanilla trade-off curve",
    )


def _mark(ax, x: float, y: float, colour, runs: int, marker: str, **kw) -> None:
    """A mean's marker: filled over several seeds, hollow over one."""
    face = colour if runs > 1 else "none"
    ax.plot([x], [y], marker=marker, ls="", color=colour, markerfacecolor=face, **kw)


def _asr_vs_alpha(plt, numbers: FigureNumbers, profile) -> Drawn:
    """The mean ASR against alpha per method, mean ± std over seeds."""
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for method in profile.methods:
        pts = []
        for alpha in profile.all_alphas:
            s = numbers.stats("asr/mean", method=method, alpha=alpha, ablation="")
            if s:
                pts.append((alpha, 100 * s["mean"], 100 * (s["std"] or 0), s["runs"]))
        if pts:
            ax.errorbar(
                [p[0] for p in pts],
                [p[1] for p in pts],
                [p[2] for p in pts],
                label=method.upper(),
                color=_colour(method),
            )
            for alpha, y, _, runs in pts:
                _mark(ax, alpha, y, _colour(method), runs, "o")
    ax.set_xlabel("alpha (0 = vanilla)")
    ax.set_ylabel("ASR, mean over attacks (%)")
    ax.set_title("ASR vs alpha")
    ax.legend(fontsize=8)
    yield (
        fig,
        "asr_vs_alpha.png",
        "ASR vs alpha, mean ± std over seeds (hollow: one seed, no spread)",
    )


def _attack_curves(plt, numbers: FigureNumbers, metrics: dict, profile) -> Drawn:
    """Curves from the evaluation's metrics: ASR vs an optimisation attack's steps, and the
    share of behaviours broken by any of their first k test cases of a sampling attack; one
    line per method, vanilla and + PLOT at the main alpha (mean over seeds)."""
    from plot_ray.eval.report import asr_by_num_cases, asr_curves

    by_cases: dict[str, dict[str, list]] = defaultdict(dict)
    for model, m in metrics["models"].items():
        for attack, pts in asr_by_num_cases(m.get("harmful", {})).items():
            by_cases[attack][model] = pts
    curve_sets = [
        (f"asr_vs_{a}_steps.png", f"{a} steps", "attack success rate (%)", f"ASR vs {a} steps", c)
        for a, c in asr_curves(metrics).items()
    ] + [
        (
            f"asr_vs_{a}_test_cases.png",
            f"{a} test cases per behaviour",
            "behaviours broken by any (%)",
            f"Share of behaviours broken by any of their first k {a} test cases",
            c,
        )
        for a, c in by_cases.items()
    ]
    meta = {r["model"]: r for r in numbers.rows}
    for name, xlabel, ylabel, caption, by_model in curve_sets:
        curves: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        colours = {}
        for model, pts in by_model.items():
            r = meta.get(model)
            if not pts or r is None or r["ablation"]:
                continue
            if r["alpha"] not in (0.0, profile.main_alpha):
                continue
            label = (
                "base"
                if r["method"] == "base"
                else f"{r['method'].upper()}{' + PLOT' if r['alpha'] else ''}"
            )
            colours[label] = _colour(r["method"], r["alpha"])
            for x, y in pts:
                curves[label][x].append(y)
        if curves:
            fig, ax = plt.subplots(figsize=(4.8, 3.6))
            for label, by_x in curves.items():
                xs = sorted(by_x)
                means = [100 * statistics.fmean(by_x[x]) for x in xs]
                ax.plot(xs, means, marker="o", label=label, color=colours[label])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(caption if len(caption) < 40 else f"{xlabel.split()[0]}: {ylabel}")
            ax.legend(fontsize=7)
            yield fig, name, caption + " (mean over seeds)"


def _ablations(plt, numbers: FigureNumbers, profile) -> Drawn:
    """The ablation runs (one seed) beside the PLOT defaults, with the defaults' seed spread
    as a band and the vanilla method's mean as a line."""
    if not profile.ablations:
        return
    method, alpha, seed = profile.ablation_method, profile.main_alpha, profile.seeds[0]
    labels = ["", *profile.ablations]
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.8))
    for ax, metric, scale, ylabel in (
        (axes[0], "asr/mean", 100, "ASR, mean over attacks (%)"),
        (axes[1], "over_refusal", 1, "over-refusal"),
    ):
        stats = [
            numbers.stats(metric, method=method, seed=seed, alpha=alpha, ablation=lbl)
            for lbl in labels
        ]
        ax.bar(
            [lbl or "defaults" for lbl in labels],
            [scale * s["mean"] if s else 0 for s in stats],
            color=_colour(method, alpha),
            hatch="//",  # each bar is one run (seed seeds[0])
            edgecolor="white",
        )
        spread = numbers.stats(metric, method=method, alpha=alpha, ablation="")
        if spread and spread["std"] is not None:  # the defaults' seed spread as a band
            lo, hi = (scale * (spread["mean"] + k * spread["std"]) for k in (-1, 1))
            ax.axhspan(lo, hi, color="grey", alpha=0.25, label="defaults, mean ± std (seeds)")
        vanilla = numbers.stats(metric, method=method, alpha=0.0, ablation="")
        if vanilla:
            ax.axhline(
                scale * vanilla["mean"],
                color=_colour(method),
                ls="--",
                lw=1,
                label="vanilla (mean)",
            )
        if spread or vanilla:
            ax.legend(fontsize=7)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.suptitle(f"ablations of {method.upper()} + PLOT (one run each, seed {seed})", fontsize=10)
    yield (
        fig,
        "ablations.png",
        "Ablations: one PLOT setting changed at a time (hatched: one seed each)",
    )


def _alpha_stability(plt, numbers: FigureNumbers, profile) -> Drawn:
    """One panel per metric: its value against the weight (log x) of PLOT (alpha, in PLOT's
    shade of the method's colour) and of DEFT (``loss.deft.weight``, DEFT's colour), one run
    per point (hollow), and the vanilla run's value as a dashed line."""
    if not numbers.stability:
        return
    method, grid = profile.ablation_method, profile.stability_weights
    colours = {"PLOT": _colour(method, 1.0), "DEFT": method_colour("deft")}
    cols = min(4, len(numbers.stability))
    rows = -(-len(numbers.stability) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 2.3 * rows), squeeze=False)
    for ax, (metric, arms) in zip(axes.flat, numbers.stability.items(), strict=False):
        scale = 100 if metric.startswith("asr/") else 1
        for arm, colour in colours.items():
            if arms[arm]:
                xs, ys = zip(*arms[arm], strict=True)
                ax.plot(xs, [scale * y for y in ys], color=colour, lw=1, label=arm)
                for x, y in arms[arm]:
                    _mark(ax, x, scale * y, colour, 1, "o")
        for _, y in arms["vanilla"]:
            ax.axhline(scale * y, color=_colour(method), ls="--", lw=0.8, label="α=0")
        ax.set_xscale("log")
        ax.minorticks_off()  # the grid's weights as the only ticks: log minor labels overlap
        ax.set_xticks(grid, [f"{w:g}" for w in grid])
        ax.set_title(metric + (" (%)" if scale == 100 else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(numbers.stability) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=6)
    fig.supxlabel("PLOT's alpha / DEFT's weight (log scale)", fontsize=9)
    fig.suptitle(
        f"{method.upper()}: alpha stability, seed {profile.seeds[0]} (one run per point)",
        fontsize=10,
    )
    yield (
        fig,
        "alpha_stability.png",
        "Every metric against PLOT's alpha and DEFT's weight over the stability grid (log "
        "scale; hollow: one run per point; dashed: the method without either)",
    )


def _training_overhead(plt, numbers: FigureNumbers) -> Drawn:
    """PLOT's training time over the vanilla method's, per method."""
    overhead = numbers.overhead
    if not overhead:
        return
    fig, ax = plt.subplots(figsize=(4.4, 3.2))
    ax.bar(
        [o["method"] for o in overhead],
        [float(o["PLOT / vanilla"]) for o in overhead],
        color=[_colour(o["method"]) for o in overhead],
    )
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel("training time, PLOT / vanilla")
    ax.set_title("PLOT's training-time overhead")
    yield fig, "training_overhead.png", "Training time of +PLOT over the vanilla method"
