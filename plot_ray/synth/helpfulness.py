"""Helpfulness corpus: benign requests with a helpful answer preferred to a hedged non-answer.

The prompts are the harmlessness corpus's benign requests (the same topics and phrasings),
drawn from the same unique drawer, so none of them is an evaluation prompt
(``eval/benign.jsonl``, judged by ``synthetic_helpfulness``) or another file's prompt. The
harmlessness corpus already prefers a helpful answer to a needless refusal; this corpus asks a
second thing of an answer that does not refuse: that it carries the item's content rather than
pointing vaguely elsewhere ("I'm not an expert, but you could look for a basic guide ...").
"""

from __future__ import annotations

import random

from plot_ray.synth import harmlessness as H

SUBPREFERENCE = "helpfulness"


def pair_row(rng: random.Random, req: H.Request, row_id: str) -> dict:
    return {
        "id": row_id,
        "prompt": req.prompt,
        "chosen": H.helpful(rng, req),
        "rejected": H.hedged(rng, req),
        "subpreference": SUBPREFERENCE,
        "topic": req.topic,
    }


__all__ = ["SUBPREFERENCE", "pair_row"]
