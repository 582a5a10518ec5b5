"""The PLOT fine-tuning loop that runs inside every Ray Train worker.

One file, one recipe, read top to bottom:

    setup()        config → tokenizer → preference targets → DeepSpeed policy engine →
                   token geometry (policy embeddings at step 0) → objective → reference model →
                   restore from the latest checkpoint, if any → data iterator
    train()        micro-steps with gradient accumulation until ``train.max_steps``;
                   metrics every ``train.log_every`` steps, checkpoints every ``checkpoint_every``
    save_final()   consolidated Hugging Face weights (safetensors) + tokenizer

Each optimizer step computes ``L = L_vanilla + alpha * L_PLOT`` on one concatenated forward of
all responses of a micro-batch (see ``plot_ray.losses.objective`` for the layout). Ray appears
only in reporting and checkpointing; the rest is ordinary DeepSpeed code.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist

from plot_ray.config import PlotRayConfig
from plot_ray.train.checkpoint import (
    DEEPSPEED_TAG,
    HF_MODEL_DIR,
    CheckpointError,
    TrainState,
    load_rng,
    read_state,
    save_rng,
    write_state,
)

__all__ = ["train_loop_per_worker", "PreferenceRecipe", "NonFiniteLossError", "lr_lambda"]


class NonFiniteLossError(RuntimeError):
    """More NaN/inf losses than ``train.max_nan_skips`` allows."""


def lr_lambda(kind: str, warmup_steps: int, total_steps: int):
    """Learning-rate multiplier per optimizer step: linear warm-up, then constant/linear/cosine."""

    def fn(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


class PreferenceRecipe:
    """One worker's share of a training run (see the module docstring for the stages)."""

    def __init__(self, loop_config: dict[str, Any]):
        self.cfg = PlotRayConfig.model_validate(loop_config["cfg"])
        if not self.cfg.train.use_gpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed is imported
        self.run_dir = Path(loop_config["run_dir"])
        self.artifact_dir = loop_config["artifact_dir"]
        # Fault injection, for the tests: crash one worker once at a step; NaN losses at steps.
        self.fail_at_step = loop_config.get("fail_at_step")
        self.nan_at_steps = set(loop_config.get("nan_at_steps") or ())
        self.step = 0
        self.consumed = 0
        self.nan_skips = 0

    # ------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        import ray.train

        cfg = self.cfg
        torch.set_num_threads(cfg.train.threads_per_worker)
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self._seed(cfg.train.seed + self.rank)
        self.device = self._device()

        from plot_ray.models import load_tokenizer

        self.tokenizer = load_tokenizer(cfg.model.tokenizer_path, cfg.model.trust_remote_code)
        self.counts = self._setup_counts()
        self.engine = self._setup_policy()
        self.objective = self._setup_objective()
        self.reference = self._setup_reference()
        self._restore(ray.train.get_checkpoint())
        self.batches = self._setup_data()
        self._setup_logging()

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _device(self) -> torch.device:
        from deepspeed.accelerator import get_accelerator

        acc = get_accelerator()
        if acc.device_name() == "cpu":
            return torch.device("cpu")
        import ray.train

        local = ray.train.get_context().get_local_rank()
        acc.set_device(local)
        return torch.device(acc.device_name(local))

    def _setup_counts(self):
        """The data artifact's token counts (checked against the tokenizer), for PLOT's targets."""
        if self.cfg.loss.alpha == 0:
            return None
        from plot_ray.data import TokenCounts

        return TokenCounts.load(self.artifact_dir, tokenizer=self.tokenizer)

    def _load_model(self, path: str):
        from plot_ray.models import load_causal_lm

        return load_causal_lm(path, self.cfg.model.dtype, self.cfg.model.trust_remote_code)

    def _setup_policy(self):
        import deepspeed

        from plot_ray.train.deepspeed_config import zero_config

        # Ray Train has set up torch.distributed; DeepSpeed's comm layer wraps that group. It must
        # exist before HfDeepSpeedConfig, which sizes batches by DeepSpeed's world size.
        deepspeed.init_distributed(dist_backend=dist.get_backend() if dist.is_initialized() else None)
        ds_config = zero_config(self.cfg, self.world_size)
        if ds_config["zero_optimization"]["stage"] == 3:
            # Makes from_pretrained build the model already partitioned (zero.Init), so no
            # worker ever holds a full copy of a large model.
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds_config = HfDeepSpeedConfig(ds_config)
        model = self._load_model(self.cfg.model.name_or_path)
        if self.cfg.model.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.config.use_cache = False
        train = self.cfg.train
        total = train.max_steps
        engine, *_ = deepspeed.initialize(
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            config=ds_config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
                opt, lr_lambda(train.lr_scheduler, train.warmup_steps, total)
            ),
        )
        return engine

    def _setup_objective(self):
        """``L_vanilla + alpha * L_PLOT``; PLOT's geometry comes from the policy's input
        embeddings as training starts, its targets from the data artifact's counts."""
        from plot_ray.losses import TokenGeometry, build_objective

        loss = self.cfg.loss
        if loss.alpha == 0:
            return build_objective(loss)
        plot = loss.plot
        model = self.engine.module
        # Output rows may exceed the tokenizer's vocabulary (padded embeddings): extra ids get
        # zero counts.
        targets = self.counts.preference_targets(plot, vocab_size=model.config.vocab_size)
        geometry = None
        if plot.divergence == "wasserstein" and plot.cost == "embedding":
            import deepspeed

            emb = model.get_input_embeddings().weight
            # Under ZeRO-3 the embedding is partitioned: gather it once, keep only the geometry.
            with deepspeed.zero.GatheredParameters([emb], modifier_rank=None):
                geometry = TokenGeometry.from_config(emb.detach().float(), plot)
            geometry = geometry.to(self.device)
        return build_objective(loss, geometry, targets.to(self.device))

    def _setup_reference(self):
        """A frozen copy of the starting model, when the method or the anchored target needs it."""
        loss = self.cfg.loss
        need_logps = loss.needs_reference_logps and loss.reference == "model"
        if not (need_logps or loss.needs_reference_logits):
            return None
        model = self._load_model(self.cfg.model.reference_path)
        model.config.use_cache = False
        model.requires_grad_(False)
        if self.cfg.deepspeed.zero_stage == 3:
            import deepspeed

            from plot_ray.train.deepspeed_config import reference_zero_config

            engine, *_ = deepspeed.initialize(
                model=model, config=reference_zero_config(self.cfg, self.world_size)
            )
            engine.eval()
            return engine
        return model.to(self.device).eval()

    def _restore(self, checkpoint) -> None:
        if checkpoint is None:
            return
        with checkpoint.as_directory() as directory:
            directory = Path(directory)
            state = read_state(directory)
            if state.world_size != self.world_size:
                raise CheckpointError(
                    f"checkpoint {directory} was written by {state.world_size} workers; this run "
                    f"has {self.world_size} (set train.num_workers={state.world_size} to resume)"
                )
            load_path, _ = self.engine.load_checkpoint(str(directory), tag=DEEPSPEED_TAG)
            if load_path is None:
                raise CheckpointError(f"DeepSpeed could not load its state from {directory}")
            load_rng(directory, self.rank)
        self.step, self.consumed, self.nan_skips = (
            state.step,
            state.consumed_micro_batches,
            state.nan_skips,
        )

    def _setup_data(self) -> Iterator[dict[str, torch.Tensor]]:
        import ray.train

        from plot_ray.data import collate_preference_batch, select_responses
        from plot_ray.losses import num_responses as responses_per_prompt

        shard = ray.train.get_dataset_shard("train")
        pad_id = self.tokenizer.pad_token_id
        num_responses = responses_per_prompt(self.cfg.loss.method)
        max_length = self.cfg.data.max_length

        def collate(rows):
            batch = collate_preference_batch(rows, pad_id, num_responses, max_length)
            if "ref_logps" in rows:  # precomputed by plot_ray.train.reference
                ref = np.stack([np.asarray(r, dtype=np.float32) for r in rows["ref_logps"]])
                r = batch["input_ids"].shape[0] // ref.shape[0]
                picks = select_responses(ref.shape[1], r)  # the responses collate picked
                batch["ref_logps"] = torch.from_numpy(ref[:, picks].T.reshape(-1).copy())
            return batch

        def epochs() -> Iterator[dict[str, torch.Tensor]]:
            for epoch in itertools.count():
                n = 0
                for rows in shard.iter_batches(
                    batch_size=self.cfg.train.micro_batch_size,
                    batch_format="numpy",
                    drop_last=True,  # equal micro-batches on every worker
                ):
                    n += 1
                    yield collate(rows)
                if n == 0:
                    raise ValueError(
                        f"worker {self.rank} received no complete micro-batch: the prepared data "
                        f"has too few rows for {self.world_size} workers × train.micro_batch_size="
                        f"{self.cfg.train.micro_batch_size}"
                    )

        # Resume where the checkpoint left off: skip what was already consumed.
        return itertools.islice(epochs(), self.consumed, None)

    def _setup_logging(self) -> None:
        self.metrics_file = self.run_dir / "metrics.jsonl"
        self.tb = None
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # After a restore, forget what the lost attempt logged past the checkpoint, so the log
        # holds each step exactly once.
        if self.metrics_file.exists():
            kept = [
                line
                for line in self.metrics_file.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= self.step
            ]
            self.metrics_file.write_text("".join(f"{line}\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1)
        except ImportError:  # tensorboard is optional
            self.tb = None

    # ------------------------------------------------------------------------------ train
    def _forward(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits

    @torch.no_grad()
    def _reference_outputs(self, batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if "ref_logps" in batch:
            return batch["ref_logps"], None
        if self.reference is None:
            return None, None
        from plot_ray.losses import sequence_logprobs

        logits = self._forward(self.reference, batch)
        if self.objective.needs_reference_logits:
            return None, logits  # the objective takes the log-probs from these in one pass
        return sequence_logprobs(logits, batch["labels"]).sums, None

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """Whether every worker's loss is finite: all of them skip together or none does, so the
        collectives inside DeepSpeed's backward never wait on a worker that skipped."""
        flag = torch.tensor([float(torch.isfinite(loss).all())], device=loss.device)
        if dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def micro_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], int] | None:
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        num_responses = batch["input_ids"].shape[0] // batch["subpreference_ids"].shape[0]
        ref_logps, ref_logits = self._reference_outputs(batch)
        logits = self._forward(self.engine, batch)
        out = self.objective(
            logits,
            batch["labels"],
            num_responses=num_responses,
            ref_logps=ref_logps,
            ref_logits=ref_logits,
            subpreference_ids=batch.get("subpreference_ids"),
            scores=batch.get("scores"),
        )
        del ref_logits  # (R*B, T, V): free it before backward, which never needs it
        if self.step + 1 in self.nan_at_steps:
            out.loss = out.loss * float("nan")
        if not self._all_finite(out.loss):
            self.nan_skips += 1
            if self.nan_skips > self.cfg.train.max_nan_skips:
                raise NonFiniteLossError(
                    f"{self.nan_skips} non-finite losses (train.max_nan_skips="
                    f"{self.cfg.train.max_nan_skips}); last at step {self.step + 1}: lower "
                    "train.learning_rate or loss.alpha, or check the data"
                )
            return None
        self.engine.backward(out.loss)
        self.engine.step()
        metrics = {k: float(v) for k, v in out.metrics.items()}
        metrics["loss/total"] = float(out.loss.detach())
        tokens = int((batch["labels"] != -100).sum())
        return metrics, tokens

    def train(self) -> dict[str, Any]:
        cfg = self.cfg.train
        self.engine.train()
        window: list[dict[str, float]] = []
        tokens, started = 0, time.perf_counter()
        while self.step < cfg.max_steps:
            for _ in range(cfg.gradient_accumulation_steps):
                result = self.micro_step(next(self.batches))
                self.consumed += 1
                if result is not None:
                    window.append(result[0])
                    tokens += result[1]
            self.step += 1
            if self.fail_at_step is not None and self.step == self.fail_at_step:
                self._maybe_fail()
            checkpoint_now = self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps
            if self.step % cfg.log_every == 0 or checkpoint_now:
                metrics = self._reduce(window, tokens, time.perf_counter() - started)
                window, tokens, started = [], 0, time.perf_counter()
                self._report(metrics, checkpoint=checkpoint_now)
        return {"step": self.step, "nan_skips": self.nan_skips}

    def _maybe_fail(self) -> None:
        marker = self.run_dir / f".failed_once_rank{self.rank}"
        if self.rank == self.world_size - 1 and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            os._exit(1)  # a hard worker crash, as a lost node would look to Ray

    def _reduce(self, window: list[dict[str, float]], tokens: int, seconds: float) -> dict:
        """Mean of each metric over the window and over workers; tokens/s summed over workers."""
        keys = sorted(window[0]) if window else []
        values = [sum(m[k] for m in window) / len(window) for k in keys]
        stats = torch.tensor([*values, float(tokens)], dtype=torch.float64)
        if dist.is_initialized():
            if dist.get_backend() == "nccl":
                stats = stats.to(self.device)
            dist.all_reduce(stats)
            stats[: len(keys)] /= self.world_size
        out = {k: float(v) for k, v in zip(keys, stats[: len(keys)].tolist())}
        out.update(
            step=self.step,
            lr=float(self.engine.get_lr()[0]),
            tokens_per_s=float(stats[-1]) / max(seconds, 1e-9),
            nan_skips=self.nan_skips,
        )
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        return out

    def _report(self, metrics: dict, checkpoint: bool) -> None:
        import ray.train
        from ray.train import Checkpoint

        if self.rank == 0:
            with self.metrics_file.open("a") as fh:
                fh.write(json.dumps(metrics) + "\n")
            if self.tb is not None:
                for k, v in metrics.items():
                    if k != "step":
                        self.tb.add_scalar(k, v, self.step)
                self.tb.flush()
        if not checkpoint:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="plot-ray-ckpt-") as tmp:
            tmp = Path(tmp)
            self.engine.save_checkpoint(str(tmp), tag=DEEPSPEED_TAG)
            save_rng(tmp, self.rank)
            if self.step == self.cfg.train.max_steps and self.cfg.train.save_hf_model:
                self.save_final(tmp / HF_MODEL_DIR)
            if self.rank == 0:
                write_state(
                    tmp,
                    TrainState(
                        step=self.step,
                        consumed_micro_batches=self.consumed,
                        world_size=self.world_size,
                        zero_stage=self.cfg.deepspeed.zero_stage,
                        nan_skips=self.nan_skips,
                    ),
                )
            ray.train.report(
                metrics,
                checkpoint=Checkpoint.from_directory(str(tmp)),
                checkpoint_dir_name=f"checkpoint_{self.step:06d}",
            )

    # ---------------------------------------------------------------------------- save
    def save_final(self, out: Path) -> None:
        """Consolidated Hugging Face weights (safetensors) + tokenizer, written by rank 0.

        Under ZeRO-3 every worker takes part in gathering the partitioned parameters.
        """
        import deepspeed

        model = self.engine.module
        params = list(model.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if self.rank == 0:
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                model.save_pretrained(out, state_dict=state, safe_serialization=True)
                self.tokenizer.save_pretrained(out)
        if dist.is_initialized():
            dist.barrier()

    def cleanup(self) -> None:
        if self.tb is not None:
            self.tb.close()


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's entry point on every worker."""
    recipe = PreferenceRecipe(loop_config)
    recipe.setup()
    try:
        return recipe.train()
    finally:
        recipe.cleanup()
