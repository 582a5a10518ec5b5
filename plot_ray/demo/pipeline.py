"""The demo's stages, each landing on disk before the next starts (a rerun reuses them):

    1. synthetic preference benchmark                         plot_ray.synth        data/
    2. tokenizer + tiny Llama, warmed up ("unaligned" base)   plot_ray.models       base-model/
    3. reward model (judge of helpfulness) and attacker LM    plot_ray.models       reward-model/,
                                                                                     attacker/
    4. Ray Data: validate, tokenize, count tokens             plot_ray.data         prepared/
    5. Ray Tune sweep: method x alpha x seed, one Ray Train   plot_ray.tune         sweep/
       + DeepSpeed run per trial (alpha 0 = the vanilla method); then the primary method's
       extra seeds, its controls, and its extra alphas, ablations and vanilla-curve points
    6. evaluation of the base model and every run: attacks,   plot_ray.eval         eval/
       completions on engine pools, judges, metrics
    7. the report: results.parquet, report.md, report.html,   plot_ray.demo.report  report/
       figures

The training recipe is ``jobs/configs/tiny_dpo_plot.yaml`` with its paths moved under ``out``
and one CPU worker per run, so that two runs train side by side on two cores.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from plot_ray.demo.profiles import PROFILES, RECIPE, DemoProfile

__all__ = ["STAGE_DIRS", "demo_config", "planned_runs", "run_demo", "run_name", "sweep_configs"]

STAGE_DIRS = (
    "data",
    "base-model",
    "reward-model",
    "attacker",
    "prepared",
    "sweep",
    "eval",
    "report",
)
SWEEP_METRIC = "eval/chosen_nll"
# reported by every method (rewards are not: SFT has none)


def _stage(name: str) -> float:
    print(f"\n== {name}", flush=True)
    return time.perf_counter()


def _done(t: float, what: str = "") -> float:
    seconds = time.perf_counter() - t
    print(f"{what}{'; ' if what else ''}done in {seconds:.1f}s", flush=True)
    return seconds


def run_name(method: str, alpha: float, seed: int, ablation: str = "") -> str:
    """The evaluation's name for one trained run, e.g. ``dpo-a1-s0``, ``dpo-a1-cost-uniform-s0``
    (alpha 0 is the vanilla method; an ablation label's other characters become ``-``, as
    model names allow letters, digits, ``_``, ``.`` and ``-``)."""
    label = "-" + re.sub(r"[^A-Za-z0-9_.-]", "-", ablation) if ablation else ""
    return f"{method}-a{alpha:g}{label}-s{seed}"


def demo_config(out: Path, profile: DemoProfile | None = None, overrides: dict | None = None):
    """The raw training config of the demo's runs: ``tiny_dpo_plot.yaml`` with every path
    under ``out``, the profile's steps, one worker per run, and the sweep section."""
    from plot_ray.config import load_raw_config
    from plot_ray.synth.benchmark import SUBPREFERENCES  # a pair folder each ("logic": mathematics)

    profile = profile or PROFILES["default"]
    data = out / "data"
    moved: dict[str, Any] = {
        "data.sources": [
            {"path": str(data / name / "train.jsonl"), "subpreference": name}
            for name in SUBPREFERENCES
        ],
        "data.eval_sources": [
            {"path": str(data / name / "validation.jsonl"), "subpreference": name}
            for name in SUBPREFERENCES
        ],
        "data.output_dir": str(out / "prepared"),
        "model.name_or_path": str(out / "base-model"),
        "train.output_dir": str(out / "train"),
        # One worker per run: two runs share the two cores of a small machine (tiny models
        # gain nothing from data parallelism there; the cluster configs use it).
        "train.num_workers": 1,
        "train.cpus_per_worker": 0.7,  # + Ray Data reads + the trial: two trials on 2 CPUs
        "train.max_steps": profile.train_steps,
        "train.shuffle_buffer": 256,  # seeds differ in the batches they see (else identical runs)
        "train.eval_every": None,
        "train.checkpoint_every": profile.train_steps,
        "train.keep_checkpoints": 1,
        "train.warmup_steps": min(5, profile.train_steps // 6),
        "loss.alpha": profile.main_alpha,
        "tune.name": "demo",
        "tune.output_dir": str(out / "sweep"),
        "tune.space": {
            "loss.method": {"grid": list(profile.methods)},
            "loss.alpha": {"grid": list(profile.alphas)},
        },
        "tune.seeds": list(profile.seeds),
        "tune.metric": SWEEP_METRIC,
        "tune.mode": "min",
    }
    moved.update(overrides or {})
    return load_raw_config(RECIPE, moved)


# ----------------------------------------------------------------------------- stages 1-4
def _reuse_json(path: Path) -> dict | None:
    if path.is_file():
        print(f"reusing {path.parent}")
        return json.loads(path.read_text())
    return None


def _models(out: Path, profile: DemoProfile, seed: int, report: dict) -> None:
    from plot_ray.models.attacker import ATTACKER_SUMMARY, build_attacker
    from plot_ray.models.reward import REWARD_SUMMARY, build_reward_model

    data, base = out / "data", out / "base-model"
    t = _stage("3. reward model (helpfulness judge) and attacker LM for the benchmark")
    reward = _reuse_json(out / "reward-model" / REWARD_SUMMARY) or build_reward_model(
        data, out / "reward-model", tokenizer_from=base, steps=profile.reward_steps, seed=seed
    )
    accuracy = ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in reward["validation"].items())
    refusals = ", ".join(
        f"{k} {v['accuracy']:.2f}" for k, v in reward.get("benign_refusal", {}).items()
    )
    print(f"reward model: held-out pair accuracy {accuracy}; helpful over needless {refusals}")
    report["reward_model"] = reward
    if profile.attacker_steps:
        attacker = _reuse_json(out / "attacker" / ATTACKER_SUMMARY) or build_attacker(
            data, out / "attacker", steps=profile.attacker_steps, tokenizer_from=base, seed=seed
        )
        print(
            f"attacker: causal-LM loss {attacker['train_first_loss']:.2f} → "
            f"{attacker['train_last_loss']:.2f} over {attacker['steps']} steps"
        )
        report["attacker"] = attacker
    report["seconds"]["models"] = _done(t)


