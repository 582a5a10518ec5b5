"""Ray Train wiring: checks that fail fast on the driver, then a ``TorchTrainer`` whose workers
each run :mod:`plot_ray.train.loop` with a DeepSpeed engine.

Local mode (no address) starts a Ray instance on this machine; ``cluster.address`` or
``RAY_ADDRESS`` connects to a cluster instead. Workers use gloo on CPU and nccl on GPUs.

What a run leaves in its log folder (``train.output_dir/train.run_name``): ``metrics.jsonl``
(one line per logged step; steps with a validation pass also hold its ``eval/*`` numbers),
``tensorboard/``, ``logs/ray_workers.log`` (the workers' output), ``attempts.jsonl`` (each
start of the worker group), with ``loss.deft.keep_fraction < 1`` DEFT's filter files
(:mod:`plot_ray.train.deft_filter`: ``deft_filter.json``, ``deft_filtered.parquet``, the scored
and kept rows), ``summary.json`` (steps, last metrics, final validation metrics,
failures survived, restores, checkpoints, final model) and ``final_model/``. The driver reads
rank 0's ``metrics.jsonl`` for its progress bar and summary, so on a multi-node cluster
``train.output_dir`` must be on a filesystem the driver shares with the workers.

Validation: with an eval split in the prepared data (``data.eval_sources``), the trainer gets
it as a second dataset that Ray Train does not split; see :mod:`plot_ray.train.validation`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plot_ray.config import PlotRayConfig
from plot_ray.train.checkpoint import (
    ATTEMPTS_FILE,
    HF_MODEL_DIR,
    RAY_SNAPSHOT,
    CheckpointError,
    find_resumable_run,
    remove_orphaned_checkpoints,
)
from plot_ray.train.validation import EVAL_PREFIX

__all__ = [
    "TrainRunResult",
    "run_training",
    "check_training_setup",
    "read_metrics",
    "run_log_dir",
    "storage_path",
    "training_cpus",
    "summary_lines",
    "WORKER_LOG",
]

WORKER_LOG = "logs/ray_workers.log"  # under the run's log folder


@dataclass
class TrainRunResult:
    run_dir: Path
    final_model: Path | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    removed_orphans: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # what summary.json holds
    # What Ray Train (and Ray Tune) received with the latest checkpoint, eval/* included.
    reported_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's logged metrics, one row per step (a later row for a step replaces an earlier)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


def _last_eval(metrics: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``eval/*`` numbers of the last step that has them, with that step."""
    for row in reversed(metrics):
        found = {k: v for k, v in row.items() if k.startswith(EVAL_PREFIX)}
        if found:
            return {"step": row["step"], **found}
    return None


def run_log_dir(cfg: PlotRayConfig) -> Path:
    """The run's log folder: metrics, TensorBoard, worker logs, summary, final model."""
    return Path(cfg.train.output_dir).resolve() / cfg.train.run_name


def _read_attempts(log_dir: Path) -> list[dict[str, Any]]:
    path = log_dir / ATTEMPTS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _restarts(attempts: list[dict[str, Any]], resume: bool) -> dict[str, Any]:
    """Failures survived and restores, from this ``fit()``'s attempts (the first is the run's
    own start, or the ``--resume``; each later one is a restart after a worker failure)."""
    first, later = (attempts[0] if attempts else None), attempts[1:]
    return {
        "resumed_from_step": first["from_step"] if resume and first else None,
        "failures_survived": len(later),
        "restores": [{"from_step": a["from_step"], "checkpoint": a["checkpoint"]} for a in later],
    }


