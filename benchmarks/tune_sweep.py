"""A Ray Tune sweep of 4 trials (loss.alpha {0, 0.5} x loss.method {dpo, sft}) on the tiny
model and synthetic data, run two ways in one process on a 2-CPU local Ray instance:

- ``one_at_a_time``: ``tune.max_concurrent_trials=1``, each trial's Ray Train run has the
  whole machine: 1 worker x 2 threads (``train.threads_per_worker=2``), 1.7 CPUs reserved;
- ``two_at_a_time``: ``tune.max_concurrent_trials=2``, each trial has half: 1 worker x
  1 thread, 0.7 CPUs reserved.

(Each run also reserves 0.25 CPU for Ray Data's reads and 0.01 for the trial itself.) The
two-at-a-time sweep runs first, so that any first-use cost (imports, caches) counts against
it rather than for it.

Figures: ``concurrency_speedup`` = wall time one at a time / two at a time (goal >= 1.5);
``overhead_fraction`` = (wall time − the sum of the trials' training time) / wall time of the
one-at-a-time sweep, where a trial's training time is its whole ``run_training`` call (data
set-up, Ray Train's worker start, DeepSpeed, the steps, the final save), so what remains is
Ray Tune's own cost: starting trial actors, scheduling, results, the report. The same figure
for the two-at-a-time sweep is also printed; there the trials overlap, so it can be negative.
Ray Train reports use ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2`` (see ``_train_common``).

    python benchmarks/tune_sweep.py [--steps 10] [--micro-batch 4]

Last line: {"benchmark": "tune_sweep", "concurrency_speedup": ..., "overhead_fraction": ...}.
"""

from __future__ import annotations

import argparse
import json
import time

from _train_common import prepare_workspace

# name: (tune.max_concurrent_trials, train.threads_per_worker, train.cpus_per_worker)
MODES = {
    "two_at_a_time": (2, 1, 0.7),
    "one_at_a_time": (1, 2, 1.7),
}


def run_mode(ws: dict, name: str, args: argparse.Namespace) -> dict:
    from plot_ray.config import apply_overrides, validate_config
    from plot_ray.tune import run_sweep

    concurrent, threads, cpus = MODES[name]
    base = apply_overrides(
        {},
        {
            **ws["overrides"],
            "train.num_workers": 1,
            "train.threads_per_worker": threads,
            "train.cpus_per_worker": cpus,
            "train.max_steps": args.steps,
            "train.micro_batch_size": args.micro_batch,
            "train.log_every": max(1, args.steps // 2),
            "train.checkpoint_every": 10_000,
            "train.save_hf_model": False,
            "train.learning_rate": 1e-4,
            "loss.plot.chunk_size": 256,
            "tune.space": {
                "loss.alpha": {"grid": [0.0, 0.5]},
                "loss.method": {"grid": ["dpo", "sft"]},
            },
            # the prepared data has no validation split: a training metric
            "tune.metric": "loss/total",
            "tune.mode": "min",
            "tune.max_concurrent_trials": concurrent,
            "tune.output_dir": str(ws["root"] / "tune"),
            "tune.name": name,
        },
    )
    started = time.perf_counter()
    result = run_sweep(validate_config(base), base)
    wall = time.perf_counter() - started
    bad = [r for r in result.trials if r["status"] != "ok"]
    if bad:
        raise RuntimeError(f"{name}: {len(bad)} trial(s) did not finish: {bad}")
    train = [r["metric/train_seconds"] for r in result.trials]
    print(
        f"{name}: {len(train)} trials in {wall:.1f} s wall; training time per trial "
        f"{', '.join(f'{t:.1f}' for t in train)} s (sum {sum(train):.1f} s)"
    )
    return {"wall": wall, "train_sum": sum(train), "train_mean": sum(train) / len(train)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--micro-batch", type=int, default=4, help="pairs per step")
    args = parser.parse_args()

    ws = prepare_workspace(scale=0.1, hidden_size=128, layers=2)
    runs = {name: run_mode(ws, name, args) for name in MODES}
    one, two = runs["one_at_a_time"], runs["two_at_a_time"]
    speedup = one["wall"] / two["wall"]
    overhead = (one["wall"] - one["train_sum"]) / one["wall"]
    overhead_two = (two["wall"] - two["train_sum"]) / two["wall"]
    print(f"two trials at a time vs one: {speedup:.2f}x faster (goal >= 1.5)")
    print(f"Ray Tune's share of the one-at-a-time sweep's wall time: {overhead:.1%}")
    print(
        json.dumps(
            {
                "benchmark": "tune_sweep",
                "concurrency_speedup": round(speedup, 3),
                "overhead_fraction": round(overhead, 3),
                "overhead_fraction_two_at_a_time": round(overhead_two, 3),
                "wall_s_one_at_a_time": round(one["wall"], 1),
                "wall_s_two_at_a_time": round(two["wall"], 1),
                "trial_train_s_one_at_a_time": round(one["train_mean"], 1),
                "trial_train_s_two_at_a_time": round(two["train_mean"], 1),
                "trials": 4,
                "steps": args.steps,
            }
        )
    )


if __name__ == "__main__":
    main()
