"""1-D optimal transport: parity with POT (``ot.wasserstein_1d``, ``ot.emd2``) in float64."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from plot_ray.config import PlotConfig
from plot_ray.losses import ExactGeometry, TokenGeometry, exact_wasserstein, wasserstein_1d
from plot_ray.losses.ot import principal_direction, random_directions

TOL = 1e-6


def _dists(n: int, v: int, seed: int, sparse: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    p = torch.softmax(2 * torch.randn(n, v, generator=gen, dtype=torch.float64), -1)
    if sparse:  # exact zeros, as targets on an observed support have
        p = p * (torch.rand(n, v, generator=gen, dtype=torch.float64) > 0.5)
        p[:, 0] += 1e-3
        p = p / p.sum(-1, keepdim=True)
    return p


def _pot_w1(p: torch.Tensor, q: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """POT's batched ``wasserstein_1d`` (columns are the batch)."""
    x = np.ascontiguousarray(
        np.broadcast_to(coords.numpy()[:, None], (coords.shape[0], p.shape[0]))
    )
    return torch.from_numpy(np.asarray(ot.wasserstein_1d(x, x, p.T.numpy(), q.T.numpy())))


def _emd2_line(p: torch.Tensor, q: torch.Tensor, coords: torch.Tensor) -> float:
    m = (coords[:, None] - coords[None, :]).abs().numpy()
    return float(ot.emd2(p.numpy(), q.numpy(), m))


