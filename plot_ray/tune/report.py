"""A sweep's results on disk: ``trials.parquet`` (one row per trial), ``summary.md`` (mean ± std
over seeds per configuration, the best configuration per method) and ``metric_vs_alpha.png``
(the objective against ``loss.alpha`` per method, seed error bars: the alpha-stability plot).

Everything is computed from the rows that :func:`plot_ray.tune.sweep.run_sweep` collected;
Ray Tune's own results (TensorBoard-readable) stay in ``ray_tune/``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from plot_ray.config import PlotRayConfig
from plot_ray.tune.space import SEED_KEY

__all__ = ["write_report", "group_by_config"]


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


def _markdown(cfg: PlotRayConfig, rows, groups, seconds: float, points: int) -> str:
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
    lines += [
        "| " + " | ".join([*keys, metric, "seeds"]) + " |",
        "|" + " --- |" * (len(keys) + 2),
    ]
    for g in groups:
        cells = [str(g["params"].get(k, "")) for k in keys]
        lines.append(
            "| " + " | ".join([*cells, f"{g['mean']:.4f} ± {g['std']:.4f}", str(g["n"])]) + " |"
        )
    best: dict[str, dict] = {}
    pick = max if mode == "max" else min
    for g in groups:
        method = str(g["params"].get("loss.method", cfg.loss.method))
        best[method] = pick([best.get(method, g), g], key=lambda x: x["mean"])
    lines += ["", "## Best configuration per method", ""]
    for method, g in best.items():
        where = ", ".join(f"{k}={v}" for k, v in sorted(g["params"].items()))
        lines.append(
            f"- **{method}**: {where or '(base config)'}: {g['mean']:.4f} ± {g['std']:.4f}"
        )
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "## Trials that did not finish", ""]
        for r in failed:
            params = {k[len("param/") :]: v for k, v in r.items() if k.startswith("param/")}
            lines.append(f"- {r['trial_id']} {params}: {r['status']}: {r['error'] or '-'}")
    return "\n".join(lines) + "\n"


def _figure(out: Path, cfg: PlotRayConfig, groups) -> Path | None:
    """The objective against loss.alpha, one line per method, seed std as error bars."""
    if not any("loss.alpha" in g["params"] for g in groups):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list] = defaultdict(list)
    for g in groups:
        if "loss.alpha" in g["params"]:
            method = str(g["params"].get("loss.method", cfg.loss.method))
            lines[method].append((float(g["params"]["loss.alpha"]), g["mean"], g["std"]))
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
        )
    ax.set_xlabel("loss.alpha")
    ax.set_ylabel(cfg.tune.metric)
    ax.set_title(f"{cfg.tune.metric} vs alpha (mean ± std over seeds)")
    ax.legend()
    fig.tight_layout()
    path = out / "metric_vs_alpha.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(out: Path, rows, cfg: PlotRayConfig, points: int, seconds: float):
    """Write the table, the summary and the figure; returns a :class:`SweepResult`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from plot_ray.tune.sweep import SweepResult

    columns = sorted({k for r in rows for k in r})
    table = pa.table(
        {
            c: [json.dumps(r.get(c)) if c.startswith("param/") else r.get(c) for r in rows]
            for c in columns
        }
    )
    pq.write_table(table, out / "trials.parquet")
    groups = group_by_config(rows, cfg.tune.metric)
    (out / "summary.md").write_text(_markdown(cfg, rows, groups, seconds, points))
    figure = _figure(out, cfg, groups)
    return SweepResult(
        dir=str(out),
        trials=rows,
        table=str(out / "trials.parquet"),
        summary=str(out / "summary.md"),
        figures=[str(figure)] if figure else [],
        groups=groups,
    )
