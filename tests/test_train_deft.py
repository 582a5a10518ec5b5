"""DEFT through the training path: the filter's scoring pass, its files, and the loss term."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow]


def test_dpo_with_deft_trains_on_the_top_quarter_and_records_the_rest(
    deft_precomputed_run, prepared_dir, tiny_model_dir
):
    """The session's DPO + PLOT + DEFT run (conftest ``deft_precomputed_run``: keep fraction
    0.25, DEFT weight 1, alpha 0.5, reference log-probs precomputed)."""
    import torch

    from plot_ray.data import TokenCounts, collate_preference_batch
    from plot_ray.losses import IGNORE_INDEX, DeftLoss, shift_labels
    from plot_ray.models import load_causal_lm, load_tokenizer

    cfg, run = deft_precomputed_run

    # the loss term trains: logged each step, finite, a reward in [-1, 1], and it adds up
    assert [m["step"] for m in run.metrics] == [1, 2]
    for m in run.metrics:
        assert math.isfinite(m["loss/deft"]) and -1 <= m["loss/deft"] <= 1
        assert m["loss/total"] == pytest.approx(
            m["loss/vanilla"] + 0.5 * m["loss/plot"] + m["loss/deft"], rel=1e-4
        )
    assert run.metrics[0]["loss/vanilla"] == pytest.approx(math.log(2), abs=1e-3)

    # the filter: every prepared row scored, the top quarter kept, the rest listed with why
    # the filter: every prepared row scored, the top quarter of each sub-preference kept, the
    # rest listed with why
    prepared = json.loads((prepared_dir / "summary.json").read_text())
    n = prepared["rows_out"]
    report = json.loads((run.run_dir / "deft_filter.json").read_text())
    assert report["rows_scored"] == n
    assert report["rows_kept"] + report["rows_filtered"] == n
    for name, sub in report["per_subpreference"].items():
        assert sub["kept"] == math.ceil(0.25 * sub["scored"]), name
    assert sum(s["scored"] for s in report["per_subpreference"].values()) == n
    assert sum(s["kept"] for s in report["per_subpreference"].values()) == report["rows_kept"]
    assert run.summary["deft_filter"]["rows_kept"] == report["rows_kept"]

    scored = pq.read_table(run.run_dir / "deft_scored").to_pandas()
    kept = pq.read_table(run.run_dir / "deft_kept").to_pandas()
    filtered = pq.read_table(run.run_dir / "deft_filtered.parquet").to_pandas()
    assert len(scored) == n and len(kept) == report["rows_kept"]
    assert set(kept.row_id).isdisjoint(filtered.row_id)
    assert set(kept.row_id) | set(filtered.row_id) == set(scored.row_id)
    assert (filtered.reason == "deft_filter").all()
    names = TokenCounts.load(prepared_dir).subpreferences
    for c, name in enumerate(names):
        kept_c = kept[kept.subpreference_id == c].deft_score
        assert kept_c.min() >= filtered[filtered.subpreference == name].deft_score.max()
        assert kept_c.min() == pytest.approx(report["per_subpreference"][name]["threshold"])
    np.testing.assert_allclose(
        scored.deft_score, scored.deft_reward_best - scored.deft_reward_worst, atol=1e-12
    )

    # a stored reward is the model's: the chosen response of the top row, computed directly
    top = scored.sort_values(["deft_score", "row_id"], ascending=[False, True]).iloc[0]
    tokenizer = load_tokenizer(str(tiny_model_dir))
    row = {**top.to_dict(), "response_ids": [top.response_ids[0]]}
    batch = collate_preference_batch([row], tokenizer.pad_token_id, 1, 160)
    model = load_causal_lm(str(tiny_model_dir)).eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    frame = shift_labels(batch["labels"])
    mask = (frame != IGNORE_INDEX) & ~torch.isin(frame, torch.tensor(tokenizer.all_special_ids))
    targets = TokenCounts.load(prepared_dir).preference_targets(cfg.loss.plot, vocab_size=1024)
    direct = DeftLoss.from_targets(targets).per_sequence(logits, mask, batch["subpreference_ids"])
    assert direct.item() == pytest.approx(top.deft_reward_best, abs=1e-5)
