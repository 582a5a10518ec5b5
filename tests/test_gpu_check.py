"""benchmarks/gpu_check.py without a GPU: ``--dry-run`` runs every stage's code on the CPU at toy
sizes, writes one JSON, reruns single stages into it and records stages that run out of time.

One full dry run is shared by the module; the whole file takes about 40 s on 2 cores (plus about
30 s on a machine where DeepSpeed has not yet built its CPU communication op).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
STAGES = [
    "preflight",
    "nccl",
    "fused_adam",
    "model",
    "plot_kernel",
    "recipe_dpo",
    "recipe_dpo_plot",
    "generation",
]
# Checks that only a GPU can run: the dry run must skip them, never pass them.
CUDA_CHECKS = {
    "preflight": ["cuda", "bf16", "nvcc"],
    "generation": ["generator_device", "nll_scorer_device", "reward_scorer_device"],
    "recipe_dpo_plot": ["memory_ratio"],
}


def gpu_check(*args: str, out: Path, work: Path, env: dict | None = None, timeout: float = 900):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out), "--work-dir", str(work)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_line(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """``gpu_check.py --dry-run``, all stages: (folder, finished process, the JSON)."""
    root = tmp_path_factory.mktemp("gpu-check")
    done = gpu_check("--dry-run", out=root / "gpu_check.json", work=root / "work")
    return root, done, json.loads((root / "gpu_check.json").read_text())


def rerun_copy(dry_run, tmp_path: Path, *args: str, stale: str | None = None):
    """``gpu_check.py --dry-run *args`` against a copy of the module's JSON (same workspace),
    with stage ``stale``'s entry made a failure first; returns the process, the module's JSON
    and the copy's afterwards."""
    root, _, before = dry_run
    out = tmp_path / "gpu_check.json"
    shutil.copy(root / "gpu_check.json", out)
    if stale:
        doc = json.loads(out.read_text())
        doc["stages"][stale] = {"status": "failed", "reason": "stale", "checks": {}}
        out.write_text(json.dumps(doc))
    done = gpu_check("--dry-run", *args, out=out, work=root / "work")
    return done, before, json.loads(out.read_text())


@pytest.mark.slow
def test_the_dry_run_passes_every_stage_or_skips_it_for_cuda(dry_run):
    _, done, doc = dry_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert doc["mode"] == "dry-run"
    assert list(doc["stages"]) == STAGES
    for name, stage in doc["stages"].items():
        assert {"status", "reason", "seconds", "timeout_s", "checks", "metrics"} <= set(stage)
        assert 0 < stage["seconds"] < stage["timeout_s"]
        if name == "fused_adam":
            assert (stage["status"], stage["reason"]) == ("skipped", "needs CUDA")
            continue
        assert stage["status"] == "passed", (name, stage.get("reason"), stage.get("log_tail"))
        for check, result in stage["checks"].items():
            if check in CUDA_CHECKS.get(name, []):
                assert result == {"status": "skipped", "detail": "needs CUDA"}, (name, check)
            else:
                assert result["status"] in ("passed", "skipped"), (name, check, result)
    assert doc["summary"] == {
        "passed": [s for s in STAGES if s != "fused_adam"],
        "failed": [],
        "skipped": ["fused_adam"],
    }
    assert last_line(done) == {
        "benchmark": "gpu_check",
        "mode": "dry-run",
        "passed": 7,
        "failed": 0,
        "skipped": 1,
        **doc["ratios"],
    }


@pytest.mark.slow
def test_the_recipe_learns_restores_its_checkpoint_and_its_saved_model_reloads(dry_run):
    stages = dry_run[2]["stages"]
    for name, alpha in (("recipe_dpo", 0.0), ("recipe_dpo_plot", 0.5)):
        metrics, checks = stages[name]["metrics"], stages[name]["checks"]
        assert metrics["alpha"] == alpha  # the real job's alpha for DPO+PLOT
        losses = metrics["losses"]
        assert len(losses) == 6 and losses[-1] < losses[0]
        if alpha == 0:  # DPO starts at log 2: the policy is its reference
            assert losses[0] == pytest.approx(0.693147, abs=1e-5)
        assert "relative error 0.00e+00" in checks["restore"]["detail"]  # bit for bit, on CPU
        assert stages["generation"]["checks"][f"reload_{name}"]["status"] == "passed"
    plot = stages["recipe_dpo_plot"]["metrics"]
    assert plot["time_ratio"] > 0 and plot["step_memory_ratio"] > 0
    assert plot["step_tokens"]["sequences"] == 2 * 2 * 2  # accumulation x pairs x responses


