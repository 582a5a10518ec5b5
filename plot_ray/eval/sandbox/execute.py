"""Run one untrusted Python program in a child process and classify how it ended.

:func:`run_program` writes nothing the program can reach but its own tmpfs, starts
``launcher.py`` in a new session with a minimal environment, reads its stdout/stderr (tails
kept, totals capped), enforces the wall-clock limit by killing the whole process group, and
removes the temporary directory whatever happened. :func:`run_programs` runs many on a thread
pool (each thread only waits on its child; the work happens in the children).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

HERE = Path(__file__).parent
STATUSES = ("passed", "failed", "timeout", "crashed", "memory", "output_limit", "sandbox_error")
Status = Literal[
    "passed", "failed", "timeout", "crashed", "memory", "output_limit", "sandbox_error"
]
Isolation = Literal["namespaces", "process"]
ISOLATIONS = ("namespaces", "process")
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
SETUP_FAILED = 125
TAIL_BYTES = 4096


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be set up on this machine."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-program limits. Memory is address space per process (``RLIMIT_AS``), so one program
    may hold up to ``memory_bytes * max_processes`` plus its tmpfs (``work_dir_bytes``)."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10  # RLIMIT_CPU per process: SIGXCPU at the limit, SIGKILL 1 s later
    memory_bytes: int = 1 << 30
    max_processes: int = 16  # RLIMIT_NPROC, counted in the program's own user namespace
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: the largest file it may write
    work_dir_bytes: int = 64 << 20  # size of its tmpfs working directory
    max_open_files: int = 256
    output_bytes: int = 1 << 20  # stdout + stderr together; beyond it the program is killed

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"sandbox limit {field.name} must be > 0")
        if self.max_processes < 3:  # init, the harness and one more
            raise ValueError("sandbox limit max_processes must be >= 3")


DEFAULT_LIMITS = Limits()


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """How one program ended. ``stdout``/``stderr`` are the last ``TAIL_BYTES`` of each,
    decoded with replacement; ``detail`` says why, in a few words."""

    status: Status
    runtime_s: float
    exit_code: int | None
    stdout: str
    stderr: str
    detail: str
    isolation: Isolation
    work_dir: str  # the host temporary directory, removed before the result is returned


def default_workers(limits: Limits = DEFAULT_LIMITS) -> int:
    """Programs to run at once: half the CPUs (each child is CPU-bound and the engines that
    wrote the completions may still share the machine), and no more than a quarter of the
    memory could hold if every program filled its processes' address spaces."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    worst = limits.memory_bytes * limits.max_processes + limits.work_dir_bytes
    return max(1, min((os.cpu_count() or 1) // 2, ram // (4 * worst)))


def _python() -> tuple[str, str]:
    """The base interpreter (not a venv's): its realpath and its prefix, both bound into the
    jail at the same paths."""
    exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    prefix = os.path.realpath(sys.base_prefix)
    if not exe.startswith(prefix + os.sep):
        raise SandboxUnavailable(f"the interpreter {exe} lies outside its prefix {prefix}")
    return exe, prefix


class _Tail:
    """The last TAIL_BYTES of a stream and its total length."""

    def __init__(self) -> None:
        self.data = b""
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data = (self.data + chunk)[-TAIL_BYTES:]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _remove(path: str) -> None:
    """Remove the work directory even where the program made parts of it unreadable."""

    def make_writable(func, failed, _exc):
        os.chmod(os.path.dirname(failed), 0o700)
        os.chmod(failed, 0o700)
        func(failed)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable)
    else:
        shutil.rmtree(path, onerror=make_writable)


def run_program(
    source: str,
    limits: Limits = DEFAULT_LIMITS,
    isolation: Isolation = "namespaces",
    marker: str = "",
) -> SandboxResult:
    """Run ``source`` (the completion and its tests, one program) and classify the ending.

    ``marker`` is added to the harness's command line (tests find the program's processes by
    it); a random one is used when empty.
    """
    if isolation not in ISOLATIONS:
        raise ValueError(f"sandbox isolation must be one of {ISOLATIONS}, got {isolation!r}")
    marker = marker or f"plot-ray-sandbox-{secrets.token_hex(8)}"
    work_dir = tempfile.mkdtemp(prefix="plot-ray-sandbox-")
    start = time.monotonic()
    try:
        return _supervise(source, limits, isolation, marker, work_dir, start)
    except SandboxUnavailable:
        raise
    except OSError as exc:
        return SandboxResult(
            "sandbox_error", time.monotonic() - start, None, "", "", repr(exc), isolation, work_dir
        )
    finally:
        _remove(work_dir)


def _supervise(
    source: str, limits: Limits, isolation: Isolation, marker: str, work_dir: str, start: float
) -> SandboxResult:
    python, prefix = _python()
    program_path = Path(work_dir, "program.py")
    program_path.write_text(source)
    os.makedirs(f"{work_dir}/work")
    nonce = secrets.token_hex(16)
    program_fd = os.open(program_path, os.O_RDONLY)
    nonce_r, nonce_w = os.pipe()
    os.write(nonce_w, nonce.encode())
    os.close(nonce_w)
    report_r, report_w = os.pipe()
    setup_r, setup_w = os.pipe()
    spec = {
        "isolation": isolation,
        "limits": dataclasses.asdict(limits),
        "root": f"{work_dir}/root",
        "work_dir": f"{work_dir}/work",
        "python": python,
        "python_prefix": prefix,
        "devices": list(DEVICES),
        "harness": (HERE / "harness.py").read_text(),
        "marker": marker,
        "fds": [program_fd, nonce_r, report_w],
        "setup_fd": setup_w,
    }
    child_fds = (program_fd, nonce_r, report_w, setup_w)
    try:
        proc = subprocess.Popen(
            [python, "-I", "-S", str(HERE / "launcher.py"), json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=child_fds,
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd=work_dir,
        )
    except BaseException:
        os.close(report_r)
        os.close(setup_r)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    streams = {"stdout": _Tail(), "stderr": _Tail(), "report": _Tail(), "setup": _Tail()}
    killed_for = _pump(proc, streams, limits, start, report_r, setup_r)
    exit_code = proc.wait()
    runtime = time.monotonic() - start
    status, detail = _classify(killed_for, exit_code, runtime, streams, nonce, limits)
    return SandboxResult(
        status,
        runtime,
        exit_code,
        streams["stdout"].text(),
        streams["stderr"].text(),
        detail,
        isolation,
        work_dir,
    )


def _pump(proc, streams, limits: Limits, start: float, report_r: int, setup_r: int) -> str:
    """Read every pipe until all close; kill the group at the wall-clock or output limit.
    Returns why it killed (``""`` if it did not)."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
    selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
    selector.register(report_r, selectors.EVENT_READ, "report")
    selector.register(setup_r, selectors.EVENT_READ, "setup")
    killed_for = ""
    exited_at = None
    try:
        while selector.get_map():
            now = time.monotonic()
            if not killed_for and now - start > limits.wall_seconds:
                killed_for = "timeout"
                _kill_group(proc)
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 1.0:
                # the launcher is gone but something it left holds a pipe (process isolation)
                _kill_group(proc)
                break
            for key, _ in selector.select(timeout=0.05):
                fd = key.fileobj if isinstance(key.fileobj, int) else key.fileobj.fileno()
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                streams[key.data].add(chunk)
                output = streams["stdout"].total + streams["stderr"].total
                if not killed_for and output > limits.output_bytes:
                    killed_for = "output_limit"
                    _kill_group(proc)
    finally:
        selector.close()
        os.close(report_r)
        os.close(setup_r)
    return killed_for


def _signal_name(exit_code: int) -> str:
    """The signal that ended the launcher's chain (a negative code, or 128 + n relayed by it);
    ``""`` for an ordinary exit."""
    number = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else 0
    try:
        return signal.Signals(number).name if number else ""
    except ValueError:  # an exit code above 128 that is no signal
        return ""


def _classify(killed_for: str, exit_code: int, runtime: float, streams, nonce: str, limits):
    setup = streams["setup"].text()
    if errors := [line for line in setup.splitlines() if line.startswith("error")]:
        return "sandbox_error", errors[0]
    if killed_for == "timeout":
        return "timeout", f"wall-clock limit of {limits.wall_seconds} s"
    if killed_for == "output_limit":
        return "output_limit", f"more than {limits.output_bytes} bytes of output"
    if "ready" not in setup:
        return "sandbox_error", f"the launcher exited with {exit_code} before the program started"
    try:  # the harness writes last; anything before it came from the program
        report = json.loads(streams["report"].text().splitlines()[-1])
    except (IndexError, ValueError):
        report = {}
    report = report if isinstance(report, dict) else {}
    outcome, signal_name = report.get("outcome"), _signal_name(exit_code)
    if outcome == "passed" and report.get("nonce") == nonce and exit_code == 0:
        return "passed", "the program and its tests ran to the end"
    if outcome == "exception" and report.get("type") == "MemoryError":
        return "memory", f"MemoryError under the {limits.memory_bytes}-byte limit"
    if outcome == "exception":
        return "failed", f"{report.get('type')}: {report.get('message')}"
    if outcome == "exit":
        return "failed", f"the program exited ({report.get('code')}) before its tests finished"
    if signal_name == "SIGXCPU" or (signal_name == "SIGKILL" and runtime >= limits.cpu_seconds):
        return "timeout", f"CPU-time limit of {limits.cpu_seconds} s ({signal_name})"
    if signal_name == "SIGKILL":
        return "crashed", "killed by SIGKILL before the CPU limit (the kernel's OOM killer?)"
    if signal_name:
        return "crashed", f"killed by {signal_name}"
    return "failed", f"exit code {exit_code} without a report"


@functools.cache
def namespaces_available() -> str:
    """``""`` where ``namespaces`` isolation works here, else the reason it does not."""
    result = run_program("pass", Limits(wall_seconds=30))
    return "" if result.status == "passed" else f"{result.status}: {result.detail}"


def run_programs(
    sources: Sequence[str],
    limits: Limits = DEFAULT_LIMITS,
    isolation: Isolation = "namespaces",
    workers: int | None = None,
    markers: Sequence[str] | None = None,
) -> list[SandboxResult]:
    """Run many programs, ``workers`` at a time (default :func:`default_workers`), results in
    the order given (``markers``: one per program, see :func:`run_program`). Raises :class:`SandboxUnavailable` up front where ``namespaces``
    isolation cannot be built here, naming ``isolation="process"`` as the weaker choice.

    On a Ray cluster the same function is the body of a task: split ``sources`` into chunks,
    ``ray.remote(num_cpus=workers)(run_programs).remote(chunk, limits, isolation, workers)`` per
    chunk, and ``ray.get`` the lists back in order; each node needs user namespaces.
    """
    if isolation == "namespaces" and (reason := namespaces_available()):
        raise SandboxUnavailable(
            f"namespace isolation does not work on this machine ({reason}); "
            'isolation="process" runs without it (no network or file-system containment)'
        )
    markers = markers or [""] * len(sources)
    if len(markers) != len(sources):
        raise ValueError(f"{len(markers)} markers for {len(sources)} programs")
    with ThreadPoolExecutor(max_workers=workers or default_workers(limits)) as pool:
        runs = pool.map(
            run_program, sources, [limits] * len(sources), [isolation] * len(sources), markers
        )
        return list(runs)
