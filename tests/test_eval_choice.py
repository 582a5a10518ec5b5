"""Multiple-choice evaluation (plot_ray/eval/choice.py): the readers on fixtures in the published
shapes (tests/data/choice, own content), the prompts, the log-likelihood choice against a direct
transformers forward of the tiny model, letter extraction from completions, accuracy with counts
and Wilson intervals, and one pass through a Ray Data actor pool."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from plot_ray.eval.choice import (
    ChoiceFormatError,
    case_fields,
    choice_accuracy,
    choice_table,
    choose,
    cloze_prompt,
    extract_letter,
    grade_generated,
    lettered_prompt,
    normalise_rows,
    option_rows,
)
from plot_ray.eval.evalsets import read_choice
from plot_ray.eval.metrics import wilson_interval

DATA = Path(__file__).parent / "data" / "choice"
FIXTURES = [
    "mmlu.jsonl",
    "astronomy_test.csv",
    "arc.jsonl",
    "arc_original.jsonl",
    "hellaswag.jsonl",
]


def all_items() -> list[dict]:
    return [item for name in FIXTURES for item in read_choice(DATA / name)]


# ------------------------------------------------------------------------------------ readers
def test_each_published_shape_reads_into_one_item_schema():
    mmlu = read_choice(DATA / "mmlu.jsonl")
    assert mmlu[2] == {
        "id": "astronomy/2",
        "question": "Which planet is closest to the Sun?",
        "choices": ["Venus", "Earth", "Mars", "Mercury"],
        "answer_index": 3,
        "subject": "astronomy",
        "shape": "mmlu",
    }
    assert [i["subject"] for i in mmlu] == [
        "elementary_mathematics",
        "elementary_mathematics",
        "astronomy",
        "high_school_physics",
    ]
    # MMLU's original CSV: no header, the subject from the file name, the answer a letter.
    csv_items = read_choice(DATA / "astronomy_test.csv")
    assert [(i["id"], i["subject"], i["answer_index"]) for i in csv_items] == [
        ("astronomy/0", "astronomy", 1),
        ("astronomy/1", "astronomy", 2),
    ]
    assert csv_items[1]["choices"] == ["0", "1", "2", "3, or more"]  # a quoted comma stays
    # ARC: letter labels, digit labels, a three-option question, the nested original release.
    arc = read_choice(DATA / "arc.jsonl", subject="ARC-Easy")
    assert [(i["id"], len(i["choices"]), i["answer_index"]) for i in arc] == [
        ("Own_2026_1", 4, 0),
        ("Own_2026_2", 3, 1),
        ("Own_2026_3", 5, 2),
    ]
    assert {i["subject"] for i in arc} == {"ARC-Easy"}
    (nested,) = read_choice(DATA / "arc_original.jsonl")
    assert nested["question"] == "What gives the Moon its light?"
    assert nested["choices"][nested["answer_index"]] == "reflected sunlight"
    assert nested["subject"] == ""
    # HellaSwag: the context is the question, labels as digit strings or ints.
    hs = read_choice(DATA / "hellaswag.jsonl")
    assert [(i["id"], i["subject"], i["answer_index"]) for i in hs] == [
        ("7", "Baking", 0),
        ("12", "Running", 1),
    ]
    assert hs[0]["question"] == "A man pours flour into a bowl. he"


def test_json_and_parquet_files_read_like_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (DATA / "arc.jsonl").read_text().splitlines()]
    (tmp_path / "arc.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "arc.parquet")
    expected = read_choice(DATA / "arc.jsonl")
    assert read_choice(tmp_path / "arc.json") == expected
    assert read_choice(tmp_path / "arc.parquet") == expected
    # rows from pandas hold numpy arrays and numpy integers
    frame = pq.read_table(tmp_path / "arc.parquet").to_pandas()
    assert normalise_rows(frame.to_dict("records")) == expected
    mmlu = pa.Table.from_pylist([GOOD_MMLU]).to_pandas().to_dict("records")
    assert normalise_rows(mmlu)[0]["answer_index"] == 1


GOOD_MMLU = {"question": "Q?", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": 1}
GOOD_ARC = {
    "id": "x1",
    "question": "Q?",
    "choices": {"text": ["a", "b", "c"], "label": ["A", "B", "C"]},
    "answerKey": "C",
}


@pytest.mark.parametrize(
    "row, message",
    [
        ({**GOOD_MMLU, "answer": 4}, r"answer 4 is out of range for 4 choices \(0..3\)"),
        ({**GOOD_MMLU, "answer": -1}, r"answer -1 is out of range"),
        ({**GOOD_MMLU, "answer": "E"}, r"answer 'E' is out of range"),
        ({**GOOD_MMLU, "answer": 1.5}, r"answer must be an option index or letter, got 1.5"),
        ({k: v for k, v in GOOD_MMLU.items() if k != "choices"}, "missing field .choices. .mmlu"),
        ({**GOOD_MMLU, "choices": ["only"]}, r"choices must be a list of at least 2"),
        ({**GOOD_MMLU, "choices": ["a", " ", "c"]}, r"choice 1 is empty"),
        ({**GOOD_MMLU, "question": ""}, r"question must be non-empty text"),
        (
            {**GOOD_ARC, "choices": {"text": ["a", "b", "c"], "label": ["A", "B", "A"]}},
            r"row 1 \(id 'x1'\): duplicate labels \['A', 'B', 'A'\]",
        ),
        ({**GOOD_ARC, "answerKey": "D"}, r"answerKey 'D' is not a label of \['A', 'B', 'C'\]"),
        (
            {**GOOD_ARC, "choices": {"text": ["a", "b", "c"], "label": ["A", "B"]}},
            r"3 choices but 2 labels",
        ),
        ({**GOOD_ARC, "choices": ["a", "b"]}, r"choices must be \{text: \[...\], label"),
        ({**GOOD_ARC, "id": "x0"}, r"id 'x0' already used by row 0"),
    ],
)
def test_a_malformed_row_raises_an_error_naming_it(row, message):
    first = {**GOOD_ARC, "id": "x0"} if "answerKey" in row else GOOD_MMLU
    with pytest.raises(ChoiceFormatError, match=message) as err:
        normalise_rows([first, row], source="set.jsonl")
    assert "set.jsonl row 1" in str(err.value)


def test_malformed_files_name_the_line_and_unlabelled_hellaswag_is_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GOOD_MMLU) + "\n{not json\n")
    with pytest.raises(ChoiceFormatError, match=r"bad.jsonl: line 2 is not valid JSON"):
        read_choice(bad)
    short = tmp_path / "law_dev.csv"
    short.write_text("Q?,a,b,c,d,A\nQ2?,a,B\n")
    with pytest.raises(ChoiceFormatError, match=r"law_dev.csv line 2: expected question"):
        read_choice(short)
    test_split = {"ind": 1, "ctx": "He", "endings": ["a", "b"], "label": ""}
    with pytest.raises(ChoiceFormatError, match="no label"):
        normalise_rows([test_split])
    with pytest.raises(ValueError, match="shape must be 'auto' or one of"):
        normalise_rows([GOOD_MMLU], shape="gpqa")


# ------------------------------------------------------------------------------------ prompts
def test_the_prompts_letter_the_options_and_end_with_answer():
    item = read_choice(DATA / "mmlu.jsonl")[0]
    assert lettered_prompt(item) == "What is 2 + 3?\nA. 4\nB. 5\nC. 6\nD. 23\nAnswer:"
    assert cloze_prompt(item) == "Question: What is 2 + 3?\nAnswer:"
    hs = read_choice(DATA / "hellaswag.jsonl")[0]
    assert cloze_prompt(hs) == "A man pours flour into a bowl. he"
    rows = option_rows([item])
    assert len(rows) == 8
    assert [(r["continuation"], r["reference"]) for r in rows[:5]] == [
        ("letter", " A"),
        ("letter", " B"),
        ("letter", " C"),
        ("letter", " D"),
        ("text", " 4"),
    ]
    assert {r["prompt"] for r in rows[4:]} == {cloze_prompt(item)}
    with pytest.raises(ValueError, match="continuations must be some of"):
        option_rows([item], ["word"])


# ------------------------------------------------------------------------ letter extraction
@pytest.mark.parametrize(
    "completion, letter",
    [
        ("C", "C"),
        ("(c)", "C"),
        ("**C.**", "C"),
        ("Answer: C", "C"),
        ("ANSWER: D", "D"),
        ("answer: c", "C"),
        ("Answer:B", "B"),
        ("The answer is (C).", "C"),
        ("The correct answer is C: Paris", "C"),
        ("the answer is option C", "C"),
        ("The answer would be B", "B"),
        ("\\boxed{C}", "C"),
        ("\\boxed{\\text{B}}", "B"),
        ("C is correct", "C"),
        ("Option C", "C"),
        ("choice (C)", "C"),
        ("C. Paris", "C"),
        ("(C) Paris", "C"),
        ("C) Paris", "C"),
        ("[D]", "D"),
        ("C\n\nBecause Paris is the capital.", "C"),
        ("Paris is the capital, so it is C.", "C"),
        ("It must be D", "D"),
        ("The answer is not A, it is (B)", "B"),
        ("The answer is B. Option A is wrong.", "B"),  # a stated answer outranks a mention
        # None: nothing, or several letters, or no valid letter
        ("", None),
        ("I do not know", None),
        ("A good question.", None),  # the article, not option A
        ("The answer is a tricky one", None),
        ("answer: a sunny day", None),
        ("Answer: Canada", None),
        ("Answer: E", None),  # only A-D with 4 options
        ("e", None),
        ("A or B", None),
        ("(A) or (B)", None),
        ("(A) and (B)", None),
        ("A. Paris\nB. London", None),  # the option list echoed
        ("Answer: A. Actually, the answer is B", None),
    ],
)
def test_the_chosen_letter_is_read_from_many_phrasings(completion, letter):
    assert extract_letter(completion, 4) == letter


def test_the_number_of_options_bounds_the_letters_and_grading_counts_unparseable():
    assert extract_letter("Answer: E", 5) == "E"
    assert extract_letter("B", 1) is None
    with pytest.raises(ValueError, match="n_choices must be in 1..26"):
        extract_letter("A", 27)
    items = read_choice(DATA / "arc.jsonl")
    cases = [case_fields(i) for i in items]  # what a case row carries through generation
    assert {k: v for k, v in cases[2].items() if k != "choice_item"} == {
        "case_id": "choice/Own_2026_3",
        "message": lettered_prompt(items[2]),
        "reference": "C",
        "category": "",
    }
    assert option_rows(cases) == option_rows(items)
    completions = ["Answer: A", "I think (C).", "maybe E or so"]
    graded = [
        grade_generated({**r, "completion": c}) for r, c in zip(cases, completions, strict=True)
    ]
    assert [g["pred_generated_letter"] for g in graded] == [0, 2, None]
    assert [g["generated_letter"] for g in graded] == ["A", "C", None]
    assert [(g["item_id"], g["n_choices"], g["answer_index"]) for g in graded] == [
        ("Own_2026_1", 4, 0),
        ("Own_2026_2", 3, 1),
        ("Own_2026_3", 5, 2),
    ]
    assert grade_generated({**items[1], "completion": "B"})["pred_generated_letter"] == 1
    result = choice_accuracy(graded, "generated_letter")
    assert (result["n"], result["correct"], result["wrong"], result["unparseable"]) == (3, 1, 1, 1)
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["accuracy_parsed"] == pytest.approx(1 / 2)


# --------------------------------------------------------------------------- choice by scores
def scored_rows(item_id, answer, letter_nll, text):
    """Option rows as NLLScorer returns them: ``text`` is [(reference, nll, tokens)]."""
    base = {"item_id": item_id, "subject": "s", "answer_index": answer, "n_choices": len(text)}
    rows = [
        {
            **base,
            "option": k,
            "continuation": "letter",
            "reference": f" {'ABCD'[k]}",
            "nll": nll,
            "num_tokens": 1,
        }
        for k, nll in enumerate(letter_nll)
    ]
    rows += [
        {
            **base,
            "option": k,
            "continuation": "text",
            "reference": ref,
            "nll": nll,
            "num_tokens": tokens,
        }
        for k, (ref, nll, tokens) in enumerate(text)
    ]
    return rows


def test_each_method_takes_the_argmax_of_its_own_normalisation():
    # raw: -6 > -8 > -9 (option 0); per token: -3, -2, -1 (option 2);
    # per character (leading space counted): -6/4, -8/8, -9/3 = -1.5, -1, -3 (option 1)
    text = [(" abc", 6.0, 2), (" abcdefg", 8.0, 4), (" ab", 9.0, 9)]
    (item,) = choose(reversed(scored_rows("q1", 1, [2.0, 0.5, 1.0], text)))
    assert item["logprob_letter"] == [-2.0, -0.5, -1.0]
    assert item["logprob_text"] == [-6.0, -8.0, -9.0]
    assert (item["tokens_text"], item["chars_text"]) == ([2, 4, 9], [4, 8, 3])
    assert (
        item["pred_loglik_letter"],
        item["pred_loglik_text"],
        item["pred_loglik_text_per_token"],
        item["pred_loglik_text_per_char"],
    ) == (1, 0, 2, 1)
    tie = choose(scored_rows("q2", 0, [1.0, 1.0, 3.0], text))[0]
    assert tie["pred_loglik_letter"] == 0  # a tie goes to the first option


def test_a_lost_or_doubled_option_score_raises():
    text = [(" a", 1.0, 1), (" b", 2.0, 1)]
    rows = scored_rows("q1", 0, [1.0, 2.0], text)
    with pytest.raises(
        ValueError, match=r"item 'q1': text scores for options \[0\], expected 0..1"
    ):
        choose(rows[:-1])
    with pytest.raises(ValueError, match=r"option 1 \(letter\) scored twice"):
        choose(rows + rows[1:2])


# ----------------------------------------------------------------------------------- metrics
def test_wilson_interval_matches_hand_computed_values():
    # 3 of 5 at 95%, z = 1.959964, z^2 = 3.841459, by the other form of the bounds:
    # (2np + z^2 -/+ z sqrt(z^2 + 4np(1-p))) / (2(n + z^2))
    #   = (6 + 3.841459 -/+ 5.761581) / 17.682918 = 0.230724, 0.882379
    low, high = wilson_interval(3, 5)
    assert (low, high) == (pytest.approx(0.230724, abs=1e-6), pytest.approx(0.882379, abs=1e-6))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[1] == pytest.approx(0.277533, abs=1e-6)  # z^2 / (10 + z^2)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(6, 5)


def test_accuracy_per_method_and_subject_counts_unparseable_apart():
    rows = [
        {
            "id": "1",
            "subject": "math",
            "answer_index": 0,
            "pred_generated_letter": 0,
            "pred_loglik_letter": 0,
        },
        {
            "id": "2",
            "subject": "math",
            "answer_index": 1,
            "pred_generated_letter": 1,
            "pred_loglik_letter": 2,
        },
        {
            "id": "3",
            "subject": "math",
            "answer_index": 2,
            "pred_generated_letter": None,
            "pred_loglik_letter": 2,
        },
        {
            "id": "4",
            "subject": "bio",
            "answer_index": 3,
            "pred_generated_letter": 2,
            "pred_loglik_letter": 3,
        },
        {
            "id": "5",
            "subject": "bio",
            "answer_index": 0,
            "pred_generated_letter": 0,
            "pred_loglik_letter": 1,
        },
    ]
    gen = choice_accuracy(rows, "generated_letter")
    assert {k: gen[k] for k in ("n", "correct", "wrong", "unparseable")} == {
        "n": 5,
        "correct": 3,
        "wrong": 1,
        "unparseable": 1,
    }
    assert gen["accuracy"] == 0.6 and gen["accuracy_parsed"] == 0.75
    assert (gen["low"], gen["high"]) == wilson_interval(3, 5)
    table = choice_table(rows, ["loglik_letter", "generated_letter"])
    summary = [(t["method"], t["subject"], t["correct"], t["n"]) for t in table]
    assert summary == [
        ("loglik_letter", "bio", 1, 2),
        ("loglik_letter", "math", 2, 3),
        ("loglik_letter", None, 3, 5),
        ("generated_letter", "bio", 1, 2),
        ("generated_letter", "math", 2, 3),
        ("generated_letter", None, 3, 5),
    ]
    assert math.isnan(choice_accuracy([], "loglik_text")["accuracy"])
    with pytest.raises(KeyError, match="has no 'pred_loglik_text'"):
        choice_accuracy(rows, "loglik_text")
    with pytest.raises(ValueError, match="method must be one of"):
        choice_accuracy(rows, "loglik")


# ------------------------------------------------------------------ the tiny model's scores
def direct_logprob(model, tok, prompt: str, continuation: str, keep_prompt: int | None = None):
    """log p(continuation | prompt) by one unpadded forward: prompt and continuation tokenized
    apart, the prompt cut to its last ``keep_prompt`` tokens; also the continuation's length."""
    import torch

    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(continuation, add_special_tokens=False)["input_ids"]
    if keep_prompt is not None:
        p = p[-keep_prompt:]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + c])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(c)), len(c)


