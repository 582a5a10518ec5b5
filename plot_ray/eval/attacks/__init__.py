"""Attacks turn behaviours into test cases (HarmBench's first stage), behind one registry.

    registry.py    AttackSpec, AttackConfig, AttackCase, AttackResult, contexts,
                   register_attack, get_attack, ATTACKS
    static.py      direct_request, human_jailbreaks             (no model; stage "static")
    generation.py  zero_shot (stage "shared"), sfs ("per_target"): an attacker LM proposes
    gradient.py    gcg, pez, gbda, uat ("per_target"): the target's gradients

A new attack is a settings class (an :class:`AttackConfig`), an entry point and one
:func:`register_attack` call in any module the run imports; ``eval.attacks`` and
``eval.attack_params`` then accept it, and the stage its spec names runs it
(:mod:`plot_ray.eval.tasks` for static attacks, :mod:`plot_ray.eval.attack_stage` for the
others). The built-in attacks register themselves when this package is imported.
"""

from __future__ import annotations

from plot_ray.eval.attacks import generation, gradient, registry, static  # noqa: F401
from plot_ray.eval.attacks.registry import *  # noqa: F403  (the registry is the package's API)

__all__ = registry.__all__