def test_wasserstein_1d_hand_example():
    coords = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    p = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    q = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    # half the mass travels 1, half travels 3
    assert float(wasserstein_1d(p, q, coords)) == pytest.approx(2.0, abs=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_wasserstein_1d_matches_pot_batched_unsorted_coords(sparse):
    v = 40
    coords = torch.randn(v, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    p, q = _dists(6, v, 1, sparse), _dists(6, v, 2, sparse)
    ours = wasserstein_1d(p, q, coords)
    assert ours.shape == (6,)
    torch.testing.assert_close(ours, _pot_w1(p, q, coords), atol=TOL, rtol=0)
    emd = torch.tensor(
        [_emd2_line(a, b, coords) for a, b in zip(p, q, strict=True)], dtype=torch.float64
    )
    torch.testing.assert_close(ours, emd, atol=TOL, rtol=0)


def test_wasserstein_1d_unbatched_and_broadcast():
    v = 25
    coords = torch.linspace(-2, 5, v, dtype=torch.float64).flip(0)  # sorted descending
    p, q = _dists(3, v, 4), _dists(1, v, 5)[0]
    single = wasserstein_1d(p[0], q, coords)
    assert single.shape == ()
    assert float(single) == pytest.approx(_emd2_line(p[0], q, coords), abs=TOL)
    torch.testing.assert_close(
        wasserstein_1d(p, q, coords), _pot_w1(p, q.expand(3, v), coords), atol=TOL, rtol=0
    )


def test_wasserstein_1d_with_ties_in_coords():
    gen = torch.Generator().manual_seed(7)
    coords = torch.randint(0, 6, (30,), generator=gen).double()  # many equal coordinates
    p, q = _dists(4, 30, 8), _dists(4, 30, 9)
    ours = wasserstein_1d(p, q, coords)
    emd = torch.tensor(
        [_emd2_line(a, b, coords) for a, b in zip(p, q, strict=True)], dtype=torch.float64
    )
    torch.testing.assert_close(ours, emd, atol=TOL, rtol=0)
    torch.testing.assert_close(ours, _pot_w1(p, q, coords), atol=TOL, rtol=0)


def test_geometry_matches_wasserstein_1d_and_emd2():
    v = 50
    coords = torch.randn(v, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    geo = TokenGeometry.from_coordinates(coords)
    p, q = _dists(5, v, 12, sparse=True), _dists(5, v, 13)
    torch.testing.assert_close(geo.distance(p, q), wasserstein_1d(p, q, coords), atol=1e-12, rtol=0)
    torch.testing.assert_close(geo.value(p, q), _pot_w1(p, q, coords), atol=TOL, rtol=0)
    value, _ = geo.value_and_grad(p, q)
    torch.testing.assert_close(value, geo.distance(p, q), atol=1e-12, rtol=0)


def test_geometry_potential_is_the_gradient_of_w1():
    v = 30
    coords = torch.randn(v, dtype=torch.float64, generator=torch.Generator().manual_seed(14))
    geo = TokenGeometry.from_embeddings(
        torch.randn(v, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(15)),
        "sliced",
        3,
    )
    p, q = _dists(4, v, 16), _dists(4, v, 17)
    leaf = p.clone().requires_grad_()
    geo.distance(leaf, q).sum().backward()
    _, potential = geo.value_and_grad(p, q)
    torch.testing.assert_close(potential, leaf.grad, atol=1e-12, rtol=0)
    # and on explicit coordinates, against autograd through wasserstein_1d
    geo1 = TokenGeometry.from_coordinates(coords)
    leaf = p.clone().requires_grad_()
    wasserstein_1d(leaf, q, coords).sum().backward()
    torch.testing.assert_close(geo1.value_and_grad(p, q)[1], leaf.grad, atol=1e-12, rtol=0)


def test_sliced_equals_mean_of_per_direction_exact_distances():
    v, d, k = 40, 8, 5
    emb = torch.randn(v, d, dtype=torch.float64, generator=torch.Generator().manual_seed(20))
    geo = TokenGeometry.from_embeddings(emb, projection="sliced", num_projections=k, seed=3)
    assert geo.num_projections == k
    dirs = random_directions(d, k, seed=3)
    torch.testing.assert_close(dirs.norm(dim=0), torch.ones(k, dtype=torch.float64))
    p, q = _dists(3, v, 21), _dists(3, v, 22)
    expected = torch.stack([_pot_w1(p, q, emb @ dirs[:, j]) for j in range(k)]).mean(0)
    torch.testing.assert_close(geo.distance(p, q), expected, atol=TOL, rtol=0)
    # a different seed is a different geometry
    other = TokenGeometry.from_embeddings(emb, projection="sliced", num_projections=k, seed=4)
    assert not torch.allclose(other.distance(p, q), expected)


def test_pca_on_collinear_embeddings_equals_exact_euclidean_ot():
    v, d = 30, 5
    gen = torch.Generator().manual_seed(30)
    t = torch.randn(v, generator=gen, dtype=torch.float64)
    direction = torch.randn(d, generator=gen, dtype=torch.float64)
    emb = 0.3 + t[:, None] * direction[None, :]  # all rows on one line in R^5
    geo = TokenGeometry.from_embeddings(emb, projection="pca")
    p, q = _dists(4, v, 31), _dists(4, v, 32, sparse=True)
    m = torch.cdist(emb, emb).numpy()
    exact = torch.tensor(
        [float(ot.emd2(a.numpy(), b.numpy(), m)) for a, b in zip(p, q, strict=True)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(geo.distance(p, q), exact, atol=TOL, rtol=0)
    torch.testing.assert_close(exact_wasserstein(p, q, emb), exact, atol=TOL, rtol=0)


def test_pca_direction_is_the_top_principal_component():
    gen = torch.Generator().manual_seed(33)
    emb = torch.randn(200, 4, generator=gen, dtype=torch.float64) * torch.tensor(
        [0.1, 3.0, 0.2, 0.5], dtype=torch.float64
    )
    direction = principal_direction(emb)
    assert abs(float(direction[1])) == pytest.approx(1.0, abs=1e-2)
    assert float(direction[1]) > 0  # deterministic sign
    # the randomised path for large hidden sizes finds the same direction
    wide = torch.randn(24, 2100, generator=gen, dtype=torch.float64)
    wide[:, 5] *= 40.0
    centred = wide - wide.mean(0)
    exact = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    assert abs(float(principal_direction(wide) @ exact)) > 0.9999


def test_uniform_cost_is_half_l1_and_matches_zero_one_emd():
    v = 12
    geo = TokenGeometry.uniform(v)
    p, q = _dists(3, v, 40), _dists(3, v, 41, sparse=True)
    torch.testing.assert_close(geo.distance(p, q), 0.5 * (p - q).abs().sum(-1), atol=1e-15, rtol=0)
    zero_one = 1.0 - np.eye(v)
    exact = torch.tensor(
        [float(ot.emd2(a.numpy(), b.numpy(), zero_one)) for a, b in zip(p, q, strict=True)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(geo.distance(p, q), exact, atol=TOL, rtol=0)
    value, grad = geo.value_and_grad(p, q)
    torch.testing.assert_close(grad, 0.5 * torch.sign(p - q))


def test_index_cost_uses_token_id_order():
    v = 20
    geo = TokenGeometry.index(v)
    assert geo.cost == "index"
    p, q = _dists(3, v, 50), _dists(3, v, 51)
    coords = torch.arange(v, dtype=torch.float64) / (v - 1)
    torch.testing.assert_close(geo.distance(p, q), _pot_w1(p, q, coords), atol=TOL, rtol=0)
    # all mass from the first token to the last: distance 1
    e0, e_last = torch.zeros(v, dtype=torch.float64), torch.zeros(v, dtype=torch.float64)
    e0[0], e_last[-1] = 1, 1
    assert float(geo.distance(e0, e_last)) == pytest.approx(1.0)


def test_geometry_keeps_only_orders_and_gaps():
    emb = torch.randn(100, 16)
    geo = TokenGeometry.from_embeddings(emb, projection="sliced", num_projections=4)
    stored = [t for t in vars(geo).values() if isinstance(t, torch.Tensor)]
    assert {tuple(t.shape) for t in stored} == {(4, 100)}
    assert geo.to("cpu") is geo


def test_geometry_from_config():
    emb = torch.randn(30, 4, dtype=torch.float64)
    geo = TokenGeometry.from_config(emb, PlotConfig(projection="sliced", num_projections=3, seed=1))
    assert geo.cost == "embedding" and geo.num_projections == 3
    assert (
        TokenGeometry.from_config(None, PlotConfig(cost="uniform"), vocab_size=30).cost == "uniform"
    )
    with pytest.raises(ValueError, match="needs the embedding matrix"):
        TokenGeometry.from_config(None, PlotConfig())


def test_geometry_rejects_bad_inputs():
    with pytest.raises(ValueError, match="NaN or inf"):
        TokenGeometry.from_embeddings(torch.tensor([[0.0, 1.0], [float("nan"), 2.0], [1.0, 1.0]]))
    geo = TokenGeometry.index(5)
    with pytest.raises(ValueError, match="V=5"):
        geo.distance(torch.ones(6) / 6, torch.ones(6) / 6)
    with pytest.raises(ValueError, match="projection"):
        TokenGeometry.from_embeddings(torch.randn(5, 2), projection="umap")


def test_exact_geometry_matches_emd2_on_its_support():
    v = 15
    emb = torch.randn(v, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(60))
    support = torch.tensor([0, 2, 3, 7, 9, 14])
    geo = ExactGeometry(emb, support)
    p, q = _dists(2, v, 61), _dists(2, v, 62)
    ps = p[:, support] / p[:, support].sum(-1, keepdim=True)
    qs = q[:, support] / q[:, support].sum(-1, keepdim=True)
    m = torch.cdist(emb[support], emb[support]).numpy()
    expected = torch.tensor(
        [float(ot.emd2(a.numpy(), b.numpy(), m)) for a, b in zip(ps, qs, strict=True)],
        dtype=torch.float64,
    )
    value, grad = geo.value_and_grad(p, q)
    torch.testing.assert_close(value, expected, atol=TOL, rtol=0)
    # the gradient is a valid directional derivative: check it against a finite difference
    direction = torch.randn(v, dtype=torch.float64, generator=torch.Generator().manual_seed(63))
    direction -= direction.mean()
    h = 1e-7
    fd = (geo.value(p[:1] + h * direction, q[:1]) - geo.value(p[:1] - h * direction, q[:1])) / (
        2 * h
    )
    assert float((grad[0] * direction).sum()) == pytest.approx(float(fd[0]), abs=1e-5)


def test_unit_variance_divides_coordinates_by_their_standard_deviation():
    # coordinates 0, 1, 2, 3: variance 1.25, so all mass from 0 to 3 costs 3 / sqrt(1.25)
    geo = TokenGeometry.from_coordinates(
        torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64), normalize="unit_variance"
    )
    e0, e3 = torch.eye(4, dtype=torch.float64)[0], torch.eye(4, dtype=torch.float64)[3]
    assert float(geo.distance(e0, e3)) == pytest.approx(3 / math.sqrt(1.25))
    assert geo.scale == pytest.approx(1 / math.sqrt(1.25))
    # the exact mode's s^2 = tr Cov(E) is the same number for 1-D embeddings
    exact = ExactGeometry(torch.tensor([[0.0], [1.0], [2.0], [3.0]]), normalize="unit_variance")
    assert float(exact.value(e0[None], e3[None])[0]) == pytest.approx(3 / math.sqrt(1.25))
