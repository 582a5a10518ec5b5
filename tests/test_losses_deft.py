"""DEFT: the distribution reward, its loss term, the filter's selection (hand-worked values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plot_ray.config import ConfigError, LossConfig, load_config
from plot_ray.losses import (
    DeftLoss,
    PreferenceTargets,
    build_geometry,
    build_objective,
    distribution_reward,
    preference_scores,
    select_top_fraction,
)
from plot_ray.train.deft_filter import filter_report, row_scores

# A 4-token vocabulary: preferred responses use token 0 more, rejected ones token 2.
#   Q+ = [3, 1, 0, 0] / 4,  Q- = [1, 1, 2, 0] / 4,  Q_diff = [0.5, 0, -0.5, 0]
POS, NEG = [3, 1, 0, 0], [1, 1, 2, 0]
SCORES = [1.0, 0.0, -1.0, 0.0]  # Q_diff / max|Q_diff|
EOS = 3


def _targets() -> PreferenceTargets:
    return PreferenceTargets.from_counts(torch.tensor(POS), torch.tensor(NEG), names=["harmless"])


def _hand_logits() -> torch.Tensor:
    """One sequence, 3 positions: p_0 = [3, 1, 1, 1] / 6, p_1 = [1, 1, 2, 1] / 5, p_2 unused."""
    row = [[math.log(3), 0, 0, 0], [0, 0, math.log(2), 0], [0, 0, 0, 0]]
    return torch.tensor([row], dtype=torch.float64)


def _cfg(**overrides) -> LossConfig:
    base = {"loss.plot.chunk_size": 2}
    return load_config(overrides={**base, **overrides}).loss


# ------------------------------------------------------------------------------ reward
def test_token_scores_are_the_frequency_difference_over_its_largest_magnitude():
    assert preference_scores(_targets().q_diff.double()).tolist() == [SCORES]
    with pytest.raises(ValueError, match="no DEFT reward"):
        preference_scores(torch.zeros(1, 4))


def test_the_reward_is_the_expected_token_score_averaged_over_positions():
    # E_{p_0}[s] = (3 - 1) / 6 = 1/3,  E_{p_1}[s] = (1 - 2) / 5 = -1/5,  mean = 1/15
    logits, scores = _hand_logits(), torch.tensor(SCORES, dtype=torch.float64)
    both = torch.tensor([[True, True, False]])
    assert distribution_reward(logits, both, scores).item() == pytest.approx(1 / 15, abs=1e-15)
    first = torch.tensor([[True, False, False]])
    assert distribution_reward(logits, first, scores).item() == pytest.approx(1 / 3, abs=1e-15)
    with pytest.raises(ValueError, match="no positions"):
        distribution_reward(logits, torch.zeros(1, 3, dtype=torch.bool), scores)


def test_sft_plus_deft_equals_the_hand_worked_total_and_eos_positions_stay_out():
    # labels (unshifted): prompt, token 0, token 2 -> logits 0 score token 0, logits 1 token 2
    labels = torch.tensor([[-100, 0, 2]])
    cfg = _cfg(**{"loss.method": "sft", "loss.deft.weight": 0.5})
    objective = build_objective(cfg, targets=_targets(), special_token_ids=[EOS])
    out = objective(_hand_logits(), labels, num_responses=1)
    sft = -(math.log(3 / 6) + math.log(2 / 5)) / 2
    assert out.metrics["loss/deft"].item() == pytest.approx(-1 / 15, abs=1e-12)
    assert out.loss.item() == pytest.approx(sft + 0.5 * (-1 / 15), abs=1e-12)
    assert out.metrics["loss/deft_weight"] == 0.5
    # EOS as the second label: SFT still reads it (p = 1/5), DEFT only position 0 (1/3)
    out = objective(_hand_logits(), torch.tensor([[-100, 0, EOS]]), num_responses=1)
    assert out.metrics["loss/deft"].item() == pytest.approx(-1 / 3, abs=1e-12)
    assert out.vanilla.item() == pytest.approx(-(math.log(1 / 2) + math.log(1 / 5)) / 2)


# ------------------------------------------------------------------------- gradients
V, T = 6, 7


def _random_case(rows: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, T, V, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, V, (rows, T), generator=gen)
    labels[:, :2] = -100
    for r in range(rows):
        labels[r, T - (r % 3) :] = -100
    pos = torch.randint(0, 9, (2, V), generator=gen)
    neg = torch.randint(0, 9, (2, V), generator=gen)
    targets = PreferenceTargets.from_counts(pos, neg, names=["a", "b"])
    ref = logits.detach() + 0.2 * torch.randn(rows, T, V, generator=gen, dtype=torch.float64)
    return logits, labels, targets, ref


@pytest.mark.parametrize("responses", ["chosen", "rejected", "all"])
def test_fused_reward_and_gradient_match_the_autograd_reference(responses):
    logits, labels, targets, ref = _random_case(6)
    cfg = _cfg(**{"loss.method": "dpo", "loss.deft.weight": 1.0, "loss.deft.responses": responses})
    objective = build_objective(cfg, targets=targets, special_token_ids=[5])
    vanilla = build_objective(_cfg(**{"loss.method": "dpo"}))
    ids = torch.tensor([0, 1, 1])
    leaf, vanilla_leaf = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    out = objective(leaf, labels, 2, ref_logits=ref, subpreference_ids=ids)
    out.loss.backward()
    vanilla(vanilla_leaf, labels, 2, ref_logits=ref).loss.backward()
    # the reference: plain autograd over softmax on the same rows and positions
    rows = {"chosen": [0, 1, 2], "rejected": [3, 4, 5], "all": list(range(6))}[responses]
    frame = torch.cat([labels[:, 1:], torch.full((6, 1), -100)], 1)
    mask = (frame != -100) & (frame != 5)
    oracle_leaf = logits.clone().requires_grad_()
    deft = DeftLoss.from_targets(targets)
    expected = deft(oracle_leaf[rows], mask[rows], ids.repeat(2)[rows])
    expected.backward()
    torch.testing.assert_close(out.metrics["loss/deft"], expected.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(leaf.grad - vanilla_leaf.grad, oracle_leaf.grad, atol=1e-12, rtol=0)


def test_gradcheck_of_dpo_plus_plot_plus_deft_in_float64():
    logits, labels, targets, ref = _random_case(2, seed=1)  # one pair: 84 inputs
    cfg = _cfg(
        **{
            "loss.method": "dpo",
            "loss.alpha": 0.3,
            "loss.plot.target": "global",
            "loss.plot.normalize": "none",
            "loss.deft.weight": 2.0,
            "loss.deft.responses": "all",
        }
    )
    geometry = build_geometry(torch.randn(V, 3, dtype=torch.float64), cfg.plot)
    objective = build_objective(cfg, geometry, targets)
    ref_logps = torch.randn(2, dtype=torch.float64)

    def total(x):
        return objective(x, labels, 2, ref_logps=ref_logps, subpreference_ids=[1]).loss

    assert torch.autograd.gradcheck(total, (logits.clone().requires_grad_(),), atol=1e-7)

    def deft_only(x):  # the DEFT pass that runs beside PLOT's
        mask = torch.cat([labels[:, 1:], torch.full((2, 1), -100)], 1) != -100
        return objective.deft_loss.fused(x, None, torch.arange(2), mask, torch.tensor([1, 0]))[1]

    assert torch.autograd.gradcheck(deft_only, (logits.clone().requires_grad_(),), atol=1e-7)


@pytest.mark.parametrize(
    "plot_aggregate, deft_responses",
    [("sequence", "chosen"), ("token", "chosen"), ("sequence", "all")],
    ids=["one-pass-shared-with-plot", "beside-token-plot", "other-rows-than-plot"],
)
def test_plot_plus_deft_equals_the_sum_of_the_reference_terms(plot_aggregate, deft_responses):
    logits, labels, targets, ref = _random_case(6, seed=3)
    keys = {"loss.method": "dpo", "loss.plot.aggregate": plot_aggregate}
    both = {"loss.alpha": 0.7, "loss.deft.weight": 1.5, "loss.deft.responses": deft_responses}
    geometry = build_geometry(torch.randn(V, 3, dtype=torch.float64), _cfg().plot)
    objective = build_objective(_cfg(**keys, **both), geometry, targets, special_token_ids=[5])
    shared = (plot_aggregate, deft_responses) == ("sequence", "chosen")
    assert objective._deft_shares_plot_rows == shared
    ids = torch.tensor([1, 0, 1])
    leaf, vanilla_leaf = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    out = objective(leaf, labels, 2, ref_logits=ref, subpreference_ids=ids)
    out.loss.backward()
    build_objective(_cfg(**keys)).forward(vanilla_leaf, labels, 2, ref_logits=ref).loss.backward()
    # the references: each term by plain autograd on its own rows
    frame = torch.cat([labels[:, 1:], torch.full((6, 1), -100)], 1)
    mask = (frame != -100) & (frame != 5)
    oracle_leaf = logits.clone().requires_grad_()
    chosen, deft_rows = [0, 1, 2], ([0, 1, 2] if deft_responses == "chosen" else list(range(6)))
    plot = objective.plot_loss.per_sequence(
        oracle_leaf[chosen], mask[chosen], ids, ref_logits=ref[chosen]
    ).mean()
    deft = objective.deft_loss(oracle_leaf[deft_rows], mask[deft_rows], ids.repeat(2)[deft_rows])
    (0.7 * plot + 1.5 * deft).backward()
    torch.testing.assert_close(out.plot, plot.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(out.metrics["loss/deft"], deft.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(leaf.grad - vanilla_leaf.grad, oracle_leaf.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_deft_weight_zero_is_the_objective_without_deft_bit_for_bit(alpha):
    logits, labels, targets, ref = _random_case(4, seed=2)
    plot = {"loss.alpha": alpha, "loss.plot.target": "anchored"}
    without = build_objective(_cfg(**plot), build_geometry(torch.eye(V, 3), _cfg().plot), targets)
    zero = build_objective(
        _cfg(**plot, **{"loss.deft.weight": 0.0, "loss.deft.keep_fraction": 0.5}),
        build_geometry(torch.eye(V, 3), _cfg().plot),
        targets,
    )
    assert zero.deft_loss is None
    grads, losses, keys = [], [], []
    for objective in (without, zero):
        leaf = logits.float().clone().requires_grad_()
        out = objective(leaf, labels, 2, ref_logits=ref.float(), subpreference_ids=[0, 1])
        out.loss.backward()
        grads.append(leaf.grad)
        losses.append(out.loss.detach())
        keys.append(set(out.metrics))
    assert torch.equal(losses[0], losses[1]) and torch.equal(grads[0], grads[1])
    assert keys[0] == keys[1] and "loss/deft" not in keys[1]


def test_deft_needs_targets_and_a_rejected_response_to_read():
    with pytest.raises(ValueError, match="token-count targets"):
        build_objective(_cfg(**{"loss.deft.weight": 1.0}))
    with pytest.raises(ConfigError, match="loss.deft.responses=rejected"):
        _cfg(**{"loss.method": "sft", "loss.deft.weight": 1.0, "loss.deft.responses": "rejected"})
    with pytest.raises(ConfigError, match="loss.deft.keep_fraction"):
        _cfg(**{"loss.deft.keep_fraction": 0})
    with pytest.raises(
        ConfigError, match="loss.deft.wieght: unknown key; allowed: filter_scope, filter_score"
    ):
        _cfg(**{"loss.deft.wieght": 1})


# ------------------------------------------------------------------------------ filter
def test_the_filter_keeps_the_top_fraction_ties_by_row_id_whatever_the_order():
    scores = [0.2, -0.1, 0.5, 0.2, 0.0]
    ids = [13, 11, 12, 10, 14]
    # 40% of 5 rows = 2: 0.5 (row 12), then the tie at 0.2 goes to the smaller id (10)
    assert select_top_fraction(scores, 0.4, ids).tolist() == [False, False, True, True, False]
    # 50% of 5 = 2.5 -> 3 rows: both 0.2s
    assert select_top_fraction(scores, 0.5, ids).tolist() == [True, False, True, True, False]
    assert select_top_fraction(scores, 1.0, ids).all()
    assert select_top_fraction([1.0, 2.0, 3.0, 4.0], 0.5).tolist() == [False, False, True, True]
    perm = np.array([4, 2, 0, 3, 1])
    kept = np.asarray(ids)[select_top_fraction(scores, 0.4, ids)]
    shuffled = select_top_fraction(np.asarray(scores)[perm], 0.4, np.asarray(ids)[perm])
    assert sorted(np.asarray(ids)[perm][shuffled]) == sorted(kept) == [10, 12]
    with pytest.raises(ValueError, match="non-finite"):
        select_top_fraction([0.1, float("nan")], 0.5)


def test_the_filter_per_sub_preference_keeps_that_fraction_of_each():
    # group 0 scores high, group 1 low: globally half of 6 would be group 0's three rows
    scores = [0.9, 0.8, 0.7, 0.1, 0.0, -0.2]
    groups = [0, 0, 0, 1, 1, 1]
    assert select_top_fraction(scores, 0.5).tolist() == [True] * 3 + [False] * 3
    # per group: ceil(1.5) = 2 of each
    kept = select_top_fraction(scores, 0.5, groups=groups).tolist()
    assert kept == [True, True, False, True, True, False]


def test_row_scores_and_the_report_count_what_was_kept():
    best, worst = [0.3, 0.1, 0.2], [0.1, 0.4, float("nan")]  # the third row has one response
    assert row_scores(best, worst, "margin").tolist() == pytest.approx([0.2, -0.3, 0.2])
    assert row_scores(best, worst, "chosen").tolist() == [0.3, 0.1, 0.2]
    scores = row_scores(best, worst, "margin")
    keep = select_top_fraction(scores, 0.5, [7, 8, 9])  # 2 of 3: the two 0.2s
    report = filter_report(scores, keep, [0, 1, 1], ["harmless", "logic"], 0.5)
    assert (report["rows_scored"], report["rows_kept"], report["rows_filtered"]) == (3, 2, 1)
    assert report["kept_fraction"] == pytest.approx(2 / 3)
    assert report["score_kept"]["min"] == pytest.approx(0.2)
    assert report["per_subpreference"]["harmless"] == {
        "scored": 1,
        "kept": 1,
        "threshold": pytest.approx(0.2),
        "mean_score": pytest.approx(0.2),
        "mean_score_kept": pytest.approx(0.2),
    }
    assert report["per_subpreference"]["logic"]["scored"] == 2
    assert report["per_subpreference"]["logic"]["kept"] == 1
