"""Connecting to Ray: a cluster when an address is given, else a local instance.

In local mode the dashboard (and with it the job server) binds to loopback only, usage stats are
off, and the object store is sized explicitly so a laptop or CI box is not over-committed.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plot_ray.config import ClusterConfig, PlotRayConfig

__all__ = [
    "SMALL_MACHINE_ENV",
    "ResourceWaitError",
    "SharedStorageError",
    "check_shared_storage",
    "shared_storage_paths",
    "node_sees_probe",
    "init_ray",
    "init_ray_from_config",
    "use_small_machine_env",
    "wait_for_resources",
    "worker_logs_to_file",
    "quiet_ray_driver",
    "resource_timeout_s",
]

# Settings for running the whole stack on one small CPU box (tests, benchmarks, laptops), each
# measured there (the health-check interval cut a 5-report Ray Train fit from 19 s to 8.4 s).
# They must be in the environment before Ray starts; workers inherit them.
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
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        # A submitted job's driver: the job's runtime_env (plot-ray submit's working_dir and
        # env_vars) already reaches every worker, and Ray refuses a second, different one.
        common.pop("runtime_env")
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


def _total(bundles: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for bundle in bundles:
        for key, amount in bundle.items():
            total[key] = total.get(key, 0.0) + amount
    return total


def _missing(bundles: list[dict[str, float]]) -> dict[str, float]:
    """What the cluster's total resources lack to hold ``bundles`` at once."""
    import ray

    have = ray.cluster_resources()
    return {k: v - have.get(k, 0.0) for k, v in _total(bundles).items() if have.get(k, 0.0) < v}


def _fmt(resources: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items()))


class ResourceWaitError(ValueError):
    """The cluster does not provide what a stage needs (a configuration the cluster cannot
    hold, or an autoscaler that did not deliver in time)."""


def wait_for_resources(
    bundles: list[dict[str, float]],
    *,
    what: str,
    timeout_s: float,
    hint: str = "",
    say=print,
    poll_s: float = 2.0,
) -> None:
    """Return once the cluster holds ``bundles`` (e.g. one ``{"CPU": 8, "GPU": 1}`` per
    worker), asking the autoscaler for them (``ray.autoscaler.sdk.request_resources``) and
    waiting up to ``timeout_s`` seconds; raise :class:`ResourceWaitError` naming ``what`` needs
    them, what is missing and ``hint`` (what to change) if they do not come.

    A cluster that scales GPU workers from zero (KubeRay, the cluster launcher) shows no GPU
    until something asks for one, so checking the resources once would refuse every first
    job. ``timeout_s=0`` checks once: a local instance has no autoscaler to wait for."""
    import time

    missing = _missing(bundles)
    if not missing:
        return
    if timeout_s > 0:
        from ray.autoscaler.sdk import request_resources

        say(
            f"{what}: the Ray cluster lacks {_fmt(missing)}; asked the autoscaler for it, "
            f"waiting up to {timeout_s:g}s (cluster.resource_timeout_s)"
        )
        request_resources(bundles=[dict(b) for b in bundles])
        deadline = time.monotonic() + timeout_s
        try:
            while missing and time.monotonic() < deadline:
                time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))
                missing = _missing(bundles)
        finally:
            # The request persists until replaced; once the job's tasks hold the nodes, the
            # autoscaler keeps them.
            request_resources(bundles=[])
        if not missing:
            return
    waited = f" after waiting {timeout_s:g}s (cluster.resource_timeout_s)" if timeout_s > 0 else ""
    raise ResourceWaitError(
        f"{what} needs {_fmt(_total(bundles))} but the Ray cluster lacks {_fmt(missing)}{waited}"
        + (f": {hint}" if hint else "")
    )


def resource_timeout_s(cfg: ClusterConfig) -> float:
    """How long a stage waits for the autoscaler: ``cluster.resource_timeout_s`` on a cluster
    (an address or a submitted job's ``RAY_ADDRESS``), 0 on a local instance."""
    return cfg.resource_timeout_s if cfg.resolved_address else 0.0


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


