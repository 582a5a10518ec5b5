"""The PLOT loss: a divergence between the model's output distribution and a preference target.

DESIGN.md, "PLOT, as this project defines it", items 2 and 5-6. For each selected response
(row ``b``) with response positions ``t`` and per-position softmax ``p_t``:

    aggregate="sequence":  L_b = D(mean_t p_t, P_b)          (one distance per sequence)
    aggregate="token":     L_b = mean_t D(p_t, P_b)          (one distance per position)
    L_PLOT = mean_b L_b

Targets ``P_b``:
    target="global":    ``P_t`` of the row's sub-preference (:func:`preference_distribution`).
    target="anchored":  ``P_b ∝ pbar_ref,b * exp(Q_diff / max|Q_diff| / tau)``, with
        ``pbar_ref,b`` the reference model's mean softmax over the *same* positions, computed
        without gradient. It is per sequence for both aggregations (the specification defines
        the anchored target from the aggregated reference distribution), so with
        ``aggregate="token"`` every position of a response is compared with its sequence's
        tilted reference aggregate.

Divergences ``D(p, P)``:
    ``wasserstein``: 1-D W1 on the :class:`~plot_ray.losses.ot.TokenGeometry` (the default).
    ``kl``: ``KL(P || p) = sum_v P_v log(P_v / max(p_v, eps))``: the target is the reference
        measure (so tokens the target does not support cost nothing) and the model's ``p`` is
        clamped at ``eps``, by default the smallest normal number of the computation dtype
        (1.2e-38 in float32). The clamp therefore acts only where ``p_v`` has underflowed, and
        the value stays finite (at most ``-log(eps)`` ~ 87 nats per unit of target mass in
        float32). The gradient ``-P / max(p, eps)`` uses the same clamp; it is exact wherever
        ``p_v`` is representable, and a token whose probability underflowed to 0 gets no
        gradient through the softmax (its Jacobian is 0 there).
    ``js``: Jensen-Shannon ``0.5 KL(p || m) + 0.5 KL(P || m)``, ``m = (p + P) / 2``, with
        ``0 log 0 = 0``: the value is finite (<= log 2) without any clamping; the gradient
        ``0.5 log(p / m)`` clamps ``p`` and ``m`` at ``eps`` so that an underflowed ``p_v = 0``
        gives a finite gradient, not ``-inf`` (which times the softmax's ``p_v = 0`` is NaN).
    Neither ever returns inf or NaN for finite logits.

Memory: see :mod:`plot_ray.losses.chunked`; beyond the logits, ``O(B * V)`` (the aggregates,
targets and potentials) plus ``(chunk_size, V)`` temporaries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from plot_ray.losses.chunked import softmax_stats, softmax_stats_forward
from plot_ray.losses.ot import ExactGeometry, TokenGeometry
from plot_ray.losses.preference import PreferenceTargets

if TYPE_CHECKING:  # pragma: no cover
    from plot_ray.config import PlotConfig

__all__ = [
    "KLDivergence",
    "JSDivergence",
    "make_divergence",
    "divergence_value",
    "anchored_target",
    "PlotLoss",
]

Target = Literal["global", "anchored"]
Aggregate = Literal["sequence", "token"]
DivergenceName = Literal["wasserstein", "kl", "js"]


def _eps(eps: float | None, dtype: torch.dtype) -> float:
    return torch.finfo(dtype).tiny if eps is None else eps


class KLDivergence:
    """``KL(q || p)`` (target ``q`` first), ``p`` clamped at ``eps``; see the module docstring.

    ``eps=None``: the smallest normal number of ``p``'s dtype.
    """

    def __init__(self, eps: float | None = None):
        self.eps = eps

    def value(self, p: Tensor, q: Tensor) -> Tensor:
        q = q.expand_as(p)
        return (torch.xlogy(q, q) - q * torch.log(p.clamp_min(_eps(self.eps, p.dtype)))).sum(-1)

    def grad(self, p: Tensor, q: Tensor) -> Tensor:
        return -(q / p.clamp_min(_eps(self.eps, p.dtype)))

    def value_and_grad(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        return self.value(p, q), self.grad(p, q)


class JSDivergence:
    """Jensen-Shannon divergence (natural log); see the module docstring for the clamping."""

    def __init__(self, eps: float | None = None):
        self.eps = eps

    def value(self, p: Tensor, q: Tensor) -> Tensor:
        q = q.expand_as(p)
        m = 0.5 * (p + q)
        terms = torch.xlogy(p, p) - torch.xlogy(p, m) + torch.xlogy(q, q) - torch.xlogy(q, m)
        return 0.5 * terms.sum(-1)

    def grad(self, p: Tensor, q: Tensor) -> Tensor:
        eps = _eps(self.eps, p.dtype)
        m = 0.5 * (p + q)
        return 0.5 * (torch.log(p.clamp_min(eps)) - torch.log(m.clamp_min(eps)))

    def value_and_grad(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        return self.value(p, q), self.grad(p, q)


def make_divergence(
    name: DivergenceName, geometry: TokenGeometry | ExactGeometry | None, eps: float | None = None
):
    """The divergence object the kernel calls (``value`` / ``value_and_grad``)."""
    if name == "wasserstein":
        if geometry is None:
            raise ValueError("divergence='wasserstein' needs a TokenGeometry (or ExactGeometry)")
        return geometry
    if name == "kl":
        return KLDivergence(eps)
    if name == "js":
        return JSDivergence(eps)
    raise ValueError(f"divergence must be 'wasserstein', 'kl' or 'js', got {name!r}")


class _DivergenceFn(torch.autograd.Function):
    """``D(p, q)`` per row with the divergence's own gradient (e.g. the W1 potential)."""

    @staticmethod
    def forward(ctx, p, q, divergence):
        value, grad = divergence.value_and_grad(p.detach(), q.detach())
        ctx.save_for_backward(grad)
        return value

    @staticmethod
    def backward(ctx, grad_value):
        (grad,) = ctx.saved_tensors
        return grad_value[..., None] * grad, None, None


