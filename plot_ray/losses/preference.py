"""Preference distributions: the PLOT target built from response-token counts.

docs/plot.md, "Token counts", "Preference distribution" and "Targets", defines them.

For one sub-preference (harmlessness, reasoning, ...), with ``n+[v]`` / ``n-[v]`` the counts of
token ``v`` over preferred / rejected responses:

    Q+ = n+ / sum(n+),   Q- = n- / sum(n-),   Q_diff = Q+ - Q-      (sums to 0)

The ``global`` target ``P_t`` makes ``Q_diff`` a distribution over the support ``S`` (tokens
seen on either side, or the whole vocabulary) with one of three transforms, optionally mixed
with the uniform distribution on ``S``. The ``anchored`` target uses the *tilt*
``Q_diff / max|Q_diff| / tau`` instead: ``P_b ∝ p_ref,b * exp(tilt)`` per sequence (see
:mod:`plot_ray.losses.plot`).

The data pipeline produces count matrices ``(C, V)`` for ``C`` sub-preferences; build all
targets at once with :meth:`PreferenceTargets.from_counts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from plot_ray.config import PlotConfig

__all__ = [
    "preference_distribution",
    "preference_tilt",
    "frequency_difference",
    "PreferenceTargets",
    "resolve_subpreference_ids",
]

Transform = Literal["shift", "relu", "softmax"]
Support = Literal["observed", "vocab"]


def _as_counts(x, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must hold real counts, got dtype {t.dtype}")
    t = t.detach().to(device="cpu", dtype=torch.float64)
    if t.dim() != 1:
        raise ValueError(
            f"{name} must be a 1-D vector over the vocabulary, got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        bad = torch.nonzero(~torch.isfinite(t)).flatten()[:5].tolist()
        raise ValueError(f"{name} has non-finite counts (NaN/inf) at token ids {bad}")
    if (t < 0).any():
        bad = torch.nonzero(t < 0).flatten()[:5].tolist()
        raise ValueError(f"{name} has negative counts at token ids {bad}")
    return t


def frequency_difference(pos_counts, neg_counts) -> tuple[Tensor, Tensor]:
    """Validate counts and return ``(Q_diff (V,) float64, observed support mask (V,) bool)``.

    Raises ``ValueError`` on: different lengths, negative or non-finite counts, all-zero counts,
    or zero total count on one side (a frequency distribution needs at least one token).
    """
    pos = _as_counts(pos_counts, "pos_counts")
    neg = _as_counts(neg_counts, "neg_counts")
    if pos.shape != neg.shape:
        raise ValueError(
            f"pos_counts has {pos.shape[0]} entries and neg_counts {neg.shape[0]}: both must "
            "cover the same vocabulary"
        )
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos == 0 and n_neg == 0:
        raise ValueError("pos_counts and neg_counts are all zero: no response tokens were counted")
    if n_pos == 0:
        raise ValueError("pos_counts are all zero: no preferred-response tokens were counted")
    if n_neg == 0:
        raise ValueError("neg_counts are all zero: no rejected-response tokens were counted")
    q_diff = pos / n_pos - neg / n_neg
    return q_diff, (pos > 0) | (neg > 0)


def _no_signal_error(what: str) -> ValueError:
    return ValueError(
        f"Q_diff is zero on the whole {what}: preferred and rejected responses have identical "
        "token frequencies, so there is no PLOT signal (check the counts before training)"
    )


def preference_distribution(
    pos_counts,
    neg_counts,
    transform: Transform = "shift",
    tau: float = 1.0,
    support: Support = "observed",
    smoothing: float = 0.0,
) -> Tensor:
    """The global PLOT target ``P_t`` ``(V,)`` float64: non-negative, sums to 1, zero off ``S``.

    Args:
        pos_counts, neg_counts: ``(V,)`` token counts over preferred / rejected responses
            (tensor, array or list; any numeric dtype).
        transform: ``shift``: ``Q_diff - min_S Q_diff``, renormalised; ``relu``:
            ``max(Q_diff, 0)``, renormalised; ``softmax``: softmax over ``S`` of
            ``Q_diff / max_S |Q_diff| / tau``.
        tau: softmax temperature (> 0); only used by ``softmax``.
        support: ``observed`` (tokens with a non-zero count on either side) or ``vocab``.
        smoothing: ``s`` in [0, 1]: returns ``(1 - s) * P + s * uniform(S)``.
    """
    if transform not in ("shift", "relu", "softmax"):
        raise ValueError(f"transform must be 'shift', 'relu' or 'softmax', got {transform!r}")
    if support not in ("observed", "vocab"):
        raise ValueError(f"support must be 'observed' or 'vocab', got {support!r}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
    q_diff, observed = frequency_difference(pos_counts, neg_counts)
    in_s = observed if support == "observed" else torch.ones_like(observed)
    what = "observed support" if support == "observed" else "vocabulary"
    d = q_diff[in_s]
    scale = float(d.abs().max())
    if scale == 0.0:
        raise _no_signal_error(what)
    if transform == "shift":
        vals = d - d.min()
    elif transform == "relu":
        vals = d.clamp_min(0.0)
    else:
        vals = torch.softmax(d / scale / tau, dim=0)
    out = torch.zeros_like(q_diff)
    out[in_s] = vals / vals.sum()
    if smoothing > 0:
        out = (1.0 - smoothing) * out
        out[in_s] += smoothing / int(in_s.sum())
    return out


def preference_tilt(pos_counts, neg_counts, tau: float = 1.0) -> Tensor:
    """The anchored target's log-tilt ``Q_diff / max|Q_diff| / tau`` ``(V,)`` float64.

    ``P_b ∝ p_ref,b * exp(tilt)``. Tokens seen on neither side have ``Q_diff = 0`` and keep the
    reference's mass (factor 1), whatever the ``support`` option: the anchored target never
    removes mass that the reference model puts on tokens the corpus does not mention.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    q_diff, _ = frequency_difference(pos_counts, neg_counts)
    scale = float(q_diff.abs().max())
    if scale == 0.0:
        raise _no_signal_error("vocabulary")
    return q_diff / scale / tau


