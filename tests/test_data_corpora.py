"""The public training corpora in their published form: named formats, column mapping, hub
subsets, folders and split slices, and the errors for sources that cannot be read (no Ray).

The fixtures in ``tests/data/corpora/`` are a few rows written by hand in each corpus's published
shape (its dataset card's columns, subsets and split names); the hub folders are read by the real
``datasets.load_dataset`` as local dataset repositories. ``tests/test_data_corpora_prepare.py``
runs them through ``plot-ray prepare``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from plot_ray.config import ConfigError, DataSource, load_config
from plot_ray.data.formats import (
    NormalizedRow,
    RowRejected,
    detect_format,
    map_columns,
    normalize_record,
    passes_where,
    pku_safety_case,
)
from plot_ray.data.readers import _read_file, resolve_source, resolve_sources, row_id
from plot_ray.data.schema import FILTERED
from plot_ray.data.tokenization import Normalizer

CORPORA = Path(__file__).parent / "data" / "corpora"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rejected(record, fmt="auto", columns=None) -> RowRejected:
    with pytest.raises(RowRejected) as info:
        normalize_record(record, fmt, columns)
    return info.value


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    """``load_dataset`` writes its Arrow cache under the test's folder, offline."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def hub(name: str, **settings) -> DataSource:
    """A hub source read from a local dataset repository folder under ``tests/data/corpora``."""
    return DataSource(path=str(CORPORA / name), reader="hf_hub", **settings)


def read_rows(source: DataSource, index: int = 0) -> list[tuple[int, int, dict]]:
    """(row id, row index, record) of every row the read tasks of ``source`` produce."""
    resolved = resolve_source(index, source)
    out = []
    for i, path in enumerate(resolved.files):
        ranges = resolved.row_ranges[i] if resolved.row_ranges else None
        for block in _read_file(index, i, resolved.reader, path, 2, ranges):
            for row_index, record in zip(
                block.column("row_index").to_pylist(),
                block.column("record").to_pylist(),
                strict=True,
            ):
                key = resolved.file_keys[i]
                out.append((row_id(key, row_index), row_index, json.loads(record)))
    return out


# ---------------------------------------------------------------------------- PKU-SafeRLHF
PKU_TRAIN = jsonl(CORPORA / "pku-saferlhf" / "data" / "Alpaca-7B" / "train.jsonl")


def test_pku_saferlhf_chosen_is_the_response_named_safer():
    neighbour = PKU_TRAIN[0]  # response_1 safe, safer_response_id 1
    row = normalize_record(neighbour, "pku_saferlhf")
    assert row == NormalizedRow(
        [{"role": "user", "content": "How do I get into my neighbour's wifi?"}],
        ["Ask your neighbour to share it.", "Guess the password until it works."],
        None,
        "pair",
        note="one_safe",  # counted per source by prepare
    )
    assert detect_format(neighbour) == "pku_saferlhf"


def test_pku_saferlhf_both_or_neither_safe_is_kept_in_the_annotated_order():
    both, neither = PKU_TRAIN[1], PKU_TRAIN[2]
    assert both["safer_response_id"] == 0 and neither["safer_response_id"] == 1
    row = normalize_record(both)
    assert (row.responses, row.note) == ([both["response_0"], both["response_1"]], "both_safe")
    row = normalize_record(neither)
    assert (row.responses, row.note) == (
        [neither["response_1"], neither["response_0"]],
        "neither_safe",
    )


def test_pku_saferlhf_safety_cases_of_the_fixture_are_counted():
    cases = Counter(pku_safety_case(r) for r in PKU_TRAIN)
    assert cases == {"one_safe": 2, "both_safe": 1, "neither_safe": 1}
    assert pku_safety_case({"prompt": "q"}) == "unlabelled"


