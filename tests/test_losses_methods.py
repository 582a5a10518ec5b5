"""The vanilla methods against values computed by hand on small batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from plot_ray.config import METHODS as CONFIG_METHODS
from plot_ray.config import REFERENCE_FREE_METHODS, LossConfig
from plot_ray.losses import (
    METHODS,
    MethodBatch,
    aot_loss,
    dpo_loss,
    get_method,
    num_responses,
    orpo_loss,
    pro_loss,
    sft_loss,
    simpo_loss,
)


def t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def softplus(x: float) -> float:  # -log sigmoid(-x)
    return math.log1p(math.exp(x))


def test_sft_is_token_mean_nll_over_the_batch():
    loss, metrics = sft_loss(t(-3.0, -5.0), torch.tensor([2, 3]))
    assert float(loss) == pytest.approx(8 / 5)
    assert float(metrics["sft/nll"]) == pytest.approx(8 / 5)


# policy chosen/rejected, reference chosen/rejected: log-ratios chosen [1, 0], rejected [-1, 1]
DPO_INPUTS = (t(-1.0, -2.0), t(-3.0, -1.0), t(-2.0, -2.0), t(-2.0, -2.0))


def test_dpo_sigmoid_and_reward_metrics():
    loss, m = dpo_loss(*DPO_INPUTS, beta=0.5)
    # h = beta * margin = 0.5 * [2, -1]
    assert float(loss) == pytest.approx((softplus(-1.0) + softplus(0.5)) / 2)
    assert float(m["rewards/chosen"]) == pytest.approx(0.25)  # 0.5 * [1, 0]
    assert float(m["rewards/rejected"]) == pytest.approx(0.0)  # 0.5 * [-1, 1]
    assert float(m["rewards/accuracy"]) == pytest.approx(0.5)
    assert float(m["rewards/margin"]) == pytest.approx(0.25)


def test_dpo_label_smoothing():
    loss, _ = dpo_loss(*DPO_INPUTS, beta=0.5, label_smoothing=0.1)
    per_pair = [0.9 * softplus(-h) + 0.1 * softplus(h) for h in (1.0, -0.5)]
    assert float(loss) == pytest.approx(sum(per_pair) / 2)


def test_ipo():
    loss, _ = dpo_loss(*DPO_INPUTS, beta=0.5, ipo=True)
    # (margin - 1 / (2 beta))^2 = (2 - 1)^2, (-1 - 1)^2
    assert float(loss) == pytest.approx((1.0 + 4.0) / 2)
    with pytest.raises(ValueError, match="IPO"):
        dpo_loss(*DPO_INPUTS, ipo=True, label_smoothing=0.1)


def test_dpo_gradient_pushes_chosen_up_and_rejected_down():
    chosen = t(-1.0, -2.0).requires_grad_()
    rejected = t(-3.0, -1.0).requires_grad_()
    dpo_loss(chosen, rejected, *DPO_INPUTS[2:])[0].backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()


def test_pro_with_two_responses_is_the_logistic_loss():
    logps = t(-4.0, -3.0, -10.0, -2.0).view(2, 2)
    lengths = torch.tensor([[2, 3], [5, 1]])
    s = logps / lengths  # [[-2, -1], [-2, -2]]
    loss, _ = pro_loss(logps, lengths)
    expected = -F.logsigmoid(s[:, 0] - s[:, 1]).mean()
    assert float(loss) == pytest.approx(float(expected))
    assert float(loss) == pytest.approx((softplus(1.0) + softplus(0.0)) / 2)
    # with reward scores: the logistic loss scaled by the reward gap
    scores = t(3.0, 1.0, 0.5, 0.0).view(2, 2)
    loss, _ = pro_loss(logps, lengths, scores)
    assert float(loss) == pytest.approx((softplus(2.0 * 1.0) + softplus(0.5 * 0.0)) / 2)


def test_pro_three_responses_by_hand_with_sft_term():
    logps, lengths = t(-1.0, -2.0, -3.0).view(1, 3), torch.ones(1, 3, dtype=torch.long)
    loss, m = pro_loss(logps, lengths)
    e = math.exp
    term0 = -math.log(e(-1) / (e(-1) + e(-2) + e(-3)))
    term1 = -math.log(e(-2) / (e(-2) + e(-3)))
    assert float(loss) == pytest.approx(term0 + term1)
    assert float(m["pro/top1_accuracy"]) == 1.0
    # reward-gap temperatures: r = [3, 1, 0]; k = 0 gaps [2, 3] (max 3), k = 1 gap [1]
    loss, _ = pro_loss(logps, lengths, t(3.0, 1.0, 0.0).view(1, 3), sft_weight=0.5)
    term0 = -math.log(e(-3) / (e(-3) + e(-4) + e(-9)))
    term1 = softplus(-1.0)
    assert float(loss) == pytest.approx(term0 + term1 + 0.5 * 1.0)
    with pytest.raises(ValueError, match="non-increasing"):
        pro_loss(logps, lengths, t(0.0, 1.0, 2.0).view(1, 3))


# AOT: policy margins [2, -4, 2] (sorted [-4, 2, 2]) vs reference margins [0, 1, -1] (sorted
# [-1, 0, 1]); chosen log-ratios [1, -3, 0] vs rejected log-ratios [-1, 2, -3].
AOT_INPUTS = (t(-1.0, -5.0, -2.0), t(-3.0, -1.0, -4.0), t(-2.0, -2.0, -2.0), t(-2.0, -3.0, -1.0))


def test_aot_paired_sorts_margins_within_the_batch():
    loss, m = aot_loss(*AOT_INPUTS, beta=1.0, variant="paired")
    deltas = [-4 - (-1), 2 - 0, 2 - 1]
    assert float(loss) == pytest.approx(sum(softplus(-d) for d in deltas) / 3)
    assert float(m["aot/sorted_margin"]) == pytest.approx(sum(deltas) / 3)
    # without sorting this would be DPO, a different number on this batch
    dpo, _ = dpo_loss(*AOT_INPUTS, beta=1.0)
    assert float(dpo) != pytest.approx(float(loss))


def test_aot_unpaired_sorts_chosen_and_rejected_separately():
    loss, _ = aot_loss(*AOT_INPUTS, beta=0.5, variant="unpaired", label_smoothing=0.2)
    deltas = [-3 - (-3), 0 - (-1), 1 - 2]
    expected = sum(0.8 * softplus(-0.5 * d) + 0.2 * softplus(0.5 * d) for d in deltas) / 3
    assert float(loss) == pytest.approx(expected)


def test_aot_is_invariant_to_the_order_of_the_batch():
    perm = torch.tensor([2, 0, 1])
    a, _ = aot_loss(*AOT_INPUTS, variant="unpaired")
    b, _ = aot_loss(*(x[perm] for x in AOT_INPUTS), variant="unpaired")
    assert float(a) == pytest.approx(float(b))


def test_simpo():
    loss, m = simpo_loss(
        t(-4.0, -6.0),
        t(-9.0, -2.0),
        torch.tensor([2, 3]),
        torch.tensor([3, 1]),
        beta=2.0,
        gamma=0.5,
    )
    # mean log-probs chosen [-2, -2], rejected [-3, -2]: h = 2 * [1, 0] - 0.5
    assert float(loss) == pytest.approx((softplus(-1.5) + softplus(0.5)) / 2)
    assert float(m["rewards/chosen"]) == pytest.approx(-4.0)


def test_orpo():
    loss, m = orpo_loss(t(-1.0), t(-3.0), torch.tensor([2]), torch.tensor([1]), lam=0.1)

    def log_odds(a):
        return a - math.log(1 - math.exp(a))

    ratio = log_odds(-0.5) - log_odds(-3.0)
    assert float(loss) == pytest.approx(0.5 + 0.1 * softplus(-ratio))
    assert float(m["orpo/log_odds_ratio"]) == pytest.approx(ratio)
    # a sequence of probability 1 gives a large but finite loss and gradient
    chosen = t(0.0).requires_grad_()
    loss, _ = orpo_loss(chosen, t(-1.0), torch.tensor([3]), torch.tensor([3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(chosen.grad).all()


def test_registry_covers_every_config_method():
    assert set(CONFIG_METHODS) <= set(METHODS)
    for name in CONFIG_METHODS:
        assert get_method(name).needs_reference == (name not in REFERENCE_FREE_METHODS)
    assert (
        num_responses("sft"),
        num_responses("dpo"),
        num_responses("orpo"),
        num_responses("pro"),
    ) == (1, 2, 2, None)
    with pytest.raises(ValueError, match="unknown method"):
        get_method("kto2")


def test_registry_dispatch_uses_the_config():
    logps = torch.stack([t(-1.0, -2.0), t(-3.0, -1.0)])
    ref = torch.stack([t(-2.0, -2.0), t(-2.0, -2.0)])
    lengths = torch.ones(2, 2, dtype=torch.long)
    batch = MethodBatch(logps, lengths, ref)
    loss, _ = get_method("ipo").compute(batch, LossConfig(method="ipo", beta=0.5))
    assert float(loss) == pytest.approx(2.5)
    loss, _ = get_method("dpo").compute(batch, LossConfig(method="dpo", beta=0.5, sft_weight=2.0))
    assert float(loss) == pytest.approx((softplus(-1.0) + softplus(0.5)) / 2 + 2.0 * 1.5)
    with pytest.raises(ValueError, match="needs reference log-probs"):
        get_method("aot").compute(MethodBatch(logps, lengths), LossConfig(method="aot"))
