"""A tiny attacker LM for the generation attacks (ZeroShot, SFS) on the synthetic benchmark.

HarmBench's generation attacks need an attacker model that, asked for prompts that would make
a target model carry out a behaviour, answers with a numbered list of rewritten requests. No
hub model is reachable here, so :func:`build_attacker` trains a tiny Llama on the benchmark's
``attacker/train.jsonl`` (see :mod:`plot_ray.synth.attacker`): the same tokenizer builder,
model builder and causal-LM loop (:func:`plot_ray.models.tiny.warm_up`) as the base model.
Real runs pass any Hugging Face model as the attacker instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from plot_ray.models.tiny import TinyModelSpec
from plot_ray.models.training import TrainSettings, run_fields, write_summary

__all__ = ["ATTACKER_CORPUS", "ATTACKER_SUMMARY", "build_attacker"]

ATTACKER_CORPUS = Path("attacker") / "train.jsonl"
ATTACKER_SUMMARY = "plot_ray_attacker.json"


def build_attacker(
    data_dir: str | Path,
    out: str | Path,
    *,
    steps: int = 1500,
    tokenizer_from: str | Path | None = None,
    vocab_size: int = 4096,
    spec: TinyModelSpec | None = None,
    batch_size: int = 16,
    lr: float = 3e-3,
    max_length: int = 384,
    seed: int = 0,
    num_threads: int | None = None,
    progress: bool = True,
) -> dict:
    """Train a tiny causal LM on ``{data_dir}/attacker/train.jsonl`` and save it to ``out``.

    ``tokenizer_from``: a model folder (or hub name) whose tokenizer to reuse (the base
    model's, typically); without it a byte-level BPE tokenizer of ``vocab_size`` is trained on
    the benchmark's training text, exactly as ``plot-ray build-model`` does. Each transcript is
    rendered in the chat template (user: the attacker prompt; assistant: the numbered
    rewrites) and trained on for ``steps`` × ``batch_size`` sequences of at most
    ``max_length`` tokens. ``num_threads`` sets torch's intra-op threads for the build and
    restores the previous count afterwards.

    ``out`` receives the weights (safetensors), the tokenizer and :data:`ATTACKER_SUMMARY`;
    the returned dict is that summary (losses, sizes, seconds).
    """
    from plot_ray.models.loading import load_tokenizer
    from plot_ray.models.tiny import (
        build_tiny_model,
        build_tokenizer,
        corpus_texts,
        save_model,
        torch_threads,
        warm_up,
    )

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    corpus = Path(data_dir) / ATTACKER_CORPUS
    if not corpus.is_file():
        raise FileNotFoundError(
            f"attacker corpus {corpus} not found: regenerate the benchmark with a plot-ray "
            "version that writes attacker/train.jsonl (`plot-ray synth --out DIR`)"
        )
    started = time.perf_counter()
    spec = spec or TinyModelSpec()
    with corpus.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    if tokenizer_from is not None:
        tokenizer = load_tokenizer(str(tokenizer_from))
    else:
        tokenizer = build_tokenizer(corpus_texts(data_dir, exclude=()), vocab_size=vocab_size)
    model = build_tiny_model(tokenizer, spec, seed=seed)
    settings = TrainSettings(steps, batch_size, lr, max_length, seed)
    with torch_threads(num_threads):
        # TrainSettings' fields are warm_up's training arguments.
        losses = warm_up(model, tokenizer, rows, **asdict(settings), progress=progress)
    out = save_model(model, tokenizer, out)
    fields = {
        **run_fields(model, tokenizer, spec, tokenizer_from, settings),
        "corpus_rows": len(rows),
    }
    return write_summary(
        out, ATTACKER_SUMMARY, fields, losses=losses, started=started, data_dir=data_dir
    )
