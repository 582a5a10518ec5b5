"""The objective ``L_vanilla + alpha * L_PLOT`` and the shared log-prob helper."""

from __future__ import annotations

import copy

import pytest
import torch

from plot_ray.config import LossConfig, PlotConfig
from plot_ray.losses import (
    EXACT_MAX_VOCAB,
    PlotLoss,
    PreferenceTargets,
    TokenGeometry,
    anchored_target,
    aot_loss,
    build_geometry,
    build_objective,
    dpo_loss,
    ipo_loss,
    orpo_loss,
    pro_loss,
    sequence_logprobs,
    sft_loss,
    simpo_loss,
)
from plot_ray.losses.ot import principal_direction
from plot_ray.profiling import peak_live_bytes

V, T, B = 12, 8, 2


def _labels(rows: int, seed: int = 0) -> torch.Tensor:
    """Prompt (3 tokens, -100), then a response, then right padding (-100)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, V, (rows, T), generator=gen)
    labels[:, :3] = -100
    for r in range(rows):
        labels[r, T - (r % 3) :] = -100  # ragged lengths
    return labels


def _inputs(rows: int, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, T, V, generator=gen, dtype=dtype)
    ref_logits = logits + 0.3 * torch.randn(rows, T, V, generator=gen, dtype=dtype)
    return logits, ref_logits, _labels(rows, seed)


def _targets(dtype=torch.float64) -> PreferenceTargets:
    gen = torch.Generator().manual_seed(5)
    targets = PreferenceTargets.from_counts(
        torch.randint(0, 9, (2, V), generator=gen),
        torch.randint(0, 9, (2, V), generator=gen),
        names=["harmless", "logic"],
    )
    targets.targets, targets.log_tilts = targets.targets.to(dtype), targets.log_tilts.to(dtype)
    return targets


def _geometry() -> TokenGeometry:
    return TokenGeometry.from_embeddings(
        torch.randn(V, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    )


def _naive_logps(logits, labels):
    logp = torch.log_softmax(logits[:, :-1], -1)
    lab = labels[:, 1:]
    mask = lab != -100
    tok = torch.gather(logp, -1, lab.clamp_min(0)[..., None]).squeeze(-1) * mask
    return tok, mask


# --------------------------------------------------------------------------- log-probs
def test_sequence_logprobs_matches_log_softmax_gather():
    logits, _, labels = _inputs(3)
    ours_leaf, naive_leaf = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    lp = sequence_logprobs(ours_leaf, labels, chunk_size=2)
    tok, mask = _naive_logps(naive_leaf, labels)
    assert lp.token_logps.shape == (3, T - 1) and torch.equal(lp.mask, mask)
    torch.testing.assert_close(lp.token_logps, tok, atol=1e-12, rtol=0)
    torch.testing.assert_close(lp.lengths, mask.sum(1))
    torch.testing.assert_close(lp.means, tok.sum(1) / mask.sum(1), atol=1e-12, rtol=0)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (lp.sums * weights).sum().backward()
    (tok.sum(1) * weights).sum().backward()
    torch.testing.assert_close(ours_leaf.grad, naive_leaf.grad, atol=1e-12, rtol=0)


def test_sequence_logprobs_accumulates_bfloat16_in_float32():
    logits, _, labels = _inputs(2, dtype=torch.float32)
    half = logits.bfloat16().requires_grad_()
    lp = sequence_logprobs(half, labels)
    assert lp.sums.dtype == torch.float32
    expected = sequence_logprobs(half.detach().float(), labels).sums
    torch.testing.assert_close(lp.sums, expected)  # same rounded inputs, fp32 maths
    lp.sums.sum().backward()
    assert half.grad.dtype == torch.bfloat16


def test_sequence_logprobs_rejects_bad_labels():
    logits, _, labels = _inputs(2)
    labels[0, 5] = V  # outside the vocabulary
    with pytest.raises(ValueError, match="outside"):
        sequence_logprobs(logits, labels)
    with pytest.raises(ValueError, match="labels \\(N, T\\)"):
        sequence_logprobs(logits, labels[:, :-1])


# ---------------------------------------------------------------------- alpha = 0
def _vanilla_by_hand(method: str, cfg: LossConfig, logits, labels, ref_logits, r, scores=None):
    lp = sequence_logprobs(logits, labels, chunk_size=cfg.plot.chunk_size)
    ref = sequence_logprobs(ref_logits, labels).sums
    s, n = lp.sums.view(r, -1), lp.lengths.view(r, -1)
    rs = ref.view(r, -1)
    if method == "sft":
        return sft_loss(s[0], n[0])[0]
    if method == "dpo":
        return dpo_loss(
            s[0], s[1], rs[0], rs[1], beta=cfg.beta, label_smoothing=cfg.label_smoothing
        )[0]
    if method == "ipo":
        return ipo_loss(s[0], s[1], rs[0], rs[1], n[0], n[1], beta=cfg.beta)[0]
    if method == "aot":
        return aot_loss(s[0], s[1], rs[0], rs[1], beta=cfg.beta, variant=cfg.aot_variant)[0]
    if method == "simpo":
        return simpo_loss(s[0], s[1], n[0], n[1], beta=cfg.simpo_beta, gamma=cfg.simpo_gamma)[0]
    if method == "orpo":
        return orpo_loss(s[0], s[1], n[0], n[1], lam=cfg.orpo_lambda)[0]
    return pro_loss(
        s.T, n.T, scores, sft_weight=cfg.pro_sft_weight, sft_reduction=cfg.pro_sft_reduction
    )[0]


CASES = [("sft", 1), ("dpo", 2), ("ipo", 2), ("aot", 2), ("simpo", 2), ("orpo", 2), ("pro", 3)]


@pytest.mark.parametrize("method, r", CASES)
def test_alpha_zero_reproduces_the_vanilla_loss_bit_for_bit(method, r):
    extra = (
        {"label_smoothing": 0.1}
        if method == "dpo"
        else {"pro_sft_weight": 0.3}
        if method == "pro"
        else {}
    )
    cfg = LossConfig(method=method, alpha=0.0, **extra)
    objective = build_objective(cfg, _geometry(), _targets())  # geometry and targets unused
    logits, ref_logits, labels = _inputs(r * B)
    scores = (
        torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, -1.0]], dtype=torch.float64)
        if method == "pro"
        else None
    )
    ref_logps = (
        sequence_logprobs(ref_logits, labels).sums if objective.needs_reference_logps else None
    )
    leaf = logits.clone().requires_grad_()
    out = objective(leaf, labels, r, ref_logps=ref_logps, scores=scores)
    hand_leaf = logits.clone().requires_grad_()
    hand = _vanilla_by_hand(method, cfg, hand_leaf, labels, ref_logits, r, scores)
    assert torch.equal(out.loss, hand)
    out.loss.backward()
    hand.backward()
    assert torch.equal(leaf.grad, hand_leaf.grad)
    assert float(out.plot) == 0.0 and torch.equal(out.vanilla, hand.detach())
    assert float(out.metrics["loss/plot"]) == 0.0
    assert objective.plot_loss is None  # PLOT is not even built


# ---------------------------------------------------------------------- alpha > 0
def _plot_objective(**plot) -> tuple:
    alpha = plot.pop("alpha", 0.5)
    method = plot.pop("method", "dpo")
    cfg = LossConfig(method=method, alpha=alpha, plot=PlotConfig(chunk_size=3, **plot))
    return cfg, build_objective(cfg, _geometry(), _targets())


@pytest.mark.parametrize("target", ["global", "anchored"])
@pytest.mark.parametrize("aggregate", ["sequence", "token"])
def test_plot_term_is_added_and_logged_separately(target, aggregate):
    cfg, objective = _plot_objective(target=target, aggregate=aggregate)
    _, vanilla_only = _plot_objective(target=target, aggregate=aggregate, alpha=0.0)
    logits, ref_logits, labels = _inputs(2 * B)
    ref_logps = sequence_logprobs(ref_logits, labels).sums
    ids = torch.tensor([1, 0])
    out = objective(
        logits, labels, 2, ref_logps=ref_logps, ref_logits=ref_logits, subpreference_ids=ids
    )
    base = vanilla_only(logits, labels, 2, ref_logps=ref_logps)
    assert torch.equal(
        out.vanilla, base.vanilla
    )  # the fused pass leaves the vanilla loss unchanged
    assert torch.equal(out.loss.detach(), out.vanilla + cfg.alpha * out.plot)
    # the PLOT value is PlotLoss on the chosen rows' response-scoring positions
    standalone = PlotLoss.from_config(cfg.plot, _targets(), _geometry())
    mask = labels[:B, 1:] != -100
    expected = standalone(logits[:B, :-1], mask, ids, ref_logits[:B, :-1])
    torch.testing.assert_close(out.plot, expected, atol=1e-12, rtol=0)
    assert out.metrics["loss/plot"] is out.plot and float(out.plot) > 0


@pytest.mark.parametrize("target", ["global", "anchored"])
@pytest.mark.parametrize("aggregate", ["sequence", "token"])
def test_gradient_matches_naive_dpo_plus_plot(target, aggregate):
    cfg, objective = _plot_objective(target=target, aggregate=aggregate, alpha=0.7)
    logits, ref_logits, labels = _inputs(2 * B, seed=3)
    ref_logps = sequence_logprobs(ref_logits, labels).sums
    leaf = logits.clone().requires_grad_()
    objective(leaf, labels, 2, ref_logps=ref_logps, ref_logits=ref_logits).loss.backward()

    naive_leaf = logits.clone().requires_grad_()
    tok, mask = _naive_logps(naive_leaf, labels)
    sums = tok.sum(1)
    dpo, _ = dpo_loss(sums[:B], sums[B:], ref_logps[:B], ref_logps[B:], beta=cfg.beta)
    p = torch.softmax(naive_leaf[:B, :-1], -1)
    w = mask[:B].double() / mask[:B].sum(1, keepdim=True)
    targets, geometry = _targets(), _geometry()
    if target == "global":
        q = targets.targets[[0, 0]]
    else:
        ref_mean = torch.einsum("bt,btv->bv", w, torch.softmax(ref_logits[:B, :-1], -1))
        q = ref_mean * torch.exp(targets.log_tilts[[0, 0]])
        q = q / q.sum(-1, keepdim=True)
    if aggregate == "sequence":
        plot = geometry.distance(torch.einsum("bt,btv->bv", w, p), q)
    else:
        plot = (geometry.distance(p, q[:, None, :]) * w).sum(1)
    plot = plot * objective.plot_loss.row_scale[0]  # normalize=reference, sub-preference 0
    (dpo + cfg.alpha * plot.mean()).backward()
    torch.testing.assert_close(leaf.grad, naive_leaf.grad, atol=1e-10, rtol=1e-8)


def test_reference_logps_can_come_from_reference_logits():
    logits, ref_logits, labels = _inputs(2 * B)
    ref_logps = sequence_logprobs(ref_logits, labels).sums
    for alpha in (0.0, 0.5):
        _, objective = _plot_objective(alpha=alpha, target="anchored")
        a = objective(logits, labels, 2, ref_logps=ref_logps, ref_logits=ref_logits)
        b = objective(logits, labels, 2, ref_logits=ref_logits)
        assert torch.equal(a.loss, b.loss)


@pytest.mark.parametrize(
    "responses, rows",
    [("chosen", slice(0, B)), ("rejected", slice(B, 2 * B)), ("all", slice(0, 2 * B))],
)
def test_which_responses_enter_plot(responses, rows):
    cfg, objective = _plot_objective(target="global", responses=responses)
    logits, ref_logits, labels = _inputs(2 * B)
    ids = torch.tensor([0, 1])
    out = objective(logits, labels, 2, ref_logits=ref_logits, subpreference_ids=ids)
    standalone = PlotLoss.from_config(cfg.plot, _targets(), _geometry())
    row_ids = torch.cat([ids, ids])[rows]
    expected = standalone(logits[rows, :-1], labels[rows, 1:] != -100, row_ids)
    torch.testing.assert_close(out.plot, expected, atol=1e-12, rtol=0)


def test_pro_with_plot_on_all_ranked_responses():
    cfg, objective = _plot_objective(method="pro", target="global", responses="all")
    logits, _, labels = _inputs(3 * B)
    out = objective(logits, labels, 3)
    assert objective.num_responses() is None and not objective.needs_reference_logps
    lp = sequence_logprobs(logits, labels)
    vanilla, _ = pro_loss(lp.sums.view(3, B).T, lp.lengths.view(3, B).T, sft_weight=0.05)
    assert torch.equal(out.vanilla, vanilla.detach())


def test_contract_properties():
    _, anchored = _plot_objective(target="anchored")
    _, global_ = _plot_objective(target="global", method="simpo")
    vanilla = build_objective(LossConfig(method="dpo", alpha=0.0))
    assert anchored.needs_reference_logps and anchored.needs_reference_logits
    assert not global_.needs_reference_logps and not global_.needs_reference_logits
    assert vanilla.needs_reference_logps and not vanilla.needs_reference_logits
    assert (
        vanilla.num_responses("sft"),
        vanilla.num_responses(),
        vanilla.num_responses("pro"),
    ) == (1, 2, None)


def test_bad_calls_raise_clear_errors():
    _, objective = _plot_objective(target="anchored")
    logits, ref_logits, labels = _inputs(2 * B)
    with pytest.raises(ValueError, match="takes 2 response"):
        objective(logits, labels, 1, ref_logits=ref_logits)
    with pytest.raises(ValueError, match="needs ref_logits"):
        objective(logits, labels, 2, ref_logps=torch.zeros(2 * B, dtype=torch.float64))
    with pytest.raises(ValueError, match="pass ref_logps or ref_logits"):
        objective(logits, labels, 2)
    empty = labels.clone()
    empty[1, 1:] = -100
    with pytest.raises(ValueError, match="rows \\[1\\] have no response tokens"):
        objective(logits, empty, 2, ref_logits=ref_logits)
    with pytest.raises(ValueError, match="subpreference_ids"):
        objective(
            logits, labels, 2, ref_logits=ref_logits, subpreference_ids=torch.tensor([0, 1, 0])
        )


def test_build_objective_validates_what_plot_needs():
    with pytest.raises(ValueError, match="needs preference targets"):
        build_objective(LossConfig(alpha=0.1))
    with pytest.raises(ValueError, match="needs a geometry built from the policy's input"):
        build_objective(LossConfig(alpha=0.1), None, _targets())
    with pytest.raises(ValueError, match="no rejected responses"):
        build_objective(
            LossConfig(method="sft", alpha=0.1, plot=PlotConfig(responses="rejected")),
            _geometry(),
            _targets(),
        )
    with pytest.raises(ValueError, match="built for cost='embedding'"):
        build_objective(
            LossConfig(alpha=0.1, plot=PlotConfig(cost="index")), _geometry(), _targets()
        )
    # the uniform and index costs and the kl/js divergences need no embeddings
    objective = build_objective(
        LossConfig(alpha=0.1, plot=PlotConfig(cost="uniform")), None, _targets()
    )
    assert objective.plot_loss.geometry.cost == "uniform"
    assert (
        build_objective(
            LossConfig(alpha=0.1, plot=PlotConfig(divergence="js")), None, _targets()
        ).plot_loss.geometry
        is None
    )


@pytest.mark.parametrize("aggregate, bound", [("sequence", 1.05), ("token", 1.25)])
def test_plot_adds_almost_no_peak_memory(aggregate, bound):
    """Peak live bytes of forward + backward: DPO+PLOT close to DPO (one gradient tensor)."""
    v, t, b = 1024, 256, 2
    gen = torch.Generator().manual_seed(0)
    targets = PreferenceTargets.from_counts(
        torch.randint(0, 9, (1, v), generator=gen), torch.randint(0, 9, (1, v), generator=gen)
    )
    geometry = TokenGeometry.from_embeddings(torch.randn(v, 8, generator=gen))
    labels = torch.randint(0, v, (2 * b, t), generator=gen)
    labels[:, :16] = -100
    logits = torch.randn(2 * b, t, v, generator=gen, requires_grad=True)
    ref_logps = torch.zeros(2 * b)

    def peak(alpha: float) -> int:
        plot_cfg = PlotConfig(target="global", aggregate=aggregate)
        objective = build_objective(
            LossConfig(method="dpo", alpha=alpha, plot=plot_cfg), geometry, targets
        )
        objective(logits, labels, 2, ref_logps=ref_logps).loss.backward()  # warm-up
        logits.grad = None
        top = peak_live_bytes(
            lambda: objective(logits, labels, 2, ref_logps=ref_logps).loss.backward()
        )
        logits.grad = None
        return top

    logits_bytes = logits.numel() * 4
    vanilla, with_plot = peak(0.0), peak(0.5)
    assert vanilla < 1.35 * logits_bytes  # the gradient + chunk temporaries, no log_softmax copies
    assert with_plot < bound * vanilla  # (a naive log_softmax + softmax version is about 3x)


# ------------------------------------------------------------------ special tokens
EOS = 0


def _labels_with_eos(rows: int, seed: int = 0) -> torch.Tensor:
    """``_labels`` with every response ending in EOS (id 0) and no EOS elsewhere."""
    labels = _labels(rows, seed)
    labels[labels == EOS] = 1
    for r in range(rows):
        last = int(torch.nonzero(labels[r] != -100).max())
        labels[r, last] = EOS
    return labels


@pytest.mark.parametrize("target", ["global", "anchored"])
def test_plot_leaves_out_positions_whose_label_is_a_special_token(target):
    cfg = LossConfig(method="dpo", alpha=0.5, plot=PlotConfig(target=target, chunk_size=3))
    objective = build_objective(cfg, _geometry(), _targets(), special_token_ids=[EOS])
    vanilla = build_objective(LossConfig(method="dpo", alpha=0.0))
    logits, ref_logits, _ = _inputs(2 * B)
    labels = _labels_with_eos(2 * B)
    # logits[r, t] scores labels[r, t + 1]: the positions that predict EOS
    eos_rows, eos_pos = torch.nonzero(labels[:, 1:] == EOS, as_tuple=True)
    moved = logits.clone()
    moved[eos_rows, eos_pos] += 3.0 * torch.randn(len(eos_rows), V, dtype=torch.float64)

    def run(obj, x):
        leaf = x.clone().requires_grad_()
        out = obj(leaf, labels, 2, ref_logits=ref_logits)
        out.loss.backward()
        return out, leaf.grad

    out, grad = run(objective, logits)
    out_moved, _ = run(objective, moved)
    base, grad_vanilla = run(vanilla, logits)
    base_moved, _ = run(vanilla, moved)
    # the PLOT value does not see the EOS-predicting logits; the vanilla log-probs do
    torch.testing.assert_close(out.plot, out_moved.plot, atol=1e-12, rtol=0)
    assert abs(float(base.vanilla - base_moved.vanilla)) > 1e-3
    # ...and PLOT's gradient there is zero: the total gradient equals the vanilla one there
    plot_grad = grad - grad_vanilla
    assert float(plot_grad[eos_rows, eos_pos].abs().max()) < 1e-12
    assert float(plot_grad[:B].abs().max()) > 1e-4  # elsewhere PLOT acts
    # without the special ids the EOS positions enter PLOT (the old behaviour)
    with_eos = build_objective(cfg, _geometry(), _targets())
    assert abs(float(run(with_eos, logits)[0].plot - run(with_eos, moved)[0].plot)) > 1e-6


def test_a_response_of_special_tokens_only_leaves_plot():
    cfg = LossConfig(method="sft", alpha=0.5, plot=PlotConfig(target="global"))
    objective = build_objective(cfg, _geometry(), _targets(), special_token_ids=[EOS])
    logits, _, _ = _inputs(B)
    labels = _labels_with_eos(B)
    only_eos = labels.clone()
    only_eos[0, :] = -100
    only_eos[0, 4] = EOS  # row 0's response is a lone EOS: the vanilla loss keeps it
    out = objective(logits, only_eos, 1)
    standalone = PlotLoss.from_config(cfg.plot, _targets(), _geometry())
    mask = (labels[1:, 1:] != -100) & (labels[1:, 1:] != EOS)
    expected = standalone(logits[1:, :-1], mask)
    torch.testing.assert_close(out.plot, expected, atol=1e-12, rtol=0)
    every_row = labels.clone()
    every_row[:, :] = -100
    every_row[:, 4] = EOS
    out = objective(logits, every_row, 1)
    assert float(out.plot) == 0.0 and torch.equal(out.loss, out.vanilla)


# ------------------------------------------------------------- exact OT, normalisation
@pytest.mark.parametrize("normalize", ["none", "unit_variance"])
def test_projection_exact_gives_the_pot_value(normalize):
    import ot

    emb = torch.randn(V, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    plot_cfg = PlotConfig(target="global", projection="exact", p_norm=1.5, normalize=normalize)
    cfg = LossConfig(method="dpo", alpha=0.5, plot=plot_cfg)
    geometry = build_geometry(emb, plot_cfg)
    objective = build_objective(cfg, geometry, _targets())
    logits, ref_logits, labels = _inputs(2 * B)
    ids = torch.tensor([1, 0])
    out = objective(logits, labels, 2, ref_logits=ref_logits, subpreference_ids=ids)
    cost = torch.cdist(emb, emb, p=1.5)
    if normalize == "unit_variance":  # s^2 = tr Cov(E), the mean squared distance to the mean
        cost = cost / (emb - emb.mean(0)).pow(2).sum(1).mean().sqrt()
    mask = labels[:B, 1:] != -100
    pbar = torch.einsum(
        "bt,btv->bv", mask.double() / mask.sum(1, keepdim=True), torch.softmax(logits[:B, :-1], -1)
    )
    targets = _targets().targets[ids]
    expected = sum(float(ot.emd2(pbar[b], targets[b], cost)) for b in range(B)) / B
    assert float(out.plot) == pytest.approx(expected, abs=1e-9)
    assert out.metrics["plot/scale"] == pytest.approx(geometry.scale)


def test_projection_exact_refuses_large_vocabularies_naming_the_limit():
    plot_cfg = PlotConfig(projection="exact")
    with pytest.raises(ValueError, match="projection=exact .* at most 2048 tokens"):
        build_geometry(torch.zeros(EXACT_MAX_VOCAB + 1, 2), plot_cfg)
    with pytest.raises(ValueError, match="built for cost='embedding'"):
        build_objective(LossConfig(alpha=0.1, plot=plot_cfg), _geometry(), _targets())


def test_normalisations_rescale_the_raw_distance_by_their_documented_factors():
    emb = torch.randn(V, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    logits, ref_logits, labels = _inputs(2 * B)
    ids = torch.tensor([1, 0])
    outs, objectives = {}, {}
    for normalize in ("none", "unit_variance", "reference"):
        plot_cfg = PlotConfig(target="anchored", normalize=normalize)
        cfg = LossConfig(method="dpo", alpha=1.0, plot=plot_cfg)
        objectives[normalize] = build_objective(cfg, build_geometry(emb, plot_cfg), _targets())
        outs[normalize] = objectives[normalize](
            logits, labels, 2, ref_logits=ref_logits, subpreference_ids=ids
        )
    # unit_variance: the coordinates divided by their standard deviation, s
    coords = emb @ principal_direction(emb).to(emb.dtype)
    s = float(coords.std(unbiased=False))
    assert outs["unit_variance"].metrics["plot/scale"] == pytest.approx(1 / s)
    assert float(outs["unit_variance"].plot) == pytest.approx(float(outs["none"].plot) / s)
    # reference: row b divided by D(Qbar_c, Qbar_c tilted) of its sub-preference c
    targets, raw = _targets(), objectives["none"].plot_loss
    q_mean = targets.q_mean.double()
    d = raw.geometry.distance(q_mean, anchored_target(q_mean, targets.log_tilts))
    plot_loss = objectives["reference"].plot_loss
    torch.testing.assert_close(plot_loss.row_scale, 1 / d, atol=1e-9, rtol=1e-6)
    rows = raw.per_sequence(logits[:B, :-1], labels[:B, 1:] != -100, ids, ref_logits[:B, :-1])
    expected = (rows / d[ids]).mean()
    assert float(outs["reference"].plot) == pytest.approx(float(expected), rel=1e-9)
    assert outs["none"].metrics["plot/scale"] == 1.0


class _TinyLM(torch.nn.Module):
    """Embeddings, a causal running mean, an MLP and a head, all initialised at std 0.02 as
    Hugging Face initialises LMs: the scale at which raw embedding distances are tiny."""

    def __init__(self, vocab: int, dim: int = 16):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, dim)
        self.mix = torch.nn.Linear(dim, dim)
        self.head = torch.nn.Linear(dim, vocab, bias=False)
        with torch.no_grad():
            for w in (self.emb.weight, self.mix.weight, self.head.weight):
                w.copy_(0.02 * torch.randn(w.shape, generator=gen))
            self.mix.bias.zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids).cumsum(1) / torch.arange(1, ids.shape[1] + 1)[None, :, None]
        return self.head(torch.tanh(self.mix(h)) + h)


def _preference_pairs(n: int, seed: int, vocab: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts from ids 1-15; chosen responses from 16-31, rejected from 32-47; then EOS."""
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(1, 16, (n, 4), generator=gen)
    chosen = torch.randint(16, 32, (n, 6), generator=gen)
    rejected = torch.randint(32, vocab, (n, 6), generator=gen)
    eos = torch.full((n, 1), EOS)
    ids = torch.cat([torch.cat([prompt, chosen, eos], 1), torch.cat([prompt, rejected, eos], 1)])
    labels = ids.clone()
    labels[:, :4] = -100
    return ids, labels


