"""The one typed configuration of plot-ray.

A run is described by a YAML file (see ``jobs/configs/``) plus dotted ``key=value`` overrides,
e.g. ``loss.alpha=0.5 train.num_workers=2``. Everything is validated up front: unknown keys,
wrong types and impossible values raise :class:`ConfigError` naming the dotted key and what is
allowed, before any Ray worker starts.

Sections: ``data``, ``model``, ``loss`` (the vanilla method and its PLOT term), ``train``,
``deepspeed``, ``tune``, ``eval`` and ``cluster``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ConfigError",
    "DataSource",
    "DataConfig",
    "ModelConfig",
    "PlotConfig",
    "LossConfig",
    "TrainConfig",
    "DeepSpeedConfig",
    "TuneConfig",
    "EvalConfig",
    "ClusterConfig",
    "PlotRayConfig",
    "load_config",
    "apply_overrides",
    "parse_override",
    "METHODS",
    "REFERENCE_FREE_METHODS",
]


class ConfigError(ValueError):
    """An invalid configuration; the message names every offending dotted key."""


class _Section(BaseModel):
    # Unknown keys are errors: a typo such as `loss.alhpa` must never be ignored silently.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------------- data
DataFormat = Literal["auto", "trl", "hh_rlhf", "ranked", "sft"]
DataReader = Literal["auto", "jsonl", "json", "parquet", "csv", "hf_disk", "hf_hub"]


class DataSource(_Section):
    """One preference corpus: a file, a folder, a ``save_to_disk`` folder or a hub name."""

    path: str
    format: DataFormat = "auto"
    reader: DataReader = "auto"
    # "default": each row's own `subpreference` field where it has one, else "default".
    subpreference: str = "default"
    split: str = "train"  # hub / save_to_disk split
    limit: int | None = Field(default=None, ge=1)


class DataConfig(_Section):
    sources: list[DataSource] = Field(default_factory=list)
    eval_sources: list[DataSource] = Field(default_factory=list)
    output_dir: str = "artifacts/data"
    max_length: int = Field(default=512, ge=8)
    max_prompt_length: int = Field(default=256, ge=1)
    length_policy: Literal["truncate", "drop"] = "truncate"
    strict: bool = False  # any quarantined row is an error
    ranked_pairing: Literal["best_worst", "best_rest"] = "best_worst"
    tokenize_actors: int = Field(default=2, ge=1)
    tokenize_cpus_per_actor: float = Field(default=0.5, gt=0)
    batch_size: int = Field(default=512, ge=1)

    @model_validator(mode="after")
    def _prompt_fits(self) -> "DataConfig":
        if self.max_prompt_length >= self.max_length:
            raise ValueError(
                f"data.max_prompt_length ({self.max_prompt_length}) must be smaller than "
                f"data.max_length ({self.max_length})"
            )
        return self


# --------------------------------------------------------------------------------- model
class ModelConfig(_Section):
    name_or_path: str = "artifacts/tiny-model"
    tokenizer: str | None = None  # defaults to name_or_path
    reference_name_or_path: str | None = None  # defaults to name_or_path
    trust_remote_code: bool = False
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = False

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer or self.name_or_path

    @property
    def reference_path(self) -> str:
        return self.reference_name_or_path or self.name_or_path


# ---------------------------------------------------------------------------------- loss
METHODS = ("sft", "dpo", "ipo", "pro", "aot", "simpo", "orpo")
# Methods whose vanilla loss needs no reference model.
REFERENCE_FREE_METHODS = ("sft", "pro", "simpo", "orpo")


class PlotConfig(_Section):
    """The PLOT term; see DESIGN.md, "PLOT, as this project defines it"."""

    target: Literal["global", "anchored"] = "anchored"
    transform: Literal["shift", "relu", "softmax"] = "shift"
    tau: float = Field(default=1.0, gt=0)
    support: Literal["observed", "vocab"] = "observed"
    smoothing: float = Field(default=0.0, ge=0, le=1)
    cost: Literal["embedding", "uniform", "index"] = "embedding"
    projection: Literal["pca", "sliced"] = "pca"
    num_projections: int = Field(default=16, ge=1)
    p_norm: float = Field(default=2.0, gt=0)  # l of ||E_i - E_j||_l (exact mode)
    divergence: Literal["wasserstein", "kl", "js"] = "wasserstein"
    aggregate: Literal["sequence", "token"] = "sequence"
    responses: Literal["chosen", "rejected", "all"] = "chosen"
    chunk_size: int = Field(default=1024, ge=1)  # positions per softmax chunk
    seed: int = 0


class LossConfig(_Section):
    method: Literal["sft", "dpo", "ipo", "pro", "aot", "simpo", "orpo"] = "dpo"
    alpha: float = Field(default=0.0, ge=0)
    beta: float = Field(default=0.1, gt=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)
    sft_weight: float = Field(default=0.0, ge=0)  # PRO's weighted SFT term (and DPO+SFT)
    aot_variant: Literal["paired", "unpaired"] = "paired"
    simpo_gamma: float = Field(default=0.5, ge=0)
    orpo_lambda: float = Field(default=0.1, ge=0)
    reference: Literal["model", "precomputed"] = "model"
    plot: PlotConfig = Field(default_factory=PlotConfig)

    @property
    def needs_reference_logps(self) -> bool:
        return self.method not in REFERENCE_FREE_METHODS

    @property
    def needs_reference_logits(self) -> bool:
        """The anchored PLOT target tilts the reference model's own output distribution."""
        return self.alpha > 0 and self.plot.target == "anchored"

    @model_validator(mode="after")
    def _anchored_needs_logits(self) -> "LossConfig":
        if self.reference == "precomputed" and self.needs_reference_logits:
            raise ValueError(
                "loss.reference=precomputed stores only sequence log-probs, but "
                "loss.plot.target=anchored needs the reference model's logits on the same "
                "positions: use loss.reference=model or loss.plot.target=global"
            )
        return self


