"""The DeepSpeed config dict, built in one place from the typed plot-ray config.

A user's own DeepSpeed JSON (``deepspeed.config_file``) is merged on top, key by key, so anything
DeepSpeed supports can be set without plot-ray knowing about it. Batch sizes always come from
plot-ray's ``train`` section so that the data pipeline and DeepSpeed agree.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from plot_ray.config import ConfigError, PlotRayConfig

__all__ = [
    "zero_config",
    "reference_zero_config",
    "merge_user_config",
    "select_accelerator",
    "isolate_extension_builds",
    "require_cuda",
    "AcceleratorError",
]


class AcceleratorError(RuntimeError):
    """``train.use_gpu`` and what the worker sees (CUDA devices, ``DS_ACCELERATOR``) disagree."""


def select_accelerator(use_gpu: bool) -> str:
    """Fix DeepSpeed's accelerator for this process from ``train.use_gpu``: ``cuda`` or ``cpu``.

    DeepSpeed picks its accelerator once, when it is first imported: ``DS_ACCELERATOR`` if set,
    else CUDA if a device is visible, else, with only a warning, the CPU. So each worker calls
    this before importing DeepSpeed. With ``use_gpu`` the process must see a CUDA device:
    otherwise DeepSpeed and the recipe would fall back to the CPU under Ray Train's NCCL
    process group, and training would fail later, far from the cause; this raises
    :class:`AcceleratorError` instead, saying what to check. A ``DS_ACCELERATOR`` that
    contradicts ``train.use_gpu`` (``cpu`` exported where a GPU job was submitted, say) is an
    error as well, not silently overridden: the process group follows ``train.use_gpu`` (nccl
    or gloo), and no other accelerator fits it. Returns the accelerator's name.
    """
    wanted = "cuda" if use_gpu else "cpu"
    flag = f"train.use_gpu={'true' if use_gpu else 'false'}"
    chosen = os.environ.get("DS_ACCELERATOR", wanted)
    if chosen != wanted:
        raise AcceleratorError(
            f"{flag} needs DeepSpeed's {wanted} accelerator, but DS_ACCELERATOR={chosen} is set "
            "in this worker's environment (exported on the driver, or in the job's "
            f"runtime_env): unset it, or set train.use_gpu={'false' if use_gpu else 'true'}"
        )
    if use_gpu:
        require_cuda(flag)
    # Too late if something imported DeepSpeed already: it kept the accelerator it chose then.
    real = sys.modules.get("deepspeed.accelerator.real_accelerator")
    current = getattr(real, "ds_accelerator", None)
    if current is not None and current.device_name() != wanted:
        raise AcceleratorError(
            f"{flag}, but DeepSpeed was imported in this process before plot-ray chose its "
            f"accelerator and runs on {current.device_name()!r}: import DeepSpeed only after "
            "plot_ray.train.deepspeed_config.select_accelerator"
        )
    os.environ["DS_ACCELERATOR"] = wanted
    return wanted


def isolate_extension_builds() -> str:
    """Have this Python environment build the C++ ops DeepSpeed compiles on first use (on CPU:
    its shared-memory allreduce, ~30 s on 2 cores) with its own ninja, in a folder of its own;
    returns the folder (``TORCH_EXTENSIONS_DIR``, kept as it is if already set). Call it before
    DeepSpeed builds an op.

    Torch builds an op in one folder per op name (``~/.cache/torch_extensions/py311_cpu/<op>``)
    with whichever ``ninja`` comes first on ``PATH``, and ninja compiles again whenever the
    folder's build log was written by another ninja version (1.11 and 1.13 hash commands
    differently and start over on each other's log format) or records another command. In the
    test suite both happened: its Ray workers found the system's ninja (1.11) while a local
    cluster's job workers, whose ``PATH`` starts with the environment's ``bin``, found the one
    pip installed with DeepSpeed (1.13), and checkouts in other folders compile with other
    paths; each switch rebuilt the op (30-60 s on 2 cores). So the ninja installed with
    DeepSpeed (the ``ninja`` package) goes first on this process's ``PATH``, and the folder's
    name carries a hash of what the build depends on: Python, torch and where it and DeepSpeed
    are installed, Python's headers, the compiler and ninja.
    """
    import hashlib
    import importlib.util
    import shutil
    import sysconfig

    import torch
    from torch.utils.cpp_extension import get_default_build_root

    try:
        import ninja

        ninja_dir = ninja.BIN_DIR
    except (ImportError, AttributeError):  # no ninja package: the one on PATH, if any
        ninja_dir = None
    if ninja_dir and os.path.isfile(os.path.join(ninja_dir, "ninja")):
        path = os.environ.get("PATH", "")
        if path.split(os.pathsep)[0] != ninja_dir:
            os.environ["PATH"] = os.pathsep.join(p for p in (ninja_dir, path) if p)
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return os.environ["TORCH_EXTENSIONS_DIR"]
    deepspeed = importlib.util.find_spec("deepspeed")  # its location, without importing it
    inputs = [
        sys.version,
        torch.__version__,  # with its device build: 2.13.0+cpu, +cu128...
        os.path.dirname(torch.__file__),
        os.path.dirname(deepspeed.origin) if deepspeed and deepspeed.origin else "",
        sysconfig.get_path("include", scheme="posix_prefix") or "",
        os.environ.get("CXX", "c++"),
        shutil.which("ninja") or "",
    ]
    key = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]
    folder = os.path.join(get_default_build_root(), f"plot_ray-{key}")
    os.environ["TORCH_EXTENSIONS_DIR"] = folder
    return folder


def require_cuda(flag: str = "train.use_gpu=true") -> None:
    """Raise :class:`AcceleratorError` unless torch sees a CUDA device, naming what to check."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return
    from plot_ray.models.devices import cuda_visibility

    raise AcceleratorError(
        f"{flag}, but this process on {socket.gethostname()} sees no CUDA device "
        f"({cuda_visibility()}). "
        "Check that the node's GPUs work (nvidia-smi), that Ray gave this worker one (`ray "
        "status` lists GPU resources) and that nothing in the job's runtime_env overrides "
        "CUDA_VISIBLE_DEVICES; or set train.use_gpu=false to train on CPUs"
    )


