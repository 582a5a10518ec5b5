"""Connecting to Ray: a cluster when an address is given, else a local instance.

In local mode the dashboard (and with it the job server) binds to loopback only, usage stats are
off, and the object store is sized explicitly so a laptop or CI box is not over-committed.
"""

from __future__ import annotations

import logging
import os

from plot_ray.config import ClusterConfig

__all__ = ["SMALL_MACHINE_ENV", "init_ray", "init_ray_from_config", "use_small_machine_env"]

# Settings for running the whole stack on one small CPU box (tests, benchmarks, laptops); see
# shared/ENVIRONMENT.md. They must be in the environment before Ray starts; workers inherit them.
SMALL_MACHINE_ENV = {
    "RAY_AUTH_MODE": "disabled",  # a local instance only this user reaches
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",  # each report() after the first waits this long
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DS_ACCELERATOR": "cpu",
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
):
    """``ray.init`` for plot-ray. Idempotent: an already connected driver is reused.

    ``address`` (or ``RAY_ADDRESS``) connects to an existing cluster and ignores the local-only
    settings; without it a local instance starts with the given resources.
    """
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = dict(
        log_to_driver=not quiet,
        logging_level=logging.WARNING if quiet else logging.INFO,
        # Workers inherit these so that DeepSpeed picks the CPU accelerator and tokenizers do
        # not oversubscribe cores; users' own env vars win.
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


def init_ray_from_config(cfg: ClusterConfig, quiet: bool = False):
    return init_ray(
        address=cfg.resolved_address,
        num_cpus=cfg.num_cpus,
        object_store_memory_mb=cfg.object_store_memory_mb,
        include_dashboard=cfg.include_dashboard,
        dashboard_host=cfg.dashboard_host,
        quiet=quiet,
    )
