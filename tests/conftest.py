"""Shared fixtures: one local Ray instance per test session, a small synthetic benchmark and a
tiny real model built from it (once per session, in a temporary folder).

Everything here is real: Ray, tokenizers, transformers models. Markers:
``slow`` (seconds to minutes) and ``vllm`` (starts a vLLM engine) still run in ``make test``;
``make test-fast`` deselects them for a quick inner loop.
"""

from __future__ import annotations

import os

import pytest

# Test settings for Ray on a small shared CPU box (see shared/ENVIRONMENT.md). They must be in the
# environment before Ray starts, and they are inherited by Ray's workers.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

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
