"""DEFT's distribution reward, its loss term and its data filter (docs/plot.md, "DEFT").

DEFT (Distribution-guided Efficient Fine-Tuning; Zhu et al., arXiv 2604.01787, by PLOT's
authors) scores a response by how much of the model's predicted probability mass falls on
tokens that preferred responses use more than rejected ones. With ``Q_diff = Q+ - Q-`` the
frequency difference of a sub-preference c (:func:`~plot_ray.losses.preference.
frequency_difference`) and its per-token score

    s_c(v) = Q_diff,c(v) / max_v |Q_diff,c(v)|          (in [-1, 1]; 0 for unseen tokens)

the distribution reward of a response b with positions t (response positions whose label is
not a special token, the same positions PLOT reads) is

    r_b = (1/n_b) sum_t sum_v p_t(v) s_c(v) = < pbar_b , s_c >      (in [-1, 1])

with ``p_t`` the model's softmax at t and ``pbar_b`` its mean over the response. Because it is
linear in ``p_t``, the mean over positions and the expectation commute: the reward reads the
same per-row mean softmax that PLOT's ``sequence`` aggregate reads, so the fused path is one
pass of :mod:`plot_ray.losses.chunked` and its gradient in the logits is
``(1/n_b) p_t * (s_c - <p_t, s_c>)`` per position.

    L_DEFT = - mean over the selected rows of r_b       (training raises the reward)

The filter keeps the rows with the highest scores (:func:`select_top_fraction`), each row's
score computed once by the reference model before training (:mod:`plot_ray.train.deft_filter`).

Two implementations of the reward, compared by the tests: :func:`distribution_reward` (plain
autograd over ``torch.softmax``; the oracle) and :meth:`DeftLoss.fused` (the kernel).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from plot_ray.losses.chunked import position_weights, softmax_stats, softmax_stats_forward
from plot_ray.losses.preference import PreferenceTargets, resolve_subpreference_ids

__all__ = [
    "DeftLoss",
    "distribution_reward",
    "preference_scores",
    "select_top_fraction",
]


def preference_scores(q_diff: Tensor) -> Tensor:
    """Per-token scores ``s_c = Q_diff,c / max|Q_diff,c|``: ``(C, V)`` (or ``(V,)``) in [-1, 1].

    Raises ``ValueError`` for a row with no difference at all (no DEFT signal).
    """
    q = torch.as_tensor(q_diff)
    rows = q if q.dim() == 2 else q[None]
    scale = rows.abs().amax(-1, keepdim=True)
    if bool((scale == 0).any()):
        bad = torch.nonzero(scale.flatten() == 0).flatten().tolist()
        raise ValueError(
            f"Q_diff is zero for sub-preference rows {bad}: preferred and rejected responses "
            "have identical token frequencies, so there is no DEFT reward"
        )
    out = rows / scale
    return out if q.dim() == 2 else out[0]


def distribution_reward(logits: Tensor, mask: Tensor, scores: Tensor) -> Tensor:
    """The reference implementation: ``r_b = (1/n_b) sum_t <softmax(logits_b,t), scores_b>``.

    Args:
        logits: ``(B, T, V)``, position t scoring a response token.
        mask: ``(B, T)`` bool, the positions that count; every row needs one.
        scores: ``(B, V)`` per-row token scores (or ``(V,)`` for all rows).

    Returns ``(B,)`` in float32 (float64 for float64 logits), differentiable in ``logits``.
    """
    weights = position_weights(logits, mask, "DEFT")  # (B, T): 1/n_b on the mask
    acc = weights.dtype
    p = torch.softmax(logits.to(acc), -1)
    scores = scores.to(acc).expand(logits.shape[0], logits.shape[-1])
    expected = torch.einsum("btv,bv->bt", p, scores)  # E_{p_t}[s], per position
    return (expected * weights).sum(1)


def select_top_fraction(scores, keep_fraction: float, row_ids=None, groups=None) -> np.ndarray:
    """Which rows DEFT's filter keeps: the ``ceil(keep_fraction * n)`` highest ``scores``, or
    with ``groups`` (e.g. each row's sub-preference id) that many of each group's ``n`` rows.

    Ties are broken by the smaller ``row_ids`` (default: the position), so the kept set does
    not depend on the order the rows arrive in. Returns a bool mask ``(n,)``. Non-finite scores
    raise ``ValueError``: a row without a score must not be dropped, or kept, silently.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"rows at positions {bad[:5].tolist()} have non-finite DEFT scores")
    n = values.shape[0]
    ids = np.arange(n) if row_ids is None else np.asarray(row_ids, dtype=np.int64).reshape(-1)
    group = np.zeros(n, np.int64) if groups is None else np.asarray(groups).reshape(-1)
    if ids.shape[0] != n or group.shape[0] != n:
        raise ValueError(f"{ids.shape[0]} row ids and {group.shape[0]} groups for {n} scores")
    keep = np.zeros(n, dtype=bool)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        k = math.ceil(keep_fraction * members.size - 1e-9)  # 0.5 of 4 rows is 2, not 3
        order = np.lexsort((ids[members], -values[members]))  # highest score, then smaller id
        keep[members[order[:k]]] = True
    return keep