def test_option_logprobs_equal_a_direct_transformers_forward(tiny_model_dir):
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from plot_ray.eval.choice import loglik_choices
    from plot_ray.eval.scorers import NLLScorer

    items = all_items()
    scorer = NLLScorer(str(tiny_model_dir), continuation=True)
    results = loglik_choices(scorer, items, batch_size=7)  # batches cut across items
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32").eval()
    assert [r["id"] for r in results] == [i["id"] for i in items]
    for item, result in zip(items, results, strict=True):
        letter = [
            direct_logprob(model, tok, lettered_prompt(item), f" {'ABCDE'[k]}")[0]
            for k in range(len(item["choices"]))
        ]
        text = [direct_logprob(model, tok, cloze_prompt(item), f" {c}") for c in item["choices"]]
        np.testing.assert_allclose(result["logprob_letter"], letter, rtol=1e-5)
        np.testing.assert_allclose(result["logprob_text"], [lp for lp, _ in text], rtol=1e-5)
        assert result["tokens_text"] == [n for _, n in text]
        assert result["chars_text"] == [len(c) + 1 for c in item["choices"]]
        assert result["pred_loglik_letter"] == int(np.argmax(letter))
        assert result["pred_loglik_text_per_token"] == int(np.argmax([lp / n for lp, n in text]))
        assert all(lp < 0 for lp in letter + [lp for lp, _ in text])
    # A row longer than max_length keeps its whole continuation and the prompt's last tokens.
    item = items[0]
    scorer.max_length = 6
    (short,) = loglik_choices(scorer, [item], continuations=["text"])
    for k, c in enumerate(item["choices"]):
        n = len(tok(f" {c}", add_special_tokens=False)["input_ids"])
        lp, _ = direct_logprob(model, tok, cloze_prompt(item), f" {c}", keep_prompt=max(1, 6 - n))
        assert short["logprob_text"][k] == pytest.approx(lp, rel=1e-5)
    assert short["logprob_text"] != results[0]["logprob_text"]
    assert "pred_loglik_letter" not in short
    with pytest.raises(ValueError, match="continuation=True"):
        loglik_choices(NLLScorer.__new__(NLLScorer), [item])


