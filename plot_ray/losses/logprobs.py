"""Per-token and per-sequence log-probabilities of response tokens, shared by training and eval.

A causal LM's ``logits[:, t]`` scores the token at ``t + 1``. Labels are the input ids with -100
on prompt and padding tokens (unshifted, as HF models take them). :func:`sequence_logprobs`
shifts, gathers and sums:

    logits (N, T, V) + labels (N, T)  ->  token_logps (N, T-1), mask (N, T-1), sums (N,), lengths (N,)

Memory: the log-softmax is never materialised. A custom autograd function
(:mod:`plot_ray.losses.chunked`) computes ``logit[label] - logsumexp(logits)`` chunk by chunk in
float32, keeps only the ``(N, T)`` log-normaliser for backward, and writes one gradient tensor
of the logits' shape, instead of the ``log_softmax`` output, the one-hot ``gather`` gradient
and the ``log_softmax`` gradient that autograd would otherwise hold. It also takes the full
``(N, T, V)`` logits rather than the ``logits[:, :-1]`` view, so that no slice-backward copy of
the gradient is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from plot_ray.losses.chunked import IGNORE_INDEX, softmax_stats

__all__ = [
    "SequenceLogProbs",
    "sequence_logprobs",
    "shift_labels",
    "check_labels",
    "package_logprobs",
    "IGNORE_INDEX",
]


@dataclass
class SequenceLogProbs:
    """Log-probabilities of the response tokens of ``N`` sequences.

    Attributes:
        token_logps: ``(N, T-1)`` float32, ``log p(labels[:, 1:] | prefix)``, 0 off the mask.
        mask: ``(N, T-1)`` bool, True on response tokens.
        sums: ``(N,)`` float32, sum of ``token_logps`` (the sequence log-likelihood).
        lengths: ``(N,)`` long, number of response tokens.
    """

    token_logps: Tensor
    mask: Tensor
    sums: Tensor
    lengths: Tensor

    @property
    def means(self) -> Tensor:
        """``(N,)`` length-normalised log-likelihood (``sums / lengths``, 0 for empty rows)."""
        return self.sums / self.lengths.clamp_min(1)


def shift_labels(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """``(N, T)`` labels in the logits frame: ``out[:, t] = labels[:, t + 1]``, last = ignore."""
    out = torch.full_like(labels, ignore_index)
    out[:, :-1] = labels[:, 1:]
    return out


def check_labels(labels: Tensor, vocab_size: int, ignore_index: int = IGNORE_INDEX) -> None:
    """Raise ``ValueError`` if a label is neither ``ignore_index`` nor a token id < vocab_size."""
    if labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= vocab_size))
    if bad.any():
        where = torch.nonzero(bad)[:3].tolist()
        raise ValueError(
            f"labels hold ids outside [0, {vocab_size}) (and not {ignore_index}) at {where}: "
            "the tokenizer and the model's vocabulary disagree"
        )


def sequence_logprobs(
    logits: Tensor,
    labels: Tensor,
    *,
    chunk_size: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> SequenceLogProbs:
    """Shifted per-token and per-sequence log-probs of the labelled (response) tokens.

    Args:
        logits: ``(N, T, V)`` model outputs, any float dtype (accumulated in float32).
        labels: ``(N, T)`` unshifted token ids, ``ignore_index`` on prompt and padding.
        chunk_size: positions per chunk (memory: a few ``chunk_size x V`` float32
            temporaries); None: the device's default (1024 on an accelerator, 32 on CPU).

    Works with and without grad (evaluation calls it under ``torch.no_grad()``).
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (N, T, V) and labels (N, T); got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    check_labels(labels, logits.shape[-1], ignore_index)
    frame = shift_labels(labels.long(), ignore_index)
    if ignore_index != IGNORE_INDEX:
        frame = torch.where(frame == ignore_index, IGNORE_INDEX, frame)
    token_logps, _ = softmax_stats(logits, frame, chunk_size=chunk_size)
    return package_logprobs(token_logps, frame)


def package_logprobs(token_logps: Tensor, frame: Tensor) -> SequenceLogProbs:
    """Wrap kernel output ``(N, T)`` in the logits frame as :class:`SequenceLogProbs`."""
    mask = frame[:, :-1] != IGNORE_INDEX
    token_logps = token_logps[:, :-1]
    return SequenceLogProbs(
        token_logps=token_logps,
        mask=mask,
        sums=token_logps.sum(-1),
        lengths=mask.sum(-1),
    )