# --------------------------------------------------------------------------------- train
class TrainConfig(_Section):
    num_workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    use_gpu: bool = False
    threads_per_worker: int = Field(default=1, ge=1)
    output_dir: str = "runs/train"
    run_name: str = "plot"
    max_steps: int = Field(default=100, ge=1)
    epochs: int = Field(default=1, ge=1)
    micro_batch_size: int = Field(default=2, ge=1)  # pairs per worker per micro-step
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=5e-6, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    seed: int = 0
    log_every: int = Field(default=1, ge=1)
    checkpoint_every: int = Field(default=50, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    max_failures: int = Field(default=0, ge=-1)  # -1: retry forever (Ray's convention)
    max_nan_skips: int = Field(default=10, ge=0)
    save_hf_model: bool = True


# ----------------------------------------------------------------------------- deepspeed
class DeepSpeedConfig(_Section):
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: Literal["none", "cpu"] = "none"
    offload_param: Literal["none", "cpu"] = "none"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    config_file: str | None = None  # a user's DeepSpeed JSON; its keys win
    overlap_comm: bool = False
    contiguous_gradients: bool = True

    @model_validator(mode="after")
    def _offload_param_needs_zero3(self) -> "DeepSpeedConfig":
        if self.offload_param != "none" and self.zero_stage != 3:
            raise ValueError(
                f"deepspeed.offload_param={self.offload_param} needs deepspeed.zero_stage=3 "
                f"(got {self.zero_stage})"
            )
        return self


# ---------------------------------------------------------------------------------- tune
class TuneConfig(_Section):
    alphas: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.5, 1.0])
    methods: list[Literal["sft", "dpo", "ipo", "pro", "aot", "simpo", "orpo"]] = Field(
        default_factory=lambda: ["dpo"]
    )
    seeds: list[int] = Field(default_factory=lambda: [0])
    metric: str = "eval/reward_accuracy"
    mode: Literal["min", "max"] = "max"
    max_concurrent_trials: int = Field(default=1, ge=1)
    output_dir: str = "runs/tune"

    @model_validator(mode="after")
    def _non_negative_alphas(self) -> "TuneConfig":
        bad = [a for a in self.alphas if a < 0]
        if bad:
            raise ValueError(f"tune.alphas must all be >= 0 (got {bad})")
        return self


