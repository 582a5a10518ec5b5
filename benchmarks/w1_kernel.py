"""Batched 1-D W1 on a precomputed TokenGeometry vs POT's ``ot.wasserstein_1d``.

Inputs: ``B = 64`` pairs of distributions over ``V = 32000`` tokens (softmax of Gaussian
logits) and 1-D token coordinates (the PCA projection of a random ``32000 x 64`` embedding
matrix). Both sides compute the same 64 exact distances in float64:

- ours: :meth:`TokenGeometry.distance` (sort order and gaps computed once, at build time, as in
  training; per call a gather, a cumulative sum and a weighted L1);
- POT: ``ot.wasserstein_1d(x, x, p.T, q.T)``, batched over columns, given the same coordinates
  (it sorts and builds quantile functions per call); the faster of its NumPy and torch
  backends is the baseline.

The candidates are timed alternately, ``--repeats`` samples each (a sample of ours averages 20
calls); the ratio of the medians is the speedup. Also printed: our :func:`wasserstein_1d`,
which sorts the coordinates on every call like POT does.
Usage: python benchmarks/w1_kernel.py [--repeats 7]
Last line: {"benchmark": "w1_kernel", "speedup": ..., "max_abs_diff": ...}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import ot
import torch

from plot_ray.losses import TokenGeometry, wasserstein_1d
from plot_ray.losses.ot import principal_direction


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(args.vocab, args.dim, generator=gen, dtype=torch.float64)
    coords = emb @ principal_direction(emb)  # (V,) the same coordinates for both sides
    p = torch.softmax(
        torch.randn(args.batch, args.vocab, generator=gen, dtype=torch.float64) * 2, -1
    )
    q = torch.softmax(
        torch.randn(args.batch, args.vocab, generator=gen, dtype=torch.float64) * 2, -1
    )

    t_build, geometry = timed(lambda: TokenGeometry.from_coordinates(coords))

    x_np = np.ascontiguousarray(np.broadcast_to(coords.numpy()[:, None], (args.vocab, args.batch)))
    p_np, q_np = np.ascontiguousarray(p.numpy().T), np.ascontiguousarray(q.numpy().T)
    x_t = coords[:, None].expand(args.vocab, args.batch).contiguous()
    p_t, q_t = p.T.contiguous(), q.T.contiguous()

    candidates = {
        "ours": lambda: geometry.value(p, q),
        "ours_unsorted_coords": lambda: wasserstein_1d(p, q, coords),
        "pot_numpy": lambda: torch.from_numpy(
            np.asarray(ot.wasserstein_1d(x_np, x_np, p_np, q_np))
        ),
        "pot_torch": lambda: ot.wasserstein_1d(x_t, x_t, p_t, q_t),
    }
    results = {name: fn() for name, fn in candidates.items()}  # warm-up and values
    # Our calls take milliseconds, POT's about a second: repeat ours within a sample so that
    # each sample spans a comparable stretch of (shared, noisy) machine time.
    inner = {"ours": 20, "ours_unsorted_coords": 20, "pot_numpy": 1, "pot_torch": 1}
    times = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / inner[name])
    med = {name: statistics.median(v) for name, v in times.items()}

    pot_best = min(("pot_numpy", "pot_torch"), key=med.get)
    diff = float((results["ours"] - results[pot_best]).abs().max())
    diff_all = max(float((results[k] - results["pot_numpy"]).abs().max()) for k in results)
    print(
        f"B={args.batch} V={args.vocab} float64, torch threads {torch.get_num_threads()}; "
        f"geometry build (once) {t_build * 1e3:.1f} ms"
    )
    for name in candidates:
        print(f"  {name:22s} median {med[name] * 1e3:9.2f} ms")
    print(
        f"  max |ours - POT| = {diff:.3g} (largest pairwise difference over all four: {diff_all:.3g}); "
        f"W1 values ~{float(results['ours'].mean()):.4g}"
    )
    result = {
        "benchmark": "w1_kernel",
        "speedup": round(med[pot_best] / med["ours"], 2),
        "max_abs_diff": diff,
        "ours_ms": round(med["ours"] * 1e3, 3),
        "pot_ms": round(med[pot_best] * 1e3, 3),
        "pot_backend": pot_best.removeprefix("pot_"),
        "speedup_unsorted_coords": round(med[pot_best] / med["ours_unsorted_coords"], 2),
        "batch": args.batch,
        "vocab": args.vocab,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
