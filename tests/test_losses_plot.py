"""PlotLoss: the fused path (what training runs) against the reference path (plain autograd,
``PlotLoss.per_sequence``), gradcheck of the custom autograd function, chunking, the
divergences' hand values and clamping, anchored targets, and SGD sanity."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from plot_ray.losses import (
    ExactGeometry,
    PlotLoss,
    PreferenceTargets,
    TokenGeometry,
    anchored_target,
    wasserstein_1d,
)
from plot_ray.losses.chunked import softmax_stats
from plot_ray.profiling import peak_live_bytes

V = 16


def _targets(v: int = V, dtype=torch.float64) -> PreferenceTargets:
    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 6, (2, v), generator=gen)
    neg = torch.randint(0, 6, (2, v), generator=gen)
    targets = PreferenceTargets.from_counts(
        pos, neg, names=["harmless", "logic"], transform="softmax"
    )
    targets.targets = targets.targets.to(dtype)
    targets.log_tilts = targets.log_tilts.to(dtype)
    return targets


def _geometry(v: int = V) -> TokenGeometry:
    emb = torch.randn(v, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return TokenGeometry.from_embeddings(emb, projection="sliced", num_projections=3)


def _batch(b: int = 3, t: int = 6, v: int = V, seed: int = 2):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, dtype=torch.float64, generator=gen)
    ref = logits + 0.5 * torch.randn(b, t, v, dtype=torch.float64, generator=gen)
    mask = torch.rand(b, t, generator=gen) > 0.3
    mask[:, 2] = True  # every row has a position
    ids = torch.tensor([0, 1, 0][:b])
    return logits, ref, mask, ids


def _fused(loss: PlotLoss, logits, mask, ids, ref=None):
    """The fused path on the reference path's arguments: per-row values ``(B,)``."""
    rows = torch.arange(logits.shape[0])
    pbar = loss.reference_mean_softmax(ref, mask) if loss.target == "anchored" else None
    targets = loss.row_targets(ids, pbar)
    return loss.normalized(loss.fused(logits, None, rows, mask, targets)[1], ids)


def _naive(loss: PlotLoss, logits, mask, ids, ref=None):
    """The definition once more, with autograd through KL / JS too: softmax, mean, divergence."""
    p = torch.softmax(logits, -1)
    w = mask.to(p.dtype) / mask.sum(1, keepdim=True)
    if loss.target == "global":
        targets = loss.targets.targets[ids]
    else:
        ref_mean = torch.einsum("bt,btv->bv", w, torch.softmax(ref, -1))
        targets = anchored_target(ref_mean, loss.targets.log_tilts[ids])
    div = loss.divergence
    if loss.aggregate == "sequence":
        pbar = torch.einsum("bt,btv->bv", w, p)
        return _naive_div(loss, div, pbar, targets)
    per_pos = _naive_div(loss, div, p, targets[:, None, :].expand_as(p))
    return (per_pos * w).sum(1)


def _naive_div(loss, div, p, q):
    if loss.divergence_name == "wasserstein":
        return div.distance(p, q)
    if loss.divergence_name == "kl":
        return (torch.xlogy(q, q) - q * torch.log(p)).sum(-1)
    m = (p + q) / 2
    return 0.5 * (
        torch.xlogy(p, p) - torch.xlogy(p, m) + torch.xlogy(q, q) - torch.xlogy(q, m)
    ).sum(-1)


@pytest.mark.parametrize("aggregate", ["sequence", "token"])
@pytest.mark.parametrize("target", ["global", "anchored"])
def test_gradcheck_float64(aggregate, target):
    v = 8
    loss = PlotLoss(_targets(v), _geometry(v), target=target, aggregate=aggregate, chunk_size=3)
    logits, ref, mask, ids = _batch(b=2, t=5, v=v)
    leaf = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: _fused(loss, x, mask, ids[:2], ref[:2]), (leaf,), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("aggregate", ["sequence", "token"])
def test_gradcheck_fused_with_token_logprobs(aggregate):
    """The kernel also returns response-token log-probs; both outputs share one gradient."""
    v = 8
    loss = PlotLoss(_targets(v), _geometry(v), aggregate=aggregate, chunk_size=2)
    logits, _, mask, _ = _batch(b=3, t=4, v=v)
    labels = torch.randint(0, v, (3, 4), generator=torch.Generator().manual_seed(3))
    labels[0, :2] = -100
    rows = torch.tensor([0, 2])
    plot_mask = labels[rows] != -100
    targets = loss.targets.targets[torch.tensor([1, 0])]
    leaf = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: loss.fused(x, labels, rows, plot_mask, targets), (leaf,), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("aggregate", ["sequence", "token"])
