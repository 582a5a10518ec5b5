"""The collate's batch layout, per-block token counting and the artifact container (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from plot_ray.data import (
    TokenCounts,
    collate_preference_batch,
    count_response_tokens,
    select_responses,
)
from plot_ray.data.counts import sparse_to_dense
from plot_ray.data.schema import TOKENIZED_SCHEMA

PAD = 0


def row(prompt, responses, sub=0, scores=None, row_id=7):
    return {
        "row_id": row_id,
        "subpreference_id": sub,
        "prompt_ids": prompt,
        "response_ids": responses,
        "scores": scores,
        "kind": "pair" if len(responses) == 2 else "ranked",
    }


# ------------------------------------------------------------------------------ collate
def test_pairs_become_two_groups_of_b_rows_padded_to_the_longest():
    rows = [
        row([5, 6], [[10, 11, 2], [12, 2]], row_id=1),
        row([7], [[13, 2], [14, 15, 16, 2]], sub=1, row_id=2),
    ]
    batch = collate_preference_batch(rows, pad_id=PAD)
    # rows [0:2] are the chosen responses, rows [2:4] the rejected ones; T = 1 + 4
    assert batch["input_ids"].tolist() == [
        [5, 6, 10, 11, 2],
        [7, 13, 2, PAD, PAD],
        [5, 6, 12, 2, PAD],
        [7, 14, 15, 16, 2],
    ]
    assert batch["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1] * 5,
    ]
    assert batch["labels"].tolist() == [
        [-100, -100, 10, 11, 2],
        [-100, 13, 2, -100, -100],
        [-100, -100, 12, 2, -100],
        [-100, 14, 15, 16, 2],
    ]
    assert batch["subpreference_ids"].tolist() == [0, 1] and batch["row_ids"].tolist() == [1, 2]
    assert "scores" not in batch
    assert all(t.dtype == torch.long for t in batch.values())


def test_column_batches_from_ray_collate_like_row_lists():
    rows = [row([5, 6], [[10, 2], [12, 2]]), row([7], [[13, 2], [14, 2]], sub=1)]
    columns = {k: np.array([r[k] for r in rows], dtype=object) for k in rows[0]}
    columns["prompt_ids"] = np.array([np.array(r["prompt_ids"]) for r in rows], dtype=object)
    columns["response_ids"] = np.array(
        [np.array([np.array(x) for x in r["response_ids"]], dtype=object) for r in rows],
        dtype=object,
    )
    columns["scores"] = np.array([np.nan, np.nan], dtype=np.float32)  # an all-null column
    a = collate_preference_batch(columns, pad_id=PAD)
    b = collate_preference_batch(rows, pad_id=PAD)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ranked_rows_keep_scores_and_can_be_narrowed_to_best_and_worst():
    rows = [row([5], [[1, 2], [3, 2], [4, 2]], scores=[0.9, 0.5, 0.1])]
    full = collate_preference_batch(rows, pad_id=PAD)
    assert full["input_ids"].shape == (3, 3) and full["scores"].tolist() == [
        pytest.approx([0.9, 0.5, 0.1])
    ]
    pair = collate_preference_batch(rows, pad_id=PAD, num_responses=2)
    assert pair["input_ids"][:, 1].tolist() == [1, 4] and pair["scores"].tolist() == [
        pytest.approx([0.9, 0.1])
    ]
    sft = collate_preference_batch(rows, pad_id=PAD, num_responses=1)
    assert sft["input_ids"].tolist() == [[5, 1, 2]]


def test_rows_with_different_response_counts_need_num_responses():
    rows = [row([5], [[1, 2], [3, 2]]), row([5], [[1, 2], [3, 2], [4, 2]])]
    with pytest.raises(ValueError, match="num_responses"):
        collate_preference_batch(rows, pad_id=PAD)
    assert collate_preference_batch(rows, pad_id=PAD, num_responses=2)["input_ids"].shape[0] == 4
    with pytest.raises(ValueError, match="2 responses but 3"):
        collate_preference_batch(rows, pad_id=PAD, num_responses=3)


def test_max_length_cuts_the_end_but_never_the_whole_response():
    rows = [row([5, 6, 7], [[1, 2, 3, 2], [4, 2]])]
    batch = collate_preference_batch(rows, pad_id=PAD, max_length=5)
    assert batch["input_ids"].shape == (2, 5) and batch["labels"][0].tolist() == [
        -100,
        -100,
        -100,
        1,
        2,
    ]
    with pytest.raises(ValueError, match="no response tokens"):
        collate_preference_batch(rows, pad_id=PAD, max_length=3)


@pytest.mark.parametrize(
    "n, r, picks", [(4, 4, [0, 1, 2, 3]), (4, 1, [0]), (4, 2, [0, 3]), (5, 3, [0, 2, 4])]
)
def test_select_responses_spreads_from_best_to_worst(n, r, picks):
    assert select_responses(n, r) == picks


# ------------------------------------------------------------------------------ counting
def tokenized(rows) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=TOKENIZED_SCHEMA)


SPECIAL = [0, 1, 2]  # e.g. bos, eos, pad


def test_block_counts_take_chosen_as_preferred_and_rejected_as_rejected():
    table = tokenized([row([9, 9], [[3, 3, 4, 1], [5, 1]]), row([9], [[4, 1], [3, 6, 1]], sub=1)])
    pos, neg = sparse_to_dense([count_response_tokens(table, 2, 10, SPECIAL)], 2, 10)
    assert pos.tolist() == [[0, 0, 0, 2, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]]
    assert neg.tolist() == [[0, 0, 0, 0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 1, 0, 0, 0]]
    assert pos[:, 9].sum() == 0  # prompt tokens never count


def test_ranked_pairing_best_worst_or_best_rest():
    table = tokenized([row([9], [[3, 1], [4, 1], [5, 1]], scores=[3.0, 2.0, 1.0])])
    pos, neg = sparse_to_dense([count_response_tokens(table, 1, 10, SPECIAL, "best_worst")], 1, 10)
    assert pos[0].nonzero()[0].tolist() == [3] and neg[0].nonzero()[0].tolist() == [5]
    pos, neg = sparse_to_dense([count_response_tokens(table, 1, 10, SPECIAL, "best_rest")], 1, 10)
    assert pos[0].nonzero()[0].tolist() == [3] and neg[0].nonzero()[0].tolist() == [4, 5]


def test_sft_rows_count_as_preferred_only_and_quarantined_rows_not_at_all():
    sft = {**row([9], [[3, 4, 1]]), "kind": "sft"}
    quarantined = {**row([9], [[3, 1], [4, 1]]), "prompt_ids": None, "response_ids": None}
    table = tokenized([sft, quarantined])
    pos, neg = sparse_to_dense([count_response_tokens(table, 1, 10, SPECIAL)], 1, 10)
    assert pos.sum() == 2 and neg.sum() == 0


def test_counting_a_slice_of_a_block_counts_only_that_slice():
    table = tokenized([row([9], [[3, 1], [4, 1]]), row([9], [[5, 1], [6, 1]])])
    pos, neg = sparse_to_dense([count_response_tokens(table.slice(1, 1), 1, 10, SPECIAL)], 1, 10)
    assert pos[0].nonzero()[0].tolist() == [5] and neg[0].nonzero()[0].tolist() == [6]


def test_token_ids_outside_the_vocabulary_are_an_error():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        count_response_tokens(tokenized([row([9], [[30, 1], [4, 1]])]), 1, 10, SPECIAL)


# ------------------------------------------------------------------------------ artifact
def artifact(**meta) -> TokenCounts:
    pos = np.array([[0, 0, 5, 3, 2], [0, 0, 1, 1, 0]])
    neg = np.array([[0, 0, 1, 3, 6], [0, 0, 0, 1, 1]])
    return TokenCounts(pos, neg, ["a", "b"], 5, "sha256:test", metadata=meta)


def test_q_diff_rows_sum_to_zero_and_empty_rows_stay_zero():
    counts = artifact()
    diff = counts.q_diff()
    np.testing.assert_allclose(diff.sum(axis=1), 0.0, atol=1e-15)
    assert diff[0].tolist() == pytest.approx([0, 0, 0.5 - 0.1, 0.0, 0.2 - 0.6])
    empty = TokenCounts(np.zeros((1, 5)), np.zeros((1, 5)), ["x"], 5, "sha256:test")
    assert not empty.q_diff().any()


def test_top_differences_without_a_tokenizer_use_ids():
    top = artifact().top_differences(k=3)
    assert top["a"]["preferred"] == [(2, "2", pytest.approx(0.4))]
    assert top["a"]["rejected"] == [(4, "4", pytest.approx(-0.4))]
    assert top["b"]["preferred"][0][0] == 2


def test_save_and_load_round_trip(tmp_path):
    counts = artifact(rows={"a": {"rows": 3}}, data_config={"max_length": 8})
    path = counts.save(tmp_path)
    assert path.name == "token_counts.safetensors" and (tmp_path / "token_counts.json").is_file()
    back = TokenCounts.load(path)
    np.testing.assert_array_equal(back.pos, counts.pos)
    np.testing.assert_array_equal(back.neg, counts.neg)
    assert back.subpreferences == ["a", "b"] and back.vocab_size == 5
    assert back.tokenizer_fingerprint == "sha256:test" and back.metadata["rows"] == {
        "a": {"rows": 3}
    }


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shape"):
        TokenCounts(np.zeros((2, 4)), np.zeros((2, 5)), ["a", "b"], 5, "sha256:test")


def test_loading_a_missing_artifact_says_to_run_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match="plot-ray prepare"):
        TokenCounts.load(tmp_path)
