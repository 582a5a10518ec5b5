"""Grading sampled completions and turning them into preference data (pure Python, no Ray).

    grade(samples, problem, style, flexible)      each sample + extracted answer, correct
    candidates(graded, unparseable)               (correct, wrong): distinct, usable responses
    trl_pairs(problem, correct, wrong, n)         up to n (chosen, rejected) rows
    ranked_list(problem, correct, wrong)          one list, correct first, scores 1 / 0
    count(graded, ...)                            the summary's counts
    require_an_answer(graded, style, ...)         an error when no sample holds an answer

A sample is **correct** when its extracted answer equals the reference (``plot_ray.eval.answers``),
**wrong** when it has an answer that differs, **unparseable** when it holds no answer in the
grader's style (``correct`` is ``None``). Unparseable samples are rejected responses under
``pairs.unparseable: wrong`` (the model failed to answer in the asked form, which is what the
pairs should teach) and never paired under ``exclude``; the counts report them either way.
Empty completions are never paired (``prepare`` would quarantine an empty response). Responses
that repeat an earlier sample's text (after stripping) are paired once.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from plot_ray.eval.answers import answers_match, extract_answer

__all__ = [
    "ANSWER_FORM",
    "candidates",
    "count",
    "grade",
    "ranked_list",
    "require_an_answer",
    "trl_pairs",
]

ANSWER_FORM = {"gsm8k": "'#### N'", "math": "\\boxed{...}"}  # what each grader looks for


def grade(samples: list[dict], reference: str, style: str, flexible: bool) -> list[dict]:
    """``samples`` (rows with ``completion``) with ``extracted`` (the answer, or None) and
    ``correct`` (True / False, None when unparseable) added; ``reference`` is already an
    answer (:func:`~plot_ray.eval.answers.reference_answer`)."""
    out = []
    for s in samples:
        extracted = extract_answer(s["completion"], style, flexible)
        correct = None if extracted is None else answers_match(extracted, reference, style)
        out.append({**s, "extracted": extracted, "correct": correct})
    return out


def require_an_answer(graded: list[dict], style: str, flexible: bool, where: str) -> None:
    """Raise ``ValueError`` when the grader found no answer in any of ``graded`` (the graded
    samples of ``where``, e.g. ``shard 0``): then the prompt or the grader does not fit the
    model, and pairs of its samples would teach nothing. The message says what to change."""
    if not graded or any(g["correct"] is not None for g in graded):
        return
    example = next((g["completion"] for g in graded if g["completion"].strip()), "")
    raise ValueError(
        f"pairs.style={style}: the grader found no answer ({ANSWER_FORM[style]}) in any of "
        f"the {len(graded)} completions of {where} (e.g. {example[:300]!r}): ask for that form "
        "in pairs.prompt_template, choose the style the model writes (pairs.style), allow more "
        "tokens (pairs.generation.max_new_tokens)"
        + (
            ", or grade the last number (pairs.flexible=true)"
            if style == "gsm8k" and not flexible
            else ""
        )
    )


def _distinct_usable(samples: list[dict]) -> list[dict]:
    seen: set[str] = set()
    out = []
    for s in samples:
        text = s["completion"].strip()
        if text and text not in seen:
            seen.add(text)
            out.append(s)
    return out


def candidates(graded: list[dict], unparseable: str) -> tuple[list[dict], list[dict]]:
    """A problem's usable chosen and rejected responses, in sample order."""
    correct = [s for s in graded if s["correct"] is True]
    wrong = [
        s
        for s in graded
        if s["correct"] is False or (s["correct"] is None and unparseable == "wrong")
    ]
    return _distinct_usable(correct), _distinct_usable(wrong)


def trl_pairs(problem: dict, correct: list[dict], wrong: list[dict], limit: int) -> list[dict]:
    """Up to ``limit`` distinct (chosen, rejected) pairs: pair ``j`` takes correct sample
    ``j mod |correct|`` and wrong sample ``j mod |wrong|``, for ``j < max(|correct|, |wrong|)``,
    so every usable sample is in some pair before any repeats (and no pair twice)."""
    if not correct or not wrong:
        return []
    rows = []
    for j in range(min(limit, max(len(correct), len(wrong)))):
        c, w = correct[j % len(correct)], wrong[j % len(wrong)]
        rows.append(
            {
                "prompt": problem["message"],
                "chosen": c["completion"],
                "rejected": w["completion"],
                "problem_id": problem["problem_id"],
                "chosen_sample": c["sample"],
                "rejected_sample": w["sample"],
            }
        )
    return rows


def ranked_list(problem: dict, correct: list[dict], wrong: list[dict]) -> dict | None:
    """The problem's responses, correct first, with scores 1.0 (correct) and 0.0 (wrong or
    unparseable); None without at least one of each."""
    if not correct or not wrong:
        return None
    responses = correct + wrong
    return {
        "prompt": problem["message"],
        "responses": [s["completion"] for s in responses],
        "scores": [1.0] * len(correct) + [0.0] * len(wrong),
        "problem_id": problem["problem_id"],
        "samples": [s["sample"] for s in responses],
    }


def count(graded_by_problem: dict[Any, list[dict]], unparseable: str) -> dict[str, int]:
    """Samples by label, and problems with no correct / no wrong (usable) sample."""
    c: Counter = Counter()
    for graded in graded_by_problem.values():
        for s in graded:
            label = {True: "correct", False: "wrong", None: "unparseable"}[s["correct"]]
            c[label] += 1
            c["empty"] += not s["completion"].strip()
        correct, wrong = candidates(graded, unparseable)
        c["problems_no_correct"] += not correct
        c["problems_no_wrong"] += not wrong
    return {
        "samples": c["correct"] + c["wrong"] + c["unparseable"],
        "correct": c["correct"],
        "wrong": c["wrong"],
        "unparseable": c["unparseable"],
        "empty": c["empty"],
        "problems_no_correct": c["problems_no_correct"],
        "problems_no_wrong": c["problems_no_wrong"],
    }
