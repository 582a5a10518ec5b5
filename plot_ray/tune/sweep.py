"""Ray Tune sweeps: one Ray Train + DeepSpeed run per trial (``plot-ray tune``).

    run_sweep(cfg)      validate every trial's config → Tuner over a function trainable that
                        builds and fits the trial's TorchTrainer (plot_ray.train.run_training,
                        with Tune's TuneReportCallback) → trials.parquet, summary.md, figures

This is the pattern Ray 2.60's Train V2 supports (``Tuner(TorchTrainer)`` is not): the trial
itself needs almost no CPU (``{"cpu": 0.01}``), its Ray Train workers take the resources.
All trials share the prepared data (``data.output_dir``): run ``plot-ray prepare`` first.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plot_ray.config import PlotRayConfig
from plot_ray.tune.space import SEED_KEY, check_space, param_space, trial_config

if TYPE_CHECKING:
    from plot_ray.tune.report import SweepResult

__all__ = [
    "run_sweep",
    "sweep_dir",
    "concurrency",
    "scheduler",
    "searcher",
    "trial_run_name",
]

TRIAL_CPU = 0.01  # the trial's own process; 0 is rejected, 1 starves the workers (2-CPU boxes)
# In a trial's run folder: the result it reported to Tune, written first (see _trial).
TRIAL_RESULT = "tune_result.json"
PLACEMENT_GROUPS = "placement_groups.txt"  # in a trial's run folder (see _trial)
FINISHED = "trial_finished"  # set only in a trial's final result: its training completed
# Seconds between saves of Tune's experiment state (what --resume restores). Tune's own default
# is 10 s or more; a kill inside that window loses trials that had just started (they come back
# under new ids) and the news that others finished. A save is one small JSON file.
EXPERIMENT_STATE_PERIOD_S = "1"
EVALUATION_PREFIX = "evaluation/"  # tune.evaluate's metrics (see evaluate_trial)


def sweep_dir(cfg: PlotRayConfig) -> Path:
    return Path(cfg.tune.output_dir).resolve() / cfg.tune.name


def trial_run_name(trial_id: str) -> str:
    """The run folder (``train.run_name``) of a trial under ``<sweep>/trials/``."""
    return f"trial_{trial_id}"


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


def _objective_reports(metric: str):
    """Ray Tune's ``TuneReportCallback``, passing on only the reports that carry ``metric``.

    Ray Train reports at checkpoints, validation passes and ``train.report_every``; Tune fails a
    trial on a result without its metric (strict metric checking) and ASHA and Optuna read the
    metric from every result, so a checkpoint report without validation numbers stays with Ray
    Train (the run's checkpoints are Ray Train's, not Tune's, in any case).
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    class ObjectiveReports(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metrics and metric in metrics[0]:
                super().after_report(run_context, metrics, checkpoint)

    return ObjectiveReports()


def _record_placement_groups(run_dir: Path):
    """A Ray Train controller callback that appends the id of each worker group's placement
    group to ``<run_dir>/placement_groups.txt``, for :func:`_release_ended_trials`."""
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback

    class RecordPlacementGroups(WorkerGroupCallback):
        def after_worker_group_start(self, worker_group):
            # where Ray's own PlacementGroupCleanerCallback finds it
            state = worker_group.get_worker_group_state()
            with (run_dir / PLACEMENT_GROUPS).open("a") as fh:
                fh.write(state.placement_group_handle.placement_group.id.hex() + "\n")

    return RecordPlacementGroups()


def _trial_lines(total: int):
    """A Tune callback that prints one line as each trial starts and ends (with its
    parameters and the objective), so a sweep shows its progress without Tune's tables."""
    from ray import tune

    class TrialLines(tune.Callback):
        def __init__(self):
            self.ended = 0

        @staticmethod
        def _params(trial) -> str:
            return ", ".join(f"{k}={v}" for k, v in (trial.config or {}).items())

        def on_trial_start(self, iteration, trials, trial, **info):
            print(f"  trial {trial.trial_id} started: {self._params(trial)}", flush=True)

        def _end(self, trial, how: str) -> None:
            self.ended += 1
            print(
                f"  [{self.ended}/{total}] trial {trial.trial_id} {how}: {self._params(trial)}",
                flush=True,
            )

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._end(trial, "finished")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "FAILED")

    return TrialLines()


def _release_ended_trials(trials_dir: Path):
    """A Tune callback that removes the placement groups (the reserved CPUs/GPUs) of the Ray
    Train runs of trials that have ended.

    Tune stops a trial (``tune.scheduler``) by ending its actor; the trial's Ray Train
    controller dies with it and never removes its workers' placement group, which belongs to
    the sweep's driver and so would hold its CPUs until the sweep ends: later trials would wait
    for them forever. Ray Train's own cleaner for this asks the state API (the dashboard),
    which is often off on local instances and picks the wrong instance when a machine runs
    several. A trial that finished removed its group itself; removing is checked, so it is a
    no-op then. Groups a dying controller creates late are caught on a later step.
    """
    from ray import tune

    class ReleaseEndedTrials(tune.Callback):
        def __init__(self):
            self.ended: list[Path] = []
            self.checked = 0.0

        def _file(self, trial) -> Path:
            return trials_dir / trial_run_name(trial.trial_id) / PLACEMENT_GROUPS

        def _end(self, trial) -> None:
            self.ended.append(self._file(trial))
            self._release()

        def on_trial_start(self, iteration, trials, trial, **info):
            # a trial run again under its id (a retry) owns its new groups
            self.ended = [p for p in self.ended if p != self._file(trial)]

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._end(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial)

        def on_step_end(self, iteration, trials, **info):
            if time.monotonic() - self.checked > 2.0:
                self._release()

        def on_experiment_end(self, trials, **info):
            self._release()

        def _release(self) -> None:
            self.checked = time.monotonic()
            for path in self.ended:
                if path.is_file():
                    for pg_hex in path.read_text().split():
                        _remove_placement_group(pg_hex)

    return ReleaseEndedTrials()


def _remove_placement_group(pg_hex: str) -> None:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import (
        PlacementGroup,
        placement_group_table,
        remove_placement_group,
    )

    group = PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex)))
    if placement_group_table(group).get("state", "REMOVED") != "REMOVED":
        remove_placement_group(group)