@pytest.mark.slow
def test_the_plot_kernel_stage_compares_fused_and_reference_paths(dry_run):
    kernel = dry_run[2]["stages"]["plot_kernel"]
    assert [kernel["checks"][c]["status"] for c in ("fused_values", "fused_gradients")] == [
        "passed",
        "passed",
    ]
    assert kernel["metrics"]["w1_float32_relative_error"] < 1e-5  # V = 1024 in the dry run
    assert set(kernel["metrics"]["loss_ms"]) == {"dpo", "dpo+plot"}


@pytest.mark.slow
def test_stages_reruns_one_stage_and_keeps_the_others(dry_run, tmp_path):
    done, before, after = rerun_copy(dry_run, tmp_path, "--stages", "preflight", stale="preflight")
    assert done.returncode == 0, done.stdout + done.stderr
    assert after["stages"]["preflight"]["status"] == "passed"
    statuses = {
        doc: {k: c["status"] for k, c in stages["preflight"]["checks"].items()}
        for doc, stages in (("before", before["stages"]), ("after", after["stages"]))
    }
    assert statuses["after"] == statuses["before"]
    for name in STAGES[1:]:
        assert after["stages"][name] == before["stages"][name]
    assert last_line(done)["passed"] == 7


@pytest.mark.slow
def test_a_stage_that_runs_out_of_time_is_recorded_as_failed(dry_run, tmp_path):
    done, before, after = rerun_copy(dry_run, tmp_path, "--stages", "recipe_dpo", "--timeout", "1")
    assert done.returncode == 1
    stage = after["stages"]["recipe_dpo"]
    assert (stage["status"], stage["reason"], stage["timeout_s"]) == (
        "failed",
        "timed out after 1 s",
        1.0,
    )
    assert 1 <= stage["seconds"] < 30
    assert "log_tail" in stage
    assert after["summary"]["failed"] == ["recipe_dpo"]
    assert last_line(done)["failed"] == 1
    for name in set(STAGES) - {"recipe_dpo"}:
        assert after["stages"][name] == before["stages"][name]


def test_without_a_gpu_the_plain_check_skips_as_make_bench_expects(tmp_path):
    done = gpu_check(out=tmp_path / "x.json", work=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    assert last_line(done) == {"benchmark": "gpu_check", "skipped": "no GPU"}
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_named_stages_without_a_gpu_fail_at_preflight_and_skip_the_rest(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = gpu_check(
        "--stages", "preflight,nccl,recipe_dpo", out=out, work=tmp_path / "work",
        env={"CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    doc = json.loads(out.read_text())
    assert done.returncode == 1
    assert doc["mode"] == "gpu"
    preflight = doc["stages"]["preflight"]
    assert (preflight["status"], preflight["reason"]) == ("failed", "failed checks: cuda")
    assert "sees no CUDA device" in preflight["checks"]["cuda"]["detail"]
    assert list(doc["stages"]) == ["preflight", "nccl", "recipe_dpo"]
    for name in ("nccl", "recipe_dpo"):
        assert doc["stages"][name]["status"] == "skipped"
        assert doc["stages"][name]["reason"].startswith("no CUDA device (preflight: torch ")


def test_an_unknown_stage_is_refused_with_the_list_of_stages(tmp_path):
    done = gpu_check("--stages", "preflight,warp", out=tmp_path / "x.json", work=tmp_path)
    assert done.returncode == 2
    assert "unknown stage 'warp'; stages: " + ", ".join(STAGES) in done.stderr
    assert not (tmp_path / "x.json").exists()
