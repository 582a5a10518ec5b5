"""GCG on a Ray actor pool: 2 actors (1 thread each) vs the best single actor (both cores).

The same work in one run: the tiny model of the synthetic benchmark (warmed up), the first
``--behaviors`` held-out behaviours, GCG with ``--steps`` steps and ``--search-width``
candidates per step, early stopping off (``early_stop_loss`` 0) so that every behaviour runs
every step. Each configuration is the Ray Data actor pool that ``plot-ray eval`` runs
(:class:`plot_ray.eval.attack_stage.AttackActor`), timed from the dataset's start to its last
row (actor start and model load included, as a user sees them).

Prints one line per configuration, then one JSON line: ``pool_speedup`` (1-actor wall time over
2-actor wall time) and ``gcg_steps_per_s`` (behaviour-steps per second of the 2-actor pool).

    python benchmarks/attack_pool.py [--behaviors 6] [--steps 10] [--search-width 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--behaviors", type=int, default=6)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--search-width", type=int, default=64)
    args = ap.parse_args()

    from plot_ray.cluster import init_ray, use_small_machine_env

    use_small_machine_env()
    import ray

    from plot_ray.config import load_config
    from plot_ray.eval.attack_stage import AttackActor
    from plot_ray.eval.attacks import get_attack
    from plot_ray.eval.engines import EngineSettings
    from plot_ray.eval.judges import refusal_judge
    from plot_ray.eval.pipeline import actor_pool_kwargs
    from plot_ray.eval.tasks import load_behaviors
    from plot_ray.models.tiny import build_from_corpus
    from plot_ray.synth import generate_benchmark

    root = Path(tempfile.mkdtemp(prefix="plot-ray-attack-bench-"))
    generate_benchmark(root / "data", seed=0, scale=0.2)
    build_from_corpus(
        root / "data", root / "model", vocab_size=1024, warmup_steps=200, progress=False
    )
    behaviors = load_behaviors(root / "data" / "eval" / "behaviors.jsonl")[: args.behaviors]
    params = {
        "num_steps": args.steps,
        "search_width": args.search_width,
        "early_stop_loss": 0.0,
        "snapshot_every": args.steps,
    }
    init_ray(num_cpus=2, object_store_memory_mb=300, quiet=True)
    walls = {}
    for actors in (1, 2):
        ev = load_config(overrides={"eval.generation.num_engines": actors}).eval
        s = EngineSettings.resolve(ev, model=str(root / "model"))
        kwargs = {
            "model": str(root / "model"),
            "attacks": {"gcg": (get_attack("gcg"), params)},
            "threads": s.threads_per_engine,
            "dtype": "float32",
            "seed": 0,
            "refusal": refusal_judge("synthetic"),
        }
        t = time.perf_counter()
        ds = ray.data.from_items([{**b, "attack": "gcg"} for b in behaviors])
        rows = ds.map_batches(AttackActor, **actor_pool_kwargs(kwargs, s, 1)).take_all()
        walls[actors] = time.perf_counter() - t
        steps = sum(r["steps"] for row in rows for r in json.loads(row["results"]))
        print(
            f"{actors} actor(s) x {s.threads_per_engine} thread(s): {len(rows)} behaviours, "
            f"{steps} GCG steps in {walls[actors]:.1f}s",
            flush=True,
        )
    print(
        json.dumps(
            {
                "benchmark": "attack_pool",
                "pool_speedup": round(walls[1] / walls[2], 3),
                "gcg_steps_per_s": round(args.behaviors * args.steps / walls[2], 3),
                "behaviors": args.behaviors,
                "steps": args.steps,
                "search_width": args.search_width,
            }
        )
    )


if __name__ == "__main__":
    main()
