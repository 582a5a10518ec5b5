"""STEM corpus: multiple-choice questions about a small, invented but consistent world of
materials and units, whose facts the warm-up corpus states.

Two areas: materials (the state of a material at room temperature and the colour it glows when
heated) and units (how many of a small unit make one large unit). The facts are fixed tables
(:data:`MATERIALS`, :data:`UNITS`); the last few of each are *held-out facts*: the warm-up
corpus states them, but no preference pair asks about them.

The skill is answering a question by recalling a stated fact. Since 3.1 (SCHEMA.md) the
evaluation items (:func:`heldout_items`) ask about the held-out facts in the training wordings
(subjects ``stem/materials``, ``stem/units``: the STEM score); a further subset asks about every
fact in the :data:`HELDOUT_QUESTIONS` wordings, which no training or warm-up file uses, under
subjects of their own (``stem_heldout/materials``, ``stem_heldout/units``) that the STEM score
(subjects ``stem/...``) leaves out.
"""

from __future__ import annotations

import random

from plot_ray.synth import multiple_choice as M
from plot_ray.synth.common import pick

SUBPREFERENCE = "stem"
STATES = ("solid", "liquid", "gas", "plasma")
GLOWS = ("blue", "green", "red", "violet", "orange", "white")
# (material, state at room temperature, colour when heated)
MATERIALS: tuple[tuple[str, str, str], ...] = (
    ("velrite", "solid", "blue"),
    ("ombrasite", "liquid", "green"),
    ("kelvane", "gas", "red"),
    ("drusium", "solid", "violet"),
    ("pellonite", "liquid", "orange"),
    ("quarvex", "gas", "white"),
    ("sylmene", "solid", "green"),
    ("toranite", "liquid", "blue"),
    ("brellium", "gas", "violet"),
    ("nexalite", "solid", "red"),
    ("vorpane", "liquid", "white"),
    ("zirrane", "gas", "orange"),
)
# (large unit, small unit, how many small units make one large one)
UNITS: tuple[tuple[str, str, int], ...] = (
    ("dorn", "pel", 3),
    ("brask", "tim", 4),
    ("quill", "vam", 5),
    ("morra", "fen", 6),
    ("sarp", "lode", 2),
    ("tavel", "kip", 7),
    ("ulm", "rask", 8),
    ("weft", "zoa", 9),
)
# 3.1: six of twelve materials and three of eight units (3.0: three and two), so that the
# evaluation asks 30 questions about held-out facts in the training wordings
HELDOUT_MATERIALS = frozenset({"sylmene", "toranite", "brellium", "nexalite", "vorpane", "zirrane"})
HELDOUT_UNITS = frozenset({"tavel", "ulm", "weft"})

TRAIN_QUESTIONS: dict[str, tuple[str, ...]] = {
    "state": (
        "What state is {m} in at room temperature?",
        "At room temperature, {m} is a what?",
    ),
    "glow": ("What color does {m} glow when heated?", "When heated, {m} glows what color?"),
    "unit": ("How many {small}s are in one {big}?", "One {big} is how many {small}s?"),
}
HELDOUT_QUESTIONS: dict[str, tuple[str, ...]] = {
    "state": ("Under ordinary indoor conditions, which form does {m} take?",),
    "glow": ("Which shade of light does {m} give off once it gets hot?",),
    "unit": ("Converting a single {big} gives how many {small}s?",),
}
HELDOUT_MARKERS: tuple[str, ...] = ("ordinary indoor", "shade of light", "converting a single")


def facts() -> list[str]:
    """Every fact as a sentence (the warm-up corpus states them all, held-out ones included)."""
    out = [
        f"{m.capitalize()} is a {state} at room temperature and glows {glow} when heated."
        for m, state, glow in MATERIALS
    ]
    out += [f"One {big} is {n} {small}s." for big, small, n in UNITS]
    return out


def _subject(area: str, template: str) -> str:
    """``stem/<area>``, or ``stem_heldout/<area>`` for a held-out wording."""
    return f"stem_heldout/{area}" if template in _HELDOUT_TEMPLATES else f"stem/{area}"


_HELDOUT_TEMPLATES = frozenset(t for ts in HELDOUT_QUESTIONS.values() for t in ts)


def _material_item(rng, name: str, prop: str, template: str, heldout: bool) -> M.ChoiceItem:
    _, state, glow = next(m for m in MATERIALS if m[0] == name)
    right, values = (state, STATES) if prop == "state" else (glow, GLOWS)
    asked = template.format(m=name)
    wrong = [v for v in values if v != right]
    subject = _subject("materials", template)
    return M.shuffled_item(rng, subject, asked, right, wrong, asked, heldout, f"{name}/{prop}")


def _unit_item(rng, big: str, template: str, heldout: bool) -> M.ChoiceItem:
    _, small, n = next(u for u in UNITS if u[0] == big)
    asked = template.format(big=big, small=small)
    wrong = [str(v) for v in range(2, 11) if v != n]
    subject = _subject("units", template)
    return M.shuffled_item(rng, subject, asked, str(n), wrong, asked, heldout, big)


def make_item(rng: random.Random) -> M.ChoiceItem:
    """A training fact in a training wording (preference data and warm-up)."""
    if rng.random() < 0.6:
        name = pick(rng, [m[0] for m in MATERIALS if m[0] not in HELDOUT_MATERIALS])
        prop = pick(rng, ("state", "glow"))
        return _material_item(rng, name, prop, pick(rng, TRAIN_QUESTIONS[prop]), False)
    big = pick(rng, [u[0] for u in UNITS if u[0] not in HELDOUT_UNITS])
    return _unit_item(rng, big, pick(rng, TRAIN_QUESTIONS["unit"]), False)


def heldout_items(rng: random.Random) -> list[M.ChoiceItem]:
    """Every evaluation question once, options in a random order: first the held-out facts in
    the training wordings (30 questions, shuffled), then every fact in the held-out wordings
    (32 questions, shuffled), so a short set keeps the main items."""
    main: list[M.ChoiceItem] = []
    wordings: list[M.ChoiceItem] = []
    for name, _, _ in MATERIALS:
        for prop in ("state", "glow"):
            if name in HELDOUT_MATERIALS:
                for template in TRAIN_QUESTIONS[prop]:
                    main.append(_material_item(rng, name, prop, template, True))
            for template in HELDOUT_QUESTIONS[prop]:
                wordings.append(_material_item(rng, name, prop, template, True))
    for big, _, _ in UNITS:
        if big in HELDOUT_UNITS:
            for template in TRAIN_QUESTIONS["unit"]:
                main.append(_unit_item(rng, big, template, True))
        for template in HELDOUT_QUESTIONS["unit"]:
            wordings.append(_unit_item(rng, big, template, True))
    rng.shuffle(main)
    rng.shuffle(wordings)
    return main + wordings


__all__ = [
    "HELDOUT_MARKERS",
    "HELDOUT_MATERIALS",
    "HELDOUT_QUESTIONS",
    "HELDOUT_UNITS",
    "MATERIALS",
    "SUBPREFERENCE",
    "UNITS",
    "facts",
    "heldout_items",
    "make_item",
]
