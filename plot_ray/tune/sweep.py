"""Ray Tune sweeps: one Ray Train + DeepSpeed run per trial (``plot-ray tune``).

    run_sweep(cfg)      validate every trial's config → Tuner over a function trainable that
                        builds and fits the trial's TorchTrainer (plot_ray.train.run_training,
                        with Tune's TuneReportCallback) → trials.parquet, summary.md, figures

This is the pattern Ray 2.60's Train V2 supports (``Tuner(TorchTrainer)`` is not): the trial
itself needs almost no CPU (``{"cpu": 0.01}``), its Ray Train workers take the resources.
All trials share the prepared data (``data.output_dir``): run ``plot-ray prepare`` first.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from plot_ray.config import PlotRayConfig
from plot_ray.tune.space import SEED_KEY, check_space, param_space, trial_config

__all__ = ["SweepResult", "run_sweep", "sweep_dir", "concurrency"]

TRIAL_CPU = 0.01  # the trial's own process; 0 is rejected, 1 starves the workers (2-CPU boxes)


class SweepResult(dict):
    """``{"dir", "trials" (list of rows), "table", "summary"}``: what ``run_sweep`` wrote."""


def sweep_dir(cfg: PlotRayConfig) -> Path:
    return Path(cfg.tune.output_dir).resolve() / cfg.tune.name


def concurrency(cfg: PlotRayConfig, resources: dict[str, float]) -> int:
    """How many trials fit the cluster at once: ``tune.max_concurrent_trials`` if set, else the
    CPUs (GPUs) of the cluster over what one trial's workers and data reads need."""
    from plot_ray.train.trainer import training_cpus

    if cfg.tune.max_concurrent_trials:
        return cfg.tune.max_concurrent_trials
    train = cfg.train
    per_trial_cpu = training_cpus(cfg) + TRIAL_CPU
    fit = int(resources.get("CPU", 0) // per_trial_cpu)
    if train.use_gpu:
        fit = min(fit, int(resources.get("GPU", 0) // train.num_workers))
    return max(1, fit)


def _trial(params: dict[str, Any], base: dict[str, Any], trials_dir: str) -> None:
    """One trial: the base config with this trial's parameters, trained by Ray Train."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from plot_ray.train import run_training

    name = f"trial_{tune.get_context().get_trial_id()}"
    cfg = trial_config(base, params, **{"train.run_name": name, "train.output_dir": trials_dir})
    started = time.perf_counter()
    run = run_training(cfg, verbose=False, callbacks=[TuneReportCallback()])
    # the last step's row holds its training metrics and the final validation (eval/*)
    final = {k: v for k, v in run.last.items() if isinstance(v, (int, float))}
    # The trial's last result: its final training and validation metrics, where it lives.
    tune.report(
        {
            **final,
            "done": True,
            "run_dir": str(run.run_dir),
            "final_model": str(run.final_model) if run.final_model else "",
            "train_seconds": time.perf_counter() - started,
        }
    )


def run_sweep(cfg: PlotRayConfig, base: dict[str, Any], resume: bool = False) -> SweepResult:
    """Run (or with ``resume`` continue) the sweep ``cfg.tune`` over the raw base config
    ``base``; returns and writes the results (see :mod:`plot_ray.tune.report`)."""
    import ray
    from ray import tune

    from plot_ray.cluster import init_ray_from_config
    from plot_ray.tune.report import write_report

    points = check_space(base, cfg.tune)
    init_ray_from_config(cfg.cluster, verbose=False)
    out = sweep_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, trials_dir=str(out / "trials")),
        {"cpu": TRIAL_CPU},
    )
    experiment = out / "ray_tune"
    started = time.perf_counter()
    if resume:
        if not tune.Tuner.can_restore(str(experiment)):
            raise FileNotFoundError(f"no sweep to resume at {experiment}")
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        if experiment.exists():
            raise FileExistsError(
                f"{experiment} holds a sweep named {cfg.tune.name!r}: pass --resume to continue "
                "it, or set tune.name"
            )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(cfg.tune),
            tune_config=tune.TuneConfig(
                metric=cfg.tune.metric,
                mode=cfg.tune.mode,
                num_samples=cfg.tune.num_samples,
                max_concurrent_trials=concurrency(cfg, ray.cluster_resources()),
                scheduler=_scheduler(cfg),
                search_alg=_searcher(cfg),
            ),
            run_config=tune.RunConfig(
                name="ray_tune",
                storage_path=str(out),
                failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
                verbose=0,
            ),
        )
    grid = tuner.fit()
    rows = [_row(result) for result in grid]
    return write_report(out, rows, cfg, points=points, seconds=time.perf_counter() - started)


def _scheduler(cfg: PlotRayConfig):
    if cfg.tune.scheduler == "none":
        return None
    if not cfg.train.report_every:
        raise ValueError(
            "tune.scheduler=asha stops trials on intermediate results: set train.report_every "
            "(and train.eval_every, for a validation metric)"
        )
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(max_t=cfg.train.max_steps, time_attr="step", grace_period=1)


def _searcher(cfg: PlotRayConfig):
    if cfg.tune.search == "basic":
        return None
    try:
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as exc:  # optuna is optional
        raise ValueError("tune.search=optuna needs `pip install optuna`") from exc
    return OptunaSearch()


def _row(result) -> dict[str, Any]:
    """One trial as a flat row: its parameters, final metrics, status and error."""
    metrics = dict(result.metrics or {})
    params = {k: v for k, v in (result.config or {}).items()}
    row: dict[str, Any] = {f"param/{k}": v for k, v in params.items()}
    row["trial_id"] = metrics.get("trial_id") or Path(result.path).name
    row["status"] = "error" if result.error else "ok" if metrics.get("done") else "incomplete"
    row["error"] = "" if result.error is None else f"{type(result.error).__name__}: {result.error}"
    for key in ("run_dir", "final_model"):
        row[key] = metrics.get(key, "")
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if key.startswith(("loss/", "rewards/", "eval/", "plot/")) or key in (
                "step",
                "train_seconds",
                "tokens_per_s",
            ):
                row[f"metric/{key}"] = float(value) if math.isfinite(value) else None
    row["seed"] = params.get(SEED_KEY)
    return row


def main_summary_lines(result: SweepResult) -> list[str]:
    """What ``plot-ray tune`` prints at the end."""
    lines = [f"sweep: {len(result['trials'])} trial(s) → {result['dir']}"]
    failed = [t for t in result["trials"] if t["status"] != "ok"]
    if failed:
        lines.append(f"  {len(failed)} trial(s) did not finish: see the table's error column")
    lines.append(f"  table: {result['table']}")
    lines.append(f"  summary: {result['summary']}")
    lines.extend(f"  figure: {f}" for f in result.get("figures", []))
    return lines