def _prepare(cfg, report: dict, verbose: bool) -> None:
    from plot_ray.data import run_prepare

    t = _stage("4. Ray Data: validate, tokenize, count preferred/rejected tokens")
    prepared = Path(cfg.data.output_dir)
    summary = prepared / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "complete":
        print(f"reusing {prepared}")
    else:
        run_prepare(cfg, verbose=verbose)
    report["prepare"] = json.loads(summary.read_text())
    report["seconds"]["prepare"] = _done(t)


# ----------------------------------------------------------------------------- stage 5
def _sweep_rows(base: dict) -> list[dict]:
    """Run the sweep of ``base`` (or continue it, or read back a finished one); one row per
    trial with its parameters decoded."""
    import pyarrow.parquet as pq

    from plot_ray.config import validate_config
    from plot_ray.tune.sweep import run_sweep, sweep_dir

    cfg = validate_config(base)
    folder = sweep_dir(cfg)
    if (folder / "trials.parquet").is_file():
        print(f"reusing {folder}")
    else:  # a sweep stopped midway continues from Ray Tune's saved state
        run_sweep(cfg, base, resume=(folder / "ray_tune").is_dir())
    rows = pq.read_table(folder / "trials.parquet").to_pylist()
    # the table holds each parameter as JSON text
    return [
        {**r, "params": {k[6:]: json.loads(v) for k, v in r.items() if k.startswith("param/")}}
        for r in rows
    ]


def _variants(profile: DemoProfile) -> dict[str, dict[str, Any]]:
    """The runs of ``ablation_method`` at seed ``seeds[0]`` beyond the main grid, as one
    sweep's ``tune.variants`` (PLOT at the main alpha unless a variant says otherwise): the
    extra alphas (the ASR-vs-alpha curve's and the stability grid's), the ablations, the
    vanilla trade-off curve (alpha 0), the stability grid's DEFT runs (alpha 0)."""
    variants: dict[str, dict[str, Any]] = {
        f"alpha={alpha:g}": {"loss.alpha": alpha} for alpha in profile.extra_alphas
    }
    variants.update(profile.ablations)
    for label, over in profile.vanilla_curve.items():
        variants[label] = {**over, "loss.alpha": 0.0}
    variants.update(profile.deft_runs)
    return variants


def sweep_configs(out: Path, profile: DemoProfile) -> list[dict]:
    """The raw configs of the demo's sweeps: the main grid; the primary method's extra seeds
    (vanilla and the main alpha); its controls on all of its seeds; its seed-0 variants
    (extra alphas, ablations, the vanilla curve). Each is one Ray Tune sweep."""
    method, alpha = profile.ablation_method, profile.main_alpha
    sweeps = [demo_config(out, profile)]
    one_method = {"loss.method": method, "loss.alpha": alpha, "tune.space": {}}
    if profile.primary_seeds:
        over = {
            **one_method,
            "tune.name": "primary",
            "tune.space": {"loss.alpha": {"grid": [0.0, alpha]}},
            "tune.seeds": list(profile.primary_seeds),
        }
        sweeps.append(demo_config(out, profile, over))
    if profile.controls:
        over = {
            **one_method,
            "tune.name": "controls",
            "tune.variants": dict(profile.controls),
            "tune.seeds": list(profile.seeds_of(method)),
        }
        sweeps.append(demo_config(out, profile, over))
    variants = _variants(profile)
    if variants:
        over = {
            **one_method,
            "tune.name": "variants",
            "tune.variants": variants,
            "tune.seeds": [profile.seeds[0]],
        }
        sweeps.append(demo_config(out, profile, over))
    return sweeps


