"""The checkpoint folder protocol without Ray: a folder counts as a checkpoint only once rank 0's
state file is in place, and that file appears whole or not at all. The write itself (every
worker straight into the run's storage, Ray Train registering it in place) is tested end to end
in tests/test_train.py."""

from __future__ import annotations

import json

import pytest

from plot_ray.config import load_config
from plot_ray.train.checkpoint import (
    RAY_SNAPSHOT,
    STATE_FILE,
    CheckpointError,
    TrainState,
    checkpoint_dir_name,
    find_resumable_run,
    read_state,
    write_state,
)
from plot_ray.train.trainer import storage_path


def checkpoint(run, step: int, complete: bool):
    """A checkpoint folder as the workers leave it: DeepSpeed's files, then rank 0's state
    file when ``complete``."""
    folder = run / checkpoint_dir_name(step)
    (folder / "deepspeed").mkdir(parents=True)
    (folder / "deepspeed" / "zero_pp_rank_0_mp_rank_00_model_states.pt").write_bytes(b"shard")
    if complete:
        write_state(folder, TrainState(step, 2 * step, world_size=2, zero_stage=3))
    return folder


def test_the_state_file_is_written_whole_under_its_name_and_read_back(tmp_path):
    folder = checkpoint(tmp_path, 4, complete=True)
    assert sorted(p.name for p in folder.iterdir()) == ["deepspeed", STATE_FILE]  # no leftover
    assert read_state(folder) == TrainState(4, 8, 2, 3)
    assert checkpoint_dir_name(4) == "checkpoint_000004" == folder.name


def test_a_write_cut_short_is_never_taken_for_a_checkpoint(tmp_path):
    """Step 6 was killed after the workers' shards, with rank 0's state file half written under
    its temporary name: resuming picks step 4, and reading step 6 says it is incomplete."""
    checkpoint(tmp_path, 4, complete=True)
    cut = checkpoint(tmp_path, 6, complete=False)
    (cut / f".{STATE_FILE}.partial").write_text('{"step": 6, "consumed_')
    (tmp_path / RAY_SNAPSHOT).write_text(json.dumps({"checkpoint_results": []}))
    assert find_resumable_run(tmp_path).name == "checkpoint_000004"
    with pytest.raises(CheckpointError, match="has no plot_ray_state.json: it is incomplete"):
        read_state(cut)


def test_a_relative_storage_path_becomes_absolute_for_ray_train(tmp_path, monkeypatch):
    """Ray Train reads a relative storage path as a URI and fails; the workers write their
    checkpoints under the absolute path."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides={"cluster.storage_path": "shared/ray-storage"})
    assert storage_path(cfg) == str(tmp_path / "shared" / "ray-storage")
    default = load_config(overrides={"train.output_dir": "runs/train"})
    assert storage_path(default) == str(tmp_path / "runs" / "train")