def _start_or_resume(cfg: PlotRayConfig) -> bool:
    """Whether the trial's run continues from a checkpoint of an earlier attempt (a sweep killed
    while it ran, then ``--resume``d). A folder that holds no complete checkpoint is cleared,
    so the trial starts again from step 0."""
    import shutil

    from plot_ray.train.checkpoint import CheckpointError, find_resumable_run
    from plot_ray.train.trainer import run_log_dir, storage_path

    storage_run = Path(storage_path(cfg)) / cfg.train.run_name
    try:
        find_resumable_run(storage_run)
        return True
    except CheckpointError:
        for path in {storage_run, run_log_dir(cfg)}:
            shutil.rmtree(path, ignore_errors=True)
        return False


def _trial(params: dict[str, Any], base: dict[str, Any], trials_dir: str, metric: str) -> None:
    """One trial: the base config with this trial's parameters, trained by Ray Train.

    Rerun under the same trial id (``--resume``), it trains no step twice: a run that finished
    reports its stored result again (Tune's saved state can lag behind a trial's end), and a
    run killed midway continues from its newest checkpoint.
    """
    from ray import tune

    from plot_ray.train import run_training
    from plot_ray.train.trainer import run_log_dir

    cfg = trial_config(
        base,
        params,
        **{
            "train.run_name": trial_run_name(tune.get_context().get_trial_id()),
            "train.output_dir": trials_dir,
        },
    )
    stored = run_log_dir(cfg) / TRIAL_RESULT
    if stored.is_file():
        tune.report(json.loads(stored.read_text()))
        return
    started = time.perf_counter()
    resume = _start_or_resume(cfg)
    run = run_training(
        cfg,
        resume=resume,
        verbose=False,
        callbacks=[_objective_reports(metric), _record_placement_groups(stored.parent)],
    )
    # The last step's row holds its training metrics and the final validation (eval/*).
    final = {k: v for k, v in run.last.items() if isinstance(v, (int, float))}
    if cfg.tune.evaluate:
        final.update(evaluate_trial(cfg, run.run_dir))
    result = {
        **final,
        FINISHED: True,
        "resumed": resume,
        "run_dir": str(run.run_dir),
        "final_model": str(run.final_model) if run.final_model else "",
        "train_seconds": time.perf_counter() - started,
    }
    partial = stored.with_suffix(".tmp")  # a kill mid-write leaves no half-written result
    partial.write_text(json.dumps(result) + "\n")
    partial.replace(stored)
    tune.report(result)


