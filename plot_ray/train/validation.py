"""Validation during training: the prepared eval split (``data.eval_sources``), scored without
gradient on every worker, reduced to numbers that equal one pass over the whole split.

What is reported (under :data:`EVAL_PREFIX`, over all eval rows and per sub-preference as
``eval/<sub-preference>/<name>``):

====================  ==========================================================================
``loss_total``        mean over rows of the objective ``L_vanilla + alpha * L_PLOT`` evaluated on
                      that row alone (one prompt and its responses)
``loss_vanilla``      the same for ``L_vanilla``
``loss_plot``         the same for ``L_PLOT`` (only when ``loss.alpha > 0``: an alpha = 0 run
                      has no preference targets to measure against)
``reward_accuracy``   fraction of pairs whose chosen reward exceeds the rejected one (methods
                      that define rewards: DPO, IPO, AOT, SimPO, ORPO)
``reward_margin``     mean over pairs of chosen minus rejected reward
``chosen_nll``        token-weighted NLL of the chosen (best) response: the sum of its tokens'
                      negative log-probs over the sum of its tokens, in nats per token; a
                      capability-preservation signal for every method
``chosen_perplexity`` ``exp(chosen_nll)``
``rows``              how many eval rows the numbers cover
====================  ==========================================================================

Why per row: the objective returns batch means, and a batch mean depends on which rows share a
batch, which depends on how Ray shards the split over workers. Scoring each row alone makes
every number a plain mean (or token-weighted mean) over rows, independent of workers and batch
size. For the methods whose loss is a mean over pairs (DPO, IPO, SimPO, ORPO's odds term, PRO)
the row mean equals the batch mean. SFT's training loss is token-weighted over the batch; its
row-wise eval loss is the mean of per-row token means (``chosen_nll`` is the token-weighted
one). AOT sorts a batch's margins; with one pair per call the sort is the identity, so its eval
loss is the per-pair logistic loss on ``beta`` times the margin difference (DPO's form).

Sharding: every worker reads the whole eval split and keeps the rows with
``row_id % world_size == rank`` (row ids are stable hashes, so the choice does not depend on
the order in which Ray Data delivers rows). Every row is scored by exactly one worker; workers
add up sums and counts (never means) and all-reduce them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

# torch is imported inside the functions: the driver imports EVAL_PREFIX from here, and
# `import plot_ray.train` stays free of torch.

__all__ = [
    "EVAL_PREFIX",
    "EVAL_FIELDS",
    "EvalTotals",
    "owned_row_batches",
    "padding_batch",
    "row_metrics",
]

EVAL_PREFIX = "eval/"

# The columns of :class:`EvalTotals`: sums over rows (and, for the NLL, over tokens).
EVAL_FIELDS = (
    "rows",
    "loss_total",
    "loss_vanilla",
    "loss_plot",
    "reward_rows",  # rows whose method defines rewards
    "reward_accuracy",
    "reward_margin",
    "chosen_nll_sum",  # nats, summed over chosen-response tokens
    "chosen_tokens",
)


def owned_row_batches(
    column_batches: Iterable[Mapping[str, Any]], rank: int, world_size: int, batch_size: int
) -> Iterator[dict[str, list]]:
    """This worker's eval rows, regrouped into batches of ``batch_size`` (the last may be smaller).

    ``column_batches``: column-format batches of the whole split (``iter_batches(batch_format=
    "numpy")``), each with a ``row_id`` column. Yields column mappings (``{name: [values]}``)
    of the rows with ``row_id % world_size == rank``; no row is dropped or repeated.
    """
    pending: dict[str, list] = {}
    count = 0
    for batch in column_batches:
        ids = np.asarray(batch["row_id"], dtype=np.int64)
        keep = np.flatnonzero(np.mod(ids, world_size) == rank)  # numpy mod is >= 0
        for i in keep:
            for name, column in batch.items():
                pending.setdefault(name, []).append(column[i])
            count += 1
            if count == batch_size:
                yield pending
                pending, count = {}, 0
    if count:
        yield pending


def row_metrics(
    objective,
    logits: Tensor,
    labels: Tensor,
    num_responses: int,
    ref_logps: Tensor | None = None,
    ref_logits: Tensor | None = None,
    subpreference_ids: Tensor | None = None,
    scores: Tensor | None = None,
) -> list[dict[str, float]]:
    """Each row's eval values, the objective evaluated on that row alone.

    Args: as :meth:`plot_ray.losses.PreferenceObjective.forward` (``logits (R*B, T, V)``,
    ``labels (R*B, T)``, ``ref_logps (R*B,)``, ``ref_logits (R*B, T, V)``,
    ``subpreference_ids (B,)``, ``scores (B, R)``).

    Returns ``B`` dicts with ``loss_total``, ``loss_vanilla``, ``loss_plot``, ``chosen_nll_sum``
    (nats), ``chosen_tokens`` and, for methods with rewards, ``reward_accuracy`` (0 or 1) and
    ``reward_margin``.
    """
    import torch

    with torch.no_grad():
        return _row_metrics(
            objective,
            logits,
            labels,
            num_responses,
            ref_logps,
            ref_logits,
            subpreference_ids,
            scores,
        )


def _row_metrics(
    objective, logits, labels, num_responses, ref_logps, ref_logits, subpreference_ids, scores
):
    import torch

    from plot_ray.losses import sequence_logprobs

    r = int(num_responses)
    b = logits.shape[0] // r
    chosen = sequence_logprobs(logits[:b], labels[:b])  # best response first
    out = []
    for i in range(b):
        rows = torch.arange(r, device=logits.device) * b + i  # the row's R responses
        result = objective(
            logits.index_select(0, rows),
            labels.index_select(0, rows),
            num_responses=r,
            ref_logps=None if ref_logps is None else ref_logps.index_select(0, rows),
            ref_logits=None if ref_logits is None else ref_logits.index_select(0, rows),
            subpreference_ids=None if subpreference_ids is None else subpreference_ids[i : i + 1],
            scores=None if scores is None else scores[i : i + 1],
        )
        values = {
            "loss_total": float(result.loss),
            "loss_vanilla": float(result.vanilla),
            "loss_plot": float(result.plot),
            "chosen_nll_sum": -float(chosen.sums[i]),
            "chosen_tokens": float(chosen.lengths[i]),
        }
        if "rewards/accuracy" in result.metrics:
            values["reward_accuracy"] = float(result.metrics["rewards/accuracy"])
            values["reward_margin"] = float(result.metrics["rewards/margin"])
        out.append(values)
    return out


class EvalTotals:
    """Sums over eval rows, overall (row 0) and per sub-preference (row ``1 + id``).

    ``tensor``: ``(1 + C, len(EVAL_FIELDS))`` float64; all-reduce it with SUM across workers,
    then :meth:`metrics` turns it into the reported numbers.
    """

    def __init__(self, subpreferences: Sequence[str]):
        import torch

        self.subpreferences = list(subpreferences)
        self.tensor = torch.zeros(
            1 + len(self.subpreferences), len(EVAL_FIELDS), dtype=torch.float64
        )
        self._col = {name: j for j, name in enumerate(EVAL_FIELDS)}

    def add(self, subpreference_id: int, values: Mapping[str, float]) -> None:
        """Add one row's values (from :func:`row_metrics`) to the totals and its group's."""
        if not 0 <= subpreference_id < len(self.subpreferences):
            raise ValueError(
                f"subpreference_id {subpreference_id} is not one of the prepared data's "
                f"{len(self.subpreferences)} sub-preferences ({self.subpreferences})"
            )
        import torch

        row = torch.zeros(len(EVAL_FIELDS), dtype=torch.float64)
        row[self._col["rows"]] = 1.0
        for name, value in values.items():
            row[self._col[name]] = value
        if "reward_accuracy" in values:
            row[self._col["reward_rows"]] = 1.0
        self.tensor[0] += row
        self.tensor[1 + subpreference_id] += row

    def metrics(self, with_plot: bool) -> dict[str, float]:
        """The reported numbers, ``eval/<name>`` overall and ``eval/<sub-preference>/<name>``
        for every sub-preference with rows; ``with_plot``: report ``loss_plot``."""
        out: dict[str, float] = {}
        groups = [("", self.tensor[0])] + [
            (f"{name}/", self.tensor[1 + c]) for c, name in enumerate(self.subpreferences)
        ]
        for prefix, sums in groups:
            s = {name: float(sums[j]) for name, j in self._col.items()}
            if s["rows"] == 0:
                continue
            key = f"{EVAL_PREFIX}{prefix}"
            n = s["rows"]
            out[f"{key}rows"] = n
            out[f"{key}loss_total"] = s["loss_total"] / n
            out[f"{key}loss_vanilla"] = s["loss_vanilla"] / n
            if with_plot:
                out[f"{key}loss_plot"] = s["loss_plot"] / n
            if s["reward_rows"] > 0:
                out[f"{key}reward_accuracy"] = s["reward_accuracy"] / s["reward_rows"]
                out[f"{key}reward_margin"] = s["reward_margin"] / s["reward_rows"]
            if s["chosen_tokens"] > 0:
                nll = s["chosen_nll_sum"] / s["chosen_tokens"]
                out[f"{key}chosen_nll"] = nll
                # A diverged model's NLL can pass exp's float range (~709): report inf, not crash.
                out[f"{key}chosen_perplexity"] = math.exp(nll) if nll < 700 else math.inf
        return out


def padding_batch(token_id: int, device) -> dict[str, Tensor]:
    """A one-sequence batch of two ``token_id`` tokens (the second labelled): the forward that a
    worker without eval rows left runs so that ZeRO-3's gathers match its peers'; its outputs
    are discarded."""
    import torch

    from plot_ray.losses.chunked import IGNORE_INDEX

    ids = torch.full((1, 2), int(token_id), dtype=torch.long, device=device)
    labels = ids.clone()
    labels[:, 0] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
