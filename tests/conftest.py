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

SYNTH_SCALE = 0.1
TINY_VOCAB = 1024


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

    Briefly warmed up so that generation is not pure noise; random weights otherwise.
    """
    from plot_ray.models.tiny import build_from_corpus

    out = tmp_path_factory.mktemp("tiny-model")
    build_from_corpus(synth_dir, out, vocab_size=TINY_VOCAB, warmup_steps=20, progress=False)
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