def test_alpha_one_changes_training_measurably_at_the_default_normalisation():
    """10 Adam steps of DPO(+PLOT): alpha = 1 must move the model away from the alpha = 0 run
    and toward the target on held-out pairs. The raw (normalize=none) scale fails both
    thresholds: there, alpha = 1 barely acts (measured: 14% weight difference, 0.89)."""
    vocab, steps, b = 48, 10, 8
    base = _TinyLM(vocab)
    ids, labels = _preference_pairs(steps * b, seed=1)
    n = ids.shape[0] // 2
    pos = torch.bincount(labels[:n][labels[:n] > EOS], minlength=vocab)
    neg = torch.bincount(labels[n:][labels[n:] > EOS], minlength=vocab)
    held_ids, held_labels = _preference_pairs(16, seed=2)
    embeddings = base.emb.weight.detach()

    def objective(alpha: float, normalize: str):
        plot_cfg = PlotConfig(target="anchored", normalize=normalize)
        cfg = LossConfig(method="dpo", alpha=alpha, plot=plot_cfg)
        targets = PreferenceTargets.from_counts(pos, neg, plot_cfg)
        return build_objective(
            cfg, build_geometry(embeddings, plot_cfg), targets, special_token_ids=[EOS]
        )

    def train(alpha: float, normalize: str) -> tuple[torch.Tensor, float]:
        torch.manual_seed(0)
        policy = copy.deepcopy(base)
        obj = objective(alpha, normalize)
        opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
        for s in range(steps):
            rows = torch.arange(s * b, (s + 1) * b)
            x = torch.cat([ids[rows], ids[n + rows]])
            y = torch.cat([labels[rows], labels[n + rows]])
            with torch.no_grad():
                ref_logits = base(x)
            loss = obj(policy(x), y, 2, ref_logits=ref_logits).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # held-out PLOT distance, one yardstick for every run
            held = probe(policy(held_ids), held_labels, 2, ref_logits=base(held_ids)).plot
        return torch.cat([p.detach().flatten() for p in policy.parameters()]), float(held)

    probe = objective(1.0, "reference")
    start = torch.cat([p.detach().flatten() for p in base.parameters()])
    w0, held0 = train(0.0, "reference")
    results = {norm: train(1.0, norm) for norm in ("reference", "none")}

    def weight_change(w):  # relative to the whole alpha = 0 update
        return float((w - w0).norm() / (w0 - start).norm())

    assert weight_change(results["reference"][0]) > 0.5
    assert results["reference"][1] < 0.8 * held0
    assert weight_change(results["none"][0]) < 0.5
    assert results["none"][1] > 0.8 * held0
