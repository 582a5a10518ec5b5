"""What does the coding sandbox cost per program? Namespaces against bare process isolation.

Runs a trivial program (``pass``) and a small HumanEval-style program (a function and three
asserts) many times, sequentially and on ``max(2, default_workers())`` threads, in ``namespaces``
isolation (user, mount, network and pid namespaces, a read-only root, a tmpfs) and in
``process`` isolation (limits only), alternating the two (ABBA) so that drift on a shared
machine hits both. Reports milliseconds per program (median of rounds) and the ratios.

Usage: python benchmarks/sandbox_overhead.py [--programs 20] [--rounds 4]
Last line: {"benchmark": "sandbox_overhead", "sequential_ratio": ..., "pooled_ratio": ...}
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from plot_ray.eval.sandbox.execute import default_workers, run_programs

PROGRAM = """
def add(a, b):
    return a + b

assert add(1, 2) == 3
assert add(-1, 1) == 0
assert add(10, 5) == 15
"""


def per_program_ms(isolation: str, sources: list[str], workers: int) -> float:
    start = time.perf_counter()
    results = run_programs(sources, isolation=isolation, workers=workers)
    elapsed = time.perf_counter() - start
    assert all(r.status == "passed" for r in results), [r.detail for r in results]
    return 1000 * elapsed / len(sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    sources = ["pass", PROGRAM] * (args.programs // 2)
    pooled = max(2, default_workers())  # a pool even on a 2-CPU machine
    times: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        order = ["namespaces", "process"] if round_ % 2 == 0 else ["process", "namespaces"]
        for isolation in order:
            for workers in (1, pooled):
                ms = per_program_ms(isolation, sources, workers)
                times.setdefault((isolation, workers), []).append(ms)
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"{'':12s} {'sequential ms':>14s} {f'{pooled} workers ms':>14s}")
    for isolation in ("namespaces", "process"):
        print(f"{isolation:12s} {median[isolation, 1]:14.1f} {median[isolation, pooled]:14.1f}")
    seq = median["namespaces", 1] / median["process", 1]
    pool = median["namespaces", pooled] / median["process", pooled]
    print(f"{'ratio':12s} {seq:14.2f} {pool:14.2f}")
    summary = {"benchmark": "sandbox_overhead", "sequential_ratio": round(seq, 3)}
    print(json.dumps({**summary, "pooled_ratio": round(pool, 3), "workers": pooled}))


if __name__ == "__main__":
    main()