# ------------------------------------------------------------------------ shared storage
# Seconds to wait for every node's probe task; a node that does not answer in time fails the check.
PROBE_TIMEOUT_S = 120.0
PROBE_PREFIX = ".plot-ray-storage-probe-"


class SharedStorageError(ValueError):
    """A path that the run needs on every node is node-local on a multi-node cluster."""


def shared_storage_paths(cfg: PlotRayConfig, stage: str) -> dict[str, str]:
    """The config keys whose paths ``stage`` (``prepare``, ``train`` or ``eval``) reads or
    writes from more than one node, with their values: prepare's shard writers run on the nodes;
    training workers read the prepared shards and write checkpoints (Ray Train's storage, the
    run's log folder); evaluation's engine pools write result shards."""
    if stage == "prepare":
        return {"data.output_dir": cfg.data.output_dir}
    if stage == "train":
        paths = {"data.output_dir": cfg.data.output_dir, "train.output_dir": cfg.train.output_dir}
        if cfg.cluster.storage_path:
            paths["cluster.storage_path"] = cfg.cluster.storage_path
        return paths
    if stage == "eval":
        return {"eval.output_dir": cfg.eval.output_dir}
    raise ValueError(f"unknown stage {stage!r}: prepare, train or eval")


def node_sees_probe(directory: str, probe_name: str, token: str, node_id: str) -> bool:
    """Run on one node: True when ``directory/probe_name`` holds ``token`` there; it then
    writes ``probe_name.node_id`` beside it so the driver can check the way back too (a node
    that can read but not write the folder cannot hold shards or checkpoints)."""
    probe = Path(directory) / probe_name
    try:
        if probe.read_text() != token:
            return False
        (Path(directory) / f"{probe_name}.{node_id}").write_text(token)
    except OSError:
        return False
    return True


def _is_uri(path: str) -> bool:
    # s3://, gs://, hdfs://…: object stores that every node reaches by itself (pyarrow.fs)
    return "://" in path


def check_shared_storage(cfg: PlotRayConfig, stage: str) -> None:
    """Refuse node-local paths on a multi-node cluster, by looking rather than guessing.

    For each path of :func:`shared_storage_paths` (URIs skipped), the driver writes a probe
    file with a random token, and a task pinned to every other alive node
    (``NodeAffinitySchedulingStrategy``, no CPU asked, so busy nodes answer too) reads it back
    and writes an answer that the driver then reads. Output folders are created if missing (the
    stage would create them anyway). No-op on a single-node cluster. Call it right after Ray is
    connected. Raises :class:`SharedStorageError` naming the config key and the nodes that
    cannot see the path.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    others = [n for n in ray.nodes() if n.get("Alive") and n["NodeID"] != here]
    if not others:
        return
    probe_task = ray.remote(num_cpus=0, max_retries=0)(node_sees_probe)
    for key, value in shared_storage_paths(cfg, stage).items():
        if _is_uri(value):
            continue
        directory = Path(value).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        probe_name = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        token = uuid.uuid4().hex
        (directory / probe_name).write_text(token)
        try:
            refs = {
                probe_task.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                ).remote(str(directory), probe_name, token, n["NodeID"]): n
                for n in others
            }
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
            blind = []
            for ref, node in refs.items():
                answer = directory / f"{probe_name}.{node['NodeID']}"
                if ref not in ready:
                    blind.append(f"{_describe(node)} (no answer in {PROBE_TIMEOUT_S:g} s)")
                elif not (ray.get(ref) and answer.is_file() and answer.read_text() == token):
                    blind.append(_describe(node))
        finally:
            for leftover in directory.glob(f"{probe_name}*"):
                leftover.unlink(missing_ok=True)
        if blind:
            raise SharedStorageError(
                f"{key}={value!r} is not on shared storage: {len(blind)} of the cluster's "
                f"{len(others) + 1} nodes cannot see what this driver writes to {directory} "
                f"({', '.join(blind)}). On a multi-node cluster every node must reach it at the "
                f"same path: set {key} to a shared filesystem (e.g. an NFS mount present on every "
                "node)."
            )


def _describe(node: dict) -> str:
    return f"node {node['NodeID'][:8]} at {node.get('NodeManagerAddress', '?')}"