def _on_cpu() -> bool:
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().device_name() == "cpu"


def merge_user_config(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge; the user's values win."""
    out = dict(base)
    for key, value in user.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_user_config(out[key], value)
        else:
            out[key] = value
    return out


def _load_user_config(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"deepspeed.config_file: {path!r} does not exist")
    try:
        user = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"deepspeed.config_file: {path} is not valid JSON: {exc}") from None
    if not isinstance(user, dict):
        raise ConfigError(f"deepspeed.config_file: {path} must hold a JSON object")
    return user


def zero_config(cfg: PlotRayConfig, world_size: int, on_cpu: bool | None = None) -> dict[str, Any]:
    """The DeepSpeed config for the policy engine (ZeRO 0-3, offload, precision, clipping, AdamW).

    ``on_cpu`` selects PyTorch's AdamW (DeepSpeed's fused Adam is CUDA-only); by default it
    follows DeepSpeed's accelerator (``DS_ACCELERATOR=cpu`` here, CUDA on GPU clusters).
    """
    ds, train = cfg.deepspeed, cfg.train
    on_cpu = _on_cpu() if on_cpu is None else on_cpu
    zero: dict[str, Any] = {
        "stage": ds.zero_stage,
        "overlap_comm": ds.overlap_comm,
        "contiguous_gradients": ds.contiguous_gradients,
    }
    if ds.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": ds.offload_optimizer, "pin_memory": not on_cpu}
    if ds.offload_param != "none":
        zero["offload_param"] = {"device": ds.offload_param, "pin_memory": not on_cpu}
    if ds.zero_stage == 3:
        # The final save gathers the partitioned weights module by module onto rank 0.
        zero["stage3_gather_16bit_weights_on_model_save"] = True

    optimizer_params: dict[str, Any] = {
        "lr": train.learning_rate,
        "betas": [0.9, 0.95],
        "eps": 1e-8,
        "weight_decay": train.weight_decay,
    }
    if on_cpu and ds.offload_optimizer == "none":
        optimizer_params["torch_adam"] = True

    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "train_batch_size": train.micro_batch_size * train.gradient_accumulation_steps * world_size,
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": optimizer_params},
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16", "initial_scale_power": 16},
        "steps_per_print": 10**9,  # plot-ray reports metrics itself
        "wall_clock_breakdown": False,
    }
    if ds.config_file:
        config = merge_user_config(config, _load_user_config(ds.config_file))
        for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
            if key in config and config[key] != getattr(
                train, "micro_batch_size" if key.startswith("train_micro") else key
            ):
                raise ConfigError(
                    f"deepspeed.config_file sets {key}={config[key]}; set it with train.* instead"
                )
        config["train_batch_size"] = (
            train.micro_batch_size * train.gradient_accumulation_steps * world_size
        )
    return config


def reference_zero_config(cfg: PlotRayConfig, world_size: int) -> dict[str, Any]:
    """A frozen reference model's config: inference only, partitioned under ZeRO-3 (the policy's
    stage), otherwise a plain replicated copy (stage 0), no optimizer."""
    ds, train = cfg.deepspeed, cfg.train
    zero: dict[str, Any] = {"stage": 3 if ds.zero_stage == 3 else 0}
    if ds.zero_stage == 3 and ds.offload_param != "none":
        zero["offload_param"] = {"device": ds.offload_param}
    return {
        "train_micro_batch_size_per_gpu": train.micro_batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "train_batch_size": train.micro_batch_size * train.gradient_accumulation_steps * world_size,
        "zero_optimization": zero,
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16"},
        "steps_per_print": 10**9,
    }
