"""Benchmark ``train_log_overhead``: what logging every step costs the train loop.

The same short run, 1 Ray Train worker with both cores (``train.threads_per_worker=2``), DPO +
PLOT (alpha 0.5), ZeRO-2, fp32, CPU, on the same prepared data, with ``train.log_every=1``
against ``train.log_every=50``; the two alternate (ABBA over ``--repeats``) in one process.
Logging (metrics reduced over workers, ``metrics.jsonl``, TensorBoard, whatever reaches Ray
Train) should stay off the hot path: this guards against it coming back.

Tokens are response tokens (chosen + rejected, eos included; no prompt, no padding), counted
from the prepared data: one worker reads the rows in shard order, ``--micro-batch`` pairs a
step, so every step's tokens are known, and the time of each logged window is its tokens over
its ``tokens_per_s`` (the train loop's own count of the same tokens). A run's figure is total
tokens over total time of the steps after the first ``--skip`` (set-up and warm-up left out;
one ``log_every=50`` window by default), the same steps for both settings, so one slow step
weighs the same in both; then the median over repeats.

Ray runs as a user's run has it: ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` is NOT set (Ray's
default, 2 s; a value you export yourself is kept). ``_train_common`` applies
``use_small_machine_env()``, which sets it to 0.2 s for tests; this benchmark removes it before
Ray starts, because every ``ray.train.report()`` after the first waits about that long and a
loop that reports every logged step pays it per step.

    python benchmarks/train_log_overhead.py [--steps 100] [--skip 50] [--repeats 2]

Last line: {"benchmark": "train_log_overhead", "ratio": ...}: tokens/s with log_every=1 over
tokens/s with log_every=50. Target: >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import statistics

from _train_common import (
    health_check_setting,
    prepare_workspace,
    prepared_rows,
    rate_after,
    step_tokens,
    train_metrics,
)

SPARSE = 50  # the log_every that logging every step is compared with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--skip", type=int, default=SPARSE, help="warm-up steps left out")
    parser.add_argument("--micro-batch", type=int, default=4, help="pairs per step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--sparse-every", type=int, default=SPARSE, help="the log_every compared with 1"
    )
    args = parser.parse_args()
    if args.skip % args.sparse_every or args.steps % args.sparse_every or args.steps <= args.skip:
        parser.error(
            "--skip and --steps must be multiples of --sparse-every, with steps > skip, "
            "so that both settings are timed over the same steps"
        )

    ws = prepare_workspace(ray_default_health_check=True)
    print(health_check_setting())
    tokens = step_tokens(
        prepared_rows(ws), args.micro_batch, args.steps, ws["overrides"]["data.max_length"]
    )
    common = {
        "train.max_steps": args.steps,
        "train.micro_batch_size": args.micro_batch,
        "train.num_workers": 1,
        "train.threads_per_worker": 2,
        "train.cpus_per_worker": 1.5,
        "loss.method": "dpo",
        "loss.alpha": 0.5,
        "deepspeed.zero_stage": 2,
    }
    tps: dict[int, list[float]] = {1: [], args.sparse_every: []}
    for rep in range(args.repeats):
        for every in (1, args.sparse_every) if rep % 2 == 0 else (args.sparse_every, 1):
            metrics = train_metrics(
                ws, f"log-every-{every}-r{rep}", **common, **{"train.log_every": every}
            )
            tps[every].append(rate_after(metrics, tokens, args.skip))
            print(
                f"repeat {rep}: log_every={every}: {tps[every][-1]:,.0f} response tokens/s "
                f"(steps {args.skip + 1}-{args.steps})"
            )
    dense, sparse = statistics.median(tps[1]), statistics.median(tps[args.sparse_every])
    ratio = dense / sparse
    print(f"tokens/s, log_every=1 over log_every={args.sparse_every}: {ratio:.3f} (target >= 0.95)")
    print(
        json.dumps(
            {
                "benchmark": "train_log_overhead",
                "ratio": round(ratio, 4),
                "tokens_per_s_log_every_1": round(dense, 1),
                f"tokens_per_s_log_every_{args.sparse_every}": round(sparse, 1),
                "steps": args.steps,
                "skip": args.skip,
            }
        )
    )


if __name__ == "__main__":
    main()
