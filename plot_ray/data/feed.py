"""Feeding training: the tokenized shards as a Ray dataset, and the collate that pads per batch.

Ray Train workers read the dataset that the trainer was given (``datasets={"train": ds}``)
through ``ray.train.get_dataset_shard("train").iter_torch_batches(batch_size=B,
collate_fn=PreferenceCollateFn(pad_id, num_responses))``: batches stream from the parquet
shards to the workers, never through the driver.

The batch layout (what the losses expect), for B rows of R responses each:

===================  ========  ==============================================================
``input_ids``        (R*B, T)  prompt ids + response ids, right-padded with ``pad_id``
``attention_mask``   (R*B, T)  1 on real tokens
``labels``           (R*B, T)  the token ids on response positions, -100 on prompt and
                               padding (not shifted: position t scores token t)
``subpreference_ids`` (B,)     index into the artifact's sub-preference list
``row_ids``          (B,)      the rows' stable ids
``scores``           (B, R)    float32, when every row of the batch has scores
===================  ========  ==============================================================

Rows ``[k*B:(k+1)*B]`` hold the k-th response of every row (best first). T is the longest
sequence in the batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from plot_ray.data.readers import READ_CPUS
from plot_ray.data.schema import EVAL_DIR, SUMMARY_FILE, TOKENIZED_DIR

__all__ = [
    "READ_CPUS",
    "PreferenceCollateFn",
    "collate_preference_batch",
    "load_tokenized_dataset",
    "preference_collate_fn",
    "read_parquet_for_training",
    "select_responses",
]


def select_responses(n: int, r: int) -> list[int]:
    """Which of n ranked responses (best first) a method that takes r of them gets.

    r == n: all; r == 1: the best; otherwise r ranks spread evenly from best to worst (r = 2:
    best and worst, the same choice as ``data.ranked_pairing=best_worst``).
    """
    if r > n:
        raise ValueError(f"a row has {n} responses but {r} were asked for")
    if r == n:
        return list(range(n))
    if r == 1:
        return [0]
    return [int(round(i * (n - 1) / (r - 1))) for i in range(r)]


def _rows(batch: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(batch, Mapping):
        columns = {k: list(v) for k, v in batch.items()}
        n = len(next(iter(columns.values()))) if columns else 0
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    return [dict(r) for r in batch]


def _is_score_list(value: Any) -> bool:
    # Null scores arrive as None, or as NaN scalars when Ray converts an all-null column.
    return isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) == 1 and len(value) > 0


def _ids(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).reshape(-1)


def collate_preference_batch(
    rows: Mapping[str, np.ndarray] | Sequence[Mapping[str, Any]],
    pad_id: int,
    num_responses: int | None = None,
    max_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenized rows → padded tensors in the layout above.

    ``rows``: a column batch (``iter_batches(batch_format="numpy")``) or a list of row dicts
    with ``prompt_ids``, ``response_ids``, ``subpreference_id`` and optionally ``row_id`` and
    ``scores``. ``num_responses`` (R) picks responses per :func:`select_responses`; None takes
    them all and needs every row to have the same number. ``max_length`` cuts each sequence's
    end (prepare already enforced ``data.max_length``).
    """
    import torch

    # The losses' label convention; imported here, not at the top, so that importing the data
    # package (as every Ray Data worker of `prepare` does) does not import torch.
    from plot_ray.losses.chunked import IGNORE_INDEX

    items = _rows(rows)
    if not items:
        raise ValueError("cannot collate an empty batch")
    responses = [list(r["response_ids"]) for r in items]
    if num_responses is None:
        counts = {len(r) for r in responses}
        if len(counts) != 1:
            raise ValueError(
                f"rows have different numbers of responses ({sorted(counts)}): pass "
                "num_responses (e.g. 2 for pairwise methods, 1 for SFT)"
            )
        num_responses = counts.pop()
    b, r = len(items), num_responses

    sequences: list[np.ndarray] = []
    prompt_lengths: list[int] = []
    picks = [select_responses(len(resp), r) for resp in responses]
    for k in range(r):
        for row, resp, pick in zip(items, responses, picks, strict=True):
            prompt = _ids(row["prompt_ids"])
            seq = np.concatenate([prompt, _ids(resp[pick[k]])])
            if max_length is not None and len(seq) > max_length:
                if len(prompt) >= max_length:
                    raise ValueError(
                        f"max_length={max_length} leaves no response tokens for row "
                        f"{row.get('row_id')} (its prompt has {len(prompt)} tokens)"
                    )
                seq = seq[:max_length]
            sequences.append(seq)
            prompt_lengths.append(len(prompt))

    t = max(len(s) for s in sequences)
    input_ids = torch.full((r * b, t), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((r * b, t), dtype=torch.long)
    labels = torch.full((r * b, t), IGNORE_INDEX, dtype=torch.long)
    for i, (seq, p) in enumerate(zip(sequences, prompt_lengths, strict=True)):
        ids = torch.from_numpy(seq)
        input_ids[i, : len(seq)] = ids
        attention_mask[i, : len(seq)] = 1
        labels[i, p : len(seq)] = ids[p:]

    out = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "subpreference_ids": torch.tensor(
            [int(row["subpreference_id"]) for row in items], dtype=torch.long
        ),
    }
    if all("row_id" in row for row in items):
        out["row_ids"] = torch.tensor([int(row["row_id"]) for row in items], dtype=torch.long)
    scores = [row.get("scores") for row in items]
    if all(_is_score_list(s) for s in scores):
        out["scores"] = torch.tensor(
            [[float(s[i]) for i in pick] for s, pick in zip(scores, picks, strict=True)],
            dtype=torch.float32,
        )
    return out


