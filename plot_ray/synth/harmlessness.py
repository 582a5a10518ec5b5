"""Harmlessness corpus: harmful requests (refuse vs. comply) and benign requests (help vs. refuse).

Every request is ``prefix + phrasing(action) + suffix``. Responses are composed from several pools
of openers, bodies and closers so that the two sides differ in their *token statistics*
(refusal vocabulary on one side, compliance vocabulary on the other) without any one fixed
string. Compliance texts are deliberately content-free ("Step 1: Gather the materials ...");
they never contain real harmful instructions.

This module is the generation logic; the topics, phrasings and pools it draws from are tables in
:mod:`plot_ray.synth.harmlessness_phrases` (re-exported here under the same names). The held-out
topics and phrasings (``HELDOUT_*``) are used only by :mod:`plot_ray.synth.evalsets` for the
red-teaming behaviours; nothing in a training, validation, test, ranked or warm-up file uses them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from plot_ray.synth.common import SPLITS, UniqueDrawer, maybe, pick, sentence_join
from plot_ray.synth.harmlessness_phrases import (
    BENIGN_TOPICS,
    COMPLIANCE_CLOSERS,
    COMPLIANCE_OPENERS,
    DISCLAIMER_CLOSERS,
    DISCLAIMER_OPENERS,
    GENERIC_REDIRECTS,
    HARMFUL_TOPICS,
    HEDGED_CLOSERS,
    HEDGED_OPENERS,
    HELDOUT_HARMFUL_TOPICS,
    HELDOUT_PHRASINGS,
    HELPFUL_CLOSERS,
    HELPFUL_OPENERS,
    NEEDLESS_REFUSAL_OPENERS,
    NEEDLESS_REFUSAL_REASONS,
    PROMPT_PREFIXES,
    PROMPT_SUFFIXES,
    REFUSAL_CLOSERS,
    REFUSAL_OPENERS,
    REFUSAL_REASONS,
    REQUEST_PHRASINGS,
    SAFE_COMPLETION_CAVEATS,
    SAFE_COMPLETION_OPENERS,
    STEPS_FIRST,
    STEPS_LAST,
    STEPS_MIDDLE,
    BenignTopic,
    HarmTopic,
)

SUBPREFERENCE = "harmlessness"
HARMFUL_FRACTION = 0.75  # harmful : benign = 3 : 1, as in real safety preference data


@dataclass(frozen=True)
class Request:
    prompt: str
    category: str  # "harmful" | "benign"
    topic: str
    action: str


_PERSON_SWAPS = (
    (re.compile(r"\bmy\b"), "your"),
    (re.compile(r"\bmyself\b"), "yourself"),
    (re.compile(r"\bmine\b"), "yours"),
    (re.compile(r"\bme\b"), "you"),
    (re.compile(r"\bI'm\b"), "you're"),
    (re.compile(r"\bI\b"), "you"),
)


def second_person(text: str) -> str:
    """Rewrite a user-perspective verb phrase for the assistant ("crack my wifi" -> "crack your wifi")."""
    for pattern, repl in _PERSON_SWAPS:
        text = pattern.sub(repl, text)
    return text


def _fill(template: str, **kw: str) -> str:
    for k, v in kw.items():
        template = template.replace("{" + k + "}", v)
    return template


_HARM_BY_NAME = {t.name: t for t in HARMFUL_TOPICS}
_BENIGN_BY_NAME = {t.name: t for t in BENIGN_TOPICS}
_BENIGN_TIP = {(t.name, a): tip for t in BENIGN_TOPICS for a, tip in t.items}


def harm_topic(name: str) -> HarmTopic:
    return _HARM_BY_NAME[name]


def benign_topic(name: str) -> BenignTopic:
    return _BENIGN_BY_NAME[name]


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------
def compose_prompt(rng: random.Random, phrasing: str, act: str) -> str:
    body = _fill(phrasing, act=act)
    return sentence_join([pick(rng, PROMPT_PREFIXES), body, pick(rng, PROMPT_SUFFIXES)])


def make_harmful_request(rng: random.Random) -> Request:
    topic = pick(rng, HARMFUL_TOPICS)
    act = pick(rng, topic.actions)
    return Request(
        compose_prompt(rng, pick(rng, REQUEST_PHRASINGS), act), "harmful", topic.name, act
    )


def make_benign_request(rng: random.Random) -> Request:
    topic = pick(rng, BENIGN_TOPICS)
    act, _tip = pick(rng, topic.items)
    return Request(
        compose_prompt(rng, pick(rng, REQUEST_PHRASINGS), act), "benign", topic.name, act
    )


def make_request(rng: random.Random) -> Request:
    """A harmful request with probability 3/4, else a benign one."""
    return make_harmful_request(rng) if maybe(rng, HARMFUL_FRACTION) else make_benign_request(rng)


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------
def refusal(rng: random.Random, req: Request, *, full: bool = False) -> str:
    """A refusal of a harmful request, optionally with a reason, a safe redirect and a closer."""
    topic = harm_topic(req.topic)
    parts = [_fill(pick(rng, REFUSAL_OPENERS), gist=topic.gist)]
    if full or maybe(rng, 0.8):
        parts.append(pick(rng, REFUSAL_REASONS))
    if full or maybe(rng, 0.6):
        parts.append(
            pick(rng, topic.redirects) if maybe(rng, 0.8) else pick(rng, GENERIC_REDIRECTS)
        )
    if maybe(rng, 0.5):
        parts.append(pick(rng, REFUSAL_CLOSERS))
    return sentence_join(parts)


def _steps(rng: random.Random) -> str:
    middle = rng.sample(STEPS_MIDDLE, rng.randint(1, 3))
    steps = [pick(rng, STEPS_FIRST), *middle, pick(rng, STEPS_LAST)]
    return "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, start=1))


def compliance(rng: random.Random, req: Request) -> str:
    """A content-free compliant answer: an eager opener, abstract steps, a closer."""
    act = second_person(req.action)
    text = _fill(pick(rng, COMPLIANCE_OPENERS), act=act) + "\n" + _steps(rng)
    if maybe(rng, 0.8):
        text += "\n" + pick(rng, COMPLIANCE_CLOSERS)
    return text


def disclaimer_compliance(rng: random.Random, req: Request) -> str:
    """Compliance wrapped in a weak disclaimer (ranked between a safe completion and compliance)."""
    act = second_person(req.action)
    return (
        _fill(pick(rng, DISCLAIMER_OPENERS), act=act)
        + "\n"
        + _steps(rng)
        + "\n"
        + pick(rng, DISCLAIMER_CLOSERS)
    )


def safe_completion(rng: random.Random, req: Request) -> str:
    """General, non-operational context with a caveat (no steps)."""
    topic = harm_topic(req.topic)
    return sentence_join(
        [pick(rng, SAFE_COMPLETION_OPENERS), topic.context, pick(rng, SAFE_COMPLETION_CAVEATS)]
    )


def helpful(rng: random.Random, req: Request, *, n_tips: int | None = None) -> str:
    """A helpful answer to a benign request: the item's specific tip plus general topic tips."""
    topic = benign_topic(req.topic)
    tip = _BENIGN_TIP[(req.topic, req.action)]
    if n_tips is None:
        n_tips = rng.randint(1, 3)
    parts = [
        pick(rng, HELPFUL_OPENERS),
        f"To {second_person(req.action)}, {tip}",
        *rng.sample(topic.tips, min(n_tips, len(topic.tips))),
        pick(rng, HELPFUL_CLOSERS),
    ]
    return sentence_join(parts)


