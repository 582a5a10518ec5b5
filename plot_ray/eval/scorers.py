"""Model-based scores that run as Ray Data actor pools: held-out perplexity (:class:`NLLScorer`).
The reward model's actor is :class:`plot_ray.models.reward.RewardScorer`; the judges, rule-based
or model-based, are in :mod:`plot_ray.eval.judges`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["NLLScorer", "forward_groups", "sequence_nll"]

# Positions (rows x padded width) per forward pass of the perplexity scorer: the logits of one
# pass are this many rows of the vocabulary in the model's dtype (8192 x 128k bfloat16: 2 GiB),
# whatever eval.generation.batch_size is.
MAX_FORWARD_TOKENS = 8192


def forward_groups(lengths: Sequence[int], max_tokens: int) -> list[range]:
    """Consecutive rows cut into groups whose padded size (rows x longest) is at most
    ``max_tokens``; a row longer than that is a group of its own."""
    groups: list[range] = []
    start = 0
    while start < len(lengths):
        stop, width = start + 1, lengths[start]
        while stop < len(lengths) and (stop + 1 - start) * max(width, lengths[stop]) <= max_tokens:
            width = max(width, lengths[stop])
            stop += 1
        groups.append(range(start, stop))
        start = stop
    return groups


def sequence_nll(
    model,
    sequences: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    max_tokens: int = MAX_FORWARD_TOKENS,
):
    """Summed NLL (nats, float64 ``[N]``) and token counts (int64 ``[N]``) of the labelled
    tokens of each sequence (labels unshifted, -100 on prompt tokens), in order.

    Rows go through ``model`` in :func:`forward_groups` of at most ``max_tokens`` padded
    positions, right-padded (a row's numbers do not depend on its neighbours) on the model's
    device. The logits stay in the model's dtype; :func:`~plot_ray.losses.logprobs.sequence_logprobs`
    turns them into token log-probs chunk by chunk in float32, so no (rows x length x
    vocabulary) float32 copy is made.
    """
    import numpy as np
    import torch

    from plot_ray.losses.logprobs import IGNORE_INDEX, sequence_logprobs
    from plot_ray.models.training import pad_right

    device = next(model.parameters()).device
    nll = np.zeros(len(sequences), dtype="float64")
    counts = np.zeros(len(sequences), dtype="int64")
    for rows in forward_groups([len(s) for s in sequences], max_tokens):
        ids, mask = pad_right([sequences[i] for i in rows], pad_id)
        target, _ = pad_right([labels[i] for i in rows], IGNORE_INDEX)
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            lp = sequence_logprobs(logits, target.to(device))
        nll[rows.start : rows.stop] = (-lp.sums).double().cpu().numpy()
        counts[rows.start : rows.stop] = lp.lengths.cpu().numpy()
    return nll, counts


class NLLScorer:
    """A Ray Data actor: the summed negative log-likelihood of ``reference`` given ``prompt``.

    ``prompt`` is the chat-formatted text up to the assistant's turn; the response is the
    reference text followed by EOS (what a model that answers it would produce and training
    scores). Adds ``nll`` (nats, summed over response tokens) and ``num_tokens``; perplexity is
    ``exp(sum nll / sum tokens)`` over a task (:func:`plot_ray.eval.metrics.perplexity`).
    The model sits on ``device`` in ``dtype`` (:func:`sequence_nll` keeps its logits there).

    ``continuation=True`` scores ``reference`` as a bare continuation of ``prompt``, the way a
    multiple-choice option is scored (:mod:`plot_ray.eval.choice`): no EOS is appended, and a
    row longer than ``max_length`` loses prompt tokens from the left, so the continuation is
    always scored whole. Prompt and reference are tokenized apart in both modes (the reference
    keeps its own leading space, e.g. ``" A"``).
    """

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        dtype: str = "float32",
        threads: int = 1,
        max_length: int = 1024,
        max_tokens: int = MAX_FORWARD_TOKENS,
        trust_remote_code: bool = False,
        continuation: bool = False,
    ):
        import torch

        from plot_ray.models import load_causal_lm, load_tokenizer
        from plot_ray.models.devices import checked_device

        device = checked_device(device)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.tok = load_tokenizer(model, trust_remote_code=trust_remote_code)
        self.model = load_causal_lm(
            model, dtype=dtype, trust_remote_code=trust_remote_code, device_map=device
        ).eval()
        self.max_length = max_length
        self.max_tokens = max_tokens
        self.continuation = continuation

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from plot_ray.losses.logprobs import IGNORE_INDEX

        seqs, labels = [], []
        for prompt, reference in zip(batch["prompt"], batch["reference"], strict=True):
            p = self.tok(str(prompt), add_special_tokens=False)["input_ids"]
            r = self.tok(str(reference), add_special_tokens=False)["input_ids"]
            if self.continuation:
                # the whole continuation after the prompt's last tokens (at least one)
                p = p[-max(1, self.max_length - len(r)) :]
                seqs.append(p + r)
                labels.append([IGNORE_INDEX] * len(p) + r)
            else:
                r = r + [self.tok.eos_token_id]
                seqs.append((p + r)[: self.max_length])
                labels.append(([IGNORE_INDEX] * len(p) + r)[: self.max_length])
        batch["nll"], batch["num_tokens"] = sequence_nll(
            self.model, seqs, labels, self.tok.pad_token_id, self.max_tokens
        )
        return batch