def _identity(params: dict, base: dict, profile: DemoProfile) -> dict[str, Any]:
    """Who a trial of one of the demo's sweeps (``base``) is: its model name, method, alpha,
    seed, run label (``ablation``) and kind (``variant``: vanilla, plot or deft)."""
    from plot_ray.tune.space import VARIANT_KEY, with_variant

    label = params.get(VARIANT_KEY, "")
    p = with_variant(params, {**_variants(profile), **profile.controls})
    method = p.get("loss.method", base["loss"]["method"])
    alpha = float(p.get("loss.alpha", base["loss"]["alpha"]))
    seed = int(p["train.seed"])
    ablation = label if label in profile.labels else ""  # an extra alpha is on the grid
    kind = "deft" if p.get("loss.deft.weight") else "vanilla" if alpha == 0 else "plot"
    return {
        "model": run_name(method, alpha, seed, ablation),
        "method": method,
        "alpha": alpha,
        "variant": kind,
        "seed": seed,
        "ablation": ablation,
    }


def planned_runs(out: Path, profile: DemoProfile) -> list[dict]:
    """Every run the demo's sweeps will train (:func:`sweep_configs`), in their order: its
    identity (:func:`_identity`) and ``params``, the trial's parameters with its variant's
    overrides spelled out. Nothing trains, and only each sweep's base config is validated
    (:func:`plot_ray.tune.check_space` validates every trial's)."""
    from plot_ray.config import validate_config
    from plot_ray.tune import grid_points
    from plot_ray.tune.space import with_variant

    variants = {**_variants(profile), **profile.controls}
    return [
        {**_identity(params, base, profile), "params": with_variant(params, variants)}
        for base in sweep_configs(out, profile)
        for params in grid_points(validate_config(base).tune)
    ]


def _runs(out: Path, profile: DemoProfile, report: dict) -> list[dict]:
    """Stage 5: the main sweep, then one sweep of the extra alphas and ablations (two trials
    side by side in each); returns the runs to evaluate."""
    t = _stage(
        f"5. Ray Tune: {' + '.join(m.upper() for m in profile.methods)} x alpha "
        f"{list(profile.alphas)} x seeds {list(profile.seeds)}, one Ray Train + DeepSpeed run "
        "per trial"
    )
    runs: list[dict] = []
    extra = _variants(profile)
    method = profile.ablation_method.upper()
    if profile.primary_seeds:
        print(f"then {method} ± PLOT, seeds {list(profile.primary_seeds)}")
    if profile.controls:
        print(f"then {method} controls {', '.join(profile.controls)}, all seeds")
    if extra:
        print(f"then {method}, seed {profile.seeds[0]}: {', '.join(extra)}")
    for base in sweep_configs(out, profile):
        for row in _sweep_rows(base):
            runs.append(
                {
                    **_identity(row["params"], base, profile),
                    "path": row["run_dir"],
                    "status": row["status"],
                    "error": row.get("error") or "",
                    "train_seconds": row.get("metric/train_seconds"),
                    "tokens_per_s": row.get("metric/tokens_per_s"),
                    "steps": row.get("metric/step"),
                }
            )
    links = out / "runs"  # runs/<model> → its trial's run folder, for plot-ray eval configs
    links.mkdir(exist_ok=True)
    for r in runs:
        link = links / r["model"]
        if r["path"] and not link.is_symlink():
            link.symlink_to(r["path"], target_is_directory=True)
    failed = [r for r in runs if r["status"] != "ok"]
    for r in failed:
        print(f"  {r['model']}: {r['status']} {r['error'][:200]}")
    report["runs"] = runs
    report["seconds"]["sweep"] = _done(t, f"{len(runs) - len(failed)} of {len(runs)} runs ok")
    return [r for r in runs if r["status"] == "ok"]


