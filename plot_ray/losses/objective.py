"""The training objective ``L = L_vanilla + alpha * L_PLOT + deft.weight * L_DEFT``, built
from the config.

docs/plot.md defines the terms and every option. DEFT's term (:mod:`plot_ray.losses.deft`)
is built only with ``loss.deft.weight > 0``; at 0 the objective is the one below, bit for bit.

The train loop does one concatenated forward over all responses of a batch of ``B`` prompts:
``R`` groups of ``B`` rows, rows ``[k*B:(k+1)*B]`` holding the k-th response of each prompt,
best first (pairwise: group 0 chosen, group 1 rejected; SFT: R = 1; PRO: R = n). Then::

    geometry = build_geometry(E, cfg.loss.plot, vocab_size=V)     # once, at start
    objective = build_objective(cfg.loss, geometry, targets,
                                special_token_ids=tokenizer.all_special_ids)
    with torch.no_grad():                                          # reference first ...
        ref = objective.reference_stats(reference(...).logits, labels, num_responses=R)
    out = objective(policy(...).logits, labels, num_responses=R, reference=ref,
                    subpreference_ids=..., scores=...)             # ... then the policy
    out.loss.backward()

``labels`` are the input ids with -100 on prompt and padding (unshifted). The vanilla loss
reads every labelled position; PLOT reads those whose label is not a special token (EOS and
the like, docs/plot.md "Special tokens"): the counts behind the targets leave special tokens
out, so a target gives them no mass and PLOT would otherwise push p(EOS) down. A response
whose only labelled token is special leaves PLOT (its row is skipped). With ``alpha = 0`` the
PLOT term is not computed at all and ``out.loss`` is the vanilla loss tensor itself (bit for
bit). With ``alpha > 0`` the response log-probs and PLOT's softmax statistics come from one
chunked pass over the logits with a single gradient tensor (:mod:`plot_ray.losses.chunked`),
so PLOT adds ``O(B * V)`` memory, not another ``(N, T, V)`` gradient.

Reference model, for memory: the objective reads the reference's ``(R*B, T, V)`` logits only
through :class:`ReferenceStats`, ``O(R*B * V)``: the per-sequence log-probs (methods with a
reference) and each PLOT row's mean softmax (the anchored target), both from one chunked pass
without gradient. Run the reference forward first and reduce its logits at once with
:meth:`PreferenceObjective.reference_stats`, so that they are freed before the policy's
forward allocates its own logits: the two ``(R*B, T, V)`` tensors never live together, and
what remains at the step's peak is the policy's logits and their gradient. Passing
``ref_logits`` (and ``ref_logps``) to the objective instead gives the same numbers bit for bit
(evaluation and tests do), but holds both logits at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from plot_ray.losses.chunked import IGNORE_INDEX, softmax_stats, softmax_stats_forward
from plot_ray.losses.deft import DeftLoss
from plot_ray.losses.logprobs import check_labels, package_logprobs, shift_labels
from plot_ray.losses.methods import MethodBatch, get_method
from plot_ray.losses.methods import num_responses as method_num_responses
from plot_ray.losses.ot import ExactGeometry, TokenGeometry, build_geometry
from plot_ray.losses.plot import PlotLoss
from plot_ray.losses.preference import PreferenceTargets

if TYPE_CHECKING:  # pragma: no cover
    from plot_ray.config import LossConfig

__all__ = ["ObjectiveOutput", "PreferenceObjective", "ReferenceStats", "build_objective"]


@dataclass
class ObjectiveOutput:
    """``loss`` to backprop; ``vanilla`` and ``plot`` detached scalars; ``metrics`` to log."""

    loss: Tensor
    vanilla: Tensor
    plot: Tensor
    metrics: dict[str, float | Tensor] = field(default_factory=dict)


@dataclass
class ReferenceStats:
    """What the objective reads from the reference model on one batch, without gradient
    (:meth:`PreferenceObjective.reference_stats` reduces the reference logits to it).

    Attributes:
        logps: ``(R*B,)`` the responses' summed log-probs (None: the method needs none).
        mean_softmax: ``(S, V)`` float32 (float64 for float64 logits): each PLOT row's mean
            softmax over its PLOT positions, rows as the objective selects them (the anchored
            target; None otherwise).
    """

    logps: Tensor | None = None
    mean_softmax: Tensor | None = None


class PreferenceObjective(nn.Module):
    """``L_vanilla(method) + alpha * L_PLOT + deft.weight * L_DEFT`` on one concatenated batch
    (see the module doc)."""

    def __init__(
        self,
        loss_cfg: LossConfig,
        plot_loss: PlotLoss | None = None,
        special_token_ids: Sequence[int] = (),
        deft_loss: DeftLoss | None = None,
    ):
        super().__init__()
        self.loss_cfg = loss_cfg
        self.method = get_method(loss_cfg.method)
        self.alpha = float(loss_cfg.alpha)
        if self.alpha > 0 and plot_loss is None:
            raise ValueError("loss.alpha > 0 needs a PlotLoss (use build_objective)")
        self.plot_loss = plot_loss if self.alpha > 0 else None
        self.deft_weight = float(loss_cfg.deft.weight)
        if self.deft_weight > 0 and deft_loss is None:
            raise ValueError("loss.deft.weight > 0 needs a DeftLoss (use build_objective)")
        self.deft_loss = deft_loss if self.deft_weight > 0 else None
        # PLOT's sequence aggregate over the same responses reads the mean softmax DEFT scores
        self._deft_shares_plot_rows = (
            self.deft_loss is not None
            and self.plot_loss is not None
            and self.plot_loss.aggregate == "sequence"
            and loss_cfg.deft.responses == loss_cfg.plot.responses
        )
        self.responses = loss_cfg.plot.responses
        self.chunk_size = loss_cfg.plot.chunk_size
        # (K,) long, the ids whose positions PLOT leaves out; a buffer so it follows .to()
        self.register_buffer(
            "special_token_ids",
            torch.tensor(sorted(set(int(i) for i in special_token_ids)), dtype=torch.long),
            persistent=False,
        )

    # ------------------------------------------------------------------ what it needs
    @property
    def needs_reference_logps(self) -> bool:
        """The vanilla method needs reference log-probs (``ref_logps``, or ``ref_logits``)."""
        return self.method.needs_reference

    @property
    def needs_reference_logits(self) -> bool:
        """PLOT's anchored target needs the reference model's logits on the same positions."""
        return self.plot_loss is not None and self.plot_loss.needs_reference_logits

    def num_responses(self, method: str | None = None) -> int | None:
        """Responses per prompt for ``method`` (default: this objective's): SFT 1, pairwise 2,
        PRO None (``n >= 2`` from the data)."""
        return method_num_responses(method or self.loss_cfg.method)

    def extra_repr(self) -> str:
        deft = f", deft_weight={self.deft_weight}" if self.deft_loss is not None else ""
        return f"method={self.method.name}, alpha={self.alpha}, responses={self.responses}{deft}"

    # ---------------------------------------------------------------------- helpers
    def _check_batch(self, logits: Tensor, labels: Tensor, r: int) -> int:
        if logits.dim() != 3 or labels.shape != logits.shape[:2]:
            raise ValueError(
                f"logits must be (R*B, T, V) and labels (R*B, T); got {tuple(logits.shape)} "
                f"and {tuple(labels.shape)}"
            )
        if r < 1 or logits.shape[0] % r:
            raise ValueError(f"{logits.shape[0]} rows do not split into num_responses={r} groups")
        need = self.method.num_responses
        if need is None and r < 2:
            raise ValueError(
                f"method {self.method.name!r} needs >= 2 ranked responses per prompt, got {r}"
            )
        if need is not None and r != need:
            raise ValueError(
                f"method {self.method.name!r} takes {need} response(s) per prompt, got {r}"
            )
        return logits.shape[0] // r

    def _frame(self, logits: Tensor, labels: Tensor, r: int) -> tuple[int, Tensor]:
        """``B`` and the labels in the logits frame, after checking shapes and ids."""
        b = self._check_batch(logits, labels, r)
        check_labels(labels, logits.shape[-1])
        return b, shift_labels(labels.long())

    @staticmethod
    def _selected_rows(responses: str, r: int, b: int, device) -> Tensor:
        if responses == "chosen":
            return torch.arange(b, device=device)
        if responses == "rejected":
            return torch.arange((r - 1) * b, r * b, device=device)
        return torch.arange(r * b, device=device)

    def _plot_positions(
        self, frame: Tensor, r: int, b: int, responses: str | None = None
    ) -> tuple[Tensor, Tensor]:
        """PLOT's rows ``(S,)`` and mask ``(S, T)`` in the logits frame: the selected responses'
        labelled positions whose label is not a special token; rows left empty are dropped.
        ``responses``: which responses (default PLOT's ``loss.plot.responses``; DEFT passes
        ``loss.deft.responses`` and reads positions by the same rule)."""
        rows = self._selected_rows(responses or self.responses, r, b, frame.device)
        labels = frame.index_select(0, rows)
        mask = labels != IGNORE_INDEX
        if self.special_token_ids.numel():
            special = self.special_token_ids.to(labels.device)
            mask &= ~torch.isin(labels, special)
        keep = mask.any(1)
        if not bool(keep.all()):
            rows, mask = rows[keep], mask[keep]
        return rows, mask

    def _subpreference_ids(self, ids: Tensor | None, b: int, rows: Tensor) -> Tensor | None:
        if ids is None:
            return None
        ids = torch.as_tensor(ids, device=rows.device).long().flatten()
        if ids.shape[0] != b:
            raise ValueError(f"subpreference_ids must be (B,) = ({b},), got {tuple(ids.shape)}")
        return ids[rows % b]

    # ---------------------------------------------------------------------- reference
    def reference_stats(
        self,
        ref_logits: Tensor,
        labels: Tensor,
        num_responses: int,
        ref_logps: Tensor | None = None,
    ) -> ReferenceStats:
        """The reference model's logits ``(R*B, T, V)`` reduced to what this objective reads
        (:class:`ReferenceStats`), in one chunked pass without gradient.

        ``labels`` and ``num_responses`` as in :meth:`forward`; ``ref_logps`` ``(R*B,)``, when
        known (precomputed), are kept instead of being computed again. Call it right after the
        reference forward and drop the logits before the policy's forward (module docstring).
        """
        r = int(num_responses)
        b, frame = self._frame(ref_logits, labels, r)
        return self._reference_stats(ref_logits, frame, r, b, ref_logps)

    def _reference_stats(
        self, ref_logits: Tensor, frame: Tensor, r: int, b: int, ref_logps: Tensor | None
    ) -> ReferenceStats:
        need_logps = self.needs_reference_logps and ref_logps is None
        rows = mask = None
        if self.needs_reference_logits:
            rows, mask = self._plot_positions(frame, r, b)
        stats = ReferenceStats(logps=ref_logps)
        if not (need_logps or rows is not None):
            return stats
        with torch.no_grad():
            ref_tok, _, ref_pbar = softmax_stats_forward(
                ref_logits.detach(),
                frame if need_logps else None,
                rows,
                mask,
                "sequence",
                chunk_size=self.chunk_size,
            )
        if need_logps:
            stats.logps = package_logprobs(ref_tok, frame).sums
        if rows is not None:
            stats.mean_softmax = ref_pbar
        return stats

    # ---------------------------------------------------------------------- forward
    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        num_responses: int,
        ref_logps: Tensor | None = None,
        ref_logits: Tensor | None = None,
        subpreference_ids: Tensor | None = None,
        scores: Tensor | None = None,
        reference: ReferenceStats | None = None,
    ) -> ObjectiveOutput:
        """Compute the objective on one concatenated batch.

        Args:
            logits: ``(R*B, T, V)`` policy logits, any float dtype.
            labels: ``(R*B, T)`` long, unshifted, -100 on non-response tokens.
            num_responses: ``R``.
            ref_logps: ``(R*B,)`` reference per-sequence log-prob sums (methods with a
                reference; may be omitted when ``ref_logits`` are given).
            ref_logits: ``(R*B, T, V)`` reference logits (the anchored PLOT target).
            subpreference_ids: ``(B,)`` long rows of the targets (None: 0).
            scores: ``(B, R)`` optional reward scores (PRO).
            reference: the reference's statistics from :meth:`reference_stats`, instead of
                ``ref_logps`` / ``ref_logits`` (what training passes; same numbers).
        """
        r = int(num_responses)
        b, frame = self._frame(logits, labels, r)
        n = logits.shape[0]
        lengths = (frame != IGNORE_INDEX).sum(1)
        used = lengths[:b] if self.method.num_responses == 1 else lengths
        if (used == 0).any():
            empty = torch.nonzero(used == 0).flatten().tolist()
            raise ValueError(
                f"rows {empty} have no response tokens (labels all -100 after the first "
                "position): drop them in the data pipeline"
            )
        if scores is not None and scores.shape != (b, r):
            raise ValueError(f"scores must be (B, R) = ({b}, {r}), got {tuple(scores.shape)}")
        if reference is not None and (ref_logps is not None or ref_logits is not None):
            raise ValueError(
                "pass the reference as ref_logps / ref_logits or as reference, not both"
            )
        if ref_logits is not None:
            if ref_logits.shape != logits.shape:
                raise ValueError(
                    f"ref_logits {tuple(ref_logits.shape)} must match logits {tuple(logits.shape)}"
                )
            reference = self._reference_stats(ref_logits, frame, r, b, ref_logps)
        elif reference is None:
            reference = ReferenceStats(logps=ref_logps)
        ref_logps = reference.logps
        if ref_logps is not None and ref_logps.shape != (n,):
            raise ValueError(f"ref_logps must be (R*B,) = ({n},), got {tuple(ref_logps.shape)}")
        if self.needs_reference_logps and ref_logps is None:
            raise ValueError(
                f"method {self.method.name!r} needs reference log-probs: pass ref_logps or ref_logits"
            )

        plot_value = deft_value = None
        if self.deft_loss is not None:
            deft_rows, deft_mask = self._plot_positions(frame, r, b, self.loss_cfg.deft.responses)
            deft_ids = self.deft_loss.resolve_ids(
                self._subpreference_ids(subpreference_ids, b, deft_rows),
                deft_rows.shape[0],
                logits.device,
            )
        if self.plot_loss is None and self.deft_loss is None:
            token_logps, _ = softmax_stats(logits, frame, chunk_size=self.chunk_size)
        elif self.plot_loss is None:
            # DEFT alone: its rewards and the log-probs from one pass, one gradient tensor
            token_logps, rewards = self.deft_loss.fused(
                logits, frame, deft_rows, deft_mask, deft_ids
            )
            deft_value = _negated_mean(rewards)
        else:
            rows, plot_mask = self._plot_positions(frame, r, b)
            ids = self.plot_loss.resolve_ids(
                self._subpreference_ids(subpreference_ids, b, rows), rows.shape[0], logits.device
            )
            ref_pbar = reference.mean_softmax if self.needs_reference_logits else None
            if self.needs_reference_logits:
                if ref_pbar is None:
                    raise ValueError(
                        "loss.plot.target=anchored needs ref_logits (R*B, T, V): the reference "
                        "model's logits on the same positions (or their reference_stats)"
                    )
                if ref_pbar.shape != (rows.shape[0], logits.shape[-1]):
                    raise ValueError(
                        f"reference.mean_softmax {tuple(ref_pbar.shape)} must be (S, V) = "
                        f"({rows.shape[0]}, {logits.shape[-1]}): compute it with "
                        "reference_stats on the same labels"
                    )
            row_targets = self.plot_loss.row_targets(ids, ref_pbar)
            if self._deft_shares_plot_rows:
                # PLOT compares the same rows' mean softmax that DEFT scores: one pass for both
                token_logps, rewards, pbar = self.deft_loss.fused(
                    logits, frame, rows, plot_mask, ids, return_mean_softmax=True
                )
                values = self.plot_loss.sequence_values(pbar, row_targets)
                deft_value = _negated_mean(rewards)
            else:
                token_logps, values = self.plot_loss.fused(
                    logits, frame, rows, plot_mask, row_targets
                )
            values = self.plot_loss.normalized(values, ids)
            # no row left (every selected response is special tokens only): a zero that keeps
            # the graph, so the loss and its gradient are exactly the vanilla ones
            plot_value = values.mean() if values.numel() else values.sum()
            if self.deft_loss is not None and deft_value is None:
                # DEFT on other rows or beside PLOT's token aggregate: a pass of its own (a
                # second gradient tensor of the logits' size: docs/plot.md, "DEFT")
                _, rewards = self.deft_loss.fused(logits, None, deft_rows, deft_mask, deft_ids)
                deft_value = _negated_mean(rewards)

        logps = package_logprobs(token_logps, frame)
        batch = MethodBatch(
            logps=logps.sums.view(r, b),
            lengths=logps.lengths.view(r, b),
            ref_logps=None
            if ref_logps is None
            else ref_logps.detach().to(logps.sums.dtype).view(r, b),
            scores=scores,
        )
        vanilla, metrics = self.method.compute(batch, self.loss_cfg)
        if plot_value is None:
            loss = vanilla
            plot_detached = torch.zeros((), dtype=vanilla.dtype, device=vanilla.device)
        else:
            loss = vanilla + self.alpha * plot_value
            plot_detached = plot_value.detach()
        if deft_value is not None:
            loss = loss + self.deft_weight * deft_value.to(loss.dtype)
        out_metrics: dict[str, float | Tensor] = {
            "loss/total": loss.detach(),
            "loss/vanilla": vanilla.detach(),
            "loss/plot": plot_detached,
            "loss/alpha": self.alpha,
        }
        if self.plot_loss is not None:
            out_metrics["plot/scale"] = self.plot_loss.scale
        if deft_value is not None:
            out_metrics["loss/deft"] = deft_value.detach()
            out_metrics["loss/deft_weight"] = self.deft_weight
        out_metrics.update(metrics)
        return ObjectiveOutput(
            loss=loss, vanilla=vanilla.detach(), plot=plot_detached, metrics=out_metrics
        )


def build_objective(
    loss_cfg: LossConfig,
    geometry: TokenGeometry | ExactGeometry | None = None,
    targets: PreferenceTargets | None = None,
    *,
    special_token_ids: Sequence[int] = (),
) -> PreferenceObjective:
    """Build ``L_vanilla + alpha * L_PLOT + deft.weight * L_DEFT`` from a
    :class:`~plot_ray.config.LossConfig`.

    Args:
        loss_cfg: ``cfg.loss``.
        geometry: from :func:`~plot_ray.losses.ot.build_geometry` on the policy's input
            embeddings at the start of training (normalisation included); needed when
            ``alpha > 0`` with the ``embedding`` cost. The ``uniform`` and ``index`` costs and
            the ``kl`` / ``js`` divergences need no embeddings: a missing geometry is built.
        targets: from :meth:`PreferenceTargets.from_counts` (``alpha > 0`` or
            ``deft.weight > 0``; DEFT reads their ``q_diff``).
        special_token_ids: token ids whose positions PLOT leaves out (the tokenizer's
            ``all_special_ids``); the vanilla loss keeps them.
    """
    method = get_method(loss_cfg.method)
    plot_cfg = loss_cfg.plot
    deft_loss = None
    if loss_cfg.deft.weight > 0:
        if targets is None:
            raise ValueError(
                f"loss.deft.weight={loss_cfg.deft.weight} > 0 needs the token-count targets: "
                "build them from the data pipeline's counts with PreferenceTargets.from_counts"
            )
        if loss_cfg.deft.responses == "rejected" and method.num_responses == 1:
            raise ValueError(
                f"loss.deft.responses=rejected, but method {method.name!r} has no rejected responses"
            )
        deft_loss = DeftLoss.from_targets(targets, chunk_size=plot_cfg.chunk_size)
    if loss_cfg.alpha == 0:
        return PreferenceObjective(loss_cfg, None, special_token_ids, deft_loss)
    if targets is None:
        raise ValueError(
            f"loss.alpha={loss_cfg.alpha} > 0 needs preference targets: build them from the data "
            "pipeline's counts with PreferenceTargets.from_counts(pos, neg, cfg.loss.plot)"
        )
    if plot_cfg.responses == "rejected" and method.num_responses == 1:
        raise ValueError(
            f"loss.plot.responses=rejected, but method {method.name!r} has no rejected responses"
        )
    if plot_cfg.divergence == "wasserstein":
        exact = plot_cfg.cost == "embedding" and plot_cfg.projection == "exact"
        if geometry is None:
            if plot_cfg.cost == "embedding":
                raise ValueError(
                    "loss.plot.cost=embedding needs a geometry built from the policy's input "
                    "embeddings: build_geometry(E, cfg.loss.plot)"
                )
            geometry = build_geometry(None, plot_cfg, vocab_size=targets.vocab_size)
        elif exact != (geometry.cost == "exact") or (not exact and geometry.cost != plot_cfg.cost):
            raise ValueError(
                f"the geometry was built for cost={geometry.cost!r}, but loss.plot.cost="
                f"{plot_cfg.cost!r} and loss.plot.projection={plot_cfg.projection!r}: "
                "build it with build_geometry(E, cfg.loss.plot)"
            )
    plot_loss = PlotLoss.from_config(plot_cfg, targets, geometry)
    return PreferenceObjective(loss_cfg, plot_loss, special_token_ids, deft_loss)


def _negated_mean(rewards: Tensor) -> Tensor:
    """``L_DEFT = -mean(rewards)``; with no row (every selected response is special tokens
    only), a zero that keeps the graph."""
    return -rewards.mean() if rewards.numel() else rewards.sum()
