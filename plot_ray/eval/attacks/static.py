"""Static attacks: test cases written from the behaviours alone, no model (HarmBench's
DirectRequest and HumanJailbreaks).

- ``direct_request``: the behaviour itself (with its context first for contextual behaviours:
  ``context + "\\n\\n---\\n\\n" + behavior``, HarmBench's layout); one test case per behaviour.
- ``human_jailbreaks``: jailbreak templates around the behaviour, ``templates_per_behavior`` of
  them drawn per behaviour (HarmBench draws 5). A template with a ``{behavior}`` slot is filled;
  one without is followed by ``"\\n\\n" + behavior``, as HarmBench's human jailbreaks are.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import Field

from plot_ray.eval.attacks.registry import (
    AttackCase,
    AttackConfig,
    AttackSpec,
    StaticContext,
    register_attack,
)
from plot_ray.harmbench import CONTEXT_SEPARATOR

__all__ = [
    "DirectRequestConfig",
    "HumanJailbreaksConfig",
    "behavior_text",
    "direct_request",
    "fill_template",
    "human_jailbreaks",
    "template_labels",
]


def behavior_text(b: dict) -> str:
    """The behaviour as a request, its context first when it has one."""
    context = b.get("context") or ""
    return f"{context}{CONTEXT_SEPARATOR}{b['behavior']}" if context else b["behavior"]


def fill_template(template: str, behavior: str) -> str:
    if "{behavior}" in template:
        return template.replace("{behavior}", behavior)
    return f"{template}\n\n{behavior}"


def template_labels(template: dict) -> dict[str, str]:
    """What a template row says about itself, as the case columns name it ("" when unsaid)."""
    heldout = template.get("family_heldout")
    return {
        "template_id": str(template.get("template_id", "")),
        "template_family": str(template.get("family", "")),
        "family_split": "" if heldout in (None, "") else ("heldout" if heldout else "train"),
        "primed_form": str(template.get("form", "")),
    }


class DirectRequestConfig(AttackConfig):
    """The direct request has no settings."""


class HumanJailbreaksConfig(AttackConfig):
    """``templates_per_behavior``: templates drawn per behaviour (HarmBench: 5)."""

    templates_per_behavior: int = Field(default=5, ge=1)


def direct_request(
    behaviors: Sequence[dict],
    config: DirectRequestConfig | None = None,
    ctx: StaticContext | None = None,
) -> list[AttackCase]:
    return [AttackCase(b["behavior_id"], 0, behavior_text(b)) for b in behaviors]


def human_jailbreaks(
    behaviors: Sequence[dict],
    config: HumanJailbreaksConfig,
    ctx: StaticContext,
) -> list[AttackCase]:
    """``templates_per_behavior`` templates per behaviour, drawn without replacement by a
    generator seeded with (seed, behaviour id): a behaviour's test cases do not depend on which
    other behaviours are evaluated. ``extra`` keeps the template's id and, where the template
    file labels them (the synthetic benchmark does), its family (``template_family``), whether
    that family is held out of training (``family_split``: ``train`` / ``heldout``) and the
    surface form it primes (``primed_form``: ``none`` / ``train`` / ``heldout``)."""
    templates = ctx.templates()
    if not templates:
        raise ValueError("human_jailbreaks needs jailbreak templates (eval.templates)")
    k = min(config.templates_per_behavior, len(templates))
    cases = []
    for b in behaviors:
        rng = random.Random(f"{ctx.seed}:{b['behavior_id']}")
        for n, t in enumerate(rng.sample(list(templates), k)):
            text = fill_template(t["template"], behavior_text(b))
            cases.append(AttackCase(b["behavior_id"], n, text, template_labels(t)))
    return cases


register_attack(
    AttackSpec(
        "direct_request",
        "static",
        DirectRequestConfig,
        direct_request,
        description="the behaviour itself",
    )
)
register_attack(
    AttackSpec(
        "human_jailbreaks",
        "static",
        HumanJailbreaksConfig,
        human_jailbreaks,
        description="jailbreak templates around the behaviour",
    )
)