# ----------------------------------------------------------------------------- stage 6
def eval_overrides(out: Path, profile: DemoProfile, runs: list[dict]) -> dict[str, Any]:
    """The eval section of the demo's evaluation (every run and the base model)."""
    models = [{"name": "base", "path": str(out / "base-model")}]
    models += [{"name": r["model"], "path": r["path"]} for r in runs]
    over: dict[str, Any] = {
        "eval.models": models,
        "eval.baseline": "base",
        "eval.data_dir": str(out / "data"),
        "eval.attacks": list(profile.attacks),
        "eval.attack_params": {
            **profile.attack_params,
            "human_jailbreaks": {"templates_per_behavior": profile.templates_per_behavior},
        },
        "eval.num_behaviors": profile.num_behaviors,
        "eval.num_benign": profile.num_benign,
        "eval.num_logic": profile.num_logic,
        "eval.reward_model": str(out / "reward-model"),
        **subpreference_eval_overrides(profile),
        "eval.generation.num_engines": 2,
        "eval.name": "demo",
        "eval.output_dir": str(out / "eval"),
        "cluster.num_cpus": 2,
        "cluster.object_store_memory_mb": 500,
    }
    if profile.attacker_steps:
        over["eval.attacker"] = str(out / "attacker")
    return over


def subpreference_eval_overrides(profile: DemoProfile) -> dict[str, Any]:
    """The eval keys that make the evaluation report all seven sub-preferences: the humanity,
    coding and multiple-choice (reasoning, STEM) tasks on the benchmark's sets, and judged
    helpfulness of the benign answers (synthetic_helpfulness ratings)."""
    return {
        "eval.tasks": [
            "harmful",
            "benign",
            "logic",
            "perplexity",
            "humanity",
            "coding",
            "choice",
        ],
        "eval.num_humanity": profile.num_humanity,
        "eval.num_coding": profile.num_coding,
        "eval.num_choice": profile.num_choice,
        "eval.choice_loglik": profile.choice_loglik,
        "eval.helpfulness_judge": "synthetic_helpfulness",
        "eval.helpfulness_mode": "single",
    }


def _evaluate(out: Path, profile: DemoProfile, runs: list[dict], report: dict, verbose: bool):
    from plot_ray.config import load_config
    from plot_ray.eval import run_eval

    t = _stage(
        f"6. evaluation of the base model and {len(runs)} runs: attacks "
        f"{', '.join(profile.attacks)}; benign helpfulness, humanity, arithmetic, reasoning, "
        "coding, STEM, perplexity"
    )
    cfg = load_config(overrides=eval_overrides(out, profile, runs))
    metrics = run_eval(cfg, progress=True, verbose=verbose)
    report["seconds"]["eval"] = _done(t)
    return cfg, metrics


# ----------------------------------------------------------------------------- run
def run_demo(
    out: Path,
    profile: str | DemoProfile = "default",
    seed: int = 0,
    force: bool = False,
    verbose: bool = False,
) -> dict:
    """Run (or finish) the demo under ``out``; returns what ``report/demo.json`` holds.

    ``force`` starts over (every stage's folder under ``out`` is removed first); without it a
    rerun reuses every finished stage and an interrupted one continues where it stopped (the
    sweep from Ray Tune's saved state, the evaluation from its finished shards).
    """
    from plot_ray.cluster import use_small_machine_env
    from plot_ray.config import validate_config
    from plot_ray.demo.report import write_demo_report
    from plot_ray.models.tiny import build_from_corpus
    from plot_ray.synth import generate_benchmark

    prof = PROFILES[profile] if isinstance(profile, str) else profile
    use_small_machine_env()  # the demo runs on one machine: local Ray, CPU DeepSpeed
    out = out.resolve()
    if force:
        for name in (*STAGE_DIRS, "train"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {"profile": prof.name, "seed": seed, "seconds": {}}
    print(f"plot-ray demo ({prof.name}) → {out}")

    t = _stage("1. synthetic preference benchmark")
    data = out / "data"
    manifest = _reuse_json(data / "manifest.json") or generate_benchmark(
        data, seed=seed, scale=prof.scale
    )
    report["benchmark"] = {"scale": prof.scale, "counts": manifest.get("counts", {})}
    report["seconds"]["synth"] = _done(t)

    t = _stage("2. tokenizer + tiny Llama, warmed up on the (unaligned) warm-up corpus")
    base = out / "base-model"
    summary = _reuse_json(base / "plot_ray_build.json") or build_from_corpus(
        data, base, warmup_steps=prof.warmup_steps, seed=seed
    )
    report["base_model"] = summary
    report["seconds"]["base_model"] = _done(
        t, f"{summary['parameters'] / 1e6:.2f}M parameters, vocabulary {summary['vocab_size']}"
    )

    _models(out, prof, seed, report)
    _prepare(validate_config(demo_config(out, prof)), report, verbose)
    runs = _runs(out, prof, report)
    eval_cfg, metrics = _evaluate(out, prof, runs, report, verbose)

    t = _stage("7. report")
    report["seconds"]["total"] = time.perf_counter() - started
    written = write_demo_report(out / "report", prof, runs, eval_cfg, metrics, report)
    _done(t)
    for line in written["verdicts"]:
        print(f"  {line}")
    print(f"\nreport: {written['markdown']}\n        {written['html']}")
    return report
