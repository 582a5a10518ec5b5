"""The PLOT fine-tuning loop that runs inside every Ray Train worker.

One file, one recipe, read top to bottom:

    setup()        config → tokenizer → preference targets → DeepSpeed policy engine →
                   token geometry (policy embeddings at step 0) → objective → reference model →
                   restore from the latest checkpoint, if any → data iterator
    train()        ``train_step()`` (one optimizer step: micro-steps with gradient accumulation)
                   until ``train.max_steps``; metrics every ``train.log_every`` steps,
                   checkpoints every ``train.checkpoint_every``, ``evaluate()`` on the
                   validation split every ``train.eval_every`` steps and after the last
    save_final()   consolidated Hugging Face weights (safetensors) + tokenizer

Each optimizer step computes ``L = L_vanilla + alpha * L_PLOT`` (``+ deft.weight * L_DEFT``
with DEFT) on one concatenated forward of
all responses of a micro-batch (see ``plot_ray.losses.objective`` for the layout). For memory,
the frozen reference model runs first, without gradient, and its ``(R*B, T, V)`` logits are
reduced at once to what the objective reads (``ReferenceStats``: per-sequence log-probs, and
each PLOT row's mean softmax for the anchored target) and freed; only then does the policy's
forward allocate its own logits, so the two never live together (the step's peak is then the
policy's logits and their gradient, in backward). With ``train.use_gpu`` each worker runs on
the CUDA device Ray gave it, and fails at start if it sees none. Ray appears only in
checkpointing and reporting (``_checkpoint``, ``_report``); the rest is ordinary DeepSpeed
code. Metrics never wait on Ray: rank 0 appends them to ``metrics.jsonl`` and
TensorBoard, and the driver follows that file for its progress bar. ``ray.train.report()``,
whose every call after the first waits up to Ray Train's health-check interval, runs only with
a checkpoint and, for Ray Tune's schedulers, every ``train.report_every`` steps if set. Every
worker reaches the same report calls, because they depend on the step count alone (Ray Train V2
requires all workers to report together).

A subclass can change one stage by overriding its method (tests inject faults this way:
``run_training(cfg, recipe=MyRecipe)``).
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from plot_ray.config import PlotRayConfig
from plot_ray.losses.chunked import IGNORE_INDEX
from plot_ray.train.checkpoint import (
    ATTEMPTS_FILE,
    DEEPSPEED_TAG,
    HF_MODEL_DIR,
    STATE_FILE,
    CheckpointError,
    TrainState,
    checkpoint_dir_name,
    load_rng,
    read_state,
    save_rng,
    write_state,
)
from plot_ray.train.deepspeed_config import isolate_extension_builds, select_accelerator
from plot_ray.train.validation import (
    EVAL_PREFIX,
    EvalTotals,
    owned_row_batches,
    padding_batch,
    row_metrics,
)

__all__ = [
    "train_loop_per_worker",
    "PreferenceRecipe",
    "NonFiniteLossError",
    "SCHEDULER_NAMES",
    "build_lr_scheduler",
]

# train.lr_scheduler → transformers' schedule name; each warms up linearly over
# train.warmup_steps first (from 0 at the first step, as transformers does).
SCHEDULER_NAMES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


class NonFiniteLossError(RuntimeError):
    """More NaN/inf losses than ``train.max_nan_skips`` allows."""


def build_lr_scheduler(optimizer, kind: str, warmup_steps: int, total_steps: int):
    """``transformers.get_scheduler`` for ``train.lr_scheduler`` (constant | linear | cosine).

    Stepped once per optimizer step; the learning rate of step ``s`` (0-based) is the base rate
    times ``s / warmup_steps`` during warm-up, then 1 (constant), ``(total - s) / (total -
    warmup)`` (linear) or ``0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))`` (cosine).
    """
    from transformers import get_scheduler

    return get_scheduler(
        SCHEDULER_NAMES[kind],
        optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=total_steps,
    )


class PreferenceRecipe:
    """One worker's share of a training run (see the module docstring for the stages)."""

    def __init__(self, loop_config: dict[str, Any]):
        self.cfg = PlotRayConfig.model_validate(loop_config["cfg"])
        select_accelerator(self.cfg.train.use_gpu)  # before DeepSpeed is imported
        self.run_dir = Path(loop_config["run_dir"])
        self.artifact_dir = loop_config["artifact_dir"]
        # The prepared eval split's sub-preference names; None: there is no eval split.
        self.eval_subpreferences: list[str] | None = loop_config.get("eval_subpreferences")
        self.step = 0
        self.consumed = 0
        self.nan_skips = 0
        self.restored_from: str | None = None  # the checkpoint folder this attempt started from
        # Metrics of the optimizer steps since the last log line, and their response tokens.
        self._window: list[dict[str, float]] = []
        self._window_tokens = 0
        self._window_started = time.perf_counter()

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
        self.eval_shard = self._setup_eval_data()
        self._setup_logging()

    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _device(self) -> torch.device:
        """The CPU, or (``train.use_gpu``) the GPU Ray assigned to this worker, made current."""
        if not self.cfg.train.use_gpu:
            return torch.device("cpu")
        import ray.train.torch
        from deepspeed.accelerator import get_accelerator

        # Ray's GPU id as an index into CUDA_VISIBLE_DEVICES, which Ray Train shares among the
        # workers of a node (so the local rank need not be that index)
        device = ray.train.torch.get_device()
        get_accelerator().set_device(device.index)
        return device

    def _setup_counts(self):
        """The data artifact's token counts (checked against the tokenizer), for PLOT's targets
        and DEFT's token scores."""
        if not self.cfg.loss.needs_token_counts:
            return None
        from plot_ray.data import TokenCounts

        return TokenCounts.load(self.artifact_dir, tokenizer=self.tokenizer)

    def _load_model(self, path: str):
        from plot_ray.models import load_causal_lm

        return load_causal_lm(path, self.cfg.model.dtype, self.cfg.model.trust_remote_code)

    def _setup_policy(self):
        import deepspeed

        from plot_ray.train.deepspeed_config import zero_config

        isolate_extension_builds()  # before init_distributed builds DeepSpeed's CPU comm op
        # Ray Train has set up torch.distributed; DeepSpeed's comm layer wraps that group. It must
        # exist before HfDeepSpeedConfig, which sizes batches by DeepSpeed's world size.
        deepspeed.init_distributed(
            dist_backend=dist.get_backend() if dist.is_initialized() else None
        )
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
        engine, *_ = deepspeed.initialize(
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            config=ds_config,
            # DeepSpeed steps the scheduler once per optimizer step and saves its state in
            # each checkpoint.
            lr_scheduler=lambda opt: build_lr_scheduler(
                opt, train.lr_scheduler, train.warmup_steps, train.max_steps
            ),
        )
        return engine

    def _setup_objective(self):
        """``L_vanilla + alpha * L_PLOT + deft.weight * L_DEFT``; PLOT's geometry comes from the
        policy's input embeddings as training starts, its targets (and DEFT's token scores)
        from the data artifact's counts; positions that predict special tokens stay out of
        PLOT and DEFT (docs/plot.md, "Special tokens")."""
        from plot_ray.losses import build_geometry, build_objective

        loss = self.cfg.loss
        special = self.tokenizer.all_special_ids
        if loss.alpha == 0 and loss.deft.weight == 0:
            return build_objective(loss, special_token_ids=special)
        plot = loss.plot
        model = self.engine.module
        # Output rows may exceed the tokenizer's vocabulary (padded embeddings): extra ids get
        # zero counts.
        targets = self.counts.preference_targets(plot, vocab_size=model.config.vocab_size)
        geometry = None
        if loss.alpha > 0 and plot.divergence == "wasserstein" and plot.cost == "embedding":
            import deepspeed

            emb = model.get_input_embeddings().weight
            # Under ZeRO-3 the embedding is partitioned: gather it once, keep only the geometry.
            with deepspeed.zero.GatheredParameters([emb], modifier_rank=None):
                geometry = build_geometry(emb.detach().float(), plot)
            geometry = geometry.to(self.device)
        return build_objective(loss, geometry, targets.to(self.device), special_token_ids=special)

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
        """Continue from Ray Train's latest checkpoint: after a worker failure Ray hands it to
        the new worker group, and ``--resume`` hands it to a new run."""
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
        self.restored_from = Path(checkpoint.path).name

    def _setup_data(self) -> Iterator[dict[str, torch.Tensor]]:
        import ray.train

        shard = ray.train.get_dataset_shard("train")

        train = self.cfg.train

        def epochs() -> Iterator[dict[str, torch.Tensor]]:
            for epoch in itertools.count():
                n = 0
                shuffle = {}
                if train.shuffle_buffer:
                    shuffle = dict(
                        local_shuffle_buffer_size=train.shuffle_buffer,
                        local_shuffle_seed=(train.seed * 1_000_003 + epoch) * 64 + self.rank,
                    )
                for rows in shard.iter_batches(
                    batch_size=train.micro_batch_size,
                    batch_format="numpy",
                    drop_last=True,  # equal micro-batches on every worker
                    **shuffle,
                ):
                    n += 1
                    yield self._collate(rows)
                if n == 0:
                    raise ValueError(
                        f"worker {self.rank} received no complete micro-batch: the prepared data "
                        f"has too few rows for {self.world_size} workers × train.micro_batch_size="
                        f"{self.cfg.train.micro_batch_size}"
                    )

        # Resume where the checkpoint left off: skip what was already consumed.
        return itertools.islice(epochs(), self.consumed, None)

    def _collate(self, rows) -> dict[str, torch.Tensor]:
        """Column-format rows → the padded batch of ``plot_ray.data.feed``, plus ``ref_logps``
        ``(R*B,)`` when the rows carry precomputed reference log-probs."""
        from plot_ray.data import collate_preference_batch, select_responses
        from plot_ray.losses import num_responses as responses_per_prompt

        batch = collate_preference_batch(
            rows,
            self.tokenizer.pad_token_id,
            responses_per_prompt(self.cfg.loss.method),
            self.cfg.data.max_length,
        )
        if "ref_logps" in rows:  # precomputed by plot_ray.train.reference
            ref = np.stack([np.asarray(r, dtype=np.float32) for r in rows["ref_logps"]])
            r = batch["input_ids"].shape[0] // ref.shape[0]
            picks = select_responses(ref.shape[1], r)  # the responses collate picked
            batch["ref_logps"] = torch.from_numpy(ref[:, picks].T.reshape(-1).copy())
        return batch

    def _setup_eval_data(self):
        """The whole eval split on every worker (Ray Train does not split it: an equal split
        would drop rows); :meth:`evaluate` keeps this worker's rows. None without an eval split."""
        if self.eval_subpreferences is None:
            return None
        import ray.train

        return ray.train.get_dataset_shard("eval")

    def _setup_logging(self) -> None:
        """Rank 0's metrics log (``metrics.jsonl``, TensorBoard) and its record of attempts."""
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
        # One line per start of the worker group: the driver's summary counts the failures Ray
        # Train survived and says which checkpoint each restart (or --resume) started from.
        with (self.run_dir / ATTEMPTS_FILE).open("a") as fh:
            fh.write(
                json.dumps(
                    {"time": time.time(), "from_step": self.step, "checkpoint": self.restored_from}
                )
                + "\n"
            )
        try:
            from torch.utils.tensorboard import SummaryWriter

            # Written in the background every 10 s (and at close), never per step.
            self.tb = SummaryWriter(
                str(self.run_dir / "tensorboard"), purge_step=self.step + 1, flush_secs=10
            )
        except ImportError:  # tensorboard is optional
            self.tb = None

    # ------------------------------------------------------------------------------ train
    def _forward(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits

    @torch.no_grad()
    def _reference_stats(self, batch, num_responses: int):
        """What the objective reads from the reference model on this micro-batch
        (``ReferenceStats``, or None without a reference): its logits are reduced at once and
        freed before the policy's forward allocates its own."""
        from plot_ray.losses import ReferenceStats

        if "ref_logps" in batch:  # loss.reference=precomputed
            return ReferenceStats(logps=batch["ref_logps"])
        if self.reference is None:
            return None
        logits = self._forward(self.reference, batch)
        return self.objective.reference_stats(logits, batch["labels"], num_responses)

    @torch.no_grad()
    def _reference_outputs(self, batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(ref_logps, ref_logits)`` for :meth:`evaluate`, which scores rows one by one."""
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
        return self._agree(bool(torch.isfinite(loss).all()), dist.ReduceOp.MIN)

    def _agree(self, flag: bool, op) -> bool:
        """``flag`` reduced over the workers: MIN = on all of them, MAX = on at least one."""
        value = torch.tensor([float(flag)], device=self.device)
        if dist.is_initialized():
            dist.all_reduce(value, op=op)
        return bool(value.item())

    def _sum_over_workers(self, stats: torch.Tensor) -> torch.Tensor:
        """``stats`` summed over the workers (on the device for nccl; returned on the CPU)."""
        if dist.is_initialized():
            if dist.get_backend() == "nccl":
                stats = stats.to(self.device)
            dist.all_reduce(stats)
        return stats.cpu()

    def compute_loss(self, batch: dict[str, torch.Tensor]):
        """The objective's output (``.loss``, a scalar; ``.metrics``) on one micro-batch already
        on the device: the reference's statistics first (its logits freed), then the policy's
        forward."""
        num_responses = batch["input_ids"].shape[0] // batch["subpreference_ids"].shape[0]
        reference = self._reference_stats(batch, num_responses)
        return self.objective(
            self._forward(self.engine, batch),
            batch["labels"],
            num_responses=num_responses,
            subpreference_ids=batch.get("subpreference_ids"),
            scores=batch.get("scores"),
            reference=reference,
        )

    def micro_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], int] | None:
        """Forward and backward of one micro-batch (DeepSpeed steps the optimizer on the last of
        each accumulation window); ``(metrics, response tokens)``, or None when skipped."""
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        out = self.compute_loss(batch)
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
        tokens = int((batch["labels"] != IGNORE_INDEX).sum())
        return metrics, tokens

    def train_step(self) -> None:
        """One optimizer step: ``train.gradient_accumulation_steps`` micro-steps."""
        for _ in range(self.cfg.train.gradient_accumulation_steps):
            result = self.micro_step(next(self.batches))
            self.consumed += 1
            if result is not None:
                self._window.append(result[0])
                self._window_tokens += result[1]
        self.step += 1

    def train(self) -> dict[str, Any]:
        cfg = self.cfg.train
        report_every = cfg.report_every
        self.engine.train()
        self._window_started = time.perf_counter()
        while self.step < cfg.max_steps:
            self.train_step()
            # Every decision below depends on the step alone, so all workers take part in the
            # same collectives (_reduce, evaluate) and the same Ray Train reports.
            checkpoint_now = self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps
            eval_now = self.eval_shard is not None and (
                self.step == cfg.max_steps
                or bool(cfg.eval_every and self.step % cfg.eval_every == 0)
            )
            report_now = (
                checkpoint_now or eval_now or bool(report_every and self.step % report_every == 0)
            )
            if self.step % cfg.log_every == 0 or report_now:
                metrics = self._reduce()
                if eval_now:  # the step's one metrics row holds the eval numbers too
                    metrics.update(self.evaluate())
                    self._window_started = time.perf_counter()  # tokens/s leaves eval out
                self._log(metrics)
                if checkpoint_now:
                    self._checkpoint(metrics)
                elif report_now:
                    self._report(metrics)
        return {"step": self.step, "nan_skips": self.nan_skips}

    # ---------------------------------------------------------------------------- evaluate
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """One pass over the eval split, without gradient: ``eval/*`` metrics (defined in
        :mod:`plot_ray.train.validation`), equal on every worker and equal to a single-process
        pass over the whole split with these weights.

        Every worker runs the same number of forwards (under ZeRO-3 each forward gathers
        parameters from all of them): they agree on the largest count of eval batches, and a
        worker out of rows runs a padding forward whose outputs are discarded.
        """
        from plot_ray.losses import num_responses as responses_per_prompt

        cfg = self.cfg
        started = time.perf_counter()
        totals = EvalTotals(self.eval_subpreferences)
        batch_size = cfg.train.eval_batch_size or cfg.train.micro_batch_size
        columns = self.eval_shard.iter_batches(
            batch_size=batch_size * self.world_size, batch_format="numpy", drop_last=False
        )
        rows = owned_row_batches(columns, self.rank, self.world_size, batch_size)
        fixed_r = responses_per_prompt(cfg.loss.method)
        self.engine.eval()
        try:
            while True:
                rows_now = next(rows, None)
                if not self._agree(rows_now is not None, dist.ReduceOp.MAX):
                    break
                if rows_now is None:
                    pad = padding_batch(self.tokenizer.pad_token_id, self.device)
                    self._reference_outputs(pad)
                    self._forward(self.engine, pad)
                    continue
                batch = self._collate(rows_now)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                r = fixed_r or batch["input_ids"].shape[0] // batch["subpreference_ids"].shape[0]
                ref_logps, ref_logits = self._reference_outputs(batch)
                logits = self._forward(self.engine, batch)
                per_row = row_metrics(
                    self.objective,
                    logits,
                    batch["labels"],
                    r,
                    ref_logps=ref_logps,
                    ref_logits=ref_logits,
                    subpreference_ids=batch["subpreference_ids"],
                    scores=batch.get("scores"),
                )
                for sub, values in zip(batch["subpreference_ids"].tolist(), per_row, strict=True):
                    totals.add(sub, values)
        finally:
            self.engine.train()
        # sums and counts, so the result is one pass over all rows
        totals.tensor = self._sum_over_workers(totals.tensor)
        out = totals.metrics(with_plot=cfg.loss.alpha > 0)
        out[f"{EVAL_PREFIX}seconds"] = time.perf_counter() - started  # rank 0's wall time
        return out

    def _reduce(self) -> dict[str, Any]:
        """Mean of each metric over the window and over workers; tokens/s summed over workers.
        Empties the window."""
        window, tokens = self._window, self._window_tokens
        seconds = time.perf_counter() - self._window_started
        keys = sorted(window[0]) if window else []
        values = [sum(m[k] for m in window) / len(window) for k in keys]
        stats = self._sum_over_workers(torch.tensor([*values, float(tokens)], dtype=torch.float64))
        stats[: len(keys)] /= self.world_size
        out = {k: float(v) for k, v in zip(keys, stats[: len(keys)].tolist(), strict=True)}
        out.update(
            step=self.step,
            lr=float(self.engine.get_lr()[0]),
            tokens_per_s=float(stats[-1]) / max(seconds, 1e-9),
            nan_skips=self.nan_skips,
        )
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None:
            out["grad_norm"] = float(grad_norm)
        self._window, self._window_tokens = [], 0
        self._window_started = time.perf_counter()
        return out

    def _log(self, metrics: dict[str, Any]) -> None:
        """Rank 0 appends one line to ``metrics.jsonl`` and writes TensorBoard scalars; no Ray."""
        if self.rank != 0:
            return
        with self.metrics_file.open("a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if k != "step":
                    self.tb.add_scalar(k, v, self.step)

    def _report(self, metrics: dict[str, Any], checkpoint=None) -> None:
        """Hand metrics (and a checkpoint) to Ray Train; every worker calls this together.

        A checkpoint is already in its place in Ray Train's storage (:meth:`_checkpoint`), so
        Ray Train registers it where it lies instead of copying it (``NO_UPLOAD``)."""
        import ray.train

        if checkpoint is None:
            ray.train.report(metrics)
        else:
            ray.train.report(
                metrics,
                checkpoint=checkpoint,
                checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD,
            )

    def _checkpoint_dir(self) -> Path:
        """This step's checkpoint folder in the run's folder of Ray Train's storage
        (``<storage_path>/<run_name>/checkpoint_<step>``), the path Ray Train names its own
        checkpoints by, so that restores and ``Result.checkpoint`` find it."""
        import ray.train

        storage = ray.train.get_context().get_storage()
        return Path(storage.experiment_fs_path) / checkpoint_dir_name(self.step)

    def _checkpoint(self, metrics: dict[str, Any]) -> None:
        """DeepSpeed's state, every worker's RNG, plot-ray's step counters and, at the last
        step, the consolidated HF model, written by every worker straight into the run's
        storage (no local copy to upload while the other workers wait), reported to Ray Train
        as one checkpoint.

        Rank 0 writes the state file that marks the folder complete only after every worker's
        files are written, so a write cut short by a lost worker never reads as a checkpoint.
        """
        from ray.train import Checkpoint

        directory = self._checkpoint_dir()
        if self.rank == 0:
            # A folder of this step can only be left from an attempt that died before Ray Train
            # registered it (a restore starts from an earlier step): its files are stale, and
            # its state file goes first, so that it never reads as complete again.
            (directory / STATE_FILE).unlink(missing_ok=True)
            shutil.rmtree(directory, ignore_errors=True)
        self._barrier()
        # Rank 0 creates the folder; every worker writes its own partitions into it.
        self.engine.save_checkpoint(str(directory), tag=DEEPSPEED_TAG)
        save_rng(directory, self.rank)
        if self.step == self.cfg.train.max_steps and self.cfg.train.save_hf_model:
            self.save_final(directory / HF_MODEL_DIR)
        self._barrier()  # every worker's files are written
        if self.rank == 0:
            write_state(
                directory,
                TrainState(
                    step=self.step,
                    consumed_micro_batches=self.consumed,
                    world_size=self.world_size,
                    zero_stage=self.cfg.deepspeed.zero_stage,
                    nan_skips=self.nan_skips,
                ),
            )
        # Ray Train registers the checkpoint once every worker has reported, after rank 0's
        # state file.
        self._report(metrics, checkpoint=Checkpoint.from_directory(str(directory)))

    def _barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    # ---------------------------------------------------------------------------- save
    def save_final(self, out: Path) -> None:
        """Consolidated Hugging Face weights (safetensors) + tokenizer, written by rank 0.

        Under ZeRO-3 DeepSpeed gathers the partitioned parameters module by module onto rank 0
        (every worker takes part), so a model that fits only when sharded can still be saved;
        the other stages hold full weights on every worker already.
        """
        model = self.engine.module
        if self.engine.zero_optimization_partition_weights():
            state = self.engine._zero3_consolidated_16bit_state_dict()  # None except on rank 0
        else:
            state = model.state_dict() if self.rank == 0 else None
        if self.rank == 0:
            state = {k: v.detach().cpu() for k, v in state.items()}
            model.save_pretrained(out, state_dict=state, safe_serialization=True)
            self.tokenizer.save_pretrained(out)
        if dist.is_initialized():
            dist.barrier()

    def cleanup(self) -> None:
        if self.tb is not None:
            self.tb.close()


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's entry point on every worker: ``loop_config["recipe"]`` (default
    :class:`PreferenceRecipe`) set up, trained and cleaned up."""
    recipe = (loop_config.get("recipe") or PreferenceRecipe)(loop_config)
    recipe.setup()
    try:
        return recipe.train()
    finally:
        recipe.cleanup()