def test_a_shard_is_written_when_all_its_option_rows_are_back():
    from plot_ray.eval.pipeline import Progress, Stage, stream

    items = read_choice(DATA / "arc.jsonl")  # 4 + 3 + 5 options
    written: dict = {}
    fake_scores = Stage(
        prepare=lambda rows: option_rows(rows, ["letter"]),
        finish=lambda row: {
            **row,
            "nll": float(row["option"] != row["answer_index"]),
            "num_tokens": 1,
        },
    )
    pending = {("choice", 0): items[:2], ("choice", 1): items[2:]}
    stream(pending, fake_scores, lambda key, rows: written.__setitem__(key, rows), Progress(False))
    assert [len(written[k]) for k in sorted(written)] == [7, 5]
    chosen = choose(written[("choice", 0)] + written[("choice", 1)])
    assert [r["pred_loglik_letter"] for r in chosen] == [0, 1, 2]


@pytest.mark.slow
def test_choices_scored_through_a_ray_data_actor_pool_match_in_process(ray_local, tiny_model_dir):
    import numpy as np

    from plot_ray.config import load_config
    from plot_ray.eval.choice import loglik_choices, loglik_stage
    from plot_ray.eval.engines import EngineSettings
    from plot_ray.eval.pipeline import Progress, shards, stream
    from plot_ray.eval.scorers import NLLScorer

    items = all_items()
    settings = EngineSettings.resolve(load_config().eval, model=str(tiny_model_dir), cpus=2)
    written: dict = {}
    stage = loglik_stage({"model": str(tiny_model_dir)}, settings, batch_size=16)
    cases = [case_fields(i) for i in items]  # what the runner holds: string-only case rows
    pending = {("choice", k): rows for k, rows in shards(cases, 5).items()}
    stream(
        pending, stage, lambda key, rows: written.__setitem__(key, choose(rows)), Progress(False)
    )
    assert sorted(written) == [("choice", 0), ("choice", 1), ("choice", 2)]
    pooled = [row for key in sorted(written) for row in written[key]]
    local = loglik_choices(NLLScorer(str(tiny_model_dir), continuation=True), items)
    assert [r["id"] for r in pooled] == [i["id"] for i in items]
    for a, b in zip(pooled, local, strict=True):
        np.testing.assert_allclose(a["logprob_letter"], b["logprob_letter"], rtol=1e-5)
        np.testing.assert_allclose(a["logprob_text"], b["logprob_text"], rtol=1e-5)
        assert a["tokens_text"] == b["tokens_text"]
        assert {k: v for k, v in a.items() if k.startswith("pred_")} == {
            k: v for k, v in b.items() if k.startswith("pred_")
        }
    assert choice_table(pooled)[-1]["n"] == len(items)