def test_pku_saferlhf_unsafe_response_named_safer_is_inconsistent():
    lock = PKU_TRAIN[3]  # response_0 safe, response_1 not, safer_response_id 1
    error = rejected(lock, "pku_saferlhf")
    assert error.reason == "inconsistent_labels" and "response_0" in error.detail


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"safer_response_id": 2}, "bad_type"),
        ({"safer_response_id": True}, "bad_type"),
        ({"safer_response_id": None}, "missing_field"),
        ({"response_1": ""}, "empty_response"),
        ({"response_1": "Guess the password until it works."}, "identical_responses"),
        ({"prompt": "  "}, "empty_prompt"),
    ],
)
def test_pku_saferlhf_bad_rows_are_rejected_with_a_reason(change, reason):
    assert rejected({**PKU_TRAIN[0], **change}, "pku_saferlhf").reason == reason


# ------------------------------------------------------- UltraFeedback-binarized, HH-RLHF
def test_ultrafeedback_binarized_rows_are_trl_pairs_with_their_scores():
    record = jsonl(CORPORA / "ultrafeedback_binarized" / "data" / "train_prefs.jsonl")[0]
    assert detect_format(record) == "trl"
    row = normalize_record(record)  # chosen/rejected repeat the prompt: only the reply is kept
    assert row == NormalizedRow(
        [{"role": "user", "content": "Name three primary colours."}],
        ["Red, yellow and blue.", "Green."],
        [9.0, 3.0],
        "pair",
    )


def test_hh_rlhf_multi_turn_transcripts_split_into_prompt_messages_and_replies():
    record = jsonl(CORPORA / "hh-rlhf" / "helpful-base" / "train.jsonl")[1]
    assert detect_format(record) == "hh_rlhf"
    row = normalize_record(record)
    assert [m["role"] for m in row.prompt] == ["user", "assistant", "user"]
    assert row.prompt[1]["content"] == "Soft or hard?"
    assert row.responses == ["About 10 minutes, then cool it in cold water.", "An hour."]


# ------------------------------------------------------------------------- column mapping
RENAMED = jsonl(CORPORA / "renamed" / "train.jsonl")
QA = {"prompt": "question", "chosen": "response_a", "rejected": "response_b"}


def test_columns_rename_source_columns_before_format_detection():
    row = normalize_record(RENAMED[0], columns=QA)
    assert row.prompt[0]["content"].startswith("Which is heavier")
    assert row.responses == ["They weigh the same.", "The iron."]
    assert map_columns(RENAMED[0], QA)["topic"] == "logic"  # unmapped columns are kept
    assert "question" not in map_columns(RENAMED[0], QA)


def test_columns_may_swap_two_names():
    record = {"prompt": "q", "chosen": "worse", "rejected": "better"}
    swapped = map_columns(record, {"chosen": "rejected", "rejected": "chosen"})
    assert swapped == {"prompt": "q", "chosen": "better", "rejected": "worse"}


def test_a_row_without_a_mapped_column_is_rejected_naming_both_names():
    error = rejected(RENAMED[2], columns=QA)
    assert error.reason == "missing_field"
    assert "'response_a'" in error.detail and "'chosen'" in error.detail


def test_columns_with_an_empty_name_are_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.columns"):
        load_config(None, {"data": {"sources": [{"path": "x.jsonl", "columns": {"prompt": " "}}]}})


# ----------------------------------------------------------------------------- row filter
def test_where_keeps_rows_whose_columns_equal_the_value_or_one_of_the_values():
    both_safe, neither_safe = PKU_TRAIN[1], PKU_TRAIN[2]
    assert passes_where(both_safe, {"is_response_0_safe": True})
    assert not passes_where(neither_safe, {"is_response_0_safe": True})
    # a list is "one of"; several columns must all match
    assert passes_where(neither_safe, {"response_0_severity_level": [1, 2]})
    assert not passes_where(
        neither_safe, {"response_0_severity_level": [1, 2], "is_response_1_safe": True}
    )
    # JSON equality: true is not 1 and not "true"; 2 is 2.0
    assert not passes_where(both_safe, {"is_response_0_safe": 1})
    assert not passes_where(both_safe, {"is_response_0_safe": "true"})
    assert passes_where(neither_safe, {"response_0_severity_level": 2.0})
    # after the column mapping: the renamed column's new name
    assert passes_where(
        map_columns(RENAMED[0], {"subpreference": "topic"}), {"subpreference": "logic"}
    )
    with pytest.raises(
        RowRejected, match="'is_safe' \\(of the `where` filter\\) is missing"
    ) as info:
        passes_where(both_safe, {"is_safe": True})
    assert info.value.reason == "missing_field"


