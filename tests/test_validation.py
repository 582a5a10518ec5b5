"""Validation during training, without Ray: which rows a worker scores, the per-row values
against the batched objective, and the reduction of sums and counts into the reported numbers.
The end-to-end check (a 2-worker ZeRO-3 run against a single-process pass with the final
weights) is in tests/test_train.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plot_ray.config import LossConfig, PlotConfig
from plot_ray.losses import PreferenceTargets, TokenGeometry, build_objective
from plot_ray.train.trainer import summary_lines
from plot_ray.train.validation import EvalTotals, owned_row_batches, row_metrics

V, T = 12, 8


def _column_batches(ids: list[int], size: int):
    """The whole split as Ray Data's numpy column batches of ``size`` rows."""
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        yield {"row_id": np.array(chunk, dtype=np.int64), "tag": np.array([f"r{i}" for i in chunk])}


# ------------------------------------------------------------------------------ sharding
def test_each_worker_scores_the_rows_whose_id_is_its_rank_modulo_the_world_size():
    ids = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -3]
    rank0 = list(owned_row_batches(_column_batches(ids, 3), rank=0, world_size=2, batch_size=2))
    rank1 = list(owned_row_batches(_column_batches(ids, 3), rank=1, world_size=2, batch_size=2))
    assert [b["row_id"] for b in rank0] == [[0, 2], [4, 6], [8]]  # last batch smaller, kept
    assert [b["row_id"] for b in rank1] == [[1, 3], [5, 7], [9, -3]]  # -3 % 2 == 1
    assert rank0[1]["tag"] == ["r4", "r6"]  # every column travels with its row


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_every_row_is_scored_exactly_once_across_workers(world_size):
    ids = list(range(100, 123))  # 23 rows: not divisible by any world size × batch size here
    seen = [
        i
        for rank in range(world_size)
        for batch in owned_row_batches(_column_batches(ids, 5), rank, world_size, batch_size=2)
        for i in batch["row_id"]
    ]
    assert sorted(seen) == ids


# ------------------------------------------------------------------------------ reduction
def test_totals_reduce_to_row_means_token_weighted_nll_and_per_subpreference_numbers():
    totals = EvalTotals(["harmless", "logic"])
    # loss_total, loss_vanilla, loss_plot, nll sum (nats) over tokens, accuracy, margin
    rows = [
        (0, dict(loss_total=1.0, loss_vanilla=0.8, loss_plot=0.4, chosen_nll_sum=6.0,
                 chosen_tokens=3.0, reward_accuracy=1.0, reward_margin=0.5)),
        (0, dict(loss_total=3.0, loss_vanilla=2.0, loss_plot=2.0, chosen_nll_sum=2.0,
                 chosen_tokens=1.0, reward_accuracy=0.0, reward_margin=-0.1)),
        (1, dict(loss_total=2.0, loss_vanilla=1.5, loss_plot=1.0, chosen_nll_sum=4.0,
                 chosen_tokens=4.0, reward_accuracy=1.0, reward_margin=0.2)),
    ]  # fmt: skip
    for sub, values in rows:
        totals.add(sub, values)
    m = totals.metrics(with_plot=True)
    assert m["eval/rows"] == 3
    assert m["eval/loss_total"] == pytest.approx(2.0)  # (1 + 3 + 2) / 3
    assert m["eval/loss_vanilla"] == pytest.approx(4.3 / 3)
    assert m["eval/loss_plot"] == pytest.approx(3.4 / 3)
    assert m["eval/reward_accuracy"] == pytest.approx(2 / 3)
    assert m["eval/reward_margin"] == pytest.approx(0.6 / 3)
    # token-weighted: (6 + 2 + 4) / (3 + 1 + 4) = 1.5, not the mean of per-row means (5/3)
    assert m["eval/chosen_nll"] == pytest.approx(1.5)
    assert m["eval/chosen_perplexity"] == pytest.approx(math.exp(1.5))
    assert m["eval/harmless/rows"] == 2 and m["eval/logic/rows"] == 1
    assert m["eval/harmless/loss_total"] == pytest.approx(2.0)
    assert m["eval/harmless/chosen_nll"] == pytest.approx(8 / 4)
    assert m["eval/logic/reward_margin"] == pytest.approx(0.2)
    assert "eval/loss_plot" not in totals.metrics(with_plot=False)


def test_summed_totals_of_two_workers_equal_one_pass_over_all_rows():
    rng = np.random.default_rng(0)
    rows = [
        (int(rng.integers(0, 2)), dict(loss_total=float(rng.random()), loss_vanilla=0.0,
         loss_plot=0.0, chosen_nll_sum=float(rng.random() * 9), chosen_tokens=float(k % 4 + 1)))
        for k in range(9)
    ]  # fmt: skip
    one, a, b = EvalTotals(["x", "y"]), EvalTotals(["x", "y"]), EvalTotals(["x", "y"])
    for k, (sub, values) in enumerate(rows):
        one.add(sub, values)
        (a if k < 7 else b).add(sub, values)  # uneven shares, as row ids give
    a.tensor += b.tensor  # what all_reduce(SUM) does
    assert a.metrics(with_plot=False) == pytest.approx(one.metrics(with_plot=False))
    assert "eval/reward_accuracy" not in one.metrics(with_plot=False)  # no rewards: SFT-like


def test_a_subpreference_id_outside_the_prepared_list_is_an_error():
    with pytest.raises(ValueError, match=r"subpreference_id 2 is not one of .* \(\['a', 'b'\]\)"):
        EvalTotals(["a", "b"]).add(2, {"loss_total": 1.0})


