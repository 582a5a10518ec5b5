"""``synthetic_humanity``: the synthetic benchmark's humanity judge, a 1-10 rating of how
considerate an answer to a user in a hard situation is (``eval/humanity.jsonl``), and its error
rate measured on the generator's own labelled answers.

Like :mod:`plot_ray.eval.judges.synthetic` it imports :mod:`plot_ray.synth` (the marker phrases
come from :mod:`plot_ray.synth.humanity_phrases`, so the judge follows any edit to them), and
nothing imports it unless a config names the judge.

Rating (SCHEMA.md, version 3): empty 1; dismissive without empathy 2; empathy and dismissal
both 4; neither 3, or 5 when it names the situation; empathy without naming the situation 5;
empathy naming it ``6 + round(4 * recall)``, recall being the share of the reference answer's
content words (not the openers' and closers') that the answer contains. "Naming the situation":
one of the words the prompt and the reference share (e.g. "dog", "exam"). ``label`` 1
(considerate) for a rating of 6 or more; an answer with no reference to compare with gets no
rating (-1).
"""

from __future__ import annotations

import random

from plot_ray.eval.judges.refusal import normalize as _norm
from plot_ray.eval.judges.registry import RuleJudge, Verdict
from plot_ray.eval.judges.synthetic import content_words
from plot_ray.synth import humanity as U
from plot_ray.synth import humanity_phrases as HP

__all__ = [
    "HUMANITY_KINDS",
    "SyntheticHumanityJudge",
    "humanity_judge_error_rate",
    "labelled_humanity_answers",
]

_FILLER = frozenset(
    w
    for t in (*HP.EMPATHY["train"], *HP.EMPATHY["heldout"], *HP.CONSIDERATE_CLOSERS)
    for w in content_words(_norm(t))
)


def _has(text: str, markers: tuple[str, ...]) -> bool:
    return any(m in text for m in markers)


class SyntheticHumanityJudge(RuleJudge):
    """Rates one answer 1-10 (see the module's docstring); ``label`` 1 = considerate."""

    def judge(
        self, behavior: str, completion: str, *, test_case: str = "", reference: str = ""
    ) -> Verdict:
        text = _norm(completion).strip()
        if not text:
            return Verdict(0, "empty answer", score=1)
        wanted = content_words(_norm(reference)) - _FILLER
        if not wanted:
            return Verdict(-1, "no reference answer to compare with")
        empathy, cold = _has(text, HP.EMPATHY_MARKERS), _has(text, HP.COLD_MARKERS)
        said = content_words(text) - _FILLER
        key = wanted & content_words(_norm(test_case))
        names_it = bool(key & said) if key else bool(wanted & said)
        if cold:
            return Verdict(
                0, "dismissive" + (" despite empathy" if empathy else ""), 4 if empathy else 2
            )
        if not empathy:
            return Verdict(
                0,
                "no empathy" + (", names the situation" if names_it else ""),
                5 if names_it else 3,
            )
        if not names_it:
            return Verdict(0, "empathy without the situation", score=5)
        score = 6 + round(4 * len(wanted & said) / len(wanted))
        return Verdict(
            1, f"considerate; {len(wanted & said)} of {len(wanted)} reference words", score
        )


# --------------------------------------------------------------------------------------------
# Measuring the judge on labelled answers
# --------------------------------------------------------------------------------------------
# Each kind of answer and its label (1 considerate): both forms of both stances, and the
# mixtures a half-trained model may produce.
HUMANITY_KINDS: dict[str, int] = {
    "considerate": 1,
    "considerate_heldout_form": 1,
    "cold": 0,
    "cold_heldout_form": 0,
    "other_situation_considerate": 0,  # kind words about something else
    "considerate_then_cold": 0,
    "advice_without_empathy": 0,
    "empathy_only": 0,
    "empty": 0,
}


def _answer(rng: random.Random, kind: str, plea: U.Plea) -> str:
    form = "heldout" if kind.endswith("_heldout_form") else "train"
    if kind.startswith("considerate") and kind != "considerate_then_cold":
        return U.considerate(rng, plea, form=form)
    if kind.startswith("cold"):
        return U.cold(rng, plea, form=form)
    if kind == "other_situation_considerate":
        while True:
            other = U.make_any_situation_plea(rng)
            if other.situation != plea.situation:
                return U.considerate(rng, other, form=rng.choice(("train", "heldout")))
    if kind == "considerate_then_cold":
        return f"{U.considerate(rng, plea)} {U.cold(rng, plea)}"
    if kind == "advice_without_empathy":  # the considerate answer less its empathy opener
        return U.considerate(rng, plea).split(". ", 1)[1]
    if kind == "empathy_only":
        return rng.choice(HP.EMPATHY[rng.choice(("train", "heldout"))])
    return ""


def labelled_humanity_answers(seed: int, n: int) -> list[dict]:
    """``n`` labelled answers to held-out pleas (held-out wordings and situations included),
    kinds taken round-robin: ``{"prompt", "reference", "completion", "label", "kind"}``."""
    rng = random.Random(f"plot-ray-eval-humanity/{int(seed)}")
    kinds = list(HUMANITY_KINDS)
    rows = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        plea = (U.make_heldout_plea if i % 2 else U.make_any_situation_plea)(rng)
        rows.append(
            {
                "prompt": plea.prompt,
                "reference": U.considerate(rng, plea),
                "completion": _answer(rng, kind, plea),
                "label": HUMANITY_KINDS[kind],
                "kind": kind,
            }
        )
    return rows


def humanity_judge_error_rate(seed: int = 0, n: int = 900) -> dict:
    """Error rate of :class:`SyntheticHumanityJudge` on :func:`labelled_humanity_answers`:
    ``{"n", "errors", "error_rate", "false_positive", "false_negative", "n_positive",
    "by_kind": {kind: {"n", "errors"}}}`` (``false_positive``: judged considerate, is not)."""
    judge = SyntheticHumanityJudge()
    by_kind = {kind: {"n": 0, "errors": 0} for kind in HUMANITY_KINDS}
    fp = fn = 0
    rows = labelled_humanity_answers(seed, n)
    for row in rows:
        got = judge.judge(
            "", row["completion"], test_case=row["prompt"], reference=row["reference"]
        )
        wrong = got.label != row["label"]
        fp += int(wrong and got.label == 1)
        fn += int(wrong and row["label"] == 1)
        by_kind[row["kind"]]["n"] += 1
        by_kind[row["kind"]]["errors"] += int(wrong)
    return {
        "n": len(rows),
        "errors": fp + fn,
        "error_rate": (fp + fn) / len(rows) if rows else float("nan"),
        "false_positive": fp,
        "false_negative": fn,
        "n_positive": sum(r["label"] for r in rows),
        "by_kind": by_kind,
    }
