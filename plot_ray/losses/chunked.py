"""Chunked softmax statistics of LM logits: token log-probs and PLOT's aggregates, one gradient.

Both the vanilla methods and PLOT read the same ``(N, T, V)`` logits: the methods need the
log-prob of each response token, PLOT needs the per-position softmax (aggregated per sequence,
or compared with a target per position). Done naively (``log_softmax`` + ``gather`` + a
``softmax`` for PLOT) autograd keeps several ``(N, T, V)`` tensors and sums two ``(N, T, V)``
gradients. Here one custom autograd function computes everything chunk by chunk over positions,
keeps only the log-normaliser ``(N, T)`` and ``O(S * V)`` PLOT state, recomputes the softmax in
backward, and writes one gradient tensor. For a position ``t`` with softmax ``p_t``:

    d logp(label_t) / d x_t = e_label - p_t
    d F(p_t) / d x_t        = p_t * (f_t - <p_t, f_t>)          (f_t = dF/dp_t, the potential)

so the combined gradient is ``p_t * (A_t - c_t) + g_t e_label`` with ``A_t`` the PLOT potential
(times its weight) and ``c_t = g_t + <p_t, A_t>``.

Positions are given in the *logits* frame: ``labels[n, t]`` is the token that ``logits[n, t]``
scores (-100: none); callers with unshifted labels use :func:`plot_ray.losses.logprobs.shift_labels`.
Accumulation is in float32 (float64 for float64 logits) whatever the logits' dtype.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import Tensor

__all__ = [
    "Divergence",
    "softmax_stats",
    "softmax_stats_forward",
    "default_chunk_size",
    "position_weights",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100
# Positions per block for PLOT's per-position work (the backward's factor, the token-level
# divergence and its potential): temporaries are a few (_BLOCK, V), not (chunk_size, V).
_BLOCK = 32
# Positions per chunk when the caller names none (``chunk_size=None``, the config's default):
# on an accelerator, large chunks keep the device busy; on CPU, (32, V) blocks stay in cache
# across the several passes over them, which makes the whole kernel faster (about 20% for
# V = 32k) than one large chunk. A chunk size that is given is used as given on any device,
# so tests run the accelerators' chunking on CPU.
_ACCELERATOR_CHUNK = 1024
_CPU_CHUNK = 32
Aggregate = Literal["sequence", "token"]


class Divergence(Protocol):
    """What the kernel needs from a divergence ``D(p, q)``: batched values and gradients in
    ``p``, for ``p (n, V)`` and ``q (V,)`` or ``(n, V)``, without an autograd graph."""

    def value(self, p: Tensor, q: Tensor) -> Tensor:  # -> (n,)
        ...

    def grad(self, p: Tensor, q: Tensor) -> Tensor:  # -> (n, V)
        ...

    def value_and_grad(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:  # -> (n,), (n, V)
        ...


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def default_chunk_size(device: torch.device | str) -> int:
    """Positions per chunk when none is given: 32 on CPU, 1024 on an accelerator."""
    return _CPU_CHUNK if torch.device(device).type == "cpu" else _ACCELERATOR_CHUNK


def position_weights(logits: Tensor, mask: Tensor, term: str) -> Tensor:
    """``(B, T)`` weights ``1/n_b`` on each row's masked positions (0 elsewhere), in the
    accumulation dtype, for the plain-autograd reference paths (``term`` names the loss in
    errors). Checks that ``logits`` are ``(B, T, V)``, ``mask`` ``(B, T)`` and no row is empty."""
    if logits.dim() != 3 or mask.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, T, V) and mask (B, T); got {tuple(logits.shape)} and "
            f"{tuple(mask.shape)}"
        )
    mask = mask.bool()
    empty = torch.nonzero(~mask.any(1)).flatten().tolist()
    if empty:
        raise ValueError(f"rows {empty} have no positions in the {term} mask")
    acc = _acc_dtype(logits.dtype)
    return mask.to(acc) / mask.sum(1, keepdim=True)


def _spans(active: Tensor) -> list[tuple[int, int]]:
    """Per row, ``[lo, hi)`` covering its active positions (``(0, 0)`` when none)."""
    if active.numel() == 0:
        return [(0, 0)] * active.shape[0]
    t = active.shape[1]
    any_ = active.any(1)
    lo = torch.where(any_, active.int().argmax(1), 0)
    hi = torch.where(any_, t - active.flip(1).int().argmax(1), 0)
    return list(zip(lo.tolist(), hi.tolist(), strict=True))


class _Plan:
    """Which positions of which rows the kernel visits (shared by forward and backward)."""

    def __init__(self, logits, labels, plot_rows, plot_mask, chunk_size):
        n, t, _ = logits.shape
        if chunk_size is None:
            self.chunk = default_chunk_size(logits.device)
        elif int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive number of positions, got {chunk_size}")
        else:
            self.chunk = int(chunk_size)
        active = torch.zeros(n, t, dtype=torch.bool, device=logits.device)
        if labels is not None:
            active |= labels != IGNORE_INDEX
        self.plot_index: dict[int, int] = {}
        self.plot_counts: list[int] = []
        if plot_rows is not None and plot_rows.numel():
            rows = plot_rows.tolist()
            if len(set(rows)) != len(rows):
                raise ValueError("plot_rows must be distinct")
            active[plot_rows] |= plot_mask
            self.plot_index = {r: s for s, r in enumerate(rows)}
            self.plot_counts = plot_mask.sum(1).tolist()
            empty = [rows[s] for s, c in enumerate(self.plot_counts) if c == 0]
            if empty:
                raise ValueError(f"rows {empty} have no positions in the PLOT mask")
        self.spans = _spans(active)
        # Rows whose PLOT mask covers their whole span (the usual case: PLOT and the log-probs
        # read the same response positions) have one weight 1/n for every position.
        self.plot_full = [
            bool(plot_mask[s, self.spans[r][0] : self.spans[r][1]].all())
            for r, s in self.plot_index.items()
        ]

    def chunks(self, row: int):
        lo, hi = self.spans[row]
        for a in range(lo, hi, self.chunk):
            yield a, min(a + self.chunk, hi)


def _blocks(size: int):
    for i in range(0, size, _BLOCK):
        yield i, min(i + _BLOCK, size)


def softmax_stats_forward(
    logits: Tensor,
    labels: Tensor | None = None,
    plot_rows: Tensor | None = None,
    plot_mask: Tensor | None = None,
    aggregate: Aggregate = "sequence",
    divergence: Divergence | None = None,
    targets: Tensor | None = None,
    chunk_size: int | None = None,
    _plan: _Plan | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward pass without autograd (also the reference model's statistics, no_grad).

    Args:
        logits: ``(N, T, V)`` any float dtype.
        labels: ``(N, T)`` long in the logits frame, -100 where no token is scored; None: no
            log-probs.
        plot_rows: ``(S,)`` distinct row indices that enter PLOT (None: none).
        plot_mask: ``(S, T)`` bool, the positions of those rows that enter PLOT.
        aggregate: ``sequence``: return each PLOT row's mean softmax ``(S, V)``; ``token``:
            return each row's mean over positions of ``divergence(p_t, targets[s])``, ``(S,)``.
        targets: ``(S, V)`` per-row targets (``token`` only).
        chunk_size: positions per chunk on any device; None: :func:`default_chunk_size`.
            Results depend on it only through the order of PLOT's sums over positions.

    Returns:
        ``token_logps (N, T)`` (0 where unlabelled; empty if ``labels`` is None), the
        log-normaliser ``lse (N, T)`` and the PLOT output (empty if no rows).
    """
    n, t, v = logits.shape
    acc = _acc_dtype(logits.dtype)
    device = logits.device
    plan = _plan or _Plan(logits, labels, plot_rows, plot_mask, chunk_size)
    if plan.plot_index and aggregate == "token" and (divergence is None or targets is None):
        raise ValueError("aggregate='token' needs a divergence and per-row targets")
    lse = torch.zeros(n, t, dtype=acc, device=device)
    logps = torch.zeros(n, t, dtype=acc, device=device) if labels is not None else lse.new_zeros(0)
    s_rows = len(plan.plot_index)
    plot_out = torch.zeros(
        (s_rows, v) if aggregate == "sequence" else (s_rows,), dtype=acc, device=device
    )
    for row in range(n):
        s = plan.plot_index.get(row)
        if s is not None:
            weights = plot_mask[s].to(acc) / plan.plot_counts[s]
            q = targets[s].to(acc) if aggregate == "token" else None
        for a, b in plan.chunks(row):
            x = logits[row, a:b].to(acc)
            if s is None:
                lse_c = torch.logsumexp(x, dim=-1)
            else:
                # One exp pass serves both the normaliser and PLOT: p = exp(x - max) / sum.
                top = x.amax(-1).nan_to_num_(0.0, posinf=0.0, neginf=0.0)
                p = torch.sub(x, top[:, None]).exp_()
                total = p.sum(-1)
                lse_c = total.log().add_(top)
                w = weights[a:b]
                if aggregate == "sequence":
                    plot_out[s].addmv_(p.T, w / total)
                else:
                    p.div_(total[:, None])
                    for i, j in _blocks(b - a):
                        plot_out[s] += divergence.value(p[i:j], q) @ w[i:j]
                del p
            lse[row, a:b] = lse_c
            if labels is not None:
                lab = labels[row, a:b]
                picked = x.gather(-1, lab.clamp_min(0)[:, None]).squeeze(-1) - lse_c
                logps[row, a:b] = torch.where(lab != IGNORE_INDEX, picked, 0.0)
    return logps, lse, plot_out


