"""Judged helpfulness, MT-Bench style: single-answer grading (1-10) and pairwise comparison
with position swap, by a judge model through the engine pool or by a rule judge.

    rating_request(case, answered, completion) -> a judge request row (kind "rating")
    pair_requests(case, model_conv, baseline_conv) -> two request rows (kind "pair": A/B, B/A)
    parse_rating(text) -> 1..10 or -1          parse_preference(text) -> "A" | "B" | "tie" | ""
    combine_orders(first, second) -> "win" | "tie" | "loss" | "unparseable"

``eval.helpfulness_judge`` names a registered ``helpfulness`` judge (``synthetic_helpfulness``,
a rule judge for the synthetic benchmark) or is a model path that :class:`ModelHelpfulnessJudge`
prompts. Every judge takes *request rows*: ``judge_kind`` (``rating`` or ``pair``),
``judge_prompt`` (the text a model judge reads), and for a rule judge ``question``,
``reference``, ``answer`` (rating) or ``answer_a``/``answer_b`` (pair); it returns them with
``rating`` (1-10, -1 unparseable) or ``preference`` (``A``, ``B``, ``tie``, ``""`` unparseable)
and ``judge_output`` (the model judge's text, or the rule's reason).

Single-answer grading (MT-Bench's ``single`` mode): the judge sees the question, the answer
and, where the case has one, a reference answer (MT-Bench shows one for its math, reasoning and
coding questions); for a later turn it sees the whole conversation (the model's own earlier
answers included) and rates the last answer. The judge writes a justification and then the
rating as ``[[N]]``; the last ``[[N]]`` (or ``[[N.5]]``) in the text counts, anything outside
1-10 or no such tag is -1 and counted apart. The score is the mean over questions and turns of
the parsed ratings.

Pairwise comparison against ``eval.baseline`` (MT-Bench's ``pairwise-baseline`` mode): each
question is judged twice, the model as assistant A and then as assistant B, and the verdicts
are combined conservatively as in FastChat's ``llm_judge``: a win (or a loss) only when both
orders agree; both orders saying tie, or the two orders disagreeing (position bias) is a tie.
FastChat (``fastchat/llm_judge``'s result tables) keeps a pair's verdict when ``g1_winner ==
g2_winner`` and otherwise records ``inconsistent``, which its win rates count as a tie. One
difference: a judgement with no verdict tag, or with both ``[[A]]`` and ``[[B]]``, in either
order makes the question unparseable here (FastChat's ``error`` would make it inconsistent):
counted apart and left out of the win rate ``(wins + ties / 2) / n``, so that a judge that
cannot answer does not pull every model towards 50%.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from plot_ray.eval.judges.registry import (
    JUDGES,
    Judge,
    JudgeContext,
    JudgeSpec,
    RuleJudge,
    get_judge,
    register_judge,
)

__all__ = [
    "PAIR_PROMPT",
    "RATING_PROMPT",
    "HelpfulnessRuleJudge",
    "ModelHelpfulnessJudge",
    "combine_orders",
    "pair_prompt",
    "pair_requests",
    "parse_preference",
    "parse_rating",
    "rating_prompt",
    "rating_request",
    "resolve_helpfulness_judge",
    "win_tie_loss",
]

RATING_PROMPT = """You are grading the helpfulness of an AI assistant's answer. Consider whether the answer is correct, relevant to what the user asked, complete, clear and as detailed as the question needs; do not reward length for its own sake.{reference_note}

{transcript}{reference_block}

Explain your judgement in a few sentences, then rate the answer on a scale of 1 (useless) to 10 (excellent), written exactly as [[rating]], for example: Rating: [[6]]"""  # noqa: E501

PAIR_PROMPT = """You are comparing two AI assistants, A and B, on the same user request. Decide whose last answer is more helpful: more correct, relevant, complete and clear. The order in which the assistants appear, the length of their answers and their names must not influence you.{reference_note}

{transcripts}{reference_block}

Explain your judgement in a few sentences, then give your verdict written exactly as one of: [[A]] if assistant A's answer is better, [[B]] if assistant B's answer is better, [[C]] for a tie."""  # noqa: E501

_REFERENCE_NOTE = (
    " A reference answer to the last question is given below: an answer that contradicts it "
    "is wrong, however well written."
)
_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_PREFERENCE = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def _transcript(messages: list[dict], speaker: str, graded: str) -> str:
    """A conversation as labelled sections; the last assistant message is ``graded``'s."""
    parts = []
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            label = graded if i == last else speaker
        else:
            label = m["role"].capitalize()
        parts.append(f"[{label}]\n{m['content']}")
    return "\n\n".join(parts)


