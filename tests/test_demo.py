"""`plot-ray demo --quick` end to end on the session's local Ray: every stage, the report's table
filled and equal to a recomputation from results.parquet, every figure on disk, report.html
rendered by a real headless Chromium; a second run reuses every stage.

To keep CI inside its budget the test runs the quick profile with fewer training steps and
evaluation cases (``TEST_PROFILE``), and its first run starts from the session's benchmark,
base model and reward model (what the demo's stages 1-3 build at the quick profile's scale,
and reuse when they are on disk), so stages 1-3 are reused and stages 4-7 run in full."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time

import pytest
from conftest import REWARD_STEPS, SYNTH_SCALE
from test_html_report import _cells, _chromium_dom

from plot_ray.demo import PROFILES, run_demo
from plot_ray.demo.report import group_stats, main_table, read_results, subpreference_table
from plot_ray.eval.subpreferences import SUBPREFERENCES


def _markdown_table(text: str, heading: str) -> list[dict]:
    block = text.split(f"## {heading}", 1)[1].strip().split("\n\n", 1)[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(cols, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


# The quick profile, trimmed: its methods, alphas, seeds and attacks, 6 steps per run instead
# of 30 and 8 behaviours, benign prompts and problems each (every stage, table and figure the
# same; a smoke test of the pipeline, not evidence).
TEST_PROFILE = dataclasses.replace(
    PROFILES["quick"], train_steps=6, num_behaviors=8, num_benign=8, num_logic=8
)


@pytest.mark.slow
def test_quick_demo_fills_its_table_from_results_and_reuses_finished_stages(
    tmp_path, synth_dir, tiny_model_dir, reward_model_dir
):
    out = tmp_path / "demo"
    quick = TEST_PROFILE
    # stages 1-3 as the demo would build them (same benchmark scale and reward steps), from the
    # session's fixtures: the demo reuses a stage whose summary file is on disk
    assert (quick.scale, quick.reward_steps) == (SYNTH_SCALE, REWARD_STEPS)
    shutil.copytree(synth_dir, out / "data")
    shutil.copytree(tiny_model_dir, out / "base-model")
    shutil.copytree(reward_model_dir, out / "reward-model")
    started = time.perf_counter()
    report = run_demo(out, quick)
    first = time.perf_counter() - started
    folder = out / "report"

    # Every run trained and was evaluated beside the base model.
    runs = report["runs"]
    assert [(r["method"], r["alpha"], r["status"]) for r in runs] == [
        ("dpo", 0.0, "ok"),
        ("dpo", quick.main_alpha, "ok"),
    ]
    rows = read_results(folder / "results.parquet")
    assert {r["model"] for r in rows} == {"base", "dpo-a0-s0", f"dpo-a{quick.main_alpha:g}-s0"}

    # The main table: every cell filled, and each equal to a recomputation from the file.
    md = (folder / "report.md").read_text()
    table = _markdown_table(md, "Main table: methods × {vanilla, +PLOT}")
    assert [r["run"] for r in table] == [
        "base model",
        "DPO",
        f"DPO + PLOT (α={quick.main_alpha:g})",
    ]
    assert all(cell and cell != "—" for r in table for cell in r.values())
    assert table == [{k: str(v) for k, v in r.items()} for r in main_table(rows, quick)]
    vanilla = group_stats(rows, "asr/direct_request", method="dpo", alpha=0.0, ablation="")
    assert (
        table[1]["ASR direct_request (%)"]
        == f"{100 * vanilla['mean']:.1f} ({1}×{quick.num_behaviors})"
    )
    base_rows = {r["metric"]: r for r in rows if r["model"] == "base"}
    assert base_rows["asr/direct_request"]["n"] == quick.num_behaviors
    assert base_rows["over_refusal"]["n"] == quick.num_benign
    # The paper's seven sub-preferences: one column each, every cell filled, recomputed from
    # the results file, and each model's metrics.json reads them off its tasks.
    sub = _markdown_table(md, "Sub-preferences")
    assert [c.split(" (")[0] for c in sub[0]][1:] == list(SUBPREFERENCES)
    assert [r["run"] for r in sub] == [r["run"] for r in table]
    assert all(cell and cell != "—" for r in sub for cell in r.values())
    assert sub == [{k: str(v) for k, v in r.items()} for r in subpreference_table(rows, quick)]
    metrics = json.loads((out / "eval" / "demo" / "metrics.json").read_text())
    for name, m in metrics["models"].items():
        assert list(m["subpreferences"]) == list(SUBPREFERENCES), name
    base_sub = metrics["models"]["base"]["subpreferences"]
    assert base_sub["humanity"]["n"] == quick.num_humanity
    assert base_sub["coding"]["n"] == quick.num_coding
    assert base_sub["reasoning"]["n"] + base_sub["stem"]["n"] == quick.num_choice
    assert base_sub["helpfulness"]["n"] == quick.num_benign
    # a verdict for the method, stated plainly whichever way it went
    assert re.search(r"DPO \+ PLOT \(α=0.3\) vs DPO: PLOT (lowered|raised|left)", md)

    # Every ASR and over-refusal recomputes from the per-test-case table beside the results.
    cases = read_results(folder / "cases.parquet")
    for r in rows:
        metric, model = r["metric"], r["model"]
        if metric.startswith("asr/") and metric.count("/") == 1 and metric != "asr/mean":
            mine = [c for c in cases if c["model"] == model and c["attack"] == metric[4:]]
            per = {}
            for c in mine:
                per.setdefault(c["behavior_id"], []).append(c["label"] == 1)
            assert r["value"] == pytest.approx(
                sum(sum(v) / len(v) for v in per.values()) / len(per)
            )
        if metric == "over_refusal":
            benign = [c["refusal"] for c in cases if c["model"] == model and c["task"] == "benign"]
            assert r["value"] == pytest.approx(sum(benign) / len(benign))
    # ... and so does the pre-registered endpoint, printed with the analysis' hash
    assert "## Pre-registered primary endpoint" in md and "sha256 `" in md
    endpoint = md.split("## Pre-registered primary endpoint\n\n", 1)[1]
    assert endpoint.startswith(f"DPO + PLOT (α={quick.main_alpha:g}) vs DPO: ")

    # Every figure the report names exists.
    names = re.findall(r"\(figures/([\w.]+\.png)\)", md)
    assert {"asr_per_attack.png", "safety_vs_helpfulness.png", "asr_vs_alpha.png"} <= set(names)
    assert all((folder / "figures" / n).stat().st_size > 1000 for n in names)

    # report.html in a real browser: the tables with their cells, every image decoded, and the
    # browsable test cases of all three models.
    dom = _chromium_dom(folder / "report.html", tmp_path)
    body = dom.root.find_all("body")[0]
    assert body.attrs["data-images-loaded"] == body.attrs["data-figures"] == str(len(names))
    html_main = _cells(dom.root.find_all("table")[0])
    assert html_main[1:] == [list(r.values()) for r in table]
    cases = dom.root.find_all("li", **{"class": "case"})
    harmful = quick.num_behaviors * (1 + quick.templates_per_behavior)
    assert int(body.attrs["data-cases"]) == len(cases) == 3 * harmful  # base and both runs

    # A second run reuses every stage: no training, no generation, a fraction of the time.
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "eval").rglob("*.parquet")}
    started = time.perf_counter()
    again = run_demo(out, quick)
    second = time.perf_counter() - started
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert second < 0.5 * first, (second, first)
    assert read_results(folder / "results.parquet") == rows
    assert again["verdicts"] == report["verdicts"]
