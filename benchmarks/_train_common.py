"""Shared set-up for the training benchmarks: a synthetic corpus, a tiny model and prepared
data in a scratch folder, a helper that runs a short training and returns its metrics, and the
response-token counts of a run's steps taken from the prepared data itself.

Importing this module applies :func:`plot_ray.cluster.use_small_machine_env` (variables the
user has not set). One of them, ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2``, shortens the wait
of each ``ray.train.report()`` after the first (Ray's default is 2 s); a user's
``plot-ray train`` does not set it, so benchmarks that measure what a user sees pass
``ray_default_health_check=True`` to :func:`prepare_workspace`.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

from plot_ray.cluster import use_small_machine_env

HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
# Read before use_small_machine_env() fills it in: a value the user exported is theirs to keep.
_USER_HEALTH_CHECK = os.environ.get(HEALTH_CHECK_ENV)

use_small_machine_env()


def prepare_workspace(
    scale: float = 0.2,
    hidden_size: int = 256,
    layers: int = 4,
    ray_default_health_check: bool = False,
) -> dict:
    """Synthetic benchmark (``scale`` × the full row counts), a tiny Llama trained-tokenizer
    model and ``plot-ray prepare`` output in a fresh temporary folder; starts local Ray (2 CPUs).

    ``ray_default_health_check``: start Ray without ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``
    (unless the user exported it), as a user's run has it. Ray's workers inherit the
    environment at ``ray.init``, so this must be decided here, before Ray starts.

    Returns ``{"root": Path, "overrides": dict}``: the config overrides that point a run at
    this data and model (``data.max_length`` 256, ``data.max_prompt_length`` 128).
    """
    import ray

    from plot_ray.cluster import init_ray
    from plot_ray.config import load_config
    from plot_ray.data import run_prepare
    from plot_ray.models.tiny import TinyModelSpec, build_from_corpus
    from plot_ray.synth import generate_benchmark

    if ray_default_health_check and _USER_HEALTH_CHECK is None:
        if ray.is_initialized():
            raise RuntimeError(
                "prepare_workspace(ray_default_health_check=True) must run before Ray starts: "
                "Ray's workers keep the environment they were started with"
            )
        os.environ.pop(HEALTH_CHECK_ENV, None)
    root = Path(tempfile.mkdtemp(prefix="plot-ray-bench-"))
    generate_benchmark(root / "data", seed=0, scale=scale)
    spec = TinyModelSpec(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=layers,
        num_attention_heads=hidden_size // 64,
        num_key_value_heads=hidden_size // 64,
    )
    build_from_corpus(root / "data", root / "model", vocab_size=4096, spec=spec, progress=False)
    init_ray(num_cpus=2, object_store_memory_mb=300, quiet=True)
    overrides = {
        "data.sources": [
            {
                "path": str(root / "data" / "harmlessness" / "train.jsonl"),
                "subpreference": "harmlessness",
            },
            {"path": str(root / "data" / "logic" / "train.jsonl"), "subpreference": "logic"},
        ],
        "data.output_dir": str(root / "prepared"),
        "data.max_length": 256,
        "data.max_prompt_length": 128,
        "model.name_or_path": str(root / "model"),
    }
    run_prepare(load_config(overrides=overrides))
    return {"root": root, "overrides": overrides}


def health_check_setting() -> str:
    """What the Ray Train reports of this process's runs wait on, for the benchmark's output."""
    value = os.environ.get(HEALTH_CHECK_ENV)
    return (
        f"{HEALTH_CHECK_ENV}={value}" if value else f"{HEALTH_CHECK_ENV} unset (Ray's default, 2 s)"
    )


def train_metrics(ws: dict, name: str, **overrides) -> list[dict]:
    """Train with the workspace's data and model; returns the rows of ``metrics.jsonl``
    (one per ``train.log_every`` steps, each with ``tokens_per_s`` over its window)."""
    from plot_ray.config import load_config
    from plot_ray.train import run_training

    cfg = load_config(
        overrides={
            **ws["overrides"],
            "train.output_dir": str(ws["root"] / "runs"),
            "train.run_name": name,
            "train.save_hf_model": False,
            "train.checkpoint_every": 10_000,
            "train.learning_rate": 1e-4,
            "train.warmup_steps": 0,
            **overrides,
        }
    )
    return run_training(cfg).metrics


def median_after_warmup(metrics: list[dict], key: str, skip: int = 1) -> float:
    values = [m[key] for m in metrics[skip:]] or [m[key] for m in metrics]
    return statistics.median(values)


def prepared_rows(ws: dict) -> list[dict]:
    """The prepared training rows in shard order (the order one Ray Train worker reads them):
    ``{"prompt_ids": list[int], "response_ids": list[list[int]], "subpreference_id": int}``,
    best response first."""
    import pyarrow.parquet as pq

    from plot_ray.data.schema import SUMMARY_FILE, TOKENIZED_DIR

    prepared = Path(ws["overrides"]["data.output_dir"])
    shards = json.loads((prepared / SUMMARY_FILE).read_text())["shards"]
    rows: list[dict] = []
    for name in shards:
        rows += pq.read_table(
            prepared / TOKENIZED_DIR / name,
            columns=["prompt_ids", "response_ids", "subpreference_id"],
        ).to_pylist()
    return rows


def response_tokens(row: dict, max_length: int) -> int:
    """Response tokens of a pair row (chosen + rejected, eos included; no prompt, no padding),
    after cutting each prompt+response sequence at ``max_length`` as training does."""
    p = len(row["prompt_ids"])
    return sum(max(0, min(p + len(r), max_length) - p) for r in row["response_ids"][:2])


def step_tokens(rows: list[dict], pairs_per_step: int, steps: int, max_length: int) -> list[int]:
    """Response tokens of each optimizer step of a run that reads ``rows`` in order,
    ``pairs_per_step`` at a time, dropping each epoch's incomplete last batch and starting
    again from the first row (plot-ray's single worker; TRL with a sequential sampler and
    ``dataloader_drop_last``). Index k is step k + 1."""
    per_epoch = len(rows) // pairs_per_step
    if per_epoch == 0:
        raise ValueError(f"{len(rows)} rows hold no complete step of {pairs_per_step} pairs")
    per_batch = [
        sum(
            response_tokens(r, max_length)
            for r in rows[b * pairs_per_step : (b + 1) * pairs_per_step]
        )
        for b in range(per_epoch)
    ]
    return [per_batch[k % per_epoch] for k in range(steps)]


def rate_after(metrics: list[dict], tokens: list[int], after_step: int) -> float:
    """Response tokens/s over steps ``after_step + 1 .. last`` of a one-worker plot-ray run:
    total tokens over total time, each logged window's time recovered as its tokens (from the
    data, ``tokens`` as :func:`step_tokens` gives them) over its ``tokens_per_s``. Unlike a
    median of per-window rates, this weighs every step once whatever ``train.log_every`` is."""
    total_tokens, total_seconds, previous = 0, 0.0, 0
    for row in metrics:
        step = row["step"]
        window = sum(tokens[previous:step])
        if previous >= after_step:
            total_tokens += window
            total_seconds += window / row["tokens_per_s"]
        previous = step
    if total_seconds == 0:
        raise ValueError(f"no logged window starts after step {after_step}: run more steps")
    return total_tokens / total_seconds
