"""GPU readiness: every GPU-specific part of plot-ray's training and evaluation, checked on one
GPU in a few minutes, without Ray, each stage in its own process with its own time limit.

    PYTHONPATH=. python benchmarks/gpu_check.py [--stages recipe_dpo,generation] [--out FILE]
    python benchmarks/gpu_check.py --dry-run     # the same code paths on the CPU, toy sizes

Stages, in order (``--stages`` runs a subset, e.g. the ones that failed, and merges their
results into the existing JSON):

=================  ==========================================================================
preflight          CUDA and the GPU, bf16, DeepSpeed's accelerator, nvcc against torch's CUDA
                   (DeepSpeed compiles its CUDA ops with nvcc at first use and refuses a
                   mismatch), package versions against pyproject.toml
nccl               torch.distributed with NCCL at world size 1 (all-reduce, broadcast,
                   barrier), DeepSpeed's comm layer on that group, ``deepspeed.initialize``
                   under the job's ZeRO-3 bf16 config, one step
fused_adam         DeepSpeed's FusedAdam (the optimizer ``zero_config`` picks on GPUs) builds
                   and one step matches ``torch.optim.AdamW``
model              a random Llama-3.2-1B-shaped model with Llama 3's 128,256-token vocabulary
                   in bf16: parameters, forward and backward, peak memory; the workspace the
                   later stages share (synthetic corpus, tokenizer, prepared data, the model)
plot_kernel        PLOT at V = 128,256: the fused kernel against the reference path (values
                   and gradients), W1 in float32 against float64, the loss's time and memory
                   with and without PLOT
recipe_dpo         ``plot_ray.train.loop.PreferenceRecipe`` without Ray, configured by
recipe_dpo_plot    jobs/configs/real/llama3b_hh_dpo_plot.yaml (ZeRO-3, bf16, gradient
                   checkpointing; loss.alpha=0 for DPO): no NaN, falling loss, the checkpoint
                   of step 5 restores to the same step-6 loss, the consolidated model is
                   saved; recipe_dpo_plot also times DPO+PLOT against DPO steps on its engine
                   (objectives alternated ABBA, warm-up excluded, medians; the paper: +2.7%)
generation         the saved models reload (same log-probs as the trained engine), HF
                   generation and the scorers (perplexity, reward model) on the GPU
=================  ==========================================================================

Output: one JSON (``--out``; default ``$OUT/gpu_check.json`` where ``OUT`` is set, else
``runs/gpu_check/gpu_check.json``), rewritten after every stage so that a run killed from
outside keeps what finished, beside ``gpu_check.log`` (every stage's output). Per stage:
``status`` (passed | failed | skipped), ``reason``, ``seconds``, ``timeout_s``, ``checks``
(name → status and detail; a check that cannot run without CUDA is ``skipped`` with reason
``needs CUDA``, a version outside pyproject's range is a ``warning``), ``metrics``, and on
failure ``error`` and ``log_tail``. Exit status 1 if any stage failed. Last line printed:
``{"benchmark": "gpu_check", "passed": ..., "failed": ..., "skipped": ..., "time_ratio": ...,
"memory_ratio": ...}``.

Time on one H100, estimated (the check has not run on a GPU yet): about 7 minutes, most of it
model loading, the FusedAdam build and the recipe stages' checkpoints (~17 GB each for the 1B
model; removed when a stage ends). Each stage's time limit is in ``STAGES``; ``--layers``
shrinks the model. Without an NVIDIA device, a plain run prints ``{"benchmark": "gpu_check",
"skipped": "no GPU"}`` and exits 0 (``make bench`` runs every benchmark); named ``--stages`` run
anyway, and preflight says what is missing.

``--dry-run`` hides any GPU and runs every stage on the CPU at toy sizes (small vocabulary and
model, few steps, gloo instead of NCCL, DeepSpeed's CPU accelerator), so that CI executes every
code path that does not need CUDA; what does need it is ``skipped: needs CUDA``, never passed
(the whole fused_adam stage). tests/test_gpu_check.py runs it.

Without Ray: the stages run plot-ray's own code with a stand-in for the few Ray calls it makes
(the section "Ray stand-in" below), so that they run on a GPU machine where Ray is not
installed. The prepared data are made by plot-ray's tokenizer and counting code in one process
(``plot-ray prepare`` runs the same code on Ray Data).

On a GPU machine without network access, Python packages that its image lacks travel as wheels
(about 5 MiB for an image with torch and transformers but without DeepSpeed and pydantic).
Made on a machine with network access (``--python-version``: the GPU machine's Python)::

    pip download --no-deps --only-binary=:all: --python-version 3.12 --platform \\
        manylinux2014_x86_64 -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types \\
        typing-inspection typing-extensions hjson
    pip wheel --no-deps -w .whl deepspeed==0.19.8     # source only on PyPI; ops build at first use

and installed there with ``pip install --no-index --no-deps --target /tmp/site .whl/*.whl``
before ``PYTHONPATH=/tmp/site:. python benchmarks/gpu_check.py``. Preflight lists the versions
it finds and warns about those outside pyproject.toml's ranges.

Beside benchmarks/gpu_overhead.py: this check supersedes its training part (DPO vs DPO+PLOT step
time and peak memory on a 1B-shaped model, here with Llama's real vocabulary and ZeRO-3 as the
real jobs run it, and without Ray, so it runs where Ray cannot be installed). gpu_overhead.py
still covers what this check does not: training through Ray Train's ``TorchTrainer`` on a GPU
cluster and vLLM generation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import importlib.machinery
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TRAIN_JOB = REPO / "jobs" / "configs" / "real" / "llama3b_hh_dpo_plot.yaml"
EVAL_JOB = REPO / "jobs" / "configs" / "real" / "llama3b_eval.yaml"
NEEDS_CUDA = "needs CUDA"
SUBPREFERENCES = {"harmlessness": "harmlessness/train.jsonl", "logic": "logic/train.jsonl"}


# ================================================================= plot_ray adapters
# Every call into plot_ray is below, so that a change of its API is one edit here.
def job_config(path: Path, overrides: dict[str, Any]):
    """A real job config (jobs/configs/real/) with ``overrides`` (dotted keys) applied."""
    from plot_ray.config import load_config

    return load_config(path, overrides=overrides)


def select_accelerator(use_gpu: bool) -> str:
    """What every training worker does before DeepSpeed is imported (fails without CUDA when
    ``use_gpu``)."""
    from plot_ray.train.deepspeed_config import select_accelerator as select

    return select(use_gpu)


def deepspeed_config(cfg) -> dict:
    """The DeepSpeed config that training builds for one worker."""
    from plot_ray.train.deepspeed_config import zero_config

    return zero_config(cfg, world_size=1)


def synthetic_corpus(out: Path, scale: float) -> None:
    from plot_ray.synth import generate_benchmark

    generate_benchmark(out, seed=0, scale=scale)


def corpus_tokenizer(corpus: Path, vocab_size: int):
    """A byte-level BPE trained on the corpus, with plot-ray's chat template and specials."""
    from plot_ray.models.tiny import build_tokenizer, corpus_texts

    return build_tokenizer(corpus_texts(corpus), vocab_size=vocab_size)


def save_model(model, tokenizer, out: Path) -> None:
    from plot_ray.models.tiny import save_model as save

    save(model, tokenizer, out)


def load_model(path: Path, dtype: str):
    from plot_ray.models import load_causal_lm

    return load_causal_lm(str(path), dtype)


def load_tokenizer(path: Path):
    from plot_ray.models import load_tokenizer as load

    return load(str(path))