def _softmax_stats_backward(ctx, grad_logps: Tensor | None, grad_plot: Tensor | None) -> Tensor:
    logits, lse, labels, plot_mask, targets = ctx.saved_tensors
    plan: _Plan = ctx.plan
    acc = lse.dtype
    n, t, v = logits.shape
    grad = torch.empty_like(logits)
    direct = grad.dtype == acc  # write the fp32 result straight into the gradient buffer
    use_plot = grad_plot is not None and bool(plan.plot_index)
    factor_buf = torch.empty(0, dtype=acc, device=logits.device)
    if use_plot and ctx.aggregate == "sequence":
        factor_buf = torch.empty(min(_BLOCK, plan.chunk), v, dtype=acc, device=logits.device)
    for row in range(n):
        lo, hi = plan.spans[row]
        if hi == 0:
            grad[row].zero_()
            continue
        grad[row, :lo].zero_()
        grad[row, hi:].zero_()
        g_row = None
        if grad_logps is not None and labels is not None:
            g_row = torch.where(labels[row] != IGNORE_INDEX, grad_logps[row].to(acc), 0.0)
        s = plan.plot_index.get(row) if use_plot else None
        if s is not None:
            weights = plot_mask[s].to(acc) / plan.plot_counts[s]
            if ctx.aggregate == "sequence":
                u = grad_plot[s].to(acc)  # dLoss/d(mean softmax) of this row
                uw = u / plan.plot_counts[s] if plan.plot_full[s] else None
            else:
                weights = weights * grad_plot[s].to(acc)
                q = targets[s].to(acc)
        for a, b in plan.chunks(row):
            out = grad[row, a:b]
            p = out if direct else torch.empty(b - a, v, dtype=acc, device=logits.device)
            torch.sub(logits[row, a:b].to(acc), lse[row, a:b, None], out=p).exp_()
            g = g_row[a:b] if g_row is not None else None
            if s is None:
                if g is None:
                    p.zero_()
                else:
                    p.mul_(-g[:, None])
            elif ctx.aggregate == "sequence":
                # p * (w u - coef), coef = <p, w u> + g; the factor in small reused blocks
                w = weights[a:b]
                coef = (p @ u).mul_(w)
                if g is not None:
                    coef += g
                for i, j in _blocks(b - a):
                    factor = factor_buf[: j - i]
                    if uw is not None:  # one weight for all positions: a single pass
                        torch.sub(uw[None, :], coef[i:j, None], out=factor)
                    else:
                        torch.outer(w[i:j], u, out=factor).sub_(coef[i:j, None])
                    p[i:j].mul_(factor)
            else:
                w = weights[a:b]
                for i, j in _blocks(b - a):
                    block = p[i:j]
                    factor = ctx.divergence.grad(block, q)
                    coef = torch.bmm(block[:, None, :], factor[:, :, None]).view(-1).mul_(w[i:j])
                    if g is not None:
                        coef += g[i:j]
                    block.mul_(factor.mul_(w[i:j, None]).sub_(coef[:, None]))
            if g is not None:
                lab = labels[row, a:b].clamp_min(0)
                p.scatter_add_(1, lab[:, None], g[:, None])
            if not direct:
                out.copy_(p)
    return grad


