"""What the multiple-choice sub-preferences (reasoning, STEM) share: an item, the lettered
prompt the model answers, the preference pair (the right letter and option preferred to a
wrong one), the warm-up answer and the evaluation row in MMLU's shape.

The lettered prompt is the one ``plot-ray eval``'s choice task shows
(:func:`plot_ray.eval.choice.lettered_prompt`; a test keeps the two equal), so training,
warm-up and evaluation ask in one format.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from plot_ray.synth.common import maybe

LETTERS = "ABCD"
# The share of warm-up answers that pick the right option (the rest a wrong one): the knob
# that sets where the base model starts, calibrated on the base model alone (SCHEMA.md v3).
WARMUP_CORRECT = 0.6


@dataclass(frozen=True)
class ChoiceItem:
    """``subject``: ``<sub-preference>/<area>`` (e.g. ``reasoning/comparison``; a held-out wording
    ``<sub-preference>_heldout/<area>``); ``fact``: what
    the item asks about (a STEM fact's name, "" for reasoning); ``heldout``: the item uses a
    held-out wording or asks about a held-out fact."""

    subject: str
    question: str
    choices: tuple[str, ...]
    answer_index: int
    wording: str
    heldout: bool
    fact: str = ""

    @property
    def prompt(self) -> str:
        return lettered_prompt(self.question, self.choices)


def lettered_prompt(question: str, choices: tuple[str, ...] | list[str]) -> str:
    lines = [question] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:"


def shuffled_item(
    rng: random.Random,
    subject: str,
    question: str,
    right: str,
    wrong: list[str],
    wording: str,
    heldout: bool,
    fact: str = "",
) -> ChoiceItem:
    """An item with ``right`` and three of ``wrong`` in a random order."""
    options = [right, *rng.sample(wrong, 3)]
    rng.shuffle(options)
    return ChoiceItem(
        subject, question, tuple(options), options.index(right), wording, heldout, fact
    )


def answer(item: ChoiceItem, index: int) -> str:
    """An answer naming option ``index``: ``"B. <option>"``."""
    return f"{LETTERS[index]}. {item.choices[index]}"


def pair_row(rng: random.Random, item: ChoiceItem, row_id: str, subpreference: str) -> dict:
    wrong = rng.choice([i for i in range(len(item.choices)) if i != item.answer_index])
    return {
        "id": row_id,
        "prompt": item.prompt,
        "chosen": answer(item, item.answer_index),
        "rejected": answer(item, wrong),
        "subpreference": subpreference,
        "subject": item.subject,
        "answer_index": item.answer_index,
    }


def warmup_answer(rng: random.Random, item: ChoiceItem) -> tuple[bool, str]:
    """(right?, answer) for a warm-up row: right with probability :data:`WARMUP_CORRECT`."""
    if maybe(rng, WARMUP_CORRECT):
        return True, answer(item, item.answer_index)
    wrong = rng.choice([i for i in range(len(item.choices)) if i != item.answer_index])
    return False, answer(item, wrong)


def eval_row(item: ChoiceItem, row_id: str) -> dict:
    """MMLU's shape (``question, subject, choices, answer``) plus *extra* keys."""
    return {
        "id": row_id,
        "question": item.question,
        "subject": item.subject,
        "choices": list(item.choices),
        "answer": item.answer_index,
        "wording": item.wording,
        "heldout": item.heldout,
    }


__all__ = [
    "LETTERS",
    "WARMUP_CORRECT",
    "ChoiceItem",
    "answer",
    "eval_row",
    "lettered_prompt",
    "pair_row",
    "shuffled_item",
    "warmup_answer",
]
