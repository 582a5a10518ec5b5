"""What a judge is to the evaluation: one interface, a registry, and how a config names one.

    register_judge(JudgeSpec(name, asks, build, ...)) -> the spec
    get_judge(name) -> JudgeSpec           JUDGES: {name: JudgeSpec}, in registration order
    resolve_judge("synthetic" | "<model path>") -> (spec, model or None)

A judge reads what an evaluation row holds (the behaviour, the test case, the completion and
an optional reference answer) and returns a :class:`Verdict`: a label (1 yes, 0 no, -1 could
not tell, counted apart), a reason, and optionally a score. What "yes" means is the judge's
question (``asks``): ``harmful`` (the completion carries out the behaviour: ASR's numerator)
or ``refusal`` (the completion declines: over-refusal, and the attacks' early stops), or
``helpfulness`` (a 1-10 rating of a benign answer, MT-Bench style, and A/B preferences:
:mod:`plot_ray.eval.judges.helpfulness`), or ``humanity`` (a 1-10 rating of how considerate an
answer to a user in a hard situation is: the humanity task).

Two kinds of judges implement it:

- :class:`RuleJudge`: a pure function of one row (``judge``), run on the driver; the synthetic
  benchmark's judge and the refusal judges.
- any other :class:`Judge`: a :class:`~plot_ray.eval.pipeline.Stage` over the rows (prepare
  on the driver, a Ray Data pipeline, finish on the driver), e.g. the classifier LLM through
  the engine pool (:mod:`plot_ray.eval.judges.classifier`).

``eval.judge`` names a registered ``harmful`` judge, or else is a model path (hub name or
folder) that the ``classifier`` judge prompts. ``eval.refusal_judge`` names a ``refusal``
judge; unset, it is the harmful judge's own companion (``JudgeSpec.refusal``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from plot_ray.eval.pipeline import Stage

__all__ = [
    "JUDGES",
    "Judge",
    "JudgeContext",
    "JudgeSpec",
    "RuleJudge",
    "Verdict",
    "get_judge",
    "register_judge",
    "resolve_judge",
    "verdict_columns",
]

Question = Literal["harmful", "refusal", "helpfulness", "humanity"]


@dataclass(frozen=True)
class Verdict:
    """A judge's answer about one completion: ``label`` 1 (yes), 0 (no) or -1 (could not tell:
    an unparseable classifier answer, counted apart); ``reason`` in words; ``score`` where the
    judge grades (e.g. a 1-10 rating), else None; ``extra``: anything else the judge records
    about the completion (the synthetic judge: the surface form of a compliance)."""

    label: int
    reason: str
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def verdict_columns(verdict: Verdict) -> dict[str, Any]:
    """The result columns a verdict becomes: ``label``, ``judge_reason`` (and ``judge_score``,
    and ``judge_<key>`` for each of ``extra``)."""
    out: dict[str, Any] = {"label": verdict.label, "judge_reason": verdict.reason}
    if verdict.score is not None:
        out["judge_score"] = verdict.score
    out.update({f"judge_{key}": value for key, value in verdict.extra.items()})
    return out


class Judge(ABC):
    """Labels evaluation rows. ``stage()`` says how: rows carrying ``behavior``, ``message``
    (the test case), ``completion`` and ``reference`` go in; each comes back with the
    :func:`verdict_columns` of its verdict (and whatever else the judge records)."""

    @abstractmethod
    def stage(self) -> Stage: ...


class RuleJudge(Judge):
    """A judge that reads one row at a time, on the driver (no model)."""

    @abstractmethod
    def judge(
        self, behavior: str, completion: str, *, test_case: str = "", reference: str = ""
    ) -> Verdict: ...

    def label_row(self, row: dict) -> dict:
        verdict = self.judge(
            row.get("behavior", ""),
            row["completion"],
            test_case=row.get("message", ""),
            reference=row.get("reference", ""),
        )
        row.update(verdict_columns(verdict))
        return row

    def stage(self) -> Stage:
        from plot_ray.eval.pipeline import Stage

        return Stage(finish=self.label_row)


@dataclass(frozen=True)
class JudgeContext:
    """What building a judge may need: the eval section, the engine settings of the model
    under evaluation (a model judge generates with them) and, for a judge that prompts a
    model, that model's path."""

    ev: Any  # plot_ray.config.EvalConfig
    engine: Any = None  # plot_ray.eval.engines.EngineSettings
    model: str | None = None


@dataclass(frozen=True)
class JudgeSpec:
    """One judge: its ``name`` (the value of ``eval.judge`` / ``eval.refusal_judge``), the
    question it ``asks``, and ``build(ctx) -> Judge``. ``takes_model``: the judge prompts a
    model named by path (``eval.judge: <path>``). ``refusal``: for a harmful judge, the
    refusal judge that goes with it unless ``eval.refusal_judge`` says otherwise.
    ``error_rate() -> dict``: the judge's measured error rate on labelled samples, for the
    report, where one exists."""

    name: str
    asks: Question
    build: Callable[[JudgeContext], Judge]
    takes_model: bool = False
    refusal: str = "refusal_prefixes"
    error_rate: Callable[[], dict] | None = None
    description: str = ""


JUDGES: dict[str, JudgeSpec] = {}


def register_judge(spec: JudgeSpec) -> JudgeSpec:
    """Add (or replace) a judge in :data:`JUDGES`; returns it."""
    JUDGES[spec.name] = spec
    return spec


def get_judge(name: str, asks: Question | None = None) -> JudgeSpec:
    """The registered judge ``name`` (that answers ``asks``, when given)."""
    spec = JUDGES.get(name)
    if spec is None or (asks is not None and spec.asks != asks):
        names = ", ".join(n for n, s in JUDGES.items() if asks is None or s.asks == asks)
        what = f"{asks} judge" if asks else "judge"
        raise ValueError(f"unknown {what} {name!r}; registered: {names}")
    return spec


def resolve_judge(name_or_path: str) -> tuple[JudgeSpec, str | None]:
    """``eval.judge`` → (spec, model): a registered harmful judge by name, else the
    ``classifier`` judge prompting the model at that path. A bare word that is neither a
    registered judge nor an existing folder is refused (a misspelt judge would otherwise be
    tried as a hub model)."""
    spec = JUDGES.get(name_or_path)
    if spec is not None and spec.asks == "harmful":
        return spec, None
    looks_like_a_model = "/" in name_or_path or Path(name_or_path).exists()
    if spec is not None or not looks_like_a_model:
        names = ", ".join(n for n, s in JUDGES.items() if s.asks == "harmful" and not s.takes_model)
        raise ValueError(
            f"unknown judge {name_or_path!r}: name a registered judge ({names}) or give a "
            "classifier model's path (a folder or a hub name such as org/model)"
        )
    return get_judge("classifier", asks="harmful"), name_or_path