def run_sweep(cfg: PlotRayConfig, base: dict[str, Any], resume: bool = False) -> SweepResult:
    """Run (or with ``resume`` continue) the sweep ``cfg.tune`` over the raw base config
    ``base``; returns and writes the results (see :mod:`plot_ray.tune.report`).

    ``resume`` restores Tune's saved state: finished trials are kept as they are, trials that
    were running or waiting when the sweep stopped run (a trial's run continues from its
    newest checkpoint), errored trials run again, and trials not yet started start.
    """
    import ray
    from ray import tune

    from plot_ray.cluster import init_ray_from_config
    from plot_ray.tune.report import write_report

    # Everything that can be checked without a cluster is, before one starts.
    points = check_space(base, cfg.tune)
    space = param_space(cfg.tune)
    trial_scheduler, search_alg = scheduler(cfg), searcher(cfg)
    _check_metric_is_reported(cfg)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    init_ray_from_config(cfg.cluster, verbose=False)
    out = sweep_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    trials_dir = out / "trials"
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, trials_dir=str(trials_dir), metric=cfg.tune.metric),
        {"cpu": TRIAL_CPU},
    )
    experiment = out / "ray_tune"
    started = time.perf_counter()
    if resume:
        if not tune.Tuner.can_restore(str(experiment)):
            raise FileNotFoundError(f"no sweep to resume at {experiment}")
        # resume_unfinished (Ray's default) covers trials killed while RUNNING: they keep their
        # id, so _trial finds their run folder. resume_errored also keeps the id (Ray's
        # restart_errored would give a new one and orphan the folder).
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        if experiment.exists():
            raise FileExistsError(
                f"{experiment} holds a sweep named {cfg.tune.name!r}: pass --resume to continue "
                "it, or set tune.name"
            )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=cfg.tune.metric,
                mode=cfg.tune.mode,
                num_samples=cfg.tune.num_samples,
                max_concurrent_trials=concurrency(cfg, ray.cluster_resources()),
                scheduler=trial_scheduler,
                search_alg=search_alg,
                # A finished trial's process runs the next trial, its imports (torch,
                # transformers, Ray Train) done: 1-step trials 19 s apart instead of 22-27 s on
                # an idle 2-core machine (tests/test_tune.py's killed sweep). Not with a
                # scheduler: a trial it stops may still be in its fit when Tune would hand the
                # process on (Tune then fails the next trial).
                reuse_actors=trial_scheduler is None,
            ),
            run_config=tune.RunConfig(
                name="ray_tune",
                storage_path=str(out),
                failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
                callbacks=[
                    _release_ended_trials(trials_dir),
                    _trial_lines(points * cfg.tune.num_samples),
                ],
                verbose=0,
            ),
        )
    grid = tuner.fit()
    rows = [_row(result, cfg, trials_dir) for result in grid]
    return write_report(out, rows, cfg, points=points, seconds=time.perf_counter() - started)


def evaluate_trial(cfg: PlotRayConfig, run_dir: Path) -> dict[str, float]:
    """``tune.evaluate``: ``plot-ray eval`` of the trial's final model with the sweep's
    ``eval`` section, results in ``<run_dir>/evaluation/``; its main table's numbers as
    ``evaluation/<metric>`` (e.g. ``evaluation/asr/direct_request``, ``evaluation/accuracy``).
    The engine pool gets the trial's own CPU share, not the cluster's."""
    from plot_ray.config import validate_config
    from plot_ray.eval import run_eval
    from plot_ray.eval.report import summary_rows
    from plot_ray.train.trainer import training_cpus

    raw = cfg.to_dict()
    raw["eval"].update(
        models=[{"name": "trial", "path": str(run_dir)}],
        baseline=None,
        output_dir=str(run_dir),
        name="evaluation",
    )
    metrics = run_eval(validate_config(raw), progress=False, print_fn=None, cpus=training_cpus(cfg))
    row = summary_rows(metrics)[0]
    return {
        f"{EVALUATION_PREFIX}{k}": float(v)
        for k, v in row.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _check_metric_is_reported(cfg: PlotRayConfig) -> None:
    """A validation objective needs a validation split, an evaluation objective
    ``tune.evaluate`` and readable evaluation sets: fail before any trial starts."""
    from plot_ray.train.trainer import eval_split_subpreferences
    from plot_ray.train.validation import EVAL_PREFIX

    if cfg.tune.evaluate:
        from plot_ray.eval.tasks import build_cases

        build_cases(cfg.eval)  # a missing or malformed evaluation set fails now, not per trial
    if cfg.tune.metric.startswith(EVALUATION_PREFIX) and not cfg.tune.evaluate:
        raise ValueError(
            f"tune.metric={cfg.tune.metric} is an evaluation metric: set tune.evaluate=true "
            "(and the eval section's data), or choose a validation metric (eval/...)"
        )
    if cfg.tune.metric.startswith(EVALUATION_PREFIX) and cfg.tune.scheduler == "asha":
        raise ValueError(
            f"tune.scheduler=asha compares trials while they train, but {cfg.tune.metric} "
            "exists only when a trial's evaluation ends: use tune.scheduler=none"
        )

    if cfg.tune.metric.startswith(EVAL_PREFIX) and eval_split_subpreferences(cfg) is None:
        raise ValueError(
            f"tune.metric={cfg.tune.metric} is a validation metric, but {cfg.data.output_dir} "
            "has no validation split: set data.eval_sources and run `plot-ray prepare` again, "
            "or choose a training metric (e.g. loss/total)"
        )


def result_interval(cfg: PlotRayConfig) -> int | None:
    """Steps between the intermediate results that carry ``tune.metric`` (what ASHA compares
    trials on), or None when only the final step has it. Validation metrics come with each
    ``train.eval_every`` pass; training metrics with every report (``train.report_every``,
    validation passes, checkpoints)."""
    from plot_ray.train.validation import EVAL_PREFIX

    train = cfg.train
    if cfg.tune.metric.startswith(EVAL_PREFIX):
        every = [train.eval_every]
    else:
        every = [train.report_every, train.eval_every, train.checkpoint_every]
    every = [n for n in every if n and n < train.max_steps]
    return min(every) if every else None


def scheduler(cfg: PlotRayConfig):
    """The trial scheduler of ``tune.scheduler``: None, or ASHA over ``step``.

    ASHA (asynchronous successive halving) compares trials at rungs of grace, 4·grace,
    16·grace, ... steps (grace: the interval of results that carry the metric) and stops a
    trial that is outside the best quarter at a rung. The rungs stop short of
    ``train.max_steps``: a trial's final result is its end, not a reason to stop it while it
    writes its summary and final model.
    """
    if cfg.tune.scheduler == "none":
        return None
    every = result_interval(cfg)
    if every is None:
        from plot_ray.train.validation import EVAL_PREFIX

        need = (
            "train.eval_every (validation passes)"
            if cfg.tune.metric.startswith(EVAL_PREFIX)
            else "train.report_every"
        )
        raise ValueError(
            f"tune.scheduler=asha stops trials on intermediate results of tune.metric="
            f"{cfg.tune.metric}: set {need} below train.max_steps={cfg.train.max_steps}"
        )
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="step",
        max_t=cfg.train.max_steps - 1,  # every <= max_steps - 1 (result_interval)
        grace_period=every,
        stop_last_trials=False,
    )


