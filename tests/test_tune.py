"""Ray Tune sweeps: the search space, trial configs, scheduler and search algorithm and the
report (no Ray cluster), then two real sweeps on the session's local Ray instance with the tiny
model: a 2×2 sweep (alpha × method, the method as a variant; DPO's trials with DEFT's term)
killed after its first trial and resumed, and an ASHA sweep with a trial that fails and one that
ASHA stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from plot_ray.config import ConfigError, apply_overrides, load_config, validate_config
from plot_ray.tune import check_space, concurrency, grid_points, param_space, scheduler, searcher
from plot_ray.tune.report import best_trials, group_by_config, validation_curves, write_report


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
        (
            {"loss.deft.weight": {"grid": [0.3, -1]}},
            r"(?s)loss\.deft\.weight=-1.*loss\.deft\.weight: Input should be",
        ),
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


ABLATIONS = {
    "cost=uniform": {"loss.plot.cost": "uniform"},
    "sft-global": {"loss.method": "sft", "loss.plot.target": "global"},
}


def test_variants_are_one_more_grid_whose_trials_apply_their_named_overrides():
    from plot_ray.tune import trial_config

    base = sweep_base(space={"loss.alpha": {"grid": [0.5, 1.0]}}, seeds=[0, 1], variants=ABLATIONS)
    cfg = validate_config(base)
    assert param_space(cfg.tune)["variant"] == {"grid_search": ["cost=uniform", "sft-global"]}
    points = grid_points(cfg.tune)
    assert len(points) == check_space(base, cfg.tune) == 8  # 2 alphas x 2 seeds x 2 variants
    trial = trial_config(base, {"loss.alpha": 1.0, "train.seed": 1, "variant": "sft-global"})
    assert (trial.loss.alpha, trial.train.seed, trial.loss.method) == (1.0, 1, "sft")
    assert trial.loss.plot.target == "global" and trial.loss.plot.cost == "embedding"
    other = trial_config(base, {"loss.alpha": 0.5, "train.seed": 0, "variant": "cost=uniform"})
    assert (other.loss.method, other.loss.plot.cost, other.loss.plot.target) == (
        "dpo",
        "uniform",
        "anchored",
    )
    with pytest.raises(ConfigError, match=r"variant 'nope' is not in tune\.variants"):
        trial_config(base, {"variant": "nope"})


@pytest.mark.parametrize(
    "tune, message",
    [
        # every variant's trial is validated before anything starts, naming the variant
        (
            {"variants": {"bad": {"loss.plot.cost": "banana"}}},
            r"(?s)variant='bad'.*loss\.plot\.cost",
        ),
        (
            {"variants": {"v": {"loss.alpha": 2}}, "space": {"loss.alpha": {"grid": [1]}}},
            r"tune\.variants\.v\.loss\.alpha: also in tune\.space",
        ),
        ({"variants": {"v": {"train.seed": 3}}}, r"tune\.variants\.v\.train\.seed: .*tune\.seeds"),
        ({"variants": {"v": {"data.max_length": 64}}}, r"tune\.variants\.v\.data\.max_length"),
        ({"variants": {"v": {}}}, r"tune\.variants\.v: a non-empty map"),
        ({"variants": ABLATIONS, "search": "optuna"}, r"tune\.variants: .*tune\.search=basic"),
    ],
)
def test_bad_variants_are_refused_by_name(tune, message):
    with pytest.raises(ConfigError, match=message):
        base = sweep_base(**tune)
        cfg = validate_config(base)
        check_space(base, cfg.tune)
        param_space(cfg.tune)


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


def test_optuna_refuses_a_grid_naming_its_key_and_takes_one_seed():
    optuna = {"tune.search": "optuna"}
    cfg = load_config(overrides={**optuna, "tune.space": {"loss.alpha": {"grid": [0.0, 1.0]}}})
    with pytest.raises(
        ConfigError, match=r"tune\.space\.loss\.alpha: .*\{choice: \[0\.0, 1\.0\]\}"
    ):
        param_space(cfg.tune)
    cfg = load_config(overrides={**optuna, "tune.seeds": [0, 1]})
    with pytest.raises(ConfigError, match=r"tune\.seeds=\[0, 1\]: .*give one seed"):
        param_space(cfg.tune)
    cfg = load_config(overrides={**optuna, "tune.seeds": [7]})
    assert param_space(cfg.tune) == {"train.seed": 7}  # a constant, not a grid


def test_optuna_samples_every_trial_inside_the_space():
    cfg = load_config(
        overrides={
            "tune.search": "optuna",
            "tune.space": {
                "loss.alpha": {"uniform": [0.1, 0.3]},
                "loss.method": {"choice": ["dpo", "aot"]},
                "train.micro_batch_size": {"randint": [2, 4]},
            },
            "tune.metric": "eval/chosen_nll",
            "tune.mode": "min",
        }
    )
    search = searcher(cfg)
    assert type(search).__name__ == "OptunaSearch"
    # what the Tuner does with it: the metric, the mode and our param_space
    assert search.set_search_properties(cfg.tune.metric, cfg.tune.mode, param_space(cfg.tune))
    for i in range(8):
        trial = search.suggest(f"t{i}")
        assert 0.1 <= trial["loss.alpha"] <= 0.3
        assert trial["loss.method"] in ("dpo", "aot")
        assert trial["train.micro_batch_size"] in (2, 3)  # randint's high is excluded
    assert searcher(load_config()) is None  # basic: Ray's grid and random sampling


def test_asha_compares_trials_where_the_metric_is_reported():
    asha = {"tune.scheduler": "asha", "train.max_steps": 40}
    cfg = load_config(
        overrides={**asha, "tune.metric": "eval/reward_accuracy", "train.eval_every": 5}
    )
    sched = scheduler(cfg)
    assert type(sched).__name__ == "AsyncHyperBandScheduler"
    assert (sched._time_attr, sched._max_t) == ("step", 39)
    # rungs at grace (5 steps, the validation interval) x 4^k below max_steps: 5 and 20
    assert [milestone for milestone, _ in sched._brackets[0]._rungs] == [20, 5]
    # a training metric is in every report: the shortest interval of reports counts
    cfg = load_config(
        overrides={
            **asha,
            "tune.metric": "loss/total",
            "train.report_every": 4,
            "train.checkpoint_every": 10,
        }
    )
    assert [m for m, _ in scheduler(cfg)._brackets[0]._rungs] == [16, 4]
    assert scheduler(load_config()) is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tune.metric": "eval/chosen_nll"}, r"set train\.eval_every \(validation passes\)"),
        (
            {"tune.metric": "eval/chosen_nll", "train.eval_every": 40},
            r"below train\.max_steps=40",
        ),
        ({"tune.metric": "loss/total", "train.checkpoint_every": 50}, r"set train\.report_every"),
    ],
)
def test_asha_without_intermediate_results_is_refused(overrides, message):
    cfg = load_config(overrides={"tune.scheduler": "asha", "train.max_steps": 40, **overrides})
    with pytest.raises(ValueError, match=r"tune\.scheduler=asha .*" + message):
        scheduler(cfg)


def test_a_validation_objective_without_a_validation_split_fails_before_ray_starts(tmp_path):
    from plot_ray.tune import run_sweep

    base = apply_overrides({}, {"data.output_dir": str(tmp_path), "tune.metric": "eval/x"})
    with pytest.raises(ValueError, match=r"tune\.metric=eval/x .* no validation split"):
        run_sweep(validate_config(base), base)


def test_an_evaluation_objective_needs_tune_evaluate_and_no_asha(tmp_path, synth_dir):
    from plot_ray.tune import run_sweep

    base = {"data.output_dir": str(tmp_path), "tune.metric": "evaluation/accuracy"}
    cases = [
        ({}, r"evaluation metric: set tune.evaluate=true"),
        ({"tune.evaluate": True, "eval.data_dir": str(tmp_path / "none")}, r"no such file"),
        (
            {
                "tune.evaluate": True,
                "eval.data_dir": str(synth_dir),
                "tune.scheduler": "asha",
                "train.eval_every": 1,
            },
            r"asha compares trials while they train",
        ),
    ]
    for overrides, message in cases:
        raw = apply_overrides({}, {**base, **overrides})
        with pytest.raises(ValueError, match=message):
            run_sweep(validate_config(raw), raw)


def _write_metrics(run_dir: Path, rows: list[dict]) -> str:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(run_dir)


def test_validation_curves_of_the_best_trial_per_method_come_from_its_metrics_file(tmp_path):
    from matplotlib.image import imread

    cfg = load_config(
        overrides={
            "tune.metric": "eval/chosen_nll",
            "tune.mode": "min",
            "tune.space": {"loss.method": {"grid": ["dpo", "sft"]}},
        }
    )

    def row(trial, method, final, logged):
        return {
            "param/loss.method": method,
            "param/train.seed": 0,
            "trial_id": trial,
            "status": "ok",
            "error": "",
            "metric/eval/chosen_nll": final,
            "run_dir": _write_metrics(tmp_path / trial, logged),
        }

    dpo_best = [
        {"step": 2, "loss/total": 1.0, "eval/chosen_nll": 3.0, "eval/loss_total": 0.9},
        {"step": 3, "loss/total": 0.8},  # no validation at this step
        {"step": 4, "eval/chosen_nll": 2.5, "eval/loss_total": 0.8},
        {"step": 4, "eval/chosen_nll": 2.0, "eval/loss_total": 0.7},  # a rerun step: this wins
    ]
    rows = [
        row("a", "dpo", 2.6, [{"step": 4, "eval/chosen_nll": 2.6, "eval/loss_total": 1.0}]),
        row("b", "dpo", 2.0, dpo_best),
        row("c", "sft", 1.5, [{"step": 4, "eval/chosen_nll": 1.5, "eval/loss_total": 0.5}]),
        # better, but it failed: not a candidate
        {**row("d", "sft", 0.1, []), "status": "error", "error": "RuntimeError: boom"},
    ]
    assert {m: r["trial_id"] for m, r in best_trials(rows, cfg).items()} == {"dpo": "b", "sft": "c"}
    curves = validation_curves(rows, cfg)
    assert curves["dpo"]["curves"] == {
        "eval/chosen_nll": ([2, 4], [3.0, 2.0]),
        "eval/loss_total": ([2, 4], [0.9, 0.7]),
    }
    assert curves["sft"]["curves"]["eval/chosen_nll"] == ([4], [1.5])

    result = write_report(tmp_path, rows, cfg, points=2, seconds=1.0)
    figure = tmp_path / "validation_curves.png"
    assert str(figure) in result.figures
    pixels = imread(figure)
    # two panels (the objective, the validation loss), 5.0 x 3.8 inches each at 120 dpi
    assert pixels.shape[:2] == (456, 1200)
    assert pixels[..., :3].std() > 0.05  # lines and text, not a blank canvas
    summary = (tmp_path / "summary.md").read_text()
    assert "## Figures" in summary and "[validation_curves.png](validation_curves.png)" in summary
    assert (
        "**dpo**" in summary and "- d {'loss.method': 'sft', 'train.seed': 0}: error: " in summary
    )


def _sweep_base(prepared_dir, tiny_model_dir, out: Path, **overrides) -> dict:
    """A raw sweep config over the session's prepared data and tiny model: 1-step trials."""
    return apply_overrides(
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
            "tune.metric": "eval/chosen_nll",
            "tune.mode": "min",
            "tune.output_dir": str(out),
            **overrides,
        },
    )


