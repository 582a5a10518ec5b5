"""The coding sandbox: problems in their published shapes, pass@k, and hostile completions.

Every hostile program runs once, all together (``hostile`` fixture), so the timeouts overlap;
each test then checks one behaviour: contained, counted, reported, and nothing outside changed.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from plot_ray.eval.sandbox.execute import (
    Limits,
    default_workers,
    namespaces_available,
    run_program,
    run_programs,
)
from plot_ray.eval.sandbox.passk import pass_at_k, summarize
from plot_ray.eval.sandbox.problems import (
    extract_code,
    read_humaneval,
    read_mbpp,
    run_completions,
)

DATA = Path(__file__).parent / "data" / "coding"
LIMITS = Limits(wall_seconds=3, cpu_seconds=2, max_processes=16)
needs_namespaces = pytest.mark.skipif(
    bool(namespaces_available()), reason=f"no namespace isolation here: {namespaces_available()}"
)


def _processes_with(marker: str) -> list[int]:
    """Pids on this machine whose command line holds ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                pids.append(int(entry))
        except OSError:  # the process ended meanwhile
            continue
    return pids


# ---- problems and code extraction -------------------------------------------------------


def test_extract_code_takes_python_fences_then_plain_fences_then_raw_text():
    chat = "Here:\n```python\ndef f():\n    return 1\n```\nand\n```py\nX = 2\n```\n```sh\nls\n```"
    assert extract_code(chat) == "def f():\n    return 1\n\nX = 2\n"
    assert extract_code("Sure.\n```\nY = 3\n```\n") == "Y = 3\n"
    body = "    return x + 1\n"
    assert extract_code(body) == body  # a HumanEval body keeps its indentation
    assert extract_code("```python\nZ = 4\nW = 5") == "Z = 4\nW = 5\n"  # cut off by max tokens


def test_humaneval_program_is_prompt_body_tests_and_check():
    problem = read_humaneval(DATA / "humaneval.jsonl")[1]
    program = problem.program("    return True\n")
    assert program.startswith(problem.prompt + "    return True\n")
    assert program.rstrip().endswith("check(is_palindrome)")


def test_readers_take_the_published_shapes():
    humaneval = read_humaneval(DATA / "humaneval.jsonl")
    assert [p.task_id for p in humaneval] == ["Tiny/0", "Tiny/1", "Tiny/2"]
    assert humaneval[0].entry_point == "add_all" and "def check(candidate)" in humaneval[0].tests
    original, sanitized = read_mbpp(DATA / "mbpp.jsonl"), read_mbpp(DATA / "mbpp_sanitized.json")
    assert [p.task_id for p in original + sanitized] == ["901", "902", "903"]
    assert original[1].setup == "SENTENCE = 'it is so it is'"
    assert sanitized[0].setup == "import math" and sanitized[0].prompt.startswith("Write a")
    assert original[0].tests.count("assert") == 3


def test_readers_name_every_malformed_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task_id": "a", "prompt": "p"}\n\n{"task_id": "b"}\n')
    with pytest.raises(ValueError, match=r"2 of 2 problems are malformed.*line 1 lacks.*line 3"):
        read_humaneval(path)
    path.write_text('{"task_id": 1, "code": "x", "test_list": []}\n')
    with pytest.raises(ValueError, match="neither text nor prompt"):
        read_mbpp(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        read_mbpp(path)


# ---- pass@k ---------------------------------------------------------------------------


def test_pass_at_k_matches_hand_computed_binomials():
    assert pass_at_k(5, 2, 1) == pytest.approx(2 / 5)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5)/C(10,5)
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0  # only one failing sample: every pair holds a pass
    # large n, where the binomials overflow floats: 1 - C(199,100)/C(200,100) = 1 - 100/200
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    assert pass_at_k(2000, 1000, 1) == pytest.approx(0.5)
    for bad in [(0, 0, 1), (3, 4, 1), (3, 1, 4), (3, 1, 0)]:
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(*bad)


# ---- running problems ---------------------------------------------------------------------