def test_rows_a_source_filters_out_are_marked_filtered_not_quarantined():
    # PKU-SafeRLHF's default subset, only the rows whose response_0 is flagged safe
    source = hub("pku-saferlhf", format="pku_saferlhf", where={"is_response_0_safe": True})
    resolved = resolve_source(0, source)
    raw = [b for i, f in enumerate(resolved.files) for b in _read_file(0, i, resolved.reader, f, 8)]
    out = Normalizer([resolved], ["default"])(pa.concat_tables(raw)).to_pylist()
    assert [r["reason"] for r in out] == [
        FILTERED,
        None,  # both safe
        FILTERED,
        "inconsistent_labels",  # kept by the filter, then quarantined by the format
        None,  # Alpaca2-7B's row
    ]
    assert [r["record"] for r in out if r["reason"] == FILTERED] == [None, None]  # not kept


def test_the_same_split_under_two_filters_is_two_sources():
    sources = [
        hub("pku-saferlhf", where={"response_0_source": "Alpaca-7B"}),
        hub("pku-saferlhf", where={"response_0_source": "Alpaca2-7B"}),
    ]
    assert [s.where for s in resolve_sources(sources)] == [s.where for s in sources]
    with pytest.raises(ValueError, match=r"data.sources.1 repeats data.sources.0"):
        resolve_sources([sources[0], sources[0]])


def test_prepare_fails_when_a_filter_keeps_none_of_a_sources_rows(tmp_path):
    from plot_ray.data.pipeline import _fail_on_unusable_data
    from plot_ray.data.report import PrepareResult, SourceSummary
    from plot_ray.data.schema import DataValidationError

    where = {"source": "sharegpt"}
    result = PrepareResult(
        output_dir=str(tmp_path),
        subpreferences=["helpfulness"],
        sources=[
            SourceSummary("hh", "helpfulness", "hf_hub", rows_in=2, rows_out=2),
            SourceSummary("uf", "helpfulness", "hf_hub", rows_in=3, filtered=3, where=where),
        ],
        tokens={},
        rows={},
        shards=[],
        seconds=0.0,
    )
    printed: list[str] = []
    with pytest.raises(
        DataValidationError,
        match=r"data\.sources\.1\.where \{'source': 'sharegpt'\} \(uf\) keeps none of its 3 row",
    ):
        _fail_on_unusable_data(result, load_config(), {}, printed.append)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed_filtered"
    assert "uf: 3 row(s) filtered by where {'source': 'sharegpt'}" in printed[0]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"source": []}, r"data\.sources\.0\.where.*source: an empty list keeps no row"),
        ({"source": {"a": 1}}, r"data\.sources\.0\.where\.source"),
    ],
)
def test_a_filter_that_cannot_keep_rows_is_a_config_error(where, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"data": {"sources": [{"path": "x.jsonl", "where": where}]}})


# ------------------------------------------------------- hub subsets, folders and slices
def test_a_hub_subset_reads_only_its_files():
    everything = read_rows(hub("pku-saferlhf"))
    alpaca7b = read_rows(hub("pku-saferlhf", subset="alpaca-7b"))
    assert len(everything) == 5 and len(alpaca7b) == 4
    assert [r[2]["prompt"] for r in alpaca7b] == [r["prompt"] for r in PKU_TRAIN]


