"""The training loop and the build summary that the tiny-model builders share.

The base model and the attacker (causal LM, :func:`plot_ray.models.tiny.warm_up`) and the reward
model (Bradley-Terry, :func:`plot_ray.models.reward.build_reward_model`) train the same way and
differ only in what one item is and what a batch's loss is: :func:`train_steps` runs the steps,
the builders pass the loss. Each builder writes its summary with :func:`write_summary`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = [
    "TrainSettings",
    "pad_right",
    "run_fields",
    "tail_mean",
    "train_steps",
    "write_summary",
]

Item = TypeVar("Item")


@dataclass(frozen=True)
class TrainSettings:
    """One build's training run: ``steps`` optimiser steps of ``batch_size`` items each at a
    peak learning rate ``lr``, sequences cut to ``max_length`` tokens (by the builder's
    encoding), batches drawn with ``seed``. The summaries record all five."""

    steps: int
    batch_size: int
    lr: float
    max_length: int
    seed: int


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int):
    """``[B, T]`` ``input_ids`` and ``attention_mask`` (both int64) padded on the right.

    Right padding leaves every real token's position and (causal) attention as in an unpadded
    forward, so a text's loss or reward does not depend on what it is batched with; a
    sequence-classification head then pools the rightmost non-pad token, the text's last.
    """
    import torch

    width = max(1, max(map(len, sequences)))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return ids, mask


def train_steps(
    model,
    items: Sequence[Item],
    batch_loss: Callable[[list[Item]], tuple[torch.Tensor, dict[str, float]]],
    settings: TrainSettings,
    *,
    weight_decay: float,
    desc: str,
    progress: bool = True,
) -> dict[str, list[float]]:
    """``settings.steps`` AdamW steps on ``batch_loss`` over batches drawn from ``items``, in
    this process; ``desc`` names the progress bar.

    Each step draws ``min(settings.batch_size, len(items))`` distinct items uniformly with
    ``random.Random(settings.seed)`` and calls ``batch_loss(batch)``, which returns
    ``(loss, metrics)``: the scalar tensor to minimise and the floats to record for the step
    (e.g. the batch accuracy). Gradients are clipped to norm 1; the learning rate warms up
    linearly over the first 5% of the steps, then decays to 0 on a cosine. The model trains in
    train mode and is left in eval mode.

    Returns the per-step values, ``settings.steps`` floats each:
    ``{"loss": [...], <metric>: [...]}``.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    if not items:
        raise ValueError(f"{desc}: nothing to train on")
    steps, batch_size = settings.steps, settings.batch_size
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
    model.train()
    history: dict[str, list[float]] = {"loss": []}
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=2)
    for _ in bar:
        loss, metrics = batch_loss(rng.sample(items, min(batch_size, len(items))))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        for name, value in {"loss": float(loss.detach()), **metrics}.items():
            history.setdefault(name, []).append(value)
        bar.set_postfix({k: f"{v[-1]:.3f}" for k, v in history.items()}, refresh=False)
    model.eval()
    return history


def tail_mean(values: Sequence[float], n: int = 10) -> float | None:
    """Mean of the last ``n`` values (None for none): a less noisy 'final' loss than the last."""
    return sum(values[-n:]) / len(values[-n:]) if values else None


def run_fields(model, tokenizer, spec, tokenizer_from, settings: TrainSettings) -> dict[str, Any]:
    """The summary fields that say what was trained and how: size, where the tokenizer came
    from (None: trained for this build), shape (``spec``, a dataclass) and ``settings``."""
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "tokenizer_from": str(tokenizer_from) if tokenizer_from is not None else None,
        "spec": asdict(spec),
        "seed": settings.seed,
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "max_length": settings.max_length,
    }


def write_summary(
    out: Path,
    filename: str,
    fields: Mapping[str, Any],
    *,
    losses: Sequence[float],
    started: float,
    data_dir: str | Path,
    loss_prefix: str = "train",
    results: Mapping[str, Any] | None = None,
) -> dict:
    """Write a build's summary to ``out / filename`` (indented JSON) and return it.

    In order: ``fields``, ``{loss_prefix}_first_loss`` and ``{loss_prefix}_last_loss`` (the
    mean of the last 10 steps; both None with no ``losses``), ``results``, ``seconds`` (wall
    time since ``started``, a ``time.perf_counter()`` reading) and ``data_dir``.
    """
    summary = {
        **fields,
        f"{loss_prefix}_first_loss": losses[0] if losses else None,
        f"{loss_prefix}_last_loss": tail_mean(losses),
        **(results or {}),
        "seconds": round(time.perf_counter() - started, 2),
        "data_dir": str(data_dir),
    }
    (out / filename).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
