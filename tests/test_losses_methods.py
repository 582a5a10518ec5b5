"""The vanilla methods against values computed by hand on small batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from plot_ray.config import LossConfig
from plot_ray.losses import (
    METHODS,
    MethodBatch,
    MethodSpec,
    aot_loss,
    dpo_loss,
    get_method,
    ipo_loss,
    num_responses,
    orpo_loss,
    pro_loss,
    register_method,
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


# response lengths for DPO_INPUTS: chosen [2, 4], rejected [1, 2]
DPO_LENGTHS = (torch.tensor([2, 4]), torch.tensor([1, 2]))


def test_ipo_divides_each_log_ratio_by_its_response_length():
    loss, m = ipo_loss(*DPO_INPUTS, *DPO_LENGTHS, beta=0.5)
    # rho_c = [1/2, 0/4], rho_r = [-1/1, 1/2]; (rho_c - rho_r - 1/(2 beta))^2 = (1.5 - 1)^2,
    # (-0.5 - 1)^2
    assert float(loss) == pytest.approx((0.25 + 2.25) / 2)
    assert float(m["rewards/chosen"]) == pytest.approx(0.5 * (0.5 + 0.0) / 2)
    assert float(m["rewards/rejected"]) == pytest.approx(0.5 * (-1.0 + 0.5) / 2)


def test_ipo_summed_form_without_lengths():
    loss, _ = ipo_loss(*DPO_INPUTS, beta=0.5)
    # (margin - 1 / (2 beta))^2 = (2 - 1)^2, (-1 - 1)^2 on the summed log-ratios
    assert float(loss) == pytest.approx((1.0 + 4.0) / 2)
    with pytest.raises(ValueError, match="both"):
        ipo_loss(*DPO_INPUTS, DPO_LENGTHS[0], beta=0.5)


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
    # reward-gap temperatures: r = [3, 1, 0]; k = 0 gaps [2, 3] (max 3), k = 1 gap [1];
    # SFT: 0.5 * (n - 1)^2 = 2 times the best response's NLL, 1
    loss, m = pro_loss(logps, lengths, t(3.0, 1.0, 0.0).view(1, 3), sft_weight=0.5)
    term0 = -math.log(e(-3) / (e(-3) + e(-4) + e(-9)))
    term1 = softplus(-1.0)
    assert float(loss) == pytest.approx(term0 + term1 + 2.0 * 1.0)
    assert float(m["pro/sft_scale"]) == 2.0
    with pytest.raises(ValueError, match="non-increasing"):
        pro_loss(logps, lengths, t(0.0, 1.0, 2.0).view(1, 3))


def test_pro_sft_term_is_the_sequence_summed_nll_at_the_papers_scale():
    # two prompts, three responses each; best responses: logps -6 (3 tokens), -2 (4 tokens)
    logps = t(-6.0, -4.0, -9.0, -2.0, -3.0, -8.0).view(2, 3)
    lengths = torch.tensor([[3, 1, 3], [4, 1, 2]])
    ranking, _ = pro_loss(logps, lengths)
    summed, m = pro_loss(logps, lengths, sft_weight=0.05)
    # 0.05 * (3 - 1)^2 = 0.2 times the mean summed NLL (6 + 2) / 2 = 4
    assert float(summed - ranking) == pytest.approx(0.2 * 4.0)
    assert float(m["pro/sft"]) == pytest.approx(4.0)
    # the token-mean option: 0.2 times (6 + 2) / (3 + 4) nats per token
    mean, m = pro_loss(logps, lengths, sft_weight=0.05, sft_reduction="mean")
    assert float(mean - ranking) == pytest.approx(0.2 * 8.0 / 7.0)
    assert float(m["pro/sft"]) == pytest.approx(8.0 / 7.0)


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


def test_the_config_reads_which_methods_need_a_reference_from_the_registry():
    reference_free = [name for name, spec in METHODS.items() if not spec.needs_reference]
    assert reference_free == ["sft", "pro", "simpo", "orpo"]
    for name in METHODS:
        assert LossConfig(method=name).needs_reference_logps == (name not in reference_free)


def test_registering_a_method_is_all_the_config_needs():
    spec = MethodSpec("hinge_test", 2, True, lambda batch, cfg: (batch.logps.sum(), {}))
    register_method(spec)
    try:
        cfg = LossConfig(method="hinge_test")
        assert cfg.needs_reference_logps
    finally:
        del METHODS["hinge_test"]
    with pytest.raises(ValueError, match="unknown method 'hinge_test'; allowed: 'sft', 'dpo'"):
        LossConfig(method="hinge_test")


def test_registry_answers_method_questions():
    assert (
        num_responses("sft"),
        num_responses("dpo"),
        num_responses("orpo"),
        num_responses("pro"),
    ) == (1, 2, 2, None)
    with pytest.raises(ValueError, match="unknown method"):
        get_method("kto2")


def test_registry_dispatch_uses_the_config():
    logps = torch.stack([t(-1.0, -2.0), t(-3.0, -1.0)])  # DPO_INPUTS' policy log-probs
    ref = torch.stack([t(-2.0, -2.0), t(-2.0, -2.0)])
    lengths = torch.stack(DPO_LENGTHS)
    batch = MethodBatch(logps, lengths, ref)
    # IPO: normalised by default (see test_ipo_divides_...), summed on request
    loss, _ = get_method("ipo").compute(batch, LossConfig(method="ipo", beta=0.5))
    assert float(loss) == pytest.approx(1.25)
    loss, _ = get_method("ipo").compute(
        batch, LossConfig(method="ipo", beta=0.5, ipo_normalize=False)
    )
    assert float(loss) == pytest.approx(2.5)
    # DPO + SFT: the token-mean NLL of the chosen responses, (1 + 2) / (2 + 4)
    loss, _ = get_method("dpo").compute(batch, LossConfig(method="dpo", beta=0.5, sft_weight=2.0))
    assert float(loss) == pytest.approx((softplus(-1.0) + softplus(0.5)) / 2 + 2.0 * 0.5)
    # SimPO reads its own beta (2.0) and gamma (1.0), not loss.beta (0.1): mean log-probs
    # chosen [-0.5, -0.5], rejected [-3, -0.5] -> h = 2 * [2.5, 0] - 1
    loss, _ = get_method("simpo").compute(batch, LossConfig(method="simpo"))
    assert float(loss) == pytest.approx((softplus(-4.0) + softplus(1.0)) / 2)
    # PRO's default SFT term: 0.05 * (2 - 1)^2 x the summed NLL of the best responses, 1.5
    ranking, _ = pro_loss(logps.T, lengths.T)
    loss, _ = get_method("pro").compute(batch, LossConfig(method="pro"))
    assert float(loss - ranking) == pytest.approx(0.05 * 1.5)
    with pytest.raises(ValueError, match="needs reference log-probs"):
        get_method("aot").compute(MethodBatch(logps, lengths), LossConfig(method="aot"))
