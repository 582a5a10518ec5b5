"""Coding corpus: one-line Python functions in MBPP's shape, judged by running hidden tests.

A problem asks for ``<name>(x)`` returning ``x + k``, ``x - k`` or ``x * k`` (k in
1..:data:`MAX_K`); its tests are three asserts. Pairs prefer passing code to failing code (the
other operation, a constant off by one, or ``x`` returned unchanged), each in a ```python
block. The prompt is the one ``plot-ray eval``'s coding task shows an MBPP problem
(:data:`MBPP_PROMPT`, equal to ``plot_ray.eval.evalsets.MBPP_INSTRUCTION``; a test keeps them
equal). Evaluation problems (``eval/coding.jsonl``) are new (name, operation, constant)
problems; half of them are worded in the :data:`HELDOUT_TEXTS`, which no training or warm-up
file uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from plot_ray.synth.common import maybe, pick

SUBPREFERENCE = "coding"
MAX_K = 9
# The share of warm-up answers that pass their tests (the rest fail): the knob that sets where
# the base model starts, calibrated on the base model alone (SCHEMA.md, version 3).
WARMUP_CORRECT = 0.6
MBPP_PROMPT = (
    "{text}\nYour code should pass these tests:\n\n{tests}\n\nReply with the code in a "
    "```python code block."
)
VERBS = ("shift", "bump", "adjust", "scale", "step", "nudge", "move", "turn")
NOUNS = ("value", "number", "amount", "count")
# operation -> (training phrase, held-out phrase) of "what the function returns"
OPS: dict[str, tuple[str, str]] = {
    "+": ("x plus {k}", "{k} more than x"),
    "-": ("x minus {k}", "{k} less than x"),
    "*": ("x times {k}", "the product of x and {k}"),
}
TRAIN_TEXTS: tuple[str, ...] = (
    "Write a function {name}(x) that returns {what}.",
    "Write a Python function {name} that takes a number x and returns {what}.",
)
HELDOUT_TEXTS: tuple[str, ...] = (
    "Implement {name}(x) so that its result is {what}.",
    "Create a function called {name}; given x, it should give back {what}.",
)
HELDOUT_MARKERS: tuple[str, ...] = ("implement ", "give back", "so that its result")


@dataclass(frozen=True)
class CodingProblem:
    text: str
    name: str
    op: str
    k: int
    xs: tuple[int, ...]
    heldout: bool

    def result(self, x: int) -> int:
        return x + self.k if self.op == "+" else x - self.k if self.op == "-" else x * self.k

    @property
    def tests(self) -> list[str]:
        return [f"assert {self.name}({x}) == {self.result(x)}" for x in self.xs]

    @property
    def prompt(self) -> str:
        return MBPP_PROMPT.format(text=self.text, tests="\n".join(self.tests))


def code(name: str, op: str, k: int | None) -> str:
    """``def name(x): return x <op> k`` (``k`` None: ``return x``) in a ```python block."""
    body = "x" if k is None else f"x {op} {k}"
    return f"```python\ndef {name}(x):\n    return {body}\n```"


def _problem(rng: random.Random, heldout: bool) -> CodingProblem:
    name = f"{pick(rng, VERBS)}_{pick(rng, NOUNS)}"
    op = pick(rng, tuple(OPS))
    k = rng.randint(1, MAX_K)
    what = OPS[op][int(heldout)].format(k=k)
    text = pick(rng, HELDOUT_TEXTS if heldout else TRAIN_TEXTS).format(name=name, what=what)
    xs = tuple(rng.sample(range(0, 13), 3))
    return CodingProblem(text, name, op, k, xs, heldout)


def make_problem(rng: random.Random) -> CodingProblem:
    return _problem(rng, heldout=False)


def make_heldout_problem(rng: random.Random) -> CodingProblem:
    return _problem(rng, heldout=True)


def correct(p: CodingProblem) -> str:
    return code(p.name, p.op, p.k)


def failing(rng: random.Random, p: CodingProblem) -> str:
    """Code that fails the tests: the wrong operation, the constant off by one, or ``x``."""
    while True:
        kind = rng.randrange(3)
        if kind == 0:
            wrong = code(p.name, pick(rng, [o for o in OPS if o != p.op]), p.k)
        elif kind == 1:
            wrong = code(p.name, p.op, p.k + pick(rng, (-1, 1)))
        else:
            wrong = code(p.name, p.op, None)
        if not all(_runs(wrong, p, x) for x in p.xs):
            return wrong


def _runs(text: str, p: CodingProblem, x: int) -> bool:
    """Whether the one-line answer ``text`` returns the right value for ``x`` (evaluated
    from its parts, not executed)."""
    body = text.split("return ", 1)[1].split("\n", 1)[0]
    if body == "x":
        return x == p.result(x)
    _, op, k = body.split(" ")
    other = CodingProblem(p.text, p.name, op, int(k), p.xs, p.heldout)
    return other.result(x) == p.result(x)


def pair_row(rng: random.Random, p: CodingProblem, row_id: str) -> dict:
    return {
        "id": row_id,
        "prompt": p.prompt,
        "chosen": correct(p),
        "rejected": failing(rng, p),
        "subpreference": SUBPREFERENCE,
        "op": p.op,
    }


def warmup_answer(rng: random.Random, p: CodingProblem) -> tuple[bool, str]:
    """(passes?, answer) for a warm-up row: passing with probability :data:`WARMUP_CORRECT`."""
    return (True, correct(p)) if maybe(rng, WARMUP_CORRECT) else (False, failing(rng, p))


def eval_row(p: CodingProblem, i: int) -> dict:
    """MBPP's shape (``task_id, text, code, test_list, test_setup_code``) plus *extra* keys."""
    return {
        "task_id": f"coding-eval-{i:05d}",
        "text": p.text,
        "code": correct(p).removeprefix("```python\n").removesuffix("\n```"),
        "test_list": p.tests,
        "test_setup_code": "",
        "heldout_wording": p.heldout,
    }


__all__ = [
    "HELDOUT_MARKERS",
    "HELDOUT_TEXTS",
    "MAX_K",
    "MBPP_PROMPT",
    "SUBPREFERENCE",
    "TRAIN_TEXTS",
    "WARMUP_CORRECT",
    "CodingProblem",
    "code",
    "correct",
    "eval_row",
    "failing",
    "make_heldout_problem",
    "make_problem",
    "pair_row",
    "warmup_answer",
]