@pytest.mark.parametrize("divergence", ["wasserstein", "kl", "js"])
@pytest.mark.parametrize("target", ["global", "anchored"])
def test_fused_path_matches_the_reference_values_and_gradients(aggregate, divergence, target):
    loss = PlotLoss(
        _targets(),
        _geometry(),
        target=target,
        aggregate=aggregate,
        divergence=divergence,
        chunk_size=4,
    )
    logits, ref, mask, ids = _batch()
    leaves = [logits.clone().requires_grad_() for _ in range(3)]
    fused = _fused(loss, leaves[0], mask, ids, ref)
    reference = loss.per_sequence(leaves[1], mask, ids, ref)
    naive = _naive(loss, leaves[2], mask, ids, ref)
    torch.testing.assert_close(fused, reference, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(reference, naive, atol=1e-10, rtol=1e-10)
    weights = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    for values in (fused, reference, naive):
        (values * weights).sum().backward()
    torch.testing.assert_close(leaves[0].grad, leaves[1].grad, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(leaves[1].grad, leaves[2].grad, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("aggregate", ["sequence", "token"])
def test_chunked_equals_unchunked(aggregate):
    logits, ref, mask, ids = _batch(t=9)
    results = []
    for chunk in (1, 4, 1000):
        loss = PlotLoss(
            _targets(), _geometry(), target="anchored", aggregate=aggregate, chunk_size=chunk
        )
        leaf = logits.clone().requires_grad_()
        value = _fused(loss, leaf, mask, ids, ref).mean()
        value.backward()
        results.append((value.detach(), leaf.grad))
    for value, grad in results[:-1]:
        torch.testing.assert_close(value, results[-1][0], atol=1e-12, rtol=0)
        torch.testing.assert_close(grad, results[-1][1], atol=1e-12, rtol=0)


def test_float32_and_bfloat16_logits_accumulate_in_float32():
    loss = PlotLoss(_targets(dtype=torch.float32), TokenGeometry.from_embeddings(torch.randn(V, 4)))
    logits, _, mask, ids = _batch()
    ref = loss(logits.float(), mask, ids)
    half = logits.bfloat16().requires_grad_()
    value = _fused(loss, half, mask, ids).mean()
    value.backward()
    assert value.dtype == torch.float32 and half.grad.dtype == torch.bfloat16
    assert float(value.detach()) == pytest.approx(float(ref), rel=2e-2)


def _one_position(probs: list[float]):
    logits = torch.log(torch.tensor(probs, dtype=torch.float64)).view(1, 1, -1)
    return logits, torch.ones(1, 1, dtype=torch.bool)


def _fixed_target(probs: list[float]) -> PreferenceTargets:
    t = torch.tensor([probs], dtype=torch.float64)
    return PreferenceTargets(
        names=["t"], targets=t, log_tilts=torch.zeros_like(t), q_diff=torch.zeros_like(t)
    )


def test_kl_and_js_hand_values():
    p, q = [0.5, 0.25, 0.25], [0.25, 0.25, 0.5]
    logits, mask = _one_position(p)
    kl = PlotLoss(_fixed_target(q), divergence="kl")(logits, mask)
    # KL(q || p) = 0.25 ln(0.25/0.5) + 0 + 0.5 ln(0.5/0.25)
    assert float(kl) == pytest.approx(0.25 * math.log(2), abs=1e-12)
    js = PlotLoss(_fixed_target(q), divergence="js")(logits, mask)
    # m = [3/8, 1/4, 3/8]; both KL(p || m) and KL(q || m) are 0.5 ln(4/3) + 0.25 ln(2/3)
    assert float(js) == pytest.approx(0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3), abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_and_js_stay_finite_where_the_policy_underflows(dtype):
    logits = torch.tensor([[[0.0, -1000.0, -1000.0]]], dtype=dtype, requires_grad=True)
    mask = torch.ones(1, 1, dtype=torch.bool)
    target = _fixed_target([0.5, 0.5, 0.0])
    kl = PlotLoss(target, divergence="kl")(logits, mask)
    # p = [1, 0, 0]; p_1 = 0 is clamped at the dtype's smallest normal number
    tiny = torch.finfo(dtype).tiny
    assert float(kl.detach()) == pytest.approx(math.log(0.5) - 0.5 * math.log(tiny), rel=1e-6)
    js = PlotLoss(target, divergence="js")(logits, mask)
    # m = [0.75, 0.25, 0]: 0.5 [ln(1/0.75)] + 0.5 [0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25)], no clamping
    assert float(js.detach()) == pytest.approx(
        0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2), rel=1e-6
    )
    for value in (kl, js):
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(grad).all()


def test_kl_gradient_is_exact_for_tiny_but_representable_probabilities():
    # p_1 = p_2 ~ 9e-14: far below any fixed eps like 1e-12, still exact: dKL/dx = p - P
    logits = torch.tensor([[[0.0, -30.0, -30.0]]], dtype=torch.float64, requires_grad=True)
    target = _fixed_target([0.5, 0.5, 0.0])
    value = PlotLoss(target, divergence="kl")(logits, torch.ones(1, 1, dtype=torch.bool))
    (grad,) = torch.autograd.grad(value, logits)
    expected = torch.softmax(logits.detach(), -1) - target.targets
    torch.testing.assert_close(grad, expected, atol=1e-12, rtol=0)


def test_uniform_cost_is_half_l1_through_the_loss():
    logits, _, mask, ids = _batch()
    targets = _targets()
    loss = PlotLoss(targets, TokenGeometry.uniform(V), aggregate="token")
    p = torch.softmax(logits, -1)
    half_l1 = 0.5 * (p - targets.targets[ids][:, None, :]).abs().sum(-1)
    expected = (half_l1 * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(loss.per_sequence(logits, mask, ids), expected, atol=1e-12, rtol=0)


def test_sequence_w1_equals_wasserstein_1d_on_the_mean_softmax():
    coords = torch.randn(V, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    loss = PlotLoss(_targets(), TokenGeometry.from_coordinates(coords))
    logits, _, mask, ids = _batch()
    pbar = (torch.softmax(logits, -1) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    expected = wasserstein_1d(pbar, loss.targets.targets[ids], coords)
    torch.testing.assert_close(loss.per_sequence(logits, mask, ids), expected, atol=1e-12, rtol=0)


def test_anchored_loss_is_zero_when_the_policy_is_the_tilted_reference():
    targets = _targets()
    loss = PlotLoss(targets, _geometry(), target="anchored")
    ref = torch.randn(2, 3, V, dtype=torch.float64)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    mask[:, 1] = True  # one response position: mean softmax = that position's softmax
    ids = torch.tensor([1, 0])
    tilted = ref + targets.log_tilts[ids][:, None, :]
    assert float(loss(tilted, mask, ids, ref)) == pytest.approx(0.0, abs=1e-12)
    assert float(loss(ref, mask, ids, ref)) > 1e-3  # the untilted reference is not the target
    # the target itself: P ∝ p_ref * exp(tilt)
    p_ref = torch.softmax(ref[0, 1], -1)
    manual = p_ref * torch.exp(targets.log_tilts[1])
    torch.testing.assert_close(
        anchored_target(p_ref[None], targets.log_tilts[1]), (manual / manual.sum())[None]
    )


def test_zero_tilt_control_targets_the_reference_at_the_preference_tilts_scale():
    """loss.plot.tilt=zero: the target is the reference's own mean distribution (the loss is 0
    at the reference and the geometry's W1 to it elsewhere),
    multiplied by the same normalisation as the real tilt's, so the control differs from PLOT
    only in the preference information."""
    targets, geometry = _targets(), _geometry()
    targets.q_mean = torch.softmax(torch.randn(2, V, dtype=torch.float64), -1)
    plot = PlotLoss(targets, geometry, target="anchored", normalize="reference")
    control = PlotLoss(targets, geometry, target="anchored", normalize="reference", zero_tilt=True)
    torch.testing.assert_close(control.row_scale, plot.row_scale)
    assert targets.log_tilts.abs().max() > 0.5  # the caller's targets are left untouched
    logits, ref, mask, ids = _batch()
    assert float(control(ref, mask, ids, ref)) == pytest.approx(0.0, abs=1e-12)
    w = mask.to(logits.dtype) / mask.sum(1, keepdim=True)
    pbar = torch.einsum("bt,btv->bv", w, torch.softmax(logits, -1))
    ref_bar = torch.einsum("bt,btv->bv", w, torch.softmax(ref, -1))
    expected = control.divergence.distance(pbar, ref_bar) * plot.row_scale[ids]
    torch.testing.assert_close(control.per_sequence(logits, mask, ids, ref), expected)
    torch.testing.assert_close(_fused(control, logits, mask, ids, ref), expected)
    with pytest.raises(ValueError, match="anchored"):
        PlotLoss(targets, geometry, target="global", zero_tilt=True)


def test_anchored_target_is_stable_for_tiny_tau():
    p_ref = torch.full((1, 4), 0.25)
    out = anchored_target(p_ref, torch.tensor([500.0, 0.0, -500.0, 499.0]))
    assert torch.isfinite(out).all() and float(out.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("aggregate", ["sequence", "token"])
def test_sgd_on_free_logits_decreases_w1(aggregate):
    emb = torch.randn(V, 4, generator=torch.Generator().manual_seed(5))
    loss = PlotLoss(
        _targets(dtype=torch.float32), TokenGeometry.from_embeddings(emb), aggregate=aggregate
    )
    logits, _, mask, ids = _batch()
    logits = logits.float().requires_grad_()
    opt = torch.optim.SGD([logits], lr=1.0)
    values = []
    for _ in range(20):
        opt.zero_grad()
        value = loss(logits, mask, ids)
        value.backward()
        opt.step()
        values.append(float(value.detach()))
    assert all(b < a for a, b in itertools.pairwise(values))
    assert values[-1] < 0.85 * values[0]


def test_extra_memory_is_one_gradient_not_several():
    """Forward + backward peak beyond the logits: ~one gradient tensor, not log_softmax & co."""
    b, t, v = 2, 64, 2048
    targets = _targets(v, dtype=torch.float32)
    loss = PlotLoss(targets, TokenGeometry.from_embeddings(torch.randn(v, 8)), chunk_size=16)
    logits = torch.randn(b, t, v, requires_grad=True)
    mask = torch.ones(b, t, dtype=torch.bool)
    ids = torch.zeros(b, dtype=torch.long)
    _fused(loss, logits, mask, ids).mean().backward()  # warm-up
    logits.grad = None
    peak = peak_live_bytes(lambda: _fused(loss, logits, mask, ids).mean().backward())
    logits_bytes = logits.numel() * 4
    assert logits_bytes <= peak < logits_bytes * 1.25  # the gradient + O(B V + chunk V)


def test_bad_inputs_raise():
    loss = PlotLoss(_targets(), _geometry(), target="anchored")
    logits, ref, mask, ids = _batch()
    with pytest.raises(ValueError, match="needs ref_logits"):
        loss(logits, mask, ids)
    with pytest.raises(ValueError, match="subpreference_ids must be in"):
        loss(logits, mask, torch.tensor([0, 1, 5]), ref)
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match="no positions"):
        loss(logits, empty, ids, ref)
    with pytest.raises(ValueError, match="needs a TokenGeometry"):
        PlotLoss(_targets(), None, divergence="wasserstein")
    with pytest.raises(ValueError, match="geometry has V=5"):
        PlotLoss(_targets(), TokenGeometry.index(5))
    with pytest.raises(ValueError, match="logits must be"):
        softmax_stats(torch.randn(3, V))


def test_exact_mode_plugs_in_and_agrees_with_pca_on_collinear_embeddings():
    v = 10
    gen = torch.Generator().manual_seed(8)
    emb = torch.randn(v, generator=gen, dtype=torch.float64)[:, None] * torch.tensor(
        [[1.0, -2.0, 0.5]], dtype=torch.float64
    )
    targets = _targets(v)
    exact = PlotLoss(targets, ExactGeometry(emb))
    pca = PlotLoss(targets, TokenGeometry.from_embeddings(emb, projection="pca"))
    logits, _, mask, ids = _batch(b=2, t=4, v=v)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    value_exact, value_pca = exact(a, mask, ids[:2]), pca(b, mask, ids[:2])
    torch.testing.assert_close(value_exact, value_pca, atol=1e-6, rtol=0)
    value_exact.backward()
    value_pca.backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=0)
