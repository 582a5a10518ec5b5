"""What does PLOT cost on top of DPO? Step time and peak memory, side by side, on CPU.

A DPO training step and a DPO+PLOT step (the project's default PLOT config: anchored target,
sequence aggregation, chosen responses, PCA W1) on a Llama-style model with a 32k vocabulary
(hidden 512, 4 layers, head_dim 64), 2 preference pairs of 256 tokens. Both steps run the same
train-loop order: policy forward, reference forward (no grad), objective, backward, AdamW step.
The vanilla step computes the reference log-probs from the reference logits and drops them;
the PLOT step hands the reference logits to the objective (the anchored target needs them),
which derives the reference log-probs in the same pass, and drops them before backward.

Time: the two variants alternate (ABBA order) so that drift on a shared machine hits both;
``time_ratio`` is the ratio of the median wall-clock step times. Also reported, as checks on a
noisy machine: the median of the per-round ratios, the ratio of the fastest steps and the
ratio of median process CPU times, and PLOT's cost measured on the loss alone (the objective
and its backward into fixed logits; fastest of many interleaved repeats) as a fraction of the
fastest DPO step: all of PLOT's work happens there, and short measurements resolve it far better
than whole steps do when other processes share the CPUs.

Memory: the PyTorch profiler's allocator events (every CPU tensor allocation and free, kernel
temporaries and autograd buffers included) give the peak of live bytes during one step; added
to the bytes alive before the step (both models, AdamW state, PLOT's geometry and targets) this
is the step's peak memory, independent of malloc's caching and of other processes (unlike RSS).
The profiled steps are separate from the timed ones (profiling slows a step down).

Usage: python benchmarks/plot_overhead.py [--steps 8] [--alpha 0.1]
Last line: {"benchmark": "plot_overhead", "time_ratio": ..., "memory_ratio": ...}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from plot_ray.config import LossConfig, PlotConfig
from plot_ray.losses import PreferenceTargets, TokenGeometry, build_objective, sequence_logprobs
from plot_ray.profiling import peak_live_bytes


def make_model(vocab: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=8,
        head_dim=64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg)


def make_batch(vocab: int, pairs: int, seq: int, prompt: int, seed: int):
    """``2 * pairs`` rows (chosen group, then rejected group), labels -100 on prompt/padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2 * pairs, seq), generator=gen)
    ids[pairs:, :prompt] = ids[:pairs, :prompt]  # same prompt for chosen and rejected
    attn = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :prompt] = -100
    for row in range(2 * pairs):  # ragged response lengths, right padding
        end = seq - (row * 37) % (seq // 4)
        attn[row, end:] = 0
        labels[row, end:] = -100
        ids[row, end:] = 0
    return ids, attn, labels


def make_targets(vocab: int, seed: int) -> PreferenceTargets:
    """Two sub-preferences with Zipf-like counts, as the data pipeline would produce."""
    gen = torch.Generator().manual_seed(seed)
    zipf = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    pos = torch.stack(
        [torch.poisson(2e5 * zipf[torch.randperm(vocab, generator=gen)], gen) for _ in range(2)]
    )
    neg = torch.stack(
        [torch.poisson(2e5 * zipf[torch.randperm(vocab, generator=gen)], gen) for _ in range(2)]
    )
    return PreferenceTargets.from_counts(pos, neg, PlotConfig(), names=["harmless", "helpful"])


def tensor_bytes(*objs) -> int:
    """Bytes of the distinct storages reachable from modules, optimizers and plain objects."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor):
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()

    for obj in objs:
        if isinstance(obj, torch.nn.Module):
            for t in list(obj.parameters()) + list(obj.buffers()):
                add(t)
                add(t.grad)
        elif isinstance(obj, torch.optim.Optimizer):
            for state in obj.state.values():
                for t in state.values():
                    add(t)
        else:
            for t in vars(obj).values():
                add(t)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--target", choices=["anchored", "global"], default="anchored")
    ap.add_argument("--aggregate", choices=["sequence", "token"], default="sequence")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    policy = make_model(args.vocab, seed=0)
    reference = make_model(args.vocab, seed=0).eval().requires_grad_(False)
    policy.train()
    optim = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    ids, attn, labels = make_batch(args.vocab, args.pairs, args.seq, prompt=64, seed=1)
    subpref = torch.arange(args.pairs) % 2

    geometry = TokenGeometry.from_embeddings(policy.get_input_embeddings().weight, projection="pca")
    targets = make_targets(args.vocab, seed=2)
    plot_cfg = PlotConfig(target=args.target, aggregate=args.aggregate)
    vanilla = build_objective(LossConfig(method="dpo", alpha=0.0, plot=plot_cfg))
    with_plot = build_objective(
        LossConfig(method="dpo", alpha=args.alpha, plot=plot_cfg), geometry, targets
    )

    def step(objective) -> dict:
        logits = policy(input_ids=ids, attention_mask=attn).logits
        with torch.no_grad():
            ref_logits = reference(input_ids=ids, attention_mask=attn).logits
        if objective.needs_reference_logits:
            out = objective(logits, labels, 2, ref_logits=ref_logits, subpreference_ids=subpref)
        else:
            ref_logps = sequence_logprobs(ref_logits, labels).sums
            out = objective(logits, labels, 2, ref_logps=ref_logps, subpreference_ids=subpref)
        del ref_logits, logits
        out.loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        return {"loss": float(out.loss.detach()), "plot": float(out.plot)}

    variants = {"dpo": vanilla, "dpo+plot": with_plot}
    for _ in range(args.warmup):  # also allocates the AdamW state
        for obj in variants.values():
            step(obj)

    # ---- memory: one profiled step per variant, interleaved
    static = {
        "dpo": tensor_bytes(policy, reference, optim),
        "dpo+plot": tensor_bytes(policy, reference, optim, geometry, targets),
    }
    step_peak = {}
    for name in ["dpo", "dpo+plot", "dpo", "dpo+plot"]:
        # Bound now (default argument): the profiler calls it inside this iteration only.
        peak = peak_live_bytes(lambda obj=variants[name]: step(obj))
        step_peak[name] = max(step_peak.get(name, 0), peak)

    # ---- time: ABBA-interleaved steps
    times = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    order = list(variants)
    for i in range(args.steps):
        for name in order if i % 2 == 0 else order[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            info = step(variants[name])
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            if name == "dpo+plot":
                plot_value = info["plot"]
        print(
            f"round {i + 1}/{args.steps}: dpo {times['dpo'][-1]:.3f}s  dpo+plot {times['dpo+plot'][-1]:.3f}s"
            f"  (PLOT term {plot_value:.4g})",
            flush=True,
        )

    # ---- the loss alone (objective forward + its backward into the logits), where PLOT's
    # whole cost lives: milliseconds, so many interleaved repeats resolve it on a noisy machine
    with torch.no_grad():
        fixed_logits = policy(input_ids=ids, attention_mask=attn).logits
        fixed_ref = reference(input_ids=ids, attention_mask=attn).logits

    def loss_only(objective) -> float:
        leaf = fixed_logits.detach().requires_grad_()
        t0 = time.perf_counter()
        if objective.needs_reference_logits:
            out = objective(leaf, labels, 2, ref_logits=fixed_ref, subpreference_ids=subpref)
        else:
            ref_logps = sequence_logprobs(fixed_ref, labels).sums
            out = objective(leaf, labels, 2, ref_logps=ref_logps, subpreference_ids=subpref)
        out.loss.backward()
        return time.perf_counter() - t0

    loss_times = {name: [] for name in variants}
    for i in range(4 * args.steps):
        for name in order if i % 2 == 0 else order[::-1]:
            loss_times[name].append(loss_only(variants[name]))
    # The fastest repeat is the least disturbed by other processes (noise only adds time).
    loss_best = {k: min(v) for k, v in loss_times.items()}
    loss_med = {k: statistics.median(v) for k, v in loss_times.items()}
    extra = loss_best["dpo+plot"] - loss_best["dpo"]

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    paired = statistics.median(b / a for a, b in zip(times["dpo"], times["dpo+plot"], strict=True))
    total = {k: static[k] + step_peak[k] for k in variants}
    mib = 2**20
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, vocab {args.vocab}, "
        f"{args.pairs} pairs x {args.seq} tokens, PLOT: {plot_cfg.target}/{plot_cfg.aggregate}/"
        f"{plot_cfg.divergence}/{plot_cfg.projection}, alpha {args.alpha}"
    )
    for k in variants:
        print(
            f"{k:9s} median step {med[k]:.3f}s | static {static[k] / mib:.1f} MiB + step peak "
            f"{step_peak[k] / mib:.1f} MiB = {total[k] / mib:.1f} MiB"
        )
    print(
        f"loss alone (objective + its backward), fastest of {len(loss_times['dpo'])}: dpo "
        f"{loss_best['dpo'] * 1e3:.1f} ms, dpo+plot {loss_best['dpo+plot'] * 1e3:.1f} ms "
        f"(medians {loss_med['dpo'] * 1e3:.1f} / {loss_med['dpo+plot'] * 1e3:.1f} ms): PLOT adds "
        f"{extra * 1e3:.1f} ms = {100 * extra / min(times['dpo']):.2f}% of the fastest DPO step"
    )
    result = {
        "benchmark": "plot_overhead",
        "time_ratio": round(med["dpo+plot"] / med["dpo"], 4),
        "time_ratio_paired_median": round(paired, 4),
        "time_ratio_min": round(min(times["dpo+plot"]) / min(times["dpo"]), 4),
        "cpu_time_ratio": round(med_cpu["dpo+plot"] / med_cpu["dpo"], 4),
        "loss_overhead_ms": round(extra * 1e3, 2),
        "time_ratio_from_loss_overhead": round(1 + extra / min(times["dpo"]), 4),
        "memory_ratio": round(total["dpo+plot"] / total["dpo"], 4),
        "step_memory_ratio": round(step_peak["dpo+plot"] / step_peak["dpo"], 4),
        "dpo_step_s": round(med["dpo"], 4),
        "dpo_plot_step_s": round(med["dpo+plot"], 4),
        "dpo_peak_mib": round(total["dpo"] / mib, 1),
        "dpo_plot_peak_mib": round(total["dpo+plot"] / mib, 1),
        "target": plot_cfg.target,
        "aggregate": plot_cfg.aggregate,
        "steps": args.steps,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
