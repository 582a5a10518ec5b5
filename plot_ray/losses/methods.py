"""The vanilla fine-tuning objectives that PLOT is added to, on per-sequence log-probabilities.

docs/plot.md, "Vanilla methods", gives each formula with its config keys.

Every function takes per-sequence log-prob sums (and lengths / reference log-probs where the
method needs them), all of shape ``(B,)`` unless stated, and returns ``(loss, metrics)``: a
scalar loss and a dict of detached scalar tensors. Notation: ``pi_c, pi_r`` policy log-probs of
the chosen / rejected response, ``ref_c, ref_r`` the reference's, ``|y|`` a response's length in
tokens, ``l(z) = -log sigmoid(z)``.

- SFT: token-mean NLL over the batch, ``-sum(pi_c) / sum(|y_c|)``.
- DPO: ``h = beta * ((pi_c - ref_c) - (pi_r - ref_r))``,
  ``(1 - eps) l(h) + eps l(-h)`` (``eps``: label smoothing, the conservative DPO).
- IPO: ``(rho_c - rho_r - 1 / (2 beta))^2`` with ``rho = (pi - ref) / |y|``, each log-ratio
  divided by its response length as TRL's ``ipo`` loss and CPO do (the default,
  ``loss.ipo_normalize``), or ``rho = pi - ref`` summed over the response.
- PRO (Song et al., AAAI 2024): responses ranked best first, ``s_k = logp_k / |y_k|``;
  ``sum_{k < n} -log softmax(s_k, ..., s_n)[first]`` plus ``sft_weight * (n - 1)^2`` x the
  sequence-summed NLL ``-logp_1`` of the best response (the paper's scale; the token-mean NLL
  ``-logp_1 / |y_1|`` is an option). With reward scores ``r`` the logits are scaled by reward gaps (PRO's dynamic
  temperature): ``s_i (r_k - r_i)`` for ``i > k`` and ``s_k max_{i > k}(r_k - r_i)``.
- AOT (Melnyk et al., NeurIPS 2024), distributional alignment by first-order stochastic
  dominance, with the quantiles taken as the batch's sorted values:
  paired: policy margins ``pi_c - pi_r`` vs reference margins ``ref_c - ref_r``;
  unpaired: chosen log-ratios ``pi_c - ref_c`` vs rejected log-ratios ``pi_r - ref_r``;
  each side sorted separately, then the DPO loss on the sorted differences. (Without the
  sorting, paired AOT is exactly DPO.)
- SimPO: ``h = beta * (pi_c / |y_c| - pi_r / |y_r|) - gamma``, ``l(h)`` (label smoothing as
  DPO); its beta is per token, so it has its own config key (``loss.simpo_beta``, 2.0).
- ORPO: SFT loss + ``lambda * l(log odds(y_c) - log odds(y_r))``, ``odds = P / (1 - P)`` with
  ``log P = logp / |y|``.

:data:`METHODS` maps each method name of :class:`~plot_ray.config.LossConfig` to a
:class:`MethodSpec`: how many responses it needs per prompt, whether it needs a reference
model, and a function from a :class:`MethodBatch` to ``(loss, metrics)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from plot_ray.config import LossConfig

__all__ = [
    "sft_loss",
    "dpo_loss",
    "ipo_loss",
    "pro_loss",
    "aot_loss",
    "simpo_loss",
    "orpo_loss",
    "MethodBatch",
    "MethodSpec",
    "METHODS",
    "register_method",
    "get_method",
    "num_responses",
]

Metrics = dict[str, Tensor]


def _smoothed_logistic(h: Tensor, label_smoothing: float) -> Tensor:
    """``(1 - eps) * -log sigmoid(h) + eps * -log sigmoid(-h)``, elementwise."""
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    loss = -F.logsigmoid(h)
    if label_smoothing > 0:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-h)
    return loss


def _reward_metrics(chosen: Tensor, rejected: Tensor) -> Metrics:
    chosen, rejected = chosen.detach(), rejected.detach()
    return {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/accuracy": (chosen > rejected).float().mean(),
        "rewards/margin": (chosen - rejected).mean(),
    }


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"inputs must have the same shape, got {shapes}")


def _check_reference_pair(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> None:
    """Inputs of the methods on policy-minus-reference log-ratios (DPO, IPO, AOT)."""
    _check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")


def _check_length_normalised_pair(
    name: str,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
) -> None:
    """Inputs of the methods that divide log-probs by response lengths (SimPO, ORPO)."""
    _check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
    )
    if (chosen_lengths <= 0).any() or (rejected_lengths <= 0).any():
        raise ValueError(f"{name}: every response needs at least one token")


def sft_loss(chosen_logps: Tensor, chosen_lengths: Tensor) -> tuple[Tensor, Metrics]:
    """Token-mean negative log-likelihood over the batch: ``-sum(logps) / sum(lengths)``."""
    _check_same_shape(chosen_logps=chosen_logps, chosen_lengths=chosen_lengths)
    total = chosen_lengths.sum()
    if int(total) <= 0:
        raise ValueError("sft_loss: the batch has no response tokens")
    loss = -chosen_logps.sum() / total
    return loss, {"sft/nll": loss.detach(), "logps/chosen": chosen_logps.detach().mean()}


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Metrics]:
    """DPO (sigmoid, optional label smoothing); mean over the batch.

    Rewards are ``beta * (pi - ref)``; metrics: ``rewards/{chosen,rejected,accuracy,margin}``,
    ``logps/{chosen,rejected}``.
    """
    _check_reference_pair(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = _smoothed_logistic(beta * (chosen_logratios - rejected_logratios), label_smoothing)
    metrics = _reward_metrics(beta * chosen_logratios, beta * rejected_logratios)
    metrics["logps/chosen"] = policy_chosen_logps.detach().mean()
    metrics["logps/rejected"] = policy_rejected_logps.detach().mean()
    return losses.mean(), metrics


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
) -> tuple[Tensor, Metrics]:
    """IPO: ``mean_b (rho_c - rho_r - 1 / (2 beta))^2``.

    With ``chosen_lengths`` / ``rejected_lengths`` (``(B,)`` response lengths in tokens) each
    log-ratio is length-normalised, ``rho = (pi - ref) / |y|`` (TRL's ``ipo`` and CPO's form,
    the default in the config); without them ``rho = pi - ref`` is the sequence sum. Rewards
    in the metrics are ``beta * rho``.
    """
    _check_reference_pair(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    chosen = policy_chosen_logps - ref_chosen_logps
    rejected = policy_rejected_logps - ref_rejected_logps
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise ValueError("ipo_loss: give both chosen_lengths and rejected_lengths, or neither")
    if chosen_lengths is not None:
        _check_length_normalised_pair(
            "ipo_loss",
            policy_chosen_logps,
            policy_rejected_logps,
            chosen_lengths,
            rejected_lengths,
        )
        chosen = chosen / chosen_lengths
        rejected = rejected / rejected_lengths
    losses = (chosen - rejected - 1.0 / (2.0 * beta)) ** 2
    metrics = _reward_metrics(beta * chosen, beta * rejected)
    metrics["logps/chosen"] = policy_chosen_logps.detach().mean()
    metrics["logps/rejected"] = policy_rejected_logps.detach().mean()
    return losses.mean(), metrics


def pro_loss(
    logps: Tensor,
    lengths: Tensor,
    scores: Tensor | None = None,
    sft_weight: float = 0.0,
    sft_reduction: Literal["sum", "mean"] = "sum",
) -> tuple[Tensor, Metrics]:
    """PRO listwise ranking loss over ``n >= 2`` responses per prompt, plus a weighted SFT term.

    ``loss = ranking + sft_weight * (n - 1)^2 * NLL``, with ``NLL`` the batch mean of the best
    response's negative log-likelihood.

    Args:
        logps: ``(B, n)`` sequence log-prob sums, column 0 the best response, then in rank order.
        lengths: ``(B, n)`` response lengths in tokens.
        scores: optional ``(B, n)`` reward scores, non-increasing along each row; they scale
            the ranking logits by reward gaps (see the module docstring).
        sft_weight: PRO's SFT weight (the paper uses 0.05 with the summed NLL).
        sft_reduction: ``sum``: the NLL summed over the best response's tokens, in nats per
            sequence (the paper's scale); ``mean``: the token-mean NLL over the batch
            (:func:`sft_loss`), in nats per token.
    """
    _check_same_shape(logps=logps, lengths=lengths)
    if logps.dim() != 2 or logps.shape[1] < 2:
        raise ValueError(f"pro_loss needs (B, n) log-probs with n >= 2, got {tuple(logps.shape)}")
    if (lengths <= 0).any():
        raise ValueError("pro_loss: every response needs at least one token")
    n = logps.shape[1]
    s = logps / lengths
    if scores is not None:
        if scores.shape != logps.shape:
            raise ValueError(f"scores {tuple(scores.shape)} must match logps {tuple(logps.shape)}")
        if (scores[:, 1:] > scores[:, :-1]).any():
            raise ValueError("scores must be non-increasing along each row (best response first)")
        scores = scores.to(s.dtype)
    ranking = s.new_zeros(s.shape[0])
    for k in range(n - 1):
        if scores is None:
            logits = s[:, k:]
        else:
            gaps = scores[:, k : k + 1] - scores[:, k + 1 :]  # (B, n-k-1), >= 0
            logits = torch.cat(
                [s[:, k : k + 1] * gaps.max(1, keepdim=True).values, s[:, k + 1 :] * gaps], 1
            )
        ranking = ranking - torch.log_softmax(logits, dim=1)[:, 0]
    ranking = ranking.mean()
    if sft_reduction == "sum":
        sft = -logps[:, 0].mean()
    elif sft_reduction == "mean":
        sft, _ = sft_loss(logps[:, 0], lengths[:, 0])
    else:
        raise ValueError(f"sft_reduction must be 'sum' or 'mean', got {sft_reduction!r}")
    sft_scale = sft_weight * (n - 1) ** 2
    loss = ranking + sft_scale * sft if sft_weight else ranking
    metrics = {
        "pro/ranking": ranking.detach(),
        "pro/sft": sft.detach(),
        "pro/sft_scale": torch.tensor(float(sft_scale)),
        "pro/top1_accuracy": (s[:, :1] > s[:, 1:]).all(1).float().mean().detach(),
        "logps/chosen": logps[:, 0].detach().mean(),
        "logps/rejected": logps[:, -1].detach().mean(),
    }
    return loss, metrics


def aot_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    variant: Literal["paired", "unpaired"] = "paired",
) -> tuple[Tensor, Metrics]:
    """AOT: the logistic loss on sorted (quantile) differences within the batch.

    ``paired`` sorts the policy margins ``pi_c - pi_r`` and the reference margins
    ``ref_c - ref_r`` separately; ``unpaired`` sorts the chosen log-ratios ``pi_c - ref_c`` and
    the rejected log-ratios ``pi_r - ref_r`` separately. The loss is the mean over the batch of
    ``(1 - eps) l(beta * d_i) + eps l(-beta * d_i)`` with ``d_i`` the i-th sorted difference.
    """
    _check_reference_pair(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    if variant == "paired":
        first = policy_chosen_logps - policy_rejected_logps
        second = ref_chosen_logps - ref_rejected_logps
    elif variant == "unpaired":
        first, second = chosen_logratios, rejected_logratios
    else:
        raise ValueError(f"variant must be 'paired' or 'unpaired', got {variant!r}")
    delta = torch.sort(first.flatten()).values - torch.sort(second.flatten()).values
    loss = _smoothed_logistic(beta * delta, label_smoothing).mean()
    metrics = _reward_metrics(beta * chosen_logratios, beta * rejected_logratios)
    metrics["aot/sorted_margin"] = delta.detach().mean()
    metrics["logps/chosen"] = policy_chosen_logps.detach().mean()
    metrics["logps/rejected"] = policy_rejected_logps.detach().mean()
    return loss, metrics


def simpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Metrics]:
    """SimPO: reference-free, length-normalised, with target margin ``gamma``."""
    _check_length_normalised_pair(
        "simpo_loss", policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths
    )
    chosen = beta * policy_chosen_logps / chosen_lengths
    rejected = beta * policy_rejected_logps / rejected_lengths
    loss = _smoothed_logistic(chosen - rejected - gamma, label_smoothing).mean()
    metrics = _reward_metrics(chosen, rejected)
    metrics["logps/chosen"] = policy_chosen_logps.detach().mean()
    metrics["logps/rejected"] = policy_rejected_logps.detach().mean()
    return loss, metrics


# Mean log-probs above this are clamped so that log(1 - P) stays finite (P = 1 exactly would
# make the odds infinite); 1e-7 nats is far below any real sequence's mean NLL.
_ORPO_MAX_MEAN_LOGP = -1e-7


def _log_odds(mean_logps: Tensor) -> Tensor:
    """``log(P / (1 - P))`` from ``log P``, stable: ``log P - log(1 - exp(log P))``."""
    a = mean_logps.clamp_max(_ORPO_MAX_MEAN_LOGP)
    log1mexp = torch.where(
        a > -0.6931471805599453, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a))
    )
    return a - log1mexp


def orpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    lam: float = 0.1,
) -> tuple[Tensor, Metrics]:
    """ORPO: token-mean NLL on chosen + ``lam`` x the odds-ratio loss (reference-free).

    Mean log-probs are clamped at ``-1e-7`` before ``log(1 - P)`` so that a sequence of
    probability 1 gives a large finite log-odds, never inf.
    """
    _check_length_normalised_pair(
        "orpo_loss", policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths
    )
    mean_c = policy_chosen_logps / chosen_lengths
    mean_r = policy_rejected_logps / rejected_lengths
    log_odds_ratio = _log_odds(mean_c) - _log_odds(mean_r)
    odds_loss = -F.logsigmoid(log_odds_ratio).mean()
    nll, _ = sft_loss(policy_chosen_logps, chosen_lengths)
    loss = nll + lam * odds_loss
    metrics = _reward_metrics(mean_c, mean_r)
    metrics.update(
        {
            "orpo/nll": nll.detach(),
            "orpo/odds_loss": odds_loss.detach(),
            "orpo/log_odds_ratio": log_odds_ratio.detach().mean(),
            "logps/chosen": policy_chosen_logps.detach().mean(),
            "logps/rejected": policy_rejected_logps.detach().mean(),
        }
    )
    return loss, metrics


# ------------------------------------------------------------------------------ registry
@dataclass
class MethodBatch:
    """The per-sequence quantities of one batch of ``B`` prompts and ``R`` responses each.

    Attributes:
        logps: ``(R, B)`` policy log-prob sums; row ``k`` is the k-th response of each prompt,
            best first (pairwise: row 0 chosen, row 1 rejected).
        lengths: ``(R, B)`` response lengths in tokens.
        ref_logps: ``(R, B)`` reference log-prob sums, or None for reference-free methods.
        scores: ``(B, R)`` optional reward scores (PRO).
    """

    logps: Tensor
    lengths: Tensor
    ref_logps: Tensor | None = None
    scores: Tensor | None = None


@dataclass(frozen=True)
class MethodSpec:
    """A registered vanilla method.

    ``num_responses``: responses per prompt it needs (None: ``n >= 2`` taken from the data).
    ``compute(batch, loss_cfg) -> (loss, metrics)``.
    """

    name: str
    num_responses: int | None
    needs_reference: bool
    compute: Callable[[MethodBatch, LossConfig], tuple[Tensor, Metrics]]


def _with_sft(
    loss: Tensor, metrics: Metrics, batch: MethodBatch, weight: float
) -> tuple[Tensor, Metrics]:
    """``loss + weight * SFT(chosen)`` (DPO+SFT and friends), only when weight > 0."""
    if weight > 0:
        sft, _ = sft_loss(batch.logps[0], batch.lengths[0])
        metrics["sft/nll"] = sft.detach()
        loss = loss + weight * sft
    return loss, metrics


def _ref(batch: MethodBatch, name: str) -> Tensor:
    if batch.ref_logps is None:
        raise ValueError(f"method {name!r} needs reference log-probs (ref_logps or ref_logits)")
    return batch.ref_logps


def _sft(batch: MethodBatch, cfg: LossConfig):
    return sft_loss(batch.logps[0], batch.lengths[0])


def _dpo(batch: MethodBatch, cfg: LossConfig):
    ref = _ref(batch, cfg.method)
    loss, metrics = dpo_loss(
        batch.logps[0],
        batch.logps[1],
        ref[0],
        ref[1],
        beta=cfg.beta,
        label_smoothing=cfg.label_smoothing,
    )
    return _with_sft(loss, metrics, batch, cfg.sft_weight)


def _ipo(batch: MethodBatch, cfg: LossConfig):
    ref = _ref(batch, cfg.method)
    lengths = (batch.lengths[0], batch.lengths[1]) if cfg.ipo_normalize else (None, None)
    loss, metrics = ipo_loss(
        batch.logps[0], batch.logps[1], ref[0], ref[1], *lengths, beta=cfg.beta
    )
    return _with_sft(loss, metrics, batch, cfg.sft_weight)


def _pro(batch: MethodBatch, cfg: LossConfig):
    return pro_loss(
        batch.logps.T,
        batch.lengths.T,
        batch.scores,
        sft_weight=cfg.pro_sft_weight,
        sft_reduction=cfg.pro_sft_reduction,
    )


def _aot(batch: MethodBatch, cfg: LossConfig):
    ref = _ref(batch, cfg.method)
    loss, metrics = aot_loss(
        batch.logps[0],
        batch.logps[1],
        ref[0],
        ref[1],
        beta=cfg.beta,
        label_smoothing=cfg.label_smoothing,
        variant=cfg.aot_variant,
    )
    return _with_sft(loss, metrics, batch, cfg.sft_weight)


def _simpo(batch: MethodBatch, cfg: LossConfig):
    loss, metrics = simpo_loss(
        batch.logps[0],
        batch.logps[1],
        batch.lengths[0],
        batch.lengths[1],
        beta=cfg.simpo_beta,
        gamma=cfg.simpo_gamma,
        label_smoothing=cfg.label_smoothing,
    )
    return _with_sft(loss, metrics, batch, cfg.sft_weight)


def _orpo(batch: MethodBatch, cfg: LossConfig):
    return orpo_loss(
        batch.logps[0], batch.logps[1], batch.lengths[0], batch.lengths[1], lam=cfg.orpo_lambda
    )


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add (or replace) a method in :data:`METHODS`; returns it."""
    METHODS[spec.name] = spec
    return spec


for _spec in (
    MethodSpec("sft", 1, False, _sft),
    MethodSpec("dpo", 2, True, _dpo),
    MethodSpec("ipo", 2, True, _ipo),
    MethodSpec("pro", None, False, _pro),
    MethodSpec("aot", 2, True, _aot),
    MethodSpec("simpo", 2, False, _simpo),
    MethodSpec("orpo", 2, False, _orpo),
):
    register_method(_spec)


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(METHODS)}") from None


def num_responses(method: str) -> int | None:
    """Responses per prompt that ``method`` forwards: SFT 1, pairwise 2, PRO None (from data)."""
    return get_method(method).num_responses
