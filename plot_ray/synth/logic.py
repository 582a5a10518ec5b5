"""Logic corpus: one-step arithmetic word problems with correct vs. plausibly wrong answers.

Version 2 (SCHEMA.md): every problem is one step, ``a + b`` or ``a - b`` on small numbers (the
addition facts of operands 1..:data:`MAX_OPERAND` and their inverse subtractions), asked in one
of the :data:`TRAIN_WORDINGS`; ``eval/logic_heldout.jsonl`` adds problems in the
:data:`HELDOUT_WORDINGS`, which no training file uses. The working is the equation, then
``#### N``; a rejected answer shows a plausible mistake (the other operation, or an operand
copied as the answer), and ranked lists add an off-by-one slip and a guess. Version 1's
two-step problems left every tiny model at 0-2.5% accuracy.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from plot_ray.synth.common import UniqueDrawer, build_pair_splits, maybe, pick

SUBPREFERENCE = "logic"
R = "<R>"  # placeholder for the final result in a worked step

NAMES: tuple[tuple[str, str], ...] = (
    ("Mia", "her"),
    ("Liam", "his"),
    ("Ava", "her"),
    ("Noah", "his"),
    ("Zoe", "her"),
    ("Omar", "his"),
    ("Priya", "her"),
    ("Lucas", "his"),
    ("Sofia", "her"),
    ("Kenji", "his"),
    ("Amara", "her"),
    ("Diego", "his"),
    ("Hana", "her"),
    ("Ethan", "his"),
    ("Lena", "her"),
    ("Ravi", "his"),
    ("Nora", "her"),
    ("Mateo", "his"),
    ("Chloe", "her"),
    ("Tariq", "his"),
    ("Ines", "her"),
    ("Felix", "his"),
    ("Yara", "her"),
    ("Jonas", "his"),
)


@dataclass(frozen=True)
class Problem:
    template: str
    question: str
    answer: int
    steps: tuple[str, ...]  # correct working; the last step contains R
    mistakes: tuple[tuple[tuple[str, ...], int], ...]  # (working with R, wrong result)


def worked(steps: tuple[str, ...] | list[str], result: int) -> str:
    """Join the working, substitute the final result, end with ``#### result``."""
    body = "\n".join(steps).replace(R, str(result))
    return f"{body}\n#### {result}"


def _valid_mistakes(answer: int, cands: list[tuple[tuple[str, ...], int]]) -> tuple:
    return tuple((s, v) for s, v in cands if v != answer and v >= 0)


# The operands' upper bound: the one knob of the logic set, calibrated on the warmed-up base
# model alone (SCHEMA.md, "Logic off the floor").
MAX_OPERAND = 9
ITEMS: tuple[str, ...] = (
    "apples",
    "marbles",
    "stickers",
    "cookies",
    "pencils",
    "shells",
    "cards",
    "stamps",
    "beads",
    "coins",
)


@dataclass(frozen=True)
class Wording:
    """One way to ask a one-step problem: ``{name}``, ``{a}``, ``{b}``, ``{item}`` slots."""

    name: str
    op: str  # "+" | "-"
    question: str


TRAIN_WORDINGS: tuple[Wording, ...] = (
    Wording(
        "gets_more",
        "+",
        "{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
    ),
    Wording(
        "added",
        "+",
        "There are {a} {item} on a table. Someone adds {b} more. How many {item} are on the table?",
    ),
    Wording(
        "two_days",
        "+",
        "{name} found {a} {item} on Monday and {b} on Tuesday. How many {item} did {name} find in total?",
    ),
    Wording(
        "points",
        "+",
        "{name} scores {a} points and then {b} more points. What is {name}'s total score?",
    ),
    Wording(
        "gives_away", "-", "{name} had {a} {item} and gave {b} away. How many {item} are left?"
    ),
    Wording(
        "takes_out",
        "-",
        "A box holds {a} {item}. {name} takes out {b}. How many {item} remain in the box?",
    ),
    Wording(
        "bus",
        "-",
        "A bus carries {a} people. At a stop {b} people get off. How many people are on the bus now?",
    ),
    Wording(
        "eats", "-", "{name} bakes {a} cookies and eats {b} of them. How many cookies are left?"
    ),
)
HELDOUT_WORDINGS: tuple[Wording, ...] = (
    Wording(
        "collects",
        "+",
        "In the morning {name} collects {a} {item}, and in the afternoon another {b}. Altogether, how many {item} is that?",
    ),
    Wording(
        "friend_gives",
        "+",
        "If {name} owns {a} {item} and a friend hands over {b} more, what is the new count of {item}?",
    ),
    Wording(
        "sold",
        "-",
        "A shelf had {a} {item}. After {b} were sold, how many {item} stayed on the shelf?",
    ),
    Wording(
        "leak",
        "-",
        "A tank holds {a} liters of water. Then {b} liters leak out. How many liters are left in the tank?",
    ),
)


