"""The end-to-end demo: the whole PLOT pipeline on one machine with a tiny model.

Each stage writes its results under ``out`` before the next starts, and a stage whose output
already exists is reused, so an interrupted demo picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["run_demo"]


def _stage(name: str):
    print(f"\n== {name}", flush=True)
    return time.perf_counter()


def run_demo(out: Path, seed: int = 0, scale: float = 0.5, warmup_steps: int = 300) -> dict:
    from plot_ray.models.tiny import build_from_corpus
    from plot_ray.synth import generate_benchmark

    out.mkdir(parents=True, exist_ok=True)
    data_dir, model_dir = out / "data", out / "base-model"
    report: dict = {"seed": seed, "scale": scale, "stages": {}}

    t = _stage("1. synthetic preference benchmark")
    if (data_dir / "manifest.json").is_file():
        manifest = json.loads((data_dir / "manifest.json").read_text())
        print(f"reusing {data_dir}")
    else:
        manifest = generate_benchmark(data_dir, seed=seed, scale=scale)
    report["stages"]["synth"] = {"dir": str(data_dir), "counts": manifest.get("counts", {})}
    print(f"done in {time.perf_counter() - t:.1f}s")

    t = _stage("2. tokenizer + tiny Llama, warmed up on the (unaligned) warm-up corpus")
    if (model_dir / "plot_ray_build.json").is_file():
        summary = json.loads((model_dir / "plot_ray_build.json").read_text())
        print(f"reusing {model_dir}")
    else:
        summary = build_from_corpus(data_dir, model_dir, warmup_steps=warmup_steps, seed=seed)
    report["stages"]["build_model"] = summary
    print(
        f"{summary['parameters'] / 1e6:.2f}M parameters, vocabulary {summary['vocab_size']}; "
        f"done in {time.perf_counter() - t:.1f}s"
    )

    (out / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport: {out / 'demo_report.json'}")
    return report
