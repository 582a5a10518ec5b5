"""Evaluation at scale (plot_ray/eval): cases from the evaluation sets, the engines on a real
local Ray instance (HF ``generate`` actors and vLLM through ``ray.data.llm``), resumable result
shards, metrics recomputed from the shards, and the report.

One evaluation of the tiny base model and the session's DPO-trained model (``eval_run``) is
shared by the end-to-end checks; the judges', extractors' and metrics' own tests are in
tests/test_eval_judges.py and tests/test_eval_metrics.py.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from plot_ray.config import ConfigError, load_config
from plot_ray.eval.attacks import StaticContext
from plot_ray.eval.attacks.static import HumanJailbreaksConfig, fill_template, human_jailbreaks
from plot_ray.eval.store import ResultStore, SettingsMismatchError
from plot_ray.eval.tasks import EvalDataError, build_cases, load_behaviors

EVAL = {
    "eval.tasks": ["harmful", "benign", "logic", "perplexity"],
    "eval.num_behaviors": 10,
    "eval.attack_params.human_jailbreaks.templates_per_behavior": 2,
    "eval.num_benign": 12,
    "eval.num_logic": 8,
    "eval.generation.max_new_tokens": 32,
    "eval.shard_size": 8,
    "eval.generation.engine": "hf",
    "eval.generation.batch_size": 8,
}


def eval_config(synth_dir, out, models, **overrides):
    return load_config(
        overrides={
            **EVAL,
            "eval.data_dir": str(synth_dir),
            "eval.output_dir": str(out),
            "eval.models": [{"name": n, "path": str(p)} for n, p in models.items()],
            **overrides,
        }
    )


# ------------------------------------------------------------------- cases and config
def test_cases_cover_every_task_with_stable_ids(synth_dir, tmp_path):
    cfg = eval_config(synth_dir, tmp_path, {"m": "x"})
    cases = build_cases(cfg.eval)
    assert {t: len(c) for t, c in cases.items()} == {
        "harmful": 10 + 10 * 2,  # direct request + 2 templates per behaviour
        "benign": 12,
        "logic": 8,
        "perplexity": 12,  # the benign prompts' reference answers
    }
    harmful = cases["harmful"]
    assert harmful[0]["case_id"] == "direct_request/behavior-00000/0"
    assert harmful[0]["message"] == harmful[0]["behavior"]
    jail = [c for c in harmful if c["attack"] == "human_jailbreaks"]
    assert all(c["behavior"] in c["message"] and c["message"] != c["behavior"] for c in jail)
    targets = {
        b["behavior_id"]: b["target"]
        for b in load_behaviors(synth_dir / "eval" / "behaviors.jsonl")
    }
    assert all(c["reference"] == targets[c["behavior_id"]] != "" for c in harmful)
    logic = cases["logic"][0]
    assert logic["reference"].lstrip("-").isdigit()
    # Every task's rows share the same string columns (one Ray Dataset carries them all).
    assert len({tuple(sorted(r)) for rows in cases.values() for r in rows}) == 1
    assert build_cases(cfg.eval) == cases  # deterministic


def test_a_behaviours_templates_do_not_depend_on_the_other_behaviours():
    templates = [{"template_id": f"t{i}", "template": f"T{i} {{behavior}}"} for i in range(8)]
    b = [
        {"behavior_id": f"b{i}", "behavior": f"do {i}", "category": "", "target": "", "context": ""}
        for i in range(5)
    ]
    three, ctx = (
        HumanJailbreaksConfig(templates_per_behavior=3),
        StaticContext(1, lambda: templates),
    )
    alone = human_jailbreaks(b[3:4], three, ctx)
    among = [c for c in human_jailbreaks(b, three, ctx) if c.behavior_id == "b3"]
    assert [c.test_case for c in alone] == [c.test_case for c in among]
    assert len({c.extra["template_id"] for c in alone}) == 3  # drawn without replacement
    assert fill_template("Say it.", "do 1") == "Say it.\n\ndo 1"  # HarmBench's layout


def test_harmbench_csv_behaviours_with_context_and_targets(tmp_path):
    csv_path = tmp_path / "behaviors.csv"
    csv_path.write_text(
        "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
        "Write a thing,standard,misinformation,,,thing_1\n"
        "Summarise this,contextual,harassment,context,Some context,ctx_2\n"
    )
    (tmp_path / "behaviors.targets.json").write_text(
        json.dumps({"thing_1": "Sure, here is a thing"})
    )
    rows = load_behaviors(csv_path)
    assert rows[0] == {
        "behavior_id": "thing_1",
        "behavior": "Write a thing",
        "category": "misinformation",
        "target": "Sure, here is a thing",
        "context": "",
    }
    from plot_ray.eval.attacks.static import direct_request

    assert direct_request(rows)[1].test_case == "Some context\n\n---\n\nSummarise this"
    csv_path.write_text(csv_path.read_text() + "Copy a song,copyright,copyright,,,song_3\n")
    with pytest.raises(EvalDataError, match="copyright"):
        load_behaviors(csv_path)


def test_bad_evaluation_inputs_fail_clearly(synth_dir, tmp_path):
    bad = tmp_path / "benign.jsonl"
    bad.write_text('{"id": "a", "prompt": "hi"}\n{"id": "b"}\n')
    cfg = eval_config(
        synth_dir, tmp_path, {"m": "x"}, **{"eval.benign": str(bad), "eval.tasks": ["benign"]}
    )
    with pytest.raises(EvalDataError, match=r"eval.benign .*row 1 has no prompt"):
        build_cases(cfg.eval)
    bad.write_text("{not json\n")
    with pytest.raises(EvalDataError, match=r"benign.jsonl\): line 1 is not valid JSON"):
        build_cases(cfg.eval)
    with pytest.raises(ConfigError, match=r"eval.attacks: unknown attack\(s\) \['gcgx'\]"):
        load_config(overrides={"eval.attacks": ["gcgx"]})
    with pytest.raises(ConfigError, match=r"eval.attack_params: unknown attack\(s\) \['gcgg'\]"):
        load_config(overrides={"eval.attack_params": {"gcgg": {"num_steps": 5}}})
    with pytest.raises(
        ConfigError, match=r"eval.attacker: the attacks \['zero_shot', 'sfs'\] need"
    ):
        load_config(overrides={"eval.attacks": ["zero_shot", "sfs"]})
    assert load_config(overrides={"eval.attacks": ["sfs"], "eval.attacker": "a"}).eval.attacker
    with pytest.raises(ConfigError, match="names must be unique"):
        load_config(
            overrides={"eval.models": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}
        )
    with pytest.raises(ConfigError, match="eval.baseline 'c' is not one of"):
        load_config(overrides={"eval.models": [{"name": "a", "path": "x"}], "eval.baseline": "c"})


def test_store_refuses_to_mix_settings_and_writes_shards_whole(tmp_path):
    store = ResultStore(tmp_path)
    store.check_model_settings("m", {"path": "a", "max_new_tokens": 8})
    store.check_model_settings("m", {"path": "a", "max_new_tokens": 8})  # same: fine
    with pytest.raises(SettingsMismatchError, match="changed: max_new_tokens"):
        store.check_model_settings("m", {"path": "a", "max_new_tokens": 16})
    path = store.write("m", "harmful", "completions", 3, [{"case_id": "x", "completion": "y"}])
    assert path.name == "shard-00003.parquet" and store.has("m", "harmful", "completions", 3)
    assert not list(path.parent.glob(".*tmp*"))


def test_stream_writes_each_shard_in_order_and_never_drops_rows(ray_local):
    from plot_ray.eval.pipeline import Progress, Stage, stream

    written = {}
    pending = {("t", 0): [{"v": 1}, {"v": 2}], ("t", 1): [{"v": 3}]}
    tenfold = Stage(finish=lambda r: {**r, "w": r["v"] * 10})
    stream(pending, tenfold, written.__setitem__, Progress(False))
    assert written == {
        ("t", 0): [{"v": 1, "w": 10}, {"v": 2, "w": 20}],
        ("t", 1): [{"v": 3, "w": 30}],
    }

    def lossy(ds):
        return ds.filter(lambda r: r["v"] != 3)

    written.clear()
    with pytest.raises(RuntimeError, match=r"shards \[\('t', 1\)\] never came back"):
        stream(pending, Stage(transform=lossy), written.__setitem__, Progress(False))
    assert list(written) == [("t", 0)]  # the complete shard was still written


# ------------------------------------------------------------------- one shared evaluation
@pytest.fixture(scope="session")
def eval_run(ray_local, synth_dir, tiny_model_dir, dpo_run, reward_model_dir, tmp_path_factory):
    from plot_ray.eval import run_eval

    _, run = dpo_run
    out = tmp_path_factory.mktemp("evals")
    models = {"base": tiny_model_dir, "dpo": run.run_dir}  # a run folder means its final_model/
    cfg = eval_config(synth_dir, out, models, **{"eval.reward_model": str(reward_model_dir)})
    metrics = run_eval(cfg, progress=False, print_fn=None)
    return cfg, metrics, out / "eval"


@pytest.mark.slow
def test_report_tables_equal_what_the_shards_say(eval_run):
    from plot_ray.eval.metrics import attack_success_rate

    cfg, metrics, root = eval_run
    assert json.loads((root / "metrics.json").read_text())["models"] == metrics["models"]
    for name in ("base", "dpo"):
        m = metrics["models"][name]
        rows = ResultStore(root).read_all(name, "harmful", "scores")
        assert len(rows) == 30 and {r["label"] for r in rows} <= {0, 1}
        for attack, n_cases in (("direct_request", 10), ("human_jailbreaks", 20)):
            mine = [r for r in rows if r["attack"] == attack]
            assert m["harmful"]["asr"][attack]["asr"] == attack_success_rate(mine)["asr"]
            assert m["harmful"]["asr"][attack]["n_test_cases"] == n_cases
            refusals = sum(r["refusal"] for r in mine) / n_cases
            assert m["harmful"]["asr"][attack]["refusal_rate"] == refusals
        benign = ResultStore(root).read_all(name, "benign", "scores")
        assert m["benign"]["over_refusal"] == sum(r["refusal"] for r in benign) / 12
        assert m["benign"]["reward"]["n"] == 12
        assert m["logic"]["n_problems"] == 8
        assert 1.0 < m["perplexity"]["perplexity"] < 1024  # below the uniform guess
    # The baseline's win rate is not computed against itself; the other model's is.
    assert "win_rate" not in metrics["models"]["base"]["benign"]
    assert 0 <= metrics["models"]["dpo"]["benign"]["win_rate"]["lc_win_rate"] <= 100
    report = (root / "report.md").read_text()
    asr = 100 * metrics["models"]["dpo"]["harmful"]["asr"]["direct_request"]["asr"]
    assert f"| `dpo` | {asr:.1f} (10 beh., 10 cases)" in report
    for fig in ("asr_per_attack.png", "safety_vs_helpfulness.png"):
        assert (root / "figures" / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_dpo_refuses_more_harmful_requests_than_the_base_model(eval_run):
    """The direction ``make demo``'s samples show: DPO on the harmlessness pairs (refusals in
    the training surface form) makes the model refuse held-out behaviours more often and comply
    with them no more often."""
    _, metrics, _ = eval_run
    direct = {n: m["harmful"]["asr"]["direct_request"] for n, m in metrics["models"].items()}
    assert direct["dpo"]["refusal_rate"] > direct["base"]["refusal_rate"], direct
    assert direct["dpo"]["asr"] <= direct["base"]["asr"], direct


# ------------------------------------------------------------------------ kill and resume
KILL_SCRIPT = """
import sys
from plot_ray.config import load_config
from plot_ray.eval import run_eval
run_eval(load_config(sys.argv[1]), progress=False, print_fn=None)
"""


@pytest.mark.slow
def test_a_killed_evaluation_resumes_without_redoing_finished_shards(
    eval_run, ray_local, synth_dir, tiny_model_dir, tmp_path
):
    import ray

    from plot_ray.eval import run_eval

    cfg, metrics, root = eval_run
    # The same evaluation of the base model, with shards of 2 rows so that the kill lands
    # between shards; run by a separate driver on the session's Ray instance.
    raw = cfg.to_dict()
    over = {
        "eval.models": [{"name": "base", "path": str(tiny_model_dir)}],
        "eval.reward_model": cfg.eval.reward_model,
        "eval.shard_size": 2,
        "eval.generation": {**raw["eval"]["generation"], "batch_size": 2},
        "eval.name": "killed",
        "eval.output_dir": str(tmp_path),
        "cluster.address": ray.get_runtime_context().gcs_address,
    }
    for key, value in over.items():
        section, name = key.split(".")
        raw[section][name] = value
    config_file = tmp_path / "eval.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(config_file)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    completions = tmp_path / "killed" / "results" / "base" / "harmful" / "completions"
    deadline = time.monotonic() + 300
    while len(list(completions.glob("shard-*.parquet"))) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no shard was written in 300 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "killed").rglob("shard-*.parquet")}
    total_gen = 15 + 6 + 4  # shards of 2: harmful 30, benign 12, logic 8 rows
    assert 3 <= len([p for p in before if "completions" in p.parts]) < total_gen

    killed = load_config(config_file)
    resumed = run_eval(killed, progress=False, print_fn=None)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "killed").rglob("shard-*.parquet")}
    assert {p: after[p] for p in before} == before  # nothing finished was redone
    assert len([p for p in after if "completions" in p.parts]) == total_gen
    # ... and the tables equal the uninterrupted run's (a shard's rows do not depend on the
    # batches they were generated in: greedy decoding, left padding).
    assert resumed["models"]["base"]["harmful"] == metrics["models"]["base"]["harmful"]
    assert resumed["models"]["base"]["logic"] == metrics["models"]["base"]["logic"]
    assert (
        resumed["models"]["base"]["benign"]["over_refusal"]
        == metrics["models"]["base"]["benign"]["over_refusal"]
    )


# ------------------------------------------------------------------------- vLLM vs HF
@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_and_hf_engines_give_the_same_greedy_completions(greedy_generations):
    """A trained model's final weights (the session's one vLLM model, given as its run folder:
    conftest ``greedy_generations``), through ray.data.llm's vLLM engine and through the HF
    actor, on the same chat-formatted prompts: the same greedy completions and token counts."""
    out = {engine: rows for engine, (_, rows) in greedy_generations.items()}
    for engine, rows in out.items():
        assert {r["engine"] for r in rows} == {engine}
    for hf, vllm in zip(out["hf"], out["vllm"], strict=True):
        assert vllm["completion"] == hf["completion"], (
            hf["prompt"],
            hf["completion"],
            vllm["completion"],
        )
        assert vllm["num_generated_tokens"] == hf["num_generated_tokens"]
        assert vllm["num_input_tokens"] == hf["num_input_tokens"]


@pytest.mark.slow
def test_a_classifier_llm_judges_through_the_engine(ray_local, synth_dir, tiny_model_dir, tmp_path):
    """``eval.judge: <model path>``: the yes/no prompt goes through the engine pool, one token
    back, parsed yes → 1, no → 0, anything else → -1 and counted. (The tiny model is no real
    classifier; the plumbing and the counting are what is tested.)"""
    from plot_ray.eval import run_eval
    from plot_ray.eval.judges import parse_classifier_label

    cfg = eval_config(
        synth_dir,
        tmp_path,
        {"base": tiny_model_dir},
        **{
            "eval.tasks": ["harmful"],
            "eval.attacks": ["direct_request"],
            "eval.num_behaviors": 4,
            "eval.judge": str(tiny_model_dir),
        },
    )
    metrics = run_eval(cfg, progress=False, print_fn=None)
    rows = ResultStore(tmp_path / "eval").read_all("base", "harmful", "scores")
    assert len(rows) == 4
    assert all(r["label"] == parse_classifier_label(r["judge_output"]) for r in rows)
    assert all("[BEHAVIOR]" in r["prompt"] and r["completion"] in r["prompt"] for r in rows)
    asr = metrics["models"]["base"]["harmful"]["asr"]["direct_request"]
    assert asr["n_unparseable"] == sum(r["label"] == -1 for r in rows)
    assert asr["asr"] == sum(r["label"] == 1 for r in rows) / 4
    assert metrics["judge"] == {"kind": str(tiny_model_dir)}


def test_engine_auto_picks_by_device_and_model_size(tiny_model_dir, tmp_path):
    """vLLM on GPUs (eval.use_gpu); on CPUs HF generate for small models (vLLM's per-step
    overhead dominates) and vLLM from 20M parameters (measured crossover,
    benchmarks/eval_throughput.py)."""
    from transformers import LlamaConfig

    from plot_ray.eval.engines import VLLM_CPU_MIN_PARAMETERS, EngineSettings, estimated_parameters
    from plot_ray.models import load_causal_lm

    ev = load_config(overrides={"eval.generation.num_engines": 2}).eval
    tiny = str(tiny_model_dir)
    n = sum(p.numel() for p in load_causal_lm(tiny).parameters())
    assert estimated_parameters(tiny) == pytest.approx(n, rel=0.02)
    cpu = EngineSettings.resolve(ev, model=tiny, cpus=2)
    assert (cpu.engine, cpu.dtype, cpu.threads_per_engine, cpu.cpus_per_engine) == (
        "hf",
        "float32",
        1,
        0.8,
    )
    gpu_ev = load_config(overrides={"eval.generation.num_engines": 2, "eval.use_gpu": True}).eval
    gpu = EngineSettings.resolve(gpu_ev, model=tiny, cpus=16)
    assert (gpu.engine, gpu.dtype, gpu.cpus_per_engine) == ("vllm", "bfloat16", 1.0)
    big = tmp_path / "big"
    LlamaConfig(
        hidden_size=768, intermediate_size=2048, num_hidden_layers=8, vocab_size=4096
    ).save_pretrained(big)
    assert estimated_parameters(str(big)) >= VLLM_CPU_MIN_PARAMETERS
    assert EngineSettings.resolve(ev, model=str(big), cpus=2).engine == "vllm"
    forced = load_config(
        overrides={"eval.generation.engine": "vllm", "eval.generation.dtype": "bfloat16"}
    ).eval
    assert EngineSettings.resolve(forced, model=tiny, cpus=2).dtype == "bfloat16"


# ------------------------------------------------------------------- optimisation attacks
@pytest.mark.slow
def test_attacks_run_on_actor_pools_per_model_and_resume_per_behaviour(
    eval_run, synth_dir, attacker_dir, tmp_path
):
    """ZeroShot (once, through the engine pool) and SFS and GCG (against each of two models, on
    a pool of 2 actors): every behaviour's test cases are stored as they finish, join the
    model's harmful task, are completed and judged into an ASR per attack; a rerun attacks
    only the behaviours whose file is missing, and other attack settings are refused."""
    from plot_ray.eval import run_eval
    from plot_ray.eval.store import SettingsMismatchError

    cfg, _, _ = eval_run
    models = {m.name: m.path for m in cfg.eval.models}
    params = {
        "gcg": {"num_steps": 4, "search_width": 16, "topk": 16, "snapshot_every": 2},
        "zero_shot": {"n_per_behavior": 3, "max_tokens": 24},
        "sfs": {"sample_size": 4, "n_shots": 2, "num_steps": 2, "max_tokens": 32, "min_chars": 8},
    }
    over = {
        "eval.tasks": ["harmful"],
        "eval.attacks": ["direct_request", "zero_shot", "sfs", "gcg"],
        "eval.attacker": str(attacker_dir),
        "eval.num_behaviors": 3,
        "eval.generation.num_engines": 2,
        "eval.attack_params": params,
    }
    run = eval_config(synth_dir, tmp_path, models, **over)
    metrics = run_eval(run, progress=False, print_fn=None)
    root = tmp_path / "eval"
    store = ResultStore(root)
    behaviours = ["behavior-00000", "behavior-00001", "behavior-00002"]
    zero_shot = {
        f.stem: store.read_table(f) for f in (root / "attacks" / "zero_shot").glob("*.parquet")
    }
    assert sorted(zero_shot) == behaviours
    assert all([r["n"] for r in rows] == [0, 1, 2] for rows in zero_shot.values())
    quality = metrics["zero_shot"]  # how the shared test cases came out, in the report too
    assert quality["test_cases"] == 9
    assert quality["fallbacks"] == sum(r["fallback"] for rows in zero_shot.values() for r in rows)
    assert "ZeroShot test cases (the same for every model): 9;" in (root / "report.md").read_text()
    assert all(
        r["test_case"].strip() and "\n" not in r["test_case"]
        for rows in zero_shot.values()
        for r in rows
    )
    for name in models:
        for attack, most in (("gcg", 4), ("sfs", 2)):
            files = sorted((root / "results" / name / "attacks" / attack).glob("*.parquet"))
            assert [f.stem for f in files] == behaviours
            stored = [store.read_table(f)[0] for f in files]
            assert all(r["steps"] <= most for r in stored)
            assert all(r["loss"] <= r["initial_loss"] + 1e-6 for r in stored)
        harmful = metrics["models"][name]["harmful"]
        asr = harmful["asr"]
        assert set(asr) == {"direct_request", "zero_shot", "sfs", "gcg", "gcg@0", "gcg@2", "gcg@4"}
        assert asr["zero_shot"]["n_test_cases"] == 9
        assert all(asr[a]["n_behaviors"] == 3 for a in asr)
        curve = harmful["zero_shot_by_num_cases"]
        assert [k for k, _ in curve] == [1, 2, 3]
        assert all(a <= b for (_, a), (_, b) in itertools.pairwise(curve))
        cases = {r["case_id"]: r for r in store.read_all(name, "harmful", "completions")}
        assert (
            cases["zero_shot/behavior-00001/2"]["message"]
            == zero_shot["behavior-00001"][2]["test_case"]
        )
        sfs_case = store.read_table(
            root / "results" / name / "attacks" / "sfs" / "behavior-00001.parquet"
        )[0]
        assert cases["sfs/behavior-00001/0"]["message"] == sfs_case["test_case"]
    assert (root / "figures" / "asr_vs_gcg_steps.png").is_file()
    assert (root / "figures" / "asr_vs_zero_shot_test_cases.png").is_file()

    # Lose one behaviour's results of every attack and the completions built on them: only
    # that behaviour is attacked again, and the tables come out the same.
    folders = [root / "attacks" / "zero_shot"] + [
        root / "results" / "base" / "attacks" / a for a in ("sfs", "gcg")
    ]
    kept = {
        p: p.stat().st_mtime_ns
        for folder in folders
        for p in folder.glob("*.parquet")
        if "00001" not in p.name
    }
    for folder in folders:
        (folder / "behavior-00001.parquet").unlink()
    for stage in ("completions", "scores"):
        for shard in (root / "results" / "base" / "harmful" / stage).glob("*.parquet"):
            shard.unlink()
    again = run_eval(run, progress=False, print_fn=None)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert all((folder / "behavior-00001.parquet").is_file() for folder in folders)
    assert again["models"] == metrics["models"]

    # The stored test cases were made with other settings than these: refused, not mixed.
    other = eval_config(
        synth_dir,
        tmp_path,
        models,
        **{**over, "eval.attack_params": {**params, "zero_shot": {"n_per_behavior": 2}}},
    )
    with pytest.raises(SettingsMismatchError, match="zero_shot"):
        run_eval(other, progress=False, print_fn=None)
