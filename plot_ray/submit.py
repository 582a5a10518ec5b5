"""Ray Jobs for plot-ray: submit a ``plot-ray`` subcommand to a cluster, follow it, manage jobs.

    plot-ray submit --config jobs/configs/x.yaml [--address URL] [--no-wait] -- train loss.alpha=1
    plot-ray jobs list | status ID | logs ID [--follow] | stop ID

A job runs ``plot-ray <subcommand> --config <the same file>`` on the head node, in a copy of the
working directory (the repository by default) that Ray uploads with the job, so the code and the
config that run are the ones on the submitter's disk. The config path is therefore given relative
to the working directory; paths *inside* the config (data, models, outputs) are read on the
cluster, where a relative path lands in that temporary copy: use absolute paths on shared storage
(or URIs) for anything a job should leave behind.

Built on ``ray.job_submission.JobSubmissionClient``. The job server address comes from
``--address``, then ``cluster.address``, then ``RAY_ADDRESS``, then ``http://127.0.0.1:8265``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import getpass
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CONFIG_SUBCOMMANDS",
    "DEFAULT_ADDRESS",
    "WORKING_DIR_EXCLUDES",
    "JobServerError",
    "JobRequest",
    "build_entrypoint",
    "build_request",
    "connect",
    "explained",
    "follow_job",
    "job_metadata",
    "resolve_address",
]

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# The subcommands that take --config and run on the cluster.
CONFIG_SUBCOMMANDS = ("prepare", "train", "tune", "eval", "make-pairs")
# Left out of the uploaded working directory (gitignore syntax, as Ray reads it): outputs,
# environments, caches and weights, which are large and are not code. Ray refuses a package over
# its size limit, so a repo with runs/ in it would not upload at all.
WORKING_DIR_EXCLUDES = [
    ".git/",
    ".venv/",
    "venv/",
    "runs/",
    "__pycache__/",
    "*.pyc",
    ".pytest_cache/",
    ".ruff_cache/",
    "*.egg-info/",
    "checkpoint_*/",
    "*.parquet",
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
]
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")
TOKEN_HELP = (
    "export RAY_AUTH_MODE=token so that the client sends the cluster's token; it reads the token "
    "from ~/.ray/auth_token (copy it from the head node's ~/.ray/auth_token), or from the file "
    "that RAY_AUTH_TOKEN_PATH names, or from RAY_AUTH_TOKEN itself"
)


class JobServerError(ValueError):
    """The job server cannot be reached, refuses this client, or a job request is invalid."""


# ------------------------------------------------------------------------------ building
def resolve_address(cli_address: str | None = None, config_address: str | None = None) -> str:
    """The job server to talk to: ``--address``, else ``cluster.address``, else
    ``RAY_ADDRESS``, else :data:`DEFAULT_ADDRESS` (a local head node's dashboard)."""
    return cli_address or config_address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


def _is_excluded(relative: Path, excludes: list[str]) -> str | None:
    """The exclude pattern that drops ``relative`` from the upload, if any (a folder pattern
    ``name/`` matches any parent folder; others match the file name or any parent)."""
    for pattern in excludes:
        if pattern.endswith("/"):
            if any(fnmatch.fnmatch(part, pattern[:-1]) for part in relative.parts[:-1]):
                return pattern
        elif any(fnmatch.fnmatch(part, pattern) for part in relative.parts):
            return pattern
    return None


def build_entrypoint(
    subcommand: str, config: str, args: list[str], executable: str = "plot-ray"
) -> str:
    """The shell command the job runs: ``plot-ray SUB --config CONFIG ARGS...``, each word
    quoted (overrides like ``data.sources=[{path: x}]`` hold spaces and brackets)."""
    if subcommand not in CONFIG_SUBCOMMANDS:
        raise JobServerError(
            f"plot-ray submit runs one of {', '.join(CONFIG_SUBCOMMANDS)} on the cluster "
            f"(got {subcommand!r}); e.g. plot-ray submit --config FILE -- train loss.alpha=0.5"
        )
    if any(a == "--config" or a.startswith("--config=") for a in args):
        raise JobServerError(
            "give the config once, as plot-ray submit --config FILE; the job gets the same file"
        )
    words = [executable, subcommand, "--config", config, *args]
    return " ".join(shlex.quote(w) for w in words)


def job_metadata(config: Path, subcommand: str, working_dir: Path) -> dict[str, str]:
    """What ``plot-ray jobs list`` shows beside a job: the config's name, the subcommand, the
    submitter, and the working directory's git commit (``-dirty`` with uncommitted changes)."""
    meta = {
        "plot_ray_command": subcommand,
        "config": config.stem,
        "config_path": str(config),
        "user": getpass.getuser(),
    }
    commit = _git(working_dir, "rev-parse", "HEAD")
    if commit:
        dirty = _git(working_dir, "status", "--porcelain", "--untracked-files=no")
        meta["git_commit"] = commit + ("-dirty" if dirty else "")
    return meta


def _git(cwd: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _default_job_id(subcommand: str, config: Path) -> str:
    # Readable in `jobs list`; the random tail keeps two submissions in one second apart.
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"plot-ray-{subcommand}-{config.stem}-{stamp}-{secrets.token_hex(2)}"


@dataclass
class JobRequest:
    """Everything ``JobSubmissionClient.submit_job`` gets; :meth:`submit_kwargs` spells it."""

    entrypoint: str
    submission_id: str
    runtime_env: dict
    metadata: dict[str, str]
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_resources: dict[str, float] = field(default_factory=dict)

    def submit_kwargs(self) -> dict:
        kwargs = {
            "entrypoint": self.entrypoint,
            "submission_id": self.submission_id,
            "runtime_env": self.runtime_env,
            "metadata": self.metadata,
        }
        if self.entrypoint_num_cpus is not None:
            kwargs["entrypoint_num_cpus"] = self.entrypoint_num_cpus
        if self.entrypoint_num_gpus is not None:
            kwargs["entrypoint_num_gpus"] = self.entrypoint_num_gpus
        if self.entrypoint_resources:
            kwargs["entrypoint_resources"] = self.entrypoint_resources
        return kwargs


def build_request(
    config: str | Path,
    command: list[str],
    *,
    working_dir: str | Path = ".",
    env: dict[str, str] | None = None,
    pip: list[str] | None = None,
    job_id: str | None = None,
    entrypoint_num_cpus: float | None = None,
    entrypoint_num_gpus: float | None = None,
    entrypoint_resources: dict[str, float] | None = None,
    excludes: list[str] | None = None,
) -> JobRequest:
    """A job that runs ``plot-ray COMMAND[0] --config CONFIG COMMAND[1:]`` in ``working_dir``.

    ``config`` must lie inside ``working_dir`` and not be excluded from its upload; the
    entrypoint names it relative to the working directory, where the job starts. ``env`` are
    environment variables for the job's driver and every worker it starts (nothing of the
    submitter's environment is passed implicitly: a laptop's ``RAY_AUTH_MODE=disabled`` must not
    reach the cluster). ``pip`` packages are installed on the nodes for this job.
    """
    if not command:
        raise JobServerError(
            "name the plot-ray subcommand to run after --, e.g. plot-ray submit --config FILE "
            "-- train"
        )
    root = Path(working_dir).resolve()
    if not root.is_dir():
        raise JobServerError(f"--working-dir {working_dir}: not a folder")
    config_path = Path(config).resolve()
    if not config_path.is_file():
        raise FileNotFoundError(f"--config {config}: no such file")
    try:
        relative = config_path.relative_to(root)
    except ValueError:
        raise JobServerError(
            f"--config {config} lies outside the working directory {root}, which is what Ray "
            "uploads with the job: put the config inside it or pass --working-dir"
        ) from None
    excludes = list(WORKING_DIR_EXCLUDES if excludes is None else excludes)
    if pattern := _is_excluded(relative, excludes):
        raise JobServerError(
            f"--config {relative} would not be uploaded with the job (excluded by {pattern!r}, "
            "with outputs and caches): keep job configs in e.g. jobs/configs/"
        )
    runtime_env: dict = {"working_dir": str(root), "excludes": excludes}
    # Unbuffered so that `--follow` shows progress as it happens, not when a buffer fills.
    runtime_env["env_vars"] = {"PYTHONUNBUFFERED": "1", **(env or {})}
    if pip:
        runtime_env["pip"] = list(pip)
    return JobRequest(
        entrypoint=build_entrypoint(command[0], relative.as_posix(), command[1:]),
        submission_id=job_id or _default_job_id(command[0], relative),
        runtime_env=runtime_env,
        metadata=job_metadata(relative, command[0], root),
        entrypoint_num_cpus=entrypoint_num_cpus,
        entrypoint_num_gpus=entrypoint_num_gpus,
        entrypoint_resources=dict(entrypoint_resources or {}),
    )


# ---------------------------------------------------------------------------- the server
@contextmanager
def explained(address: str) -> Iterator[None]:
    """Turn the client's connection and authentication errors into one clear message."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        text = str(exc)
        if "Missing authentication token" in text or "no authentication token" in text:
            raise JobServerError(
                f"the Ray cluster at {address} requires token authentication and this client "
                f"sent no token: {TOKEN_HELP}"
            ) from None
        raise JobServerError(
            f"the Ray cluster at {address} refused this client's token ({text.splitlines()[0]}): "
            f"{TOKEN_HELP}"
        ) from None
    except RuntimeError as exc:  # the server's own refusals (unknown job id, bad request)
        raise JobServerError(f"the Ray job server at {address} answered: {exc}") from None
    except ConnectionError as exc:
        raise JobServerError(
            f"cannot reach the Ray job server at {address} ({exc}). Is the cluster up, and is "
            "this its dashboard address (default port 8265)? Set it with --address, "
            "cluster.address or RAY_ADDRESS; a head node whose dashboard binds to loopback is "
            "reached through a tunnel (ssh -L 8265:127.0.0.1:8265 HEAD)"
        ) from None


def connect(address: str):
    """A ``JobSubmissionClient`` for ``address`` (already resolved by :func:`resolve_address`)."""
    from ray.job_submission import JobSubmissionClient

    # Ray's client lets RAY_ADDRESS / RAY_API_SERVER_ADDRESS override the address it is given;
    # resolve_address already weighed RAY_ADDRESS below --address, so hide both while connecting.
    saved = {
        k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") if k in os.environ
    }
    try:
        with explained(address):
            return JobSubmissionClient(address)
    finally:
        os.environ.update(saved)


def submit(client, request: JobRequest, address: str) -> str:
    with explained(address):
        return client.submit_job(**request.submit_kwargs())


def follow_job(
    client,
    job_id: str,
    address: str,
    write: Callable[[str], None] | None = None,
    poll_s: float = 1.0,
) -> tuple[str, str]:
    """Stream a job's logs to ``write`` until it ends; returns ``(status, message)``.

    Uses the job server's log stream (``tail_job_logs``); if that stream breaks off, falls back
    to polling the full log every ``poll_s`` seconds and writing what is new.
    """
    write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    shown = 0

    async def tail() -> None:
        nonlocal shown
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)
            shown += len(chunk)

    with explained(address):
        try:
            asyncio.run(tail())
        except Exception:  # the websocket stream is best effort; polling below catches up
            pass
        while True:
            status = str(client.get_job_status(job_id).value)
            logs = client.get_job_logs(job_id)
            if len(logs) > shown:
                write(logs[shown:])
                shown = len(logs)
            if status in TERMINAL_STATES:
                break
            time.sleep(poll_s)
        info = client.get_job_info(job_id)
    return status, info.message or ""


def job_rows(client, address: str) -> list[dict[str, str]]:
    """``plot-ray jobs list``: one row per submitted job, newest first."""
    with explained(address):
        jobs = client.list_jobs()
    rows = []
    for job in sorted(jobs, key=lambda j: j.start_time or 0, reverse=True):
        if not job.submission_id:  # drivers started by hand (ray.init), not jobs
            continue
        meta = job.metadata or {}
        rows.append(
            {
                "id": job.submission_id,
                "status": str(job.status.value),
                "started": _clock(job.start_time),
                "config": meta.get("config", ""),
                "commit": meta.get("git_commit", "")[:12],
                "entrypoint": job.entrypoint,
            }
        )
    return rows


def _clock(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def job_status_lines(client, job_id: str, address: str) -> list[str]:
    with explained(address):
        info = client.get_job_info(job_id)
    lines = [
        f"job {job_id}: {info.status.value}",
        f"  entrypoint  {info.entrypoint}",
        f"  started     {_clock(info.start_time)}",
        f"  ended       {_clock(info.end_time)}",
    ]
    if info.message:
        lines.append(f"  message     {info.message}")
    for key, value in sorted((info.metadata or {}).items()):
        lines.append(f"  {key:<11} {value}")
    return lines
