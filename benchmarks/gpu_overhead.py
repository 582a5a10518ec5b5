"""PLOT's cost on a GPU at a realistic size: DPO vs DPO+PLOT step time and peak GPU memory on a
~1B-parameter randomly initialised Llama (Llama-3.2-1B's shape: hidden 2048, 16 layers, 32
heads, 8 KV heads, MLP 8192) in bf16 with DeepSpeed ZeRO-2 on one GPU (Ray Train, nccl), then a
short vLLM generation from the trained model (tokens/s).

    python benchmarks/gpu_overhead.py [--steps 20] [--micro-batch-size 8] [--vocab-size 32000]

On a machine without a CUDA GPU it prints one line, {"benchmark": "gpu_overhead", "skipped":
"no GPU"}, and exits 0. Last line otherwise: {"benchmark": "gpu_overhead", "time_ratio": ...,
"memory_ratio": ..., "vllm_tokens_per_s": ...}. The paper reports about 1.027 (training time,
DPO+PLOT over DPO, Llama-3.2-3B).

The vocabulary is the synthetic corpus's trained BPE (at most --vocab-size tokens, usually
fewer), much smaller than Llama's 128k: PLOT's per-position work grows with the vocabulary while
the model's does not, so on a real 128k-vocabulary model the ratios are larger than here. The
output reports the vocabulary it ran with.
"""

from __future__ import annotations

import argparse
import json
import sys


def _no_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=64, help="vLLM prompts")
    parser.add_argument("--new-tokens", type=int, default=128, help="vLLM tokens per prompt")
    args = parser.parse_args()
    if _no_gpu():
        print(json.dumps({"benchmark": "gpu_overhead", "skipped": "no GPU"}))
        return
    print(json.dumps({"benchmark": "gpu_overhead", **run(args)}))


