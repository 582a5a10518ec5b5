"""The public corpora, configured as users write them (hub name + subset or folder + split or
slice + format or column mapping + row filter), through one real ``prepare`` run (real local
Ray, tiny tokenizer; ~9 s beside the session fixtures). The fixtures are the hand-written rows
of ``tests/data/corpora/``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from plot_ray.config import load_config
from plot_ray.data import run_prepare

pytestmark = pytest.mark.ray

CORPORA = Path(__file__).parent / "data" / "corpora"


def hub(name: str, **settings) -> dict:
    return {"path": str(CORPORA / name), "reader": "hf_hub", **settings}


SOURCES = [
    hub("pku-saferlhf", subset="alpaca-7b", format="pku_saferlhf", subpreference="harmlessness"),
    hub("hh-rlhf", data_dir="harmless-base", format="hh_rlhf", subpreference="harmlessness"),
    hub("hh-rlhf", data_dir="helpful-base", format="hh_rlhf", subpreference="helpfulness"),
    hub(  # only the pairs whose chosen reply scored 9 or 10 (of the slice's 9.0, 10.0, 8.5)
        "ultrafeedback_binarized",
        split="train_prefs[:60%]",
        subpreference="helpfulness",
        where={"score_chosen": [9.0, 10.0]},
    ),
    {  # sub-preference per row, from a renamed column
        "path": str(CORPORA / "renamed" / "train.jsonl"),
        "columns": {
            "prompt": "question",
            "chosen": "response_a",
            "rejected": "response_b",
            "subpreference": "topic",
        },
    },
]
EVAL_SOURCES = [
    hub("hh-rlhf", data_dir="harmless-base", split="test", subpreference="harmlessness"),
    hub("pku-saferlhf", subset="alpaca-7b", split="test", subpreference="harmlessness"),
]


@pytest.fixture(scope="module")
def corpora(ray_local, tiny_model_dir, tmp_path_factory):
    import datasets

    out = tmp_path_factory.mktemp("corpora")
    cfg = load_config(
        None,
        {
            "data": {
                "sources": SOURCES,
                "eval_sources": EVAL_SOURCES,
                "output_dir": str(out),
                "max_length": 64,
                "max_prompt_length": 32,
            },
            "model": {"name_or_path": str(tiny_model_dir)},
        },
    )
    with pytest.MonkeyPatch.context() as mp:  # load_dataset writes its Arrow cache here
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        printed: list[str] = []
        result = run_prepare(cfg, progress=False, print_fn=printed.append)
    return out, result, "\n".join(printed)


def test_each_corpus_yields_its_usable_rows_and_quarantines_the_rest(corpora):
    _, result, printed = corpora
    by_name = {s.name.split("/data/corpora/", 1)[1]: s for s in result.sources}
    assert {name: (s.rows_in, s.rows_out) for name, s in by_name.items()} == {
        "pku-saferlhf:alpaca-7b": (4, 3),  # one row names the unsafe reply the safer one
        "hh-rlhf/harmless-base": (3, 2),  # one pair of identical replies
        "hh-rlhf/helpful-base": (2, 2),
        "ultrafeedback_binarized[train_prefs[:60%]]": (3, 2),  # 60% of 5 rows, one filtered
        "renamed/train.jsonl": (3, 2),  # one row lacks the column mapped to `chosen`
    }
    assert by_name["pku-saferlhf:alpaca-7b"].quarantined == {"inconsistent_labels": 1}
    # the kept PKU-SafeRLHF pairs counted by safety case; other formats note nothing
    assert by_name["pku-saferlhf:alpaca-7b"].notes == {
        "both_safe": 1,
        "neither_safe": 1,
        "one_safe": 1,
    }
    assert not any(s.notes for name, s in by_name.items() if not name.startswith("pku"))
    assert "usable rows by case: both_safe 1, neither_safe 1, one_safe 1" in printed
    assert by_name["renamed/train.jsonl"].quarantined == {"missing_field": 1}
    # the row the filter left out is counted (not quarantined), in the summary and the table
    assert [s.filtered for s in by_name.values()] == [0, 0, 0, 1, 0]
    summary = json.loads(result.summary_path.read_text())
    assert (summary["filtered"], summary["sources"][3]["filtered"]) == (1, 1)
    assert "rows where {'score_chosen': [9.0, 10.0]}) → helpfulness" in printed  # at the start
    assert "1 row(s) filtered by where {'score_chosen': [9.0, 10.0]}" in printed  # in the table
    assert result.quarantine_reasons == {
        "identical_responses": 1,
        "inconsistent_labels": 1,
        "missing_field": 1,
    }


def test_a_renamed_column_tags_rows_with_their_sub_preference(corpora):
    out, result, _ = corpora
    assert result.subpreferences == ["harmlessness", "helpfulness", "logic"]
    rows = pq.read_table(out / "tokenized").to_pylist()
    assert Counter(r["subpreference_id"] for r in rows) == {0: 5, 1: 4, 2: 2}
    assert {r["kind"] for r in rows} == {"pair"}


def test_eval_sources_take_the_same_settings(corpora):
    _, result, _ = corpora
    assert [(s.rows_in, s.rows_out) for s in result.eval.sources] == [(1, 1), (1, 1)]