def resolve_subpreference_ids(
    subpreference_ids: Tensor | None, rows: int, names: Sequence[str], device
) -> Tensor:
    """Validated ``(rows,)`` long row indices into ``names`` on ``device`` (None: all 0)."""
    if subpreference_ids is None:
        return torch.zeros(rows, dtype=torch.long, device=device)
    ids = torch.as_tensor(subpreference_ids, device=device).long().flatten()
    if ids.shape[0] != rows:
        raise ValueError(f"{ids.shape[0]} subpreference_ids for {rows} rows")
    if rows and (int(ids.min()) < 0 or int(ids.max()) >= len(names)):
        raise ValueError(
            f"subpreference_ids must be in [0, {len(names)}) ({names}), got {ids.tolist()}"
        )
    return ids


@dataclass
class PreferenceTargets:
    """Per-sub-preference PLOT targets, built once from the data pipeline's counts.

    Attributes:
        names: ``C`` sub-preference names; row ``c`` of each matrix belongs to ``names[c]``.
        targets: ``(C, V)`` float32, the global targets ``P_t`` (rows sum to 1).
        log_tilts: ``(C, V)`` float32, the anchored tilts ``Q_diff / max|Q_diff| / tau``.
        q_diff: ``(C, V)`` float32, ``Q+ - Q-`` (for reports: :meth:`extremes`).
        q_mean: ``(C, V)`` float32, ``(Q+ + Q-) / 2``, the corpus's response-token
            distribution: the stand-in for a model's mean output distribution that
            ``loss.plot.normalize=reference`` measures a typical distance from (None when
            built by hand; that normalisation then refuses to start).
    """

    names: list[str]
    targets: Tensor
    log_tilts: Tensor
    q_diff: Tensor
    q_mean: Tensor | None = None

    @classmethod
    def from_counts(
        cls,
        pos_counts,
        neg_counts,
        plot_cfg: PlotConfig | None = None,
        names: Sequence[str] | None = None,
        **overrides,
    ) -> PreferenceTargets:
        """Build from count matrices ``pos_counts (C, V)``, ``neg_counts (C, V)`` (or ``(V,)``).

        The transform, tau, support and smoothing come from ``plot_cfg`` (a
        :class:`~plot_ray.config.PlotConfig`; defaults when None), and keyword ``overrides``
        win (e.g. ``transform="relu"``). A bad row raises ``ValueError`` naming its
        sub-preference.
        """
        opts = {"transform": "shift", "tau": 1.0, "support": "observed", "smoothing": 0.0}
        if plot_cfg is not None:
            opts.update({k: getattr(plot_cfg, k) for k in opts})
        unknown = set(overrides) - set(opts)
        if unknown:
            raise TypeError(f"unknown options {sorted(unknown)}; allowed: {sorted(opts)}")
        opts.update(overrides)
        pos = (
            pos_counts
            if isinstance(pos_counts, Tensor)
            else torch.as_tensor(np.asarray(pos_counts))
        )
        neg = (
            neg_counts
            if isinstance(neg_counts, Tensor)
            else torch.as_tensor(np.asarray(neg_counts))
        )
        if pos.dim() == 1 and neg.dim() == 1:
            pos, neg = pos[None], neg[None]
        if pos.dim() != 2 or neg.dim() != 2 or pos.shape != neg.shape:
            raise ValueError(
                f"pos_counts {tuple(pos.shape)} and neg_counts {tuple(neg.shape)} must both be (C, V)"
            )
        names = (
            [f"subpreference_{c}" for c in range(pos.shape[0])] if names is None else list(names)
        )
        if len(names) != pos.shape[0]:
            raise ValueError(f"{len(names)} names for {pos.shape[0]} rows of counts")
        if len(set(names)) != len(names):
            raise ValueError(f"sub-preference names must be unique, got {names}")
        targets, tilts, diffs, means = [], [], [], []
        for c, name in enumerate(names):
            try:
                targets.append(preference_distribution(pos[c], neg[c], **opts))
                tilts.append(preference_tilt(pos[c], neg[c], tau=opts["tau"]))
                diffs.append(frequency_difference(pos[c], neg[c])[0])
            except ValueError as exc:
                raise ValueError(f"sub-preference {name!r}: {exc}") from None
            p64, n64 = pos[c].double(), neg[c].double()
            means.append(0.5 * (p64 / p64.sum() + n64 / n64.sum()))
        return cls(
            names=names,
            targets=torch.stack(targets).float(),
            log_tilts=torch.stack(tilts).float(),
            q_diff=torch.stack(diffs).float(),
            q_mean=torch.stack(means).float(),
        )

    @property
    def vocab_size(self) -> int:
        return self.targets.shape[1]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Row of sub-preference ``name`` (for the data pipeline's ``subpreference_ids``)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown sub-preference {name!r}; known: {self.names}") from None

    def to(self, device: torch.device | str) -> PreferenceTargets:
        """Move the matrices (in place; returns self)."""
        self.targets = self.targets.to(device)
        self.log_tilts = self.log_tilts.to(device)
        self.q_diff = self.q_diff.to(device)
        if self.q_mean is not None:
            self.q_mean = self.q_mean.to(device)
        return self

    def extremes(self, k: int = 10) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """The ``k`` largest entries of ``Q_diff`` in both directions, per sub-preference.

        ``{name: {"preferred": [(token_id, q_diff), ...], "rejected": [...]}}``: the check that
        docs/plot.md asks for before training (is there a PLOT signal at all?).
        """
        out = {}
        k = min(k, self.vocab_size)
        for name, row in zip(self.names, self.q_diff, strict=True):
            top = torch.topk(row, k)
            bottom = torch.topk(-row, k)
            out[name] = {
                "preferred": [
                    (int(i), float(v)) for v, i in zip(top.values, top.indices, strict=True)
                ],
                "rejected": [
                    (int(i), float(-v)) for v, i in zip(bottom.values, bottom.indices, strict=True)
                ],
            }
        return out
