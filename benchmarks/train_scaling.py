"""Data-parallel scaling of the distributed train step: tokens/s with 2 Ray Train workers vs 1
(ZeRO-2, CPU, gloo), each worker with 0.75 of a CPU (Ray Data reads in the rest) and one thread — weak scaling, the same per-worker
batch. Both runs happen in this process, one after the other, on the same prepared data.

    python benchmarks/train_scaling.py [--steps 30]

Last line: {"benchmark": "train_scaling", "speedup": ..., ...}. Target: speedup >= 1.6.
"""

from __future__ import annotations

import argparse
import json

from _train_common import median_after_warmup, prepare_workspace, train_metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--micro-batch", type=int, default=8, help="pairs per worker per step")
    args = parser.parse_args()

    ws = prepare_workspace()
    common = {"train.max_steps": args.steps, "train.log_every": args.log_every,
              "train.micro_batch_size": args.micro_batch, "loss.method": "dpo", "loss.alpha": 0.5,
              "deepspeed.zero_stage": 2, "train.cpus_per_worker": 0.75}
    tps = {}
    for workers in (1, 2):
        metrics = train_metrics(ws, f"scaling-{workers}", **common, **{"train.num_workers": workers})
        tps[workers] = median_after_warmup(metrics, "tokens_per_s")
        print(f"{workers} worker(s): {tps[workers]:,.0f} response tokens/s (median of "
              f"{len(metrics) - 1} windows of {args.log_every} steps)")
    speedup = tps[2] / tps[1]
    print(f"speedup 2 vs 1 workers: {speedup:.2f}x (target >= 1.6)")
    print(json.dumps({"benchmark": "train_scaling", "speedup": round(speedup, 3),
                      "tokens_per_s_1": round(tps[1], 1), "tokens_per_s_2": round(tps[2], 1)}))


if __name__ == "__main__":
    main()
