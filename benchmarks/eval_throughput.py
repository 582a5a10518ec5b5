"""Generation throughput: the vLLM engine vs Hugging Face ``generate``, and 1 vs 2 engine replicas.

Same model, same prompts, same work in one run: a randomly initialised Llama (~60M parameters
by default; head_dim 64 as vLLM's CPU backend needs) and its byte-level BPE tokenizer trained
on the synthetic benchmark, N held-out prompts in the chat template, greedy, exactly
``--new-tokens`` new tokens per prompt (EOS ignored in both engines, so the token counts are
equal and completions/s compare like for like).

1. Engines side by side, in this process, each using every core: vLLM (``vllm.LLM``, float32,
   eager by default, ``--compiled`` for vLLM's compiled CPU mode) and HF ``generate`` (float32,
   batches of ``--batch``). Start-up (model load, engine build, one warm-up batch) is reported
   apart from the steady state, which is the timed pass over the N prompts.
2. The engine pool on a local Ray instance (``plot_ray.eval.engines.generate``, the path
   ``plot-ray eval`` runs), with the engine ``eval.generation.engine: auto`` picks for this model and
   machine (``--pool-engine`` to choose):
   1 replica using both cores vs 2 replicas using one core each; wall time of the whole
   Ray Data pass (actor start included) over the same prompts.

Prints lines of figures, then one JSON line: ``vllm_over_hf`` (steady-state completions/s of
vLLM over HF) and ``pool_speedup`` (1-replica wall time over 2-replica wall time).

    python benchmarks/eval_throughput.py [--prompts 96] [--new-tokens 64] [--hidden 768]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def build_model(out: Path, hidden: int, layers: int) -> Path:
    from plot_ray.models.tiny import TinyModelSpec, build_tiny_model, build_tokenizer, corpus_texts
    from plot_ray.synth import generate_benchmark

    data = out / "data"
    generate_benchmark(data, seed=0, scale=0.2)
    tok = build_tokenizer(corpus_texts(data), vocab_size=4096)
    spec = TinyModelSpec(
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
    )
    model = build_tiny_model(tok, spec)
    model_dir = out / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {n / 1e6:.1f}M parameters, hidden {hidden}, {layers} layers", flush=True)
    return model_dir


def prompts_for(model_dir: Path, data: Path, n: int) -> list[str]:
    from plot_ray.eval.engines import chat_prompts
    from plot_ray.models import load_tokenizer
    from plot_ray.synth import read_jsonl

    rows = read_jsonl(data / "eval" / "behaviors.jsonl") + read_jsonl(
        data / "eval" / "benign.jsonl"
    )
    texts = [r.get("behavior") or r["prompt"] for r in rows]
    texts = (texts * (n // len(texts) + 1))[:n]
    return chat_prompts(load_tokenizer(str(model_dir)), texts)


def run_vllm(model_dir: Path, prompts: list[str], new_tokens: int, compiled: bool) -> dict:
    from vllm import LLM, SamplingParams

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    t0 = time.perf_counter()
    llm = LLM(
        model=str(model_dir),
        dtype="float32",
        enforce_eager=not compiled,
        max_model_len=512,
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    llm.generate(prompts[:8], params, use_tqdm=False)  # warm-up
    start = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = llm.generate(prompts, params, use_tqdm=False)
    steady = time.perf_counter() - t1
    tokens = sum(len(o.outputs[0].token_ids) for o in out)
    del llm
    return {"start_s": start, "steady_s": steady, "tokens": tokens}


def run_hf(model_dir: Path, prompts: list[str], new_tokens: int, batch: int) -> dict:
    import torch

    from plot_ray.models import load_causal_lm, load_tokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    tok = load_tokenizer(str(model_dir))
    tok.padding_side = "left"
    model = load_causal_lm(str(model_dir)).eval()

    def gen(chunk: list[str]) -> int:
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,  # EOS ignored, as in vLLM's run
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        return (out.shape[1] - enc["input_ids"].shape[1]) * len(chunk)

    gen(prompts[:8])  # warm-up
    start = time.perf_counter() - t0
    t1 = time.perf_counter()
    tokens = sum(gen(prompts[i : i + batch]) for i in range(0, len(prompts), batch))
    return {"start_s": start, "steady_s": time.perf_counter() - t1, "tokens": tokens}


def run_pool(
    model_dir: Path, prompts: list[str], new_tokens: int, engines: int, batch: int, engine: str
) -> dict:
    import ray

    from plot_ray.config import load_config
    from plot_ray.eval.engines import EngineSettings, generate

    cfg = load_config(
        overrides={
            "eval.generation.engine": engine,
            "eval.generation.num_engines": engines,
            "eval.generation.max_new_tokens": new_tokens,
            "eval.generation.batch_size": batch,
        }
    )
    settings = EngineSettings.resolve(cfg.eval, model=str(model_dir))
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"prompt": p} for p in prompts])
    rows = generate(ds, str(model_dir), settings).take_all()
    return {"engine": settings.engine, "wall_s": time.perf_counter() - t0, "rows": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=96)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32, help="HF generate batch size")
    ap.add_argument("--pool-prompts", type=int, default=192)
    ap.add_argument("--compiled", action="store_true", help="vLLM without enforce_eager")
    ap.add_argument("--pool-engine", default="auto", choices=["auto", "vllm", "hf"])
    args = ap.parse_args()

    from plot_ray.cluster import init_ray, use_small_machine_env

    use_small_machine_env()
    root = Path(tempfile.mkdtemp(prefix="plot-ray-eval-bench-"))
    model_dir = build_model(root, args.hidden, args.layers)
    prompts = prompts_for(model_dir, root / "data", args.prompts)

    vllm = run_vllm(model_dir, prompts, args.new_tokens, args.compiled)
    hf = run_hf(model_dir, prompts, args.new_tokens, args.batch)
    for name, r in (("vllm", vllm), ("hf", hf)):
        r["completions_per_s"] = args.prompts / r["steady_s"]
        r["tokens_per_s"] = r["tokens"] / r["steady_s"]
        print(
            f"{name:5s} start {r['start_s']:6.1f}s  steady {r['steady_s']:6.1f}s  "
            f"{r['completions_per_s']:6.2f} completions/s  {r['tokens_per_s']:7.1f} tokens/s",
            flush=True,
        )

    init_ray(num_cpus=2, object_store_memory_mb=300, quiet=True)
    pool_prompts = prompts_for(model_dir, root / "data", args.pool_prompts)
    pools = {
        n: run_pool(model_dir, pool_prompts, args.new_tokens, n, 16, args.pool_engine)
        for n in (1, 2)
    }
    for n, r in pools.items():
        print(
            f"pool  {r['engine']} x{n}: {r['rows']} completions in {r['wall_s']:.1f}s", flush=True
        )

    print(
        json.dumps(
            {
                "benchmark": "eval_throughput",
                "vllm_over_hf": round(vllm["completions_per_s"] / hf["completions_per_s"], 3),
                "pool_speedup": round(pools[1]["wall_s"] / pools[2]["wall_s"], 3),
                "vllm_start_s": round(vllm["start_s"], 1),
                "hf_start_s": round(hf["start_s"], 1),
                "vllm_completions_per_s": round(vllm["completions_per_s"], 2),
                "hf_completions_per_s": round(hf["completions_per_s"], 2),
                "pool_engine": pools[1]["engine"],
                "vllm_mode": "compiled" if args.compiled else "eager",
                "prompts": args.prompts,
                "new_tokens": args.new_tokens,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":  # vLLM spawns processes: the guard is required
    main()
