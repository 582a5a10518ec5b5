"""Shared set-up for the training benchmarks: a synthetic corpus, a tiny model and prepared
data in a scratch folder, and a helper that runs a short training and returns its metrics."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from plot_ray.cluster import use_small_machine_env

use_small_machine_env()


def prepare_workspace(scale: float = 0.2, hidden_size: int = 256, layers: int = 4) -> dict:
    from plot_ray.cluster import init_ray
    from plot_ray.config import load_config
    from plot_ray.data import run_prepare
    from plot_ray.models.tiny import TinyModelSpec, build_from_corpus
    from plot_ray.synth import generate_benchmark

    root = Path(tempfile.mkdtemp(prefix="plot-ray-bench-"))
    generate_benchmark(root / "data", seed=0, scale=scale)
    spec = TinyModelSpec(hidden_size=hidden_size, intermediate_size=hidden_size * 3,
                         num_hidden_layers=layers, num_attention_heads=hidden_size // 64,
                         num_key_value_heads=hidden_size // 64)
    build_from_corpus(root / "data", root / "model", vocab_size=4096, spec=spec, progress=False)
    init_ray(num_cpus=2, object_store_memory_mb=300, quiet=True)
    overrides = {
        "data.sources": [
            {"path": str(root / "data" / "harmlessness" / "train.jsonl"), "subpreference": "harmlessness"},
            {"path": str(root / "data" / "logic" / "train.jsonl"), "subpreference": "logic"},
        ],
        "data.output_dir": str(root / "prepared"),
        "data.max_length": 256,
        "data.max_prompt_length": 128,
        "model.name_or_path": str(root / "model"),
    }
    run_prepare(load_config(overrides=overrides))
    return {"root": root, "overrides": overrides}


def train_metrics(ws: dict, name: str, **overrides) -> list[dict]:
    from plot_ray.config import load_config
    from plot_ray.train import run_training

    cfg = load_config(overrides={
        **ws["overrides"],
        "train.output_dir": str(ws["root"] / "runs"),
        "train.run_name": name,
        "train.save_hf_model": False,
        "train.checkpoint_every": 10_000,
        "train.learning_rate": 1e-4,
        "train.warmup_steps": 0,
        **overrides,
    })
    return run_training(cfg).metrics


def median_after_warmup(metrics: list[dict], key: str, skip: int = 1) -> float:
    values = [m[key] for m in metrics[skip:]] or [m[key] for m in metrics]
    return statistics.median(values)