def _last_appended_row(path: Path, offset: int) -> tuple[dict[str, Any] | None, int]:
    """The last complete row written to ``path`` after byte ``offset``, and the new offset
    (a file that a restore trimmed is read again from the start)."""
    if not path.exists():
        return None, offset
    if path.stat().st_size < offset:
        offset = 0
    with path.open("rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next look
    lines = [line for line in chunk[:end].splitlines() if line.strip()]
    try:
        return (json.loads(lines[-1]) if lines else None), offset + end
    except json.JSONDecodeError:  # trimmed and regrown past the offset: start over
        return _last_appended_row(path, 0) if offset else (None, offset)


@contextmanager
def _follow_metrics(path: Path, total_steps: int, start_step: int = 0):
    """A progress bar on stderr fed by rank 0's ``metrics.jsonl`` while the block runs: step,
    loss, reward accuracy and tokens/s as they are logged (nothing waits on it)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    stop = threading.Event()

    def poll() -> None:
        offset = 0
        while True:
            done = stop.wait(0.5)
            last, offset = _last_appended_row(path, offset)
            if last is not None:
                bar.n = last["step"]  # may go back after a restore
                shown = {"loss": last.get("loss/total"), "acc": last.get("rewards/accuracy")}
                bar.set_postfix(
                    {k: f"{v:.3f}" for k, v in shown.items() if v is not None}
                    | {"tok/s": f"{last.get('tokens_per_s', 0):.0f}"},
                    refresh=False,
                )
                bar.refresh()
            if done:
                return

    thread = threading.Thread(target=poll, name="plot-ray-progress", daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join()
        bar.close()


# The validation numbers the final summary shows (all of them, per sub-preference too, are in
# summary.json's "eval" and in metrics.jsonl).
SUMMARY_EVAL_KEYS = tuple(
    EVAL_PREFIX + name
    for name in ("loss_total", "loss_plot", "reward_accuracy", "reward_margin", "chosen_perplexity")
)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The final summary of a training run (``summary.json``'s content), line by line."""
    last = summary.get("last_metrics", {})
    lines = [f"trained {summary.get('steps', 0)} steps → {summary['run_dir']}"]
    keys = ("loss/total", "loss/vanilla", "loss/plot", "loss/deft", "rewards/accuracy")
    for key in (*keys, "tokens_per_s"):
        if key in last:
            lines.append(f"  {key:<18} {last[key]:.4f}")
    deft = summary.get("deft_filter")
    if deft:
        lines.append(
            f"DEFT filter kept {deft['rows_kept']} of {deft['rows_scored']} rows "
            f"({deft['kept_fraction']:.1%}, loss.deft.keep_fraction={deft['keep_fraction']} "
            f"per {'sub-preference' if deft.get('filter_scope') == 'subpreference' else 'run'}); "
            f"the {deft['rows_filtered']} left out, with why: {deft['filtered_rows']}"
        )
    final_eval = summary.get("eval")
    if final_eval:
        lines.append(
            f"validation at step {final_eval['step']} ({final_eval[EVAL_PREFIX + 'rows']:.0f} rows):"
        )
        for key in SUMMARY_EVAL_KEYS:
            if key in final_eval:
                lines.append(f"  {key:<22} {final_eval[key]:.4f}")
    elif "eval" in summary:
        lines.append("no validation split (data.eval_sources): no eval/* metrics")
    if summary.get("resumed_from_step") is not None:
        lines.append(f"resumed from step {summary['resumed_from_step']}")
    failures = summary.get("failures_survived", 0)
    if failures:
        restores = ", ".join(
            f"{r['checkpoint']} (step {r['from_step']})" if r["checkpoint"] else "the start"
            for r in summary.get("restores", [])
        )
        lines.append(
            f"survived {failures} worker failure{'s' if failures > 1 else ''}: restored from "
            f"{restores}; every step is logged once"
        )
    if last.get("nan_skips"):
        lines.append(f"skipped {last['nan_skips']} non-finite losses")
    if summary.get("final_model"):
        lines.append(
            f"final model (safetensors, loads with transformers and vLLM): {summary['final_model']}"
        )
    lines.append(f"worker logs (Ray, DeepSpeed): {summary['worker_log']}")
    return lines


def eval_split_subpreferences(cfg: PlotRayConfig) -> list[str] | None:
    """The sub-preference names of the prepared validation split, or None when the prepared
    data has none. Fails fast when ``train.eval_every`` asks for validation without one."""
    from plot_ray.data.schema import EVAL_DIR, SUMMARY_FILE

    summary_path = Path(cfg.data.output_dir) / EVAL_DIR / SUMMARY_FILE
    if not summary_path.is_file():
        if cfg.train.eval_every:
            raise ValueError(
                f"train.eval_every={cfg.train.eval_every} needs a validation split, but "
                f"{cfg.data.output_dir} has none: set data.eval_sources and run `plot-ray "
                "prepare` again (or leave train.eval_every unset)"
            )
        return None
    return list(json.loads(summary_path.read_text())["subpreferences"])


def storage_path(cfg: PlotRayConfig) -> str:
    """Where Ray Train keeps a run's checkpoints: ``cluster.storage_path``, else
    ``train.output_dir``, as an absolute path (Ray Train takes a relative one for a URI and
    fails); the run's folder is ``<storage_path>/<train.run_name>``, and the workers write
    their checkpoints straight into it."""
    if cfg.cluster.storage_path:
        return os.path.abspath(cfg.cluster.storage_path)
    return str(Path(cfg.train.output_dir).resolve())


def training_cpus(cfg: PlotRayConfig) -> float:
    """The CPUs one training run holds: its workers, plus Ray Data's reads that stream the
    shards to them (a sweep fits its concurrent trials to the cluster with this too)."""
    from plot_ray.data.feed import READ_CPUS

    return cfg.train.num_workers * cfg.train.cpus_per_worker + READ_CPUS


def check_training_setup(cfg: PlotRayConfig) -> None:
    """Fail on the driver, in seconds and with a clear message, instead of inside N workers."""
    import ray

    from plot_ray.cluster import resource_timeout_s, wait_for_resources
    from plot_ray.data import TokenCounts
    from plot_ray.models import load_tokenizer

    train = cfg.train
    need_cpu = train.num_workers * train.cpus_per_worker
    reads = training_cpus(cfg) - need_cpu
    # Ray Train waits forever for resources that never come, and Ray Data's read tasks, which
    # stream the shards to the workers, need CPU beside the workers: ask for both up front.
    worker = {"CPU": train.cpus_per_worker, **({"GPU": 1.0} if train.use_gpu else {})}
    wait_for_resources(
        [worker] * train.num_workers + [{"CPU": reads}],
        what=(
            f"training (train.num_workers={train.num_workers} x train.cpus_per_worker="
            f"{train.cpus_per_worker:g}{' and 1 GPU' if train.use_gpu else ''}, "
            f"+ {reads:g} CPU for Ray Data's reads)"
        ),
        timeout_s=resource_timeout_s(cfg.cluster),
        hint=(
            "lower train.num_workers or train.cpus_per_worker (fractions are fine: workers set "
            "their own thread count)" + (", or add GPU nodes" if train.use_gpu else "")
        ),
    )
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if train.placement_strategy == "STRICT_SPREAD" and nodes < train.num_workers:
        raise ValueError(
            f"train.placement_strategy=STRICT_SPREAD puts each of the {train.num_workers} workers "
            f"on its own node, but the Ray cluster has {nodes} alive node(s): lower "
            "train.num_workers or use SPREAD/PACK"
        )
    tokenizer = load_tokenizer(cfg.model.tokenizer_path, cfg.model.trust_remote_code)
    # The shards and the PLOT counts were made with one tokenizer: it must be this model's.
    TokenCounts.load(cfg.data.output_dir, tokenizer=tokenizer)


def _fit(cfg: PlotRayConfig, resume: bool, progress: bool, verbose: bool, recipe, callbacks=None):
    """Checks, then ``TorchTrainer.fit()`` with the workers' output going to the log file."""
    import ray.train
    from ray.train import DataConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from plot_ray.cluster import worker_logs_to_file
    from plot_ray.data import load_tokenized_dataset
    from plot_ray.train.loop import train_loop_per_worker

    dataset = load_tokenized_dataset(cfg.data.output_dir)  # fails fast without `prepare`
    eval_subpreferences = eval_split_subpreferences(cfg)
    datasets = {"train": dataset}
    if eval_subpreferences is not None:
        datasets["eval"] = load_tokenized_dataset(cfg.data.output_dir, split="eval")
    check_training_setup(cfg)

    storage = storage_path(cfg)
    run_dir = Path(storage) / cfg.train.run_name
    log_dir = run_log_dir(cfg)
    if resume:
        find_resumable_run(run_dir)
    elif (run_dir / RAY_SNAPSHOT).is_file():
        raise CheckpointError(
            f"{run_dir} already holds a run named {cfg.train.run_name!r}: pass --resume to "
            "continue it, or set train.run_name to start a new one"
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    attempts_before = len(_read_attempts(log_dir))
    logged = read_metrics(log_dir) if resume else []
    start_step = logged[-1]["step"] if logged else 0

    use_gpu = cfg.train.use_gpu
    with worker_logs_to_file(log_dir / WORKER_LOG, echo=verbose):
        if cfg.loss.deft.filters:  # before the reference log-probs: only kept rows need them
            from plot_ray.train.deft_filter import filter_training_rows

            datasets["train"], _ = filter_training_rows(
                cfg, datasets["train"], log_dir, str(Path(cfg.data.output_dir).resolve())
            )
        if cfg.loss.reference == "precomputed" and cfg.loss.needs_reference_logps:
            from plot_ray.train.reference import add_reference_logps

            folders = {"train": "reference_logps", "eval": "reference_logps_eval"}
            datasets = {
                name: add_reference_logps(cfg, ds, log_dir / folders[name])
                for name, ds in datasets.items()
            }
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "cfg": cfg.to_dict(),
                "run_dir": str(log_dir),
                "artifact_dir": str(Path(cfg.data.output_dir).resolve()),
                "eval_subpreferences": eval_subpreferences,
                "recipe": recipe,
            },
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(
                num_workers=cfg.train.num_workers,
                use_gpu=use_gpu,
                resources_per_worker={"CPU": cfg.train.cpus_per_worker},
                placement_strategy=cfg.train.placement_strategy,
            ),
            run_config=ray.train.RunConfig(
                name=cfg.train.run_name,
                storage_path=storage,
                failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
                callbacks=callbacks,
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=cfg.train.keep_checkpoints
                ),
            ),
            datasets=datasets,
            # Only training is split: Ray's equal split would drop eval rows; every worker
            # reads the eval split and scores its own rows (plot_ray.train.validation).
            dataset_config=DataConfig(datasets_to_split=["train"]),
        )
        follow = (
            _follow_metrics(log_dir / "metrics.jsonl", cfg.train.max_steps, start_step)
            if progress
            else nullcontext()
        )
        with follow:
            result = trainer.fit()
    return result, log_dir, run_dir, attempts_before


