"""Where a model-holding actor puts its model: a device checked before any weight is loaded.

A Ray actor reserved with ``num_gpus=1`` sees its GPU as ``cuda`` (Ray sets
``CUDA_VISIBLE_DEVICES``); an actor asked for ``cuda`` on a node without one (or with a CPU-only
torch) must fail at once instead of quietly computing on the CPU while a GPU sits reserved.
"""

from __future__ import annotations

import os

__all__ = ["checked_device", "cuda_visibility"]


def cuda_visibility() -> str:
    """What this process sees of CUDA, for the errors of a GPU that is not there (an eval actor
    here, a training worker in :func:`plot_ray.train.deepspeed_config.require_cuda`)."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    build = (
        "a build without CUDA: install a CUDA build in the image"
        if torch.version.cuda is None
        else f"built for CUDA {torch.version.cuda}"
    )
    return (
        f"CUDA_VISIBLE_DEVICES={'unset' if visible is None else repr(visible)}; "
        f"torch {torch.__version__}, {build}"
    )


def checked_device(device: str) -> str:
    """``device`` (``"cpu"``, ``"cuda"`` or ``"cuda:N"``) once this process can use it;
    raises ``ValueError`` for any other name and ``RuntimeError`` for a CUDA device that this
    process does not see."""
    import torch

    if device == "cpu":
        return device
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    index = int(device[5:]) if ":" in device else 0
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise RuntimeError(
            f"device={device!r}, but this process sees {torch.cuda.device_count()} CUDA "
            f"device(s) ({cuda_visibility()}). A model placed for a GPU does not fall back to "
            "the CPU: run it on a GPU node (a Ray actor reserved with num_gpus=1 gets one) with "
            "a CUDA build of torch, or ask for the CPU (eval.use_gpu=false)"
        )
    return device
