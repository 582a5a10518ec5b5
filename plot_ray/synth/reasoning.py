"""Reasoning corpus: multiple-choice questions answered from premises stated in the question.

Two areas (the item's ``subject``):

- ``reasoning/ordering``: two comparisons chain three people ("Mia is taller than Omar. Omar
  is taller than Zoe."); the question asks who comes first or last. Options: the three names
  and "It cannot be determined".
- ``reasoning/syllogism``: "Every glimp is blue. Every torvel is green. Kenji is a glimp.";
  the question asks the colour of the person. Options: four colours.

Every item is new (random names, relations, invented kinds and colours), so held-out items
share the skill, not the facts. Evaluation items use fresh premises; half of them ask in the
:data:`HELDOUT_QUESTIONS` wordings, which no training or warm-up file uses.
"""

from __future__ import annotations

import random

from plot_ray.synth import multiple_choice as M
from plot_ray.synth.common import pick
from plot_ray.synth.logic import NAMES

SUBPREFERENCE = "reasoning"
PEOPLE = tuple(name for name, _ in NAMES)
# (comparative, the first of the order, the last of the order)
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("taller", "tallest", "shortest"),
    ("older", "oldest", "youngest"),
    ("faster", "fastest", "slowest"),
    ("heavier", "heaviest", "lightest"),
    ("stronger", "strongest", "weakest"),
)
CANNOT_TELL = "It cannot be determined"
KINDS = ("glimp", "torvel", "brisk", "mallow", "quenn", "zarbo", "fennit", "plorb")
COLOURS = ("blue", "green", "red", "yellow", "purple", "orange", "white", "black")

TRAIN_QUESTIONS: dict[str, tuple[str, ...]] = {
    "first": ("Who is the {top}?", "Which of them is the {top}?"),
    "last": ("Who is the {bottom}?", "Which of them is the {bottom}?"),
    "colour": ("What color is {name}?", "Which color is {name}?"),
}
HELDOUT_QUESTIONS: dict[str, tuple[str, ...]] = {
    "first": ("Ranked from {top} to {bottom}, who comes first?",),
    "last": ("Ranked from {top} to {bottom}, who comes last?",),
    "colour": ("Given these facts, {name} must have which color?",),
}
HELDOUT_MARKERS: tuple[str, ...] = ("ranked from", "given these facts")


def _ordering(rng: random.Random, heldout: bool) -> M.ChoiceItem:
    a, b, c = rng.sample(PEOPLE, 3)  # a > b > c
    comp, top, bottom = pick(rng, COMPARISONS)
    facts = [f"{a} is {comp} than {b}.", f"{b} is {comp} than {c}."]
    rng.shuffle(facts)
    which = pick(rng, ("first", "last"))
    pool = HELDOUT_QUESTIONS if heldout else TRAIN_QUESTIONS
    asked = pick(rng, pool[which]).format(top=top, bottom=bottom)
    right = a if which == "first" else c
    others = [x for x in (a, b, c) if x != right] + [CANNOT_TELL]
    return M.shuffled_item(
        rng, "reasoning/ordering", " ".join([*facts, asked]), right, others, asked, heldout
    )


def _syllogism(rng: random.Random, heldout: bool) -> M.ChoiceItem:
    kinds = rng.sample(KINDS, 2)
    colours = rng.sample(COLOURS, 4)
    name = pick(rng, PEOPLE)
    facts = [f"Every {kinds[0]} is {colours[0]}.", f"Every {kinds[1]} is {colours[1]}."]
    rng.shuffle(facts)
    pool = HELDOUT_QUESTIONS if heldout else TRAIN_QUESTIONS
    asked = pick(rng, pool["colour"]).format(name=name)
    question = " ".join([*facts, f"{name} is a {kinds[0]}.", asked])
    return M.shuffled_item(
        rng, "reasoning/syllogism", question, colours[0], colours[1:], asked, heldout
    )


def make_item(rng: random.Random, heldout: bool = False) -> M.ChoiceItem:
    return (_ordering if rng.random() < 0.5 else _syllogism)(rng, heldout)


def make_heldout_item(rng: random.Random) -> M.ChoiceItem:
    return make_item(rng, heldout=True)


__all__ = [
    "HELDOUT_MARKERS",
    "HELDOUT_QUESTIONS",
    "SUBPREFERENCE",
    "TRAIN_QUESTIONS",
    "make_heldout_item",
    "make_item",
]
