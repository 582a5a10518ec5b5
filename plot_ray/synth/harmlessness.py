"""Harmlessness corpus: harmful requests (refuse vs. comply) and benign requests (help vs. refuse).

Every request is ``prefix + phrasing(action) + suffix``. Responses are composed from several pools
of openers, bodies and closers so that the two sides differ in their *token statistics*
(refusal vocabulary on one side, compliance vocabulary on the other) without any one fixed
string. Compliance texts are deliberately content-free ("Step 1: Gather the materials ...");
they never contain real harmful instructions.

This module is the generation logic; the topics, phrasings and pools it draws from are tables in
:mod:`plot_ray.synth.harmlessness_phrases` (re-exported here under the same names).

Version 2 (SCHEMA.md): every refusal and compliance is written in one of two *surface forms*
(:data:`FORMS`): the training form, the only one preference pairs and ranked lists use, or the
held-out form (other words, the same meaning), which only the warm-up corpus uses beside the
training form. A compliance names its action in its opener and in one step (topic-linked harm).
The held-out topics (``HELDOUT_HARMFUL_TOPICS``) appear in the warm-up corpus and in the
red-teaming behaviours only; the held-out phrasings (``HELDOUT_PHRASINGS``) only in the
behaviours.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from plot_ray.synth.common import SPLITS, UniqueDrawer, maybe, pick, sentence_join
from plot_ray.synth.harmlessness_phrases import (
    ACT_STEPS,
    BENIGN_TOPICS,
    COMPLIANCE_CLOSERS,
    COMPLIANCE_OPENERS,
    DISCLAIMER_CLOSERS,
    DISCLAIMER_OPENERS,
    GENERIC_REDIRECTS,
    HARMFUL_TOPICS,
    HEDGED_CLOSERS,
    HEDGED_OPENERS,
    HELDOUT_ACT_STEPS,
    HELDOUT_COMPLIANCE_CLOSERS,
    HELDOUT_COMPLIANCE_MARKERS,
    HELDOUT_COMPLIANCE_OPENERS,
    HELDOUT_HARMFUL_TOPICS,
    HELDOUT_PHRASINGS,
    HELDOUT_REFUSAL_CLOSERS,
    HELDOUT_REFUSAL_MARKERS,
    HELDOUT_REFUSAL_OPENERS,
    HELDOUT_REFUSAL_REASONS,
    HELDOUT_STEP_NUMBERS,
    HELDOUT_STEPS_FIRST,
    HELDOUT_STEPS_LAST,
    HELDOUT_STEPS_MIDDLE,
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
from plot_ray.synth.templates import frame_request

SUBPREFERENCE = "harmlessness"
HARMFUL_FRACTION = 0.75  # harmful : benign = 3 : 1, as in real safety preference data


@dataclass(frozen=True)
class Request:
    prompt: str
    category: str  # "harmful" | "benign"
    topic: str
    action: str


@dataclass(frozen=True)
class SurfaceForm:
    """The words one surface form writes a refusal and a compliance in."""

    name: str  # "train" | "heldout"
    refusal_openers: tuple[str, ...]
    refusal_reasons: tuple[str, ...]
    refusal_closers: tuple[str, ...]
    compliance_openers: tuple[str, ...]
    steps_first: tuple[str, ...]
    act_steps: tuple[str, ...]
    steps_middle: tuple[str, ...]
    steps_last: tuple[str, ...]
    compliance_closers: tuple[str, ...]

    def step_label(self, i: int) -> str:
        """How the form numbers step ``i`` (1-based): "Step 2" or "Phase two"."""
        return f"Step {i}" if self.name == "train" else f"Phase {HELDOUT_STEP_NUMBERS[i - 1]}"


FORMS: dict[str, SurfaceForm] = {
    "train": SurfaceForm(
        "train",
        REFUSAL_OPENERS,
        REFUSAL_REASONS,
        REFUSAL_CLOSERS,
        COMPLIANCE_OPENERS,
        STEPS_FIRST,
        ACT_STEPS,
        STEPS_MIDDLE,
        STEPS_LAST,
        COMPLIANCE_CLOSERS,
    ),
    "heldout": SurfaceForm(
        "heldout",
        HELDOUT_REFUSAL_OPENERS,
        HELDOUT_REFUSAL_REASONS,
        HELDOUT_REFUSAL_CLOSERS,
        HELDOUT_COMPLIANCE_OPENERS,
        HELDOUT_STEPS_FIRST,
        HELDOUT_ACT_STEPS,
        HELDOUT_STEPS_MIDDLE,
        HELDOUT_STEPS_LAST,
        HELDOUT_COMPLIANCE_CLOSERS,
    ),
}


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
    """A harmful topic by name; a held-out topic gets its name as gist, the generic redirects
    and a generic context (its actions are only answered in the warm-up corpus)."""
    if name in HELDOUT_HARMFUL_TOPICS:
        return HarmTopic(
            name,
            name,
            HELDOUT_HARMFUL_TOPICS[name],
            GENERIC_REDIRECTS,
            f"Activities like {name} cause real harm to real people and are illegal in most places.",
        )
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


def make_heldout_topic_request(rng: random.Random) -> Request:
    """A harmful request about a held-out topic, in a training phrasing: for the warm-up corpus
    only (a base model knows about harms that the preference data leaves out)."""
    topic = pick(rng, sorted(HELDOUT_HARMFUL_TOPICS))
    act = pick(rng, HELDOUT_HARMFUL_TOPICS[topic])
    return Request(compose_prompt(rng, pick(rng, REQUEST_PHRASINGS), act), "harmful", topic, act)


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
def refusal(rng: random.Random, req: Request, *, full: bool = False, form: str = "train") -> str:
    """A refusal of a harmful request in surface form ``form``, optionally with a reason, a
    safe redirect and a closer."""
    f, topic = FORMS[form], harm_topic(req.topic)
    parts = [_fill(pick(rng, f.refusal_openers), gist=topic.gist)]
    if full or maybe(rng, 0.8):
        parts.append(pick(rng, f.refusal_reasons))
    if full or maybe(rng, 0.6):
        parts.append(
            pick(rng, topic.redirects) if maybe(rng, 0.8) else pick(rng, GENERIC_REDIRECTS)
        )
    if maybe(rng, 0.5):
        parts.append(pick(rng, f.refusal_closers))
    return sentence_join(parts)


def _steps(rng: random.Random, f: SurfaceForm, act: str) -> str:
    """3-5 numbered steps: a first step, one that names the action, 0-2 middle steps, a last."""
    middle = rng.sample(f.steps_middle, rng.randint(0, 2))
    steps = [pick(rng, f.steps_first), _fill(pick(rng, f.act_steps), act=act), *middle]
    steps.append(pick(rng, f.steps_last))
    return "\n".join(f"{f.step_label(i)}: {s}" for i, s in enumerate(steps, start=1))


def compliance(rng: random.Random, req: Request, *, form: str = "train") -> str:
    """A content-free compliant answer in surface form ``form``: an eager opener and steps that
    name the action, and usually a closer."""
    f, act = FORMS[form], second_person(req.action)
    text = _fill(pick(rng, f.compliance_openers), act=act) + "\n" + _steps(rng, f, act)
    if maybe(rng, 0.8):
        text += "\n" + pick(rng, f.compliance_closers)
    return text


def disclaimer_compliance(rng: random.Random, req: Request) -> str:
    """Compliance wrapped in a weak disclaimer (ranked between a safe completion and compliance)."""
    act = second_person(req.action)
    return (
        _fill(pick(rng, DISCLAIMER_OPENERS), act=act)
        + "\n"
        + _steps(rng, FORMS["train"], act)
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


def needless_refusal(rng: random.Random, req: Request, *, form: str = "train") -> str:
    """An unnecessary refusal of a benign request, in surface form ``form`` (the held-out form
    only in ``eval/benign.jsonl``'s contrast answers)."""
    topic = benign_topic(req.topic)
    if form == "heldout":
        parts = [_fill(pick(rng, HELDOUT_REFUSAL_OPENERS), gist=topic.gist)]
        parts.append(pick(rng, HELDOUT_REFUSAL_REASONS))
        return sentence_join(parts)
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
    """A pairwise row; a quarter of the prompts framed by a training template family."""
    if req.category == "harmful":
        chosen, rejected = refusal(rng, req), compliance(rng, req)
    else:
        chosen, rejected = helpful(rng, req), needless_refusal(rng, req)
    prompt, family, primed = frame_request(rng, req.prompt)
    return {
        "id": row_id,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "subpreference": SUBPREFERENCE,
        "category": req.category,
        "topic": req.topic,
        "template_family": family,
        "primed": primed,
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
    "FORMS",
    "HELDOUT_COMPLIANCE_MARKERS",
    "HELDOUT_REFUSAL_MARKERS",
    "HARMFUL_TOPICS",
    "HELDOUT_HARMFUL_TOPICS",
    "HELDOUT_PHRASINGS",
    "PROMPT_PREFIXES",
    "PROMPT_SUFFIXES",
    "REQUEST_PHRASINGS",
    "Request",
    "SurfaceForm",
    "build_pairs",
    "compliance",
    "disclaimer_compliance",
    "hedged",
    "helpful",
    "make_benign_request",
    "make_harmful_request",
    "make_heldout_topic_request",
    "needless_refusal",
    "refusal",
    "safe_completion",
    "second_person",
]
