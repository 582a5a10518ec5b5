"""The training paths a GPU takes, run on CPU (issue 22): DeepSpeed's accelerator follows
``train.use_gpu`` or training refuses to start; the chunk size accelerators use (1024 positions,
several position blocks per chunk, a chunk boundary inside a row) against the reference PLOT
implementation in float64 and bfloat16."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest
import torch

from plot_ray.losses import PlotLoss, PreferenceTargets, TokenGeometry
from plot_ray.losses.chunked import _Plan, default_chunk_size
from plot_ray.train.deepspeed_config import AcceleratorError, select_accelerator

GPU_CHUNK = default_chunk_size("cuda")


# ------------------------------------------------------------------------- accelerator
@pytest.fixture
def worker_env(monkeypatch):
    """A worker's environment: no DS_ACCELERATOR, DeepSpeed not imported yet, and as many CUDA
    devices as the test says (``worker_env(n)``)."""
    monkeypatch.setenv("DS_ACCELERATOR", "")  # so that teardown restores the original state
    monkeypatch.delenv("DS_ACCELERATOR")
    monkeypatch.setitem(
        sys.modules, "deepspeed.accelerator.real_accelerator", SimpleNamespace(ds_accelerator=None)
    )

    def devices(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return devices


def test_use_gpu_without_a_cuda_device_refuses_to_start_and_says_what_to_check(
    worker_env, monkeypatch
):
    worker_env(0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(AcceleratorError) as err:
        select_accelerator(True)
    message = str(err.value)
    for part in ("train.use_gpu=true", "sees no CUDA device", "CUDA_VISIBLE_DEVICES=''"):
        assert part in message
    assert "nvidia-smi" in message and "train.use_gpu=false" in message
    assert "DS_ACCELERATOR" not in os.environ  # DeepSpeed would not silently pick the CPU


def test_the_accelerator_follows_use_gpu(worker_env):
    worker_env(1)
    assert select_accelerator(True) == "cuda" and os.environ["DS_ACCELERATOR"] == "cuda"
    del os.environ["DS_ACCELERATOR"]
    assert select_accelerator(False) == "cpu" and os.environ["DS_ACCELERATOR"] == "cpu"


@pytest.mark.parametrize("use_gpu, env", [(True, "cpu"), (False, "cuda")])
def test_a_ds_accelerator_that_contradicts_use_gpu_is_an_error(
    worker_env, monkeypatch, use_gpu, env
):
    worker_env(1)
    monkeypatch.setenv("DS_ACCELERATOR", env)
    flag = "true" if use_gpu else "false"
    with pytest.raises(AcceleratorError, match=f"train.use_gpu={flag} .* DS_ACCELERATOR={env}"):
        select_accelerator(use_gpu)


def test_deepspeed_imported_too_early_on_the_cpu_is_an_error(worker_env, monkeypatch):
    worker_env(1)
    cpu = SimpleNamespace(device_name=lambda: "cpu")
    monkeypatch.setitem(
        sys.modules, "deepspeed.accelerator.real_accelerator", SimpleNamespace(ds_accelerator=cpu)
    )
    with pytest.raises(AcceleratorError, match="imported in this process before"):
        select_accelerator(True)
    assert select_accelerator(False) == "cpu"


# ------------------------------------------------------------------- the GPU chunk size
V = 16


def _targets(dtype=torch.float64) -> PreferenceTargets:
    gen = torch.Generator().manual_seed(0)
    targets = PreferenceTargets.from_counts(
        torch.randint(0, 6, (2, V), generator=gen),
        torch.randint(0, 6, (2, V), generator=gen),
        names=["harmless", "logic"],
        transform="softmax",
    )
    targets.targets, targets.log_tilts = targets.targets.to(dtype), targets.log_tilts.to(dtype)
    return targets


def _geometry() -> TokenGeometry:
    emb = torch.randn(V, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return TokenGeometry.from_embeddings(emb, projection="sliced", num_projections=3)


def test_a_given_chunk_size_is_used_on_any_device_and_the_default_follows_the_device():
    logits = torch.zeros(1, 2000, 4)
    labels = torch.zeros(1, 2000, dtype=torch.long)
    assert _Plan(logits, labels, None, None, GPU_CHUNK).chunk == GPU_CHUNK == 1024
    assert _Plan(logits, labels, None, None, None).chunk == default_chunk_size("cpu") == 32
    assert list(_Plan(logits, labels, None, None, GPU_CHUNK).chunks(0)) == [(0, 1024), (1024, 2000)]
    with pytest.raises(ValueError, match="chunk_size must be a positive"):
        _Plan(logits, labels, None, None, 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("target", ["global", "anchored"])
@pytest.mark.parametrize("aggregate", ["sequence", "token"])
def test_fused_plot_at_the_gpu_chunk_size_matches_the_reference(dtype, target, aggregate):
    """Rows of 1100 positions: one full 1024-position chunk of 32 blocks, then 76 positions
    (two blocks and a partial one); PLOT values, token log-probs and their one gradient."""
    b, t = 3, 1100
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(b, t, V, dtype=torch.float64, generator=gen).to(dtype)
    ref = (logits.double() + 0.5 * torch.randn(b, t, V, dtype=torch.float64, generator=gen)).to(
        dtype
    )
    mask = torch.rand(b, t, generator=gen) > 0.2
    labels = torch.randint(0, V, (b, t), generator=gen)
    # positions that PLOT reads, that the log-probs read, both and neither
    labels[:, :50] = -100
    labels[~mask & (torch.rand(b, t, generator=gen) > 0.5)] = -100
    ids = torch.tensor([0, 1, 0])
    loss = PlotLoss(
        _targets(), _geometry(), target=target, aggregate=aggregate, chunk_size=GPU_CHUNK
    )
    weights = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)

    fused_leaf = logits.clone().requires_grad_()
    rows = torch.arange(b)
    pbar = loss.reference_mean_softmax(ref, mask) if target == "anchored" else None
    token_logps, raw = loss.fused(fused_leaf, labels, rows, mask, loss.row_targets(ids, pbar))
    fused = loss.normalized(raw, ids)
    ((fused * weights).sum() + token_logps.sum(1) @ weights.to(token_logps.dtype)).backward()

    ref_leaf = logits.clone().requires_grad_()
    reference = loss.per_sequence(ref_leaf, mask, ids, ref)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    logp = torch.log_softmax(ref_leaf.to(acc), -1)
    picked = logp.gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1) * (labels != -100)
    ((reference * weights).sum() + picked.sum(1) @ weights.to(acc)).backward()

    if dtype == torch.float64:
        tol = dict(atol=1e-10, rtol=1e-10)
        grad_tol = dict(atol=1e-12, rtol=1e-9)
    else:
        # Both paths compute in float32 from the same bfloat16 logits, so values differ only by
        # float32 summation order (~1e-7 relative, over ~1000 positions); each gradient entry is
        # a float32 number rounded once to bfloat16 on either side, so the two may land one
        # bfloat16 step apart (relative 2^-8): rtol 2^-7 leaves one step of margin, and atol
        # covers entries near zero, where float32 order differences decide the rounding.
        tol = dict(atol=1e-6, rtol=1e-5)
        grad_tol = dict(atol=1e-6 * float(ref_leaf.grad.abs().max()), rtol=2**-7)
    torch.testing.assert_close(fused, reference, **tol)
    torch.testing.assert_close(token_logps.to(acc), picked, **tol)
    assert fused_leaf.grad.dtype == dtype
    torch.testing.assert_close(fused_leaf.grad.double(), ref_leaf.grad.double(), **grad_tol)
    assert float(fused_leaf.grad.abs().max()) > 1e-3  # a gradient that means something