def _wait_for(find, proc, what: str, timeout: float = 150.0):
    """Poll ``find()`` until it returns something; fail if ``proc`` ends or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (rc {proc.returncode}) before {what}")
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def _file_state(run_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file of a run folder."""
    return {
        str(f.relative_to(run_dir)): (f.stat().st_size, f.stat().st_mtime_ns)
        for f in sorted(run_dir.rglob("*"))
        if f.is_file()
    }


@pytest.mark.slow
def test_a_sweep_killed_after_its_first_trial_resumes_only_the_others(
    ray_local, prepared_dir, tiny_model_dir, tmp_path
):
    from plot_ray.tune import run_sweep
    from plot_ray.tune.sweep import TRIAL_RESULT

    base = _sweep_base(
        prepared_dir,
        tiny_model_dir,
        tmp_path,
        **{
            # the method as a variant: a grid of named override sets, crossed with alpha;
            # DEFT's weight (a dotted key like any other) on for DPO, off for SFT
            "tune.space": {"loss.alpha": {"grid": [0.0, 0.5]}},
            "tune.variants": {
                "dpo": {"loss.method": "dpo", "loss.deft.weight": 0.3},
                "sft": {"loss.method": "sft", "loss.deft.weight": 0.0},
            },
            "tune.name": "grid",
            "tune.max_concurrent_trials": 1,
        },
    )
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(base))
    sweep, trials = tmp_path / "grid", tmp_path / "grid" / "trials"
    # `plot-ray tune` in its own process group, a driver on this session's Ray instance
    gcs = ray_local.get_runtime_context().gcs_address
    with (tmp_path / "killed_sweep.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plot_ray.cli", "tune", "--config", str(config)]
            + [f"cluster.address={gcs}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        first = _wait_for(
            lambda: next(trials.glob(f"*/{TRIAL_RESULT}"), None), proc, "a trial finished"
        ).parent
        first_files = _file_state(first)
        # Kill while the second trial trains, once Tune's saved state knows it.
        second = _wait_for(
            lambda: next((d for d in trials.iterdir() if d != first), None),
            proc,
            "a second trial started",
        )
        trial_id = second.name.removeprefix("trial_")
        _wait_for(
            lambda: any(
                trial_id in f.read_text() for f in (sweep / "ray_tune").glob("experiment_state*")
            ),
            proc,
            "Tune saved the second trial",
        )
        assert not (second / TRIAL_RESULT).exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    result = run_sweep(validate_config(base), base, resume=True)

    table = pq.read_table(result.table).to_pylist()
    assert len(table) == 4 and all(r["status"] == "ok" for r in table), table
    params = {(json.loads(r["param/loss.alpha"]), json.loads(r["param/variant"])) for r in table}
    # the trials of an uninterrupted sweep, each trained once
    assert params == {(0.0, "dpo"), (0.0, "sft"), (0.5, "dpo"), (0.5, "sft")}
    assert _file_state(first) == first_files  # the finished trial was not run again
    assert len((first / "attempts.jsonl").read_text().splitlines()) == 1
    killed = next(r for r in table if r["run_dir"] == str(second))  # restarted, same trial
    assert (second / "summary.json").is_file() and killed["metric/step"] == 1
    for row in table:
        # each trial's numbers come from its own run folder and config
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert Path(row["run_dir"]).parent == trials
        assert summary["config"]["loss"]["alpha"] == json.loads(row["param/loss.alpha"])
        assert summary["config"]["loss"]["method"] == json.loads(row["param/variant"])
        assert row["metric/loss/alpha"] == json.loads(row["param/loss.alpha"])
        weight = summary["config"]["loss"]["deft"]["weight"]
        if summary["config"]["loss"]["method"] == "dpo":  # trained with DEFT's term
            assert weight == row["metric/loss/deft_weight"] == 0.3
            assert -1 <= row["metric/loss/deft"] <= 1
            assert row["metric/loss/total"] == pytest.approx(
                row["metric/loss/vanilla"]
                + row["metric/loss/alpha"] * row["metric/loss/plot"]
                + 0.3 * row["metric/loss/deft"],
                rel=1e-5,
            )
        else:  # no DEFT term built, none logged
            assert weight == 0.0
            assert row.get("metric/loss/deft") is None
            assert row.get("metric/loss/deft_weight") is None
        assert row["metric/eval/chosen_nll"] == pytest.approx(
            summary["last_metrics"]["eval/chosen_nll"]
        )
    # The resumed sweep ran its three trials one after another in one process: with no
    # scheduler a finished trial's process (its imports done) runs the next trial.
    results = [
        json.loads(f.read_text().splitlines()[-1])
        for f in (sweep / "ray_tune").glob("*/result.json")
    ]
    pids = {r["trial_id"]: r["pid"] for r in results}
    assert sorted(pids) == sorted(Path(r["run_dir"]).name.removeprefix("trial_") for r in table)
    resumed = {pid for trial, pid in pids.items() if trial != first.name.removeprefix("trial_")}
    assert len(resumed) == 1 and pids[first.name.removeprefix("trial_")] not in resumed
    text = (sweep / "summary.md").read_text()
    assert "Best configuration per method" in text and "**dpo**" in text and "**sft**" in text
    for figure in ("metric_vs_alpha.png", "validation_curves.png"):
        assert (sweep / figure).stat().st_size > 1000 and f"({figure})" in text

    # --resume of a finished sweep reruns no trial and rebuilds the same table
    written = {r["run_dir"]: _file_state(Path(r["run_dir"])) for r in table}
    again = run_sweep(validate_config(base), base, resume=True)
    assert sorted(r["run_dir"] for r in again.trials) == sorted(written)
    assert all(r["status"] == "ok" for r in again.trials)
    assert {d: _file_state(Path(d)) for d in written} == written
    with pytest.raises(FileExistsError, match="pass --resume"):
        run_sweep(validate_config(base), base)


