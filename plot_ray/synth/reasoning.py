"""Reasoning corpus: multiple-choice questions answered from a premise stated in the question.

Since 3.1 (SCHEMA.md) one skill, one premise: a comparison of two people ("Mia is taller than
Omar.", or the same fact the other way round, "Omar is shorter than Mia.") and a question asking
who is the more or the less of the two ("Who is shorter?"). Options: the two names, a third
name that is not in the premise and "It cannot be determined". Every item draws new names, so
held-out items share the skill, not the people.

Evaluation items (subject ``reasoning/comparison``) are fresh premises asked in the training
wordings; a further subset asks in the :data:`HELDOUT_QUESTIONS` wordings, which no training or
warm-up file uses, under a subject of its own (``reasoning_heldout/comparison``) that the
reasoning score (``plot_ray.eval.subpreferences``, subjects ``reasoning/...``) leaves out.
"""

from __future__ import annotations

import random

from plot_ray.synth import multiple_choice as M
from plot_ray.synth.common import pick
from plot_ray.synth.logic import NAMES

SUBPREFERENCE = "reasoning"
SUBJECT = "reasoning/comparison"
HELDOUT_SUBJECT = "reasoning_heldout/comparison"
PEOPLE = tuple(name for name, _ in NAMES)
# (comparative, its opposite)
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("taller", "shorter"),
    ("older", "younger"),
    ("faster", "slower"),
    ("heavier", "lighter"),
    ("stronger", "weaker"),
)
CANNOT_TELL = "It cannot be determined"

TRAIN_QUESTIONS: tuple[str, ...] = ("Who is {word}?", "Which of them is {word}?")
HELDOUT_QUESTIONS: tuple[str, ...] = ("Of these two people, which one is {word}?",)
HELDOUT_MARKERS: tuple[str, ...] = ("of these two people",)


def make_item(rng: random.Random, heldout: bool = False) -> M.ChoiceItem:
    """``a`` is more than ``b`` (stated either way round); the question asks for the more or the
    less of the two."""
    a, b, other = rng.sample(PEOPLE, 3)
    more, less = pick(rng, COMPARISONS)
    premise = pick(rng, (f"{a} is {more} than {b}.", f"{b} is {less} than {a}."))
    word, right = pick(rng, ((more, a), (less, b)))
    asked = pick(rng, HELDOUT_QUESTIONS if heldout else TRAIN_QUESTIONS).format(word=word)
    wrong = [b if right == a else a, other, CANNOT_TELL]
    subject = HELDOUT_SUBJECT if heldout else SUBJECT
    return M.shuffled_item(rng, subject, f"{premise} {asked}", right, wrong, asked, heldout)


def make_heldout_item(rng: random.Random) -> M.ChoiceItem:
    return make_item(rng, heldout=True)


__all__ = [
    "HELDOUT_MARKERS",
    "HELDOUT_QUESTIONS",
    "HELDOUT_SUBJECT",
    "SUBJECT",
    "SUBPREFERENCE",
    "TRAIN_QUESTIONS",
    "make_heldout_item",
    "make_item",
]
