"""Every reader, and bad rows: nothing is lost silently (real local Ray, tiny tokenizer).

One prepare run mixes all readers (jsonl with bad rows, parquet, csv, json, a ``save_to_disk``
folder and a ``datasets.load_dataset`` source) under ``length_policy=drop``; a second one is
strict.
"""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from plot_ray.config import load_config
from plot_ray.data import (
    DataValidationError,
    TokenCounts,
    load_tokenized_dataset,
    read_normalized,
    run_prepare,
)

pytestmark = pytest.mark.ray

LONG = "word " * 120
# (line, expected reason or None for a usable row); line 2 is blank and is no row at all.
BAD_JSONL = [
    ({"prompt": "Hello there", "chosen": "Hi! Nice to meet you.", "rejected": "Go away."}, None),
    ('{"prompt": "x", "chosen": ', "malformed"),
    ("", "blank"),
    ({"prompt": "q", "chosen": "a"}, "missing_field"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, "empty_response"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "identical_responses"),
    ({"text": "warm-up text"}, "unknown_format"),
    ({"prompt": "q", "responses": ["a", "b"], "scores": [1]}, "bad_scores"),
    ({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hey"}, "hh_missing_assistant"),
    (
        {
            "chosen": "\n\nHuman: 2+2?\n\nAssistant: 4.\n\nHuman: 3+3?\n\nAssistant: 6.",
            "rejected": "\n\nHuman: 2+2?\n\nAssistant: 4.\n\nHuman: 3+3?\n\nAssistant: 7.",
        },
        None,
    ),
    (
        {"prompt": [{"role": "tool", "content": "x"}], "chosen": "a", "rejected": "b"},
        "template_error",
    ),
    ({"prompt": "q", "chosen": LONG, "rejected": "short"}, "too_long"),
    ({"prompt": LONG, "chosen": "a", "rejected": "b"}, "prompt_too_long"),
    (b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}', "malformed"),
    ({"prompt": "q", "response": "an answer"}, None),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, None),
    ({"prompt": "q", "responses": ["ok", "best", "bad"], "scores": [0.5, 1.0, 0.0]}, None),
    ([1, 2, 3], "malformed"),
]
PAIRS = [
    {"prompt": f"Question {i}?", "chosen": f"A kind answer {i}.", "rejected": f"Rude {i}."}
    for i in range(4)
]


def write_bad_jsonl(path):
    with open(path, "wb") as fh:
        for item, _ in BAD_JSONL:
            if isinstance(item, bytes):
                fh.write(item + b"\n")
            elif isinstance(item, str):
                fh.write(item.encode() + b"\n")
            else:
                fh.write(json.dumps(item).encode() + b"\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    write_bad_jsonl(root / "bad.jsonl")
    pq.write_table(
        pa.Table.from_pylist(PAIRS[:2] + [{"prompt": "p", "chosen": "x", "rejected": "x"}]),
        root / "pairs.parquet",
    )
    pcsv.write_csv(
        pa.Table.from_pylist(
            PAIRS[:2] + [{"prompt": "p", "chosen": "", "rejected": "y"}] + PAIRS[3:]
        ),
        root / "pairs.csv",
    )
    (root / "ranked.json").write_text(
        json.dumps(
            [
                {"prompt": "r", "responses": ["best", "mid", "worst"]},
                {"prompt": "s", "responses": ["x", "y"]},
            ]
        )
    )
    import datasets

    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(PAIRS[:3]),
            "test": datasets.Dataset.from_list(PAIRS[3:]),
        }
    ).save_to_disk(str(root / "hf_disk"))
    (root / "hub").mkdir()
    (root / "hub" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in PAIRS) + "\n")
    return root


def sources(root):
    return [
        {"path": str(root / "bad.jsonl"), "subpreference": "harmlessness"},
        {"path": str(root / "pairs.parquet"), "subpreference": "helpfulness"},
        {"path": str(root / "pairs.csv"), "subpreference": "helpfulness", "limit": 3},
        {"path": str(root / "ranked.json"), "subpreference": "helpfulness", "format": "ranked"},
        {"path": str(root / "hf_disk"), "subpreference": "helpfulness"},  # split train
        {"path": str(root / "hub"), "reader": "hf_hub", "subpreference": "humanity"},
    ]


@pytest.fixture(scope="module")
def mixed(ray_local, corpus, tiny_model_dir, tmp_path_factory):
    import datasets

    out = tmp_path_factory.mktemp("mixed")
    cfg = load_config(
        None,
        {
            "data": {
                "sources": sources(corpus),
                "output_dir": str(out),
                "max_length": 64,
                "max_prompt_length": 32,
                "length_policy": "drop",
            },
            "model": {"name_or_path": str(tiny_model_dir)},
        },
    )
    printed: list[str] = []
    with pytest.MonkeyPatch.context() as mp:  # load_dataset writes its Arrow cache here
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
        result = run_prepare(cfg, progress=False, print_fn=printed.append)
    return out, result, "\n".join(printed), cfg


def expected_reasons() -> Counter:
    return Counter(r for _, r in BAD_JSONL if r not in (None, "blank"))


def test_bad_rows_land_in_quarantine_with_their_reason_and_line(mixed, corpus):
    out, result, _, _ = mixed
    quarantine = pq.read_table(out / "quarantine.parquet").to_pylist()
    from_jsonl = [q for q in quarantine if q["file"].endswith("bad.jsonl")]
    assert Counter(q["reason"] for q in from_jsonl) == expected_reasons()
    for q in from_jsonl:
        assert BAD_JSONL[q["row_index"]][1] == q["reason"], q
        assert q["source"] == str(corpus / "bad.jsonl") and q["subpreference"] == "harmlessness"
        assert q["detail"] and q["record"]
    malformed = next(q for q in from_jsonl if q["row_index"] == 1)
    assert malformed["record"] == BAD_JSONL[1][0]  # the raw line, to inspect and fix


