"""DEFT's data filter: score every training row once with the reference model, keep the top
fraction (``loss.deft.keep_fraction < 1``), record what was left out and why.

docs/plot.md, "DEFT", defines the reward; :mod:`plot_ray.losses.deft` computes it. Here, before
training starts, one Ray Data pass (the same kind of pass as ``loss.reference=precomputed``)
runs the frozen reference model (``model.reference_name_or_path``, by default the model the
policy starts from, so the policy's output distribution at step 0) over the best and the worst
response of each row, ``train.eval_batch_size`` rows per forward (default
``train.micro_batch_size``), and appends

    deft_reward_best, deft_reward_worst (null for rows with one response), deft_score

where ``deft_score`` is ``best - worst`` (``loss.deft.filter_score=margin``; rows with one
response: ``best``) or ``best`` (``chosen``). The driver then keeps the
``ceil(keep_fraction * n)`` highest scores of each sub-preference's ``n`` rows
(``loss.deft.filter_scope=subpreference``) or of the whole training split (``global``), ties to
the smaller ``row_id``, and writes, under the run's log folder:

==========================  ===========================================================
``deft_scored/``            every row with its rewards and score (parquet; reused on resume)
``deft_kept/``              the rows training reads (parquet)
``deft_filtered.parquet``   one row per row left out: ``row_id``, ``subpreference``, the
                            rewards, ``deft_score``, ``rank``, ``reason`` and ``detail``
``deft_filter.json``        the counts: rows scored / kept / filtered, the kept fraction,
                            score statistics; per sub-preference the rows scored and kept,
                            the lowest kept score (``threshold``) and the mean scores
==========================  ===========================================================

``.complete`` markers beside the folders say a pass finished; a killed pass is redone from the
start (its partial folder removed), never half-used. The validation split is not filtered.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from plot_ray.config import PlotRayConfig
from plot_ray.train.reference import ReferenceLogps, scoring_resources

__all__ = [
    "FILTER_REPORT",
    "FILTERED_ROWS",
    "DistributionRewards",
    "filter_report",
    "filter_training_rows",
    "row_scores",
]

SCORED_DIR = "deft_scored"
KEPT_DIR = "deft_kept"
FILTERED_ROWS = "deft_filtered.parquet"
FILTER_REPORT = "deft_filter.json"
REASON = "deft_filter"


def row_scores(best, worst, filter_score: str) -> np.ndarray:
    """Each row's filter score from its responses' rewards (``worst`` NaN: one response).

    ``margin``: ``best - worst``, or ``best`` for a row with one response; ``chosen``: ``best``.
    """
    best = np.asarray(best, dtype=np.float64)
    worst = np.asarray(worst, dtype=np.float64)
    if filter_score == "chosen":
        return best.copy()
    if filter_score != "margin":
        raise ValueError(f"filter_score must be 'margin' or 'chosen', got {filter_score!r}")
    return np.where(np.isnan(worst), best, best - worst)


class DistributionRewards(ReferenceLogps):
    """Ray Data actor: the reference model (loaded as for precomputed log-probs) and DEFT's
    token scores from the data artifact; appends each row's rewards and filter score."""

    def __init__(self, cfg_dict: dict, artifact_dir: str):
        import torch

        from plot_ray.data import TokenCounts
        from plot_ray.losses import DeftLoss
        from plot_ray.models import load_tokenizer

        super().__init__(cfg_dict)
        cfg = PlotRayConfig.model_validate(cfg_dict)
        tokenizer = load_tokenizer(cfg.model.tokenizer_path, cfg.model.trust_remote_code)
        counts = TokenCounts.load(artifact_dir, tokenizer=tokenizer)
        targets = counts.preference_targets(cfg.loss.plot, vocab_size=self.model.config.vocab_size)
        self.deft = DeftLoss.from_targets(targets, chunk_size=cfg.loss.plot.chunk_size)
        self.deft.to(self.device)
        self.special = torch.tensor(sorted(tokenizer.all_special_ids), dtype=torch.long)
        self.filter_score = cfg.loss.deft.filter_score

    def __call__(self, table):
        """A pyarrow batch in, the same batch plus ``deft_reward_best``, ``deft_reward_worst``
        and ``deft_score`` (float64) out."""
        import pyarrow as pa
        import torch

        from plot_ray.data import collate_preference_batch
        from plot_ray.losses import IGNORE_INDEX, shift_labels

        rows = table.to_pylist()
        # One sequence per scored response: each row's best, then (if any) its worst.
        single, owner = [], []
        for which in (0, -1):
            for i, row in enumerate(rows):
                if which == -1 and len(row["response_ids"]) < 2:
                    continue
                single.append({**row, "response_ids": [row["response_ids"][which]]})
                owner.append((i, which))
        batch = collate_preference_batch(single, self.pad_id, 1, self.max_length)
        with torch.no_grad():
            logits = self.model(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
            ).logits
        frame = shift_labels(batch["labels"]).to(self.device)
        # DEFT's positions: response labels that are not special tokens (as in training)
        mask = (frame != IGNORE_INDEX) & ~torch.isin(frame, self.special.to(self.device))
        scored = torch.nonzero(mask.any(1)).flatten()
        rewards = torch.zeros(len(single), dtype=torch.float64)
        if scored.numel():
            ids = batch["subpreference_ids"].to(self.device).index_select(0, scored)
            values = self.deft.score(logits, scored, mask.index_select(0, scored), ids)
            rewards[scored.cpu()] = values.double().cpu()
        best = np.zeros(len(rows))
        worst = np.full(len(rows), np.nan)
        for (i, which), value in zip(owner, rewards.tolist(), strict=True):
            (best if which == 0 else worst)[i] = value
        score = row_scores(best, worst, self.filter_score)
        return (
            table.append_column("deft_reward_best", pa.array(best, pa.float64()))
            .append_column("deft_reward_worst", pa.array(worst, pa.float64(), from_pandas=True))
            .append_column("deft_score", pa.array(score, pa.float64()))
        )