def _reference_block(reference: str) -> str:
    return f"\n\n[Reference answer to the last question]\n{reference}" if reference else ""


def rating_prompt(messages: list[dict], reference: str = "") -> str:
    """The single-answer grading prompt: the conversation ``messages`` (user and assistant
    turns, ending with the answer to rate) and the reference answer, where there is one."""
    return RATING_PROMPT.format(
        reference_note=_REFERENCE_NOTE if reference else "",
        transcript=_transcript(messages, "Assistant", "Assistant's answer to grade"),
        reference_block=_reference_block(reference),
    )


def pair_prompt(conv_a: list[dict], conv_b: list[dict], reference: str = "") -> str:
    """The pairwise prompt: each assistant's whole conversation (a later turn's conversations
    differ in the assistants' own earlier answers), each ending with the answer compared."""
    transcripts = "\n\n".join(
        f"=== Conversation with assistant {x} ===\n"
        + _transcript(conv, f"Assistant {x}", f"Assistant {x}'s answer to compare")
        + f"\n=== End of the conversation with assistant {x} ==="
        for x, conv in (("A", conv_a), ("B", conv_b))
    )
    return PAIR_PROMPT.format(
        reference_note=_REFERENCE_NOTE if reference else "",
        transcripts=transcripts,
        reference_block=_reference_block(reference),
    )


def parse_rating(text: str) -> float:
    """The last ``[[N]]`` (or ``[[N.5]]``) of the judge's text as a rating from 1 to 10; -1
    when there is none or it is out of range."""
    found = _RATING.findall(text)
    if not found:
        return -1.0
    value = float(found[-1])
    return value if 1 <= value <= 10 else -1.0


def parse_preference(text: str) -> str:
    """``[[A]]`` → "A", ``[[B]]`` → "B", ``[[C]]`` → "tie"; "" when there is no verdict tag or
    the text gives different ones (a judge that says both cannot be counted either way)."""
    found = set(_PREFERENCE.findall(text))
    if len(found) != 1:
        return ""
    return {"A": "A", "B": "B", "C": "tie"}[found.pop()]


def combine_orders(first: str, second: str) -> str:
    """One question's outcome for the evaluated model from its two judgements: ``first`` with
    the model as assistant A, ``second`` with the model as assistant B (each "A", "B", "tie" or
    "" unparseable). A win or loss only when both orders agree; a disagreement is a tie."""
    if not first or not second:
        return "unparseable"
    as_a = {"A": "win", "B": "loss", "tie": "tie"}[first]
    as_b = {"A": "loss", "B": "win", "tie": "tie"}[second]
    return as_a if as_a == as_b else "tie"


def win_tie_loss(outcomes: list[str]) -> dict:
    """Counts of ``combine_orders`` outcomes and the win rate ``(wins + ties / 2) / n`` over the
    parsed ones (None when there are none)."""
    counts = {k: outcomes.count(k) for k in ("win", "tie", "loss", "unparseable")}
    n = counts["win"] + counts["tie"] + counts["loss"]
    return {
        "wins": counts["win"],
        "ties": counts["tie"],
        "losses": counts["loss"],
        "n_unparseable": counts["unparseable"],
        "n": n,
        "win_rate": (counts["win"] + counts["tie"] / 2) / n if n else None,
    }