@pytest.mark.slow
def test_a_failing_trial_is_reported_and_asha_stops_a_weak_one(
    ray_local, prepared_dir, tiny_model_dir, synth_dir, tmp_path
):
    from plot_ray.train.trainer import read_metrics
    from plot_ray.tune import run_sweep

    # One sweep, ASHA on a validation pass every step, three variants, two trials at a time:
    # - "sane" (lr 1e-4) finishes its 3 steps and sets ASHA's bar at step 1; the objective is
    #   validation, and tune.evaluate adds an evaluation of its final model to its result;
    # - "huge" passes validation but fails in training (beside "sane"): reported, not lost;
    # - "wreck" (lr 0.05: one step wrecks it) starts when "huge" has failed, long after "sane"
    #   set the bar, falls below it at step 1 and is stopped, and its Ray Train workers give
    #   their CPUs back.
    sweep = _sweep_base(
        prepared_dir,
        tiny_model_dir,
        tmp_path,
        **{
            "train.max_steps": 3,
            "train.eval_every": 1,
            "train.warmup_steps": 0,
            "train.save_hf_model": True,
            "tune.variants": {
                "sane": {"train.learning_rate": 1.0e-4},
                "huge": {"train.learning_rate": 1.0e-4, "train.micro_batch_size": 100_000},
                "wreck": {"train.learning_rate": 0.05},
            },
            "tune.scheduler": "asha",
            "tune.max_concurrent_trials": 2,  # trials start in this order
            "tune.name": "asha",
            "tune.evaluate": True,
            "eval.data_dir": str(synth_dir),
            "eval.tasks": ["harmful", "logic"],
            "eval.attacks": ["direct_request"],
            "eval.num_behaviors": 4,
            "eval.num_logic": 2,
            "eval.generation.max_new_tokens": 16,
        },
    )
    result = run_sweep(validate_config(sweep), sweep)
    rows = {r["param/variant"]: r for r in result.trials}
    assert [rows[v]["status"] for v in ("sane", "wreck", "huge")] == ["ok", "stopped", "error"]
    assert "no complete micro-batch" in rows["huge"]["error"]
    summary = (tmp_path / "asha" / "summary.md").read_text()
    assert "did not finish" in summary and "no complete micro-batch" in summary
    evaluation = json.loads(
        (Path(rows["sane"]["run_dir"]) / "evaluation" / "metrics.json").read_text()
    )
    trial = evaluation["models"]["trial"]
    assert (
        rows["sane"]["metric/evaluation/asr/direct_request"]
        == trial["harmful"]["asr"]["direct_request"]["asr"]
    )
    assert rows["sane"]["metric/evaluation/accuracy"] == trial["logic"]["accuracy"]

    assert rows["sane"]["metric/step"] == 3
    stopped = rows["wreck"]
    assert stopped["metric/step"] == 1
    assert stopped["metric/eval/chosen_nll"] > rows["sane"]["metric/eval/chosen_nll"]
    assert max(m["step"] for m in read_metrics(Path(stopped["run_dir"]))) < 3
    assert "stopped at step 1" in summary
    # Tune ended the stopped trial's actor; without plot-ray's release its workers' placement
    # group (0.5 CPU) would stay reserved until this session's driver exits
    deadline = time.monotonic() + 30
    while ray_local.available_resources().get("CPU", 0) < 1.99 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray_local.available_resources().get("CPU", 0) >= 1.99
