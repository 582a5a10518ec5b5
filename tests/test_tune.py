"""Ray Tune sweeps: the search space and trial configs (no Ray), and one real 2×2 sweep
(alpha × method) with one extra grid point that fails at run time, on the session's local Ray
instance with the tiny model."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from plot_ray.config import ConfigError, apply_overrides, load_config, validate_config
from plot_ray.tune import check_space, concurrency, grid_points, param_space
from plot_ray.tune.report import group_by_config


def sweep_base(**tune) -> dict:
    return apply_overrides({}, {f"tune.{k}": v for k, v in tune.items()})


def test_space_kinds_become_tune_distributions_and_seeds_a_grid():
    from ray.tune.search.sample import Categorical, Float, Integer

    cfg = validate_config(
        sweep_base(
            space={
                "loss.alpha": {"grid": [0.0, 1.0]},
                "loss.method": {"choice": ["dpo", "aot"]},
                "train.learning_rate": {"loguniform": [1e-5, 1e-3]},
                "train.micro_batch_size": {"randint": [2, 5]},
            },
            seeds=[0, 1, 2],
        )
    )
    space = param_space(cfg.tune)
    assert space["loss.alpha"] == {"grid_search": [0.0, 1.0]}
    assert space["train.seed"] == {"grid_search": [0, 1, 2]}
    assert isinstance(space["loss.method"], Categorical)
    assert isinstance(space["train.learning_rate"], Float)
    assert isinstance(space["train.micro_batch_size"], Integer)
    # checked points: 3 seeds x 2 alphas x 2 methods x 2 lr ends x 2 batch ends (4 = 5 - 1)
    points = grid_points(cfg.tune)
    assert len(points) == 48
    assert {p["train.micro_batch_size"] for p in points} == {2, 4}


@pytest.mark.parametrize(
    "space, message",
    [
        ({"loss.alhpa": {"grid": [0, 1]}}, r"loss\.alhpa: unknown key"),
        ({"loss.alpha": {"grid": [0, -1]}}, r"(?s)loss\.alpha=-1.*loss\.alpha: Input should be"),
        ({"loss.method": {"grid": ["dpo", "ppo"]}}, r"unknown method 'ppo'"),
    ],
)
def test_every_trial_is_validated_before_the_sweep_starts(space, message):
    base = sweep_base(space=space)
    cfg = validate_config(base)
    with pytest.raises(ConfigError, match=message):
        check_space(base, cfg.tune)


def test_a_space_entry_must_name_one_known_distribution():
    with pytest.raises(ConfigError, match=r"give exactly one of grid, choice"):
        load_config(overrides={"tune.space": {"loss.alpha": {"grdi": [0, 1]}}})
    with pytest.raises(ConfigError, match=r"\[low, high\]"):
        load_config(overrides={"tune.space": {"loss.alpha": {"uniform": [0, 1, 2]}}})
    with pytest.raises(ConfigError, match=r"shared by every trial"):
        load_config(overrides={"tune.space": {"data.max_length": {"grid": [64, 128]}}})


def test_concurrency_fits_trials_to_the_cluster():
    cfg = load_config(overrides={"train.num_workers": 1, "train.cpus_per_worker": 0.5})
    # one trial needs 0.5 (worker) + 0.25 (data reads) + 0.01 (the trial itself) CPUs
    assert concurrency(cfg, {"CPU": 2}) == 2
    assert concurrency(cfg, {"CPU": 0.5}) == 1
    cfg = load_config(overrides={"tune.max_concurrent_trials": 3})
    assert concurrency(cfg, {"CPU": 2}) == 3


def test_seeds_are_averaged_per_configuration():
    rows = [
        {"param/loss.alpha": 0.5, "param/train.seed": s, "status": "ok", "metric/m": v}
        for s, v in ((0, 1.0), (1, 3.0))
    ] + [{"param/loss.alpha": 0.5, "param/train.seed": 2, "status": "error", "metric/m": None}]
    (group,) = group_by_config(rows, "m")
    assert group["params"] == {"loss.alpha": 0.5}
    assert (group["mean"], group["n"]) == (2.0, 2)
    assert group["std"] == pytest.approx(2**0.5)  # sample std of 1 and 3


@pytest.mark.slow
def test_a_sweep_runs_every_trial_and_reports_a_failing_one(
    ray_local, prepared_dir, tiny_model_dir, tmp_path
):
    from plot_ray.tune import run_sweep

    base = apply_overrides(
        {},
        {
            "data.output_dir": str(prepared_dir),
            "data.max_length": 160,
            "data.max_prompt_length": 96,
            "model.name_or_path": str(tiny_model_dir),
            "train.num_workers": 1,
            "train.cpus_per_worker": 0.5,
            "train.max_steps": 1,
            "train.micro_batch_size": 2,
            "train.checkpoint_every": 100,
            "train.save_hf_model": False,
            "loss.plot.chunk_size": 64,
            "tune.space": {
                "loss.alpha": {"grid": [0.0, 0.5]},
                "loss.method": {"grid": ["dpo", "sft"]},
            },
            "tune.metric": "eval/chosen_nll",
            "tune.mode": "min",
            "tune.output_dir": str(tmp_path),
            "tune.name": "grid",
        },
    )
    result = run_sweep(validate_config(base), base)

    table = pq.read_table(result["table"]).to_pylist()
    assert len(table) == 4 and all(r["status"] == "ok" for r in table), table
    params = {
        (json.loads(r["param/loss.alpha"]), json.loads(r["param/loss.method"])) for r in table
    }
    assert params == {(0.0, "dpo"), (0.0, "sft"), (0.5, "dpo"), (0.5, "sft")}
    for row in table:
        # each trial's numbers come from its own run folder and config
        summary = json.loads(
            (
                tmp_path / "grid" / "trials" / row["run_dir"].split("/")[-1] / "summary.json"
            ).read_text()
        )
        assert summary["config"]["loss"]["alpha"] == json.loads(row["param/loss.alpha"])
        assert summary["config"]["loss"]["method"] == json.loads(row["param/loss.method"])
        assert row["metric/loss/alpha"] == json.loads(row["param/loss.alpha"])
        assert row["metric/eval/chosen_nll"] == pytest.approx(
            summary["last_metrics"]["eval/chosen_nll"]
        )
    text = (tmp_path / "grid" / "summary.md").read_text()
    assert "Best configuration per method" in text and "**dpo**" in text and "**sft**" in text
    assert (tmp_path / "grid" / "metric_vs_alpha.png").stat().st_size > 1000

    # --resume of a finished sweep reruns no trial and rebuilds the same table
    summaries = sorted((tmp_path / "grid" / "trials").glob("*/summary.json"))
    written = [f.stat().st_mtime_ns for f in summaries]
    again = run_sweep(validate_config(base), base, resume=True)
    assert sorted(r["run_dir"] for r in again["trials"]) == sorted(r["run_dir"] for r in table)
    assert all(r["status"] == "ok" for r in again["trials"])
    assert sorted((tmp_path / "grid" / "trials").glob("*/summary.json")) == summaries
    assert [f.stat().st_mtime_ns for f in summaries] == written  # no trial ran again
    with pytest.raises(FileExistsError, match="pass --resume"):
        run_sweep(validate_config(base), base)

    # a grid point that passes validation but fails in training is reported, not lost
    failing = apply_overrides(
        base,
        {
            "tune.space": {"train.micro_batch_size": {"grid": [2, 100_000]}},
            "tune.name": "failing",
        },
    )
    result = run_sweep(validate_config(failing), failing)
    rows = {r["param/train.micro_batch_size"]: r for r in result["trials"]}
    assert rows[2]["status"] == "ok"
    assert rows[100_000]["status"] == "error"
    assert "no complete micro-batch" in rows[100_000]["error"]
    assert "did not finish" in (tmp_path / "failing" / "summary.md").read_text()
