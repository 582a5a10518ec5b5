"""A sweep's results on disk: ``trials.parquet`` (one row per trial), ``summary.md`` (mean ± std
over seeds per configuration, the best configuration per method, the figures), and the figures
(PNG): ``metric_vs_alpha.png`` (the objective against ``loss.alpha`` per method, seed error
bars: the alpha-stability plot) and ``validation_curves.png`` (the objective and the
validation loss against the step, for the best trial of each method, from the trials' own
``metrics.jsonl``).

Everything is computed from the rows that :func:`plot_ray.tune.sweep.run_sweep` collected;
Ray Tune's own results (TensorBoard-readable) stay in ``ray_tune/``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plot_ray.config import PlotRayConfig
from plot_ray.reporting import markdown_table, method_colour, save_figure, start_matplotlib
from plot_ray.tune.space import SEED_KEY, with_variant

__all__ = ["SweepResult", "write_report", "group_by_config", "best_trials", "validation_curves"]

CURVE_LOSS = "eval/loss_total"  # the validation loss drawn beside the objective
# (file name, what it shows): the figures write_report may draw, in summary.md's words
FIGURES = {
    "metric_vs_alpha": ("metric_vs_alpha.png", "the objective against loss.alpha per method"),
    "validation_curves": (
        "validation_curves.png",
        "the objective and the validation loss against the step, best trial of each method",
    ),
}


@dataclass(frozen=True)
class SweepResult:
    """What :func:`write_report` (and so :func:`plot_ray.tune.sweep.run_sweep`) wrote."""

    dir: str
    """The sweep's folder (``tune.output_dir/tune.name``)."""
    trials: list[dict[str, Any]]
    """One row per trial: ``trial_id``, ``status`` (``ok``, ``stopped`` or why it did not
    finish), ``error``, ``run_dir``, ``param/<key>`` and ``metric/<key>``."""
    table: str
    """``trials.parquet``: :attr:`trials` as a table."""
    summary: str
    """``summary.md``: mean ± std over seeds, the best configuration per method, the figures."""
    figures: list[str]
    """The figures drawn (PNG), in :data:`FIGURES` order; a figure with nothing to show is
    not drawn."""
    groups: list[dict[str, Any]]
    """The finished trials grouped by configuration (:func:`group_by_config`)."""


def group_by_config(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Finished trials grouped by their parameters other than the seed: mean, std (sample,
    0 for one seed) and count of ``metric``, in first-seen order."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    params: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        value = row.get(f"metric/{metric}")
        if row["status"] != "ok" or value is None:
            continue
        p = {k[len("param/") :]: v for k, v in row.items() if k.startswith("param/")}
        p.pop(SEED_KEY, None)
        key = tuple(sorted((k, json.dumps(v)) for k, v in p.items()))
        params[key] = p
        groups[key].append(float(value))
    return [
        {
            "params": params[key],
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values),
        }
        for key, values in groups.items()
    ]


def _markdown(cfg: PlotRayConfig, rows, groups, seconds: float, points: int, figures) -> str:
    metric, mode = cfg.tune.metric, cfg.tune.mode
    ok = sum(r["status"] == "ok" for r in rows)
    lines = [
        f"# Sweep `{cfg.tune.name}`",
        "",
        f"{len(rows)} trial(s), {ok} finished; objective `{metric}` ({mode}); "
        f"{points} configuration(s) checked before starting; wall time {seconds:.0f} s.",
        "",
        "## Mean ± std over seeds",
        "",
    ]
    keys = sorted({k for g in groups for k in g["params"]})
    lines += markdown_table(
        [*keys, metric, "seeds"],
        [
            [*(g["params"].get(k, "") for k in keys), f"{g['mean']:.4f} ± {g['std']:.4f}", g["n"]]
            for g in groups
        ],
    )
    best: dict[str, dict] = {}
    pick = max if mode == "max" else min
    for g in groups:
        method = _method(g["params"], cfg)
        best[method] = pick([best.get(method, g), g], key=lambda x: x["mean"])
    lines += ["", "## Best configuration per method", ""]
    for method, g in best.items():
        where = ", ".join(f"{k}={v}" for k, v in sorted(g["params"].items()))
        lines.append(
            f"- **{method}**: {where or '(base config)'}: {g['mean']:.4f} ± {g['std']:.4f}"
        )
    stopped = [r for r in rows if r["status"] == "stopped"]
    if stopped:
        lines += ["", f"## Trials stopped early by tune.scheduler={cfg.tune.scheduler}", ""]
        for r in stopped:
            step = r.get("metric/step")
            at = f"step {step:.0f}" if step is not None else "before its first result"
            lines.append(f"- {r['trial_id']} {_params(r)}: stopped at {at}")
    failed = [r for r in rows if r["status"] not in ("ok", "stopped")]
    if failed:
        lines += ["", "## Trials that did not finish", ""]
        for r in failed:
            lines.append(f"- {r['trial_id']} {_params(r)}: {r['status']}: {_last_line(r['error'])}")
    if figures:
        lines += ["", "## Figures", ""]
        for name, path in figures.items():
            lines.append(f"- [{path.name}]({path.name}): {FIGURES[name][1]}")
    return "\n".join(lines) + "\n"