class DeftLoss(nn.Module):
    """``L_DEFT = -mean_b r_b`` (module docstring) with the per-sub-preference token scores.

    Args:
        scores: ``(C, V)`` token scores from :func:`preference_scores` (row c: ``names[c]``).
        names: the ``C`` sub-preference names (the data's ``subpreference_id`` order).
        chunk_size: positions per softmax chunk of the fused path (None: the device default).
    """

    def __init__(self, scores: Tensor, names: list[str], chunk_size: int | None = None):
        super().__init__()
        if scores.dim() != 2 or scores.shape[0] != len(names):
            raise ValueError(
                f"scores must be (C, V) with C = {len(names)} names, got {tuple(scores.shape)}"
            )
        self.register_buffer("scores", scores.detach().float(), persistent=False)
        self.names = list(names)
        self.chunk_size = None if chunk_size is None else int(chunk_size)

    @classmethod
    def from_targets(cls, targets: PreferenceTargets, chunk_size: int | None = None) -> DeftLoss:
        """From the data artifact's counts, as PLOT's targets are built (``targets.q_diff``)."""
        return cls(preference_scores(targets.q_diff.double()), targets.names, chunk_size)

    @property
    def vocab_size(self) -> int:
        return self.scores.shape[1]

    def extra_repr(self) -> str:
        return f"subpreferences={self.names}, vocab_size={self.vocab_size}"

    def resolve_ids(self, subpreference_ids: Tensor | None, rows: int, device) -> Tensor:
        """Validated ``(rows,)`` long sub-preference ids on ``device`` (None: all 0)."""
        return resolve_subpreference_ids(subpreference_ids, rows, self.names, device)

    def rewards(self, mean_softmax: Tensor, ids: Tensor) -> Tensor:
        """``r_b = <pbar_b, s_c(b)>`` for ``mean_softmax (S, V)`` and ``ids (S,)``: ``(S,)``."""
        scores = self.scores.to(mean_softmax.device, mean_softmax.dtype).index_select(0, ids)
        return (mean_softmax * scores).sum(-1)

    def fused(
        self,
        logits: Tensor,
        labels: Tensor | None,
        rows: Tensor,
        mask: Tensor,
        ids: Tensor,
        return_mean_softmax: bool = False,
    ) -> tuple[Tensor, ...]:
        """Token log-probs of all rows (empty when ``labels`` is None) and the rewards ``(S,)``
        of ``rows`` in one chunked pass (labels and rows in the logits frame, as in
        :mod:`plot_ray.losses.chunked`); with ``return_mean_softmax`` also the rows' mean
        softmax ``(S, V)`` (differentiable), which PLOT's ``sequence`` aggregate reads too."""
        logps, pbar = softmax_stats(
            logits, labels, rows, mask, "sequence", chunk_size=self.chunk_size
        )
        rewards = self.rewards(pbar, ids)
        return (logps, rewards, pbar) if return_mean_softmax else (logps, rewards)

    @torch.no_grad()
    def score(self, logits: Tensor, rows: Tensor, mask: Tensor, ids: Tensor) -> Tensor:
        """The rewards ``(S,)`` without a graph (the filter's scoring pass)."""
        _, _, pbar = softmax_stats_forward(
            logits.detach(), None, rows, mask, "sequence", chunk_size=self.chunk_size
        )
        return self.rewards(pbar, ids)

    def per_sequence(
        self, logits: Tensor, mask: Tensor, subpreference_ids: Tensor | None = None
    ) -> Tensor:
        """The rewards ``(B,)`` by the reference implementation (:func:`distribution_reward`)."""
        if logits.shape[-1] != self.vocab_size:
            raise ValueError(f"logits have V={logits.shape[-1]}, scores V={self.vocab_size}")
        ids = self.resolve_ids(subpreference_ids, logits.shape[0], logits.device)
        return distribution_reward(logits, mask, self.scores.to(logits.device).index_select(0, ids))

    def forward(
        self, logits: Tensor, mask: Tensor, subpreference_ids: Tensor | None = None
    ) -> Tensor:
        """``L_DEFT`` (a scalar) by the reference implementation."""
        return -self.per_sequence(logits, mask, subpreference_ids).mean()