# ------------------------------------------------------------------------- per-row values
def _batch(b: int, r: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(r * b, T, V, generator=gen, dtype=torch.float64)
    ref_logps = -10 * torch.rand(r * b, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, V, (r * b, T), generator=gen)
    labels[:, :3] = -100  # the prompt
    for row in range(r * b):
        labels[row, T - (row % 3) :] = -100  # ragged responses, right padding
    return logits, labels, ref_logps


def _plot_objective(method: str, alpha: float, target: str = "global"):
    cfg = LossConfig(method=method, alpha=alpha, plot=PlotConfig(chunk_size=4, target=target))
    gen = torch.Generator().manual_seed(5)
    targets = PreferenceTargets.from_counts(
        torch.randint(0, 9, (2, V), generator=gen), torch.randint(0, 9, (2, V), generator=gen)
    )
    targets.targets = targets.targets.double()
    targets.log_tilts = targets.log_tilts.double()
    geometry = TokenGeometry.from_embeddings(torch.randn(V, 4, generator=gen, dtype=torch.float64))
    return build_objective(cfg, geometry, targets) if alpha > 0 else build_objective(cfg)


@pytest.mark.parametrize("target", ["global", "anchored"])
def test_dpo_plot_row_values_average_to_the_batched_objective(target):
    """DPO and PLOT (sequence aggregation, chosen responses) are means over pairs: the mean of
    the per-row values is the batch's loss, reward accuracy and margin. The anchored target
    reads the reference's logits row by row."""
    b = 5
    logits, labels, ref_logps = _batch(b, 2)
    ref = {"ref_logps": ref_logps}
    if target == "anchored":
        noise = torch.randn(logits.shape, generator=torch.Generator().manual_seed(9))
        ref = {"ref_logits": logits + 0.3 * noise.double()}
    subs = torch.tensor([0, 1, 1, 0, 1])
    objective = _plot_objective("dpo", 0.5, target)
    rows = row_metrics(objective, logits, labels, 2, subpreference_ids=subs, **ref)
    whole = objective(logits, labels, num_responses=2, subpreference_ids=subs, **ref)
    assert len(rows) == b

    def mean(key):
        return sum(r[key] for r in rows) / b

    assert mean("loss_total") == pytest.approx(float(whole.loss), rel=1e-12)
    assert mean("loss_vanilla") == pytest.approx(float(whole.vanilla), rel=1e-12)
    assert mean("loss_plot") == pytest.approx(float(whole.plot), rel=1e-12)
    assert mean("reward_accuracy") == pytest.approx(float(whole.metrics["rewards/accuracy"]))
    assert mean("reward_margin") == pytest.approx(float(whole.metrics["rewards/margin"]))
    assert {r["reward_accuracy"] for r in rows} <= {0.0, 1.0}


def test_chosen_nll_is_the_summed_negative_log_prob_of_the_chosen_response_tokens():
    b = 3
    logits, labels, ref_logps = _batch(b, 2, seed=1)
    rows = row_metrics(_plot_objective("dpo", 0.0), logits, labels, 2, ref_logps=ref_logps)
    # by hand: position t scores token t + 1; chosen responses are rows 0..b-1
    logp = torch.log_softmax(logits[:b, :-1], -1)
    target = labels[:b, 1:]
    mask = target != -100
    tok = torch.gather(logp, -1, target.clamp_min(0)[..., None]).squeeze(-1)
    for i, r in enumerate(rows):
        assert r["chosen_tokens"] == int(mask[i].sum())
        assert r["chosen_nll_sum"] == pytest.approx(-float(tok[i][mask[i]].sum()), rel=1e-12)
    assert all(r["loss_plot"] == 0.0 for r in rows)  # alpha = 0: no PLOT term


def test_pro_row_values_average_to_the_batched_ranking_loss_with_scores():
    b, r = 4, 3
    logits, labels, _ = _batch(b, r, seed=3)
    scores = torch.tensor([[3.0, 2.0, 0.5], [1.0, 1.0, 0.0], [2.0, 0.0, -1.0], [5.0, 4.0, 1.0]])
    objective = _plot_objective("pro", 0.0)
    rows = row_metrics(objective, logits, labels, r, scores=scores)
    whole = objective(logits, labels, num_responses=r, scores=scores)
    assert sum(x["loss_total"] for x in rows) / b == pytest.approx(float(whole.loss), rel=1e-12)
    assert all("reward_accuracy" not in x for x in rows)  # PRO defines no rewards


def test_sft_rows_have_no_rewards_and_their_loss_is_the_row_token_mean():
    b = 3
    logits, labels, _ = _batch(b, 1, seed=2)
    rows = row_metrics(_plot_objective("sft", 0.0), logits, labels, 1)
    for r in rows:
        assert "reward_accuracy" not in r
        assert r["loss_vanilla"] == pytest.approx(r["chosen_nll_sum"] / r["chosen_tokens"])


# ------------------------------------------------------------------------------- summary
def test_the_summary_shows_the_final_validation_numbers_or_says_there_are_none():
    base = {"run_dir": "/r", "steps": 4, "worker_log": "/r/l", "last_metrics": {}}
    lines = summary_lines(
        {
            **base,
            "eval": {
                "step": 4,
                "eval/rows": 19,
                "eval/loss_total": 0.75,
                "eval/reward_accuracy": 0.5,
                "eval/chosen_perplexity": 12.25,
            },
        }
    )
    assert "validation at step 4 (19 rows):" in lines
    assert "  eval/reward_accuracy   0.5000" in lines
    assert "  eval/chosen_perplexity 12.2500" in lines
    assert "no validation split (data.eval_sources): no eval/* metrics" in summary_lines(
        {**base, "eval": None}
    )