def _last_line(error: str) -> str:
    """A traceback's last line (the exception itself); the table keeps the whole text."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else "-"


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {k[len("param/") :]: v for k, v in row.items() if k.startswith("param/")}


def _method(params: dict[str, Any], cfg: PlotRayConfig) -> str:
    return str(with_variant(params, cfg.tune.variants).get("loss.method", cfg.loss.method))


def best_trials(rows: list[dict[str, Any]], cfg: PlotRayConfig) -> dict[str, dict[str, Any]]:
    """The finished trial with the best final ``tune.metric`` of each method (``loss.method``
    from the space, else the base config's), methods in sorted order."""
    pick = max if cfg.tune.mode == "max" else min
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        value = row.get(f"metric/{cfg.tune.metric}")
        if row["status"] != "ok" or value is None or not row.get("run_dir"):
            continue
        method = _method(_params(row), cfg)
        best[method] = pick(
            [best.get(method, row), row], key=lambda r: r[f"metric/{cfg.tune.metric}"]
        )
    return dict(sorted(best.items()))


def validation_curves(rows: list[dict[str, Any]], cfg: PlotRayConfig) -> dict[str, dict]:
    """For the best trial of each method: ``{"trial_id", "params", "curves": {key: ([steps],
    [values])}}`` for ``tune.metric`` and ``eval/loss_total``, read from the trial's own
    ``metrics.jsonl`` (one row per logged step; the steps with a validation pass hold eval/*)."""
    from plot_ray.train.trainer import read_metrics

    keys = list(dict.fromkeys([cfg.tune.metric, CURVE_LOSS]))
    out: dict[str, dict] = {}
    for method, row in best_trials(rows, cfg).items():
        logged = read_metrics(Path(row["run_dir"]))
        curves = {}
        for key in keys:
            points = [(m["step"], m[key]) for m in logged if m.get(key) is not None]
            if points:
                curves[key] = ([p[0] for p in points], [float(p[1]) for p in points])
        if curves:
            out[method] = {"trial_id": row["trial_id"], "params": _params(row), "curves": curves}
    return out


def _curves_figure(out: Path, cfg: PlotRayConfig, curves: dict[str, dict]) -> Path | None:
    """One panel per key (the objective, the validation loss), one line per method."""
    if not curves:
        return None
    from matplotlib.ticker import MaxNLocator

    plt = start_matplotlib()

    keys = list(dict.fromkeys(k for c in curves.values() for k in c["curves"]))
    fig, axes = plt.subplots(1, len(keys), figsize=(5.0 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for method, best in curves.items():
            if key in best["curves"]:
                steps, values = best["curves"][key]
                varied = {k: v for k, v in best["params"].items() if k != "loss.method"}
                label = method + (
                    " (" + ", ".join(f"{k}={v}" for k, v in sorted(varied.items())) + ")"
                    if varied
                    else ""
                )
                ax.plot(
                    steps,
                    values,
                    marker="o",
                    markersize=3,
                    label=label,
                    color=method_colour(method),
                )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key + (" (tune.metric)" if key == cfg.tune.metric else ""))
        ax.legend(fontsize="small")
    fig.suptitle("validation curves of the best trial per method")
    return save_figure(fig, out / FIGURES["validation_curves"][0])


def _figure(out: Path, cfg: PlotRayConfig, groups) -> Path | None:
    """The objective against loss.alpha, one line per method, seed std as error bars."""
    if not any("loss.alpha" in with_variant(g["params"], cfg.tune.variants) for g in groups):
        return None
    plt = start_matplotlib()

    lines: dict[str, list] = defaultdict(list)
    for g in groups:
        params = with_variant(g["params"], cfg.tune.variants)
        if "loss.alpha" in params:
            lines[_method(params, cfg)].append((float(params["loss.alpha"]), g["mean"], g["std"]))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, pts in sorted(lines.items()):
        pts.sort()
        ax.errorbar(
            [p[0] for p in pts],
            [p[1] for p in pts],
            yerr=[p[2] for p in pts],
            marker="o",
            capsize=3,
            label=method,
            color=method_colour(method),
        )
    ax.set_xlabel("loss.alpha")
    ax.set_ylabel(cfg.tune.metric)
    ax.set_title(f"{cfg.tune.metric} vs alpha (mean ± std over seeds)")
    ax.legend()
    return save_figure(fig, out / FIGURES["metric_vs_alpha"][0])


def write_report(out: Path, rows, cfg: PlotRayConfig, points: int, seconds: float) -> SweepResult:
    """Write the table, the figures and the summary; returns what it wrote."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = sorted({k for r in rows for k in r})
    table = pa.table(
        {
            c: [json.dumps(r.get(c)) if c.startswith("param/") else r.get(c) for r in rows]
            for c in columns
        }
    )
    pq.write_table(table, out / "trials.parquet")
    groups = group_by_config(rows, cfg.tune.metric)
    drawn = {
        "metric_vs_alpha": _figure(out, cfg, groups),
        "validation_curves": _curves_figure(out, cfg, validation_curves(rows, cfg)),
    }
    figures = {name: path for name, path in drawn.items() if path is not None}
    (out / "summary.md").write_text(_markdown(cfg, rows, groups, seconds, points, figures))
    return SweepResult(
        dir=str(out),
        trials=rows,
        table=str(out / "trials.parquet"),
        summary=str(out / "summary.md"),
        figures=[str(p) for p in figures.values()],
        groups=groups,
    )