def filter_report(
    scores, keep, subpreference_ids, subpreferences: list[str], keep_fraction: float
) -> dict[str, Any]:
    """The filter's counts (what ``deft_filter.json`` holds besides where things are)."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    sub = np.asarray(subpreference_ids, dtype=np.int64)
    n, k = int(scores.size), int(keep.sum())

    def stats(values: np.ndarray) -> dict[str, float | None]:
        if not values.size:
            return {"min": None, "mean": None, "max": None}
        return {
            "min": float(values.min()),
            "mean": float(values.mean()),
            "max": float(values.max()),
        }

    per_sub = {}
    for c, name in enumerate(subpreferences):
        mine = sub == c
        per_sub[name] = {
            "scored": int(mine.sum()),
            "kept": int((mine & keep).sum()),
            "threshold": stats(scores[mine & keep])["min"],
            "mean_score": stats(scores[mine])["mean"],
            "mean_score_kept": stats(scores[mine & keep])["mean"],
        }
    return {
        "keep_fraction": keep_fraction,
        "rows_scored": n,
        "rows_kept": k,
        "rows_filtered": n - k,
        "kept_fraction": k / n if n else 0.0,
        "score": stats(scores),
        "score_kept": stats(scores[keep]),
        "per_subpreference": per_sub,
    }


def _filtered_rows(table, keep: np.ndarray, subpreferences: list[str], report, per_sub: bool):
    """The rows left out, one per row, with why (:data:`FILTERED_ROWS`): ``rank`` is the row's
    place (1 = best) among the rows it competed with (its sub-preference's, or all)."""
    import pyarrow as pa

    scores_all, ids = table["deft_score"].to_numpy(), table["row_id"].to_numpy()
    group = table["subpreference_id"].to_numpy() if per_sub else np.zeros(len(ids), np.int64)
    rank = np.empty(len(ids), dtype=np.int64)
    threshold = np.full(len(ids), np.nan)
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        order = members[np.lexsort((ids[members], -scores_all[members]))]
        rank[order] = np.arange(1, members.size + 1)
        kept_here = keep[members]
        threshold[members] = scores_all[members][kept_here].min() if kept_here.any() else np.nan
    out = table.filter(pa.array(~keep))
    names = [subpreferences[int(i)] for i in out["subpreference_id"].to_numpy()]
    among = [f"the {n!r}" if per_sub else "all" for n in names]
    detail = [
        f"score {s:.6g} ranks {r} among {a} rows, below the top "
        f"loss.deft.keep_fraction={report['keep_fraction']} (kept from {t:.6g} up)"
        for s, r, a, t in zip(
            out["deft_score"].to_numpy().tolist(),
            rank[~keep].tolist(),
            among,
            threshold[~keep].tolist(),
            strict=True,
        )
    ]
    return pa.table(
        {
            "row_id": out["row_id"],
            "subpreference": pa.array(names, pa.string()),
            "deft_reward_best": out["deft_reward_best"],
            "deft_reward_worst": out["deft_reward_worst"],
            "deft_score": out["deft_score"],
            "rank": pa.array(rank[~keep], pa.int64()),
            "reason": pa.array([REASON] * len(names), pa.string()),
            "detail": pa.array(detail, pa.string()),
        }
    )


def _keep_rows(table, kept_ids):
    import pyarrow.compute as pc

    return table.filter(pc.is_in(table["row_id"], value_set=kept_ids))


def _fresh(folder: Path) -> Path:
    """``folder``'s completion marker, after removing what an unfinished pass left there."""
    done = folder.parent / f"{folder.name}.complete"
    if not done.exists() and folder.exists():
        shutil.rmtree(folder)
    return done


def filter_training_rows(cfg: PlotRayConfig, dataset, out_dir: Path, artifact_dir: str):
    """``dataset`` (the tokenized training split) less the rows DEFT's filter leaves out, and
    the report (``deft_filter.json``); every file under ``out_dir`` (module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray.data

    from plot_ray.data import TokenCounts
    from plot_ray.data.feed import READ_CPUS, read_parquet_for_training
    from plot_ray.losses import select_top_fraction
    from plot_ray.synth.writer import write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scored_dir, kept_dir = out_dir / SCORED_DIR, out_dir / KEPT_DIR
    scored_done = _fresh(scored_dir)
    if not scored_done.exists():
        dataset.map_batches(
            DistributionRewards,
            fn_constructor_args=(cfg.to_dict(), str(artifact_dir)),
            # a forward without gradient, as validation's: its batch size
            batch_size=cfg.train.eval_batch_size or cfg.train.micro_batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=1),
            **scoring_resources(cfg),
        ).write_parquet(str(scored_dir))
        scored_done.touch()
    kept_done = _fresh(kept_dir)
    report_path = out_dir / FILTER_REPORT
    if not kept_done.exists():
        columns = ["row_id", "subpreference_id", "deft_reward_best", "deft_reward_worst"]
        table = pq.read_table(str(scored_dir), columns=[*columns, "deft_score"])
        keep_fraction = cfg.loss.deft.keep_fraction
        per_sub = cfg.loss.deft.filter_scope == "subpreference"
        keep = select_top_fraction(
            table["deft_score"].to_numpy(),
            keep_fraction,
            table["row_id"].to_numpy(),
            table["subpreference_id"].to_numpy() if per_sub else None,
        )
        subpreferences = TokenCounts.load(artifact_dir).subpreferences
        report = filter_report(
            table["deft_score"].to_numpy(),
            keep,
            table["subpreference_id"].to_numpy(),
            subpreferences,
            keep_fraction,
        )
        report.update(
            filter_score=cfg.loss.deft.filter_score,
            filter_scope=cfg.loss.deft.filter_scope,
            scored_by=cfg.model.reference_path,
            scored_rows=str(scored_dir),
            kept_rows=str(kept_dir),
            filtered_rows=str(out_dir / FILTERED_ROWS),
        )
        filtered = _filtered_rows(table, keep, subpreferences, report, per_sub)
        tmp = out_dir / f".{FILTERED_ROWS}.tmp-{os.getpid()}"
        pq.write_table(filtered, tmp)
        os.replace(tmp, out_dir / FILTERED_ROWS)
        write_json(report_path, report)
        kept_ids = pa.array(table["row_id"].to_numpy()[keep], pa.int64())
        read_parquet_for_training(str(scored_dir)).map_batches(
            _keep_rows,
            fn_kwargs={"kept_ids": kept_ids},
            batch_format="pyarrow",
            num_cpus=READ_CPUS,  # beside the training workers, as the reads are
        ).write_parquet(str(kept_dir))
        kept_done.touch()
    return read_parquet_for_training(str(kept_dir)), json.loads(report_path.read_text())
