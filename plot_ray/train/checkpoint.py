"""What a plot-ray training checkpoint holds, and how it is checked, written and read.

A checkpoint folder, ``<storage_path>/<run_name>/checkpoint_<step>`` (one per reported step),
is written in place by every worker, straight into Ray Train's storage, and then reported
without a copy (``CheckpointUploadMode.NO_UPLOAD``). It contains

    deepspeed/…, latest         DeepSpeed's own state: weights, optimizer partitions, scheduler
                                (under ZeRO each worker writes its own partitions)
    rng_rank{r}.pt              each worker's RNG states (python, numpy, torch)
    hf_model/                   the final checkpoint only: consolidated safetensors + tokenizer
    plot_ray_state.json         step, micro-batches consumed, world size, ZeRO stage: written
                                by rank 0 last, once every worker's files are complete

A folder without ``plot_ray_state.json`` is a write that was cut short and never counts as a
checkpoint. Everything plot-ray reads back itself goes through
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "TrainState",
    "checkpoint_dir_name",
    "DEEPSPEED_TAG",
    "STATE_FILE",
    "HF_MODEL_DIR",
    "RAY_SNAPSHOT",
    "ATTEMPTS_FILE",
    "read_state",
    "write_state",
    "save_rng",
    "load_rng",
    "find_resumable_run",
    "remove_orphaned_checkpoints",
]

DEEPSPEED_TAG = "deepspeed"
STATE_FILE = "plot_ray_state.json"
HF_MODEL_DIR = "hf_model"
CHECKPOINT_DIR_RE = re.compile(r"^checkpoint_\d{6,}$")
# Ray Train's record of the checkpoints it registered for a run.
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"
# In the run's log folder: one JSON line per start of the worker group (the first start, each
# restart after a failure, each --resume) with the step and checkpoint it started from.
ATTEMPTS_FILE = "attempts.jsonl"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: empty, incomplete or from another setup."""


@dataclass
class TrainState:
    step: int  # optimizer steps done
    consumed_micro_batches: int  # per worker, across epochs
    world_size: int
    zero_stage: int
    nan_skips: int = 0


def checkpoint_dir_name(step: int) -> str:
    """The checkpoint folder of optimizer step ``step`` (matches ``CHECKPOINT_DIR_RE``)."""
    return f"checkpoint_{step:06d}"


def write_state(directory: Path, state: TrainState) -> None:
    """Mark ``directory`` complete: write the state file under another name, then rename it, so
    that a worker killed mid-write never leaves a state file that reads as complete."""
    partial = Path(directory) / f".{STATE_FILE}.partial"
    partial.write_text(json.dumps(asdict(state), indent=2) + "\n")
    os.replace(partial, Path(directory) / STATE_FILE)


def read_state(directory: Path) -> TrainState:
    """Read and check a checkpoint folder; raises :class:`CheckpointError` with what is wrong."""
    directory = Path(directory)
    if not directory.is_dir() or not any(directory.iterdir()):
        raise CheckpointError(f"checkpoint {directory} is empty or missing")
    path = directory / STATE_FILE
    try:
        state = TrainState(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {directory} has no {STATE_FILE}: it is incomplete (a run killed while "
            "writing it?) or was not written by plot-ray"
        ) from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {directory}: {STATE_FILE} is corrupt ({exc})") from None
    if not (directory / DEEPSPEED_TAG).is_dir():
        raise CheckpointError(f"checkpoint {directory} has no DeepSpeed state ({DEEPSPEED_TAG}/)")
    return state


def save_rng(directory: Path, rank: int) -> None:
    version, internal, gauss_next = random.getstate()
    state = {
        "python_version": version,
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_gauss": gauss_next,
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    torch.save(state, directory / f"rng_rank{rank}.pt")


def load_rng(directory: Path, rank: int) -> None:
    path = Path(directory) / f"rng_rank{rank}.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory} has no RNG state for worker {rank}")
    state = torch.load(path, weights_only=True)
    random.setstate(
        (state["python_version"], tuple(state["python"].tolist()), state["python_gauss"])
    )
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0)
    )
    torch.set_rng_state(state["torch"])


def find_resumable_run(run_dir: Path) -> Path:
    """The newest complete checkpoint of an earlier run, for ``--resume``; clear errors otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume: there is no run at {run_dir}")
    candidates = sorted(p for p in run_dir.iterdir() if CHECKPOINT_DIR_RE.match(p.name))
    if not (run_dir / RAY_SNAPSHOT).is_file() or not candidates:
        raise CheckpointError(
            f"--resume: {run_dir} holds no registered checkpoint to resume from (it stopped "
            "before its first checkpoint?): start it again without --resume"
        )
    for path in reversed(candidates):
        try:
            read_state(path)
            return path
        except CheckpointError:
            continue
    raise CheckpointError(f"--resume: every checkpoint under {run_dir} is incomplete or corrupt")


def remove_orphaned_checkpoints(run_dir: Path, keep: list[Path]) -> list[Path]:
    """Delete ``checkpoint_*`` folders that Ray Train never registered (a report in flight when a
    worker died) or has since let go; returns what was removed."""
    keep_names = {Path(p).name for p in keep}
    removed = []
    for path in Path(run_dir).iterdir():
        if CHECKPOINT_DIR_RE.match(path.name) and path.name not in keep_names:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