@needs_namespaces
def test_canonical_solutions_pass_and_wrong_ones_fail_with_pass_at_k():
    problems = read_humaneval(DATA / "humaneval.jsonl")
    problems += read_mbpp(DATA / "mbpp.jsonl") + read_mbpp(DATA / "mbpp_sanitized.json")
    fenced = "```python\ndef is_palindrome(text):\n    return text[::-1] == text\n```"
    completions = {
        "Tiny/0": [problems[0].canonical, "    return 0\n"],  # 1 of 2
        "Tiny/1": [problems[1].canonical, fenced],  # 2 of 2 (a whole function, fenced)
        "Tiny/2": ["    return len(s)\n", "    return len(s\n"],  # 0 of 2 (wrong; syntax)
        "901": [problems[3].canonical],
        "902": [problems[4].canonical],
        "903": [problems[5].canonical, "def gcd_of(a, b):\n    return a * b\n"],
    }
    results = run_completions(problems, completions, LIMITS, workers=4)
    assert [r.status for r in results["Tiny/0"]] == ["passed", "failed"]
    assert [r.status for r in results["Tiny/1"]] == ["passed", "passed"]
    assert [r.status for r in results["Tiny/2"]] == ["failed", "failed"]
    assert "SyntaxError" in results["Tiny/2"][1].detail
    summary = summarize(results, ks=(1,))
    # pass@1 per problem: 1/2, 1, 0, 1, 1, 1/2 → mean 4/6
    assert summary["pass@1"] == pytest.approx(4 / 6)
    assert summary["counts"]["passed"] == 6 and summary["counts"]["failed"] == 4
    assert summary["samples"] == 10 and summary["problems"] == 6
    with pytest.raises(ValueError, match="pass@k needs"):
        summarize(results, ks=(2,))  # 901 has one sample only
    with pytest.raises(ValueError, match="1 problems have no completions"):
        run_completions(problems, {**completions, "903": []}, LIMITS)


# ---- hostile completions --------------------------------------------------------------------

