"""Evaluation at scale: test cases from attacks, completions from vLLM or Hugging Face engine
pools (Ray Data), judges and scorers, metrics with their counts, resumable result shards and
a report (``plot-ray eval``).

    tasks.py     evaluation sets → every task's cases        attacks.py  behaviours → test cases
    engines.py   generate(ds, model, settings): vLLM | HF    scorers.py  perplexity, classifier
    judges.py    rule judge, classifier prompt, refusals      answers.py  GSM8K / MATH answers
    metrics.py   ASR, win rates (raw, length-controlled)      store.py    result shards on disk
    runner.py    run_eval(cfg)                                report.py   metrics.json, report.md
"""

from plot_ray.eval.runner import eval_dir, run_eval

__all__ = ["eval_dir", "run_eval"]
