"""Connecting to Ray: a cluster when an address is given, else a local instance.

In local mode the dashboard (and with it the job server) binds to loopback only, usage stats are
off, and the object store is sized explicitly so a laptop or CI box is not over-committed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plot_ray.config import ClusterConfig

__all__ = [
    "SMALL_MACHINE_ENV",
    "init_ray",
    "init_ray_from_config",
    "use_small_machine_env",
    "worker_logs_to_file",
    "quiet_ray_driver",
]

# Settings for running the whole stack on one small CPU box (tests, benchmarks, laptops); see
# shared/ENVIRONMENT.md. They must be in the environment before Ray starts; workers inherit them.
SMALL_MACHINE_ENV = {
    "RAY_AUTH_MODE": "disabled",  # a local instance only this user reaches
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",  # each report() after the first waits this long
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def use_small_machine_env() -> None:
    """Set :data:`SMALL_MACHINE_ENV` wherever the user has not set the variable already."""
    for key, value in SMALL_MACHINE_ENV.items():
        os.environ.setdefault(key, value)


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory_mb: int | None = None,
    include_dashboard: bool = False,
    dashboard_host: str = "127.0.0.1",
    quiet: bool = False,
    verbose: bool = True,
):
    """``ray.init`` for plot-ray. Idempotent: an already connected driver is reused.

    ``address`` (or ``RAY_ADDRESS``) connects to an existing cluster and ignores the local-only
    settings; without it a local instance starts with the given resources. ``quiet`` keeps
    workers' output off this driver altogether (tests, benchmarks); ``verbose=False`` streams
    it (for :func:`worker_logs_to_file`) but keeps Ray's own INFO messages off the terminal.
    """
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = dict(
        log_to_driver=not quiet,
        logging_level=logging.INFO if verbose and not quiet else logging.WARNING,
        # Workers inherit the user's choices of DeepSpeed accelerator, tokenizer threads and
        # hub access.
        runtime_env={
            "env_vars": {
                k: os.environ[k]
                for k in ("DS_ACCELERATOR", "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE")
                if k in os.environ
            }
        },
    )
    if address:
        return ray.init(address=address, **common)
    return ray.init(
        num_cpus=num_cpus,
        object_store_memory=(object_store_memory_mb << 20) if object_store_memory_mb else None,
        include_dashboard=include_dashboard,
        dashboard_host=dashboard_host,
        **common,
    )


def init_ray_from_config(cfg: ClusterConfig, quiet: bool = False, verbose: bool = True):
    return init_ray(
        address=cfg.resolved_address,
        num_cpus=cfg.num_cpus,
        object_store_memory_mb=cfg.object_store_memory_mb,
        include_dashboard=cfg.include_dashboard,
        dashboard_host=cfg.dashboard_host,
        quiet=quiet,
        verbose=verbose,
    )


def _format_log_batch(batch: dict) -> str:
    """Ray's batch of output lines from one worker, each prefixed as Ray prints it."""
    who = batch.get("actor_name") or batch.get("task_name") or "worker"
    prefix = f"({who} pid={batch.get('pid')}, ip={batch.get('ip')}) "
    return "".join(f"{prefix}{line}\n" for line in batch.get("lines", []))


@contextmanager
def worker_logs_to_file(path: Path, echo: bool = False) -> Iterator[Path]:
    """Append the output that Ray streams from this job's workers (Ray Train workers and
    controller, Ray Data tasks: DeepSpeed's, Ray's and the recipe's logs) to ``path`` while
    the block runs; also print it on the terminal, as Ray does by default, when ``echo``.

    Needs a driver connected with ``log_to_driver`` (see :func:`init_ray`); otherwise the
    workers' output stays in Ray's session logs. Errors are not affected: a worker's exception
    reaches the driver and is raised there in full.
    """
    from ray._private import worker as ray_worker  # Ray's log stream has no public hook

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dispatcher = ray_worker.global_worker_stdstream_dispatcher
    lock = threading.Lock()
    with path.open("a") as fh:

        def write(batch: dict) -> None:
            with lock:
                fh.write(_format_log_batch(batch))
                fh.flush()

        hidden = [] if echo else [h for h in dispatcher.handlers if h[0] == "ray_print_logs"]
        for name, _ in hidden:
            dispatcher.remove_handler(name)
        dispatcher.add_handler("plot_ray_log_file", write)
        try:
            yield path
        finally:
            dispatcher.remove_handler("plot_ray_log_file")
            for pair in hidden:
                dispatcher.add_handler(*pair)


@contextmanager
def quiet_ray_driver(quiet: bool = True) -> Iterator[None]:
    """While the block runs, keep Ray's INFO messages and Ray Data's progress bars in this
    driver process off the terminal (warnings and errors still show); no-op unless ``quiet``.
    The caller shows its own progress instead."""
    if not quiet:
        yield
        return
    from ray.data import DataContext

    consoles = [
        h
        for name in ("ray", "ray.data", "ray.train", "ray.tune")
        for h in logging.getLogger(name).handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    levels = [h.level for h in consoles]
    ctx = DataContext.get_current()
    bars = ctx.enable_progress_bars
    for h in consoles:
        h.setLevel(max(h.level, logging.WARNING))
    ctx.enable_progress_bars = False
    try:
        yield
    finally:
        ctx.enable_progress_bars = bars
        for h, level in zip(consoles, levels, strict=True):
            h.setLevel(level)
