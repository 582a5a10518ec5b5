"""Optimal transport between token distributions: closed-form 1-D W1 and an exact reference.

PLOT compares distributions over the vocabulary under the ground cost ``C[i, j] = ||E_i - E_j||``
(docs/plot.md, "Ground cost" and "Projections"). The exact problem is an LP over ``V x V``; the tractable version projects
the embeddings to one dimension, where W1 has a closed form in the cumulative distributions:

    with support points sorted, x_1 <= ... <= x_V:
    W1(p, q) = sum_i |P_i - Q_i| * (x_{i+1} - x_i),    P, Q the cumulative sums of p, q

and its gradient in ``p`` is a potential, the reverse cumulative sum of ``sign(P_i - Q_i) * gap_i``.

- :func:`wasserstein_1d` computes this for arbitrary coordinates (sorting on every call).
- :class:`TokenGeometry` sorts once (at the start of training) and keeps only the sort orders and
  gaps, ``O(K * V)``; it is the object the loss uses every step.
- :func:`exact_wasserstein` and :class:`ExactGeometry` solve the full LP with POT (``ot.emd2``):
  the reference the tests compare against, and the ``projection=exact`` mode for small
  vocabularies (at most :data:`EXACT_MAX_VOCAB` tokens).
- :func:`build_geometry` turns a :class:`~plot_ray.config.PlotConfig` and the embedding matrix
  into the geometry the loss runs on (what the train loop calls once at start).

Normalisation (``loss.plot.normalize``, docs/plot.md "Normalisation and how to read alpha"):
``reference`` (the default) is applied by :class:`~plot_ray.losses.plot.PlotLoss` on top of a
raw geometry; with ``unit_variance`` the embedding cost is divided once, at build time, by a length scale
``s`` of the embeddings, so that distances no longer carry the model's embedding units:

    1-D projections: s^2 = mean over the K directions of Var_v(<E_v, w_k>)
    exact:           s^2 = tr Cov(E) = mean_v ||E_v - mean(E)||^2

Either way a random pair of tokens is at mean squared cost 2 (for ``p_norm = 2``). The
factor ``1 / s`` is kept as ``geometry.scale`` (reported as ``plot/scale``); the ``uniform``
and ``index`` costs are already in [0, 1] units and are never rescaled (scale 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from plot_ray.config import PlotConfig

__all__ = [
    "wasserstein_1d",
    "principal_direction",
    "random_directions",
    "TokenGeometry",
    "ExactGeometry",
    "exact_wasserstein",
    "cost_matrix",
    "build_geometry",
    "EXACT_MAX_VOCAB",
]

# projection=exact solves a V x V transport LP per distribution (POT's network simplex, roughly
# cubic in V) and holds the V x V float64 cost matrix: 2048 tokens is a 32 MiB matrix and well
# under a second per distribution; beyond that training stalls, so the config is refused.
EXACT_MAX_VOCAB = 2048

Projection = Literal["pca", "sliced"]
Normalize = Literal["unit_variance", "none"]
Cost = Literal["embedding", "uniform", "index"]


def wasserstein_1d(p: Tensor, q: Tensor, coords: Tensor) -> Tensor:
    """Exact W1 between distributions on the real line, for the cost ``|x_i - x_j|``.

    Args:
        p, q: ``(..., V)`` probability vectors (broadcastable against each other); both should
            carry the same total mass (1). Differentiable in both.
        coords: ``(V,)`` support coordinates, in any order; ties are allowed.

    Returns:
        ``(...)`` distances, in the units of ``coords``.
    """
    if coords.dim() != 1:
        raise ValueError(f"coords must be 1-D (V,), got shape {tuple(coords.shape)}")
    v = coords.shape[0]
    if p.shape[-1] != v or q.shape[-1] != v:
        raise ValueError(
            f"p {tuple(p.shape)} and q {tuple(q.shape)} must end in V={v} (the length of coords)"
        )
    order = torch.argsort(coords, stable=True)
    diff = p - q
    x = coords[order].to(device=diff.device, dtype=diff.dtype)
    gaps = x[1:] - x[:-1]
    cdf_diff = torch.cumsum(_permute_last(diff, order.to(diff.device)), dim=-1)[..., :-1]
    return cdf_diff.abs() @ gaps


def principal_direction(embeddings: Tensor) -> Tensor:
    """First principal direction ``(d,)`` (float64, unit norm) of the rows of ``embeddings``.

    The sign is fixed so that the largest-magnitude component is positive, which makes the
    projection deterministic across runs and devices.
    """
    e = embeddings.detach()
    if e.dim() != 2 or e.shape[0] < 2:
        raise ValueError(f"embeddings must be (V, d) with V >= 2, got {tuple(e.shape)}")
    work = torch.promote_types(e.dtype, torch.float32)
    mean = e.to(work).mean(0)
    d = e.shape[1]
    if d <= 2048:
        # Covariance in float64 (d x d) accumulated over row chunks: exact and cheap for d <= 2k.
        cov = torch.zeros(d, d, dtype=torch.float64, device=e.device)
        for start in range(0, e.shape[0], 16384):
            c = (e[start : start + 16384].to(work) - mean).double()
            cov += c.T @ c
        direction = torch.linalg.eigh(cov).eigenvectors[:, -1]
    else:
        # Large hidden sizes: randomised SVD of the centred matrix (the top singular vector is
        # the principal direction); avoids a d x d float64 covariance of several GB.
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            _, _, vh = torch.svd_lowrank(e.to(work) - mean, q=8, niter=6)
        finally:
            torch.random.set_rng_state(gen_state)
        direction = vh[:, 0].double()
    direction = direction / direction.norm()
    if direction[direction.abs().argmax()] < 0:
        direction = -direction
    return direction


def random_directions(dim: int, num: int, seed: int = 0) -> Tensor:
    """``(dim, num)`` float64 unit columns, drawn from a seeded Gaussian (sliced W1)."""
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(dim, num, generator=gen, dtype=torch.float64)
    return dirs / dirs.norm(dim=0, keepdim=True)


def _project(embeddings: Tensor, directions: Tensor) -> Tensor:
    """``(V, K)`` float64 coordinates ``E @ directions``, computed in row chunks."""
    work = torch.promote_types(embeddings.dtype, torch.float32)
    dirs = directions.to(device=embeddings.device, dtype=work)
    out = torch.empty(embeddings.shape[0], directions.shape[1], dtype=torch.float64)
    for start in range(0, embeddings.shape[0], 16384):
        chunk = embeddings[start : start + 16384].detach().to(work)
        out[start : start + chunk.shape[0]] = (chunk @ dirs).double().cpu()
    return out


class TokenGeometry:
    """The precomputed 1-D geometry of the vocabulary that PLOT's W1 runs on.

    Built once from the (frozen) embedding matrix; keeps only the ``K`` sort orders, their
    inverses and the gaps between consecutive sorted coordinates (``O(K * V)``), never ``E``.

    Costs:
        ``embedding``: ``|<E_i - E_j, w>|`` for the projection direction(s) ``w``: the first
            principal direction (``pca``, K = 1) or ``K`` seeded random unit directions
            averaged (``sliced``).
        ``uniform``: the 0-1 cost; W1 is then the total variation ``0.5 * ||p - q||_1``.
        ``index``: ``|i - j| / (V - 1)``, token-id order without semantics, scaled to [0, 1] so
            that its magnitude is comparable to total variation.

    Distances are in the units of the coordinates: embedding units for ``embedding``, or
    units of the projected coordinates' standard deviation when built with
    ``normalize="unit_variance"`` (then ``scale = 1 / s``, the factor applied to raw distances;
    see the module docstring). ``scale`` is 1 otherwise.
    """

    def __init__(
        self,
        cost: Cost,
        vocab_size: int,
        order: Tensor | None,
        gaps: Tensor | None,
        scale: float = 1.0,
    ):
        if cost not in ("embedding", "uniform", "index"):
            raise ValueError(f"cost must be 'embedding', 'uniform' or 'index', got {cost!r}")
        self.cost = cost
        self.vocab_size = int(vocab_size)
        self.scale = float(scale)
        if cost == "uniform":
            self.order = self.rank = self.gaps = None
        else:
            assert order is not None and gaps is not None
            if order.dim() != 2 or order.shape != gaps.shape or order.shape[1] != vocab_size:
                raise ValueError("order and gaps must both be (K, V)")
            self.order = order.long()
            self.rank = torch.argsort(self.order, dim=1)  # inverse permutations
            self.gaps = gaps.double()  # gaps[k, i] = x_(i+1) - x_(i), and 0 for the last i
        self._cast: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_coordinates(
        cls, coords: Tensor, cost: Cost = "embedding", normalize: Normalize = "none"
    ) -> TokenGeometry:
        """From ``(V,)`` or ``(V, K)`` coordinates (K projections, averaged).

        ``normalize="unit_variance"`` divides all coordinates by ``s``, the root of their
        variance over the vocabulary averaged over the K columns (one factor for all columns,
        so a sliced distance is exactly the raw one times ``1 / s``).
        """
        coords = coords.detach().double().cpu()
        if coords.dim() == 1:
            coords = coords[:, None]
        if coords.dim() != 2 or coords.shape[0] < 2:
            raise ValueError(
                f"coords must be (V,) or (V, K) with V >= 2, got {tuple(coords.shape)}"
            )
        if not torch.isfinite(coords).all():
            raise ValueError("coords contain NaN or inf (check the embedding matrix)")
        if normalize not in ("unit_variance", "none"):
            raise ValueError(f"normalize must be 'unit_variance' or 'none', got {normalize!r}")
        scale = 1.0
        if normalize == "unit_variance":
            spread = float(coords.var(dim=0, unbiased=False).mean().sqrt())
            if not spread > 0:
                raise ValueError("the projected coordinates are all equal: cannot normalise")
            scale = 1.0 / spread
        cols = coords.T  # (K, V)
        order = torch.argsort(cols, dim=1, stable=True)
        x = torch.gather(cols, 1, order)
        gaps = torch.zeros_like(x)
        gaps[:, :-1] = (x[:, 1:] - x[:, :-1]) * scale
        return cls(cost, cols.shape[1], order, gaps, scale)

    @classmethod
    def from_embeddings(
        cls,
        embeddings: Tensor,
        projection: Projection = "pca",
        num_projections: int = 16,
        seed: int = 0,
        cost: Cost = "embedding",
        normalize: Normalize = "none",
    ) -> TokenGeometry:
        """Build from the embedding matrix ``E (V, d)`` (any dtype/device; not kept).

        ``projection``, ``num_projections`` and ``normalize`` apply to ``cost="embedding"``
        only; ``uniform`` and ``index`` need just the vocabulary size.
        """
        if embeddings.dim() != 2:
            raise ValueError(f"embeddings must be (V, d), got shape {tuple(embeddings.shape)}")
        vocab = embeddings.shape[0]
        if cost == "uniform":
            return cls.uniform(vocab)
        if cost == "index":
            return cls.index(vocab)
        if cost != "embedding":
            raise ValueError(f"cost must be 'embedding', 'uniform' or 'index', got {cost!r}")
        if projection == "pca":
            directions = principal_direction(embeddings)[:, None]
        elif projection == "sliced":
            if num_projections < 1:
                raise ValueError(f"num_projections must be >= 1, got {num_projections}")
            directions = random_directions(embeddings.shape[1], num_projections, seed)
        else:
            raise ValueError(f"projection must be 'pca' or 'sliced', got {projection!r}")
        return cls.from_coordinates(
            _project(embeddings, directions), cost="embedding", normalize=normalize
        )

    @classmethod
    def from_config(
        cls, embeddings: Tensor | None, plot_cfg: PlotConfig, vocab_size: int | None = None
    ) -> TokenGeometry:
        """From a :class:`~plot_ray.config.PlotConfig` (``cost``, ``projection``, ``normalize``).

        ``embeddings`` may be None for the ``uniform`` and ``index`` costs (give ``vocab_size``).
        ``projection=exact`` is not a 1-D geometry: use :func:`build_geometry`.
        """
        if plot_cfg.projection == "exact" and plot_cfg.cost == "embedding":
            raise ValueError(
                "loss.plot.projection=exact builds an ExactGeometry: call build_geometry()"
            )
        if plot_cfg.cost in ("uniform", "index") and embeddings is None:
            if vocab_size is None:
                raise ValueError(f"cost={plot_cfg.cost!r} without embeddings needs vocab_size")
            return cls.uniform(vocab_size) if plot_cfg.cost == "uniform" else cls.index(vocab_size)
        if embeddings is None:
            raise ValueError("loss.plot.cost=embedding needs the embedding matrix")
        return cls.from_embeddings(
            embeddings,
            projection=plot_cfg.projection,
            num_projections=plot_cfg.num_projections,
            seed=plot_cfg.seed,
            cost=plot_cfg.cost,
            normalize="unit_variance" if plot_cfg.normalize == "unit_variance" else "none",
        )

    @classmethod
    def uniform(cls, vocab_size: int) -> TokenGeometry:
        """The 0-1 cost: W1 becomes total variation."""
        return cls("uniform", vocab_size, None, None)

    @classmethod
    def index(cls, vocab_size: int) -> TokenGeometry:
        """Token-id order, ``|i - j| / (V - 1)``."""
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        return cls.from_coordinates(
            torch.arange(vocab_size, dtype=torch.float64) / (vocab_size - 1), cost="index"
        )

    # ----------------------------------------------------------------------- device
    @property
    def num_projections(self) -> int:
        return 0 if self.order is None else self.order.shape[0]

    def to(self, device: torch.device | str) -> TokenGeometry:
        """Move the sort orders and gaps (in place; returns self). Also done automatically on
        first use with distributions on another device."""
        if self.order is not None:
            self.order = self.order.to(device)
            self.rank = self.rank.to(device)
            self.gaps = self.gaps.to(device)
        self._cast.clear()
        return self

    def _gaps(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        if self.order.device != device:  # the geometry follows the distributions' device
            self.to(device)
        key = (dtype, device)
        if key not in self._cast:
            self._cast[key] = self.gaps.to(device=device, dtype=dtype)
        return self._cast[key]

    def _check(self, p: Tensor) -> None:
        if p.shape[-1] != self.vocab_size:
            raise ValueError(
                f"distributions end in {p.shape[-1]} entries, the geometry has V={self.vocab_size}"
            )

    # ---------------------------------------------------------------------- W1
    def _sorted_cdf_diff(self, diff: Tensor, k: int) -> Tensor:
        """``cumsum`` of ``diff (..., V)`` taken in projection ``k``'s sorted order."""
        return torch.cumsum(_permute_last(diff, self.order[k]), dim=-1)

    def distance(self, p: Tensor, q: Tensor) -> Tensor:
        """W1 ``(...)`` between ``p (..., V)`` and ``q (..., V)`` (broadcast); autograd-friendly.

        Averaged over the projections for ``sliced``.
        """
        self._check(p)
        diff = p - q
        if self.cost == "uniform":
            return 0.5 * diff.abs().sum(-1)
        gaps = self._gaps(diff.dtype, diff.device)
        total = None
        for k in range(self.num_projections):
            w = self._sorted_cdf_diff(diff, k).abs() @ gaps[k]
            total = w if total is None else total + w
        return total / self.num_projections

    # The two methods below are the "divergence" interface of the fused loss kernel
    # (plot_ray.losses.chunked): plain tensors in, no autograd graph.
    def value(self, p: Tensor, q: Tensor) -> Tensor:
        """Like :meth:`distance` for ``p (n, V)``, ``q (V,)`` or ``(n, V)``, without a graph."""
        with torch.no_grad():
            return self.distance(p, q)

    def value_and_grad(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """W1 ``(n,)`` and its gradient in ``p``, the 1-D potential ``(n, V)``.

        The potential of sorted entry ``j`` is ``sum_{i >= j} sign(P_i - Q_i) * gap_i`` (a
        reverse cumulative sum); on the simplex it matters up to a constant, which the softmax
        Jacobian removes, but this is the exact gradient.
        """
        return self._w1(p, q, with_value=True)

    def grad(self, p: Tensor, q: Tensor) -> Tensor:
        """The potential alone (what the loss's backward pass needs)."""
        return self._w1(p, q, with_value=False)[1]

    def _w1(self, p: Tensor, q: Tensor, with_value: bool) -> tuple[Tensor | None, Tensor]:
        self._check(p)
        with torch.no_grad():
            diff = p - q
            if self.cost == "uniform":
                value = 0.5 * diff.abs().sum(-1) if with_value else None
                return value, 0.5 * torch.sign(diff)
            gaps = self._gaps(diff.dtype, diff.device)
            value = grad = None
            for k in range(self.num_projections):
                cdf_diff = self._sorted_cdf_diff(diff, k)
                signed = torch.sign(cdf_diff).mul_(gaps[k])
                if with_value:
                    w = cdf_diff.abs_() @ gaps[k]
                    value = w if value is None else value.add_(w)
                del cdf_diff
                # reverse cumulative sum: sum_{i >= j} s_i = s_j + total - cumsum_j
                total = signed.sum(-1, keepdim=True)
                rev = signed.sub_(torch.cumsum(signed, -1)).add_(total)
                g = _permute_last(rev, self.rank[k])
                grad = g if grad is None else grad.add_(g)
            k = self.num_projections
            return (value.div_(k) if with_value else None), grad.div_(k)


def _permute_last(x: Tensor, index: Tensor) -> Tensor:
    """``x[..., index]`` for a permutation ``index (V,)`` (``gather`` is the fastest on CPU)."""
    if x.dim() == 1:
        return x.index_select(0, index)
    flat = x.reshape(-1, x.shape[-1])
    return torch.gather(flat, 1, index.expand(flat.shape[0], -1)).reshape(x.shape)


def cost_matrix(embeddings: Tensor, p_norm: float = 2.0) -> Tensor:
    """``(V, V)`` float64 ground cost ``||E_i - E_j||_l`` (``l = p_norm``)."""
    e = embeddings.detach().double()
    return torch.cdist(e, e, p=p_norm)


def exact_wasserstein(p: Tensor, q: Tensor, embeddings: Tensor, p_norm: float = 2.0) -> Tensor:
    """Exact W1 with the full cost ``||E_i - E_j||_l``, by POT's ``ot.emd2`` (float64).

    For small vocabularies only (the LP is ``V x V``). ``p``, ``q``: ``(V,)`` or ``(n, V)``
    (broadcast); returns ``()`` or ``(n,)``. Differentiable in ``p`` and ``q`` through POT's
    torch backend (dual potentials).
    """
    import ot  # POT; imported lazily: only tests and the exact mode need it

    m = cost_matrix(embeddings, p_norm).to(p.device)
    p64, q64 = torch.broadcast_tensors(p.double(), q.double())
    if p64.dim() == 1:
        return ot.emd2(p64, q64, m)
    flat_p, flat_q = p64.reshape(-1, p64.shape[-1]), q64.reshape(-1, q64.shape[-1])
    out = torch.stack([ot.emd2(a, b, m) for a, b in zip(flat_p, flat_q, strict=True)])
    return out.reshape(p64.shape[:-1])


class ExactGeometry:
    """Exact OT on a small support ``S`` (``projection=exact``; POT's LP per distribution).

    Distributions over the whole vocabulary are restricted to ``S`` and renormalised,
    ``p_S / p(S)``, then compared with ``ot.emd2`` under ``||E_i - E_j||_l`` on ``S`` (times
    ``scale``). With the whole vocabulary as ``S`` (the default, what :func:`build_geometry`
    uses) the restriction is the identity. The gradient is the LP's dual potential pushed
    through the renormalisation. Cost grows like ``|S|^3`` per distribution: use it for
    ablations on small vocabularies (:data:`EXACT_MAX_VOCAB`), not for training at scale.

    ``normalize="unit_variance"`` divides the cost matrix by ``s = sqrt(tr Cov(E))`` over the
    whole vocabulary (``scale = 1 / s``; see the module docstring).
    """

    cost = "exact"

    def __init__(
        self,
        embeddings: Tensor,
        support: Tensor | None = None,
        p_norm: float = 2.0,
        normalize: Normalize = "none",
    ):
        if normalize not in ("unit_variance", "none"):
            raise ValueError(f"normalize must be 'unit_variance' or 'none', got {normalize!r}")
        vocab = embeddings.shape[0]
        self.vocab_size = int(vocab)
        self.support = (
            torch.arange(vocab) if support is None else torch.as_tensor(support).long().flatten()
        )
        if (
            self.support.numel() < 2
            or int(self.support.max()) >= vocab
            or int(self.support.min()) < 0
        ):
            raise ValueError(f"support must hold >= 2 token ids in [0, {vocab})")
        self.scale = 1.0
        if normalize == "unit_variance":
            e = embeddings.detach().double().cpu()
            spread = float((e - e.mean(0)).pow(2).sum(1).mean().sqrt())
            if not spread > 0:
                raise ValueError("the embeddings are all equal: cannot normalise")
            self.scale = 1.0 / spread
        e_support = embeddings[self.support.to(embeddings.device)].detach().cpu()
        self.matrix = cost_matrix(e_support, p_norm) * self.scale  # (S, S) float64, on CPU

    def to(self, device: torch.device | str) -> ExactGeometry:
        self.support = self.support.to(device)
        return self

    def _restrict(self, p: Tensor) -> tuple[Tensor, Tensor]:
        ps = p.index_select(-1, self.support.to(p.device)).double()
        mass = ps.sum(-1, keepdim=True)
        if (mass <= 0).any():
            raise ValueError("a distribution has no mass on the exact-mode support")
        return ps / mass, mass

    def distance(self, p: Tensor, q: Tensor) -> Tensor:
        p, q = torch.broadcast_tensors(p, q)
        return self.value(p, q).to(p.dtype)

    def value(self, p: Tensor, q: Tensor) -> Tensor:
        return self.value_and_grad(p, q)[0]

    def grad(self, p: Tensor, q: Tensor) -> Tensor:
        return self.value_and_grad(p, q)[1]

    def value_and_grad(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        import ot

        p, q = torch.broadcast_tensors(p.detach(), q.detach())
        flat_p, flat_q = p.reshape(-1, p.shape[-1]), q.reshape(-1, q.shape[-1])
        rp, mass = self._restrict(flat_p)
        rq, _ = self._restrict(flat_q)
        m = self.matrix.numpy()
        values = torch.empty(flat_p.shape[0], dtype=torch.float64)
        grads = torch.zeros(flat_p.shape, dtype=torch.float64)
        support = self.support.cpu()
        for i in range(flat_p.shape[0]):
            a, b = rp[i].cpu().numpy(), rq[i].cpu().numpy()
            _, log = ot.emd(a, b, m, log=True)
            values[i] = float(log["cost"])
            u = torch.from_numpy(log["u"]).double()
            # d/dp_v of W(p_S / m), m = p(S): (u_v - <u, p_S/m>) / m on S, 0 off S
            inner = float((u * rp[i].cpu()).sum())
            grads[i, support] = (u - inner) / float(mass[i])
        shape = p.shape[:-1]
        return (
            values.reshape(shape).to(device=p.device, dtype=p.dtype),
            grads.reshape(p.shape).to(device=p.device, dtype=p.dtype),
        )


def build_geometry(
    embeddings: Tensor | None, plot_cfg: PlotConfig, vocab_size: int | None = None
) -> TokenGeometry | ExactGeometry | None:
    """The geometry PLOT's divergence runs on, from the config; called once at start.

    Args:
        embeddings: ``(V, d)`` the policy's input embeddings (any dtype/device; not kept), or
            None when the config needs none (``cost`` uniform/index, ``divergence`` kl/js).
        plot_cfg: ``loss.plot`` (``divergence``, ``cost``, ``projection``, ``num_projections``,
            ``p_norm``, ``normalize``, ``seed``).
        vocab_size: V, needed when ``embeddings`` is None.

    Returns:
        None for ``kl`` / ``js`` (no ground cost); an :class:`ExactGeometry` over the whole
        vocabulary for ``projection=exact`` (at most :data:`EXACT_MAX_VOCAB` tokens); a
        :class:`TokenGeometry` otherwise.
    """
    if plot_cfg.divergence != "wasserstein":
        return None
    if plot_cfg.cost == "embedding" and embeddings is None:
        raise ValueError(
            "loss.plot.cost=embedding needs the embedding matrix (the policy's input embeddings)"
        )
    if plot_cfg.cost == "embedding" and plot_cfg.projection == "exact":
        vocab = embeddings.shape[0]
        if vocab > EXACT_MAX_VOCAB:
            raise ValueError(
                f"loss.plot.projection=exact solves a V x V transport problem per distribution "
                f"and allows at most {EXACT_MAX_VOCAB} tokens; this vocabulary has {vocab}: "
                "use loss.plot.projection=pca or sliced"
            )
        normalize = "unit_variance" if plot_cfg.normalize == "unit_variance" else "none"
        return ExactGeometry(embeddings, p_norm=plot_cfg.p_norm, normalize=normalize)
    return TokenGeometry.from_config(embeddings, plot_cfg, vocab_size=vocab_size)