class PreferenceCollateFn(NumpyBatchCollateFn):
    """:func:`collate_preference_batch` with its settings bound, as the collate class that
    ``iter_torch_batches(batch_size=B, collate_fn=PreferenceCollateFn(pad_id, 2))`` takes."""

    def __init__(
        self, pad_id: int, num_responses: int | None = None, max_length: int | None = None
    ):
        self.pad_id = pad_id
        self.num_responses = num_responses
        self.max_length = max_length

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return collate_preference_batch(batch, self.pad_id, self.num_responses, self.max_length)


def preference_collate_fn(
    pad_id: int, num_responses: int | None = None, max_length: int | None = None
) -> PreferenceCollateFn:
    """Shorthand for :class:`PreferenceCollateFn`."""
    return PreferenceCollateFn(pad_id, num_responses, max_length)


def load_tokenized_dataset(output_dir: str | Path, split: str = "train", columns=None):
    """The tokenized shards of a finished ``plot-ray prepare`` as a ``ray.data.Dataset``.

    ``split``: ``"train"`` (``data.sources``) or ``"eval"`` (``data.eval_sources``). Raises if
    the folder holds no finished prepare run (missing or failed ``summary.json``).
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    base = Path(output_dir) / (EVAL_DIR if split == "eval" else "")
    summary_path = base / SUMMARY_FILE
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"{base} holds no prepared data (no {SUMMARY_FILE}): run `plot-ray prepare` first"
        )
    summary = json.loads(summary_path.read_text())
    if summary.get("status") != "complete":
        raise ValueError(
            f"the prepare run in {base} did not finish (status {summary.get('status')!r}); "
            "fix the data and run `plot-ray prepare` again"
        )
    files = [str(base / TOKENIZED_DIR / name) for name in summary.get("shards", [])]
    if not files:
        raise ValueError(f"the prepare run in {base} produced no rows to train on")
    return read_parquet_for_training(files, columns=columns)


def read_parquet_for_training(paths, columns=None):
    """``ray.data.read_parquet`` for datasets that stream into Ray Train workers.

    Read tasks ask for :data:`~plot_ray.data.readers.READ_CPUS`: on a small box the training
    workers hold most of the CPUs, and read tasks that wait for a whole one would starve the
    workers' data stream (a silent hang). Ray Data's V2 parquet path adds a file-listing task
    that always asks for a whole CPU, so the V1 path (which honours ``num_cpus`` for every
    task) is used.
    """
    import ray.data

    ctx = ray.data.DataContext.get_current()
    previous, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        return ray.data.read_parquet(paths, columns=columns, num_cpus=READ_CPUS)
    finally:
        ctx.use_datasource_v2 = previous
