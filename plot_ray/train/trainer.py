"""Ray Train wiring: checks that fail fast on the driver, then a ``TorchTrainer`` whose workers
each run :mod:`plot_ray.train.loop` with a DeepSpeed engine.

Local mode (no address) starts a Ray instance on this machine; ``cluster.address`` or
``RAY_ADDRESS`` connects to a cluster instead. Workers use gloo on CPU and nccl on GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plot_ray.config import PlotRayConfig
from plot_ray.train.checkpoint import (
    HF_MODEL_DIR,
    RAY_SNAPSHOT,
    CheckpointError,
    find_resumable_run,
    remove_orphaned_checkpoints,
)

__all__ = ["TrainRunResult", "run_training", "check_training_setup", "read_metrics"]



@dataclass
class TrainRunResult:
    run_dir: Path
    final_model: Path | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    removed_orphans: list[Path] = field(default_factory=list)

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


def _storage_path(cfg: PlotRayConfig) -> str:
    return cfg.cluster.storage_path or str(Path(cfg.train.output_dir).resolve())


def check_training_setup(cfg: PlotRayConfig) -> None:
    """Fail on the driver, in seconds and with a clear message, instead of inside N workers."""
    import ray

    from plot_ray.data import TokenCounts
    from plot_ray.data.feed import READ_CPUS as INGEST_CPUS
    from plot_ray.models import load_tokenizer

    train = cfg.train
    need_cpu = train.num_workers * train.cpus_per_worker
    have = ray.cluster_resources()
    # Ray Train waits forever for resources that never come, and Ray Data's read tasks, which
    # stream the shards to the workers, need CPU beside the workers: check both up front.
    if have.get("CPU", 0) < need_cpu + INGEST_CPUS:
        raise ValueError(
            f"train.num_workers={train.num_workers} × train.cpus_per_worker="
            f"{train.cpus_per_worker} needs {need_cpu:g} CPUs + {INGEST_CPUS:g} for Ray Data's "
            f"reads but the Ray cluster has {have.get('CPU', 0):g}: lower train.num_workers or "
            "train.cpus_per_worker (fractions are fine: workers set their own thread count)"
        )
    if train.use_gpu and have.get("GPU", 0) < train.num_workers:
        raise ValueError(
            f"train.use_gpu with {train.num_workers} workers needs {train.num_workers} GPUs; the "
            f"Ray cluster has {have.get('GPU', 0):g}"
        )
    tokenizer = load_tokenizer(cfg.model.tokenizer_path, cfg.model.trust_remote_code)
    # The shards and the PLOT counts were made with one tokenizer: it must be this model's.
    TokenCounts.load(cfg.data.output_dir, tokenizer=tokenizer)


def run_training(
    cfg: PlotRayConfig,
    resume: bool = False,
    fail_at_step: int | None = None,
    nan_at_steps: tuple[int, ...] = (),
) -> TrainRunResult:
    """Fine-tune ``cfg.model`` with ``cfg.loss`` on the prepared data; returns where it all is.

    ``resume`` continues a stopped run with the same ``train.run_name`` from its newest complete
    checkpoint. Fault injection, used by the tests: ``fail_at_step`` makes one worker crash once
    at that step (automatic restore); ``nan_at_steps`` makes the loss NaN at those steps.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from plot_ray.cluster import init_ray_from_config
    from plot_ray.data import load_tokenized_dataset
    from plot_ray.train.loop import train_loop_per_worker

    if not cfg.train.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    init_ray_from_config(cfg.cluster)
    dataset = load_tokenized_dataset(cfg.data.output_dir)  # fails fast without `prepare`
    check_training_setup(cfg)

    storage = _storage_path(cfg)
    run_dir = Path(storage) / cfg.train.run_name
    log_dir = Path(cfg.train.output_dir).resolve() / cfg.train.run_name
    if resume:
        find_resumable_run(run_dir)
    elif (run_dir / RAY_SNAPSHOT).is_file():
        raise CheckpointError(
            f"{run_dir} already holds a run named {cfg.train.run_name!r}: pass --resume to "
            "continue it, or set train.run_name to start a new one"
        )

    if cfg.loss.reference == "precomputed" and cfg.loss.needs_reference_logps:
        from plot_ray.train.reference import add_reference_logps

        dataset = add_reference_logps(cfg, dataset, log_dir / "reference_logps")

    use_gpu = cfg.train.use_gpu
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": cfg.to_dict(),
            "run_dir": str(log_dir),
            "artifact_dir": str(Path(cfg.data.output_dir).resolve()),
            "fail_at_step": fail_at_step,
            "nan_at_steps": list(nan_at_steps),
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=cfg.train.run_name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
        ),
        datasets={"train": dataset},
    )
    result = trainer.fit()
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
    run = TrainRunResult(
        run_dir=log_dir,
        final_model=final_model,
        metrics=read_metrics(log_dir),
        checkpoints=kept,
        removed_orphans=removed,
    )
    (log_dir / "summary.json").write_text(
        json.dumps(
            {
                "run_name": cfg.train.run_name,
                "storage": str(run_dir),
                "final_model": str(final_model) if final_model else None,
                "steps": len(run.metrics) and run.metrics[-1]["step"],
                "last_metrics": run.last,
                "checkpoints": [str(p) for p in kept],
                "config": cfg.to_dict(),
            },
            indent=2,
        )
        + "\n"
    )
    return run
