"""Distributed PLOT fine-tuning: Ray Train workers, each running a DeepSpeed ZeRO engine.

``run_training(cfg)`` on the driver (``trainer.py``); the per-worker recipe in ``loop.py``;
the DeepSpeed config in ``deepspeed_config.py``; checkpoint layout in ``checkpoint.py``;
validation on the prepared eval split (what ``eval/*`` metrics mean) in ``validation.py``.
"""

from plot_ray.train.checkpoint import CheckpointError
from plot_ray.train.deepspeed_config import zero_config
from plot_ray.train.trainer import TrainRunResult, check_training_setup, read_metrics, run_training

__all__ = [
    "CheckpointError",
    "TrainRunResult",
    "check_training_setup",
    "read_metrics",
    "run_training",
    "zero_config",
]