def _problem(rng: random.Random, wording: Wording) -> Problem:
    """A problem in ``wording``: an addition fact of operands 1..MAX_OPERAND, or the
    subtraction that inverts one."""
    name, _ = pick(rng, NAMES)
    x, y = rng.randint(1, MAX_OPERAND), rng.randint(1, MAX_OPERAND)
    a, b = (x, y) if wording.op == "+" else (x + y, y)
    answer = a + b if wording.op == "+" else a - b
    other = "-" if wording.op == "+" else "+"
    question = wording.question.format(name=name, a=a, b=b, item=pick(rng, ITEMS))
    mistakes = [
        ((f"{a} {other} {b} = {R}.",), a - b if other == "-" else a + b),
        ((f"{a} {wording.op} {b} = {R}.",), a),  # an operand copied as the result
    ]
    return Problem(
        wording.name,
        question,
        answer,
        (f"{a} {wording.op} {b} = {R}.",),
        _valid_mistakes(answer, mistakes),
    )


TRAIN_TEMPLATES: dict[str, Callable[[random.Random], Problem]] = {
    w.name: (lambda rng, w=w: _problem(rng, w)) for w in TRAIN_WORDINGS
}
HELDOUT_TEMPLATES: dict[str, Callable[[random.Random], Problem]] = {
    w.name: (lambda rng, w=w: _problem(rng, w)) for w in HELDOUT_WORDINGS
}
_TRAIN_FNS = tuple(TRAIN_TEMPLATES.values())
_HELDOUT_FNS = tuple(HELDOUT_TEMPLATES.values())


def make_problem(rng: random.Random) -> Problem:
    """A training-template problem with at least one plausible mistake."""
    while True:
        prob = pick(rng, _TRAIN_FNS)(rng)
        if prob.mistakes:
            return prob


def make_heldout_problem(rng: random.Random) -> Problem:
    while True:
        prob = pick(rng, _HELDOUT_FNS)(rng)
        if prob.mistakes:
            return prob


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------
def correct_answer(prob: Problem) -> str:
    return worked(prob.steps, prob.answer)


def slip_answer(
    rng: random.Random, prob: Problem, avoid: frozenset[int] = frozenset()
) -> tuple[str, int]:
    """Correct working with an off-by-one slip in the last calculation (a value not in
    ``avoid`` when one of the two is free, so a ranked list's answers stay distinct)."""
    up, down = prob.answer + 1, prob.answer - 1
    order = [up, down] if prob.answer == 0 or maybe(rng, 0.5) else [down, up]
    free = [w for w in order if w >= 0 and w not in avoid]
    wrong = free[0] if free else prob.answer + 2
    return worked(prob.steps, wrong), wrong


def mistaken_answer(rng: random.Random, prob: Problem) -> tuple[str, int]:
    """Working that contains a plausible conceptual mistake."""
    steps, wrong = pick(rng, prob.mistakes)
    return worked(steps, wrong), wrong


def guess_answer(rng: random.Random, prob: Problem, avoid: set[int]) -> tuple[str, int]:
    """An unsupported guess, far from the answer."""
    while True:
        wrong = prob.answer + rng.choice((-1, 1)) * rng.randint(5, 40)
        if wrong >= 0 and wrong not in avoid:
            break
    text = pick(
        rng, ("I think the answer is {w}.", "It's probably {w}.", "Just estimating, about {w}.")
    )
    return f"{text.format(w=wrong)}\n#### {wrong}", wrong


def pair_row(rng: random.Random, prob: Problem, row_id: str) -> dict:
    rejected, _wrong = slip_answer(rng, prob) if maybe(rng, 0.2) else mistaken_answer(rng, prob)
    return {
        "id": row_id,
        "prompt": prob.question,
        "chosen": correct_answer(prob),
        "rejected": rejected,
        "subpreference": SUBPREFERENCE,
        "answer": prob.answer,
        "template": prob.template,
    }


def build_pairs(
    drawer: UniqueDrawer, sizes: dict[str, int], rng: random.Random
) -> dict[str, list[dict]]:
    return build_pair_splits(drawer, sizes, rng, pair_row, "logic")


__all__ = [
    "HELDOUT_TEMPLATES",
    "HELDOUT_WORDINGS",
    "MAX_OPERAND",
    "TRAIN_TEMPLATES",
    "TRAIN_WORDINGS",
    "Problem",
    "build_pairs",
    "correct_answer",
    "guess_answer",
    "make_heldout_problem",
    "make_problem",
    "mistaken_answer",
    "slip_answer",
    "worked",
]
