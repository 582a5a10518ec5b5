"""What GPU users get from DeepSpeed: the config dicts plot-ray hands ``deepspeed.initialize``
for every training config in jobs/configs/real/, kept as a reviewed snapshot, and each checked
against DeepSpeed's own config schema. Pure Python: no Ray, no process group.

After a deliberate change, regenerate the snapshot and review its diff:

    PLOT_RAY_UPDATE_SNAPSHOTS=1 pytest tests/test_deepspeed_config.py
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from pathlib import Path

import pytest
import yaml

from plot_ray.config import load_config
from plot_ray.train.deepspeed_config import reference_zero_config, zero_config

ROOT = Path(__file__).parents[1]
SNAPSHOT = Path(__file__).parent / "data" / "deepspeed_configs.json"
# The configs that train: every real config with a train section (the sweep's trials differ
# from its base only in loss settings, which DeepSpeed never sees).
TRAINING_CONFIGS = sorted(
    p
    for p in (ROOT / "jobs" / "configs" / "real").glob("*.yaml")
    if "train" in (yaml.safe_load(p.read_text()) or {})
)


def deepspeed_configs(path: Path) -> dict:
    """The dicts one worker of this config hands DeepSpeed: the policy engine's and, under
    ZeRO-3, the frozen reference model's (when the method has one), for its world size."""
    cfg = load_config(path)
    world_size = cfg.train.num_workers
    out = {
        "world_size": world_size,
        "policy": zero_config(cfg, world_size, on_cpu=not cfg.train.use_gpu),
    }
    if cfg.deepspeed.zero_stage == 3:
        out["reference"] = reference_zero_config(cfg, world_size)
    return out


def deepspeed_schema_problems(config: dict, world_size: int) -> list[str]:
    """What DeepSpeed 0.19 would reject or silently ignore in ``config``.

    ``DeepSpeedConfig`` validates the zero_optimization, bf16 and fp16 sections with its pydantic
    models (unknown keys are errors there) and the batch sizes; it reads every other top-level
    key by name from its constants, so a misspelt one is ignored: those are checked against the
    names DeepSpeed knows. The optimizer's params are bound to the constructor DeepSpeed would
    call with them.
    """
    import deepspeed.runtime.constants as ds_constants
    import deepspeed.runtime.zero.config as zero_module
    from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam
    from deepspeed.runtime.config import DeepSpeedConfig

    problems = []
    known = {
        v
        for module in (ds_constants, zero_module)
        for v in vars(module).values()
        if isinstance(v, str)
    }
    problems += [f"unknown top-level key {key!r}" for key in sorted(set(config) - known)]
    # Without a process group DeepSpeed takes a world of 1: let it derive the global batch and
    # compare that with the one plot-ray computed for the real world size.
    try:
        parsed = DeepSpeedConfig({k: v for k, v in config.items() if k != "train_batch_size"})
    except Exception as exc:  # pydantic's ValidationError, DeepSpeedConfigError, AssertionError
        return [*problems, f"{type(exc).__name__}: {exc}"]
    if config["train_batch_size"] != parsed.train_batch_size * world_size:
        problems.append(
            f"train_batch_size {config['train_batch_size']} != micro batch x accumulation x "
            f"world size ({parsed.train_batch_size} x {world_size})"
        )
    if "optimizer" in config:
        params = dict(config["optimizer"]["params"])
        if params.pop("torch_adam", False):
            return problems  # torch.optim.AdamW: the CPU path, tested by every training run
        if parsed.zero_config.offload_optimizer is not None:
            optimizer, extra = DeepSpeedCPUAdam, {"adamw_mode": True}
        else:
            optimizer, extra = FusedAdam, {"adam_w_mode": True}
        try:
            inspect.signature(optimizer).bind([], **params, **extra)
        except TypeError as exc:
            problems.append(f"optimizer params for {optimizer.__name__}: {exc}")
    return problems


def test_every_real_training_config_is_snapshotted():
    assert len(TRAINING_CONFIGS) >= 6
    assert all("eval" not in p.name for p in TRAINING_CONFIGS)


def test_the_deepspeed_configs_of_the_real_training_configs_match_the_snapshot():
    built = {p.name: deepspeed_configs(p) for p in TRAINING_CONFIGS}
    if os.environ.get("PLOT_RAY_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(built, indent=2, sort_keys=True) + "\n")
    assert json.loads(SNAPSHOT.read_text()) == built, (
        "the DeepSpeed configs GPU users get have changed: if that is intended, regenerate "
        "tests/data/deepspeed_configs.json with PLOT_RAY_UPDATE_SNAPSHOTS=1 and review its diff"
    )


@pytest.mark.parametrize("name", [p.name for p in TRAINING_CONFIGS])
def test_the_snapshotted_configs_pass_deepspeeds_schema(name):
    entry = json.loads(SNAPSHOT.read_text())[name]
    for role in ("policy", "reference"):
        if role in entry:
            assert deepspeed_schema_problems(entry[role], entry["world_size"]) == [], role
    # what the real configs promise GPU users: bf16, ZeRO-3 gathering the weights for the save
    policy = entry["policy"]
    assert policy["bf16"]["enabled"] and not policy["fp16"]["enabled"]
    assert policy["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert "torch_adam" not in policy["optimizer"]["params"]  # DeepSpeed's fused Adam on GPUs


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["zero_optimization"].update(stage3_gather_16bit_weights=True), "Extra"),
        (lambda c: c["bf16"].update(enable=True), "Extra"),
        (lambda c: c.update(gradient_cliping=1.0), "unknown top-level key 'gradient_cliping'"),
        (lambda c: c["optimizer"]["params"].update(beta=0.9), "optimizer params for FusedAdam"),
        (lambda c: c.update(train_batch_size=64), "train_batch_size 64 != "),
        (lambda c: c["zero_optimization"].update(offload_optimizer={"device": "disk"}), "Input"),
    ],
    ids=["zero-key", "bf16-key", "top-level-key", "optimizer-param", "batch", "offload-device"],
)
def test_the_schema_check_reports_a_broken_copy(edit, expected):
    built = deepspeed_configs(TRAINING_CONFIGS[0])
    config, world_size = copy.deepcopy(built["policy"]), built["world_size"]
    assert deepspeed_schema_problems(config, world_size) == []
    edit(config)
    problems = deepspeed_schema_problems(config, world_size)
    assert len(problems) == 1 and expected in problems[0], problems