def tokenize_pairs(files: dict[str, Path], tokenizer_dir: Path, max_length: int, prompt: int):
    """``{sub-preference: jsonl}`` → (tokenized rows as an Arrow table in the shards' schema,
    the sorted sub-preferences), by the tokenizer that ``plot-ray prepare`` runs in its actors,
    here in one process. Rows it quarantines are left out."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from plot_ray.config import DataSource
    from plot_ray.data.readers import resolve_sources
    from plot_ray.data.schema import TOKENIZED_COLUMNS
    from plot_ray.data.tokenization import PreferenceTokenizer

    subpreferences = sorted(files)
    sources = resolve_sources([DataSource(path=str(files[s]), subpreference=s) for s in files])
    tokenize = PreferenceTokenizer(str(tokenizer_dir), sources, subpreferences, max_length, prompt)
    tables = []
    for source in sources:  # the raw records as plot_ray.data.readers makes them from jsonl
        lines = [line for line in Path(source.files[0]).read_bytes().splitlines() if line.strip()]
        raw = pa.table(
            {
                "source_index": pa.array([source.index] * len(lines), pa.int32()),
                "file_index": pa.array([0] * len(lines), pa.int32()),
                "row_index": pa.array(range(len(lines)), pa.int64()),
                "record": pa.array(lines, pa.binary()),
            }
        )
        tables.append(tokenize(raw))
    table = pa.concat_tables(tables)
    usable = table.filter(pc.is_null(table.column("reason")))
    return usable.select(TOKENIZED_COLUMNS), subpreferences


def write_token_counts(rows, subpreferences: list[str], tokenizer, out: Path) -> None:
    """The token-count artifact that ``plot-ray prepare`` writes (PLOT's targets come from it)."""
    from plot_ray.data.counts import TokenCounts, count_response_tokens, sparse_to_dense
    from plot_ray.models.loading import tokenizer_fingerprint

    vocab, n = len(tokenizer), len(subpreferences)
    keys, counts = count_response_tokens(rows, n, vocab, tokenizer.all_special_ids)
    pos, neg = sparse_to_dense([(keys, counts)], n, vocab)
    TokenCounts(pos, neg, subpreferences, vocab, tokenizer_fingerprint(tokenizer)).save(out)


def sequence_logps(logits, labels):
    """Summed log-probs of each row's labelled (response) tokens, ``(N,)`` float32."""
    from plot_ray.losses import sequence_logprobs

    return sequence_logprobs(logits, labels).sums


def recipe_class() -> type:
    from plot_ray.train.loop import PreferenceRecipe

    return PreferenceRecipe


def engine_logits(recipe, batch: dict):
    """The policy engine's logits for a batch already on the device, as training computes them."""
    return recipe._forward(recipe.engine, batch)


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of tensors that ``fn`` allocates on the CPU (the profiler's events)."""
    from plot_ray.profiling import peak_live_bytes

    return peak_live_bytes(fn)


def checkpoint_layout() -> dict[str, str]:
    """Folder names inside a training checkpoint."""
    from plot_ray.train.checkpoint import DEEPSPEED_TAG, HF_MODEL_DIR

    return {"deepspeed": DEEPSPEED_TAG, "hf_model": HF_MODEL_DIR}


def restore_recipe(recipe, checkpoint) -> None:
    """Load a checkpoint into a set-up recipe's engines, counters and data position: the restore
    that ``setup()`` does when Ray Train hands a worker its latest checkpoint."""
    recipe._restore(checkpoint)
    recipe.batches = recipe._setup_data()


def logged_metrics(recipe) -> dict:
    """What the recipe logs for its steps since the last log line (means over their
    micro-steps), as ``train()`` logs it."""
    return recipe._reduce()


def vanilla_objective(recipe):
    """The recipe's objective with ``loss.alpha = 0`` (exactly the vanilla method's loss)."""
    from plot_ray.losses import build_objective

    loss = recipe.cfg.loss.model_copy(update={"alpha": 0.0})
    return build_objective(loss, special_token_ids=recipe.tokenizer.all_special_ids)


def plot_pieces(plot_cfg, embeddings, pos, neg):
    """(geometry, targets, PlotLoss) as training builds them from embeddings and counts."""
    from plot_ray.losses import PlotLoss, PreferenceTargets, build_geometry

    geometry = build_geometry(embeddings.float(), plot_cfg)
    targets = PreferenceTargets.from_counts(pos, neg, plot_cfg, names=["a", "b"])
    return geometry, targets, PlotLoss.from_config(plot_cfg, targets, geometry)


def plot_values(loss, logits, mask, ids, ref_logits, fused: bool):
    """PLOT per row ``(B,)`` by the fused kernel (what training runs) or the reference path."""
    if not fused:
        return loss.per_sequence(logits, mask, ids, ref_logits)
    import torch

    rows = torch.arange(logits.shape[0], device=logits.device)
    pbar = loss.reference_mean_softmax(ref_logits, mask) if loss.target == "anchored" else None
    targets = loss.row_targets(ids, pbar)
    return loss.normalized(loss.fused(logits, None, rows, mask, targets)[1], ids)


def objectives(loss_cfg, geometry, targets, special_ids) -> dict:
    """``{"dpo": alpha 0, "dpo+plot": the job's alpha}`` objectives."""
    from plot_ray.losses import build_objective

    vanilla = loss_cfg.model_copy(update={"alpha": 0.0})
    return {
        "dpo": build_objective(vanilla, special_token_ids=special_ids),
        "dpo+plot": build_objective(loss_cfg, geometry, targets, special_token_ids=special_ids),
    }


def engine_settings(ev, model: Path, use_gpu: bool):
    """Generation settings as evaluation resolves them for a cluster with (or without) GPUs."""
    from plot_ray.eval.engines import EngineSettings

    ev = ev.model_copy(update={"use_gpu": use_gpu})
    return EngineSettings.resolve(ev, model=str(model), cpus=os.cpu_count())


def hf_generator(model: Path, settings):
    """The HF generation actor that evaluation's engine pool runs (one replica, here)."""
    from plot_ray.eval.engines import HFGenerator

    return HFGenerator(str(model), dataclasses.asdict(settings))


def chat_prompts(tokenizer, messages: list[str]) -> list[str]:
    from plot_ray.eval.engines import chat_prompts as prompts

    return prompts(tokenizer, messages)


def nll_scorer(model: Path, settings):
    """The perplexity scorer, with the arguments that evaluation's runner gives it."""
    from plot_ray.eval.runner import nll_scorer_kwargs
    from plot_ray.eval.scorers import NLLScorer

    return NLLScorer(**nll_scorer_kwargs(str(model), settings))


def reward_scorer(ev, path: Path, settings):
    """The reward-model scorer, with the arguments that evaluation's runner gives it."""
    from plot_ray.eval.runner import reward_scorer_kwargs
    from plot_ray.models.reward import RewardScorer

    ev = ev.model_copy(update={"reward_model": str(path)})
    return RewardScorer(**reward_scorer_kwargs(ev, settings))


def build_reward_model(tokenizer, out: Path) -> None:
    """A random one-label reward model sharing ``tokenizer`` (scores only need to exist)."""
    from plot_ray.models.reward import build_tiny_reward_model

    save_model(build_tiny_reward_model(tokenizer), tokenizer, out)


# ================================================================= Ray stand-in
# The stages run plot-ray without Ray: the lent GPU machines have none (its wheel is larger than
# what may be carried there), and what this check is about is CUDA. The code they reach imports
# Ray in two ways: plot_ray.data's modules subclass Ray Data classes at import time, and the
# training recipe calls Ray Train's worker API (get_context, get_checkpoint, get_dataset_shard,
# report, Checkpoint). RayStandIn puts small modules under those names, in a stage's process
# only: placeholder classes for the former (using one is an error), and for the latter one
# worker (rank 0 of 1) that reads an in-memory shard and keeps each reported checkpoint in a
# folder, as Ray Train's storage would. Nothing else of the recipe is replaced.
class _NotInStages:
    """A Ray class that plot-ray names at import time; the stages never use one."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__}: Ray is not available in gpu_check's stages")


def _placeholder_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = []
    made: dict[str, type] = {}

    def attribute(attr: str):
        if attr[:1].isupper():  # a class: a placeholder to subclass or name in annotations
            made.setdefault(attr, type(attr, (_NotInStages,), {"__module__": name}))
            return made[attr]
        raise AttributeError(f"{name}.{attr}: gpu_check runs plot-ray without Ray")

    module.__getattr__ = attribute
    return module


class StandInCheckpoint:
    """``ray.train.Checkpoint``: a folder."""

    def __init__(self, path: str | Path):
        self.path = str(path)

    @classmethod
    def from_directory(cls, path: str | Path) -> StandInCheckpoint:
        return cls(path)

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        yield self.path


class _Context:
    """``ray.train.get_context()`` of the only worker, whose run's storage is ``storage``."""

    def __init__(self, storage: Path):
        self.storage = storage

    def get_storage(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(experiment_fs_path=str(self.storage))

    def get_world_rank(self) -> int:
        return 0

    def get_world_size(self) -> int:
        return 1

    def get_local_rank(self) -> int:
        return 0


class TableShard:
    """``ray.train.get_dataset_shard(name)``: rows of an Arrow table in order, as the numpy
    column batches that Ray Data's ``iter_batches(batch_format="numpy")`` yields."""

    def __init__(self, table):
        self.table = table

    def iter_batches(
        self,
        batch_size: int,
        batch_format: str = "numpy",
        drop_last: bool = False,
        local_shuffle_buffer_size: int | None = None,
        local_shuffle_seed: int | None = None,
    ):
        import numpy as np

        if batch_format != "numpy" or local_shuffle_buffer_size:
            raise ValueError(
                "the stand-in shard yields numpy batches in order (set train.shuffle_buffer to "
                f"null); asked for {batch_format!r}, shuffle buffer {local_shuffle_buffer_size}"
            )
        n = self.table.num_rows
        for start in range(0, n, batch_size):
            if drop_last and start + batch_size > n:
                return
            part = self.table.slice(start, batch_size)
            out = {}
            for name in part.column_names:
                values = part.column(name).to_pylist()
                column = np.empty(len(values), dtype=object)
                for i, value in enumerate(values):
                    column[i] = value
                out[name] = column
            yield out


def _first_device():
    import torch

    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


class RayStandIn:
    """Installs the stand-in modules. ``shards`` are what ``get_dataset_shard`` hands out,
    ``checkpoint`` what ``get_checkpoint()`` returns, ``reports`` what the recipe reported,
    ``storage`` where reported checkpoints are kept."""

    def __init__(self, storage: Path):
        if "ray" in sys.modules:
            raise RuntimeError("the Ray stand-in must be installed before anything imports ray")
        self.storage = Path(storage)
        self.shards: dict[str, TableShard] = {}
        self.checkpoint: StandInCheckpoint | None = None
        self.reports: list[dict] = []
        modules = {
            name: _placeholder_module(name)
            for name in ("ray", "ray.data", "ray.data.block", "ray.data.datasource",
                         "ray.data.collate_fn", "ray.train", "ray.train.torch")
        }  # fmt: skip
        # the only worker's device: the one GPU (Ray Train's get_device, made current)
        modules["ray.train.torch"].get_device = _first_device
        train = modules["ray.train"]
        train.get_context = lambda: _Context(self.storage)
        # the recipe's upload mode: its checkpoints are already in the run's storage
        train.CheckpointUploadMode = types.SimpleNamespace(NO_UPLOAD="NO_UPLOAD")
        train.get_checkpoint = lambda: self.checkpoint
        train.get_dataset_shard = self.shards.__getitem__
        train.report = self.report
        train.Checkpoint = StandInCheckpoint
        for name, module in modules.items():
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(modules[parent], child, module)
            sys.modules[name] = module

    def report(self, metrics: dict, checkpoint=None, checkpoint_upload_mode=None):
        """Keep the metrics and the checkpoint, which the recipe wrote in place in the run's
        storage (``checkpoint_upload_mode=NO_UPLOAD``: Ray Train registers it where it lies)."""
        self.reports.append(dict(metrics))
        if checkpoint is None:
            return
        if checkpoint_upload_mode != "NO_UPLOAD" or Path(checkpoint.path).parent != self.storage:
            raise RuntimeError(
                f"the recipe reported {checkpoint.path} with {checkpoint_upload_mode}; it writes "
                f"checkpoints in place under {self.storage} and reports them with NO_UPLOAD"
            )


# ================================================================= sizes and workspace
@dataclasses.dataclass(frozen=True)
class Sizes:
    """How large each stage's work is: real sizes on a GPU, toy ones for ``--dry-run``."""

    vocab_size: int  # the model's output rows
    tokenizer_vocab: int  # the BPE trained on the synthetic corpus; fewer than vocab_size
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    corpus_scale: float
    max_length: int
    max_prompt_length: int
    micro_batch: int  # pairs per micro-step in the recipe
    learning_rate: float
    ratio_rounds: int  # ABBA rounds of DPO vs DPO+PLOT steps, after one warm-up round
    kernel_rows: int
    kernel_positions: int
    timing_repeats: int
    model_batch: int
    model_positions: int
    prompts: int
    new_tokens: int


GPU_SIZES = Sizes(
    vocab_size=128_256,  # Llama 3
    tokenizer_vocab=4096,
    hidden_size=2048,  # Llama-3.2-1B
    intermediate_size=8192,
    layers=16,
    heads=32,
    kv_heads=8,
    corpus_scale=0.05,
    max_length=512,
    max_prompt_length=256,
    micro_batch=4,  # as the real jobs
    learning_rate=1e-4,
    ratio_rounds=3,
    kernel_rows=8,
    kernel_positions=256,
    timing_repeats=5,
    model_batch=4,
    model_positions=512,
    prompts=16,
    new_tokens=64,
)
DRY_SIZES = Sizes(
    vocab_size=1024,
    tokenizer_vocab=512,
    hidden_size=64,
    intermediate_size=128,
    layers=2,
    heads=1,
    kv_heads=1,
    corpus_scale=0.02,
    max_length=96,
    max_prompt_length=64,
    micro_batch=2,
    learning_rate=1e-3,
    ratio_rounds=1,
    kernel_rows=4,
    kernel_positions=24,
    timing_repeats=2,
    model_batch=2,
    model_positions=32,
    prompts=3,
    new_tokens=8,
)
RECIPE_STEPS = 6
CHECKPOINT_STEP = 5
ACCUMULATION = 2  # micro-steps per optimizer step (exercises ZeRO's accumulation boundary)


@dataclasses.dataclass
class Stage:
    """What a stage function gets: the mode, sizes and folders, and where it records checks."""

    dry_run: bool
    sizes: Sizes
    work: Path
    ray: RayStandIn
    checks: dict[str, dict] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    def expect(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks[name] = {"status": "passed" if ok else "failed", "detail": detail}
        return ok

    def warn(self, name: str, detail: str) -> None:
        self.checks[name] = {"status": "warning", "detail": detail}

    def skip(self, name: str, reason: str = NEEDS_CUDA) -> None:
        self.checks[name] = {"status": "skipped", "detail": reason}

    def close(self, name: str, got: float, want: float, rtol: float, what: str = "") -> bool:
        """Expect ``|got - want| <= rtol * max(|want|, 1e-12)``; records both and the error."""
        err = abs(got - want) / max(abs(want), 1e-12)
        detail = f"{what}{got:.6g} vs {want:.6g}: relative error {err:.2e} (limit {rtol:g})"
        return self.expect(name, err <= rtol, detail)

    def synchronize(self) -> None:
        if not self.dry_run:
            import torch

            torch.cuda.synchronize()

    def peak_bytes(self, fn: Callable[[], object]) -> tuple[int, int]:
        """(bytes allocated before ``fn``, the peak above that while it ran): CUDA's allocator
        statistics on the GPU, the profiler's allocation events on the CPU."""
        import torch

        if self.dry_run:
            return 0, cpu_peak_bytes(fn)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return before, torch.cuda.max_memory_allocated() - before


@dataclasses.dataclass(frozen=True)
class Workspace:
    """What the model stage builds once and the later stages share, under ``--work-dir``."""

    root: Path

    corpus = property(lambda self: self.root / "corpus")
    model = property(lambda self: self.root / "model")
    reward_model = property(lambda self: self.root / "reward_model")
    prepared = property(lambda self: self.root / "prepared")
    shard = property(lambda self: self.root / "prepared" / "train_rows.parquet")
    runs = property(lambda self: self.root / "runs")
    marker = property(lambda self: self.root / "workspace.json")


def llama_config(sizes: Sizes, tokenizer):
    """Llama-3.2-1B's shape (on the GPU) with ``sizes``' vocabulary, tied embeddings."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=sizes.vocab_size,
        hidden_size=sizes.hidden_size,
        intermediate_size=sizes.intermediate_size,
        num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads,
        num_key_value_heads=sizes.kv_heads,
        head_dim=sizes.hidden_size // sizes.heads,
        max_position_embeddings=4096,
        rope_theta=500_000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def ensure_workspace(st: Stage) -> Workspace:
    """Build the workspace unless it exists for these sizes: synthetic corpus → tokenizer →
    tokenized pairs and token counts in plot-ray's formats → the random model in bf16."""
    import pyarrow.parquet as pq
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    ws = Workspace(st.work / "workspace")
    identity = {"sizes": dataclasses.asdict(st.sizes), "dry_run": st.dry_run}
    if ws.marker.is_file() and json.loads(ws.marker.read_text()) == identity:
        return ws
    shutil.rmtree(ws.root, ignore_errors=True)
    ws.root.mkdir(parents=True)
    s = st.sizes
    synthetic_corpus(ws.corpus, s.corpus_scale)
    tokenizer = corpus_tokenizer(ws.corpus, s.tokenizer_vocab)
    torch.manual_seed(0)
    with torch.device(st.device):
        model = LlamaForCausalLM(llama_config(s, tokenizer)).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    save_model(model.cpu(), tokenizer, ws.model)
    del model
    files = {sub: ws.corpus / path for sub, path in SUBPREFERENCES.items()}
    rows, subpreferences = tokenize_pairs(files, ws.model, s.max_length, s.max_prompt_length)
    ws.prepared.mkdir()
    write_token_counts(rows, subpreferences, tokenizer, ws.prepared)
    pq.write_table(training_rows(rows, 2 * s.micro_batch), ws.shard)
    build_reward_model(tokenizer, ws.reward_model)
    ws.marker.write_text(json.dumps(identity))
    return ws


def training_rows(rows, count: int):
    """``count`` rows, alternating sub-preferences: two micro-batches that every optimizer step
    sees again (with :data:`ACCUMULATION` = 2), so that a falling loss means learning."""
    import pyarrow as pa

    ids = rows.column("subpreference_id").to_pylist()
    by_sub = {sub: [i for i, x in enumerate(ids) if x == sub] for sub in sorted(set(ids))}
    picks = [i for group in zip(*by_sub.values(), strict=False) for i in group][:count]
    if len(picks) < count:
        raise ValueError(f"the corpus gave {len(picks)} usable pairs, {count} are needed")
    return rows.take(pa.array(picks))


# ================================================================= the stages
def stage_preflight(st: Stage) -> None:
    import torch

    st.metrics["versions"] = package_versions()
    st.metrics["torch_cuda"] = torch.version.cuda
    mismatched = version_mismatches(st.metrics["versions"])
    if mismatched:
        st.warn("versions", "outside pyproject.toml's ranges: " + "; ".join(mismatched))
    else:
        st.expect("versions", True, "within pyproject.toml's ranges")
    if st.dry_run:
        for name in ("cuda", "bf16", "nvcc"):
            st.skip(name)
    elif not st.expect("cuda", torch.cuda.is_available(), cuda_summary(st)):
        return
    else:
        st.expect("bf16", torch.cuda.is_bf16_supported(), "torch.cuda.is_bf16_supported()")
        nvcc_check(st)
    select_accelerator(not st.dry_run)  # after the CUDA check: it raises without a device
    gen = torch.Generator(device=st.device).manual_seed(0)
    a = torch.randn(256, 256, device=st.device, generator=gen)
    b = torch.randn(256, 256, device=st.device, generator=gen)
    exact = (a.double() @ b.double()).float()
    half = (a.bfloat16() @ b.bfloat16()).float()
    err = float((half - exact).abs().max() / exact.abs().max())
    st.expect("bf16_matmul", err < 2e-2, f"{st.device} bf16 matmul, max error {err:.2e} of max")
    from deepspeed.accelerator import get_accelerator

    name = get_accelerator().device_name()
    want = "cpu" if st.dry_run else "cuda"
    st.expect(
        "deepspeed_accelerator",
        name == want,
        f"{name} (DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR', 'unset')}); expected {want}",
    )


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    names = ("torch", "transformers", "tokenizers", "safetensors", "deepspeed", "pydantic",
             "pyarrow", "numpy", "pyyaml", "accelerate")  # fmt: skip
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def version_mismatches(versions: dict[str, str | None]) -> list[str]:
    """Installed versions outside pyproject.toml's dependency ranges (missing ones included)."""
    import tomllib

    from packaging.requirements import Requirement

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    out = []
    for dep in map(Requirement, deps):
        if dep.name not in versions:
            continue
        have = versions[dep.name]
        if have is None or not dep.specifier.contains(have, prereleases=True):
            out.append(f"{dep.name} {have or 'missing'} (wants {dep.specifier})")
    return out


def cuda_summary(st: Stage) -> str:
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
    p = torch.cuda.get_device_properties(0)
    st.metrics["gpu"] = {
        "name": p.name,
        "capability": f"{p.major}.{p.minor}",
        "memory_gib": round(p.total_memory / 2**30, 1),
        "count": torch.cuda.device_count(),
    }
    return f"{p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB"


def nvcc_check(st: Stage) -> None:
    """nvcc's CUDA against torch's, by DeepSpeed's own rule: it compiles its CUDA ops (FusedAdam
    among them) with nvcc at first use and refuses a toolkit that torch was not built with."""
    import torch
    from deepspeed.ops.op_builder.builder import assert_no_cuda_mismatch, installed_cuda_version

    try:
        major, minor = installed_cuda_version()
    except Exception as exc:  # no CUDA_HOME, or nvcc missing there
        st.expect("nvcc", False, f"{type(exc).__name__}: {exc}")
        return
    st.metrics["nvcc_cuda"] = f"{major}.{minor}"
    torch_major = int(torch.version.cuda.split(".")[0])
    detail = f"nvcc {major}.{minor}, torch built with CUDA {torch.version.cuda}"
    if not st.expect("nvcc", major == torch_major, detail + " (majors must match)"):
        return
    try:
        assert_no_cuda_mismatch("gpu_check")
        st.expect("deepspeed_cuda_rule", True, detail + ": DeepSpeed accepts it")
    except Exception as exc:
        st.expect("deepspeed_cuda_rule", False, f"{exc} (DS_SKIP_CUDA_CHECK=1 overrides)")


@contextlib.contextmanager
def process_group(st: Stage) -> Iterator[str]:
    """torch.distributed at world size 1 (NCCL on the GPU, gloo on the CPU), set up as Ray
    Train sets it up for a worker (the usual environment variables, ``env://``)."""
    import socket

    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(
        RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    backend = "gloo" if st.dry_run else "nccl"
    if not st.dry_run:
        import torch

        torch.cuda.set_device(0)
    dist.init_process_group(backend, init_method="env://", rank=0, world_size=1)
    try:
        yield backend
    finally:
        dist.destroy_process_group()


def tiny_llama(vocab: int = 256):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=1, num_key_value_heads=1, head_dim=64,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def stage_nccl(st: Stage) -> None:
    import torch
    import torch.distributed as dist

    select_accelerator(not st.dry_run)
    with process_group(st) as backend:
        st.metrics["backend"] = backend
        if not st.dry_run:
            version = torch.cuda.nccl.version()
            st.metrics["nccl_version"] = ".".join(map(str, version if version else ()))
        x = torch.arange(4, dtype=torch.float32, device=st.device) + 1
        total = x.clone()
        dist.all_reduce(total)
        least = x.clone()
        dist.all_reduce(least, op=dist.ReduceOp.MIN)
        dist.broadcast(x, src=0)
        dist.barrier()
        ok = torch.equal(total, x) and torch.equal(least, x)
        st.expect("collectives", ok, f"{backend}: all-reduce (sum, min), broadcast, barrier")

        import deepspeed
        import deepspeed.comm as ds_comm

        from plot_ray.train.deepspeed_config import isolate_extension_builds

        isolate_extension_builds()  # as the recipe does: on CPU this builds DeepSpeed's comm op
        deepspeed.init_distributed(dist_backend=dist.get_backend())
        st.expect(
            "deepspeed_comm",
            ds_comm.get_world_size() == 1 and ds_comm.get_rank() == 0,
            f"deepspeed.comm wraps the {backend} group: rank {ds_comm.get_rank()} of "
            f"{ds_comm.get_world_size()}",
        )
        cfg = job_config(TRAIN_JOB, recipe_overrides(st, Workspace(st.work), "nccl", 0.0))
        ds_config = deepspeed_config(cfg)
        ds_config["optimizer"]["params"]["torch_adam"] = True  # FusedAdam is its own stage
        torch.manual_seed(0)
        model = tiny_llama().to(torch.bfloat16)
        engine, *_ = deepspeed.initialize(
            model=model, model_parameters=model.parameters(), config=ds_config
        )
        ids = torch.randint(0, 256, (ds_config["train_micro_batch_size_per_gpu"], 16))
        ids = ids.to(engine.device)
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
        stage = ds_config["zero_optimization"]["stage"]
        st.expect(
            "deepspeed_initialize",
            bool(torch.isfinite(loss)),
            f"ZeRO-{stage}, bf16={ds_config['bf16']['enabled']}: one step, loss {float(loss):.4f}",
        )


def stage_fused_adam(st: Stage) -> str | None:
    """Returns the reason the stage is skipped, if it is."""
    if st.dry_run:
        return NEEDS_CUDA
    import torch

    select_accelerator(True)
    from deepspeed.ops.op_builder import FusedAdamBuilder

    started = time.perf_counter()
    FusedAdamBuilder().load()  # a JIT build with nvcc unless DeepSpeed was installed with it
    st.metrics["build_s"] = round(time.perf_counter() - started, 1)
    from deepspeed.ops.adam import FusedAdam

    cfg = job_config(TRAIN_JOB, recipe_overrides(st, Workspace(st.work), "adam", 0.0))
    params = dict(deepspeed_config(cfg)["optimizer"]["params"])  # betas, eps as training has them
    # A large step and decoupled weight decay (where Adam and AdamW differ), so that the
    # parameters move far more than float32 rounding.
    params.update(lr=1e-3, weight_decay=0.1, betas=tuple(params["betas"]))
    gen = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(4096, 1024), (12_345,), (7, 3)]
    start = [torch.randn(s, device="cuda", generator=gen) for s in shapes]
    grads = [[torch.randn(s, device="cuda", generator=gen) for s in shapes] for _ in range(3)]
    results = {}
    for name, make in (
        ("fused", lambda ps: FusedAdam(ps, adam_w_mode=True, **params)),
        ("torch", lambda ps: torch.optim.AdamW(ps, **params)),
    ):
        ps = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make(ps)
        for step in grads:  # three steps: the bias corrections change from step to step
            for p, g in zip(ps, step, strict=True):
                p.grad = g.clone()
            opt.step()
        results[name] = ps
    diff = max(float((a - b).abs().max()) for a, b in zip(*results.values(), strict=True))
    moved = max(float((a - b).abs().max()) for a, b in zip(results["torch"], start, strict=True))
    scale = max(float(p.abs().max()) for p in start)
    tolerance = 1e-5 * scale  # ~80 float32 ulps of the largest parameter
    st.metrics["max_abs_diff"] = diff
    st.expect(
        "matches_adamw",
        diff <= tolerance < moved / 10,
        f"3 steps (lr {params['lr']}, betas {params['betas']}, eps {params['eps']}, weight decay "
        f"0.1): max |fused - AdamW| {diff:.2e} (limit {tolerance:.1e}); parameters moved up to "
        f"{moved:.2e}",
    )
    return None


def stage_model(st: Stage) -> None:
    import math

    import torch

    s = st.sizes
    started = time.perf_counter()
    ws = ensure_workspace(st)
    st.metrics["workspace_s"] = round(time.perf_counter() - started, 1)
    model = load_model(ws.model, "bfloat16").to(st.device)
    params = sum(p.numel() for p in model.parameters())
    st.metrics["parameters"] = params
    st.metrics["vocab_size"] = model.config.vocab_size
    st.metrics["tokenizer_vocab"] = len(load_tokenizer(ws.model))
    if st.dry_run:
        st.skip("llama_3_2_1b_parameters", "toy sizes")
    else:  # Llama-3.2-1B has 1,235,814,400 parameters (tied embeddings)
        st.expect("llama_3_2_1b_parameters", params == 1_235_814_400, f"{params:,} parameters")
    st.expect("dtype", model.dtype == torch.bfloat16, str(model.dtype))
    gen = torch.Generator(device=st.device).manual_seed(0)
    ids = torch.randint(
        0, s.vocab_size, (s.model_batch, s.model_positions), device=st.device, generator=gen
    )
    model.train()
    losses = []

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(float(loss))

    step()  # warm-up (kernels, allocator)
    model.zero_grad(set_to_none=True)
    st.synchronize()
    t0 = time.perf_counter()
    before, peak = st.peak_bytes(step)
    seconds = time.perf_counter() - t0
    expected = math.log(s.vocab_size)  # a random model's logits are nearly uniform
    st.close("random_init_loss", losses[-1], expected, 0.1, "loss vs log(V): ")
    st.metrics["tokens_per_s"] = round(ids.numel() / seconds, 1)
    st.metrics["forward_backward_peak_gib"] = round((before + peak) / 2**30, 3)


def stage_plot_kernel(st: Stage) -> None:
    import torch

    s = st.sizes
    cfg = job_config(TRAIN_JOB, recipe_overrides(st, Workspace(st.work), "kernel", None))
    plot_cfg = cfg.loss.plot
    dev = st.device
    gen = torch.Generator(device=dev).manual_seed(0)
    v, rows, t = s.vocab_size, s.kernel_rows, s.kernel_positions
    cpu = torch.Generator().manual_seed(0)
    zipf = 1.0 / torch.arange(1, v + 1, dtype=torch.float64)  # Zipf-like token counts
    counts = torch.poisson(2e5 * zipf.expand(4, v).contiguous(), cpu).long()
    counts = torch.stack([c[torch.randperm(v, generator=cpu)] for c in counts])
    geometry, targets, loss = plot_pieces(
        plot_cfg,
        torch.randn(v, s.hidden_size, device=dev, generator=gen) * 0.02,
        counts[:2],
        counts[2:],
    )
    st.metrics["plot"] = f"{plot_cfg.target}/{plot_cfg.aggregate}/{plot_cfg.divergence}"
    logits = torch.randn(rows, t, v, device=dev, generator=gen) * 2
    ref = logits + 0.5 * torch.randn(rows, t, v, device=dev, generator=gen)
    mask = torch.ones(rows, t, dtype=torch.bool, device=dev)
    mask[:, : t // 4] = False  # the prompt
    for r in range(rows):  # ragged ends
        mask[r, t - (r * 5) % (t // 4) :] = False
    ids = torch.arange(rows, device=dev) % 2

    def values_and_grad(fused: bool):
        leaf = logits.clone().requires_grad_()
        values = plot_values(loss, leaf, mask, ids, ref, fused)
        values.sum().backward()
        return values.detach(), leaf.grad

    ref_values, ref_grad = values_and_grad(fused=False)
    fused_values, fused_grad = values_and_grad(fused=True)
    rel = float(((fused_values - ref_values).abs() / ref_values.abs()).max())
    st.expect("fused_values", rel < 1e-4, f"V={v}, {rows} rows: max relative error {rel:.2e}")
    grad_err = float((fused_grad - ref_grad).abs().max() / ref_grad.abs().max())
    st.expect("fused_gradients", grad_err < 1e-3, f"max |Δ| / max |g| = {grad_err:.2e}")
    del ref_grad, fused_grad

    p = torch.softmax(logits[:, -1].double(), -1)
    q = torch.softmax(ref[:, -1].double(), -1)
    w64, g64 = geometry.value_and_grad(p, q)
    w32, g32 = geometry.value_and_grad(p.float(), q.float())
    value_err = float(((w32.double() - w64).abs() / w64.abs()).max())
    potential_err = float((g32.double() - g64).abs().max() / g64.abs().max())
    st.metrics["w1_float32_relative_error"] = value_err
    st.expect(
        "w1_float32",
        value_err < 1e-3,
        f"V={v}: W1 max relative error {value_err:.2e}, potential {potential_err:.2e}",
    )
    loss_cost(st, cfg, geometry, targets)


def loss_cost(st: Stage, cfg, geometry, targets) -> None:
    """The objective alone (forward and backward into fixed bf16 logits), DPO against DPO+PLOT:
    median time and the memory it adds, where all of PLOT's work happens."""
    import torch

    s = st.sizes
    pairs = s.kernel_rows // 2
    gen = torch.Generator(device=st.device).manual_seed(1)
    shape = (2 * pairs, s.kernel_positions, s.vocab_size)
    logits = torch.randn(shape, device=st.device, generator=gen).bfloat16()
    ref_logits = (logits.float() + torch.randn(shape, device=st.device, generator=gen)).bfloat16()
    labels = torch.randint(3, s.vocab_size, shape[:2], device=st.device, generator=gen)
    labels[:, : s.kernel_positions // 4] = -100
    ids = torch.arange(pairs, device=st.device) % 2
    special = [0, 1, 2]
    variants = objectives(cfg.loss, geometry, targets, special)

    def run(name: str) -> None:
        objective = variants[name]
        leaf = logits.detach().requires_grad_()
        if objective.needs_reference_logits:
            out = objective(leaf, labels, 2, ref_logits=ref_logits, subpreference_ids=ids)
        else:
            ref_logps = sequence_logps(ref_logits, labels)
            out = objective(leaf, labels, 2, ref_logps=ref_logps, subpreference_ids=ids)
        out.loss.backward()

    timed = abba(st, variants, run, s.timing_repeats)
    memory = {name: st.peak_bytes(lambda n=name: run(n))[1] for name in variants}
    st.metrics["loss_ms"] = {k: round(v * 1e3, 2) for k, v in timed.items()}
    st.metrics["loss_memory_mib"] = {k: round(v / 2**20, 1) for k, v in memory.items()}
    st.metrics["loss_time_ratio"] = round(timed["dpo+plot"] / timed["dpo"], 4)
    st.metrics["loss_memory_ratio"] = round(memory["dpo+plot"] / memory["dpo"], 4)
    st.expect(
        "loss_cost",
        all(v > 0 for v in (*timed.values(), *memory.values())),
        f"{2 * pairs} x {s.kernel_positions} x {s.vocab_size} bf16 logits: DPO+PLOT/DPO loss "
        f"time {st.metrics['loss_time_ratio']}, memory {st.metrics['loss_memory_ratio']}",
    )


def abba(st: Stage, variants: dict, run: Callable[[str], object], rounds: int) -> dict:
    """Median seconds of ``run(name)`` per variant over ``rounds`` ABBA rounds, after one
    warm-up call each."""
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for name in names:
        run(name)
    for i in range(rounds):
        for name in names + names[::-1] if i % 2 == 0 else names[::-1] + names:
            st.synchronize()
            t0 = time.perf_counter()
            run(name)
            st.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {n: statistics.median(v) for n, v in times.items()}


def recipe_overrides(st: Stage, ws: Workspace, name: str, alpha: float | None) -> dict:
    """The real job, shrunk to one worker on this machine and this check's data and model.
    ``alpha`` None keeps the job's ``loss.alpha``."""
    s = st.sizes
    out = {
        "data.sources": [],  # prepared here, not by `plot-ray prepare`
        "data.eval_sources": [],
        "data.output_dir": str(ws.prepared),
        "data.max_length": s.max_length,
        "data.max_prompt_length": s.max_prompt_length,
        "model.name_or_path": str(ws.model),
        "train.num_workers": 1,
        "train.use_gpu": not st.dry_run,
        "train.output_dir": str(ws.runs),
        "train.run_name": name,
        "train.max_steps": RECIPE_STEPS,
        "train.micro_batch_size": s.micro_batch,
        "train.gradient_accumulation_steps": ACCUMULATION,
        "train.learning_rate": s.learning_rate,
        "train.lr_scheduler": "constant",
        "train.warmup_steps": 0,
        "train.log_every": 1,
        "train.eval_every": None,
        "train.checkpoint_every": CHECKPOINT_STEP,
        "train.save_hf_model": True,
        "cluster.storage_path": None,
    }
    if alpha is not None:
        out["loss.alpha"] = alpha
    return out


def stage_recipe(st: Stage, name: str, alpha: float | None) -> None:
    """One training run through the recipe, then its checkpoint restored (and, with PLOT,
    DPO+PLOT against DPO on its engine)."""
    import pyarrow.parquet as pq

    select_accelerator(not st.dry_run)
    ws = ensure_workspace(st)
    run_dir = ws.runs / name
    shutil.rmtree(run_dir, ignore_errors=True)
    storage = st.ray.storage = run_dir / "checkpoints"
    st.ray.shards["train"] = TableShard(pq.read_table(ws.shard))
    cfg = job_config(TRAIN_JOB, recipe_overrides(st, ws, name, alpha))
    st.metrics["alpha"] = cfg.loss.alpha
    st.metrics["config"] = (
        f"{TRAIN_JOB.name}: ZeRO-{cfg.deepspeed.zero_stage} {cfg.deepspeed.precision}, "
        f"model.dtype {cfg.model.dtype}, gradient checkpointing "
        f"{cfg.model.gradient_checkpointing}, method {cfg.loss.method}"
    )
    recipe = recipe_class()(
        {"cfg": cfg.to_dict(), "run_dir": str(run_dir), "artifact_dir": str(ws.prepared)}
    )
    with process_group(st), free_optimizer_states(storage):
        started = time.perf_counter()
        recipe.setup()
        st.metrics["setup_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        recipe.train()
        st.metrics["train_s"] = round(time.perf_counter() - started, 1)
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss/total"] for r in rows]
        st.metrics["losses"] = [round(x, 5) for x in losses]
        finite = all(map(lambda x: x == x and abs(x) != float("inf"), losses))
        st.expect("no_nan", finite and rows[-1]["nan_skips"] == 0, f"losses {losses}")
        reported = [r["step"] for r in st.ray.reports]
        st.expect(
            "reports",
            reported == [CHECKPOINT_STEP, RECIPE_STEPS],
            f"ray.train.report() at steps {reported}: with a checkpoint each, at "
            f"train.checkpoint_every={CHECKPOINT_STEP} and the last step",
        )
        st.expect(
            "falling_loss",
            losses[-1] < losses[0],
            f"step {len(losses)} {losses[-1]:.5f} < step 1 {losses[0]:.5f} (same batches)",
        )
        layout = checkpoint_layout()
        final = storage / f"checkpoint_{RECIPE_STEPS:06d}"
        hf_model = final / layout["hf_model"]
        saved = (hf_model / "config.json").is_file() and any(hf_model.glob("*.safetensors"))
        st.expect("saved_model", saved, str(hf_model))
        record_logps(st, recipe, hf_model)
        resumed = storage / f"checkpoint_{CHECKPOINT_STEP:06d}"
        restore_recipe(recipe, StandInCheckpoint(resumed))
        recipe.train_step()
        again = logged_metrics(recipe)["loss/total"]
        st.close(
            "restore",
            again,
            losses[CHECKPOINT_STEP],
            1e-3,
            f"step {CHECKPOINT_STEP + 1} loss after restoring step {CHECKPOINT_STEP}: ",
        )
        if cfg.loss.alpha > 0:
            step_cost(st, recipe)


@contextlib.contextmanager
def free_optimizer_states(storage: Path) -> Iterator[None]:
    """Remove the checkpoints' DeepSpeed states when the block ends, however it ends (about
    17 GB each for the 1B model: two runs' would fill a 64 GB disk); saved models stay."""
    try:
        yield
    finally:
        for state in storage.glob(f"checkpoint_*/{checkpoint_layout()['deepspeed']}"):
            shutil.rmtree(state)


def recipe_step_tokens(recipe) -> dict[str, int]:
    """Sequences and tokens (prompt + response, padding excluded) of one optimizer step."""
    batches = [next(recipe.batches) for _ in range(ACCUMULATION)]
    return {
        "sequences": sum(int(b["input_ids"].shape[0]) for b in batches),
        "tokens": sum(int(b["attention_mask"].sum()) for b in batches),
    }


def record_logps(st: Stage, recipe, hf_model: Path) -> None:
    """The trained engine's log-probs on the first batch, for the generation stage to compare
    with the saved model's (``reload_check.pt`` beside the model)."""
    import torch

    batch = next(recipe.batches)
    batch = {k: v.to(recipe.device) for k, v in batch.items() if torch.is_tensor(v)}
    recipe.engine.eval()
    with torch.no_grad():
        logits = engine_logits(recipe, batch)
        logps = sequence_logps(logits, batch["labels"]).float().cpu()
    recipe.engine.train()
    torch.save(
        {
            "input_ids": batch["input_ids"].cpu(),
            "attention_mask": batch["attention_mask"].cpu(),
            "labels": batch["labels"].cpu(),
            "logps": logps,
        },
        hf_model.parent / "reload_check.pt",
    )


def step_cost(st: Stage, recipe) -> None:
    """DPO+PLOT against DPO optimizer steps on the trained engine: the recipe's own
    ``train_step`` with its objective swapped (the reference model's part follows the
    objective, as in training: log-probs for DPO, logits for the anchored target)."""
    variants = {"dpo": vanilla_objective(recipe), "dpo+plot": recipe.objective}

    def run(name: str) -> None:
        recipe.objective = variants[name]
        recipe.train_step()

    st.metrics["step_tokens"] = recipe_step_tokens(recipe)
    timed = abba(st, variants, run, st.sizes.ratio_rounds)
    memory = {}
    for name in variants:
        before, peak = st.peak_bytes(lambda n=name: run(n))
        memory[name] = (before, peak)
    recipe.objective = variants["dpo+plot"]
    time_ratio = timed["dpo+plot"] / timed["dpo"]
    st.metrics["step_s"] = {k: round(v, 4) for k, v in timed.items()}
    st.metrics["time_ratio"] = round(time_ratio, 4)
    st.metrics["step_memory_ratio"] = round(memory["dpo+plot"][1] / memory["dpo"][1], 4)
    if st.dry_run:
        st.skip("memory_ratio")
    else:
        total = {k: before + peak for k, (before, peak) in memory.items()}
        st.metrics["peak_gib"] = {k: round(v / 2**30, 2) for k, v in total.items()}
        st.metrics["memory_ratio"] = round(total["dpo+plot"] / total["dpo"], 4)
        st.expect("memory_ratio", True, f"peak memory DPO+PLOT/DPO {st.metrics['memory_ratio']}")
    st.expect(
        "time_ratio",
        time_ratio > 0,
        f"DPO+PLOT/DPO step time {time_ratio:.4f} (paper: ~1.027 on Llama-3.2-3B)",
    )


def stage_generation(st: Stage) -> None:
    import numpy as np

    ws = ensure_workspace(st)
    trained = {
        name: path
        for name in ("recipe_dpo", "recipe_dpo_plot")
        if (path := final_model(ws, name)) is not None
    }
    for name, path in trained.items():
        reload_check(st, name, path)
    if not trained:
        st.skip("reload", "no recipe stage has saved a model in this workspace")
    model = trained.get("recipe_dpo_plot") or trained.get("recipe_dpo") or ws.model
    st.metrics["model"] = str(model)
    ev = job_config(
        EVAL_JOB,
        {
            "eval.generation.engine": "hf",  # no vLLM on the check's machine
            "eval.generation.dtype": "auto",  # bf16 on GPUs, fp32 on CPUs
            "eval.generation.max_new_tokens": st.sizes.new_tokens,
            "eval.generation.batch_size": st.sizes.prompts,
        },
    ).eval
    settings = engine_settings(ev, model, use_gpu=not st.dry_run)
    st.metrics["engine"] = f"{settings.engine}, {settings.dtype}, use_gpu={settings.use_gpu}"
    generator = hf_generator(model, settings)
    on_device(st, "generator_device", generator.model)
    tokenizer = load_tokenizer(model)
    messages = [f"Question {i}: how do I bake bread?" for i in range(st.sizes.prompts)]
    prompts = np.array(chat_prompts(tokenizer, messages), dtype=object)
    st.synchronize()
    t0 = time.perf_counter()
    out = generator({"prompt": prompts})
    st.synchronize()
    seconds = time.perf_counter() - t0
    generated = int(out["num_generated_tokens"].sum())
    st.metrics["generated_tokens_per_s"] = round(generated / seconds, 1)
    st.expect(
        "generate",
        len(out["completion"]) == len(prompts) and generated > 0,
        f"{len(prompts)} prompts, {generated} tokens in {seconds:.1f} s",
    )
    references = np.array(["Knead the dough, let it rise, bake it."] * len(prompts), dtype=object)
    scorer = nll_scorer(model, settings)
    if on_device(st, "nll_scorer_device", scorer.model):
        nll = scorer({"prompt": prompts, "reference": references})["nll"]
        st.expect("nll_scorer", bool(np.isfinite(nll).all()), f"NLL {nll.tolist()[:3]} ...")
    reward = reward_scorer(ev, ws.reward_model, settings)
    if on_device(st, "reward_scorer_device", reward.model):
        scores = reward({"prompt": prompts, "completion": out["completion"]})["reward"]
        detail = f"rewards {scores.tolist()[:3]} ..."
        st.expect("reward_scorer", bool(np.isfinite(scores).all()), detail)


def final_model(ws: Workspace, stage: str) -> Path | None:
    folder = ws.runs / RUN_NAMES[stage] / "checkpoints" / f"checkpoint_{RECIPE_STEPS:06d}"
    hf_model = folder / checkpoint_layout()["hf_model"]
    return hf_model if (hf_model / "config.json").is_file() else None


def reload_check(st: Stage, name: str, path: Path) -> None:
    """The saved model, loaded as evaluation loads it, scores the recorded batch as the trained
    engine did."""
    import torch

    model = load_model(path, "bfloat16").to(st.device).eval()
    check = torch.load(path.parent / "reload_check.pt", weights_only=True)
    with torch.no_grad():
        logits = model(
            input_ids=check["input_ids"].to(st.device),
            attention_mask=check["attention_mask"].to(st.device),
        ).logits
        logps = sequence_logps(logits, check["labels"].to(st.device)).float().cpu()
    err = float(((logps - check["logps"]).abs() / check["logps"].abs()).max())
    st.expect(
        f"reload_{name}",
        err < 1e-3,
        f"{path}: sequence log-probs max relative difference {err:.2e} from the engine's",
    )
    del model


def on_device(st: Stage, name: str, model) -> bool:
    """Expect ``model`` on the GPU (evaluation holds GPUs for it). False: it is not, and
    scoring with it would only measure the CPU (the check then says so and stops there)."""
    if st.dry_run:
        st.skip(name)
        return True
    device = next(model.parameters()).device
    detail = f"{type(model).__name__} on {device}"
    if device.type != "cuda":
        detail += " while evaluation holds a GPU for it: not scored here"
    return st.expect(name, device.type == "cuda", detail)


RUN_NAMES = {"recipe_dpo": "dpo", "recipe_dpo_plot": "dpo-plot"}
STAGES: dict[str, tuple[Callable[[Stage], str | None], float, float]] = {
    # name: (function, timeout on the GPU in seconds, timeout for --dry-run)
    "preflight": (stage_preflight, 120, 120),
    "nccl": (stage_nccl, 180, 180),
    "fused_adam": (stage_fused_adam, 300, 60),
    "model": (stage_model, 240, 180),
    "plot_kernel": (stage_plot_kernel, 180, 120),
    "recipe_dpo": (lambda st: stage_recipe(st, RUN_NAMES["recipe_dpo"], 0.0), 420, 300),
    "recipe_dpo_plot": (lambda st: stage_recipe(st, RUN_NAMES["recipe_dpo_plot"], None), 480, 300),
    "generation": (stage_generation, 240, 180),
}


# ================================================================= a stage's own process
def run_stage(name: str, dry_run: bool, sizes: Sizes, work: Path, result_file: Path) -> int:
    """Child mode: run one stage, write its result (JSON) to ``result_file``."""
    started = time.perf_counter()
    st = Stage(dry_run=dry_run, sizes=sizes, work=work, ray=RayStandIn(work / "checkpoints"))
    result: dict[str, Any] = {}
    try:
        skipped = STAGES[name][0](st)
        failed = [k for k, c in st.checks.items() if c["status"] == "failed"]
        if skipped:
            result = {"status": "skipped", "reason": skipped}
        elif failed:
            result = {"status": "failed", "reason": "failed checks: " + ", ".join(failed)}
        else:
            result = {"status": "passed", "reason": None}
    except Exception as exc:
        traceback.print_exc()
        result = {
            "status": "failed",
            "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "error": traceback.format_exc(limit=-8),
        }
    result.update(
        seconds=round(time.perf_counter() - started, 1), checks=st.checks, metrics=st.metrics
    )
    result_file.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["status"] != "failed" else 1


# ================================================================= the run (parent)
def default_out() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu_check.json" if out else REPO / "runs" / "gpu_check" / "gpu_check.json"


def stage_timeout(name: str, args: argparse.Namespace) -> float:
    if args.timeout is not None:
        return args.timeout
    return STAGES[name][2] if args.dry_run else STAGES[name][1]


def child_env(args: argparse.Namespace, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    # Checkpoints are written to a temporary folder and then moved (a rename on one filesystem).
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(work / "tmp")
    if args.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU code paths, even on a machine with a GPU
    return env


def log_tail(path: Path, offset: int, lines: int = 40) -> str:
    with path.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def run_child(name: str, args: argparse.Namespace, work: Path, log_path: Path) -> dict:
    """One stage in its own process (and process group) with its time limit."""
    timeout = stage_timeout(name, args)
    result_file = work / "results" / f"{name}.json"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--work-dir", str(work)]
    cmd += ["--result-file", str(result_file)]
    cmd += ["--dry-run"] if args.dry_run else []
    cmd += ["--layers", str(args.layers)] if args.layers else []
    with log_path.open("a") as log:
        log.write(f"\n===== {name} (timeout {timeout:g} s) {time.strftime('%H:%M:%S')}\n")
        log.flush()
        offset = log.tell()
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(args, work),
            cwd=REPO,
            # Its own process group, so that a timeout ends its children too (DeepSpeed's op
            # builds), but the same session, so that whatever ends this run's session ends it.
            process_group=0,
        )
        try:
            code = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            stop_process_group(proc)
            code, timed_out = proc.returncode, True
        except BaseException:  # Ctrl-C, or SIGTERM (see run_all): never leave a stage running
            stop_process_group(proc)
            raise
    if timed_out:
        result = {"status": "failed", "reason": f"timed out after {timeout:g} s"}
    elif result_file.is_file():
        result = json.loads(result_file.read_text())
    else:
        result = {"status": "failed", "reason": f"its process exited with code {code}"}
    result["seconds"] = round(time.perf_counter() - started, 1)  # the process, start included
    result["timeout_s"] = timeout
    if result["status"] == "failed":
        result["log_tail"] = log_tail(log_path, offset)
    return result


def stop_process_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def summarize(doc: dict) -> dict:
    """The counts and the headline figures, for the JSON and the last printed line."""
    stages = doc["stages"]
    by_status = {s: [n for n in STAGES if stages.get(n, {}).get("status") == s]
                 for s in ("passed", "failed", "skipped")}  # fmt: skip
    figures = {}
    for stage, keys in (
        ("recipe_dpo_plot", ("time_ratio", "memory_ratio", "step_memory_ratio")),
        ("plot_kernel", ("loss_time_ratio", "loss_memory_ratio")),
    ):
        metrics = stages.get(stage, {}).get("metrics", {})
        figures.update({k: metrics[k] for k in keys if k in metrics})
    doc["summary"] = by_status
    doc["ratios"] = figures
    return {
        "benchmark": "gpu_check",
        "mode": doc["mode"],
        **{k: len(v) for k, v in by_status.items()},
        **figures,
    }


def existing_doc(out: Path, mode: str) -> dict | None:
    """The JSON of an earlier run in the same mode, whose stages a ``--stages`` rerun updates."""
    if not out.is_file():
        return None
    doc = json.loads(out.read_text())
    if doc.get("mode") != mode:
        print(f"{out} holds a {doc.get('mode')} run; starting a new file", file=sys.stderr)
        return None
    return doc


def write_doc(out: Path, doc: dict) -> dict:
    line = summarize(doc)
    doc["stages"] = {n: doc["stages"][n] for n in STAGES if n in doc["stages"]}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(out)  # a reader never sees half a file
    return line


def gpu_visible() -> bool:
    """Whether this machine shows processes an NVIDIA GPU (device files or nvidia-smi) that
    ``CUDA_VISIBLE_DEVICES`` does not hide. Whether CUDA can use it is preflight's question."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None


def run_all(args: argparse.Namespace) -> int:
    import tempfile

    if not (args.dry_run or args.stages or gpu_visible()):
        # As benchmarks/gpu_overhead.py (`make bench` runs every benchmark on CPU machines too).
        # Named stages run anyway, and preflight says what is missing.
        print(json.dumps({"benchmark": "gpu_check", "skipped": "no GPU"}))
        return 0
    mode = "dry-run" if args.dry_run else "gpu"
    # A SIGTERM (a job's time limit) ends the stage in flight and records it as interrupted.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    selected = args.stages or list(STAGES)
    out = (args.out or default_out()).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".log")
    work = (args.work_dir or Path(tempfile.gettempdir()) / f"plot-ray-gpu-check-{mode}").resolve()
    doc = (existing_doc(out, mode) if args.stages else None) or {"mode": mode, "stages": {}}
    doc.update(sizes=dataclasses.asdict(sizes_for(args)), work_dir=str(work), log=str(log_path))
    if not args.stages:
        log_path.write_text("")
    blocked = None
    for name in selected:
        if blocked:
            doc["stages"][name] = {"status": "skipped", "reason": blocked}
            write_doc(out, doc)
            continue
        doc["stages"][name] = {"status": "running", "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_doc(out, doc)
        try:
            result = run_child(name, args, work, log_path)
        except BaseException as exc:
            doc["stages"][name] = {"status": "failed", "reason": f"interrupted ({exc!r})"}
            write_doc(out, doc)
            raise
        doc["stages"][name] = result
        write_doc(out, doc)
        print(
            f"{name:16s} {result['status']:7s} {result['seconds']:7.1f} s"
            + (f"  {result['reason']}" if result.get("reason") else ""),
            flush=True,
        )
        cuda = result.get("checks", {}).get("cuda", {})
        if name == "preflight" and not args.dry_run and cuda.get("status") == "failed":
            blocked = f"no CUDA device (preflight: {cuda.get('detail')})"
    line = write_doc(out, doc)
    print(f"results: {out}; stage output: {log_path}")
    print(json.dumps(line))
    return 1 if line["failed"] else 0


def sizes_for(args: argparse.Namespace) -> Sizes:
    sizes = DRY_SIZES if args.dry_run else GPU_SIZES
    return dataclasses.replace(sizes, layers=args.layers) if args.layers else sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dry-run", action="store_true", help="every stage on the CPU, toy sizes")
    ap.add_argument(
        "--stages",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        help=f"comma-separated, in any order (run in this one): {', '.join(STAGES)}; their "
        "results replace those in --out, the others stay",
    )
    ap.add_argument("--out", type=Path, help="the JSON (default: $OUT/gpu_check.json)")
    ap.add_argument("--work-dir", type=Path, help="workspace and checkpoints (default: in TMPDIR)")
    ap.add_argument("--timeout", type=float, help="seconds for every stage (default: its own)")
    ap.add_argument("--layers", type=int, help="the model's decoder layers (default: 16)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # child mode: run one stage
    ap.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for name in (args.stages or []) + ([args.stage] if args.stage else []):
        if name not in STAGES:
            ap.error(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    if args.stages:
        args.stages = [n for n in STAGES if n in args.stages]
    if args.timeout is not None and args.timeout <= 0:
        ap.error("--timeout must be positive")
    if args.layers is not None and args.layers < 1:
        ap.error("--layers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage:
        if args.work_dir is None or args.result_file is None:
            raise SystemExit("--stage needs --work-dir and --result-file (the parent gives them)")
        return run_stage(
            args.stage, args.dry_run, sizes_for(args), args.work_dir.resolve(), args.result_file
        )
    return run_all(args)


if __name__ == "__main__":  # stages spawn processes (DeepSpeed's op builds): import stays quiet
    sys.exit(main())
