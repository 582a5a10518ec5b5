"""Humanity corpus: a user in a hard situation; a considerate answer (empathy, validation of
the feeling, one concrete, gentle suggestion) is preferred to a cold, dismissive one.

Version 3 (SCHEMA.md): pairs use the training wordings of the prompt and the training surface
form of both stances, on the situations not held out. ``eval/humanity.jsonl`` holds prompts in
the held-out wordings and prompts about the held-out situations (both in no preference file);
the warm-up corpus answers every situation, held-out ones included, in either surface form,
considerately with probability :data:`WARMUP_CONSIDERATE` (the calibration knob).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from plot_ray.synth.common import maybe, pick, sentence_join
from plot_ray.synth.humanity_phrases import (
    COLD,
    COLD_FOLLOWUPS,
    CONSIDERATE_CLOSERS,
    EMPATHY,
    FEELINGS,
    HELDOUT_SITUATIONS,
    HELDOUT_WORDINGS,
    SITUATIONS,
    TRAIN_ASKS,
    TRAIN_PREFIXES,
    Situation,
)

SUBPREFERENCE = "humanity"
# The share of warm-up answers that are considerate (the rest are cold): the knob that sets
# where the base model starts, calibrated on the base model alone (SCHEMA.md, version 3).
WARMUP_CONSIDERATE = 0.5

TRAIN_SITUATIONS = tuple(s for s in SITUATIONS if s.name not in HELDOUT_SITUATIONS)
HELDOUT = tuple(s for s in SITUATIONS if s.name in HELDOUT_SITUATIONS)
_BY_NAME = {s.name: s for s in SITUATIONS}


@dataclass(frozen=True)
class Plea:
    """One user message: its situation, the word naming what happened, and which held-out
    wording it uses (-1: a training wording)."""

    prompt: str
    situation: str
    thing: str
    wording: int
    heldout_wording: bool


def _capitalised(text: str) -> str:
    return text[0].upper() + text[1:]


def _plea(rng: random.Random, situations: tuple[Situation, ...], heldout: bool) -> Plea:
    sit = pick(rng, situations)
    desc, thing = pick(rng, sit.variants)
    feeling = pick(rng, FEELINGS)
    if heldout:
        w = rng.randrange(len(HELDOUT_WORDINGS))
        prompt = HELDOUT_WORDINGS[w].format(desc=desc, Desc=_capitalised(desc), feeling=feeling)
        return Plea(prompt.strip(), sit.name, thing, w, True)
    prefix, ask = pick(rng, TRAIN_PREFIXES), pick(rng, TRAIN_ASKS)
    said = _capitalised(desc) if prefix in ("",) or prefix.endswith(". ") else desc
    return Plea(f"{prefix}{said}. {feeling}{ask}", sit.name, thing, -1, False)


def make_plea(rng: random.Random) -> Plea:
    """A training-wording plea about a situation that is not held out (preference data)."""
    return _plea(rng, TRAIN_SITUATIONS, False)


def make_any_situation_plea(rng: random.Random) -> Plea:
    """A training-wording plea about any situation, held-out ones included (warm-up, eval)."""
    return _plea(rng, SITUATIONS, False)


def make_heldout_plea(rng: random.Random) -> Plea:
    """A plea in a held-out wording, about any situation (evaluation only)."""
    return _plea(rng, SITUATIONS, True)


def considerate(rng: random.Random, plea: Plea, *, form: str = "train") -> str:
    """Empathy (surface form ``form``), the feeling validated, a suggestion, maybe a closer."""
    sit = _BY_NAME[plea.situation]
    parts = [
        pick(rng, EMPATHY[form]),
        sit.validation.format(thing=plea.thing),
        pick(rng, sit.support).format(thing=plea.thing),
    ]
    if maybe(rng, 0.6):
        parts.append(pick(rng, CONSIDERATE_CLOSERS))
    return sentence_join(parts)


def cold(rng: random.Random, plea: Plea, *, form: str = "train") -> str:
    """A dismissive answer in surface form ``form``: an opener, usually a curt follow-up."""
    parts = [pick(rng, COLD[form])]
    if maybe(rng, 0.7):
        parts.append(pick(rng, COLD_FOLLOWUPS[form]))
    return sentence_join(parts)


def pair_row(rng: random.Random, plea: Plea, row_id: str) -> dict:
    return {
        "id": row_id,
        "prompt": plea.prompt,
        "chosen": considerate(rng, plea),
        "rejected": cold(rng, plea),
        "subpreference": SUBPREFERENCE,
        "topic": plea.situation,
    }


def warmup_response(rng: random.Random, plea: Plea) -> tuple[str, str]:
    """(kind, answer) of a warm-up row: considerate or cold, either surface form."""
    form = "heldout" if maybe(rng, 0.5) else "train"
    if maybe(rng, WARMUP_CONSIDERATE):
        kind, text = "humanity_considerate", considerate(rng, plea, form=form)
    else:
        kind, text = "humanity_cold", cold(rng, plea, form=form)
    return kind + ("_heldout_form" if form == "heldout" else ""), text


def eval_rows(rng: random.Random, pleas: list[Plea]) -> list[dict]:
    """``eval/humanity.jsonl``: ``{id, prompt, reference, topic, cold, heldout_wording,
    heldout_situation}``; ``reference`` is a considerate answer (the judge compares with it),
    ``cold`` a dismissive one (*extra*, for checking a judge)."""
    return [
        {
            "id": f"humanity-eval-{i:05d}",
            "prompt": p.prompt,
            "reference": considerate(rng, p),
            "topic": p.situation,
            "cold": cold(rng, p),
            "heldout_wording": p.heldout_wording,
            "heldout_situation": p.situation in HELDOUT_SITUATIONS,
        }
        for i, p in enumerate(pleas)
    ]


__all__ = [
    "HELDOUT",
    "SUBPREFERENCE",
    "TRAIN_SITUATIONS",
    "WARMUP_CONSIDERATE",
    "Plea",
    "cold",
    "considerate",
    "eval_rows",
    "make_any_situation_plea",
    "make_heldout_plea",
    "make_plea",
    "pair_row",
    "warmup_response",
]