def test_quarantine_counts_per_reason_and_source_add_up(mixed):
    out, result, printed, _ = mixed
    expected = expected_reasons() + Counter(
        {"identical_responses": 1, "empty_response": 1}  # parquet row 2, csv row 2
    )
    assert result.quarantine_reasons == dict(sorted(expected.items()))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quarantine_reasons"] == result.quarantine_reasons
    by_name = {s["name"].rsplit("/", 1)[-1]: s for s in summary["sources"]}
    jsonl = by_name["bad.jsonl"]
    assert jsonl["rows_in"] == len(BAD_JSONL) - 1  # the blank line is no row
    assert jsonl["rows_out"] == sum(r is None for _, r in BAD_JSONL)
    assert jsonl["kinds"] == {"pair": 2, "ranked": 1, "sft": 2}
    for s in summary["sources"]:
        assert s["rows_in"] == s["rows_out"] + sum(s["quarantined"].values())
    # The printed summary names each reason with its count.
    assert "quarantined by reason" in printed
    for reason, n in expected.items():
        assert any(line.split()[:2] == [reason, str(n)] for line in printed.splitlines())


def test_every_reader_feeds_the_same_schema(mixed):
    out, result, _, _ = mixed
    by_name = {s.name.rsplit("/", 1)[-1]: s for s in result.sources}
    assert by_name["pairs.parquet"].rows_out == 2 and by_name["pairs.parquet"].reader == "parquet"
    assert by_name["pairs.csv"].rows_in == 3 and by_name["pairs.csv"].rows_out == 2  # limit=3
    assert by_name["ranked.json"].kinds == {"ranked": 2}
    assert by_name["hf_disk"].reader == "hf_disk" and by_name["hf_disk"].rows_out == 3
    assert by_name["hub"].reader == "hf_hub" and by_name["hub"].rows_out == 4
    assert result.subpreferences == ["harmlessness", "helpfulness", "humanity"]
    rows = pq.read_table(out / "tokenized").to_pylist()
    assert len(rows) == result.rows_out == sum(s.rows_out for s in result.sources)
    assert Counter(r["subpreference_id"] for r in rows) == {0: 5, 1: 9, 2: 4}
    counts = TokenCounts.load(out)
    assert counts.pos.sum() > 0 and counts.neg[2].sum() > 0


def test_length_policy_drop_leaves_only_rows_that_fit(mixed, tiny_model_dir):
    from plot_ray.models.loading import load_tokenizer

    eos = load_tokenizer(str(tiny_model_dir)).eos_token_id
    out, _, _, cfg = mixed
    for row in pq.read_table(out / "tokenized").to_pylist():
        assert len(row["prompt_ids"]) <= cfg.data.max_prompt_length
        for ids in row["response_ids"]:
            assert len(row["prompt_ids"]) + len(ids) <= cfg.data.max_length
            assert ids[-1] == eos  # nothing was cut: every response still ends in eos


def test_read_normalized_gives_the_documented_schema(mixed, corpus):
    _, _, _, cfg = mixed
    data = cfg.data.model_copy(update={"sources": cfg.data.sources[:1]})
    rows = read_normalized(data).take_all()
    assert [r["row_index"] for r in rows] == [
        i for i, (_, r) in enumerate(BAD_JSONL) if r != "blank"
    ]
    good = [r for r in rows if r["reason"] is None]
    # template and length checks come with tokenization: lines 10-12 are still usable here
    assert [r["kind"] for r in good] == ["pair"] * 5 + ["sft", "sft", "ranked"]
    first = good[0]
    assert first["source"] == str(corpus / "bad.jsonl") and first["subpreference"] == "harmlessness"
    assert list(first["prompt"]) == [{"role": "user", "content": "Hello there"}]
    assert list(first["responses"]) == ["Hi! Nice to meet you.", "Go away."]
    assert first["scores"] is None and isinstance(first["row_id"], int)
    ranked = good[-1]
    assert list(ranked["responses"]) == ["best", "ok", "bad"] and list(ranked["scores"]) == [
        1.0,
        0.5,
        0.0,
    ]


def test_strict_mode_turns_any_quarantined_row_into_an_error(
    ray_local, corpus, tiny_model_dir, tmp_path
):
    cfg = load_config(
        None,
        {
            "data": {
                "sources": sources(corpus)[:1],
                "output_dir": str(tmp_path),
                "strict": True,
                "max_length": 64,
                "max_prompt_length": 32,
                "length_policy": "drop",
            },
            "model": {"name_or_path": str(tiny_model_dir)},
        },
    )
    with pytest.raises(
        DataValidationError, match=r"data.strict is set and 12 row\(s\).*malformed: 3"
    ):
        run_prepare(cfg, progress=False, print_fn=None)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed_strict" and summary["quarantined"] == 12
    assert pq.read_table(tmp_path / "quarantine.parquet").num_rows == 12
    assert not (tmp_path / "token_counts.safetensors").exists()
    with pytest.raises(ValueError, match="did not finish"):
        load_tokenized_dataset(tmp_path)


def test_a_missing_source_is_a_clear_error(ray_local, tiny_model_dir, tmp_path):
    cfg = load_config(
        None,
        {
            "data": {
                "sources": [{"path": str(tmp_path / "nope.jsonl")}],
                "output_dir": str(tmp_path),
            },
            "model": {"name_or_path": str(tiny_model_dir)},
        },
    )
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        run_prepare(cfg, progress=False, print_fn=None)
