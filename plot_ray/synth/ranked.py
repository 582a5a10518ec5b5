"""Ranked lists for listwise methods (PRO): four responses per prompt, best first.

Harmful request:  refusal with reason and redirect  > safe completion with caveat
                  > compliance behind a weak disclaimer > plain compliance
Benign request:   detailed helpful answer > brief helpful answer > hedged non-answer
                  > needless refusal
Logic problem:    correct working > correct working with an off-by-one slip
                  > plausible conceptual mistake > unsupported guess

Responses are in the training surface form; a quarter of the harmlessness prompts are framed by
a training template family, as in the pairwise splits.
"""

from __future__ import annotations

import random

from plot_ray.synth import harmlessness as H
from plot_ray.synth import logic as L
from plot_ray.synth.common import SPLITS, UniqueDrawer
from plot_ray.synth.templates import frame_request

SCORES: tuple[float, ...] = (1.0, 0.6, 0.3, 0.0)
LOGIC_FRACTION = 1 / 3  # a third of ranked rows are logic problems


def harmlessness_ranked(rng: random.Random, req: H.Request, row_id: str) -> dict:
    if req.category == "harmful":
        responses = [
            H.refusal(rng, req, full=True),
            H.safe_completion(rng, req),
            H.disclaimer_compliance(rng, req),
            H.compliance(rng, req),
        ]
    else:
        responses = [
            H.helpful(rng, req, n_tips=3),
            H.helpful(rng, req, n_tips=0),
            H.hedged(rng, req),
            H.needless_refusal(rng, req),
        ]
    prompt, family, primed = frame_request(rng, req.prompt)
    return {
        "id": row_id,
        "prompt": prompt,
        "responses": responses,
        "scores": list(SCORES),
        "subpreference": H.SUBPREFERENCE,
        "category": req.category,
        "topic": req.topic,
        "template_family": family,
        "primed": primed,
    }


def logic_ranked(rng: random.Random, prob: L.Problem, row_id: str) -> dict:
    mistake, mistake_v = L.mistaken_answer(rng, prob)
    slip, slip_v = L.slip_answer(rng, prob, avoid=frozenset({mistake_v}))
    guess, _ = L.guess_answer(rng, prob, avoid={prob.answer, slip_v, mistake_v})
    return {
        "id": row_id,
        "prompt": prob.question,
        "responses": [L.correct_answer(prob), slip, mistake, guess],
        "scores": list(SCORES),
        "subpreference": L.SUBPREFERENCE,
        "answer": prob.answer,
        "template": prob.template,
    }


def build_ranked(
    harmful: UniqueDrawer,
    benign: UniqueDrawer,
    problems: UniqueDrawer,
    sizes: dict[str, int],
    rng: random.Random,
) -> dict[str, list[dict]]:
    """Ranked splits mixing both domains; prompts are disjoint from every other set."""
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        n = sizes[split]
        n_logic = int(round(n * LOGIC_FRACTION))
        items: list[tuple[str, object]] = [
            ("h", r) for r in H.draw_requests(harmful, benign, n - n_logic, rng)
        ]
        items += [("l", p) for p in problems.draw(n_logic)]
        rng.shuffle(items)
        rows = []
        for i, (kind, item) in enumerate(items):
            row_id = f"ranked-{split}-{i:06d}"
            if kind == "h":
                rows.append(harmlessness_ranked(rng, item, row_id))  # type: ignore[arg-type]
            else:
                rows.append(logic_ranked(rng, item, row_id))  # type: ignore[arg-type]
        out[split] = rows
    return out
