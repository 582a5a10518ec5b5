"""``plot-ray make-pairs`` (plot_ray/pairs): k samples per problem on the engine pool, graded by
the evaluation's answer extraction, paired correct against wrong; resumable shard by shard.

The pure part (grading, pairing, counts) is checked by hand-worked examples; one end-to-end run
samples the session's tiny model on the synthetic logic problems with the HF engine actors on
the local Ray instance, and its pairs go through ``prepare`` and a short DPO run.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from plot_ray.config import ConfigError, load_config
from plot_ray.eval.answers import is_correct
from plot_ray.pairs.grading import (
    candidates,
    count,
    grade,
    ranked_list,
    require_an_answer,
    trl_pairs,
)

LOGIC = {"question": "prompt", "answer": "chosen"}  # synth logic rows as problems


def pairs_config(source: dict, out, **overrides):
    return load_config(
        overrides={
            "pairs.model": "unused",
            "pairs.source": source,
            "pairs.output_dir": str(out),
            **overrides,
        }
    )


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"pairs.generation.temperature": 0}, "pairs.generation.temperature: must be > 0"),
        ({"pairs.prompt_template": "Solve it."}, "pairs.prompt_template: must contain {question}"),
        ({"pairs.prompt_template": "{question} {x}"}, "only {question} may be in braces"),
        ({"pairs.source": {"path": "p.jsonl", "columns": {"q": "x"}}}, "pairs.source.columns"),
        ({"pairs.num_samples": 1}, "pairs.num_samples"),
        ({"pairs.formats": ["dpo"]}, "pairs.formats.0"),
    ],
)
def test_pairs_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_config(overrides=override)


def test_make_pairs_without_a_model_exits_2_naming_the_key(tmp_path, capsys):
    from plot_ray.cli import main

    config = tmp_path / "pairs.yaml"
    config.write_text("pairs:\n  source: {path: problems.jsonl}\n")
    assert main(["make-pairs", "--config", str(config)]) == 2
    assert "pairs.model" in capsys.readouterr().err


# ------------------------------------------------------------------- grading, by hand
def _samples(*texts):
    return [{"sample": i, "completion": t} for i, t in enumerate(texts)]


def test_grading_labels_samples_and_pairs_each_correct_one_with_a_wrong_one():
    graded = grade(
        _samples(
            "2 + 3 = 5\n#### 5",
            "#### 6",
            "I think it is five",
            "#### 5.0",
            "  ",
            "2 + 3 = 5\n#### 5 ",
        ),
        "5",
        "gsm8k",
        flexible=False,
    )
    assert [g["correct"] for g in graded] == [True, False, None, True, None, True]
    assert [g["extracted"] for g in graded] == ["5", "6", None, "5.0", None, "5"]
    # sample 5 repeats sample 0's text; the empty sample 4 is never a response
    correct, wrong = candidates(graded, unparseable="wrong")
    assert [s["sample"] for s in correct] == [0, 3]
    assert [s["sample"] for s in wrong] == [1, 2]
    assert [s["sample"] for s in candidates(graded, unparseable="exclude")[1]] == [1]

    problem = {"problem_id": 7, "message": "What is 2 + 3?"}
    pairs = trl_pairs(problem, correct, wrong, limit=5)  # j < max(2, 2): two pairs
    assert [(p["chosen_sample"], p["rejected_sample"]) for p in pairs] == [(0, 1), (3, 2)]
    assert pairs[0] == {
        "prompt": "What is 2 + 3?",
        "chosen": "2 + 3 = 5\n#### 5",
        "rejected": "#### 6",
        "problem_id": 7,
        "chosen_sample": 0,
        "rejected_sample": 1,
    }
    assert len(trl_pairs(problem, correct, wrong, limit=1)) == 1
    assert trl_pairs(problem, correct, [], limit=3) == []

    listed = ranked_list(problem, correct, wrong)
    assert listed["samples"] == [0, 3, 1, 2]
    assert listed["scores"] == [1.0, 1.0, 0.0, 0.0]
    assert ranked_list(problem, [], wrong) is None

    counts = count(
        {7: graded, 8: grade(_samples("#### 1", "#### 1 "), "1", "gsm8k", False)}, "wrong"
    )
    assert counts == {
        "samples": 8,
        "correct": 5,
        "wrong": 1,
        "unparseable": 2,
        "empty": 1,
        "problems_no_correct": 0,
        "problems_no_wrong": 1,
    }


def test_no_answer_in_any_completion_is_an_error_saying_what_to_change():
    """What make-pairs checks on the first shard's samples and on the whole run: a grader that
    finds no answer anywhere means the prompt or style does not fit the model."""
    silent = grade(_samples("", "I think it is five", "five"), "5", "gsm8k", False)
    with pytest.raises(ValueError) as info:
        require_an_answer(silent, "gsm8k", False, "shard 0")
    assert str(info.value) == (
        "pairs.style=gsm8k: the grader found no answer ('#### N') in any of the 3 completions "
        "of shard 0 (e.g. 'I think it is five'): ask for that form in pairs.prompt_template, "
        "choose the style the model writes (pairs.style), allow more tokens "
        "(pairs.generation.max_new_tokens), or grade the last number (pairs.flexible=true)"
    )
    boxed = grade(_samples("It is 5."), "5", "math", False)
    with pytest.raises(ValueError, match=r"no answer \(\\boxed\{...\}\).*max_new_tokens\)$"):
        require_an_answer(boxed, "math", False, "the run")
    # One answer anywhere, even a wrong one, is enough; so is no sample at all
    require_an_answer(silent + grade(_samples("#### 6"), "5", "gsm8k", False), "gsm8k", False, "")
    require_an_answer([], "gsm8k", False, "shard 0")


def test_math_grading_compares_normalised_boxed_answers():
    graded = grade(
        _samples(r"so \boxed{\dfrac{1}{2}}", r"\boxed{0.5}", r"\boxed{2}"), "0.5", "math", False
    )
    assert [g["correct"] for g in graded] == [True, True, False]


# ----------------------------------------------------------------------- bad problems
def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_problem_sources_fail_naming_the_source_and_key(ray_local, tmp_path):
    from plot_ray.pairs.runner import read_problems

    good = {"prompt": "What is 1 + 1?", "chosen": "1 + 1 = 2\n#### 2"}
    path = _jsonl(tmp_path / "problems.jsonl", [good])

    def read(source, **kw):
        return read_problems(pairs_config(source, tmp_path, **kw).pairs)

    with pytest.raises(
        ValueError,
        match=r"pairs.source \('.*problems.jsonl'\): columns.answer "
        r"names the column 'solution', which the source does not have",
    ):
        read({"path": str(path), "columns": {"question": "prompt", "answer": "solution"}})
    with pytest.raises(
        ValueError,
        match=r"no row has the field 'question'.*"
        r"pairs.source.columns.question",
    ):
        read({"path": str(path)})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(
        ValueError, match=r"pairs.source \('.*empty.jsonl', split 'train'\): no rows"
    ):
        read({"path": str(empty), "columns": LOGIC})
    with pytest.raises(FileNotFoundError, match=r"pairs.source \('.*missing.jsonl'\)"):
        read({"path": str(tmp_path / "missing.jsonl"), "columns": LOGIC})

    # References the grader cannot read are quarantined with their reason; none left: an error
    rows = [
        good,
        {"prompt": "How many?", "chosen": "many\n#### lots"},
        {"prompt": "Q", "chosen": ""},
    ]
    mixed = {"path": str(_jsonl(tmp_path / "mixed.jsonl", rows)), "columns": LOGIC}
    problems, quarantined, filtered = read(mixed)
    assert [(p["question"], p["reference"]) for p in problems] == [("What is 1 + 1?", "2")]
    assert [(q["row_index"], q["reason"]) for q in quarantined] == [
        (1, "unparseable_reference"),
        (2, "missing_answer"),
    ]
    assert filtered == 0
    # A row filter on the mapped columns, counted; `limit` then counts the rows it keeps
    keep = {"question": ["What is 1 + 1?", "Q"]}  # rows 0 and 2
    for limit in (None, 2):
        problems, quarantined, filtered = read({**mixed, "where": keep, "limit": limit})
        assert [p["question"] for p in problems] == ["What is 1 + 1?"]
        assert ([q["row_index"] for q in quarantined], filtered) == ([2], 1)
    with pytest.raises(ValueError, match=r"pairs.source \('.*mixed.jsonl'\): where.level filters"):
        read({**mixed, "where": {"level": "Level 5"}})
    with pytest.raises(
        ValueError, match=r"pairs.source.where \{'question': 'Q\?'\} keeps none of its 3"
    ):
        read({**mixed, "where": {"question": "Q?"}})
    with pytest.raises(
        ValueError,
        match=r"none of its 2 rows can be graded with pairs.style=gsm8k "
        r"\(unparseable_reference: 1, missing_answer: 1\)",
    ):
        read({"path": str(_jsonl(tmp_path / "bad.jsonl", rows[1:])), "columns": LOGIC})


# ------------------------------------------------------------------------- end to end
def _table(path):
    return pq.read_table(path).to_pylist()


@pytest.mark.slow
def test_make_pairs_labels_match_the_grader_resume_and_dpo_trains_on_them(
    ray_local, synth_dir, tiny_model_dir, tmp_path
):
    from conftest import _prepare, train_config

    from plot_ray.eval.store import SettingsMismatchError
    from plot_ray.pairs import run_make_pairs
    from plot_ray.train import run_training

    over = {
        "pairs.model": str(tiny_model_dir),
        "pairs.source": {
            "path": str(synth_dir / "logic" / "train.jsonl"),
            "columns": LOGIC,
            "limit": 12,
        },
        "pairs.num_samples": 4,
        "pairs.pairs_per_problem": 2,
        "pairs.shard_size": 4,  # 3 shards of 4 problems x 4 samples
        "pairs.generation.engine": "hf",
        "pairs.generation.max_new_tokens": 32,
        "pairs.generation.batch_size": 8,
        "pairs.output_dir": str(tmp_path),
    }
    cfg = load_config(overrides=over)
    summary = run_make_pairs(cfg, progress=False, print_fn=None)
    root = tmp_path / "pairs"
    c = summary["counts"]
    assert (c["problems"], c["quarantined"], c["samples"]) == (12, 0, 48)
    assert summary["this_run"]["samples_generated"] == 48 and summary["engines"] == ["hf"]
    assert c["correct"] > 0 and c["wrong"] + c["unparseable"] > 0 and c["pairs"] > 0

    # Every label is the grader's: the per-sample table, the pairs and the ranked lists
    problems = {
        json.loads(line)["prompt"]: json.loads(line)
        for line in (synth_dir / "logic" / "train.jsonl").read_text().splitlines()[:12]
    }
    samples = _table(root / "samples.parquet")
    assert len(samples) == 48
    for s in samples:
        assert s["correct"] == is_correct(s["completion"], problems[s["question"]]["chosen"])
    assert sum(s["correct"] is True for s in samples) == c["correct"]
    assert sum(s["correct"] is None for s in samples) == c["unparseable"]
    pairs = _table(root / "trl.parquet")
    assert len(pairs) == c["pairs"]
    for p in pairs:
        reference = problems[p["prompt"]]["chosen"]
        assert is_correct(p["chosen"], reference) is True
        assert is_correct(p["rejected"], reference) is not True  # wrong, or no answer
        assert p["chosen"].strip() != p["rejected"].strip()
    ranked = _table(root / "ranked.parquet")
    assert len(ranked) == c["ranked_lists"] == len({p["problem_id"] for p in pairs})
    for r in ranked:
        reference = problems[r["prompt"]]["chosen"]
        assert r["scores"] == [float(is_correct(x, reference) is True) for x in r["responses"]]
    by_problem = {}
    for s in samples:
        by_problem.setdefault(s["problem_id"], []).append(s["correct"])
    assert c["problems_no_correct"] == sum(True not in v for v in by_problem.values())

    # Killed after the first shard (later shards never written): a rerun generates only the
    # missing ones, and the result equals the uninterrupted run's
    shard_files = sorted((root / "samples").glob("shard-*.parquet"))
    assert len(shard_files) == 3
    kept = {p: p.stat().st_mtime_ns for p in shard_files[:1]}
    for p in shard_files[1:]:
        p.unlink()
    resumed = run_make_pairs(cfg, progress=False, print_fn=None)
    assert resumed["this_run"]["samples_generated"] == 32
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert _table(root / "trl.parquet") == pairs
    assert _table(root / "samples.parquet") == samples
    assert resumed["counts"] == summary["counts"]
    with pytest.raises(SettingsMismatchError, match=r"changed: temperature.*pairs.name"):
        run_make_pairs(
            load_config(overrides={**over, "pairs.generation.temperature": 0.7}),
            progress=False,
            print_fn=None,
        )

    # prepare accepts the pairs, and DPO trains on them
    prepared = _prepare(
        synth_dir, tiny_model_dir, tmp_path / "prepared", [(str(root / "trl.parquet"), "logic")]
    )
    prep = json.loads((prepared / "summary.json").read_text())
    assert prep["rows_out"] == len(pairs) and prep["quarantined"] == 0
    run = run_training(
        train_config(
            prepared,
            tiny_model_dir,
            tmp_path / "runs",
            **{
                "loss.method": "dpo",
                "train.num_workers": 1,
                "train.cpus_per_worker": 1,
                "train.micro_batch_size": 2,
                "train.save_hf_model": False,
                "train.run_name": "dpo-on-pairs",
            },
        )
    )
    assert [m["step"] for m in run.metrics] == [1, 2]
    assert all(m["loss/total"] == pytest.approx(m["loss/vanilla"]) for m in run.metrics)