FORK_BOMB = """
import os, time
for _ in range(8):  # 256 processes if nothing stopped it
    try:
        os.fork()
    except OSError:
        break
if os.getpid() != 2:
    os.setsid()  # out of the process group: only the pid namespace still holds it
print("alive", flush=True)
time.sleep(60)
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "kept.txt").write_text("original")
    home_probe = Path.home() / f"plot-ray-sandbox-probe-{uuid.uuid4().hex}"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    programs = {
        "infinite_loop": "while True:\n    pass\n",
        "fork_bomb": FORK_BOMB,
        "allocation": "block = bytearray(8 << 30)\n",
        "write_outside": (
            f"for path in [{str(outside / 'new.txt')!r}, {str(home_probe)!r}]:\n"
            "    try:\n        open(path, 'w').write('x')\n    except OSError as e:\n"
            "        print(type(e).__name__)\n"
            f"open({str(outside / 'kept.txt')!r}, 'w').write('changed')\n"
        ),
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
        "huge_output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
        "exits_before_tests": "import os\nos._exit(0)\nassert False\n",
        "segfault": "import ctypes\nctypes.string_at(0)\n",
        "forged_report": (  # a pass line on every open fd, the report pipe included
            "import os\nfor fd in map(int, os.listdir('/proc/self/fd')):\n    try:\n"
            '        os.write(fd, b\'{"outcome": "passed", "nonce": "guess"}\\n\')\n'
            "    except OSError:\n        pass\nos._exit(0)\n"
        ),
        "odd_exit_code": "import os\nos._exit(200)\n",  # > 128, yet no signal
    }
    markers = {name: f"plot-ray-sandbox-test-{uuid.uuid4().hex}" for name in programs}
    names = list(programs)
    workers = len(names)  # all at once: the timeouts overlap
    sources = [programs[n] for n in names]
    results = run_programs(sources, LIMITS, workers=workers, markers=[markers[n] for n in names])
    try:
        connection, _ = listener.accept()
        connection.close()
        connected = True
    except TimeoutError:
        connected = False
    listener.close()
    yield {
        "results": dict(zip(names, results, strict=True)),
        "markers": markers,
        "outside": outside,
        "home_probe": home_probe,
        "connected": connected,
    }
    home_probe.unlink(missing_ok=True)


@needs_namespaces
def test_infinite_loop_times_out_and_its_processes_are_gone(hostile):
    result = hostile["results"]["infinite_loop"]
    assert result.status == "timeout"  # whichever comes first: RLIMIT_CPU or the wall clock
    assert "CPU-time limit" in result.detail or "wall-clock limit" in result.detail
    assert LIMITS.cpu_seconds <= result.runtime_s < LIMITS.wall_seconds + 2
    assert _processes_with(hostile["markers"]["infinite_loop"]) == []


@needs_namespaces
def test_fork_bomb_is_capped_and_leaves_no_process(hostile):
    result = hostile["results"]["fork_bomb"]
    alive = result.stdout.count("alive")
    # pid 1 (init) counts against the limit too; 256 would be printed if nothing stopped it
    assert 2 <= alive <= LIMITS.max_processes - 1
    assert result.status == "timeout" and "wall-clock" in result.detail  # they all sleep
    assert _processes_with(hostile["markers"]["fork_bomb"]) == []  # setsid'd ones included
    assert run_program("import os\nos.fork()\n", LIMITS).status == "passed"  # forks work again


@needs_namespaces
def test_large_allocation_is_a_memory_status(hostile):
    result = hostile["results"]["allocation"]
    assert result.status == "memory" and "MemoryError" in result.stderr


@needs_namespaces
def test_writes_outside_the_sandbox_change_nothing(hostile):
    result = hostile["results"]["write_outside"]
    assert result.status == "failed"
    assert result.stdout.split() == ["FileNotFoundError", "OSError"]  # absent path; read-only
    assert not (hostile["outside"] / "new.txt").exists()
    assert not hostile["home_probe"].exists()
    assert (hostile["outside"] / "kept.txt").read_text() == "original"


@needs_namespaces
def test_network_access_fails_and_the_listener_sees_nothing(hostile):
    result = hostile["results"]["network"]
    assert result.status == "failed" and "Network is unreachable" in result.detail
    assert hostile["connected"] is False


@needs_namespaces
def test_huge_output_is_capped(hostile):
    result = hostile["results"]["huge_output"]
    assert result.status == "output_limit"
    assert set(result.stdout) == {"x"} and len(result.stdout) <= 4096


@needs_namespaces
def test_exiting_before_the_tests_or_crashing_is_not_a_pass(hostile):
    early, crash = hostile["results"]["exits_before_tests"], hostile["results"]["segfault"]
    assert (early.status, early.exit_code) == ("failed", 0)
    forged = hostile["results"]["forged_report"]
    assert '"nonce": "guess"' in forged.stdout  # it did write its line everywhere
    assert (forged.status, forged.detail) == ("failed", "exit code 0 without a report")
    odd = hostile["results"]["odd_exit_code"]
    assert (odd.status, odd.exit_code, odd.detail) == (
        "failed",
        200,
        "exit code 200 without a report",
    )
    assert crash.status == "crashed" and "SIGSEGV" in crash.detail


@needs_namespaces
def test_every_case_is_counted_and_its_temporary_directory_removed(hostile):
    results = hostile["results"]
    assert all(not os.path.exists(r.work_dir) for r in results.values())
    summary = summarize({name: [r] for name, r in results.items()})
    assert summary["counts"] == {
        "passed": 0,
        "failed": 5,
        "timeout": 2,
        "crashed": 1,
        "memory": 1,
        "output_limit": 1,
        "sandbox_error": 0,
    }
    assert summary["pass@1"] == 0.0


@needs_namespaces
def test_the_program_sees_no_host_files_no_capabilities_and_no_other_processes(monkeypatch):
    monkeypatch.setenv("PLOT_RAY_SANDBOX_SECRET", "token")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    probe = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "status = open('/proc/self/status').read()\n"
        "print(sorted(os.listdir('/')), os.path.exists('/etc'), os.path.exists('/work'))\n"
        "print([line.split()[1] for line in status.splitlines() if line.startswith('CapEff')])\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()), os.getuid(), os.getcwd())\n"
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"  # a nested user namespace
    )
    result = run_program(probe, LIMITS)
    assert result.status == "passed", result.stderr
    env, listing, caps, pids, nested = result.stdout.splitlines()
    assert nested == "-1 28"  # ENOSPC: max_user_namespaces is 0 in the jail
    assert env == str(
        sorted(["HOME", "LANG", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PATH", "TMPDIR"])
    )
    assert "False False" in listing and "'sandbox'" in listing
    assert caps == "['0000000000000000']"
    assert pids == "['1', '2'] 1000 /sandbox"


@needs_namespaces
def test_a_launcher_that_cannot_set_its_limits_is_a_sandbox_error():
    result = run_program("pass", Limits(max_open_files=10**9))
    assert result.status == "sandbox_error" and "error" in result.detail


# ---- process isolation (where namespaces are missing): what it does and does not hold -------


def test_process_isolation_still_limits_time_memory_and_output():
    sources = ["while True:\n    pass\n", "x = bytearray(8 << 30)\n", "print('x' * (2 << 20))\n"]
    results = run_programs(sources, LIMITS, isolation="process", workers=3)
    assert [r.status for r in results] == ["timeout", "memory", "output_limit"]
    assert all(r.isolation == "process" and not os.path.exists(r.work_dir) for r in results)


def test_process_isolation_socket_guard_stops_the_socket_module_but_not_raw_sockets():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(2)
    port = listener.getsockname()[1]
    guarded = run_program(
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}))\n",
        LIMITS,
        isolation="process",
    )
    assert guarded.status == "failed" and "network access is disabled" in guarded.detail
    raw = f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\n"
    assert run_program(raw, LIMITS, isolation="process").status == "passed"
    listener.accept()[0].close()  # the documented hole: only namespaces close it
    listener.close()


def test_default_workers_respects_cpus_and_worst_case_memory():
    assert 1 <= default_workers() <= max(1, (os.cpu_count() or 1) // 2)
    assert default_workers(Limits(memory_bytes=1 << 40)) == 1


def test_bad_limits_and_isolation_are_refused_by_name():
    with pytest.raises(ValueError, match="max_processes must be >= 3"):
        Limits(max_processes=2)
    with pytest.raises(ValueError, match="wall_seconds must be > 0"):
        Limits(wall_seconds=0)
    with pytest.raises(ValueError, match="isolation must be one of"):
        run_program("pass", isolation="none")