def run_training(
    cfg: PlotRayConfig,
    resume: bool = False,
    *,
    progress: bool = False,
    verbose: bool = True,
    recipe: type | None = None,
    callbacks: list | None = None,
) -> TrainRunResult:
    """Fine-tune ``cfg.model`` with ``cfg.loss`` on the prepared data; returns where it all is.

    ``resume`` continues a stopped run with the same ``train.run_name`` from its newest complete
    checkpoint. ``progress`` shows a progress bar (step, loss, reward accuracy, tokens/s) on
    stderr. The workers' output (Ray's, DeepSpeed's) is appended to ``logs/ray_workers.log``
    in the run's log folder, and also shown on the terminal when ``verbose``; a worker's error
    is raised here in full either way. ``recipe`` replaces
    :class:`~plot_ray.train.loop.PreferenceRecipe` with a subclass (it must pickle to the
    workers: importable there, or registered with ``ray.cloudpickle.register_pickle_by_value``).
    ``callbacks`` are Ray Train callbacks for the run (a Tune sweep passes its
    ``TuneReportCallback`` here).
    """
    from plot_ray.cluster import check_shared_storage, init_ray_from_config, quiet_ray_driver

    init_ray_from_config(cfg.cluster, verbose=verbose)
    check_shared_storage(cfg, "train")  # workers on every node read shards, write checkpoints
    with quiet_ray_driver(not verbose):
        result, log_dir, run_dir, attempts_before = _fit(
            cfg, resume, progress, verbose, recipe, callbacks
        )
    if result.error is not None:
        raise result.error

    kept = [Path(c.path) for c, _ in (result.best_checkpoints or [])]
    removed = remove_orphaned_checkpoints(run_dir, kept) if run_dir.is_dir() else []
    final_model = None
    if result.checkpoint is not None and cfg.train.save_hf_model:
        with result.checkpoint.as_directory() as directory:
            source = Path(directory) / HF_MODEL_DIR
            if source.is_dir():
                final_model = log_dir / "final_model"
                if final_model.exists():
                    shutil.rmtree(final_model)
                shutil.copytree(source, final_model)
    metrics = read_metrics(log_dir)
    deft_filter = None
    if cfg.loss.deft.filters:
        from plot_ray.train.deft_filter import FILTER_REPORT

        report = json.loads((log_dir / FILTER_REPORT).read_text())
        deft_filter = {k: v for k, v in report.items() if k != "per_subpreference"}
        deft_filter["report"] = str(log_dir / FILTER_REPORT)
    summary = {
        "run_name": cfg.train.run_name,
        "run_dir": str(log_dir),
        "storage": str(run_dir),
        "final_model": str(final_model) if final_model else None,
        "steps": len(metrics) and metrics[-1]["step"],
        "last_metrics": metrics[-1] if metrics else {},
        # The last validation pass (after the final step); None: no eval split was prepared.
        "eval": _last_eval(metrics),
        # DEFT's data filter (loss.deft.keep_fraction < 1): its counts; None: no filter
        "deft_filter": deft_filter,
        **_restarts(_read_attempts(log_dir)[attempts_before:], resume),
        "checkpoints": [str(p) for p in kept],
        "removed_orphaned_checkpoints": [str(p) for p in removed],
        "worker_log": str(log_dir / WORKER_LOG),
        "config": cfg.to_dict(),
    }
    (log_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return TrainRunResult(
        run_dir=log_dir,
        final_model=final_model,
        metrics=metrics,
        checkpoints=kept,
        removed_orphans=removed,
        summary=summary,
        reported_metrics=dict(result.metrics or {}),
    )
