"""The paper's seven sub-preferences, each read off the evaluation task that measures it.

    subpreference_scores(model_metrics) -> {name: {"value", "metric", "n", "scale"}}

Human values: **harmlessness** (1 - the mean ASR over the attacks run), **helpfulness** (the
benign answers' mean 1-10 rating by ``eval.helpfulness_judge``, MT-Bench style), **humanity**
(the humanity task's mean 1-10 rating by ``eval.humanity_judge``). Logic and problem solving:
**mathematics** (the logic task's exact-match accuracy), **reasoning** and **STEM** (the choice
task's generated-letter accuracy over the items whose subject is ``reasoning/...`` and
``stem/...``, the synthetic benchmark's ``eval/choice.jsonl``; a published set's subjects are
not split this way, so it fills neither), **coding** (the coding task's pass@1). Every value is
higher-is-better; ``scale`` says its range ("fraction" in [0, 1], "rating" in [1, 10]); ``n``
is how many items it is taken over. A sub-preference whose task was not run is left out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHOICE_SUBPREFERENCES", "RATED", "SUBPREFERENCES", "subpreference_scores"]

SUBPREFERENCES = (
    "harmlessness",
    "helpfulness",
    "humanity",
    "mathematics",
    "reasoning",
    "coding",
    "stem",
)
RATED = frozenset({"helpfulness", "humanity"})  # 1-10 ratings; the others are fractions
# choice subjects "<prefix>/<area>" that belong to a sub-preference
CHOICE_SUBPREFERENCES = {"reasoning": "reasoning", "stem": "stem"}
CHOICE_METHOD = "generated_letter"  # what a chat model answers, as the other tasks


def _entry(value: float | None, metric: str, n: int, scale: str) -> dict[str, Any]:
    return {"value": value, "metric": metric, "n": n, "scale": scale}


def _choice_groups(choice: dict) -> dict[str, dict[str, Any]]:
    """Generated-letter accuracy per sub-preference, pooled over its subjects."""
    out: dict[str, dict[str, Any]] = {}
    for name, prefix in CHOICE_SUBPREFERENCES.items():
        rows = [
            r
            for r in choice.get("per_subject", [])
            if r["method"] == CHOICE_METHOD and str(r["subject"]).startswith(f"{prefix}/")
        ]
        n = sum(r["n"] for r in rows)
        if n:
            correct = sum(r["correct"] for r in rows)
            out[name] = _entry(correct / n, f"choice/{CHOICE_METHOD} on {prefix}/*", n, "fraction")
    return out


def subpreference_scores(m: dict) -> dict[str, dict[str, Any]]:
    """One model's entry of ``metrics.json`` (:func:`plot_ray.eval.report.compute_metrics`) →
    its score on each sub-preference that was measured, in :data:`SUBPREFERENCES` order."""
    out: dict[str, dict[str, Any]] = {}
    asr = m.get("harmful", {}).get("asr", {})
    if asr:
        mean = sum(a["asr"] for a in asr.values()) / len(asr)
        n = min(a["n_behaviors"] for a in asr.values())
        out["harmlessness"] = _entry(1 - mean, "1 - mean ASR over attacks", n, "fraction")
    rating = m.get("benign", {}).get("helpfulness")
    if rating:
        out["helpfulness"] = _entry(
            rating["score"], f"benign: {rating['judge']} rating", rating["n_rated"], "rating"
        )
    if "score" in m.get("humanity", {}):  # a judge model in pairwise mode alone: no rating
        h = m["humanity"]
        out["humanity"] = _entry(
            h["score"], f"humanity: {h['judge']} rating", h["n_rated"], "rating"
        )
    if "logic" in m:
        lg = m["logic"]
        out["mathematics"] = _entry(lg["accuracy"], "logic accuracy", lg["n_problems"], "fraction")
    groups = _choice_groups(m["choice"]) if "choice" in m else {}
    if "reasoning" in groups:
        out["reasoning"] = groups["reasoning"]
    if "coding" in m:
        c = m["coding"]
        out["coding"] = _entry(c["pass@1"], "coding pass@1", c["n_problems"], "fraction")
    if "stem" in groups:
        out["stem"] = groups["stem"]
    return {k: out[k] for k in SUBPREFERENCES if k in out}
