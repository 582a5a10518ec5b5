"""Data-parallel scaling of the distributed train step on a 2-core machine: response tokens/s of
2 Ray Train workers (one thread each) against the best single worker, one worker with both
cores (``train.threads_per_worker=2``), as ``data_pipeline`` compares against the best single
process. Also reported, for continuity with earlier figures, against one worker with one
thread, which on 2 cores mostly measures the second core rather than Ray Train's scaling.

All runs: DPO + PLOT (alpha 0.5), ZeRO-2, CPU, gloo, fp32, the same prepared data, in this
process; workers hold 0.75 of a CPU each (1.5 for the two-thread worker), leaving Ray Data's
reads the rest.

- ``2w1t``: 2 workers x 1 thread, ``--micro-batch`` pairs per worker per step;
- ``1w2t``: 1 worker x 2 threads with the same pairs per optimizer step (2 x ``--micro-batch``
  in one micro-batch): the same training run, on one worker;
- ``1w1t``: 1 worker x 1 thread, ``--micro-batch`` pairs per step (weak scaling: per-worker
  work equal to one of the two workers').

Tokens are response tokens (chosen + rejected, eos included; no prompt, no padding), as the
train loop counts them; each run's figure is the median ``tokens_per_s`` of its logged windows
of ``--log-every`` steps after the first (set-up and warm-up left out), then the median over
``--repeats`` repetitions run interleaved (the order reversed every other repetition).

    python benchmarks/train_scaling.py [--steps 40] [--micro-batch 8] [--repeats 2]

Last line: {"benchmark": "train_scaling", "speedup_vs_1w2t": ..., "speedup_vs_1w1t": ..., ...}.
Target: speedup_vs_1w1t >= 1.6 (as before). speedup_vs_1w2t has no target yet; above 1 means
two workers beat one worker using both cores for the same training run.
"""

from __future__ import annotations

import argparse
import json
import statistics

from _train_common import median_after_warmup, prepare_workspace, train_metrics

# name: (workers, threads per worker, CPUs per worker, micro-batch as a multiple of --micro-batch)
CONFIGS = {
    "1w1t": (1, 1, 0.75, 1),
    "1w2t": (1, 2, 1.5, 2),
    "2w1t": (2, 1, 0.75, 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--micro-batch", type=int, default=8, help="pairs per worker per step")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    ws = prepare_workspace()
    common = {
        "train.max_steps": args.steps,
        "train.log_every": args.log_every,
        "loss.method": "dpo",
        "loss.alpha": 0.5,
        "deepspeed.zero_stage": 2,
    }
    tps: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for rep in range(args.repeats):
        names = list(CONFIGS) if rep % 2 == 0 else list(reversed(CONFIGS))
        for name in names:
            workers, threads, cpus, batch_factor = CONFIGS[name]
            metrics = train_metrics(
                ws,
                f"scaling-{name}-r{rep}",
                **common,
                **{
                    "train.num_workers": workers,
                    "train.threads_per_worker": threads,
                    "train.cpus_per_worker": cpus,
                    "train.micro_batch_size": args.micro_batch * batch_factor,
                },
            )
            tps[name].append(median_after_warmup(metrics, "tokens_per_s"))
            print(
                f"repeat {rep}: {name} ({workers} worker(s) x {threads} thread(s), "
                f"{args.micro_batch * batch_factor} pairs per worker per step): "
                f"{tps[name][-1]:,.0f} response tokens/s"
            )
    med = {name: statistics.median(values) for name, values in tps.items()}
    vs_1w2t, vs_1w1t = med["2w1t"] / med["1w2t"], med["2w1t"] / med["1w1t"]
    print(f"2 workers x 1 thread vs 1 worker x 2 threads (same pairs per step): {vs_1w2t:.2f}x")
    print(
        f"2 workers x 1 thread vs 1 worker x 1 thread (weak scaling): {vs_1w1t:.2f}x "
        "(target >= 1.6)"
    )
    print(
        json.dumps(
            {
                "benchmark": "train_scaling",
                "speedup_vs_1w2t": round(vs_1w2t, 3),
                "speedup_vs_1w1t": round(vs_1w1t, 3),
                **{f"tokens_per_s_{name}": round(v, 1) for name, v in med.items()},
                "micro_batch": args.micro_batch,
                "steps": args.steps,
            }
        )
    )


if __name__ == "__main__":
    main()
