"""Evaluation actors on their device (issue 22, finding 3): an actor asked for ``cuda`` where
there is none raises instead of computing on the CPU, and the perplexity scorer's chunked
computation gives the numbers of the straightforward one.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from plot_ray.config import load_config
from plot_ray.eval.engines import EngineSettings

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


# --------------------------------------------------------------------------- no GPU here
@NO_GPU
def test_an_actor_asked_for_cuda_without_a_gpu_raises_instead_of_using_the_cpu(tiny_model_dir):
    from plot_ray.eval.attack_stage import AttackActor
    from plot_ray.eval.engines import HFGenerator
    from plot_ray.eval.judges import refusal_judge
    from plot_ray.eval.scorers import NLLScorer
    from plot_ray.models.devices import checked_device
    from plot_ray.models.reward import RewardScorer

    s = dataclasses.replace(
        EngineSettings.resolve(load_config().eval, use_gpu=False, cpus=2), use_gpu=True
    )
    model = str(tiny_model_dir)
    actors = {
        "generator": lambda: HFGenerator(model, dataclasses.asdict(s)),
        "reward scorer": lambda: RewardScorer(model, device="cuda"),  # fails before loading
        "perplexity scorer": lambda: NLLScorer(model, device="cuda"),
        "attack actor": lambda: AttackActor(
            model, {}, 1, "bfloat16", 0, refusal_judge("synthetic"), device="cuda"
        ),
    }
    for name, build in actors.items():
        with pytest.raises(RuntimeError, match=r"device='cuda', but this process sees 0 CUDA") as e:
            build()
        assert "does not fall back to the CPU" in str(e.value), name
    assert checked_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        checked_device("gpu")


# ----------------------------------------------------------------------------- perplexity
def test_forward_groups_bound_the_padded_positions_of_each_forward_pass():
    from plot_ray.eval.scorers import forward_groups

    # 2 x 5 = 10 fits; 3 x 5, 2 x 9 do not; a row longer than the budget goes alone
    assert forward_groups([3, 5, 2, 9, 1], 10) == [
        range(0, 2),
        range(2, 3),
        range(3, 4),
        range(4, 5),
    ]
    assert forward_groups([4, 4, 4], 12) == [range(0, 3)]
    assert forward_groups([20], 10) == [range(0, 1)]
    assert forward_groups([], 10) == []


def straightforward_nll(model, sequences, labels, pad_id):
    """The perplexity scorer's computation before it was chunked: one forward of the whole
    right-padded batch, its logits to float32 at once, log-softmax, gather, sum."""
    width = max(map(len, sequences))
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    target = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])[:, 1:]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()[:, :-1]
    logp = torch.log_softmax(logits, -1).gather(-1, target.clamp_min(0)[..., None])[..., 0]
    scored = target != -100
    return (-(logp * scored).sum(-1)).double().numpy(), scored.sum(-1).numpy()


def test_the_perplexity_scorer_equals_the_straightforward_computation(tiny_model_dir, synth_dir):
    import numpy as np

    from plot_ray.eval.engines import chat_prompts
    from plot_ray.eval.scorers import NLLScorer, sequence_nll
    from plot_ray.synth import read_jsonl

    rows = read_jsonl(synth_dir / "eval" / "benign.jsonl")[:6]
    scorer = NLLScorer(str(tiny_model_dir))
    batch = {
        "prompt": np.array(chat_prompts(scorer.tok, [r["prompt"] for r in rows]), dtype=object),
        "reference": np.array([r["reference"] for r in rows], dtype=object),
    }
    out = scorer(dict(batch))
    tok = scorer.tok
    sequences, labels = [], []
    for prompt, reference in zip(batch["prompt"], batch["reference"], strict=True):
        p = tok(str(prompt), add_special_tokens=False)["input_ids"]
        r = tok(str(reference), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        sequences.append(p + r)
        labels.append([-100] * len(p) + r)
    nll, counts = straightforward_nll(scorer.model, sequences, labels, tok.pad_token_id)
    assert out["num_tokens"].tolist() == counts.tolist()
    assert all(c > 1 for c in counts) and out["nll"].dtype == np.float64
    np.testing.assert_allclose(out["nll"], nll, rtol=1e-5)
    # One row per forward pass (a budget below every row's length) gives the same numbers.
    alone, alone_counts = sequence_nll(scorer.model, sequences, labels, tok.pad_token_id, 1)
    np.testing.assert_allclose(alone, nll, rtol=1e-5)
    assert alone_counts.tolist() == counts.tolist()
    # In bfloat16 the logits stay bfloat16; float32 chunks give the full upcast's numbers.
    half = scorer.model.to(torch.bfloat16)
    reference, _ = straightforward_nll(half, sequences, labels, tok.pad_token_id)
    chunked, _ = sequence_nll(half, sequences, labels, tok.pad_token_id)
    np.testing.assert_allclose(chunked, reference, rtol=1e-5)
    assert np.abs(reference - nll).max() > 1e-3  # bfloat16 is measurably another computation
