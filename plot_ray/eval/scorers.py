"""Model-based scores that run as Ray Data actor pools: held-out perplexity (:class:`NLLScorer`).
The reward model's actor is :class:`plot_ray.models.reward.RewardScorer`; the judges, rule-based
or model-based, are in :mod:`plot_ray.eval.judges`.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["NLLScorer"]


class NLLScorer:
    """A Ray Data actor: the summed negative log-likelihood of ``reference`` given ``prompt``.

    ``prompt`` is the chat-formatted text up to the assistant's turn; the response is the
    reference text followed by EOS (what a model that answers it would produce and training
    scores). Adds ``nll`` (nats, summed over response tokens) and ``num_tokens``; perplexity is
    ``exp(sum nll / sum tokens)`` over a task (:func:`plot_ray.eval.metrics.perplexity`).
    """

    def __init__(
        self, model: str, dtype: str = "float32", threads: int = 1, max_length: int = 1024
    ):
        import torch

        from plot_ray.models import load_causal_lm, load_tokenizer

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.tok = load_tokenizer(model)
        self.model = load_causal_lm(model, dtype=dtype).eval()
        self.max_length = max_length

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        from plot_ray.losses.logprobs import IGNORE_INDEX, sequence_logprobs

        seqs, labels = [], []
        for prompt, reference in zip(batch["prompt"], batch["reference"], strict=True):
            p = self.tok(str(prompt), add_special_tokens=False)["input_ids"]
            r = self.tok(str(reference), add_special_tokens=False)["input_ids"]
            r = r + [self.tok.eos_token_id]
            ids = (p + r)[: self.max_length]
            seqs.append(ids)
            labels.append(([IGNORE_INDEX] * len(p) + r)[: self.max_length])
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        label_t = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for lab in labels])
        with torch.no_grad():
            logits = self.model(input_ids=input_ids, attention_mask=attention).logits
            lp = sequence_logprobs(logits.float(), label_t)
        batch["nll"] = (-lp.sums).numpy().astype("float64")
        batch["num_tokens"] = lp.lengths.numpy().astype("int64")
        return batch
