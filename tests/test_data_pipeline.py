"""The Ray Data prepare pipeline on the synthetic benchmark, against plain single-process code.

One real local Ray instance (``ray_local``) and the tiny model's real tokenizer. The main
prepare run (three sources, one of them tagged per row, an eval split, truncation, several
shards, two tokenizer actors) is made once per module and inspected by the tests below.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import SYNTH_SCALE

from plot_ray.config import load_config
from plot_ray.data import (
    PreferenceCollateFn,
    TokenCounts,
    collate_preference_batch,
    load_tokenized_dataset,
    run_prepare,
)
from plot_ray.data import pipeline as pipeline_module
from plot_ray.data.schema import QUARANTINE_SCHEMA, TOKENIZED_SCHEMA
from plot_ray.models.loading import TokenizerMismatchError, load_tokenizer
from plot_ray.synth import split_sizes

pytestmark = pytest.mark.ray

MAX_LENGTH = 128
MAX_PROMPT_LENGTH = 40
SUBPREFERENCES = ["harmlessness", "logic"]

CORPORA = ("harmlessness", "logic", "ranked")
# The session benchmark's training rows per corpus (conftest's scale).
TRAIN = {c: n["train"] for c, n in split_sizes(SYNTH_SCALE).items()}


def make_config(model_dir, out, sources, **data):
    return load_config(
        None,
        {
            "data": {"sources": sources, "output_dir": str(out), **data},
            "model": {"name_or_path": str(model_dir)},
        },
    )


def main_sources(synth_dir):
    return [
        {"path": str(synth_dir / "harmlessness" / "train.jsonl"), "subpreference": "harmlessness"},
        {"path": str(synth_dir / "logic"), "subpreference": "logic"},  # a folder: its train file
        {"path": str(synth_dir / "ranked" / "train.jsonl")},  # rows carry their sub-preference
    ]


def prepare_main(synth_dir, tiny_model_dir, out, with_eval=True):
    eval_source = {
        "path": str(synth_dir / "harmlessness" / "validation.jsonl"),
        "subpreference": "harmlessness",
    }
    cfg = make_config(
        tiny_model_dir,
        out,
        main_sources(synth_dir),
        eval_sources=[eval_source] if with_eval else [],
        max_length=MAX_LENGTH,
        max_prompt_length=MAX_PROMPT_LENGTH,
        tokenize_actors=2,
        tokenize_cpus_per_actor=0.5,
        batch_size=64,
    )
    printed: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline_module, "SHARD_ROWS", 200)  # several shards from a small corpus
        result = run_prepare(cfg, progress=False, print_fn=printed.append)
    return result, "\n".join(printed)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="module")
def prepared(ray_local, synth_dir, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    result, printed = prepare_main(synth_dir, tiny_model_dir, out)
    return out, result, printed


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def shards(out: Path):
    files = sorted((out / "tokenized").glob("part-*.parquet"))
    return files, [pq.read_table(f) for f in files]


# ------------------------------------------------------------------------ plain reference
def plain_count(synth_dir, tok):
    """Token counts the obvious way: one row at a time, one process, no Ray, no Arrow."""
    sub_index = {s: i for i, s in enumerate(SUBPREFERENCES)}
    special = set(tok.all_special_ids)
    pos = np.zeros((len(SUBPREFERENCES), len(tok)), np.int64)
    neg = np.zeros_like(pos)
    prompt_tokens, response_tokens = set(), set()
    files = [
        (synth_dir / "harmlessness" / "train.jsonl", "harmlessness"),
        (synth_dir / "logic" / "train.jsonl", "logic"),
        (synth_dir / "ranked" / "train.jsonl", None),
    ]
    for path, tag in files:
        for rec in read_jsonl(path):
            c = sub_index[tag or rec["subpreference"]]
            if "responses" in rec:
                order = sorted(range(len(rec["scores"])), key=lambda i: -rec["scores"][i])
                best, worst = rec["responses"][order[0]], rec["responses"][order[-1]]
            else:
                best, worst = rec["chosen"], rec["rejected"]
            prompt = tok.apply_chat_template(
                [{"role": "user", "content": rec["prompt"]}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
            prompt = list(prompt)[-MAX_PROMPT_LENGTH:]
            prompt_tokens.update(prompt)
            room = MAX_LENGTH - len(prompt)
            for text, target in ((best, pos), (worst, neg)):
                ids = (tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])[:room]
                for t in ids:
                    if t not in special:
                        target[c, t] += 1
                        response_tokens.add(t)
    return pos, neg, prompt_tokens - response_tokens - special


# ------------------------------------------------------------------------------- outputs
def test_prepare_writes_shards_quarantine_summary_and_artifact(prepared, synth_dir):
    out, result, printed = prepared
    for name in (
        "quarantine.parquet",
        "summary.json",
        "token_counts.safetensors",
        "token_counts.json",
    ):
        assert (out / name).is_file(), name
    n_in = sum(
        len(read_jsonl(synth_dir / f / "train.jsonl")) for f in ("harmlessness", "logic", "ranked")
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["rows_in"] == summary["rows_out"] == result.rows_out == n_in
    assert summary["quarantined"] == 0 and summary["subpreferences"] == SUBPREFERENCES
    assert [s["rows_in"] for s in summary["sources"]] == [TRAIN[c] for c in CORPORA]
    quarantine = pq.read_table(out / "quarantine.parquet")
    assert quarantine.num_rows == 0 and quarantine.schema.equals(QUARANTINE_SCHEMA)
    # The summary table and the Q_diff report are printed.
    assert "quarantined: none" in printed and "Q_diff for 'harmlessness'" in printed


def test_shards_have_the_contract_schema_and_every_row_once(prepared):
    out, result, _ = prepared
    files, tables = shards(out)
    assert len(files) > 1 and [f.name for f in files] == result.shards
    for table in tables:
        assert table.schema.equals(TOKENIZED_SCHEMA)
    rows = [r for t in tables for r in t.to_pylist()]
    assert len(rows) == result.rows_out
    assert len({r["row_id"] for r in rows}) == len(rows)
    kinds = Counter(r["kind"] for r in rows)
    assert kinds == {"pair": TRAIN["harmlessness"] + TRAIN["logic"], "ranked": TRAIN["ranked"]}
    for r in rows:
        assert len(r["response_ids"]) == (4 if r["kind"] == "ranked" else 2)
        assert (r["scores"] is not None) == (r["kind"] == "ranked")
        if r["scores"]:
            assert r["scores"] == sorted(r["scores"], reverse=True)


def test_prompts_are_the_chat_template_and_responses_end_in_eos(prepared, synth_dir, tokenizer):
    out, _, _ = prepared
    _, tables = shards(out)
    first = tables[0].to_pylist()  # harmlessness/train.jsonl comes first, in file order
    records = read_jsonl(synth_dir / "harmlessness" / "train.jsonl")
    eos = tokenizer.eos_token_id
    checked = 0
    for row, rec in zip(first, records, strict=True):
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": rec["prompt"]}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        assert row["prompt_ids"] == list(full)[-MAX_PROMPT_LENGTH:]
        chosen, rejected = row["response_ids"]
        room = MAX_LENGTH - len(row["prompt_ids"])
        for ids, text in ((chosen, rec["chosen"]), (rejected, rec["rejected"])):
            expected = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
            assert ids == expected[:room]
            if len(expected) <= room:
                assert ids[-1] == eos and tokenizer.decode(ids[:-1]) == text
                checked += 1
    assert checked > 100


def test_length_policy_truncate_keeps_every_sequence_within_the_limits(prepared, tokenizer):
    out, result, _ = prepared
    _, tables = shards(out)
    generation_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )[-2:]
    cut_responses = 0
    for row in (r for t in tables for r in t.to_pylist()):
        assert len(row["prompt_ids"]) <= MAX_PROMPT_LENGTH
        assert row["prompt_ids"][-2:] == list(generation_prompt)  # left truncation keeps it
        for ids in row["response_ids"]:
            assert len(row["prompt_ids"]) + len(ids) <= MAX_LENGTH
            cut_responses += ids[-1] != tokenizer.eos_token_id
    assert 0 < result.truncated < result.rows_out and cut_responses > 0


def test_rows_of_an_untagged_source_take_their_own_subpreference(prepared, synth_dir):
    out, result, _ = prepared
    _, tables = shards(out)
    ranked = [r for t in tables for r in t.to_pylist() if r["kind"] == "ranked"]
    expected = [
        SUBPREFERENCES.index(r["subpreference"])
        for r in read_jsonl(synth_dir / "ranked" / "train.jsonl")
    ]
    assert [r["subpreference_id"] for r in ranked] == expected
    assert result.rows == {
        "harmlessness": {"rows": TRAIN["harmlessness"] + expected.count(0)},
        "logic": {"rows": TRAIN["logic"] + expected.count(1)},
    }


def test_eval_sources_are_prepared_beside_with_the_same_subpreference_ids(prepared, synth_dir):
    out, result, _ = prepared
    assert result.eval is not None
    n = len(read_jsonl(synth_dir / "harmlessness" / "validation.jsonl"))
    assert result.eval.rows_out == n
    ds = load_tokenized_dataset(out, split="eval")
    assert ds.count() == n
    assert set(
        pq.read_table(out / "eval" / "tokenized").column("subpreference_id").to_pylist()
    ) == {0}


# -------------------------------------------------------------------------------- counts
def test_ray_token_counts_equal_a_plain_single_process_count(prepared, synth_dir, tokenizer):
    out, _, _ = prepared
    counts = TokenCounts.load(out, tokenizer=tokenizer)
    pos, neg, _ = plain_count(synth_dir, tokenizer)
    assert counts.subpreferences == SUBPREFERENCES
    assert counts.pos.shape == (2, len(tokenizer)) and counts.pos.dtype == np.int64
    np.testing.assert_array_equal(counts.pos, pos)
    np.testing.assert_array_equal(counts.neg, neg)


def test_counts_exclude_prompt_special_and_padding_tokens(prepared, synth_dir, tokenizer):
    out, _, _ = prepared
    counts = TokenCounts.load(out)
    special = sorted(
        set(tokenizer.all_special_ids) | {tokenizer.pad_token_id, tokenizer.eos_token_id}
    )
    assert not counts.pos[:, special].any() and not counts.neg[:, special].any()
    _, _, prompt_only = plain_count(synth_dir, tokenizer)
    assert prompt_only, "the corpus should have tokens that occur in prompts only"
    only = sorted(prompt_only)
    assert not counts.pos[:, only].any() and not counts.neg[:, only].any()
    # and every counted token is a response token: totals match the shards, minus eos
    _, tables = shards(out)
    n_pos = sum(
        sum(t not in special for t in r["response_ids"][0]) for tb in tables for r in tb.to_pylist()
    )
    assert counts.pos.sum() == n_pos


def test_two_runs_give_identical_shards_and_counts(prepared, synth_dir, tiny_model_dir, tmp_path):
    out, result, _ = prepared
    again, _ = prepare_main(synth_dir, tiny_model_dir, tmp_path / "again", with_eval=False)
    files_a, tables_a = shards(out)
    files_b, tables_b = shards(tmp_path / "again")
    assert [f.name for f in files_a] == [f.name for f in files_b]
    for a, b in zip(tables_a, tables_b, strict=True):
        assert a.equals(b)
    a, b = TokenCounts.load(out), TokenCounts.load(tmp_path / "again")
    np.testing.assert_array_equal(a.pos, b.pos)
    np.testing.assert_array_equal(a.neg, b.neg)
    assert a.metadata["rows"] == b.metadata["rows"] and again.rows == result.rows


# ------------------------------------------------------------------------------ artifact
def test_artifact_round_trip_keeps_counts_and_metadata(prepared, tokenizer, tmp_path):
    out, result, _ = prepared
    counts = TokenCounts.load(out / "token_counts.json", tokenizer=tokenizer)
    meta = json.loads((out / "token_counts.json").read_text())
    assert meta["vocab_size"] == len(tokenizer) == counts.vocab_size
    assert meta["tokenizer_fingerprint"].startswith("sha256:")
    assert meta["subpreferences"] == SUBPREFERENCES
    assert meta["rows"] == result.rows
    assert meta["tokens"]["harmlessness"]["pos"] == int(counts.pos[0].sum())
    assert meta["data_config"]["max_length"] == MAX_LENGTH
    assert meta["plot_ray_version"]
    first_file = meta["sources"][0]["files"][0]
    assert first_file["size"] > 0 and first_file["mtime_ns"] > 0
    counts.save(tmp_path)
    back = TokenCounts.load(tmp_path, tokenizer=tokenizer)
    np.testing.assert_array_equal(back.pos, counts.pos)
    np.testing.assert_array_equal(back.neg, counts.neg)
    assert back.metadata == counts.metadata and back.subpreferences == counts.subpreferences


def test_loading_the_artifact_with_another_tokenizer_fails_clearly(prepared, synth_dir, tmp_path):
    from plot_ray.models.tiny import build_tokenizer, corpus_texts

    out, _, _ = prepared
    smaller = build_tokenizer(corpus_texts(synth_dir), vocab_size=600)
    with pytest.raises(TokenizerMismatchError, match="vocabulary of 1024 tokens.*has 600"):
        TokenCounts.load(out, tokenizer=smaller)
    # Same size, other vocabulary: the fingerprint tells them apart.
    other = build_tokenizer(reversed(list(corpus_texts(synth_dir))[:200]), vocab_size=1024)
    if len(other) == 1024:
        with pytest.raises(TokenizerMismatchError, match="different tokenizer"):
            TokenCounts.load(out, tokenizer=other)


def test_top_differences_report_both_directions(prepared, tokenizer):
    out, _, _ = prepared
    counts = TokenCounts.load(out)
    top = counts.top_differences(tokenizer, k=5)
    diff = counts.q_diff()
    np.testing.assert_allclose(diff.sum(axis=1), 0.0, atol=1e-12)
    for c, name in enumerate(SUBPREFERENCES):
        preferred, rejected = top[name]["preferred"], top[name]["rejected"]
        assert len(preferred) == len(rejected) == 5
        values = [v for _, _, v in preferred]
        assert values == sorted(values, reverse=True) and values[0] == diff[c].max() > 0
        values = [v for _, _, v in rejected]
        assert values == sorted(values) and values[0] == diff[c].min() < 0
        assert all(text == tokenizer.decode([i]) for i, text, _ in preferred + rejected)
    # The synthetic compliance responses are numbered steps: "Step" is a top rejected token.
    assert any("Step" in text for _, text, _ in top["harmlessness"]["rejected"])
    report = counts.format_top_differences(tokenizer, k=5)
    assert "more in preferred" in report and "more in rejected" in report


def test_preference_targets_come_from_the_loss_package(prepared):
    losses = pytest.importorskip("plot_ray.losses")
    if not hasattr(losses, "PreferenceTargets"):
        pytest.skip("plot_ray.losses.PreferenceTargets is not there yet")
    from plot_ray.config import PlotConfig

    counts = TokenCounts.load(prepared[0])
    targets = counts.preference_targets(PlotConfig(), vocab_size=counts.vocab_size + 64)
    assert isinstance(targets, losses.PreferenceTargets)
    assert targets.names == SUBPREFERENCES and tuple(targets.targets.shape) == (2, 1024 + 64)
    assert float(targets.targets[:, 1024:].abs().sum()) == 0.0  # padded ids are never targets
    np.testing.assert_allclose(targets.q_diff[:, :1024].numpy(), counts.q_diff(), atol=1e-6)


# ----------------------------------------------------------------------- feeding training
def test_streaming_batches_collate_to_the_loss_layout(prepared, tokenizer):
    out, _, _ = prepared
    pad = tokenizer.pad_token_id
    # What a Ray Train worker does with ray.train.get_dataset_shard("train"); ranked rows give
    # their best and worst response to a pairwise method.
    batches = (
        load_tokenized_dataset(out)
        .iterator()
        .iter_torch_batches(batch_size=8, collate_fn=PreferenceCollateFn(pad, num_responses=2))
    )
    batch = next(iter(batches))
    n, t = batch["input_ids"].shape
    assert n == 16 and batch["labels"].shape == batch["attention_mask"].shape == (16, t)
    assert batch["subpreference_ids"].shape == (8,) and batch["row_ids"].shape == (8,)
    _, tables = shards(out)
    by_id = {r["row_id"]: r for t in tables for r in t.to_pylist()}
    first = by_id[int(batch["row_ids"][0])]
    prompt, rejected = list(first["prompt_ids"]), list(first["response_ids"][-1])
    length = len(prompt) + len(rejected)
    # rows [8:16] are the rejected (worst) responses of rows [0:8]
    assert batch["input_ids"][8, :length].tolist() == prompt + rejected
    assert (batch["labels"][8, : len(prompt)] == -100).all()
    assert batch["labels"][8, len(prompt) : length].tolist() == rejected
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == pad).all()
    assert int(batch["attention_mask"].sum(dim=1).max()) == t  # padded to the longest only


def test_ranked_rows_collate_with_scores_and_sft_takes_the_best(prepared, tokenizer):
    out, _, _ = prepared
    _, tables = shards(out)
    ranked = [r for t in tables for r in t.to_pylist() if r["kind"] == "ranked"][:4]
    full = collate_preference_batch(ranked, pad_id=tokenizer.pad_token_id)
    assert full["input_ids"].shape[0] == 16 and full["scores"].shape == (4, 4)
    assert full["scores"][0].tolist() == pytest.approx(ranked[0]["scores"])
    sft = collate_preference_batch(ranked, pad_id=tokenizer.pad_token_id, num_responses=1)
    assert sft["input_ids"].shape[0] == 4 and sft["scores"].shape == (4, 1)
    best = ranked[0]["prompt_ids"] + ranked[0]["response_ids"][0]
    assert sft["input_ids"][0, : len(best)].tolist() == best


def test_load_tokenized_dataset_refuses_a_folder_without_a_finished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="plot-ray prepare"):
        load_tokenized_dataset(tmp_path)


def test_an_actor_pool_that_takes_every_cpu_is_refused(
    ray_local, synth_dir, tiny_model_dir, tmp_path
):
    cfg = make_config(
        tiny_model_dir,
        tmp_path,
        main_sources(synth_dir)[:1],
        tokenize_actors=2,
        tokenize_cpus_per_actor=1.0,
    )
    with pytest.raises(ValueError, match="wait forever"):
        run_prepare(cfg, progress=False, print_fn=None)