def searcher(cfg: PlotRayConfig):
    """The search algorithm of ``tune.search``: None (Ray's grid and random sampling), or
    Optuna's TPE over the sampled dimensions (``num_samples`` trials; see ``param_space``)."""
    if cfg.tune.search == "basic":
        return None
    try:
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as exc:  # optuna is an optional extra
        raise ValueError(
            "tune.search=optuna needs Optuna: pip install 'plot-ray[tune]' (or optuna)"
        ) from exc
    return OptunaSearch()


def _row(result, cfg: PlotRayConfig, trials_dir: Path) -> dict[str, Any]:
    """One trial as a flat row: its parameters, final metrics, status and error.

    Status: ``ok`` (trained to the end), ``error``, ``stopped`` (ended early by
    ``tune.scheduler``; its metrics are the last it reported) or ``incomplete``.
    """
    metrics = dict(result.metrics or {})
    params = {k: v for k, v in (result.config or {}).items()}
    row: dict[str, Any] = {f"param/{k}": v for k, v in params.items()}
    row["trial_id"] = metrics.get("trial_id") or Path(result.path).name
    if result.error:
        row["status"] = "error"
    elif metrics.get(FINISHED):
        row["status"] = "ok"
    else:
        row["status"] = "incomplete" if cfg.tune.scheduler == "none" else "stopped"
    row["error"] = "" if result.error is None else f"{type(result.error).__name__}: {result.error}"
    row["run_dir"] = metrics.get("run_dir") or (
        str(trials_dir / trial_run_name(metrics["trial_id"])) if "trial_id" in metrics else ""
    )
    row["final_model"] = metrics.get("final_model", "")
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if key.startswith(
                ("loss/", "rewards/", "eval/", "plot/", EVALUATION_PREFIX)
            ) or key in (
                "step",
                "train_seconds",
                "tokens_per_s",
            ):
                row[f"metric/{key}"] = float(value) if math.isfinite(value) else None
    row["seed"] = params.get(SEED_KEY)
    return row


def main_summary_lines(result: SweepResult) -> list[str]:
    """What ``plot-ray tune`` prints at the end."""
    lines = [f"sweep: {len(result.trials)} trial(s) → {result.dir}"]
    stopped = [t for t in result.trials if t["status"] == "stopped"]
    failed = [t for t in result.trials if t["status"] not in ("ok", "stopped")]
    if stopped:
        lines.append(f"  {len(stopped)} trial(s) stopped early by tune.scheduler")
    if failed:
        lines.append(f"  {len(failed)} trial(s) did not finish: see the table's error column")
    lines.append(f"  table: {result.table}")
    lines.append(f"  summary: {result.summary}")
    lines.extend(f"  figure: {f}" for f in result.figures)
    return lines
