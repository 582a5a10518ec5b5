"""Evaluation at scale (``plot-ray eval``): test cases from attacks, completions from vLLM or
Hugging Face engine pools (Ray Data), judges and scorers, metrics with their counts, resumable
result shards and a report.

    runner.py        run_eval(cfg): cases → per model: attacks, generate, score → judged
                     helpfulness (every model at once) → report
    pipeline.py      Stage, stream, shards, actor pools, progress: what every stage shares
    evalsets.py      evaluation sets in their published shapes (HarmBench, GSM8K, MATH,
                     AlpacaEval, MT-Bench, HH-RLHF, HumanEval, MBPP) → normalised rows
    tasks.py         evaluation sets → every task's cases (static attacks' test cases included)
    attacks/         the attack registry and the attacks (static, generation, gradient)
    attack_stage.py  shared attacks once, per-target attacks on an actor pool per model
    engines.py       generate(ds, model, settings): vLLM (ray.data.llm) | HF actor pool
    judges/          the judge registry: synthetic rules, classifier LLM, refusal judges,
                     helpfulness judges (MT-Bench-style ratings and pairwise verdicts)
    scorers.py       perplexity (NLLScorer) and the reward model's scoring stage
    answers.py       GSM8K / MATH answer extraction and matching
    choice.py        multiple choice (MMLU, ARC, HellaSwag shapes): options by log-likelihood
                     (NLLScorer pool) and by generated letter, accuracy with Wilson intervals
                     (the ``choice`` task)
    sandbox/         coding by execution: the sandbox, HumanEval/MBPP problems, pass@k (the
                     ``coding`` task)
    metrics.py       ASR, win rates (raw, length-controlled), perplexity, mean ± std
    store.py         result shards on disk, written whole; settings checks
    report.py        metrics.json, report.md, figures;  html_report.py: report.html

Where a new piece goes: an attack is a settings class, an entry point and one
``register_attack`` call (:mod:`plot_ray.eval.attacks`); a judge is a ``Judge`` and one
``register_judge`` call (:mod:`plot_ray.eval.judges`); a published set's shape is a
normaliser in :mod:`plot_ray.eval.evalsets`; a task is a case builder in
:mod:`plot_ray.eval.tasks`, its scoring stage in :mod:`plot_ray.eval.runner` and its metrics
in :mod:`plot_ray.eval.report`.
"""

from __future__ import annotations

__all__ = ["eval_dir", "run_eval"]


def __getattr__(name: str):
    # Lazy, so that importing a submodule (the attack or judge registry, which config
    # validation reads) does not import the runner and everything it needs.
    if name in __all__:
        from plot_ray.eval import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'plot_ray.eval' has no attribute {name!r}")