# ---------------------------------------------------------------------------------- eval
class EvalConfig(_Section):
    engine: Literal["vllm", "hf"] = "vllm"
    num_engines: int = Field(default=1, ge=1)
    gpu_memory_utilization: float = Field(default=0.1, gt=0, le=1)
    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    attacks: list[Literal["zero_shot", "template", "sfs", "pez", "gbda", "uat", "gcg"]] = Field(
        default_factory=lambda: ["zero_shot", "template", "sfs"]
    )
    judge: str = "rule"  # "rule" or a path / hub name of a classifier LLM
    num_behaviors: int | None = Field(default=None, ge=1)
    output_dir: str = "runs/eval"


# ------------------------------------------------------------------------------- cluster
class ClusterConfig(_Section):
    address: str | None = None  # None: RAY_ADDRESS if set, else a local instance
    num_cpus: int | None = Field(default=None, ge=1)  # local instance only
    object_store_memory_mb: int | None = Field(default=None, ge=64)
    include_dashboard: bool = False
    dashboard_host: str = "127.0.0.1"  # local mode binds to loopback
    storage_path: str | None = None  # Ray Train/Tune storage (shared FS or s3:// on clusters)

    @property
    def resolved_address(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None


# ------------------------------------------------------------------------------ the root
class PlotRayConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ------------------------------------------------------------------------------- loading
def parse_override(text: str) -> tuple[str, Any]:
    """``"loss.alpha=0.5"`` → ``("loss.alpha", 0.5)``; the value is read as a YAML scalar/list."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. loss.alpha=0.5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from None
    return key, value


def _allowed_keys(model_cls: type[BaseModel]) -> list[str]:
    return sorted(model_cls.model_fields)


def _section_class(path: list[str]) -> type[BaseModel] | None:
    """The pydantic class that a dotted path lands in, if it is a section."""
    cls: Any = PlotRayConfig
    for part in path:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return cls


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply dotted overrides to a raw (not yet validated) config dict; returns a new dict.

    List items are addressed by index (``data.sources.0.path=...``). Unknown section keys are
    rejected here with the allowed keys listed, so typos never silently create new keys.
    """
    out = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    for key, value in items:
        parts = key.split(".")
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            prefix = parts[: depth + 1]
            if isinstance(node, list):
                node = _list_item(node, part, key)
                continue
            section = _section_class(prefix[:-1]) if depth else PlotRayConfig
            if section is not None and part not in section.model_fields:
                raise ConfigError(
                    f"{'.'.join(prefix)}: unknown key; allowed: {', '.join(_allowed_keys(section))}"
                )
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            node = nxt
        last = parts[-1]
        if isinstance(node, list):
            idx = int(_list_index(node, last, key))
            node[idx] = value
            continue
        section = _section_class(parts[:-1])
        if section is not None and last not in section.model_fields:
            raise ConfigError(f"{key}: unknown key; allowed: {', '.join(_allowed_keys(section))}")
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {'.'.join(parts[:-1])} is not a section")
        node[last] = value
    return out


def _list_index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{key}: {part!r} is not an index of a list with {len(node)} items")
    return int(part)


def _list_item(node: list, part: str, key: str) -> Any:
    return node[_list_index(node, part, key)]


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            section = _section_class([str(p) for p in err["loc"][:-1]])
            allowed = f"; allowed: {', '.join(_allowed_keys(section))}" if section else ""
            msg = f"unknown key{allowed}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        got = err.get("input")
        if err["type"] not in ("extra_forbidden", "missing") and not isinstance(got, dict):
            msg = f"{msg} (got {got!r})"
        lines.append(f"  {loc}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def validate_config(raw: dict[str, Any]) -> PlotRayConfig:
    """Validate a raw dict; raises :class:`ConfigError` naming each bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    try:
        return PlotRayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> PlotRayConfig:
    """Load a YAML config (or start from defaults), apply ``key=value`` overrides, validate."""
    raw: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: a config must be a mapping of sections")
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate_config(raw)