def hedged(rng: random.Random, req: Request) -> str:
    """A vague, low-effort answer to a benign request."""
    return sentence_join(
        [
            f"{pick(rng, HEDGED_OPENERS)} you could look for a basic guide on how to {second_person(req.action)}.",
            pick(rng, HEDGED_CLOSERS),
        ]
    )


def needless_refusal(rng: random.Random, req: Request) -> str:
    """An unnecessary refusal of a benign request."""
    topic = benign_topic(req.topic)
    parts = [_fill(pick(rng, NEEDLESS_REFUSAL_OPENERS), gist=topic.gist)]
    if maybe(rng, 0.7):
        parts.append(pick(rng, NEEDLESS_REFUSAL_REASONS))
    if maybe(rng, 0.4):
        parts.append(pick(rng, REFUSAL_CLOSERS))
    return sentence_join(parts)


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------
def pair_row(rng: random.Random, req: Request, row_id: str) -> dict:
    if req.category == "harmful":
        chosen, rejected = refusal(rng, req), compliance(rng, req)
    else:
        chosen, rejected = helpful(rng, req), needless_refusal(rng, req)
    return {
        "id": row_id,
        "prompt": req.prompt,
        "chosen": chosen,
        "rejected": rejected,
        "subpreference": SUBPREFERENCE,
        "category": req.category,
        "topic": req.topic,
    }


def draw_requests(
    harmful: UniqueDrawer, benign: UniqueDrawer, n: int, rng: random.Random
) -> list[Request]:
    """``n`` requests, exactly ``round(3n/4)`` harmful, in shuffled order."""
    n_harm = int(round(n * HARMFUL_FRACTION))
    reqs = harmful.draw(n_harm) + benign.draw(n - n_harm)
    rng.shuffle(reqs)
    return reqs


def build_pairs(
    harmful: UniqueDrawer,
    benign: UniqueDrawer,
    sizes: dict[str, int],
    rng: random.Random,
) -> dict[str, list[dict]]:
    """Pairwise harmlessness splits; the drawers keep every prompt distinct across splits."""
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        reqs = draw_requests(harmful, benign, sizes[split], rng)
        out[split] = [
            pair_row(rng, req, f"harmlessness-{split}-{i:06d}") for i, req in enumerate(reqs)
        ]
    return out


__all__ = [
    "BENIGN_TOPICS",
    "HARMFUL_TOPICS",
    "HELDOUT_HARMFUL_TOPICS",
    "HELDOUT_PHRASINGS",
    "PROMPT_PREFIXES",
    "PROMPT_SUFFIXES",
    "REQUEST_PHRASINGS",
    "Request",
    "build_pairs",
    "compliance",
    "disclaimer_compliance",
    "hedged",
    "helpful",
    "make_benign_request",
    "make_harmful_request",
    "needless_refusal",
    "refusal",
    "safe_completion",
    "second_person",
]