def divergence_value(divergence, p: Tensor, q: Tensor) -> Tensor:
    """Differentiable (in ``p``) ``D(p, q)`` for ``p (n, V)``, ``q (n, V)``: ``(n,)``."""
    return _DivergenceFn.apply(p, q, divergence)


def anchored_target(ref_mean_softmax: Tensor, log_tilt: Tensor) -> Tensor:
    """``P ∝ pbar_ref * exp(log_tilt)``, row-wise, computed in log space (stable for any tau).

    ``ref_mean_softmax`` ``(S, V)``, ``log_tilt`` ``(S, V)`` or ``(V,)``; returns ``(S, V)``.
    """
    logits = torch.log(ref_mean_softmax.clamp_min(0)) + log_tilt.to(ref_mean_softmax.dtype)
    # softmax spelled out: torch.softmax always wakes the intra-op thread pool, which costs
    # milliseconds for these small (S, V) inputs on a busy machine
    out = (logits - logits.amax(-1, keepdim=True)).exp_()
    return out.div_(out.sum(-1, keepdim=True))


class PlotLoss(nn.Module):
    """``L_PLOT``: the divergence between a model's output distribution and its target.

    Args:
        targets: the per-sub-preference targets (global ``P_t`` and anchored tilts).
        geometry: the token geometry (needed by ``divergence="wasserstein"``).
        target: ``global`` | ``anchored`` (the latter needs ``ref_logits``).
        aggregate: ``sequence`` | ``token``.
        divergence: ``wasserstein`` | ``kl`` | ``js``.
        chunk_size: positions per softmax chunk (memory: a few ``chunk_size x V`` float32;
            on CPU at most 32 positions).
        eps: the clamp of ``kl`` / ``js`` (None: the dtype's smallest normal number).
    """

    def __init__(
        self,
        targets: PreferenceTargets,
        geometry: TokenGeometry | ExactGeometry | None = None,
        *,
        target: Target = "global",
        aggregate: Aggregate = "sequence",
        divergence: DivergenceName = "wasserstein",
        chunk_size: int = 1024,
        eps: float | None = None,
    ):
        super().__init__()
        if target not in ("global", "anchored"):
            raise ValueError(f"target must be 'global' or 'anchored', got {target!r}")
        if aggregate not in ("sequence", "token"):
            raise ValueError(f"aggregate must be 'sequence' or 'token', got {aggregate!r}")
        if geometry is not None and geometry.vocab_size != targets.vocab_size:
            raise ValueError(
                f"geometry has V={geometry.vocab_size}, targets V={targets.vocab_size}"
            )
        self.targets = targets
        self.geometry = geometry
        self.target = target
        self.aggregate = aggregate
        self.divergence_name = divergence
        self.divergence = make_divergence(divergence, geometry, eps)
        self.chunk_size = int(chunk_size)

    @classmethod
    def from_config(
        cls,
        plot_cfg: PlotConfig,
        targets: PreferenceTargets,
        geometry: TokenGeometry | ExactGeometry | None,
    ) -> PlotLoss:
        return cls(
            targets,
            geometry,
            target=plot_cfg.target,
            aggregate=plot_cfg.aggregate,
            divergence=plot_cfg.divergence,
            chunk_size=plot_cfg.chunk_size,
        )

    @property
    def needs_reference_logits(self) -> bool:
        return self.target == "anchored"

    def extra_repr(self) -> str:
        cost = getattr(self.geometry, "cost", None)
        return (
            f"target={self.target}, aggregate={self.aggregate}, divergence={self.divergence_name}, "
            f"cost={cost}, subpreferences={self.targets.names}"
        )

    # ------------------------------------------------------------------------- targets
    def resolve_ids(self, subpreference_ids: Tensor | None, rows: int, device) -> Tensor:
        """Validated ``(rows,)`` long sub-preference ids on ``device`` (None: all 0)."""
        if subpreference_ids is None:
            return torch.zeros(rows, dtype=torch.long, device=device)
        ids = torch.as_tensor(subpreference_ids, device=device).long().flatten()
        if ids.shape[0] != rows:
            raise ValueError(f"{ids.shape[0]} subpreference_ids for {rows} rows")
        if rows and (int(ids.min()) < 0 or int(ids.max()) >= len(self.targets)):
            raise ValueError(
                f"subpreference_ids must be in [0, {len(self.targets)}) "
                f"({self.targets.names}), got {ids.tolist()}"
            )
        return ids

    def row_targets(self, ids: Tensor, ref_mean_softmax: Tensor | None = None) -> Tensor:
        """``(S, V)`` targets ``P_b`` for rows with sub-preferences ``ids (S,)``."""
        if self.targets.targets.device != ids.device:  # PLOT's state follows the logits
            self.targets.to(ids.device)
        if self.target == "global":
            return self.targets.targets.index_select(0, ids)
        if ref_mean_softmax is None:
            raise ValueError(
                "target='anchored' needs the reference model's logits on the same positions "
                "(pass ref_logits), or use loss.plot.target=global"
            )
        tilts = self.targets.log_tilts.index_select(0, ids)
        return anchored_target(ref_mean_softmax, tilts)

    def reference_mean_softmax(self, ref_logits: Tensor, mask: Tensor) -> Tensor:
        """The reference's mean softmax per row ``(B, V)`` over ``mask`` (no grad, chunked)."""
        rows = torch.arange(ref_logits.shape[0], device=ref_logits.device)
        with torch.no_grad():
            _, _, pbar = softmax_stats_forward(
                ref_logits.detach(), None, rows, mask, "sequence", chunk_size=self.chunk_size
            )
        return pbar

    # ------------------------------------------------------------------------- the loss
    def fused(
        self,
        logits: Tensor,
        labels: Tensor | None,
        plot_rows: Tensor,
        plot_mask: Tensor,
        row_targets: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Token log-probs of all rows and the per-row PLOT values ``(S,)`` in one pass.

        ``logits (N, T, V)`` and ``labels (N, T)`` in the logits frame (see
        :mod:`plot_ray.losses.chunked`); the objective uses this so that the vanilla loss and
        PLOT share one gradient tensor.
        """
        logps, out = softmax_stats(
            logits,
            labels,
            plot_rows,
            plot_mask,
            self.aggregate,
            self.divergence,
            row_targets if self.aggregate == "token" else None,
            self.chunk_size,
        )
        if self.aggregate == "sequence":
            out = divergence_value(self.divergence, out, row_targets.to(out.dtype))
        return logps, out

    def per_sequence(
        self,
        logits: Tensor,
        mask: Tensor,
        subpreference_ids: Tensor | None = None,
        ref_logits: Tensor | None = None,
    ) -> Tensor:
        """PLOT value per row ``(B,)``; arguments as in :meth:`forward`."""
        if logits.dim() != 3 or mask.shape != logits.shape[:2]:
            raise ValueError(
                f"logits must be (B, T, V) and mask (B, T); got {tuple(logits.shape)} and "
                f"{tuple(mask.shape)}"
            )
        if logits.shape[-1] != self.targets.vocab_size:
            raise ValueError(
                f"logits have V={logits.shape[-1]}, targets V={self.targets.vocab_size}"
            )
        mask = mask.bool()
        b = logits.shape[0]
        ids = self.resolve_ids(subpreference_ids, b, logits.device)
        ref_pbar = None
        if self.target == "anchored":
            if ref_logits is None or ref_logits.shape != logits.shape:
                raise ValueError(
                    "target='anchored' needs ref_logits of the same shape as logits "
                    f"{tuple(logits.shape)}"
                )
            ref_pbar = self.reference_mean_softmax(ref_logits, mask)
        targets = self.row_targets(ids, ref_pbar)
        rows = torch.arange(b, device=logits.device)
        _, values = self.fused(logits, None, rows, mask, targets)
        return values

    def forward(
        self,
        logits: Tensor,
        mask: Tensor,
        subpreference_ids: Tensor | None = None,
        ref_logits: Tensor | None = None,
    ) -> Tensor:
        """Mean PLOT value over rows (a scalar).

        Args:
            logits: ``(B, T, V)``, position ``t`` being one that scores a response token.
            mask: ``(B, T)`` bool, the positions that count; every row needs at least one.
            subpreference_ids: ``(B,)`` long rows of ``targets`` (None: all 0).
            ref_logits: ``(B, T, V)`` reference logits (``anchored`` only).
        """
        return self.per_sequence(logits, mask, subpreference_ids, ref_logits).mean()
