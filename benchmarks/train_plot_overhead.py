"""Cost of the PLOT term in the distributed train step: step time with alpha > 0 vs alpha = 0
(DPO, ZeRO-2, 2 CPU workers), runs interleaved in one process on the same prepared data.

    python benchmarks/train_plot_overhead.py [--steps 30] [--repeats 2]

Last line: {"benchmark": "train_plot_overhead", "time_ratio": ...}. Target: <= 1.03.
"""

from __future__ import annotations

import argparse
import json
import statistics

from _train_common import median_after_warmup, prepare_workspace, train_metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=5)
    args = parser.parse_args()

    ws = prepare_workspace()
    common = {
        "train.max_steps": args.steps,
        "train.log_every": args.log_every,
        "train.micro_batch_size": 4,
        "loss.method": "dpo",
        "train.num_workers": 2,
        "train.cpus_per_worker": 0.75,
        "deepspeed.zero_stage": 2,
    }
    # tokens/s over identical batches is inverse step time; alternate the two to cancel drift.
    tps: dict[float, list[float]] = {0.0: [], 0.5: []}
    for rep in range(args.repeats):
        for alpha in (0.0, 0.5) if rep % 2 == 0 else (0.5, 0.0):
            metrics = train_metrics(
                ws, f"overhead-a{alpha}-r{rep}", **common, **{"loss.alpha": alpha}
            )
            tps[alpha].append(median_after_warmup(metrics, "tokens_per_s"))
            print(f"alpha={alpha}: {tps[alpha][-1]:,.0f} tokens/s")
    ratio = statistics.median(tps[0.0]) / statistics.median(tps[0.5])
    print(f"step time, DPO+PLOT over DPO: {ratio:.3f} (target <= 1.03)")
    print(
        json.dumps(
            {
                "benchmark": "train_plot_overhead",
                "time_ratio": round(ratio, 4),
                "tokens_per_s_dpo": round(statistics.median(tps[0.0]), 1),
                "tokens_per_s_plot": round(statistics.median(tps[0.5]), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
