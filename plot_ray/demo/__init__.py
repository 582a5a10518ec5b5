"""``plot-ray demo``: the paper's experiment, end to end, on one machine with tiny models.

pipeline.py   the stages: benchmark → base, reward and attacker models → Ray Data prepare →
              Ray Tune sweep of Ray Train runs (method × alpha × seed) → evaluation of
              every run on engine pools → report
profiles.py   how much of it to run: --quick (CI), the default (make demo), --full
report.py     the paper's table shape: results.parquet, tables, verdicts, report.md / report.html
figures.py    the figures those numbers are drawn as
"""

from plot_ray.demo.pipeline import demo_config, run_demo
from plot_ray.demo.profiles import PROFILES, DemoProfile

__all__ = ["PROFILES", "DemoProfile", "demo_config", "run_demo"]
