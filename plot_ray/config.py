"""The one typed configuration of plot-ray.

A run is described by a YAML file (see ``jobs/configs/``) plus dotted ``key=value`` overrides,
e.g. ``loss.alpha=0.5 train.num_workers=2``. Everything is validated up front: unknown keys,
wrong types and impossible values raise :class:`ConfigError` naming the dotted key and what is
allowed, before any Ray worker starts.

Sections: ``data``, ``model``, ``loss`` (the vanilla method, its PLOT term and DEFT's), ``train``,
``deepspeed``, ``tune``, ``eval``, ``pairs`` (``plot-ray make-pairs``) and ``cluster``. The
meaning of every ``loss`` and ``loss.plot`` key, with the formulas, is in docs/plot.md.

The list of methods lives in one place, the registry :data:`plot_ray.losses.methods.METHODS`:
``loss.method`` is validated against it, and whether a method needs a
reference model is read from it. ``import plot_ray.config`` stays free of torch; the registry
(and torch) is imported the first time a loss config is validated.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "ConfigError",
    "DataSource",
    "DataConfig",
    "ModelConfig",
    "PlotConfig",
    "DeftConfig",
    "LossConfig",
    "TrainConfig",
    "DeepSpeedConfig",
    "TuneConfig",
    "EvalConfig",
    "EvalModel",
    "GenerationConfig",
    "PairsConfig",
    "ProblemSource",
    "ClusterConfig",
    "PlotRayConfig",
    "load_config",
    "load_raw_config",
    "validate_config",
    "apply_overrides",
    "parse_override",
]


class ConfigError(ValueError):
    """An invalid configuration; the message names every offending dotted key."""


class _Section(BaseModel):
    # Unknown keys are errors: a typo such as `loss.alhpa` must never be ignored silently.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------------- data
DataFormat = Literal["auto", "trl", "hh_rlhf", "ranked", "sft", "pku_saferlhf"]
DataReader = Literal["auto", "jsonl", "json", "parquet", "csv", "hf_disk", "hf_hub"]
# Over-long rows: cut the response (then the prompt) to data.max_length, or quarantine them.
LengthPolicy = Literal["truncate", "drop"]
# Ranked lists in the token counts: best vs worst response, or best vs all the others.
RankedPairing = Literal["best_worst", "best_rest"]
FilterValue = str | bool | int | float | None


def _row_filter(value: dict) -> dict:
    """A ``where`` filter with no empty column name and no empty list (which keeps no row)."""
    for column, wanted in value.items():
        if not column.strip():
            raise ValueError(f"empty column name in the filter {value!r}")
        if isinstance(wanted, list) and not wanted:
            raise ValueError(f"{column}: an empty list keeps no row; give the values to keep")
    return value


# A `where` row filter: {column: value or list of values} (JSON scalars; see DataSource).
RowFilter = Annotated[dict[str, FilterValue | list[FilterValue]], AfterValidator(_row_filter)]


class DataSource(_Section):
    """One preference corpus: a file, a folder, a ``save_to_disk`` folder or a hub name."""

    path: str
    format: DataFormat = "auto"
    reader: DataReader = "auto"
    # "default": each row's own `subpreference` field where it has one, else "default".
    subpreference: str = "default"
    # A split, or for hub / save_to_disk sources a slice of one (`train[:5%]`, `test[100:200]`)
    split: str = "train"
    limit: int | None = Field(default=None, ge=1)
    # Hub sources only (passed to `datasets.load_dataset`): the subset (config) name, the folder
    # inside the dataset repo (HH-RLHF's `harmless-base`) and a git revision to pin.
    subset: str | None = None
    data_dir: str | None = None
    revision: str | None = None
    # {schema field: source column}: renames the source's columns before format detection,
    # e.g. {prompt: question, chosen: response_a, rejected: response_b}.
    columns: dict[str, str] = Field(default_factory=dict)
    # A row filter on the columns (after `columns`): {column: value} keeps the rows whose
    # column equals the value, a list value means one of them, several columns must all match;
    # e.g. {source: [evol_instruct, sharegpt]}. `prepare` counts the rows it filters out.
    where: RowFilter = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _columns_named(cls, value: dict[str, str]) -> dict[str, str]:
        return _column_mapping(value)


def _column_mapping(value: dict[str, str]) -> dict[str, str]:
    """A ``columns`` mapping ({field: source column}) with no empty name."""
    for field_name, column in value.items():
        if not field_name.strip() or not column.strip():
            raise ValueError(f"empty name in the mapping {field_name!r}: {column!r}")
    return value


class DataConfig(_Section):
    sources: list[DataSource] = Field(default_factory=list)
    eval_sources: list[DataSource] = Field(default_factory=list)
    output_dir: str = "artifacts/data"
    max_length: int = Field(default=512, ge=8)
    max_prompt_length: int = Field(default=256, ge=1)
    length_policy: LengthPolicy = "truncate"
    strict: bool = False  # any quarantined row is an error
    ranked_pairing: RankedPairing = "best_worst"
    tokenize_actors: int = Field(default=2, ge=1)
    tokenize_cpus_per_actor: float = Field(default=0.5, gt=0)
    batch_size: int = Field(default=512, ge=1)

    @model_validator(mode="after")
    def _prompt_fits(self) -> DataConfig:
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
def _method_registry() -> dict:
    """The method registry (imported lazily: it needs torch, ``import plot_ray.config`` not)."""
    from plot_ray.losses.methods import METHODS as registry

    return registry


def _check_method(name: str) -> str:
    # pydantic's error report prefixes the dotted key (loss.method, tune.methods.1)
    registry = _method_registry()
    if name not in registry:
        allowed = ", ".join(repr(m) for m in registry)
        raise ValueError(f"unknown method {name!r}; allowed: {allowed}")
    return name


class PlotConfig(_Section):
    """The PLOT term ``L_PLOT``; every key is defined in docs/plot.md (section in brackets)."""

    target: Literal["global", "anchored"] = "anchored"  # [Targets]
    transform: Literal["shift", "relu", "softmax"] = "shift"  # [Preference distribution]
    tau: float = Field(default=1.0, gt=0)  # softmax transform / anchored tilt temperature
    # [Targets] "zero": a control, the anchored target with no tilt (the reference model's own
    # distribution, no preference information) at the preference tilt's normalisation
    tilt: Literal["preference", "zero"] = "preference"
    support: Literal["observed", "vocab"] = "observed"  # [Preference distribution]
    smoothing: float = Field(default=0.0, ge=0, le=1)  # mix with uniform(S)
    cost: Literal["embedding", "uniform", "index"] = "embedding"  # [Ground cost]
    # [Projections]: 1-D principal direction, K random directions averaged, or the exact LP
    # on the full cost matrix (at most plot_ray.losses.ot.EXACT_MAX_VOCAB = 2048 tokens)
    projection: Literal["pca", "sliced", "exact"] = "pca"
    num_projections: int = Field(default=16, ge=1)  # sliced only
    p_norm: float = Field(default=2.0, gt=0)  # l of ||E_i - E_j||_l (projection=exact only)
    # [Normalisation]: "reference" divides each row's distance by the distance, computed once
    # at start, of the corpus's response-token distribution to its target (so L_PLOT ~ 1 and
    # alpha ~ 1 gives PLOT a gradient comparable to the vanilla loss's); "unit_variance"
    # divides the embedding cost by the embeddings' spread; "none": raw embedding units
    normalize: Literal["reference", "unit_variance", "none"] = "reference"
    divergence: Literal["wasserstein", "kl", "js"] = "wasserstein"  # [Divergences]
    aggregate: Literal["sequence", "token"] = "sequence"  # [Aggregation]
    responses: Literal["chosen", "rejected", "all"] = "chosen"  # [Which responses]
    # positions per softmax chunk [Efficiency]; null: 1024 on an accelerator, 32 on CPU
    chunk_size: int | None = Field(default=None, ge=1)
    seed: int = 0  # sliced directions


class DeftConfig(_Section):
    """DEFT (distribution-guided efficient fine-tuning, Zhu et al., arXiv 2604.01787): a
    distribution reward that scores the model's output distribution against ``Q_diff``, used
    as a term in the loss and to keep the top fraction of the training rows; docs/plot.md,
    "DEFT", defines every key.

    ==================  ========================================================================
    ``weight``          weight of ``L_DEFT = -(mean distribution reward)``; 0 = not computed
    ``responses``       which responses ``L_DEFT`` reads: ``chosen`` (PRO: the best),
                        ``rejected`` (the worst) or ``all``
    ``keep_fraction``   the fraction of training rows kept, the highest filter scores first
                        (scored by the reference model once, before training); 1 = no filter
    ``filter_score``    a row's score for the filter: ``margin`` (best response's reward minus
                        the worst's; SFT rows: the response's reward) or ``chosen`` (the best's)
    ``filter_scope``    ``subpreference``: the top fraction of each sub-preference's rows (their
                        token scores have scales of their own); ``global``: of all rows
    ==================  ========================================================================
    """

    weight: float = Field(default=0.0, ge=0)
    responses: Literal["chosen", "rejected", "all"] = "chosen"
    keep_fraction: float = Field(default=1.0, gt=0, le=1)
    filter_score: Literal["margin", "chosen"] = "margin"
    filter_scope: Literal["subpreference", "global"] = "subpreference"

    @property
    def filters(self) -> bool:
        """Whether training keeps only a top fraction of the rows."""
        return self.keep_fraction < 1


class LossConfig(_Section):
    """``L = L_vanilla(method) + alpha * L_PLOT + deft.weight * L_DEFT``; docs/plot.md,
    "Vanilla methods" and "DEFT".

    Which keys each method reads (``lambda`` etc. below are the formulas' symbols):

    ======== ================================================================================
    sft      (none)
    dpo      ``beta``, ``label_smoothing``, ``sft_weight``
    ipo      ``beta`` (target margin ``1 / (2 beta)``), ``ipo_normalize``, ``sft_weight``
    pro      ``pro_sft_weight``, ``pro_sft_reduction`` (and reward scores from the data)
    aot      ``beta``, ``label_smoothing``, ``aot_variant``, ``sft_weight``
    simpo    ``simpo_beta``, ``simpo_gamma``, ``label_smoothing``, ``sft_weight``
    orpo     ``orpo_lambda``
    ======== ================================================================================

    SimPO has its own ``simpo_beta`` because its scale is per token (length-normalised): it
    wants beta ~ 2, twenty times DPO's 0.1, so a sweep over methods must not share one beta.
    """

    method: str = "dpo"  # a name in plot_ray.losses.methods.METHODS
    alpha: float = Field(default=0.0, ge=0)  # weight of L_PLOT; 0 = the vanilla loss exactly
    beta: float = Field(default=0.1, gt=0)  # DPO / IPO / AOT
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)  # DPO / AOT / SimPO
    # IPO: divide each response's log-ratio by its length (TRL's and CPO's IPO); false: summed
    ipo_normalize: bool = True
    # + sft_weight x token-mean NLL of the chosen responses (DPO, IPO, AOT, SimPO; 0 = off)
    sft_weight: float = Field(default=0.0, ge=0)
    # PRO: + pro_sft_weight * (n - 1)^2 x NLL of the best response (Song et al.: 0.05)
    pro_sft_weight: float = Field(default=0.05, ge=0)
    # "sum": sequence-summed NLL (the paper's scale); "mean": token-mean NLL (hundreds of
    # times weaker at the same weight)
    pro_sft_reduction: Literal["sum", "mean"] = "sum"
    aot_variant: Literal["paired", "unpaired"] = "paired"
    simpo_beta: float = Field(default=2.0, gt=0)  # SimPO's reward scale (per-token log-probs)
    simpo_gamma: float = Field(default=1.0, ge=0)  # SimPO's target margin (gamma/beta = 0.5)
    orpo_lambda: float = Field(default=0.1, ge=0)
    reference: Literal["model", "precomputed"] = "model"
    plot: PlotConfig = Field(default_factory=PlotConfig)
    deft: DeftConfig = Field(default_factory=DeftConfig)

    @field_validator("method")
    @classmethod
    def _registered_method(cls, value: str) -> str:
        return _check_method(value)

    @property
    def needs_reference_logps(self) -> bool:
        return _method_registry()[self.method].needs_reference

    @property
    def needs_reference_logits(self) -> bool:
        """The anchored PLOT target tilts the reference model's own output distribution."""
        return self.alpha > 0 and self.plot.target == "anchored"

    @property
    def needs_token_counts(self) -> bool:
        """PLOT's targets and DEFT's loss term are built from the data artifact's token counts
        (DEFT's filter reads them in its own scoring pass, before training)."""
        return self.alpha > 0 or self.deft.weight > 0

    @model_validator(mode="after")
    def _deft_rejected_needs_a_pair(self) -> LossConfig:
        single = _method_registry()[self.method].num_responses == 1
        if self.deft.weight > 0 and self.deft.responses == "rejected" and single:
            raise ValueError(
                f"loss.deft.responses=rejected, but loss.method={self.method} has no rejected "
                "responses: use loss.deft.responses=chosen"
            )
        return self

    @model_validator(mode="after")
    def _ipo_has_no_label_smoothing(self) -> LossConfig:
        if self.method == "ipo" and self.label_smoothing > 0:
            raise ValueError(
                f"loss.label_smoothing={self.label_smoothing} does not apply to loss.method=ipo "
                "(a squared loss, not a logistic one): set it to 0"
            )
        return self

    @model_validator(mode="after")
    def _transform_shapes_the_global_target_only(self) -> LossConfig:
        if self.plot.target == "anchored" and self.plot.transform != "shift":
            raise ValueError(
                f"loss.plot.transform={self.plot.transform} shapes only the global target; the "
                "anchored target tilts the reference model's distribution by "
                "exp(Q_diff / max|Q_diff| / tau) and uses no transform (a run with it would "
                "equal one without): set loss.plot.target=global, or vary loss.plot.tau"
            )
        return self

    @model_validator(mode="after")
    def _zero_tilt_is_anchored(self) -> LossConfig:
        if self.plot.tilt == "zero" and self.plot.target != "anchored":
            raise ValueError(
                "loss.plot.tilt=zero is a control of the anchored target (the reference model's "
                "own distribution as the target); set loss.plot.target=anchored"
            )
        return self

    @model_validator(mode="after")
    def _anchored_needs_logits(self) -> LossConfig:
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
    # How Ray places the workers' bundles: PACK fills a node first (fastest collectives);
    # STRICT_SPREAD puts every worker on its own node (one per GPU machine, or to test that a
    # run really spans nodes).
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
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
    # Rows in each worker's local shuffle buffer, drawn from with a seed of train.seed and the
    # epoch, so runs that differ only in seed see different batches; None: the prepared order,
    # the same for every seed (DPO-like methods are then deterministic and seeds identical).
    # Resume skips the batches already consumed, which assumes blocks reach a worker in the
    # same order again (true for one worker per node of shards; Ray Data does not promise it).
    shuffle_buffer: int | None = Field(default=None, ge=2)
    log_every: int = Field(default=1, ge=1)
    # Also call ray.train.report (metrics only) every N steps, for Ray Tune's schedulers; None:
    # only with checkpoints. Logging (metrics.jsonl, TensorBoard) never waits on Ray Train.
    report_every: int | None = Field(default=None, ge=1)
    checkpoint_every: int = Field(default=50, ge=1)
    # A pass over the prepared validation split (data.eval_sources) every N steps, reported as
    # eval/* metrics; None: only after the last step. Always after the last step when the
    # prepared data has an eval split (plot_ray.train.validation defines the numbers).
    eval_every: int | None = Field(default=None, ge=1)
    # Rows per eval forward on each worker; None: train.micro_batch_size.
    eval_batch_size: int | None = Field(default=None, ge=1)
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
    def _offload_param_needs_zero3(self) -> DeepSpeedConfig:
        if self.offload_param != "none" and self.zero_stage != 3:
            raise ValueError(
                f"deepspeed.offload_param={self.offload_param} needs deepspeed.zero_stage=3 "
                f"(got {self.zero_stage})"
            )
        return self


# ---------------------------------------------------------------------------------- tune
SEARCH_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
# Sections every trial of a sweep shares (prepare once, then sweep): no trial may change them
_SHARED_BY_TRIALS = ("tune.", "data.", "cluster.")


class TuneConfig(_Section):
    """A Ray Tune sweep over any config keys (``plot-ray tune``; see plot_ray/tune).

    ``space`` maps dotted config keys to one distribution each, e.g.
    ``{"loss.alpha": {"grid": [0.0, 0.3, 1.0]}, "train.learning_rate": {"loguniform": [1e-5,
    1e-3]}}``: ``grid`` (every value, crossed with the other grids), ``choice`` (one value per
    sample), ``uniform`` / ``loguniform`` ([low, high]), ``randint`` ([low, high), integers).
    ``seeds`` is one more grid dimension (``train.seed``) that the summary averages over.
    ``variants`` is one more: named sets of overrides, each trial taking one, for changes that
    are not one key's values, e.g. an ablation study
    ``{"cost=uniform": {"loss.plot.cost": "uniform"}, "target=global": {"loss.plot.target":
    "global"}}``; a trial's ``variant`` parameter names its set.
    """

    space: dict[str, dict[str, list]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    num_samples: int = Field(default=1, ge=1)  # repeats of the whole grid (random dimensions)
    metric: str = "eval/reward_accuracy"
    mode: Literal["min", "max"] = "max"
    scheduler: Literal["none", "asha"] = "none"  # asha needs train.report_every
    search: Literal["basic", "optuna"] = "basic"  # basic: grid + random sampling
    max_concurrent_trials: int | None = Field(default=None, ge=1)  # None: what fits the cluster
    max_failures: int = Field(default=0, ge=0)  # retries of a failing trial
    # Score each trial's final model with `plot-ray eval` (the eval section) at its end; the
    # metrics come as evaluation/<name>, e.g. tune.metric: evaluation/asr/direct_request, mode min
    evaluate: bool = False
    name: str = "sweep"
    output_dir: str = "runs/tune"

    @field_validator("space")
    @classmethod
    def _known_kinds(cls, space: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
        for key, dist in space.items():
            if len(dist) != 1 or next(iter(dist)) not in SEARCH_KINDS:
                raise ValueError(
                    f"tune.space.{key}: give exactly one of {', '.join(SEARCH_KINDS)}, got {dist}"
                )
            kind, values = next(iter(dist.items()))
            if not isinstance(values, list) or not values:
                raise ValueError(f"tune.space.{key}.{kind}: a non-empty list, got {values!r}")
            if kind in ("uniform", "loguniform", "randint") and len(values) != 2:
                raise ValueError(f"tune.space.{key}.{kind}: [low, high], got {values!r}")
            if key.startswith(_SHARED_BY_TRIALS):
                raise ValueError(
                    f"tune.space.{key}: a sweep varies training keys; data and cluster keys are "
                    "shared by every trial (prepare once, then sweep)"
                )
        return space

    @model_validator(mode="after")
    def _variants_are_disjoint_from_the_space(self) -> TuneConfig:
        for label, change in self.variants.items():
            if not label or not isinstance(change, dict) or not change:
                raise ValueError(
                    f"tune.variants.{label}: a non-empty map of config keys, got {change!r}"
                )
            for key in change:
                if key.startswith(_SHARED_BY_TRIALS) or key == "train.seed":
                    raise ValueError(
                        f"tune.variants.{label}.{key}: a variant changes training keys (seeds "
                        "come from tune.seeds; data and cluster keys are shared by every trial)"
                    )
                if key in self.space:
                    raise ValueError(
                        f"tune.variants.{label}.{key}: also in tune.space; one trial would get "
                        "two values for it"
                    )
        return self


# ---------------------------------------------------------------------------------- eval
EVAL_TASKS = ("harmful", "benign", "logic", "perplexity")


def _attack_registry() -> dict:
    """The attack registry (imported lazily, like the method registry: it needs torch)."""
    from plot_ray.eval.attacks import ATTACKS as registry

    return registry


def _default_attacks() -> list[str]:
    from plot_ray.eval.attacks import DEFAULT_ATTACKS

    return list(DEFAULT_ATTACKS)


def _line_error(kind: str, message: str, loc: tuple, value: Any, **ctx: Any):
    """One error of a pydantic report, at ``loc`` below the field that raises it."""
    from pydantic_core import InitErrorDetails, PydanticCustomError

    return InitErrorDetails(type=PydanticCustomError(kind, message, ctx), loc=loc, input=value)


def _raise_line_errors(title: str, errors: list) -> None:
    if errors:
        raise ValidationError.from_exception_data(title, errors)


class EvalModel(_Section):
    """One model to evaluate: a hub name, a local folder, or a ``plot-ray train`` run folder
    (its ``final_model/`` is used)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a folder name in the results
    path: str


class GenerationConfig(_Section):
    """``eval.generation``: the engine pool and the decoding of every completion (and of the
    classifier judge and the attacker, which change only what they must). HarmBench decodes
    greedily with ``max_new_tokens`` 512 (scaled down here for tiny models)."""

    engine: Literal["auto", "vllm", "hf"] = "auto"  # auto: vLLM on GPUs, size-based on CPUs
    num_engines: int = Field(default=1, ge=1)  # engine replicas (one GPU each with eval.use_gpu)
    batch_size: int = Field(default=32, ge=1)
    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0)  # 0: greedy
    top_p: float = Field(default=1.0, gt=0, le=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 GPU, fp32 CPU
    max_model_len: int = Field(default=1024, ge=16)
    enforce_eager: bool = True  # vLLM: no CUDA graphs / torch.compile
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)  # vLLM on GPUs
    cpu_kv_cache_gib: int = Field(default=1, ge=1)  # vLLM on CPUs (VLLM_CPU_KVCACHE_SPACE)


# The published shapes an evaluation set may come in (plot_ray/eval/evalsets.py), and which
# evaluation key takes which: "plot_ray" is the project's own JSONL (the synthetic benchmark's).
EvalSetFormat = Literal[
    "auto", "plot_ray", "harmbench", "harmbench_jailbreaks", "gsm8k", "math", "alpaca_eval",
    "mt_bench", "hh_rlhf", "humaneval", "mbpp", "mmlu", "arc", "hellaswag",
]  # fmt: skip
EVAL_SET_FORMATS: dict[str, tuple[str, ...]] = {
    "behaviors": ("auto", "plot_ray", "harmbench"),
    "templates": ("auto", "plot_ray", "harmbench_jailbreaks"),
    "benign": ("auto", "plot_ray", "alpaca_eval", "mt_bench", "hh_rlhf"),
    "logic": ("auto", "plot_ray", "gsm8k", "math"),
    "perplexity": ("auto", "plot_ray", "hh_rlhf"),
    "coding": ("auto", "humaneval", "mbpp"),
    "choice": ("auto", "mmlu", "arc", "hellaswag"),
    "humanity": ("auto", "plot_ray"),
}


class EvalSet(_Section):
    """One evaluation set in its published shape: a file (JSONL, JSON array, CSV, Parquet, or
    HarmBench's ``jailbreaks.py``), a ``save_to_disk`` folder or a hub dataset. A plain string in
    the config is this with only ``path``. The keys mean what they mean in :class:`DataSource`;
    ``format`` names the published shape (``auto``: told from the columns)."""

    path: str
    format: EvalSetFormat = "auto"
    reader: Literal[
        "auto", "jsonl", "json", "parquet", "csv", "python", "hf_disk", "hf_hub"
    ] = "auto"  # fmt: skip
    split: str = "test"  # hub / save_to_disk: a split or a slice of one (`test[:100]`)
    subset: str | None = None
    data_dir: str | None = None
    revision: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)  # {field: source column}
    where: RowFilter = Field(default_factory=dict)  # {column: value(s) to keep}, after columns

    @field_validator("columns")
    @classmethod
    def _columns_named(cls, value: dict[str, str]) -> dict[str, str]:
        return _column_mapping(value)


# Keys that moved: a config that still has them is refused with the new key's name.
_MOVED_EVAL_KEYS = {
    **{key: f"eval.generation.{key}" for key in GenerationConfig.model_fields},
    "templates_per_behavior": "eval.attack_params.human_jailbreaks.templates_per_behavior",
}


class EvalConfig(_Section):
    """``plot-ray eval``: several models, one run, one report (see plot_ray/eval).

    Data: ``data_dir`` is a synthetic benchmark folder (``plot-ray synth``); its ``eval/`` files
    are the defaults of ``behaviors``, ``templates`` (jailbreak templates), ``benign`` (prompts
    with reference answers) and ``logic`` (questions with answers). Each of these, and
    ``perplexity`` (default: the benign prompts' reference answers) and ``coding`` (no
    default), is an :class:`EvalSet`: a path or a set by name in its published shape (HarmBench,
    GSM8K, MATH, AlpacaEval, MT-Bench, HH-RLHF, HumanEval, MBPP; plot_ray/eval/evalsets.py).

    Attacks: ``attacks`` names registered attacks (plot_ray/eval/attacks) and
    ``attack_params.<attack>`` sets the fields of each one's settings class; both are checked
    against the registry here. Judges: ``judge`` names a registered harmful judge or is a
    classifier model's path; ``refusal_judge`` a registered refusal judge (None: the judge's
    own). Judged helpfulness (MT-Bench style, on the benign task's answers):
    ``helpfulness_judge`` names a registered helpfulness judge (``synthetic_helpfulness``) or
    is a judge model's path; ``helpfulness_mode`` ``single`` rates each answer 1-10 (the mean
    over questions and turns is the MT-Bench score), ``pairwise`` judges each answer against
    ``baseline``'s in both orders (a win only when both orders agree), ``both`` does the two.
    The humanity task is judged the same way: ``humanity_judge`` names a registered humanity
    judge (``synthetic_humanity``, the default, rates in the scoring stage) or is a judge
    model's path (the humanity rubric), and ``humanity_mode`` says single, pairwise or both.
    Generation: ``generation`` (:class:`GenerationConfig`). Placement: ``use_gpu`` puts
    every engine and model-holding actor on a GPU of its own.
    """

    models: list[EvalModel] = Field(default_factory=list)
    baseline: str | None = None  # the model that win rates compare against; default: the first
    # default: the synthetic benchmark's tasks (EVAL_TASKS); coding and choice need their sets
    tasks: list[
        Literal["harmful", "benign", "logic", "perplexity", "coding", "choice", "humanity"]
    ] = Field(default_factory=lambda: list(EVAL_TASKS))
    # Default: the attacks that need neither an attacker model nor an optimisation
    attacks: list[str] = Field(default_factory=_default_attacks)
    # The attacker LM of the attacks that need one (zero_shot, sfs): a hub name or folder
    # (`plot-ray build-attacker` makes one for the synthetic benchmark)
    attacker: str | None = None
    data_dir: str | None = None
    # Each a path (the project's JSONL or a published shape told from its columns) or an
    # EvalSet ({path, format, reader, split, subset, revision, columns}) for a published set
    # by name, e.g. {path: openai/gsm8k, subset: main, format: gsm8k}
    behaviors: EvalSet | None = None
    templates: EvalSet | None = None
    benign: EvalSet | None = None
    logic: EvalSet | None = None
    perplexity: EvalSet | None = None
    coding: EvalSet | None = None  # HumanEval- or MBPP-shaped problems with their tests
    choice: EvalSet | None = None  # MMLU-, ARC- or HellaSwag-shaped multiple choice
    # prompts of users in a hard situation ({id, prompt, reference}), rated by humanity_judge
    humanity: EvalSet | None = None
    num_behaviors: int | None = Field(default=None, ge=1)  # None: all
    num_benign: int | None = Field(default=None, ge=1)
    num_logic: int | None = Field(default=None, ge=1)
    num_coding: int | None = Field(default=None, ge=1)
    num_choice: int | None = Field(default=None, ge=1)
    num_humanity: int | None = Field(default=None, ge=1)
    # Multiple choice: also score every option's log-likelihood (a pool of NLL scorers per
    # model); false: only the letter each model generates is graded (a smoke test's speed)
    choice_loglik: bool = True
    # Completions per coding problem: 1 gives pass@1; n > 1 (sampled: generation.temperature
    # > 0) gives pass@1 and pass@n by the unbiased estimator
    coding_samples: int = Field(default=1, ge=1)
    # How completions run (plot_ray/eval/sandbox/README.md): "namespaces" contains them (Linux
    # user namespaces); "process" only limits time, memory and output: trusted code only
    coding_isolation: Literal["namespaces", "process"] = "namespaces"
    coding_timeout_s: float = Field(default=10.0, gt=0)  # wall clock and CPU time per program
    # Per-attack settings, e.g. {gcg: {num_steps: 50, search_width: 64}, human_jailbreaks:
    # {templates_per_behavior: 5}}: the fields of each attack's settings class
    attack_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # How logic answers of the project's own format are graded: "#### N" or the last
    # \\boxed{}; a set in a published shape (gsm8k, math) is graded its own way
    logic_style: Literal["gsm8k", "math"] = "gsm8k"
    seed: int = 0
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    # Engines, scorers and attack actors on GPUs (one each, eval.generation.num_engines of
    # them; a cluster that lacks them is asked to scale up, see cluster.resource_timeout_s);
    # false: on CPUs
    use_gpu: bool = False
    trust_remote_code: bool = False
    # judging and scoring
    judge: str = "synthetic"  # a registered judge (plot_ray/eval/judges) or a classifier path
    refusal_judge: str | None = None  # a registered refusal judge; None: the judge's own
    reward_model: str | None = None  # an AutoModelForSequenceClassification path (benign task)
    # Judged helpfulness of the benign answers, MT-Bench style: a registered helpfulness judge
    # (synthetic_helpfulness) or a judge model's path (hub name or folder); None: not judged
    helpfulness_judge: str | None = None
    # single: a 1-10 rating per answer (per turn); pairwise: each answer against eval.baseline's
    # to the same question, judged in both orders; both: the two
    helpfulness_mode: Literal["single", "pairwise", "both"] = "single"
    helpfulness_max_new_tokens: int = Field(default=512, ge=1)  # a judge model's reply
    # The humanity task's judge: a registered humanity judge (a 1-10 rating per answer) or a
    # judge model's path (the humanity rubric: considerate, respectful, still useful)
    humanity_judge: str = "synthetic_humanity"
    # as helpfulness_mode, for the humanity task's answers
    humanity_mode: Literal["single", "pairwise", "both"] = "single"
    humanity_max_new_tokens: int = Field(default=512, ge=1)  # a judge model's reply
    # results
    shard_size: int = Field(default=64, ge=1)  # rows per result shard (the unit of resume)
    name: str = "eval"
    output_dir: str = "runs/eval"

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            _raise_line_errors(
                "EvalConfig",
                [
                    _line_error("moved_key", "moved: write {new} instead", (k,), data[k], new=new)
                    for k, new in _MOVED_EVAL_KEYS.items()
                    if k in data
                ],
            )
        return data

    @field_validator(*EVAL_SET_FORMATS, mode="before")
    @classmethod
    def _path_is_a_set(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str | Path) else value

    @model_validator(mode="after")
    def _set_formats(self) -> EvalConfig:
        for key, allowed in EVAL_SET_FORMATS.items():
            evalset = getattr(self, key)
            if evalset is not None and evalset.format not in allowed:
                raise ValueError(
                    f"eval.{key}.format {evalset.format!r} is not a shape of that set; "
                    f"allowed: {', '.join(allowed)}"
                )
        if self.coding_samples > 1 and self.generation.temperature == 0:
            raise ValueError(
                f"eval.coding_samples {self.coding_samples} needs sampling: set "
                "eval.generation.temperature > 0 (greedy decoding repeats one completion)"
            )
        style = self.logic.format if self.logic else "auto"
        if style in ("gsm8k", "math") and "logic_style" in self.model_fields_set:
            if self.logic_style != style:
                raise ValueError(
                    f"eval.logic_style {self.logic_style!r} contradicts eval.logic.format "
                    f"{style!r}; leave logic_style out (the format grades its own way)"
                )
        return self

    @field_validator("attacks")
    @classmethod
    def _registered_attacks(cls, attacks: list[str]) -> list[str]:
        registry = _attack_registry()
        unknown = [a for a in attacks if a not in registry]
        if unknown:
            raise ValueError(f"unknown attack(s) {unknown}; allowed: {', '.join(registry)}")
        return attacks

    @field_validator("attack_params")
    @classmethod
    def _settings_of_registered_attacks(cls, params: dict[str, dict[str, Any]]) -> dict:
        registry = _attack_registry()
        # A misspelt attack name would otherwise leave its settings silently unused.
        unknown = sorted(set(params) - set(registry))
        if unknown:
            raise ValueError(f"unknown attack(s) {unknown}; allowed: {', '.join(registry)}")
        errors = []
        for name, values in params.items():
            settings = registry[name].config
            try:
                settings.model_validate(values)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = (name, *err["loc"])
                    if err["type"] == "extra_forbidden":
                        allowed = ", ".join(settings.model_fields) or "(none)"
                        msg = f"unknown setting; allowed: {allowed}"
                        errors.append(_line_error("unknown_key", msg, loc, err["input"]))
                    else:
                        errors.append(_line_error("bad_setting", err["msg"], loc, err["input"]))
        _raise_line_errors("attack_params", errors)
        return params

    @field_validator("judge")
    @classmethod
    def _a_judge_or_a_model(cls, judge: str) -> str:
        from plot_ray.eval.judges import resolve_judge

        resolve_judge(judge)  # a misspelt judge fails here, not as a missing hub model
        return judge

    @field_validator("helpfulness_judge")
    @classmethod
    def _a_helpfulness_judge(cls, name: str | None) -> str | None:
        if name is not None:
            from plot_ray.eval.judges import resolve_helpfulness_judge

            resolve_helpfulness_judge(name)
        return name

    @model_validator(mode="after")
    def _helpfulness(self) -> EvalConfig:
        if self.helpfulness_judge is None:
            return self
        if "benign" not in self.tasks:
            raise ValueError("eval.helpfulness_judge judges the benign task: add it to eval.tasks")
        if self.helpfulness_mode != "single" and len(self.models) < 2:
            raise ValueError(
                f"eval.helpfulness_mode {self.helpfulness_mode!r} compares models with "
                "eval.baseline: name at least two eval.models (or use single)"
            )
        return self

    @field_validator("humanity_judge")
    @classmethod
    def _a_humanity_judge(cls, name: str) -> str:
        from plot_ray.eval.judges import resolve_humanity_judge

        resolve_humanity_judge(name)
        return name

    @model_validator(mode="after")
    def _humanity_judging(self) -> EvalConfig:
        if "humanity" not in self.tasks:
            # by value: a config written out whole (to_yaml) names every key, and
            # jobs/configs/tiny_eval.yaml names the default rule judge
            told = [
                k
                for k, default in (
                    ("humanity_judge", "synthetic_humanity"),
                    ("humanity_mode", "single"),
                )
                if getattr(self, k) != default
            ]
            if told:
                raise ValueError(
                    f"eval.{told[0]} judges the humanity task: add humanity to eval.tasks"
                )
            return self
        if self.humanity_mode != "single" and len(self.models) < 2:
            raise ValueError(
                f"eval.humanity_mode {self.humanity_mode!r} compares models with "
                "eval.baseline: name at least two eval.models (or use single)"
            )
        return self

    @field_validator("refusal_judge")
    @classmethod
    def _a_refusal_judge(cls, name: str | None) -> str | None:
        if name is not None:
            from plot_ray.eval.judges import get_judge

            get_judge(name, asks="refusal")
        return name

    @model_validator(mode="after")
    def _models_and_baseline(self) -> EvalConfig:
        names = [m.name for m in self.models]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"eval.models: names must be unique, repeated: {duplicated}")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"eval.baseline {self.baseline!r} is not one of eval.models {names}")
        needs = [spec.name for spec in self.attack_specs() if spec.needs_attacker]
        if needs and not self.attacker:
            raise ValueError(
                f"eval.attacker: the attacks {needs} need an attacker model (a hub name or a "
                "folder; `plot-ray build-attacker` makes one for the synthetic benchmark)"
            )
        return self

    @property
    def baseline_name(self) -> str | None:
        return self.baseline or (self.models[0].name if self.models else None)

    def attack_specs(self, stage: str | None = None) -> list:
        """The registry's specs of ``attacks`` (those that run in ``stage``, when given), in
        the config's order."""
        registry = _attack_registry()
        return [registry[a] for a in self.attacks if stage in (None, registry[a].stage)]

    def attack_settings(self, name: str):
        """Attack ``name``'s settings object from ``attack_params`` (validated on load)."""
        return _attack_registry()[name].make_config(self.attack_params.get(name))


# --------------------------------------------------------------------------------- pairs
class ProblemSource(_Section):
    """``pairs.source``: problems with reference answers, read like a ``data.sources`` entry
    (file, folder, ``save_to_disk`` folder or hub name; see plot_ray/data/readers.py).

    Each row needs a ``question`` and an ``answer`` field (``answer``: the bare answer or a full
    reference solution ending in ``#### N`` or holding a ``\\boxed{}``); ``columns`` maps them
    to the source's own names, e.g. ``{question: prompt, answer: chosen}`` for the synthetic
    benchmark's logic pairs, ``{question: problem, answer: solution}`` for MATH."""

    path: str
    reader: DataReader = "auto"
    split: str = "train"  # hub / save_to_disk: a slice too (`train[:1000]`)
    limit: int | None = Field(default=None, ge=1)  # the first N problems
    subset: str | None = None  # hub only: the config name (GSM8K's `main`)
    data_dir: str | None = None
    revision: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)  # {question|answer: source column}
    # {column: value(s) to keep}, after columns (MATH's {level: "Level 5"}); before `limit`
    where: RowFilter = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _question_and_answer(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(PROBLEM_FIELDS))
        if unknown:
            raise ValueError(f"maps {unknown}; a problem has the fields {list(PROBLEM_FIELDS)}")
        return DataSource._columns_named(value)

    def as_data_source(self) -> DataSource:
        """The same source as the data readers take it."""
        return DataSource(**self.model_dump())


PROBLEM_FIELDS = ("question", "answer")


class SamplingConfig(GenerationConfig):
    """``pairs.generation``: ``eval.generation``'s keys, sampling by default (k samples of a
    problem must differ) with room for worked solutions."""

    temperature: float = Field(default=1.0, ge=0)
    max_new_tokens: int = Field(default=512, ge=1)


class PairsConfig(_Section):
    """``plot-ray make-pairs``: on-policy preference pairs for problems with checkable answers
    (see plot_ray/pairs). ``num_samples`` completions per problem from ``model`` on the engine
    pool (``generation``, ``use_gpu``: as in ``eval``), graded by ``style`` (GSM8K ``#### N`` or
    MATH's last ``\\boxed{}``), then each problem's correct samples paired against its wrong ones.
    """

    model: str | None = None  # hub name, model folder or a `plot-ray train` run folder
    source: ProblemSource | None = None
    # The user message for each problem; {question} is replaced by the problem's question
    prompt_template: str = "{question}"
    style: Literal["gsm8k", "math"] = "gsm8k"
    flexible: bool = False  # gsm8k: grade the last number instead of the `#### N` answer
    # A completion with no answer in `style`: a rejected response (a wrong answer), or never
    # paired. Either way the summary counts it as unparseable.
    unparseable: Literal["wrong", "exclude"] = "wrong"
    num_samples: int = Field(default=4, ge=2)  # k completions per problem
    pairs_per_problem: int = Field(default=1, ge=1)  # at most, from distinct samples
    formats: list[Literal["trl", "ranked"]] = Field(default_factory=lambda: ["trl", "ranked"])
    generation: SamplingConfig = Field(default_factory=SamplingConfig)
    seed: int = 0  # each sample's seed derives from it, the problem and the sample number
    use_gpu: bool = False
    trust_remote_code: bool = False
    shard_size: int = Field(default=64, ge=1)  # problems per shard (the unit of resume)
    name: str = "pairs"
    output_dir: str = "runs/pairs"

    @field_validator("prompt_template")
    @classmethod
    def _has_the_question(cls, value: str) -> str:
        if "{question}" not in value:
            raise ValueError("must contain {question}, where each problem's question goes")
        try:
            value.format(question="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"only {{question}} may be in braces (write {{{{ and }}}} for literal braces): "
                f"{exc!r}"
            ) from None
        return value

    @field_validator("formats")
    @classmethod
    def _some_format(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one of trl, ranked")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _sampling(self) -> PairsConfig:
        t = self.generation.temperature
        if t <= 0:
            msg = "must be > 0: greedy decoding gives one completion num_samples times"
            _raise_line_errors(
                "PairsConfig", [_line_error("greedy", msg, ("generation", "temperature"), t)]
            )
        return self


# ------------------------------------------------------------------------------- cluster
class ClusterConfig(_Section):
    address: str | None = None  # None: RAY_ADDRESS if set, else a local instance
    num_cpus: int | None = Field(default=None, ge=1)  # local instance only
    object_store_memory_mb: int | None = Field(default=None, ge=64)
    include_dashboard: bool = False
    dashboard_host: str = "127.0.0.1"  # local mode binds to loopback
    storage_path: str | None = None  # Ray Train/Tune storage: a shared filesystem on clusters
    # How long training and evaluation wait for the autoscaler to add the nodes they need (GPU
    # workers that scale from zero) before failing; a local instance does not wait.
    resource_timeout_s: float = Field(default=900.0, ge=0)

    @field_validator("storage_path")
    @classmethod
    def _a_filesystem_path(cls, value: str | None) -> str | None:
        if value and "://" in value:
            raise ValueError(
                f"cluster.storage_path={value!r}: plot-ray reads its run folders (checkpoints "
                "for --resume and automatic restore, trial results) as files, so give a "
                "filesystem path that every node mounts (NFS, EFS, Filestore); object-store "
                "URIs are not supported"
            )
        return value

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
    pairs: PairsConfig = Field(default_factory=PairsConfig)
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


def _section_class(path: list[str | int]) -> type[BaseModel] | None:
    """The pydantic section class at a dotted location (list indices step into the item type)."""
    cls: Any = PlotRayConfig
    for part in path:
        if isinstance(part, int) or str(part).isdigit():
            continue  # a list item: its class is the list's item type, resolved below
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None
        field = cls.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        args = [a for a in get_args(ann) if isinstance(a, type)]  # list[DataSource] -> DataSource
        cls = next(
            (a for a in [ann, *args] if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
    return cls


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply dotted overrides to a raw (not yet validated) config dict; returns a new dict.

    Sections are created as needed and list items are addressed by index
    (``data.sources.0.path=...``). Keys are not checked here: validation rejects unknown ones
    (``extra="forbid"``) and names the allowed keys.
    """
    out = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    for key, value in items:
        *parents, last = key.split(".")
        node: Any = out
        for i, part in enumerate(parents):
            if isinstance(node, list):
                node = node[_list_index(node, part, key)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {'.'.join(parents[:i])} is a value, not a section")
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        if isinstance(node, list):
            node[_list_index(node, last, key)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"{key}: {'.'.join(parents)} is a value, not a section")
    return out


def _list_index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{key}: {part!r} is not an index of a list with {len(node)} items")
    return int(part)


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            section = _section_class(list(err["loc"][:-1]))
            allowed = f"; allowed: {', '.join(sorted(section.model_fields))}" if section else ""
            msg = f"unknown key{allowed}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        got = err.get("input")
        quiet = ("extra_forbidden", "missing", "unknown_key", "moved_key")
        if err["type"] not in quiet and not isinstance(got, dict):
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


def load_raw_config(
    path: str | os.PathLike | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> dict[str, Any]:
    """A YAML config (or ``{}``) with ``key=value`` overrides applied, not yet validated (a
    sweep applies each trial's parameters to it)."""
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
    return apply_overrides(raw, overrides) if overrides else raw


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> PlotRayConfig:
    """Load a YAML config (or start from defaults), apply ``key=value`` overrides, validate."""
    return validate_config(load_raw_config(path, overrides))
