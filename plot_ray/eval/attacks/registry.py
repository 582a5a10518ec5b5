"""What an attack is to the evaluation: a spec in a registry, dispatched on by stage.

    register_attack(AttackSpec(name, stage, config, run, needs_attacker=...)) -> the spec
    get_attack(name) -> AttackSpec          ATTACKS: {name: AttackSpec}, in registration order

An attack turns behaviours into test cases: the user messages a target model receives. The
evaluation runs an attack in one of three stages and reads everything else from its spec, so
adding an attack is one function, one settings class and one :func:`register_attack` call:

``static``
    No model. ``run(behaviors, config, ctx: StaticContext) -> list[AttackCase]``, on the
    driver, once per evaluation; its test cases are part of the run's cases
    (``cases/harmful.parquet``). Direct requests, human jailbreaks.
``shared``
    Sampled from the attacker model (``eval.attacker``) once per evaluation and given to every
    target. ``run(behaviors, config, ctx: SharedContext) -> list[AttackCase]``, on the driver;
    ``ctx.sample`` draws from the attacker through the engine pool. Stored per behaviour under
    ``attacks/<name>/``, so a rerun samples only behaviours without a file. ZeroShot.
``per_target``
    Optimised against each evaluated model, one behaviour per call, in a Ray Data actor that
    holds the target (and the attacker when ``needs_attacker``).
    ``run(behavior, config, target: Target) -> list[AttackResult]``. Stored per behaviour under
    ``results/<model>/attacks/<name>/``. SFS, GCG, PEZ, GBDA, UAT.

``config`` is the attack's settings class, a pydantic model read from
``eval.attack_params.<name>``: ``plot-ray config`` refuses an unknown attack, an unknown key
or an impossible value before anything starts. A behaviour is a dict with ``behavior_id``,
``behavior``, ``category``, ``target`` (the string an optimiser aims the answer at) and
``context`` (see :func:`plot_ray.eval.tasks.load_behaviors`).

This module is the registry only; :mod:`plot_ray.eval.attacks` registers the built-in attacks
(``static.py``, ``generation.py``, ``gradient.py``) and the stage code
(:mod:`plot_ray.eval.attack_stage`, :mod:`plot_ray.eval.tasks`) runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ATTACKS",
    "DEFAULT_ATTACKS",
    "AttackCase",
    "AttackConfig",
    "AttackResult",
    "AttackSpec",
    "SharedContext",
    "StaticContext",
    "Target",
    "get_attack",
    "register_attack",
]

AttackStage = Literal["static", "shared", "per_target"]
# What eval.attacks holds unless a config says otherwise: the attacks that need neither an
# attacker model nor an optimisation (minutes per behaviour on real models).
DEFAULT_ATTACKS = ("direct_request", "human_jailbreaks")


class AttackConfig(BaseModel):
    """An attack's settings (``eval.attack_params.<name>``): unknown keys are refused, values
    checked by their field constraints, and the object is frozen (it is stored with the attack's
    results, ``settings.json``, to refuse mixing test cases of two configurations)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def curve_steps(self) -> list[int]:
        """The steps of the ASR-vs-steps curve (test cases saved at intermediate steps of the
        optimisation); none by default."""
        return []


@dataclass(frozen=True)
class AttackCase:
    """One test case of a static or shared attack: the ``n``-th test case for the behaviour
    ``behavior_id`` (its case id is ``<attack>/<behavior_id>/<n>``). ``extra``: columns stored
    beside it (e.g. how many empty samples were drawn before it)."""

    behavior_id: str
    n: int
    test_case: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AttackResult:
    """One test case of a per-target attack and how the attack found it.

    ``test_case``/``loss``: the lowest-loss test case the attack saw (the initial one included),
    not necessarily the last iterate. ``losses[i]``: the loss of the attack's current test case
    after step ``i + 1`` (``len(losses) == steps``). ``snapshots[s]``: the best test case after
    ``s`` steps (for the ASR-vs-steps curve). Losses are mean cross-entropies of the target
    string, in nats per token.
    """

    test_case: str
    loss: float
    initial_loss: float
    steps: int
    losses: list[float]
    snapshots: dict[int, str]
    suffix: str = ""  # the adversarial part, where there is one: behavior + " " + suffix
    stop_reason: str = "num_steps"


@dataclass(frozen=True)
class StaticContext:
    """What a static attack may read besides the behaviours: the evaluation's seed and the
    jailbreak templates (``eval.templates``: rows with ``template_id`` and ``template``), read
    the first time an attack asks for them."""

    seed: int
    load_templates: Callable[[], list[dict]]

    def templates(self) -> list[dict]:
        return self.load_templates()


@dataclass(frozen=True)
class SharedContext:
    """What a shared attack samples with. ``sample(prompts, sampling, n) -> [[text] * n]``:
    ``n`` continuations per prompt from the attacker model on the engine pool (``sampling``
    keys: ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed``). ``tokenizer``: the
    attacker's, for its chat template."""

    sample: Callable[[list[str], dict, int], list[list[str]]]
    tokenizer: Any
    seed: int


@dataclass(frozen=True)
class Target:
    """What a per-target attack optimises against, inside its actor: the target model (a
    Hugging Face causal LM in eval mode, parameters frozen) and its tokenizer, the attacker
    (when the spec ``needs_attacker``), the evaluation's seed and the refusal judge that says
    whether a greedy completion is a refusal (for early stopping)."""

    model: Any
    tokenizer: Any
    seed: int
    refusal: Any  # a RefusalJudge: .is_refusal(text) -> bool
    attacker: Any = None
    attacker_tokenizer: Any = None


@dataclass(frozen=True)
class AttackSpec:
    """One attack: its ``name`` (the value in ``eval.attacks``), the ``stage`` it runs in, its
    settings class, its entry point ``run`` (signature by stage, in the module docstring) and
    what it needs. Reporting options: ``curve_over_cases`` draws ASR against the number of
    test cases per behaviour; ``quality(rows) -> dict`` summarises a shared attack's stored
    test cases (each row also carries its ``behavior``) and ``quality_sentence(dict) -> str``
    says it in words for the reports."""

    name: str
    stage: AttackStage
    config: type[AttackConfig]
    run: Callable[..., Sequence[Any]]
    needs_attacker: bool = False
    curve_over_cases: bool = False
    quality: Callable[[list[dict]], dict] | None = None
    quality_sentence: Callable[[dict], str] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.stage not in ("static", "shared", "per_target"):
            raise ValueError(f"attack {self.name!r}: unknown stage {self.stage!r}")
        if self.stage == "shared" and not self.needs_attacker:
            raise ValueError(f"attack {self.name!r}: a shared attack samples from the attacker")
        if not (isinstance(self.config, type) and issubclass(self.config, AttackConfig)):
            raise TypeError(f"attack {self.name!r}: config must be an AttackConfig subclass")

    def make_config(self, params: dict[str, Any] | None = None) -> AttackConfig:
        """The settings from ``eval.attack_params.<name>`` (a plain dict); raises pydantic's
        ``ValidationError`` naming each bad key."""
        return self.config.model_validate(dict(params or {}))


ATTACKS: dict[str, AttackSpec] = {}


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Add (or replace) an attack in :data:`ATTACKS`; returns it."""
    ATTACKS[spec.name] = spec
    return spec


def get_attack(name: str) -> AttackSpec:
    try:
        return ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; registered: {', '.join(ATTACKS)}") from None
