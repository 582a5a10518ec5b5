"""``plot-ray train`` on the command line: its own progress and summary on the terminal, Ray's
and DeepSpeed's worker logs in a file, and a worker's error shown in full."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from plot_ray.train.trainer import summary_lines


def test_the_summary_names_failures_restores_and_the_log_file():
    lines = summary_lines(
        {
            "run_dir": "/runs/x",
            "steps": 40,
            "worker_log": "/runs/x/logs/ray_workers.log",
            "final_model": None,
            "resumed_from_step": None,
            "failures_survived": 1,
            "restores": [{"from_step": 15, "checkpoint": "checkpoint_000015"}],
            "last_metrics": {"step": 40, "loss/total": 0.25, "nan_skips": 0},
        }
    )
    assert lines[0] == "trained 40 steps → /runs/x"
    assert "  loss/total         0.2500" in lines
    assert (
        "survived 1 worker failure: restored from checkpoint_000015 (step 15); every step is "
        "logged once"
    ) in lines
    assert lines[-1] == "worker logs (Ray, DeepSpeed): /runs/x/logs/ray_workers.log"
    quiet = summary_lines(
        {
            "run_dir": "/r",
            "steps": 2,
            "worker_log": "/r/l",
            "last_metrics": {},
            "failures_survived": 0,
            "restores": [],
        }
    )
    assert not any("survived" in line for line in quiet)


def _write_config(tmp_path, prepared, model_dir, **overrides):
    from plot_ray.config import load_config

    cfg = load_config(
        overrides={
            "data.output_dir": str(prepared),
            "data.max_length": 160,
            "data.max_prompt_length": 96,
            "model.name_or_path": str(model_dir),
            "train.output_dir": str(tmp_path / "train"),
            "train.num_workers": 1,
            "train.cpus_per_worker": 0.5,
            "train.max_steps": 2,
            "train.micro_batch_size": 2,
            "train.save_hf_model": False,
            "cluster.num_cpus": 2,
            "cluster.object_store_memory_mb": 200,
            **overrides,
        }
    )
    path = tmp_path / "train.yaml"
    path.write_text(cfg.to_yaml())
    return path


@pytest.mark.slow
def test_a_worker_error_reaches_the_cli_stderr_in_full(
    ray_local, prepared_dir, tiny_model_dir, tmp_path, capsys
):
    from plot_ray.cli import main

    # Passes the driver's checks, then fails inside the worker at its first micro-batch.
    config = _write_config(
        tmp_path,
        prepared_dir,
        tiny_model_dir,
        **{"train.micro_batch_size": 100000, "train.run_name": "fails"},
    )
    assert main(["train", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "plot-ray train: training failed" in err
    assert (
        "worker 0 received no complete micro-batch: the prepared data has too few rows for 1 "
        "workers × train.micro_batch_size=100000"
    ) in err
    assert (
        f"worker logs (Ray, DeepSpeed): {tmp_path / 'train' / 'fails' / 'logs' / 'ray_workers.log'}"
        in err
    )


@pytest.mark.slow
def test_cli_train_shows_its_progress_and_summary_and_keeps_worker_logs_in_a_file(
    prepared_dir, tiny_model_dir, tmp_path
):
    """A fresh process with its own local Ray instance, as a user runs it."""
    config = _write_config(tmp_path, prepared_dir, tiny_model_dir, **{"train.run_name": "quiet"})
    env = {**os.environ, "RAY_ADDRESS": ""}
    out = subprocess.run(
        [sys.executable, "-m", "plot_ray.cli", "train", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "train" / "quiet"
    log = run_dir / "logs" / "ray_workers.log"
    assert out.stdout.splitlines()[0] == f"trained 2 steps → {run_dir}"
    assert out.stdout.splitlines()[-1] == f"worker logs (Ray, DeepSpeed): {log}"
    assert "train: 100%" in out.stderr and "2/2" in out.stderr  # the progress bar
    terminal = out.stdout + out.stderr
    for worker_line in ("Reporting training result", "RayTrainWorker", "Checkpoint successfully"):
        assert worker_line not in terminal
    # ... they are in the log file instead: the one report, with the final checkpoint.
    assert "Reporting training result 1" in log.read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["failures_survived"] == 0
