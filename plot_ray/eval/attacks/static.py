"""Attacks turn behaviours into test cases (HarmBench's first stage).

    ATTACKS[name](behaviors, *, templates, per_behavior, seed) -> list of test-case rows

A behaviour row: ``{"behavior_id", "behavior", "category", "target", "context"}`` (see
:func:`plot_ray.eval.tasks.load_behaviors`). A test-case row adds ``attack``, ``case_id``
(``<attack>/<behavior_id>/<n>``, stable across runs) and ``test_case``: the user message the
target model receives.

- ``direct_request``: the behaviour itself (with its context first for contextual behaviours:
  ``context + "\\n\\n---\\n\\n" + behavior``, HarmBench's layout); one test case per behaviour.
- ``human_jailbreaks``: jailbreak templates around the behaviour, ``per_behavior`` of them
  drawn per behaviour (HarmBench draws 5). A template with a ``{behavior}`` slot is filled;
  one without is followed by ``"\\n\\n" + behavior``, as HarmBench's human jailbreaks are.

The optimisation attacks (ZeroShot, SFS, GCG, PEZ, GBDA, UAT) register here too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

__all__ = ["ATTACKS", "behavior_text", "direct_request", "fill_template", "human_jailbreaks"]

CONTEXT_SEPARATOR = "\n\n---\n\n"


def behavior_text(b: dict) -> str:
    """The behaviour as a request, its context first when it has one."""
    context = b.get("context") or ""
    return f"{context}{CONTEXT_SEPARATOR}{b['behavior']}" if context else b["behavior"]


def fill_template(template: str, behavior: str) -> str:
    if "{behavior}" in template:
        return template.replace("{behavior}", behavior)
    return f"{template}\n\n{behavior}"


def _case(b: dict, attack: str, n: int, test_case: str) -> dict:
    return {
        **b,
        "attack": attack,
        "case_id": f"{attack}/{b['behavior_id']}/{n}",
        "test_case": test_case,
    }


def direct_request(behaviors: Sequence[dict], **_: object) -> list[dict]:
    return [_case(b, "direct_request", 0, behavior_text(b)) for b in behaviors]


def human_jailbreaks(
    behaviors: Sequence[dict],
    *,
    templates: Sequence[dict],
    per_behavior: int = 5,
    seed: int = 0,
    **_: object,
) -> list[dict]:
    """``per_behavior`` templates per behaviour, drawn without replacement by a generator
    seeded with (seed, behaviour id): a behaviour's test cases do not depend on which other
    behaviours are evaluated."""
    if not templates:
        raise ValueError("human_jailbreaks needs jailbreak templates (eval.templates)")
    k = min(per_behavior, len(templates))
    cases = []
    for b in behaviors:
        rng = random.Random(f"{seed}:{b['behavior_id']}")
        for n, t in enumerate(rng.sample(list(templates), k)):
            case = _case(b, "human_jailbreaks", n, fill_template(t["template"], behavior_text(b)))
            case["template_id"] = t.get("template_id", "")
            cases.append(case)
    return cases


ATTACKS: dict[str, Callable[..., list[dict]]] = {
    "direct_request": direct_request,
    "human_jailbreaks": human_jailbreaks,
}
