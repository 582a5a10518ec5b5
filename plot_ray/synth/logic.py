"""Logic corpus: arithmetic word problems with correct vs. plausibly wrong worked answers.

Each template samples numbers, states the question, gives the correct GSM8K-style working, and
lists the plausible mistakes a solver makes (forgetting a quantity, adding instead of
subtracting, an off-by-one count...). A worked answer always ends in ``#### N``. The rejected
answer of a pair carries the same style of working but reaches a different number.

``TRAIN_TEMPLATES`` feed the train/validation/test/ranked/warm-up files; ``HELDOUT_TEMPLATES``
appear only in ``eval/logic_heldout.jsonl`` (beside fresh problems from the training templates).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from plot_ray.synth.common import SPLITS, UniqueDrawer, maybe, pick

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


def _two_names(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(range(len(NAMES)), 2)
    return NAMES[a][0], NAMES[b][0]


# --------------------------------------------------------------------------------------------
# Training templates
# --------------------------------------------------------------------------------------------
def shopping(rng: random.Random) -> Problem:
    name, _ = pick(rng, NAMES)
    item = pick(
        rng,
        (
            "notebooks",
            "pens",
            "apples",
            "sandwiches",
            "candles",
            "plants",
            "comic books",
            "muffins",
            "pairs of socks",
            "mugs",
        ),
    )
    n, p = rng.randint(2, 9), rng.randint(2, 15)
    total = n * p
    bill = pick(rng, [b for b in (20, 50, 100, 200) if b > total])
    ans = bill - total
    q = pick(
        rng,
        (
            f"{name} buys {n} {item} that cost ${p} each and pays with a ${bill} bill. How much change does {name} get, in dollars?",
            f"{name} pays for {n} {item} at ${p} each with a ${bill} bill. How many dollars of change should {name} receive?",
        ),
    )
    steps = (
        f"The {item} cost {n} * {p} = {total} dollars.",
        f"The change is {bill} - {total} = {R} dollars.",
    )
    mistakes = [
        ((f"The change is {bill} - {p} = {R} dollars.",), bill - p),
        (
            (
                f"The {item} cost {n} + {p} = {n + p} dollars.",
                f"The change is {bill} - {n + p} = {R} dollars.",
            ),
            bill - n - p,
        ),
        (
            (
                f"The {item} cost {n} * {p} = {total} dollars.",
                f"The change is {bill} + {total} = {R} dollars.",
            ),
            bill + total,
        ),
    ]
    return Problem("shopping", q, ans, steps, _valid_mistakes(ans, mistakes))


def travel(rng: random.Random) -> Problem:
    vehicle = pick(rng, ("bus", "train", "car", "truck", "ferry", "cyclist"))
    s = rng.randint(2, 12) * 5 if vehicle == "cyclist" else rng.randint(6, 24) * 5
    h, d = rng.randint(2, 6), rng.randint(5, 60)
    ans = s * h + d
    q = pick(
        rng,
        (
            f"A {vehicle} travels at {s} kilometers per hour for {h} hours and then goes another {d} kilometers. How many kilometers does it travel in total?",
            f"A {vehicle} moves at {s} km per hour for {h} hours, then covers {d} more km. What is the total distance in km?",
        ),
    )
    steps = (
        f"In {h} hours it goes {s} * {h} = {s * h} km.",
        f"In total it travels {s * h} + {d} = {R} km.",
    )
    mistakes = [
        ((f"In {h} hours it goes {s} * {h} = {R} km.",), s * h),
        ((f"It travels {s} + {h} + {d} = {R} km.",), s + h + d),
        (
            (
                f"In {h} hours it goes {s} * {h} = {s * h} km.",
                f"In total it travels {s * h} - {d} = {R} km.",
            ),
            s * h - d,
        ),
    ]
    return Problem("travel", q, ans, steps, _valid_mistakes(ans, mistakes))


def sharing(rng: random.Random) -> Problem:
    name, _ = pick(rng, NAMES)
    item = pick(
        rng,
        ("marbles", "stickers", "cookies", "cards", "strawberries", "stamps", "crayons", "shells"),
    )
    k, each, keep = rng.randint(2, 8), rng.randint(3, 15), rng.randint(1, 9)
    total = k * each + keep
    q = pick(
        rng,
        (
            f"{name} has {total} {item}. {name} keeps {keep} and shares the rest equally among {k} friends. How many {item} does each friend get?",
            f"There are {total} {item} in a jar. {name} takes {keep} and splits the rest equally between {k} friends. How many does each friend receive?",
        ),
    )
    rest = total - keep
    steps = (
        f"After keeping {keep}, there are {total} - {keep} = {rest} left.",
        f"Each friend gets {rest} / {k} = {R}.",
    )
    mistakes = [
        (
            (
                f"After keeping {keep}, there are {total} - {keep} = {rest} left.",
                f"Each friend gets {rest} - {k} = {R}.",
            ),
            rest - k,
        ),
        ((f"Each friend gets {total} / {k + 1} = {R}.",), total // (k + 1))
        if total % (k + 1) == 0
        else ((), -1),
        ((f"Each friend gets {total} / {k} = {R}.",), total // k) if total % k == 0 else ((), -1),
        (
            (
                f"After keeping {keep}, there are {total} + {keep} = {total + keep} left.",
                f"Each friend gets {total + keep} / {k} = {R}.",
            ),
            (total + keep) // k,
        )
        if (total + keep) % k == 0
        else ((), -1),
    ]
    return Problem("sharing", q, each, steps, _valid_mistakes(each, mistakes))


def ages(rng: random.Random) -> Problem:
    a, b = _two_names(rng)
    x, y = rng.randint(2, 12), rng.randint(2, 10)
    b_now = rng.randint(4, 40)
    z = b_now + y
    ans = b_now + x
    q = pick(
        rng,
        (
            f"{a} is {x} years older than {b}. In {y} years, {b} will be {z} years old. How old is {a} now?",
            f"In {y} years {b} will be {z}. {a} is {x} years older than {b}. How old is {a} today?",
        ),
    )
    steps = (f"{b} is {z} - {y} = {b_now} years old now.", f"{a} is {b_now} + {x} = {R} years old.")
    mistakes = [
        ((f"{a} is {z} + {x} = {R} years old.",), z + x),
        (
            (
                f"{b} is {z} - {y} = {b_now} years old now.",
                f"{a} is {b_now} - {x} = {R} years old.",
            ),
            b_now - x,
        ),
        (
            (
                f"{b} is {z} + {y} = {z + y} years old now.",
                f"{a} is {z + y} + {x} = {R} years old.",
            ),
            z + y + x,
        ),
    ]
    return Problem("ages", q, ans, steps, _valid_mistakes(ans, mistakes))


def savings(rng: random.Random) -> Problem:
    name, poss = pick(rng, NAMES)
    s, w = rng.randint(3, 25), rng.randint(3, 12)
    saved = s * w
    c = rng.randint(max(1, saved // 5), saved - 1)
    thing = pick(
        rng,
        (
            "a bike helmet",
            "a board game",
            "a pair of shoes",
            "a concert ticket",
            "a book set",
            "art supplies",
        ),
    )
    ans = saved - c
    q = pick(
        rng,
        (
            f"{name} saves ${s} every week for {w} weeks and then spends ${c} on {thing}. How many dollars does {name} have left?",
            f"Every week {name} puts ${s} into {poss} piggy bank. After {w} weeks {name} buys {thing} for ${c}. How much money is left?",
        ),
    )
    steps = (
        f"{name} saves {s} * {w} = {saved} dollars.",
        f"After spending, {saved} - {c} = {R} dollars are left.",
    )
    mistakes = [
        (
            (
                f"{name} saves {s} * {w - 1} = {s * (w - 1)} dollars.",
                f"After spending, {s * (w - 1)} - {c} = {R} dollars are left.",
            ),
            s * (w - 1) - c,
        ),
        ((f"{name} saves {s} * {w} = {R} dollars.",), saved),
        (
            (
                f"{name} saves {s} * {w} = {saved} dollars.",
                f"After spending, {saved} + {c} = {R} dollars are left.",
            ),
            saved + c,
        ),
    ]
    return Problem("savings", q, ans, steps, _valid_mistakes(ans, mistakes))


def baking(rng: random.Random) -> Problem:
    name, _ = pick(rng, NAMES)
    unit = pick(rng, ("eggs", "cups of flour", "bananas", "lemons", "sticks of butter"))
    a, b = rng.randint(2, 6), rng.randint(2, 9)
    need = a * b
    c = rng.randint(2, need - 1)
    ans = need - c
    q = pick(
        rng,
        (
            f"A recipe uses {a} {unit} per batch. {name} wants to bake {b} batches and already has {c} {unit}. How many more {unit} does {name} need?",
            f"{name} is baking {b} batches of a recipe that needs {a} {unit} each. There are {c} {unit} at home. How many more {unit} must {name} buy?",
        ),
    )
    steps = (
        f"{b} batches need {a} * {b} = {need} {unit}.",
        f"{name} needs {need} - {c} = {R} more.",
    )
    mistakes = [
        ((f"{b} batches need {a} * {b} = {R} {unit}.",), need),
        (
            (
                f"{b} batches need {a} + {b} = {a + b} {unit}.",
                f"{name} needs {a + b} - {c} = {R} more.",
            ),
            a + b - c,
        ),
        (
            (
                f"{b} batches need {a} * {b} = {need} {unit}.",
                f"{name} needs {need} + {c} = {R} more.",
            ),
            need + c,
        ),
    ]
    return Problem("baking", q, ans, steps, _valid_mistakes(ans, mistakes))


def garden(rng: random.Random) -> Problem:
    name, _ = pick(rng, NAMES)
    plant = pick(rng, ("tomato", "pepper", "lettuce", "bean", "sunflower", "strawberry"))
    r, c = rng.randint(2, 12), rng.randint(3, 15)
    total = r * c
    d = rng.randint(1, min(20, total - 1))
    ans = total - d
    q = pick(
        rng,
        (
            f"{name} plants {r} rows with {c} {plant} plants in each row. Then {d} of the plants do not survive. How many {plant} plants are left?",
            f"A garden has {r} rows of {plant} plants with {c} plants per row. If {d} plants die, how many plants remain?",
        ),
    )
    steps = (
        f"There are {r} * {c} = {total} plants.",
        f"After losing {d}, {total} - {d} = {R} plants are left.",
    )
    mistakes = [
        (
            (
                f"There are {r} + {c} = {r + c} plants.",
                f"After losing {d}, {r + c} - {d} = {R} plants are left.",
            ),
            r + c - d,
        ),
        (
            (
                f"There are {r} * {c} = {total} plants.",
                f"After losing {d}, {total} + {d} = {R} plants are left.",
            ),
            total + d,
        ),
        ((f"There are {r} * {c} = {R} plants.",), total),
    ]
    return Problem("garden", q, ans, steps, _valid_mistakes(ans, mistakes))


def reading(rng: random.Random) -> Problem:
    name, _ = pick(rng, NAMES)
    d, n = rng.randint(5, 30), rng.randint(2, 10)
    read = d * n
    pages = read + rng.randint(5, 150)
    ans = pages - read
    q = pick(
        rng,
        (
            f"A book has {pages} pages. {name} reads {d} pages every day for {n} days. How many pages are left to read?",
            f"{name} is reading a {pages}-page novel at {d} pages a day. After {n} days, how many pages remain?",
        ),
    )
    steps = (
        f"In {n} days {name} reads {d} * {n} = {read} pages.",
        f"There are {pages} - {read} = {R} pages left.",
    )
    mistakes = [
        ((f"In {n} days {name} reads {d} * {n} = {R} pages.",), read),
        (
            (
                f"In {n - 1} days {name} reads {d} * {n - 1} = {d * (n - 1)} pages.",
                f"There are {pages} - {d * (n - 1)} = {R} pages left.",
            ),
            pages - d * (n - 1),
        ),
        ((f"There are {pages} - {d} - {n} = {R} pages left.",), pages - d - n),
    ]
    return Problem("reading", q, ans, steps, _valid_mistakes(ans, mistakes))


# --------------------------------------------------------------------------------------------
# Held-out templates (only in eval/logic_heldout.jsonl)
# --------------------------------------------------------------------------------------------
def factory(rng: random.Random) -> Problem:
    m, h, d = rng.randint(3, 20), rng.randint(2, 10), rng.randint(2, 7)
    ans = m * h * d
    thing = pick(rng, ("toys", "bottles", "bricks", "bolts", "boxes"))
    q = f"A machine makes {m} {thing} every hour. It runs {h} hours a day for {d} days. How many {thing} does it make altogether?"
    steps = (
        f"Each day it makes {m} * {h} = {m * h} {thing}.",
        f"Over {d} days it makes {m * h} * {d} = {R} {thing}.",
    )
    mistakes = [((f"It makes {m} * {h} = {R} {thing}.",), m * h)]
    return Problem("factory", q, ans, steps, _valid_mistakes(ans, mistakes))


def tickets(rng: random.Random) -> Problem:
    a, c = rng.randint(8, 30), rng.randint(3, 15)
    x, y = rng.randint(1, 4), rng.randint(1, 5)
    ans = a * x + c * y
    q = f"Adult tickets cost ${a} and child tickets cost ${c}. A family buys {x} adult tickets and {y} child tickets. How many dollars do they pay in total?"
    steps = (
        f"Adults: {x} * {a} = {a * x}. Children: {y} * {c} = {c * y}.",
        f"Total: {a * x} + {c * y} = {R} dollars.",
    )
    mistakes = [((f"Total: {a} + {c} = {R} dollars.",), a + c)]
    return Problem("tickets", q, ans, steps, _valid_mistakes(ans, mistakes))


def temperature(rng: random.Random) -> Problem:
    t, u = rng.randint(0, 20), rng.randint(2, 15)
    v = rng.randint(1, t + u)
    ans = t + u - v
    q = f"In the morning it is {t} degrees. By noon the temperature rises by {u} degrees, and by night it falls by {v} degrees. What is the temperature at night, in degrees?"
    steps = (
        f"At noon it is {t} + {u} = {t + u} degrees.",
        f"At night it is {t + u} - {v} = {R} degrees.",
    )
    mistakes = [((f"At night it is {t} + {u} + {v} = {R} degrees.",), t + u + v)]
    return Problem("temperature", q, ans, steps, _valid_mistakes(ans, mistakes))


TRAIN_TEMPLATES: dict[str, Callable[[random.Random], Problem]] = {
    "shopping": shopping,
    "travel": travel,
    "sharing": sharing,
    "ages": ages,
    "savings": savings,
    "baking": baking,
    "garden": garden,
    "reading": reading,
}
HELDOUT_TEMPLATES: dict[str, Callable[[random.Random], Problem]] = {
    "factory": factory,
    "tickets": tickets,
    "temperature": temperature,
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


def slip_answer(rng: random.Random, prob: Problem) -> tuple[str, int]:
    """Correct working with an off-by-one slip in the last calculation."""
    wrong = prob.answer + (1 if prob.answer == 0 or maybe(rng, 0.5) else -1)
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
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        probs = drawer.draw(sizes[split])
        out[split] = [pair_row(rng, p, f"logic-{split}-{i:06d}") for i, p in enumerate(probs)]
    return out


__all__ = [
    "HELDOUT_TEMPLATES",
    "TRAIN_TEMPLATES",
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
