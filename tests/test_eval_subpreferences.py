"""`plot-ray eval` on the synthetic benchmark reports the paper's seven sub-preferences: the
cases of the humanity, coding and multiple-choice tasks come from the benchmark's eval/ files,
the humanity judge rates answers, and each sub-preference is read off its task by hand-checked
numbers (the end-to-end run is the quick demo's test)."""

from __future__ import annotations

import json

import pytest

from plot_ray.config import ConfigError, load_config
from plot_ray.eval.report import subpreference_lines
from plot_ray.eval.runner import _humanity_scoring
from plot_ray.eval.subpreferences import SUBPREFERENCES, subpreference_scores
from plot_ray.eval.tasks import build_cases


def _config(synth_dir, tmp_path, **over):
    return load_config(
        overrides={
            "eval.data_dir": str(synth_dir),
            "eval.output_dir": str(tmp_path),
            "eval.models": [{"name": "m", "path": "x"}],
            "eval.tasks": ["humanity", "coding", "choice"],
            "eval.num_humanity": 5,
            "eval.num_coding": 3,
            "eval.num_choice": 4,
            **over,
        }
    )


def test_the_benchmarks_new_sets_become_cases_with_their_references(synth_dir, tmp_path):
    cases = build_cases(_config(synth_dir, tmp_path).eval)
    assert {t: len(c) for t, c in cases.items()} == {"humanity": 5, "coding": 3, "choice": 4}
    humanity = cases["humanity"][0]
    assert humanity["case_id"].startswith("humanity/humanity-eval-")
    assert humanity["reference"] and humanity["category"]  # the situation
    problem = json.loads(cases["coding"][0]["reference"])
    assert problem["style"] == "mbpp" and problem["tests"].startswith("assert ")
    assert "Your code should pass these tests" in cases["coding"][0]["message"]
    # reasoning and STEM alternate, so a prefix of the file holds both
    subjects = [json.loads(c["reference"])["subject"].split("/")[0] for c in cases["choice"]]
    assert subjects == ["reasoning", "stem", "reasoning", "stem"]
    assert cases["choice"][0]["message"].endswith("\nAnswer:")


def test_a_misspelt_humanity_judge_is_refused_by_name(synth_dir, tmp_path):
    with pytest.raises(ConfigError, match="humanity_judge"):
        _config(synth_dir, tmp_path, **{"eval.humanity_judge": "synthetic_humanty"})


def test_the_humanity_stage_rates_each_answer(synth_dir, tmp_path):
    cfg = _config(synth_dir, tmp_path)
    case = build_cases(cfg.eval)["humanity"][0]
    finish = _humanity_scoring(cfg.eval).finish
    good = finish({**case, "completion": case["reference"]})
    cold = finish({**case, "completion": "Just get over it."})
    blank = finish({**case, "reference": "", "completion": "ok"})
    assert (good["label"], good["judge_score"]) == (1, 10)
    assert (cold["label"], cold["judge_score"]) == (0, 2)
    assert blank["label"] == -1 and blank["judge_score"] is None


def _choice_rows(prefix: str, n: int, correct: int) -> list[dict]:
    return [{"method": "generated_letter", "subject": f"{prefix}/a", "n": n, "correct": correct}]


def test_each_subpreference_is_read_off_its_task():
    model = {
        "harmful": {
            "asr": {
                "direct_request": {"asr": 0.5, "n_behaviors": 20},
                "human_jailbreaks": {"asr": 0.3, "n_behaviors": 20},
            }
        },
        "benign": {"helpfulness": {"score": 6.5, "judge": "synthetic_helpfulness", "n_rated": 24}},
        "humanity": {"score": 4.0, "judge": "synthetic_humanity", "n_rated": 6},
        "logic": {"accuracy": 0.25, "n_problems": 24},
        "coding": {"pass@1": 0.5, "n_problems": 4},
        "choice": {
            "per_subject": [
                *_choice_rows("reasoning", 3, 1),
                {"method": "generated_letter", "subject": "reasoning/b", "n": 1, "correct": 1},
                {"method": "loglik_letter", "subject": "reasoning/a", "n": 3, "correct": 3},
                *_choice_rows("stem", 4, 3),
            ]
        },
    }
    got = subpreference_scores(model)
    assert list(got) == list(SUBPREFERENCES)
    assert got["harmlessness"]["value"] == pytest.approx(0.6)  # 1 - (0.5 + 0.3) / 2
    assert got["helpfulness"]["value"] == 6.5 and got["helpfulness"]["scale"] == "rating"
    assert got["humanity"]["value"] == 4.0 and got["humanity"]["n"] == 6
    assert got["mathematics"]["value"] == 0.25
    assert got["reasoning"]["value"] == 0.5 and got["reasoning"]["n"] == 4  # (1 + 1) / (3 + 1)
    assert got["stem"]["value"] == 0.75 and got["coding"]["value"] == 0.5
    # a published multiple-choice set without these subjects fills neither
    assert "reasoning" not in subpreference_scores({"choice": {"per_subject": []}})

    lines = subpreference_lines({"models": {"base": {"subpreferences": got}}})
    header, _, row = [line for line in lines if line.startswith("|")]
    assert [c.strip() for c in header.strip("|").split("|")] == ["model", *SUBPREFERENCES]
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "`base`",
        "60.0 (20)",
        "6.50 (24)",
        "4.00 (6)",
        "25.0 (24)",
        "50.0 (4)",
        "50.0 (4)",
        "75.0 (4)",
    ]


def test_without_loglik_only_the_generated_letter_is_graded(synth_dir, tmp_path):
    """eval.choice_loglik: false (the quick demo's setting): no NLL scorer pool, one row per
    item with the generated letter's prediction, and the report's methods are that one."""
    from plot_ray.eval.report import _choice
    from plot_ray.eval.runner import _choice_scoring

    cfg = _config(synth_dir, tmp_path, **{"eval.choice_loglik": False})
    cases = build_cases(cfg.eval)["choice"]
    stage = _choice_scoring("unused", None, cfg.eval.choice_loglik)
    assert stage.transform is None  # nothing goes to an actor pool
    item = json.loads(cases[0]["reference"])
    right = "ABCD"[item["answer_index"]]
    answers = [f"{right}."] + ["no idea"] * (len(cases) - 1)
    # as the pipeline runs it: finish per row (with its bookkeeping column), collect per shard
    finished = [
        stage.finish({**c, "completion": a, "_index": i})
        for i, (c, a) in enumerate(zip(cases, answers, strict=True))
    ]
    assert all("_index" in r for r in finished)
    rows = stage.collect([{k: v for k, v in r.items() if k != "_index"} for r in finished])
    assert rows[0]["pred_generated_letter"] == item["answer_index"] == rows[0]["answer_index"]
    assert "pred_loglik_letter" not in rows[0]
    got = _choice(rows)
    assert list(got["methods"]) == ["generated_letter"]
    assert got["methods"]["generated_letter"]["correct"] == 1
    assert got["methods"]["generated_letter"]["unparseable"] == 3
