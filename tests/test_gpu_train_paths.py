"""The training paths a GPU takes, run on CPU (issue 22): DeepSpeed's accelerator follows
``train.use_gpu`` or training refuses to start; the chunk size accelerators use (1024 positions,
several position blocks per chunk, a chunk boundary inside a row) against the reference PLOT
implementation in float64 and bfloat16; and the train loop's reference-first order, which frees
the reference logits before the policy's forward, with the same numbers as before and a bounded
peak at Llama 3's vocabulary. No Ray: the recipe's loss methods run on plain modules."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest
import torch

from plot_ray.config import LossConfig, PlotConfig, PlotRayConfig
from plot_ray.losses import (
    PlotLoss,
    PreferenceTargets,
    ReferenceStats,
    TokenGeometry,
    build_objective,
    dpo_loss,
    sequence_logprobs,
)
from plot_ray.losses.chunked import _Plan, default_chunk_size
from plot_ray.profiling import peak_live_bytes
from plot_ray.train.deepspeed_config import (
    AcceleratorError,
    isolate_extension_builds,
    select_accelerator,
)
from plot_ray.train.loop import PreferenceRecipe
from plot_ray.train.reference import ReferenceLogps, scoring_resources

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


def test_deepspeeds_ops_build_with_the_environments_ninja_in_a_folder_of_its_own(
    monkeypatch, tmp_path
):
    """Ninja rebuilds when another ninja version or another command wrote the folder's build
    log: every process of an environment takes the ninja installed with DeepSpeed, whatever
    its PATH (the system's ninja first, as in the suite's Ray workers), and a command made of
    other paths or another compiler gets another folder, the same one the same folder; a
    folder the user chose is kept."""
    import shutil

    import ninja
    from torch.utils.cpp_extension import get_default_build_root

    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin"]))
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    first = isolate_extension_builds()
    assert shutil.which("ninja") == os.path.join(ninja.BIN_DIR, "ninja")
    assert os.environ["PATH"].split(os.pathsep) == [ninja.BIN_DIR, "/usr/bin", "/bin"]
    assert os.environ["TORCH_EXTENSIONS_DIR"] == first
    assert os.path.dirname(first) == get_default_build_root()
    assert os.path.basename(first).startswith("plot_ray-")
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    assert isolate_extension_builds() == first  # this environment: the same folder again
    assert os.environ["PATH"].split(os.pathsep) == [ninja.BIN_DIR, "/usr/bin", "/bin"]
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setenv("CXX", "g++")  # another command line
    assert isolate_extension_builds() != first
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.delenv("CXX")  # the compiler again, torch installed elsewhere
    monkeypatch.setattr(torch, "__file__", str(tmp_path / "elsewhere" / "torch" / "__init__.py"))
    other = isolate_extension_builds()
    assert other != first and os.path.basename(other).startswith("plot_ray-")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "mine"))
    assert isolate_extension_builds() == str(tmp_path / "mine")


def test_precomputed_reference_logps_are_scored_on_a_gpu_when_training_uses_gpus(worker_env):
    gpu = PlotRayConfig.model_validate({"train": {"use_gpu": True}})
    assert scoring_resources(gpu) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert scoring_resources(PlotRayConfig()) == {"num_cpus": 1.0}
    worker_env(0)
    with pytest.raises(AcceleratorError, match="sees no CUDA device"):
        ReferenceLogps(gpu.to_dict())  # before loading any model


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


# ------------------------------------------------------------------ the reference order
def test_reference_stats_give_the_objective_its_numbers_and_are_checked_against_the_batch():
    cfg = LossConfig(method="dpo", alpha=0.5, plot=PlotConfig(target="anchored"))
    objective = build_objective(cfg, _geometry(), _targets())
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(4, 6, V, dtype=torch.float64, generator=gen)
    ref_logits = logits + torch.randn(4, 6, V, dtype=torch.float64, generator=gen)
    labels = torch.randint(0, V, (4, 6), generator=gen)
    labels[:, :2] = -100
    stats = objective.reference_stats(ref_logits, labels, num_responses=2)
    assert stats.logps.shape == (4,) and stats.mean_softmax.shape == (2, V)  # chosen rows
    out = objective(logits, labels, 2, reference=stats)
    assert torch.equal(out.loss, objective(logits, labels, 2, ref_logits=ref_logits).loss)
    with pytest.raises(ValueError, match="not both"):
        objective(logits, labels, 2, ref_logits=ref_logits, reference=stats)
    with pytest.raises(ValueError, match=r"mean_softmax \(1, 16\) must be \(S, V\) = \(2, 16\)"):
        objective(logits, labels, 2, reference=ReferenceStats(stats.logps, stats.mean_softmax[:1]))
    with pytest.raises(ValueError, match="anchored needs ref_logits"):
        objective(logits, labels, 2, reference=ReferenceStats(logps=stats.logps))
    with pytest.raises(ValueError, match="needs reference log-probs"):
        objective(logits, labels, 2, reference=ReferenceStats(mean_softmax=stats.mean_softmax))


def _llama(vocab: int, seed: int, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).to(dtype)


@pytest.fixture
def make_recipe(tmp_path, monkeypatch):
    """The recipe's loss stage on plain modules: policy, frozen reference and objective as
    ``setup()`` would build them, without Ray or DeepSpeed."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # what the recipe sets, undone afterwards
    return lambda *args, **kwargs: _recipe(tmp_path, *args, **kwargs)


