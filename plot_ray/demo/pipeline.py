"""The end-to-end demo: the whole PLOT pipeline on one machine with a tiny model.

    1. synthetic preference benchmark            plot_ray.synth
    2. tokenizer + tiny Llama, warmed up         plot_ray.models
    3. Ray Data: validate, tokenize, count       plot_ray.data      (local Ray instance)
    4. Ray Train + DeepSpeed: DPO + PLOT         plot_ray.train     (2 CPU workers, ZeRO-2)
    5. samples: base vs. fine-tuned completions on held-out prompts

The run is ``jobs/configs/tiny_dpo_plot.yaml`` with its paths moved under ``out``. Each stage
writes its results under ``out`` before the next starts, and a stage whose output already exists
is reused, so an interrupted demo picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["run_demo", "demo_config"]

CONFIG = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "tiny_dpo_plot.yaml"


def _stage(name: str) -> float:
    print(f"\n== {name}", flush=True)
    return time.perf_counter()


def demo_config(out: Path, overrides: list[str] | None = None):
    """The demo's config: ``tiny_dpo_plot.yaml`` with every path under ``out``."""
    from plot_ray.config import load_config, parse_override

    data = out / "data"
    moved = {
        "data.sources": [
            {"path": str(data / "harmlessness" / "train.jsonl"), "subpreference": "harmlessness"},
            {"path": str(data / "logic" / "train.jsonl"), "subpreference": "logic"},
        ],
        "data.eval_sources": [
            {
                "path": str(data / "harmlessness" / "validation.jsonl"),
                "subpreference": "harmlessness",
            },
            {"path": str(data / "logic" / "validation.jsonl"), "subpreference": "logic"},
        ],
        "data.output_dir": str(out / "prepared"),
        "model.name_or_path": str(out / "base-model"),
        "train.output_dir": str(out / "train"),
    }
    moved.update(parse_override(o) for o in overrides or [])
    return load_config(CONFIG, moved)


def _samples(cfg, base: str, tuned: str, data_dir: Path, n: int = 4) -> list[dict]:
    """Greedy completions of the base and the fine-tuned model on held-out prompts."""
    import torch

    from plot_ray.models import load_causal_lm, load_tokenizer
    from plot_ray.synth import read_jsonl

    prompts = [r["behavior"] for r in read_jsonl(data_dir / "eval" / "behaviors.jsonl")[:n]]
    prompts += [r["prompt"] for r in read_jsonl(data_dir / "eval" / "benign.jsonl")[:n]]
    tok = load_tokenizer(tuned)
    models = {"base": load_causal_lm(base).eval(), "plot": load_causal_lm(tuned).eval()}
    rows = []
    for prompt in prompts:
        ids = tok.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        row = {"prompt": prompt}
        for name, model in models.items():
            with torch.no_grad():
                out = model.generate(**ids, max_new_tokens=40, do_sample=False)
            row[name] = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        rows.append(row)
    return rows


def run_demo(
    out: Path, seed: int = 0, scale: float = 0.5, warmup_steps: int = 300, verbose: bool = False
) -> dict:
    """Run (or finish) the demo under ``out``; returns what ``demo_report.json`` holds.

    Each stage prints its own progress and summary; Ray's and DeepSpeed's worker logs go to
    the training run's log file (named at the end of stage 4), and to the terminal too when
    ``verbose``.
    """
    from plot_ray.cluster import use_small_machine_env
    from plot_ray.data import run_prepare
    from plot_ray.models.tiny import build_from_corpus
    from plot_ray.synth import generate_benchmark
    from plot_ray.train import run_training
    from plot_ray.train.checkpoint import RAY_SNAPSHOT
    from plot_ray.train.trainer import summary_lines

    use_small_machine_env()  # the demo runs on one machine: local Ray, CPU DeepSpeed
    out = out.resolve()
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

    cfg = demo_config(out, [f"train.seed={seed}"])
    t = _stage("3. Ray Data: validate, tokenize, count preferred/rejected tokens")
    prepared = Path(cfg.data.output_dir)
    if (prepared / "summary.json").is_file() and json.loads(
        (prepared / "summary.json").read_text()
    ).get("status") == "complete":
        print(f"reusing {prepared}")
    else:
        run_prepare(cfg, verbose=verbose)
    report["stages"]["prepare"] = json.loads((prepared / "summary.json").read_text())
    print(f"done in {time.perf_counter() - t:.1f}s")

    t = _stage(
        f"4. Ray Train + DeepSpeed ZeRO-{cfg.deepspeed.zero_stage}: {cfg.loss.method.upper()} + "
        f"PLOT (alpha={cfg.loss.alpha}, {cfg.loss.plot.target} target), "
        f"{cfg.train.num_workers} workers"
    )
    run_dir = Path(cfg.train.output_dir) / cfg.train.run_name
    final = run_dir / "final_model"
    if (run_dir / "summary.json").is_file() and final.is_dir():
        print(f"reusing {run_dir}")
        train_summary = json.loads((run_dir / "summary.json").read_text())
    else:
        # An interrupted demo continues its run from the last checkpoint.
        resume = (run_dir / RAY_SNAPSHOT).is_file()
        run = run_training(cfg, resume=resume, progress=True, verbose=verbose)
        train_summary = run.summary
        first, last = run.metrics[0], run.last
        for key in ("loss/vanilla", "loss/plot", "rewards/accuracy", "rewards/margin"):
            if key in last:
                print(
                    f"  {key:<18} {first[key]:8.4f} (step {first['step']}) → {last[key]:8.4f} "
                    f"(step {last['step']})"
                )
        for line in summary_lines(train_summary):
            print(line)
    report["stages"]["train"] = {
        k: train_summary[k] for k in ("final_model", "steps", "last_metrics")
    }
    print(f"done in {time.perf_counter() - t:.1f}s")

    t = _stage("5. samples: base vs. DPO+PLOT on held-out prompts")
    samples = _samples(cfg, str(model_dir), str(final), data_dir)
    with (out / "samples.jsonl").open("w") as fh:
        for row in samples:
            fh.write(json.dumps(row) + "\n")
    for row in samples[:2] + samples[-1:]:
        print(f"  prompt: {row['prompt'][:90]}")
        print(f"    base: {row['base'][:90]!r}")
        print(f"    plot: {row['plot'][:90]!r}")
    print(f"all samples: {out / 'samples.jsonl'}; done in {time.perf_counter() - t:.1f}s")

    (out / "demo_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nreport: {out / 'demo_report.json'}")
    return report
