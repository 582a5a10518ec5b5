"""The PLOT loss: a divergence between the model's output distribution and a preference target.

docs/plot.md defines it ("Targets", "Aggregation", "Divergences"). For each selected response
(row ``b``) with PLOT positions ``t`` and per-position softmax ``p_t``:

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

Two implementations of the same numbers, and the tests compare them:

- :meth:`PlotLoss.per_sequence` / :meth:`PlotLoss.forward` is the **reference**: plain
  autograd over ``torch.softmax``, a masked mean and the divergence, line for line the
  formulas above. It holds several ``(B, T, V)`` tensors; tests use it as the oracle.
- :meth:`PlotLoss.fused` is the **fused** path that training runs (through
  :class:`~plot_ray.losses.objective.PreferenceObjective`): one chunked custom autograd pass
  (:mod:`plot_ray.losses.chunked`) that also yields the response log-probs of the vanilla loss
  and writes a single gradient tensor. Beyond the logits it needs ``O(B * V)`` (the
  aggregates, targets and potentials) plus ``(chunk_size, V)`` temporaries.

Which positions enter (the mask) is the caller's choice: the objective uses the response
positions whose label is not a special token (docs/plot.md, "Special tokens").
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from plot_ray.losses.chunked import position_weights, softmax_stats, softmax_stats_forward
from plot_ray.losses.ot import ExactGeometry, TokenGeometry
from plot_ray.losses.preference import PreferenceTargets, resolve_subpreference_ids

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
        chunk_size: positions per softmax chunk (memory: a few ``chunk_size x V`` float32);
            None: the device's default (1024 on an accelerator, 32 on CPU).
        eps: the clamp of ``kl`` / ``js`` (None: the dtype's smallest normal number).
        normalize: ``reference``: divide each row's value by ``D_c``, the divergence between
            sub-preference ``c``'s corpus response-token distribution ``Qbar = (Q+ + Q-) / 2``
            and its target (for ``anchored``, ``Qbar`` tilted), computed once here
            (:attr:`row_scale` ``= 1 / D_c``); anything else: no per-row factor (the
            geometry carries ``unit_variance``).
        zero_tilt: a control for ``anchored``: the target is the reference's own distribution
            (the tilts are zeroed after ``normalize`` has measured them, so the control has
            the preference tilt's scale and no preference information).
    """

    def __init__(
        self,
        targets: PreferenceTargets,
        geometry: TokenGeometry | ExactGeometry | None = None,
        *,
        target: Target = "global",
        aggregate: Aggregate = "sequence",
        divergence: DivergenceName = "wasserstein",
        chunk_size: int | None = None,
        eps: float | None = None,
        normalize: str = "none",
        zero_tilt: bool = False,
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
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.normalize = normalize
        # (C,) float64 factors, one per sub-preference: computed once, O(C * V)
        self.row_scale = (
            self._reference_scale()
            if normalize == "reference"
            else torch.ones(len(targets), dtype=torch.float64)
        )
        self.zero_tilt = bool(zero_tilt)
        if self.zero_tilt:
            if target != "anchored":
                raise ValueError("zero_tilt is a control of target='anchored'")
            self.targets = replace(targets, log_tilts=torch.zeros_like(targets.log_tilts))

    def _reference_scale(self) -> Tensor:
        """``1 / D(Qbar_c, target_c)`` per sub-preference (see ``normalize``)."""
        q_mean = self.targets.q_mean
        if q_mean is None:
            raise ValueError(
                "loss.plot.normalize=reference needs the corpus's token distribution: build the "
                "targets with PreferenceTargets.from_counts (or use loss.plot.normalize=none)"
            )
        q_mean = q_mean.detach().double().cpu()
        if self.target == "global":
            targets = self.targets.targets.detach().double().cpu()
        else:
            targets = anchored_target(q_mean, self.targets.log_tilts.detach().double().cpu())
        values = self.divergence.value(q_mean, targets).double().cpu()
        bad = [n for n, d in zip(self.targets.names, values.tolist(), strict=True) if not d > 0]
        if bad:
            raise ValueError(
                f"loss.plot.normalize=reference: sub-preferences {bad} have a zero distance "
                "between their corpus distribution and their target (no PLOT signal); use "
                "loss.plot.normalize=unit_variance or none"
            )
        return 1.0 / values

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
            normalize=plot_cfg.normalize,
            zero_tilt=plot_cfg.tilt == "zero",
        )

    @property
    def needs_reference_logits(self) -> bool:
        return self.target == "anchored"

    @property
    def scale(self) -> float:
        """The factor between raw divergences and the values PLOT reports (``plot/scale``):
        the geometry's ``unit_variance`` factor times the mean of :attr:`row_scale`; 1 for
        ``normalize=none``."""
        geometry = float(getattr(self.geometry, "scale", 1.0)) if self.geometry is not None else 1.0
        return geometry * float(self.row_scale.mean())

    def normalized(self, values: Tensor, ids: Tensor) -> Tensor:
        """``values (S,)`` times their sub-preference's :attr:`row_scale` (``ids (S,)``)."""
        if self.normalize != "reference":
            return values
        return values * self.row_scale.to(values.device, values.dtype).index_select(0, ids)

    def extra_repr(self) -> str:
        cost = getattr(self.geometry, "cost", None)
        target = f"{self.target} (zero tilt)" if self.zero_tilt else self.target
        return (
            f"target={target}, aggregate={self.aggregate}, divergence={self.divergence_name}, "
            f"cost={cost}, subpreferences={self.targets.names}"
        )

    # ------------------------------------------------------------------------- targets
    def resolve_ids(self, subpreference_ids: Tensor | None, rows: int, device) -> Tensor:
        """Validated ``(rows,)`` long sub-preference ids on ``device`` (None: all 0)."""
        return resolve_subpreference_ids(subpreference_ids, rows, self.targets.names, device)

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
        """Token log-probs of all rows and the per-row raw PLOT values ``(S,)`` in one pass
        (the caller applies :meth:`normalized`).

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
            out = self.sequence_values(out, row_targets)
        return logps, out

    def sequence_values(self, mean_softmax: Tensor, row_targets: Tensor) -> Tensor:
        """Raw ``sequence`` values ``D(pbar_s, P_s)`` ``(S,)`` from the rows' mean softmax
        ``(S, V)`` (differentiable in it), e.g. one that DEFT's pass computed on the same rows."""
        return divergence_value(self.divergence, mean_softmax, row_targets.to(mean_softmax.dtype))

    def per_sequence(
        self,
        logits: Tensor,
        mask: Tensor,
        subpreference_ids: Tensor | None = None,
        ref_logits: Tensor | None = None,
    ) -> Tensor:
        """The reference implementation: PLOT value per row ``(B,)``, plain autograd.

        Arguments as in :meth:`forward`. Computed in float32 (float64 for float64 logits), like
        the fused path. The divergence's value and gradient in ``p`` come from the divergence
        itself: autograd through the closed form for :class:`TokenGeometry`, the divergence's
        own gradient otherwise (the exact LP's dual potential; KL / JS with their clamps).
        """
        weights = position_weights(logits, mask, "PLOT")  # (B, T): 1/n_b on the mask
        if logits.shape[-1] != self.targets.vocab_size:
            raise ValueError(
                f"logits have V={logits.shape[-1]}, targets V={self.targets.vocab_size}"
            )
        mask = mask.bool()
        acc = weights.dtype
        b = logits.shape[0]
        ids = self.resolve_ids(subpreference_ids, b, logits.device)
        ref_pbar = None
        if self.target == "anchored":
            if ref_logits is None or ref_logits.shape != logits.shape:
                raise ValueError(
                    "target='anchored' needs ref_logits of the same shape as logits "
                    f"{tuple(logits.shape)}"
                )
            with torch.no_grad():
                ref_p = torch.softmax(ref_logits.detach().to(acc), -1)
                ref_pbar = torch.einsum("bt,btv->bv", weights, ref_p)
        targets = self.row_targets(ids, ref_pbar).to(acc)  # (B, V)
        p = torch.softmax(logits.to(acc), -1)  # (B, T, V)
        if self.aggregate == "sequence":
            pbar = torch.einsum("bt,btv->bv", weights, p)  # (B, V)
            return self.normalized(self._divergence(pbar, targets), ids)
        row, _ = torch.nonzero(mask, as_tuple=True)
        per_position = self._divergence(p[mask], targets[row])  # (positions,)
        values = torch.zeros(b, dtype=acc, device=logits.device).index_add(
            0, row, per_position * weights[mask]
        )
        return self.normalized(values, ids)

    def _divergence(self, p: Tensor, q: Tensor) -> Tensor:
        """``D(p_i, q_i)`` per row of ``p (n, V)``, differentiable in ``p``."""
        if isinstance(self.divergence, TokenGeometry):
            return self.divergence.distance(p, q)
        return divergence_value(self.divergence, p, q)

    def forward(
        self,
        logits: Tensor,
        mask: Tensor,
        subpreference_ids: Tensor | None = None,
        ref_logits: Tensor | None = None,
    ) -> Tensor:
        """Mean PLOT value over rows (a scalar), by the reference implementation.

        Args:
            logits: ``(B, T, V)``, position ``t`` being one that scores a response token.
            mask: ``(B, T)`` bool, the positions that count; every row needs at least one.
            subpreference_ids: ``(B,)`` long rows of ``targets`` (None: all 0).
            ref_logits: ``(B, T, V)`` reference logits (``anchored`` only).
        """
        return self.per_sequence(logits, mask, subpreference_ids, ref_logits).mean()