def _recipe(tmp_path, loss: dict, vocab: int, dtype: torch.dtype, targets=None, geometry=None):
    cfg = PlotRayConfig.model_validate({"loss": loss})
    recipe = PreferenceRecipe({"cfg": cfg.to_dict(), "run_dir": tmp_path, "artifact_dir": tmp_path})
    recipe.device = torch.device("cpu")
    recipe.engine = _llama(vocab, 0, dtype)
    recipe.reference = _llama(vocab, 1, dtype).requires_grad_(False).eval()
    recipe.objective = build_objective(cfg.loss, geometry, targets)
    return recipe


def _batch(pairs: int, t: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (2 * pairs, t), generator=gen)
    labels = ids.clone()
    labels[:, :5] = -100  # the prompt
    labels[1, t - 3 :] = -100  # a shorter response (right padding)
    return {
        "input_ids": ids,
        "attention_mask": (labels != -100) | (torch.arange(t) < 5),
        "labels": labels,
        "subpreference_ids": torch.arange(pairs) % 2,
    }


def _old_order(recipe, batch):
    """What the loop did before: the reference logits kept through the policy's forward and
    handed to the objective (anchored), or its log-probs from sequence_logprobs (vanilla)."""
    with torch.no_grad():
        ref_logits = recipe._forward(recipe.reference, batch)
    ref_logps = None
    if not recipe.objective.needs_reference_logits:
        ref_logps, ref_logits = sequence_logprobs(ref_logits, batch["labels"]).sums, None
    logits = recipe._forward(recipe.engine, batch)
    return recipe.objective(
        logits,
        batch["labels"],
        num_responses=2,
        ref_logps=ref_logps,
        ref_logits=ref_logits,
        subpreference_ids=batch["subpreference_ids"],
    )


