"""``plot-ray submit`` / ``plot-ray jobs`` and the shared-storage check, on a real two-node Ray
cluster started on this machine by ``cluster/local.sh`` (token auth on, loopback only).

The unit tests build entrypoints, runtime environments and addresses without Ray. The cluster
tests share one cluster (module scope) whose worker node runs in its own mount namespace with a
private tmpfs over one folder: that folder is node-local for real (the driver's files in it are
invisible to the worker node), so the storage check's refusal is tested against a genuinely
unshared path, not a simulated one.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from plot_ray.submit import (
    DEFAULT_ADDRESS,
    WORKING_DIR_EXCLUDES,
    JobServerError,
    build_entrypoint,
    build_request,
    resolve_address,
)

REPO = Path(__file__).resolve().parents[1]
LOCAL_SH = REPO / "cluster" / "local.sh"
TINY_CONFIG = "jobs/configs/tiny_dpo_plot.yaml"


# ----------------------------------------------------------------------------- unit tests
def test_the_address_comes_from_the_flag_then_the_config_then_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address() == DEFAULT_ADDRESS == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://env:8265")
    assert resolve_address() == "http://env:8265"
    assert resolve_address(None, "http://cfg:8265") == "http://cfg:8265"
    assert resolve_address("http://flag:8265", "http://cfg:8265") == "http://flag:8265"


def test_the_entrypoint_is_plot_ray_with_the_config_and_quoted_overrides():
    entrypoint = build_entrypoint(
        "train", "jobs/configs/x.yaml", ["loss.alpha=0.5", "data.sources=[{path: /a b}]"]
    )
    assert entrypoint == (
        "plot-ray train --config jobs/configs/x.yaml loss.alpha=0.5 'data.sources=[{path: /a b}]'"
    )
    # The job's shell splits it back into exactly these words.
    assert shlex.split(entrypoint)[5] == "data.sources=[{path: /a b}]"


def test_the_entrypoint_refuses_other_subcommands_and_a_second_config():
    with pytest.raises(JobServerError, match="one of prepare, train, tune, eval"):
        build_entrypoint("synth", "x.yaml", [])
    with pytest.raises(JobServerError, match="give the config once"):
        build_entrypoint("train", "x.yaml", ["--config=y.yaml"])


def test_a_request_uploads_the_repo_without_outputs_and_names_the_config_relative_to_it():
    request = build_request(
        REPO / TINY_CONFIG,
        ["train", "loss.alpha=1"],
        working_dir=REPO,
        env={"DS_ACCELERATOR": "cpu"},
        pip=["pot==0.9.5"],
        job_id="my-job",
        entrypoint_num_cpus=0.5,
    )
    assert request.entrypoint == f"plot-ray train --config {TINY_CONFIG} loss.alpha=1"
    assert request.submission_id == "my-job"
    env = request.runtime_env
    assert env["working_dir"] == str(REPO)
    assert env["excludes"] == WORKING_DIR_EXCLUDES
    assert {"runs/", ".venv/", ".git/", "__pycache__/", "*.parquet", "checkpoint_*/"} <= set(
        env["excludes"]
    )
    assert env["env_vars"] == {"PYTHONUNBUFFERED": "1", "DS_ACCELERATOR": "cpu"}
    assert env["pip"] == ["pot==0.9.5"]
    meta = request.metadata
    assert meta["config"] == "tiny_dpo_plot" and meta["plot_ray_command"] == "train"
    assert meta["config_path"] == TINY_CONFIG
    assert len(meta["git_commit"].removesuffix("-dirty")) == 40
    kwargs = request.submit_kwargs()
    assert kwargs["entrypoint_num_cpus"] == 0.5 and "entrypoint_num_gpus" not in kwargs
    # Without --job-id: readable and unique per submission.
    auto = build_request(REPO / TINY_CONFIG, ["prepare"], working_dir=REPO).submission_id
    assert auto.startswith("plot-ray-prepare-tiny_dpo_plot-")


def test_a_config_outside_the_upload_is_refused(tmp_path):
    outside = tmp_path / "x.yaml"
    outside.write_text("{}\n")
    with pytest.raises(JobServerError, match="outside the working directory"):
        build_request(outside, ["train"], working_dir=REPO)
    (tmp_path / "runs").mkdir()
    excluded = tmp_path / "runs" / "x.yaml"
    excluded.write_text("{}\n")
    with pytest.raises(JobServerError, match="excluded by 'runs/'"):
        build_request(excluded, ["train"], working_dir=tmp_path)
    with pytest.raises(JobServerError, match="name the plot-ray subcommand"):
        build_request(outside, [], working_dir=tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "plot_ray.cli", *args],
        cwd=REPO,
        env=env or os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_to_an_unreachable_job_server_says_where_it_looked():
    address = f"http://127.0.0.1:{_free_port()}"
    done = _cli("submit", "--address", address, "--config", TINY_CONFIG, "--", "train", timeout=60)
    assert done.returncode == 1
    assert f"cannot reach the Ray job server at {address}" in done.stderr
    assert "RAY_ADDRESS" in done.stderr


# -------------------------------------------------------------------------- the cluster
def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def _can_unshare() -> bool:
    probe = ["unshare", "--mount", "true"]
    if os.geteuid() != 0:
        probe[1:1] = ["--user", "--map-root-user"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture(scope="module")
def local_cluster():
    """``cluster/local.sh up`` on free ports in a short temporary folder (Ray's socket paths
    must stay under 107 characters); ``down`` at the end whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="prl-", dir="/tmp"))
    base = next(
        p
        for p in range(21000 + os.getpid() % 500 * 10, 30000, 10)
        if _ports_free(p, p + 1, p + 2, p + 3, p + 5)
    )
    private = root / "private" if _can_unshare() else None
    env = {
        **os.environ,
        "PLOT_RAY_LOCAL_DIR": str(root),
        "PLOT_RAY_LOCAL_PORT": str(base),
        "PLOT_RAY_LOCAL_DASHBOARD_PORT": str(base + 5),
        "PLOT_RAY_HEAD_CPUS": "1",
        "PLOT_RAY_WORKER_CPUS": "1",
        "PLOT_RAY_OBJECT_STORE_MB": "200",
    }
    env.pop("RAY_ADDRESS", None)
    if private:
        env["PLOT_RAY_WORKER_PRIVATE_DIR"] = str(private)
    up = subprocess.run(["bash", LOCAL_SH, "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    address = f"http://127.0.0.1:{base + 5}"
    client_env = {
        **env,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(root / "auth_token"),
    }
    try:
        yield {
            "root": root,
            "address": address,
            "env": env,
            "client_env": client_env,
            "private": private,
            "temp_dir": root / "ray",
        }
    finally:
        subprocess.run(["bash", LOCAL_SH, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _api(cluster: dict, path: str) -> list[dict]:
    """The state API (``/api/v0/...``) with the cluster's token."""
    token = (cluster["root"] / "auth_token").read_text().strip()
    request = urllib.request.Request(
        cluster["address"] + path, headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]["result"]["result"]


@pytest.mark.slow
def test_local_sh_starts_two_nodes_told_apart_by_their_resources(local_cluster):
    nodes = [n for n in _api(local_cluster, "/api/v0/nodes?detail=1") if n["state"] == "ALIVE"]
    marks = sorted(
        k for n in nodes for k in n["resources_total"] if k in ("plot_ray_head", "plot_ray_worker")
    )
    assert marks == ["plot_ray_head", "plot_ray_worker"]
    assert [n["resources_total"]["CPU"] for n in nodes] == [1.0, 1.0]


@pytest.mark.slow
def test_a_client_without_the_token_is_refused_and_told_how_to_send_it(local_cluster):
    no_token = {**local_cluster["client_env"], "RAY_AUTH_MODE": "disabled"}
    no_token.pop("RAY_AUTH_TOKEN_PATH")
    refused = _cli("jobs", "list", "--address", local_cluster["address"], env=no_token)
    assert refused.returncode == 1
    assert "requires token authentication and this client sent no token" in refused.stderr
    assert "export RAY_AUTH_MODE=token" in refused.stderr
    assert "~/.ray/auth_token" in refused.stderr
    accepted = _cli(
        "jobs", "list", "--address", local_cluster["address"], env=local_cluster["client_env"]
    )
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.startswith("job id")


def _job_args(synth_dir: Path, model_dir: Path, shared: Path, **extra: str) -> list[str]:
    """Overrides that shrink the quick-start job to a minute: 64 pairs per corpus, no eval
    split, 4 steps of 2 workers placed on different nodes, a checkpoint at step 2 and 4."""
    sources = [
        {"path": str(synth_dir / f"{c}/train.jsonl"), "subpreference": c, "limit": 64}
        for c in ("harmlessness", "logic")
    ]
    overrides = {
        "data.sources": json.dumps(sources),  # JSON is YAML
        "data.eval_sources": "[]",
        "data.output_dir": str(shared / "prepared"),
        "data.max_length": "160",
        "data.max_prompt_length": "96",
        "model.name_or_path": str(model_dir),
        "train.output_dir": str(shared / "train"),
        "train.run_name": "on-two-nodes",
        "train.num_workers": "2",
        "train.cpus_per_worker": "0.5",
        "train.placement_strategy": "STRICT_SPREAD",
        "train.max_steps": "4",
        "train.micro_batch_size": "2",
        "train.warmup_steps": "0",
        "train.eval_every": "null",
        "train.log_every": "1",
        "train.checkpoint_every": "2",
        "loss.plot.chunk_size": "64",
        **extra,
    }
    return [f"{k}={v}" for k, v in overrides.items()]


def _submit(cluster: dict, subcommand: str, args: list[str]) -> subprocess.CompletedProcess:
    return _cli(
        "submit",
        "--address",
        cluster["address"],
        "--config",
        TINY_CONFIG,
        "--env",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2",
        "--env",
        "TOKENIZERS_PARALLELISM=false",
        "--",
        subcommand,
        *args,
        env=cluster["client_env"],
    )


@pytest.mark.slow
def test_prepare_refuses_a_folder_that_one_node_cannot_see(
    local_cluster, synth_dir, tiny_model_dir
):
    if local_cluster["private"] is None:
        pytest.skip("no mount namespaces here (unshare): no node-local folder to refuse")
    private = local_cluster["private"]
    done = _submit(
        local_cluster,
        "prepare",
        # The last override wins: everything as in the quick-start job but the output folder.
        _job_args(synth_dir, tiny_model_dir, local_cluster["root"] / "shared")
        + [f"data.output_dir={private / 'prepared'}"],
    )
    assert done.returncode == 1, done.stdout
    assert "FAILED" in done.stderr
    assert f"data.output_dir='{private / 'prepared'}' is not on shared storage" in done.stdout
    assert "1 of the cluster's 2 nodes cannot see" in done.stdout
    # The probe files are gone again.
    assert list((private / "prepared").iterdir()) == []


@pytest.mark.slow
def test_prepare_and_train_jobs_run_on_both_nodes_and_leave_a_checkpoint(
    local_cluster, synth_dir, tiny_model_dir
):
    shared = local_cluster["root"] / "shared"
    args = _job_args(synth_dir, tiny_model_dir, shared)
    prepared = _submit(local_cluster, "prepare", args)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert "SUCCEEDED" in prepared.stdout
    summary = json.loads((shared / "prepared" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["rows_in"] == 128

    trained = _submit(local_cluster, "train", args)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    run = shared / "train" / "on-two-nodes"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert all(m["loss/total"] == m["loss/total"] for m in metrics)  # no NaN
    assert (run / "final_model" / "model.safetensors").is_file()
    checkpoints = sorted(p.name for p in run.glob("checkpoint_0*"))
    assert checkpoints and checkpoints[-1].endswith("4"), checkpoints
    # STRICT_SPREAD: the two Ray Train workers ran on different nodes, the head and the worker.
    nodes = {
        n["node_id"]: n["resources_total"] for n in _api(local_cluster, "/api/v0/nodes?detail=1")
    }
    workers = [
        a
        for a in _api(local_cluster, "/api/v0/actors?limit=1000&detail=1")
        if a["class_name"] == "RayTrainWorker"
    ]
    assert len(workers) == 2
    places = sorted(
        next(k for k in nodes[a["node_id"]] if k.startswith("plot_ray_")) for a in workers
    )
    assert places == ["plot_ray_head", "plot_ray_worker"]
    listed = _cli(
        "jobs", "list", "--address", local_cluster["address"], env=local_cluster["client_env"]
    )
    assert listed.stdout.count("SUCCEEDED") >= 2


def _running(pid: str) -> bool:
    """Alive and not a zombie: a container's init may leave dead processes unreaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.slow
def test_down_leaves_no_process_of_the_cluster(local_cluster):
    temp_dir = str(local_cluster["temp_dir"])
    pids = subprocess.run(
        ["bash", LOCAL_SH, "pids"], env=local_cluster["env"], capture_output=True, text=True
    ).stdout.split()
    # GCS, dashboard, two raylets and their agents, at the least; workers come and go.
    assert len(pids) >= 8, pids
    down = subprocess.run(
        ["bash", LOCAL_SH, "down"], env=local_cluster["env"], capture_output=True, text=True
    )
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout
    assert left.split() == []
    assert [p for p in pids if _running(p)] == []
    status = subprocess.run(
        ["bash", LOCAL_SH, "status"], env=local_cluster["env"], capture_output=True, text=True
    )
    assert status.returncode == 1 and "no local cluster running" in status.stdout


# ----------------------------------------------------------------------- GPU benchmark
def test_the_gpu_benchmark_skips_cleanly_without_a_gpu():
    # CUDA_VISIBLE_DEVICES="" hides any GPU, so this checks the no-GPU path on every machine.
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_overhead.py")],
        cwd=REPO,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "benchmark": "gpu_overhead",
        "skipped": "no GPU",
    }
