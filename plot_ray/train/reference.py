"""Reference log-probs computed once, before training, in a Ray Data pass (``loss.reference=
precomputed``), so that training workers need no reference model in memory.

Each row gains ``ref_logps``: the frozen reference model's summed log-probability of each of its
responses (best first), exactly what the DPO-like losses need. The result is written as parquet
under the run folder and reused when the run resumes. The anchored PLOT target needs the
reference's full logits and so cannot use this (the config rejects that combination).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from plot_ray.config import PlotRayConfig

__all__ = ["ReferenceLogps", "add_reference_logps"]


class ReferenceLogps:
    """Ray Data actor: loads the reference model once, scores batches of tokenized rows."""

    def __init__(self, cfg_dict: dict):
        import torch

        from plot_ray.models import load_causal_lm, load_tokenizer

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        torch.set_num_threads(1)
        cfg = PlotRayConfig.model_validate(cfg_dict)
        self.model = load_causal_lm(
            cfg.model.reference_path, cfg.model.dtype, cfg.model.trust_remote_code
        ).eval()
        self.pad_id = load_tokenizer(cfg.model.tokenizer_path, cfg.model.trust_remote_code).pad_token_id
        self.max_length = cfg.data.max_length

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from plot_ray.data import collate_preference_batch
        from plot_ray.losses import sequence_logprobs

        batch = collate_preference_batch(rows, self.pad_id, None, self.max_length)
        with torch.no_grad():
            logits = self.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            logps = sequence_logprobs(logits, batch["labels"]).sums
        b = len(rows["row_id"])
        per_row = logps.float().view(-1, b).T.numpy()  # (B, R), best response first
        rows["ref_logps"] = np.array([r.astype(np.float32) for r in per_row], dtype=object)
        return rows


def add_reference_logps(cfg: PlotRayConfig, dataset, out_dir: Path):
    """``dataset`` with a ``ref_logps`` column, computed once and stored under ``out_dir``."""
    import ray.data

    out_dir = Path(out_dir)
    done = out_dir.parent / f"{out_dir.name}.complete"  # beside, not inside, the parquet
    if not done.exists():
        scored = dataset.map_batches(
            ReferenceLogps,
            fn_constructor_args=(cfg.to_dict(),),
            batch_size=cfg.train.micro_batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=min(1.0, cfg.train.cpus_per_worker),
        )
        scored.write_parquet(str(out_dir))
        done.touch()
    return ray.data.read_parquet(str(out_dir))