class _SoftmaxStats(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, logits, labels, plot_rows, plot_mask, targets, divergence, aggregate, chunk_size
    ):
        plan = _Plan(logits, labels, plot_rows, plot_mask, chunk_size)
        logps, lse, plot_out = softmax_stats_forward(
            logits,
            labels,
            plot_rows,
            plot_mask,
            aggregate,
            divergence,
            targets,
            chunk_size,
            _plan=plan,
        )
        ctx.plan, ctx.aggregate, ctx.divergence = plan, aggregate, divergence
        ctx.save_for_backward(logits, lse, labels, plot_mask, targets)
        ctx.set_materialize_grads(False)
        return logps, plot_out

    @staticmethod
    def backward(ctx, grad_logps, grad_plot):
        if grad_logps is None and grad_plot is None:
            return (None,) * 8
        return (_softmax_stats_backward(ctx, grad_logps, grad_plot),) + (None,) * 7


def softmax_stats(
    logits: Tensor,
    labels: Tensor | None = None,
    plot_rows: Tensor | None = None,
    plot_mask: Tensor | None = None,
    aggregate: Aggregate = "sequence",
    divergence: Divergence | None = None,
    targets: Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Differentiable ``(token_logps (N, T), plot_out)``; see :func:`softmax_stats_forward`.

    Extra memory: ``(N, T)`` for the log-normaliser, ``O(S * V)`` for PLOT and a few
    ``(chunk_size, V)`` float32 temporaries (by default ``(1024, V)`` on an accelerator,
    ``(32, V)`` on CPU); the backward pass writes a single gradient tensor of the logits'
    shape and dtype.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (N, T, V), got shape {tuple(logits.shape)}")
    n, t, v = logits.shape
    if labels is not None and labels.shape != (n, t):
        raise ValueError(f"labels {tuple(labels.shape)} must match logits (N, T) = {(n, t)}")
    if plot_rows is not None:
        if plot_mask is None or plot_mask.shape != (plot_rows.shape[0], t):
            raise ValueError("plot_mask must be (S, T) for S plot_rows")
        if plot_mask.dtype != torch.bool:
            raise ValueError(f"plot_mask must be bool, got {plot_mask.dtype}")
    if targets is not None and targets.shape[-1] != v:
        raise ValueError(f"targets end in {targets.shape[-1]} entries, logits in V={v}")
    return _SoftmaxStats.apply(
        logits, labels, plot_rows, plot_mask, targets, divergence, aggregate, chunk_size
    )
