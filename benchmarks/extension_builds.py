"""Benchmark ``extension_builds``: what a Ray Train worker on CPU pays to load DeepSpeed's
shared-memory allreduce op when the process before it ran with another ninja on its PATH, with
torch's defaults against plot-ray's ``isolate_extension_builds``.

Every Ray Train worker on CPU loads that op when its process group starts, compiling it on
first use (~30 s on 2 cores) with whichever ``ninja`` comes first on ``PATH``. The test suite's
Ray workers found the system's ninja (Debian's 1.11), a local cluster's job workers the one pip
installed with DeepSpeed (1.13, first on their PATH); ninja starts over on the other version's
build log, so each switch compiled the op again. Here the two kinds of process alternate, each
a fresh process (as each Ray worker is) with its own cache root (``XDG_CACHE_HOME``) so that
nothing outside is touched: the first builds the op, the ``--switches`` after it only load it.

    python benchmarks/extension_builds.py [--switches 1]

Last line: {"benchmark": "extension_builds", "ratio": ...}: seconds of the loads after a switch
with plot-ray's set-up over those with torch's defaults. Target: <= 0.2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = """
import os, sys, time
sys.path.insert(0, {repo!r})
os.environ["DS_ACCELERATOR"] = "cpu"
if {isolate}:
    from plot_ray.train.deepspeed_config import isolate_extension_builds
    isolate_extension_builds()
from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder
started = time.perf_counter()
ShareMemCommBuilder().jit_load(verbose=False)
print("seconds", time.perf_counter() - started, flush=True)
"""


def load(cache: Path, path: str, isolate: bool) -> float:
    """Seconds to load (or build) the op in a fresh process with this PATH and cache root."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PATH": path}
    env.pop("TORCH_EXTENSIONS_DIR", None)
    script = LOAD.format(repo=str(Path(__file__).resolve().parents[1]), isolate=isolate)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.split("seconds", 1)[1])


def main() -> None:
    import ninja

    parser = argparse.ArgumentParser()
    parser.add_argument("--switches", type=int, default=1)
    args = parser.parse_args()
    env_bin = ninja.BIN_DIR  # the ninja pip installed with DeepSpeed
    bare = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != env_bin]
    system_ninja = shutil.which("ninja", path=os.pathsep.join(bare))
    if system_ninja is None:
        print(json.dumps({"benchmark": "extension_builds", "skipped": "no system ninja"}))
        return
    paths = [os.pathsep.join(bare), os.pathsep.join([env_bin, *bare])]  # suite, job workers
    started = time.perf_counter()
    times: dict[str, list[float]] = {}
    root = Path(tempfile.mkdtemp(prefix="plot-ray-ext-"))
    try:
        for name, isolate in (("torch defaults", False), ("plot-ray", True)):
            cache = root / name.replace(" ", "-")
            times[name] = [load(cache, paths[i % 2], isolate) for i in range(args.switches + 1)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"system ninja {system_ninja}, environment's ninja {env_bin}/ninja")
    print(f"{'process (ninja first on PATH)':32s} {'torch defaults s':>17s} {'plot-ray s':>11s}")
    for i in range(args.switches + 1):
        who = ("suite (system)", "job (environment)")[i % 2]
        label = f"{i + 1}. {who}" + (" first build" if i == 0 else "")
        print(f"{label:32s} {times['torch defaults'][i]:17.2f} {times['plot-ray'][i]:11.2f}")
    default_s, ours_s = sum(times["torch defaults"][1:]), sum(times["plot-ray"][1:])
    print(
        json.dumps(
            {
                "benchmark": "extension_builds",
                "after_switch_default_s": round(default_s, 2),
                "after_switch_plot_ray_s": round(ours_s, 2),
                "ratio": round(ours_s / default_s, 3),
                "wall_s": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
