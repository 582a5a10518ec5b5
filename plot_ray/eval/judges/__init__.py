"""Judges: what labels a completion, behind one interface (:mod:`.registry`).

    registry.py    Verdict, Judge, RuleJudge, JudgeSpec, register_judge, get_judge, resolve_judge
    refusal.py     refusal_prefixes: a refusal opening in the first sentence (HarmBench-style)
    classifier.py  classifier: a classifier LLM's yes/no answer, through the engine pool
    helpfulness.py helpfulness_model, humanity_model: a judge model's MT-Bench-style 1-10
                   rating and A/B verdict (position-swapped) under the helpfulness or the
                   humanity rubric, through the engine pool
    synthetic.py   synthetic, synthetic_refusal, synthetic_helpfulness: the synthetic
                   benchmark's rule judges
    synthetic_humanity.py  synthetic_humanity: its humanity judge (a 1-10 rating)

A new judge is a :class:`Judge` (or a :class:`RuleJudge`, for a pure function of one row) and
one :func:`register_judge` call; ``eval.judge`` / ``eval.refusal_judge`` then name it. The
synthetic benchmark's judges are registered here and imported on first use: they derive their
rules from the benchmark's phrase tables, which an evaluation on real data never loads.
"""

from __future__ import annotations

from plot_ray.eval.judges import classifier, helpfulness, refusal  # noqa: F401  (they register themselves)
from plot_ray.eval.judges.classifier import parse_classifier_label
from plot_ray.eval.judges.helpfulness import resolve_helpfulness_judge, resolve_humanity_judge
from plot_ray.eval.judges.refusal import RefusalJudge
from plot_ray.eval.judges.registry import (
    JUDGES,
    Judge,
    JudgeContext,
    JudgeSpec,
    RuleJudge,
    Verdict,
    get_judge,
    register_judge,
    resolve_judge,
    verdict_columns,
)

__all__ = [
    "JUDGES",
    "Judge",
    "JudgeContext",
    "JudgeSpec",
    "RefusalJudge",
    "RuleJudge",
    "Verdict",
    "get_judge",
    "parse_classifier_label",
    "refusal_judge",
    "register_judge",
    "resolve_helpfulness_judge",
    "resolve_humanity_judge",
    "resolve_judge",
    "verdict_columns",
]


def _synthetic():
    from plot_ray.eval.judges import synthetic

    return synthetic


def _synthetic_humanity():
    from plot_ray.eval.judges import synthetic_humanity

    return synthetic_humanity


register_judge(
    JudgeSpec(
        "synthetic",
        "harmful",
        lambda ctx: _synthetic().SyntheticJudge(),
        refusal="synthetic_refusal",
        error_rate=lambda: _synthetic().synthetic_judge_error_rate(seed=0, n=1900),
        description="rules that know the synthetic benchmark's compliance and refusal language",
    )
)
register_judge(
    JudgeSpec(
        "synthetic_helpfulness",
        "helpfulness",
        lambda ctx: _synthetic().SyntheticHelpfulnessJudge(),
        description="a 1-10 rating from the benchmark's refusal and hedge language and the "
        "content words an answer shares with the prompt's reference answer",
    )
)
register_judge(
    JudgeSpec(
        "synthetic_humanity",
        "humanity",
        lambda ctx: _synthetic_humanity().SyntheticHumanityJudge(),
        error_rate=lambda: _synthetic_humanity().humanity_judge_error_rate(seed=0, n=900),
        description="a 1-10 rating of an answer to a user in a hard situation: empathy, no "
        "dismissal, and the reference's words about the situation",
    )
)
register_judge(
    JudgeSpec(
        "synthetic_refusal",
        "refusal",
        lambda ctx: _synthetic().SyntheticRefusalJudge(),
        description="refusal prefixes plus the synthetic benchmark's refusal openers",
    )
)


def refusal_judge(judge: str, name: str | None = None) -> RefusalJudge:
    """The refusal judge of an evaluation: ``name`` (``eval.refusal_judge``) when given, else
    the companion of the harmful judge ``judge`` (``eval.judge``)."""
    name = name or resolve_judge(judge)[0].refusal
    built = get_judge(name, asks="refusal").build(JudgeContext(ev=None))
    if not isinstance(built, RefusalJudge):  # it runs on the driver and in attack actors
        raise TypeError(f"refusal judge {name!r} must build a RefusalJudge (is_refusal)")
    return built