def _grads(model) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize(
    "loss",
    [
        {"method": "dpo", "alpha": 0.0},
        {"method": "dpo", "alpha": 0.5, "plot": {"target": "anchored", "chunk_size": 4}},
        {"method": "ipo", "alpha": 0.5, "plot": {"target": "global", "aggregate": "token"}},
    ],
    ids=["dpo", "dpo+anchored", "ipo+global"],
)
def test_reference_first_gives_the_same_loss_and_gradients(make_recipe, loss):
    vocab = 64
    with torch.no_grad():
        emb = _llama(vocab, 0, torch.float64).get_input_embeddings().weight
    gen = torch.Generator().manual_seed(3)
    targets = PreferenceTargets.from_counts(
        torch.randint(0, 9, (2, vocab), generator=gen),
        torch.randint(0, 9, (2, vocab), generator=gen),
    )
    geometry = TokenGeometry.from_embeddings(emb.detach())
    recipe = make_recipe(loss, vocab, torch.float64, targets.to(torch.float64), geometry)
    batch = _batch(pairs=2, t=12, vocab=vocab)

    new = recipe.compute_loss(batch)
    new.loss.backward()
    new_grads = _grads(recipe.engine)
    old = _old_order(recipe, batch)
    old.loss.backward()
    old_grads = _grads(recipe.engine)
    assert torch.equal(new.loss, old.loss) and torch.equal(new.plot, old.plot)
    assert all(torch.equal(a, b) for a, b in zip(new_grads, old_grads, strict=True))

    # ...and both are the formulas, written out on full log-softmaxes (one policy forward:
    # two would add up the model's backward differently)
    labels, b = batch["labels"], 2
    mask = labels[:, 1:] != -100

    def sums(logits):
        logp = torch.log_softmax(logits[:, :-1], -1)
        return (logp.gather(-1, labels[:, 1:].clamp_min(0)[..., None]).squeeze(-1) * mask).sum(1)

    with torch.no_grad():
        ref_logits = recipe._forward(recipe.reference, batch)
    logits = recipe._forward(recipe.engine, batch)
    pol, ref_sums = sums(logits), sums(ref_logits)
    if loss["method"] == "dpo":
        vanilla = dpo_loss(pol[:b], pol[b:], ref_sums[:b], ref_sums[b:], beta=0.1)[0]
    else:  # IPO on length-normalised log-ratios, target margin 1 / (2 beta)
        ratio = (pol - ref_sums) / mask.sum(1)
        vanilla = ((ratio[:b] - ratio[b:]) - 1 / (2 * 0.1)).pow(2).mean()
    expected = vanilla
    if loss["alpha"]:
        plot = recipe.objective.plot_loss(
            logits[:b, :-1], mask[:b], batch["subpreference_ids"], ref_logits[:b, :-1]
        )
        expected = vanilla + loss["alpha"] * plot
    expected.backward()
    torch.testing.assert_close(new.loss, expected, atol=1e-12, rtol=1e-10)
    for got, want in zip(new_grads, _grads(recipe.engine), strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-8)


def test_reference_logits_are_freed_before_the_policy_forward_at_llama3_vocabulary(make_recipe):
    """Llama 3's 128,256-token vocabulary, bfloat16 and the accelerators' chunk size: the
    forward's peak holds one ``(R*B, T, V)`` logits tensor, not two (the old order held the
    reference's as well, measured side by side), and a whole loss + backward peaks at the
    policy's logits and their gradient plus a few float32 chunk temporaries."""
    vocab, pairs, t = 128_256, 2, 40
    gen = torch.Generator().manual_seed(0)
    targets = PreferenceTargets.from_counts(
        torch.randint(0, 9, (1, vocab), generator=gen),
        torch.randint(0, 9, (1, vocab), generator=gen),
    )
    geometry = TokenGeometry.from_embeddings(torch.randn(vocab, 8, generator=gen))
    loss = {"method": "dpo", "alpha": 0.5, "plot": {"target": "anchored", "chunk_size": GPU_CHUNK}}
    recipe = make_recipe(loss, vocab, torch.bfloat16, targets, geometry)
    batch = _batch(pairs, t, vocab)
    batch["subpreference_ids"].zero_()
    logits_bytes = 2 * pairs * t * vocab * 2  # bfloat16, the reference's as large
    chunk_bytes = min(t, GPU_CHUNK) * vocab * 4  # one float32 (chunk, V) temporary

    def step():
        recipe.compute_loss(batch).loss.backward()
        recipe.engine.zero_grad(set_to_none=True)

    forward = peak_live_bytes(lambda: recipe.compute_loss(batch))
    old_forward = peak_live_bytes(lambda: _old_order(recipe, batch))
    whole = peak_live_bytes(step)
    assert forward + 0.95 * logits_bytes <= old_forward
    assert forward < logits_bytes + 3 * chunk_bytes
    params = sum(p.numel() * 2 for p in recipe.engine.parameters())  # their gradients
    assert whole < 2 * logits_bytes + 3 * chunk_bytes + params
