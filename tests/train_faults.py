"""Fault injection for the training tests, kept out of the package: a recipe subclass that
crashes one worker once (SIGKILL, as a lost node looks to Ray) or makes the loss NaN at chosen
steps, handed to ``run_training(cfg, recipe=...)``. It also records where each worker had
DeepSpeed write its checkpoints (``checkpoint_saves``).

Ray workers cannot import this module (``tests/`` is on the pytest process's ``sys.path``
only), so it is registered with Ray's cloudpickle to travel by value with the recipe class.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import ray.cloudpickle

from plot_ray.train.loop import PreferenceRecipe

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SAVES_FILE = ".checkpoint_saves_rank{rank}"  # in the run's log folder


def checkpoint_saves(run_dir: Path, rank: int) -> list[Path]:
    """The folders worker ``rank`` handed to DeepSpeed's ``save_checkpoint``, in order."""
    return [
        Path(line) for line in (run_dir / SAVES_FILE.format(rank=rank)).read_text().splitlines()
    ]


def faulty_recipe(fail_at_step: int | None = None, nan_at_steps: tuple[int, ...] = ()) -> type:
    """A :class:`PreferenceRecipe` whose last worker is killed once right after optimizer step
    ``fail_at_step`` (before that step is logged or checkpointed), and whose loss is NaN on
    every worker at each of ``nan_at_steps`` (1-based optimizer steps)."""

    class FaultyRecipe(PreferenceRecipe):
        def _setup_policy(self):
            engine = super()._setup_policy()
            save = engine.save_checkpoint

            def save_and_record(save_dir, *args, **kwargs):
                with (self.run_dir / SAVES_FILE.format(rank=self.rank)).open("a") as fh:
                    fh.write(f"{save_dir}\n")
                return save(save_dir, *args, **kwargs)

            engine.save_checkpoint = save_and_record
            return engine

        def compute_loss(self, batch):
            out = super().compute_loss(batch)
            if self.step + 1 in nan_at_steps:
                out.loss = out.loss * float("nan")
            return out

        def train_step(self) -> None:
            super().train_step()
            if self.step == fail_at_step and self.rank == self.world_size - 1:
                # A marker in the run folder makes it happen once: the restarted worker group
                # passes this step again.
                marker = self.run_dir / f".failed_once_rank{self.rank}"
                if not marker.exists():
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGKILL)

    return FaultyRecipe