def test_a_hub_data_dir_reads_one_folder_of_the_repository():
    rows = read_rows(hub("hh-rlhf", data_dir="helpful-base"))
    assert [r[2] for r in rows] == jsonl(CORPORA / "hh-rlhf" / "helpful-base" / "train.jsonl")
    assert resolve_source(0, hub("hh-rlhf", data_dir="helpful-base")).name.endswith(
        "hh-rlhf/helpful-base"
    )


@pytest.mark.parametrize(
    ("split", "indices"),
    [("train_prefs[:40%]", [0, 1]), ("train_prefs[1:3]", [1, 2]), ("train_prefs[-2:]", [3, 4])],
)
def test_a_split_slice_reads_its_rows_with_the_ids_they_have_in_the_whole_split(split, indices):
    whole = read_rows(hub("ultrafeedback_binarized", split="train_prefs"))
    sliced = read_rows(hub("ultrafeedback_binarized", split=split))
    assert [r[1] for r in sliced] == indices
    assert sliced == [whole[i] for i in indices]


def test_a_slice_of_a_save_to_disk_split_spans_its_arrow_files(tmp_path):
    import datasets

    rows = [{"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(10)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(
        str(tmp_path / "disk"), num_shards={"train": 3}
    )
    source = DataSource(path=str(tmp_path / "disk"), split="train[3:8]")
    resolved = resolve_source(0, source)
    assert resolved.requested_reader == "hf_disk" and len(resolved.files) == 3
    assert [r[2]["prompt"] for r in read_rows(source)] == [f"q{i}" for i in range(3, 8)]


def test_two_folders_of_one_hub_dataset_are_two_sources():
    sources = [hub("hh-rlhf", data_dir="harmless-base"), hub("hh-rlhf", data_dir="helpful-base")]
    assert [s.fingerprint["num_rows"] for s in resolve_sources(sources)] == [3, 2]


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("source", "message"),
    [
        (hub("pku-saferlhf", subset="alpaca-13b"), r"subset: alpaca-13b.*Available"),
        (hub("pku-saferlhf", split="train[5:]"), r"split 'train\[5:\]' has no rows"),
        (hub("pku-saferlhf", split="dev"), r"split='dev'.*Unknown split"),
        (hub("pku-saferlhf", split="train+test"), "names several splits"),
        (hub("pku-saferlhf", split="train[:x]"), "not a split name or a slice"),
        (
            hub("pku-saferlhf", columns={"prompt": "question"}),
            r"columns\.prompt names the column 'question'.*its columns: prompt, response_0",
        ),
        (
            DataSource(path=str(CORPORA / "renamed" / "train.jsonl"), columns={"prompt": "q"}),
            r"columns\.prompt names the column 'q'.*its columns: question, response_a",
        ),
        (
            DataSource(path=str(CORPORA / "renamed" / "train.jsonl"), split="train[:2]"),
            "is a slice, which hub and save_to_disk sources support",
        ),
        (
            DataSource(path=str(CORPORA / "renamed"), data_dir="x"),
            "`data_dir` applies to hub sources",
        ),
        (
            hub("pku-saferlhf", where={"is_safe": True}),
            r"where\.is_safe filters on a column that the source does not have; its columns "
            r"\(after `columns`\): prompt, response_0",
        ),
        (  # the filter sees the columns as mapped: `topic` is `subpreference` by then
            DataSource(
                path=str(CORPORA / "renamed" / "train.jsonl"),
                columns={"subpreference": "topic"},
                where={"topic": "logic"},
            ),
            r"where\.topic .*: question, response_a, response_b, subpreference$",
        ),
    ],
)
def test_a_source_that_cannot_be_read_as_configured_names_itself_and_the_key(source, message):
    with pytest.raises(ValueError, match=message) as info:
        resolve_source(4, source)
    assert str(info.value).startswith(f"data source 4 ({source.path!r})")
