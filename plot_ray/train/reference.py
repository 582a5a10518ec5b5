"""Reference log-probs computed once, before training, in a Ray Data pass (``loss.reference=
precomputed``), so that training workers need no reference model in memory.

Each row gains ``ref_logps``: the frozen reference model's summed log-probability of each of its
responses (best first), exactly what the DPO-like losses need. The result is written as parquet
under the run folder and reused when the run resumes. With ``train.use_gpu`` the scoring actor
takes one GPU and runs the model there (it refuses to start on a node without CUDA); its
logits are reduced to the sums at once, batch by batch. The anchored PLOT target needs the
reference's full logits and so cannot use this (the config rejects that combination).
"""

from __future__ import annotations

import os
from pathlib import Path

from plot_ray.config import PlotRayConfig

__all__ = ["ReferenceLogps", "add_reference_logps", "scoring_resources"]


class ReferenceLogps:
    """Ray Data actor: loads the reference model once, scores batches of tokenized rows."""

    def __init__(self, cfg_dict: dict):
        import torch

        from plot_ray.models import load_causal_lm, load_tokenizer

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        torch.set_num_threads(1)
        cfg = PlotRayConfig.model_validate(cfg_dict)
        self.device = torch.device("cpu")
        if cfg.train.use_gpu:
            from plot_ray.train.deepspeed_config import require_cuda

            require_cuda()
            self.device = torch.device("cuda")  # the GPU Ray gave this actor
        self.model = (
            load_causal_lm(cfg.model.reference_path, cfg.model.dtype, cfg.model.trust_remote_code)
            .to(self.device)
            .eval()
        )
        self.pad_id = load_tokenizer(
            cfg.model.tokenizer_path, cfg.model.trust_remote_code
        ).pad_token_id
        self.max_length = cfg.data.max_length

    def __call__(self, table):
        """A pyarrow batch in, the same batch plus ``ref_logps`` (list<float32>) out. Arrow in
        and out keeps the ragged id columns typed (numpy would turn them into pickled objects)."""
        import pyarrow as pa
        import torch

        from plot_ray.data import collate_preference_batch
        from plot_ray.losses import sequence_logprobs

        rows = table.to_pylist()
        batch = collate_preference_batch(rows, self.pad_id, None, self.max_length)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.no_grad():
            logits = self.model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            logps = sequence_logprobs(logits, batch["labels"]).sums
        per_row = logps.float().cpu().view(-1, len(rows)).T  # (B, R), best response first
        return table.append_column(
            "ref_logps", pa.array(per_row.tolist(), type=pa.list_(pa.float32()))
        )


def scoring_resources(cfg: PlotRayConfig) -> dict[str, float]:
    """The scoring actor's Ray resources: one GPU with ``train.use_gpu``, a CPU share always."""
    cpus = {"num_cpus": min(1.0, cfg.train.cpus_per_worker)}
    return {**cpus, "num_gpus": 1.0} if cfg.train.use_gpu else cpus


def add_reference_logps(cfg: PlotRayConfig, dataset, out_dir: Path):
    """``dataset`` with a ``ref_logps`` column, computed once and stored under ``out_dir``."""
    import ray.data

    from plot_ray.data.feed import read_parquet_for_training

    out_dir = Path(out_dir)
    done = out_dir.parent / f"{out_dir.name}.complete"  # beside, not inside, the parquet
    if not done.exists():
        scored = dataset.map_batches(
            ReferenceLogps,
            fn_constructor_args=(cfg.to_dict(),),
            batch_size=cfg.train.micro_batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=1),
            **scoring_resources(cfg),
        )
        scored.write_parquet(str(out_dir))
        done.touch()
    return read_parquet_for_training(str(out_dir))