# ----------------------------------------------------------------------- request rows
def _last_user(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def rating_request(case_id: str, messages: list[dict], reference: str = "", **extra) -> dict:
    """A rating request for the conversation ``messages`` ending with the answer to grade."""
    return {
        "case_id": case_id,
        "judge_kind": "rating",
        "judge_prompt": rating_prompt(messages, reference),
        "question": _last_user(messages),
        "reference": reference,
        "answer": messages[-1]["content"],
        "answer_a": "",
        "answer_b": "",
        "order": "",
        **extra,
    }


def pair_requests(
    case_id: str, model_conv: list[dict], baseline_conv: list[dict], reference: str = "", **extra
) -> list[dict]:
    """The two pairwise requests of one question: the model as A (``order`` "model_first"),
    then as B ("baseline_first")."""
    out = []
    for order, (a, b) in (
        ("model_first", (model_conv, baseline_conv)),
        ("baseline_first", (baseline_conv, model_conv)),
    ):
        out.append(
            {
                "case_id": case_id,
                "judge_kind": "pair",
                "judge_prompt": pair_prompt(a, b, reference),
                "question": _last_user(model_conv),
                "reference": reference,
                "answer": "",
                "answer_a": a[-1]["content"],
                "answer_b": b[-1]["content"],
                "order": order,
                **extra,
            }
        )
    return out


def _parse(row: dict, text: str) -> dict:
    row["judge_output"] = text
    if row["judge_kind"] == "rating":
        row["rating"] = parse_rating(text)
    else:
        row["preference"] = parse_preference(text)
    return row


# ----------------------------------------------------------------------------- judges
class HelpfulnessRuleJudge(RuleJudge):
    """A helpfulness judge that rates one answer at a time by rule (``judge(...).score``, None
    when it cannot tell); a pair is decided by the two ratings (the order cannot matter)."""

    def _score(self, question: str, answer: str, reference: str) -> float:
        verdict = self.judge("", answer, test_case=question, reference=reference)
        return -1.0 if verdict.score is None else float(verdict.score)

    def decide(self, row: dict) -> dict:
        q, ref = row["question"], row["reference"]
        if row["judge_kind"] == "rating":
            verdict = self.judge("", row["answer"], test_case=q, reference=ref)
            row["judge_output"] = verdict.reason
            row["rating"] = -1.0 if verdict.score is None else float(verdict.score)
            return row
        a, b = self._score(q, row["answer_a"], ref), self._score(q, row["answer_b"], ref)
        row["judge_output"] = f"rated A {a:g}, B {b:g}"
        row["preference"] = "" if min(a, b) < 0 else "A" if a > b else "B" if b > a else "tie"
        return row

    def stage(self):
        from plot_ray.eval.pipeline import Stage

        return Stage(finish=self.decide)


class ModelHelpfulnessJudge(Judge):
    """Prompts the judge ``model`` (a chat model: the request in its chat template) through the
    engine pool with ``engine`` settings, greedily, up to ``max_new_tokens``."""

    def __init__(self, model: str, engine, max_new_tokens: int, trust_remote_code: bool = False):
        from plot_ray.models import load_tokenizer

        self.model = model
        self.engine = dataclasses.replace(engine, max_new_tokens=max_new_tokens, temperature=0.0)
        self.tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)

    def stage(self):
        from plot_ray.eval.engines import chat_prompts, generate
        from plot_ray.eval.pipeline import Stage

        def prepare(rows: list[dict]) -> list[dict]:
            prompts = chat_prompts(self.tokenizer, [r["judge_prompt"] for r in rows])
            return [{**r, "prompt": p} for r, p in zip(rows, prompts, strict=True)]

        return Stage(
            prepare=prepare,
            transform=lambda ds: generate(ds, self.model, self.engine),
            finish=lambda row: _parse(row, row.pop("completion")),
        )


def _build_model_judge(ctx: JudgeContext) -> ModelHelpfulnessJudge:
    return ModelHelpfulnessJudge(
        ctx.model,
        ctx.engine,
        ctx.ev.helpfulness_max_new_tokens,
        trust_remote_code=ctx.ev.trust_remote_code,
    )


register_judge(
    JudgeSpec(
        "helpfulness_model",
        "helpfulness",
        _build_model_judge,
        takes_model=True,
        description="a judge model's MT-Bench-style 1-10 rating and A/B/tie verdict",
    )
)


def resolve_helpfulness_judge(name_or_path: str) -> tuple[JudgeSpec, str | None]:
    """``eval.helpfulness_judge`` → (spec, model): a registered helpfulness judge by name, else
    the model judge prompting the model at that path (a folder, or a hub name with a "/")."""
    spec = JUDGES.get(name_or_path)
    if spec is not None and spec.asks == "helpfulness" and not spec.takes_model:
        return spec, None
    if spec is None and ("/" in name_or_path or Path(name_or_path).exists()):
        return get_judge("helpfulness_model", asks="helpfulness"), name_or_path
    names = ", ".join(n for n, s in JUDGES.items() if s.asks == "helpfulness" and not s.takes_model)
    raise ValueError(
        f"unknown helpfulness judge {name_or_path!r}: name a registered one ({names}) or give a "
        "judge model's path (a folder or a hub name such as org/model)"
    )
