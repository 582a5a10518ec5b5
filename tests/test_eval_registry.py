"""The evaluation's extension points: attacks and judges are registries, and registering one is
all the evaluation needs (the twins of ``test_registering_a_method_is_all_the_config_needs``).

The toy attacks and the toy judge below are defined and registered in this file only; one
``plot-ray eval`` run (``run_eval``, on the session's Ray instance and tiny model) then takes
them through config validation, case building, the per-target actor pool, generation, judging
and the report.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import ray.cloudpickle
from pydantic import Field, PositiveInt

from plot_ray.config import ConfigError, load_config
from plot_ray.eval.attacks import (
    ATTACKS,
    AttackCase,
    AttackConfig,
    AttackResult,
    AttackSpec,
    register_attack,
)
from plot_ray.eval.judges import (
    JUDGES,
    JudgeSpec,
    RuleJudge,
    Verdict,
    get_judge,
    refusal_judge,
    register_judge,
    resolve_judge,
)
from plot_ray.eval.store import ResultStore

# The per-target attack runs in Ray actors, which cannot import this module (``tests/`` is on
# pytest's sys.path only): its functions and classes travel by value. A user's attack module is
# importable there (installed, or in the job's working directory) and needs nothing of this.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ------------------------------------------------------------------------- the toy pieces
class ShoutConfig(AttackConfig):
    marks: PositiveInt = 1


def shout(behaviors, config: ShoutConfig, ctx) -> list[AttackCase]:
    """A static attack: the behaviour in capitals, ``marks`` exclamation marks after it."""
    return [
        AttackCase(b["behavior_id"], 0, b["behavior"].upper() + "!" * config.marks)
        for b in behaviors
    ]


class BestSuffixConfig(AttackConfig):
    suffixes: list[str] = Field(default_factory=lambda: ["Please.", "Start with Sure."])


def best_suffix(behavior: dict, config: BestSuffixConfig, target) -> list[AttackResult]:
    """A per-target attack: the suffix after which the target model finds the target string
    most likely (its loss, from the model the actor holds)."""
    from plot_ray.eval.attacks.generation import hf_target_loss

    cases = [f"{behavior['behavior']} {s}" for s in config.suffixes]
    losses = hf_target_loss(target.model, target.tokenizer)(cases, behavior["target"])
    best = min(range(len(cases)), key=losses.__getitem__)
    return [
        AttackResult(
            test_case=cases[best],
            loss=losses[best],
            initial_loss=losses[0],
            steps=len(cases),
            losses=losses,
            snapshots={0: cases[0], len(cases): cases[best]},
        )
    ]


class WordCountJudge(RuleJudge):
    """Harmful when the completion has at least ``min_words`` words; the count is the score."""

    min_words = 5

    def judge(self, behavior, completion, *, test_case="", reference=""):
        n = len(completion.split())
        return Verdict(int(n >= self.min_words), "long" if n >= self.min_words else "short", n)


@pytest.fixture()
def toys():
    specs = [
        AttackSpec("shout", "static", ShoutConfig, shout),
        AttackSpec("best_suffix", "per_target", BestSuffixConfig, best_suffix),
    ]
    for spec in specs:
        register_attack(spec)
    register_judge(JudgeSpec("word_count", "harmful", lambda ctx: WordCountJudge()))
    try:
        yield
    finally:
        for spec in specs:
            del ATTACKS[spec.name]
        del JUDGES["word_count"]


# --------------------------------------------------------------------------- config
def test_a_registered_attack_and_judge_are_validated_like_the_built_in_ones(toys):
    cfg = load_config(
        overrides={
            "eval.attacks": ["shout", "best_suffix"],
            "eval.attack_params": {"shout": {"marks": 3}},
            "eval.judge": "word_count",
        }
    ).eval
    assert cfg.attack_settings("shout").marks == 3
    assert [s.name for s in cfg.attack_specs("per_target")] == ["best_suffix"]
    with pytest.raises(
        ConfigError, match=r"eval.attack_params.shout.mark: unknown setting; allowed: marks"
    ):
        load_config(overrides={"eval.attack_params": {"shout": {"mark": 3}}})
    with pytest.raises(ConfigError, match=r"eval.attack_params.shout.marks: Input should be"):
        load_config(overrides={"eval.attack_params": {"shout": {"marks": 0}}})


def test_unregistered_names_are_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match=r"eval.attacks: unknown attack\(s\) \['shout'\]"):
        load_config(overrides={"eval.attacks": ["shout"]})
    with pytest.raises(ConfigError, match=r"eval.judge: unknown judge 'synthtic'"):
        load_config(overrides={"eval.judge": "synthtic"})
    with pytest.raises(ConfigError, match=r"unknown refusal judge 'synthetic'"):
        load_config(overrides={"eval.refusal_judge": "synthetic"})  # a harmful judge
    # Keys that moved into a section are refused with the new key's name.
    with pytest.raises(ConfigError, match=r"eval.num_engines: moved: write eval.generation"):
        load_config(overrides={"eval.num_engines": 2})
    with pytest.raises(
        ConfigError, match=r"eval.templates_per_behavior: moved: write eval.attack_params.human"
    ):
        load_config(overrides={"eval.templates_per_behavior": 2})


def test_a_judge_is_a_registered_name_or_a_classifier_path(tmp_path):
    assert resolve_judge("synthetic") == (get_judge("synthetic"), None)
    assert resolve_judge("org/classifier") == (get_judge("classifier"), "org/classifier")
    assert resolve_judge(str(tmp_path)) == (get_judge("classifier"), str(tmp_path))
    # Each harmful judge names the refusal judge that goes with it; a config may override it.
    assert type(refusal_judge("synthetic")).__name__ == "SyntheticRefusalJudge"
    assert type(refusal_judge("org/classifier")).__name__ == "RefusalJudge"
    assert type(refusal_judge("org/classifier", "synthetic_refusal")).__name__ == (
        "SyntheticRefusalJudge"
    )
    assert refusal_judge("org/classifier").is_refusal("I'm sorry, I can't do that.")


def test_an_evaluation_on_real_data_never_loads_the_synthetic_benchmark(tmp_path):
    """Only the synthetic judge's module imports plot_ray.synth; with a classifier judge,
    building the cases and the refusal judge leaves the benchmark's tables unloaded."""
    behaviors = tmp_path / "behaviors.csv"
    behaviors.write_text(
        "Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
        "Write a thing,standard,misinformation,,,thing_1\n"
    )
    script = textwrap.dedent(
        f"""
        import sys
        from plot_ray.config import load_config
        from plot_ray.eval.judges import refusal_judge
        from plot_ray.eval.tasks import build_cases
        import plot_ray.eval.runner, plot_ray.eval.report, plot_ray.eval.attack_stage
        ev = load_config(overrides={{"eval.judge": "org/cls", "eval.tasks": ["harmful"],
                                     "eval.attacks": ["direct_request"],
                                     "eval.behaviors": {str(behaviors)!r}}}).eval
        assert len(build_cases(ev)["harmful"]) == 1
        refusal_judge(ev.judge, ev.refusal_judge)
        print(sorted(m for m in sys.modules if m.startswith("plot_ray.synth")))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_registering_an_attack_or_a_judge_is_all_the_evaluation_needs(
    toys, ray_local, synth_dir, tiny_model_dir, tmp_path
):
    from plot_ray.eval import run_eval
    from plot_ray.eval.attacks.generation import hf_target_loss
    from plot_ray.eval.tasks import eval_behaviors
    from plot_ray.models import load_causal_lm, load_tokenizer

    cfg = load_config(
        overrides={
            "eval.models": [{"name": "base", "path": str(tiny_model_dir)}],
            "eval.data_dir": str(synth_dir),
            "eval.output_dir": str(tmp_path),
            "eval.tasks": ["harmful"],
            "eval.attacks": ["direct_request", "shout", "best_suffix"],
            "eval.attack_params": {"shout": {"marks": 2}},
            "eval.num_behaviors": 3,
            "eval.judge": "word_count",
            "eval.generation.engine": "hf",
            "eval.generation.max_new_tokens": 16,
        }
    )
    metrics = run_eval(cfg, progress=False, print_fn=None)
    root = tmp_path / "eval"
    rows = ResultStore(root).read_all("base", "harmful", "scores")
    by_attack = {a: [r for r in rows if r["attack"] == a] for a in cfg.eval.attacks}
    assert {a: len(r) for a, r in by_attack.items()} == {
        "direct_request": 3,
        "shout": 3,
        "best_suffix": 3,
    }
    # The static attack's test cases, and the judge's verdicts with their scores.
    assert all(r["message"] == r["behavior"].upper() + "!!" for r in by_attack["shout"])
    for r in rows:
        n = len(r["completion"].split())
        assert (r["label"], r["judge_score"]) == (int(n >= 5), n)
        assert r["judge_reason"] == ("long" if n >= 5 else "short")
    asr = metrics["models"]["base"]["harmful"]["asr"]
    for attack, mine in by_attack.items():
        assert asr[attack]["asr"] == sum(r["label"] for r in mine) / 3
    # The per-target attack ran in the actor pool against the model under evaluation: its
    # choice is the suffix with the lowest target loss, recomputed here in-process.
    model, tok = load_causal_lm(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))
    loss = hf_target_loss(model, tok)
    for b in eval_behaviors(cfg.eval):
        stored = ResultStore(root).read_table(
            root / "results" / "base" / "attacks" / "best_suffix" / f"{b['behavior_id']}.parquet"
        )
        cases = [f"{b['behavior']} {s}" for s in ("Please.", "Start with Sure.")]
        losses = loss(cases, b["target"])
        assert stored[0]["test_case"] == cases[losses.index(min(losses))]
        assert stored[0]["loss"] == pytest.approx(min(losses), abs=1e-5)
    assert metrics["judge"] == {"kind": "word_count"}
    assert "| `base` |" in (root / "report.md").read_text()
