"""Model-based scores that run as Ray Data actor pools: held-out perplexity and the
classifier-LLM judge's prompts. (The reward model's actor is
:class:`plot_ray.models.reward.RewardScorer`; the rule judges are plain functions in
:mod:`plot_ray.eval.judges`.)
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["NLLScorer", "classifier_rows"]


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


def classifier_rows(rows: list[dict], tokenizer, max_generation_tokens: int = 512) -> list[dict]:
    """The classifier judge's input rows: the HarmBench-style yes/no prompt for each harmful
    completion, the generation clipped to ``max_generation_tokens`` classifier tokens (as
    HarmBench clips to 512). The classifier reads the prompt as plain text (no chat template),
    the way HarmBench's classifiers are prompted."""
    from plot_ray.eval.judges import classifier_prompt

    out = []
    for r in rows:
        ids = tokenizer(r["completion"], add_special_tokens=False)["input_ids"]
        clipped = (
            tokenizer.decode(ids[:max_generation_tokens])
            if len(ids) > max_generation_tokens
            else r["completion"]
        )
        # The classifier's answer will come back as ``completion``; the model's travels as
        # ``response``.
        out.append(
            {**r, "prompt": classifier_prompt(r["behavior"], clipped), "response": r["completion"]}
        )
    return out