# ----------------------------------------------------------------------------------- GPU
def _workspace(args: argparse.Namespace) -> dict:
    """Synthetic corpus, the ~1B model (random weights, saved once) and prepared data."""
    import os
    import tempfile
    from pathlib import Path

    from plot_ray.cluster import init_ray, use_small_machine_env
    from plot_ray.config import load_config
    from plot_ray.data import run_prepare
    from plot_ray.models.tiny import TinyModelSpec, build_from_corpus
    from plot_ray.synth import generate_benchmark

    use_small_machine_env()  # quiet Ray, no usage stats, faster train reports (as _train_common)
    root = Path(tempfile.mkdtemp(prefix="plot-ray-gpu-"))
    generate_benchmark(root / "data", seed=0, scale=0.2)
    spec = TinyModelSpec(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=args.layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    built = build_from_corpus(
        root / "data", root / "model", vocab_size=args.vocab_size, spec=spec, progress=False
    )
    cpus = max(4, min(os.cpu_count() or 4, 16))
    init_ray(num_cpus=cpus, object_store_memory_mb=2000, quiet=True)
    overrides = {
        "data.sources": [
            {"path": str(root / "data" / c / "train.jsonl"), "subpreference": c}
            for c in ("harmlessness", "logic")
        ],
        "data.output_dir": str(root / "prepared"),
        "data.max_length": 256,
        "data.max_prompt_length": 128,
        "model.name_or_path": str(root / "model"),
    }
    run_prepare(load_config(overrides=overrides))
    return {"root": root, "overrides": overrides, "built": built}


def _memory_recipe() -> type:
    """The training recipe, plus rank 0's peak GPU memory (after set-up, so that model and
    optimizer state are counted and the loading transients are not) in ``peak_memory.json``."""
    import ray.cloudpickle

    from plot_ray.train.loop import PreferenceRecipe

    # Ray's workers cannot import benchmarks/: send this module's classes by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    class PeakMemoryRecipe(PreferenceRecipe):
        def train(self):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            out = super().train()
            torch.cuda.synchronize()
            if self.rank == 0:
                peak = torch.cuda.max_memory_allocated()
                (self.run_dir / "peak_memory.json").write_text(json.dumps({"bytes": peak}))
            return out

    return PeakMemoryRecipe


def _train(ws: dict, args: argparse.Namespace, name: str, alpha: float, recipe: type) -> dict:
    import statistics

    from plot_ray.config import load_config
    from plot_ray.train import run_training

    cfg = load_config(
        overrides={
            **ws["overrides"],
            "train.output_dir": str(ws["root"] / "runs"),
            "train.run_name": name,
            "train.use_gpu": True,
            "train.num_workers": 1,
            "train.cpus_per_worker": 2,
            "train.max_steps": args.steps,
            "train.log_every": args.log_every,
            "train.micro_batch_size": args.micro_batch_size,
            "train.checkpoint_every": 10_000,  # one checkpoint, at the end (the final model)
            "train.learning_rate": 1e-5,
            "train.warmup_steps": 0,
            "train.save_hf_model": alpha > 0,  # vLLM generates from the DPO+PLOT model
            "loss.method": "dpo",
            "loss.alpha": alpha,
            "deepspeed.zero_stage": 2,
            "deepspeed.precision": "bf16",
        }
    )
    run = run_training(cfg, recipe=recipe, verbose=False)
    rates = [m["tokens_per_s"] for m in run.metrics[1:]] or [run.metrics[-1]["tokens_per_s"]]
    peak = json.loads((run.run_dir / "peak_memory.json").read_text())["bytes"]
    return {
        "tokens_per_s": statistics.median(rates),
        "peak_bytes": peak,
        "final_model": run.final_model,
    }


def _vllm_tokens_per_s(model: str, args: argparse.Namespace) -> float:
    """Greedy generation of ``--new-tokens`` for ``--prompts`` prompts; generated tokens per
    second of wall time, engine start excluded."""
    import time

    from vllm import LLM, SamplingParams

    llm = LLM(
        model=model,
        dtype="bfloat16",
        gpu_memory_utilization=0.5,  # the training workers are gone, but stay modest
        max_model_len=1024,
        enforce_eager=True,  # no CUDA-graph capture: it would cost more than this run saves
        seed=0,
    )
    prompts = [f"Question {i}: how do I bake bread?" for i in range(args.prompts)]
    params = SamplingParams(temperature=0.0, max_tokens=args.new_tokens, ignore_eos=True)
    started = time.perf_counter()
    outputs = llm.generate(prompts, params)
    seconds = time.perf_counter() - started
    return sum(len(o.outputs[0].token_ids) for o in outputs) / seconds


def run(args: argparse.Namespace) -> dict:
    import ray

    ws = _workspace(args)
    recipe = _memory_recipe()
    dpo = _train(ws, args, "gpu-dpo", 0.0, recipe)
    plot = _train(ws, args, "gpu-dpo-plot", 0.5, recipe)
    # Give the GPU back before vLLM takes its share of memory.
    ray.shutdown()
    result = {
        # tokens/s over identical batches is the inverse of the step time
        "time_ratio": round(dpo["tokens_per_s"] / plot["tokens_per_s"], 4),
        "memory_ratio": round(plot["peak_bytes"] / dpo["peak_bytes"], 4),
        "tokens_per_s_dpo": round(dpo["tokens_per_s"], 1),
        "tokens_per_s_plot": round(plot["tokens_per_s"], 1),
        "peak_gib_dpo": round(dpo["peak_bytes"] / 2**30, 2),
        "peak_gib_plot": round(plot["peak_bytes"] / 2**30, 2),
        "parameters": ws["built"]["parameters"],
        "vocab_size": ws["built"]["vocab_size"],
        "steps": args.steps,
        "micro_batch_size": args.micro_batch_size,
    }
    print(
        f"DPO+PLOT over DPO: step time {result['time_ratio']:.3f}, peak memory "
        f"{result['memory_ratio']:.3f} (paper: ~1.027 time)"
    )
    result["vllm_tokens_per_s"] = round(_vllm_tokens_per_s(str(plot["final_model"]), args), 1)
    return result


if __name__ == "__main__":  # vLLM spawns processes: keep the module import side-effect free
    main()
