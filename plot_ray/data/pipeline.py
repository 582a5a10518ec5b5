"""``plot-ray prepare``: read → validate → normalise → tokenize → count → write.

One Ray Data pass per split::

    read tasks (one per file)          raw records, in file order                  readers
      → actor pool (PreferenceTokenizer, data.tokenize_actors × data.tokenize_cpus_per_actor)
            normalise + validate + chat template + tokenize + length policy       tokenization
      → PreparedDatasink write tasks   tokenized shard + quarantine part per bundle, and the
                                       bundle's sparse token counts, returned to the driver  sink
    driver                             sums the counts, merges quarantine, writes the artifact
                                       (counts) and summary.json, prints the summary (report)

This module is that flow, top to bottom: :func:`run_prepare` first, then its steps in the order
they run. Outputs under ``data.output_dir`` (names in :mod:`plot_ray.data.schema`):
``tokenized/part-*.parquet``, ``quarantine.parquet``, ``summary.json``,
``token_counts.safetensors`` + ``token_counts.json``, Ray Data's log ``logs/prepare.log``; with
``data.eval_sources`` the same (less the counts and the log) under ``eval/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data

from plot_ray.config import DataConfig, PlotRayConfig
from plot_ray.data.counts import ARTIFACT_STEM, TokenCounts, sparse_to_dense
from plot_ray.data.formats import WHERE_EQUALITY, RowRejected, map_columns, passes_where
from plot_ray.data.readers import READ_CPUS, ResolvedSource, read_raw, resolve_sources
from plot_ray.data.report import (
    PrepareResult,
    ShardProgress,
    SourceSummary,
    describe_source,
    ray_data_log,
    write_summary,
)
from plot_ray.data.schema import (
    EVAL_DIR,
    LOG_FILE,
    QUARANTINE_FILE,
    SUMMARY_FILE,
    TOKENIZED_DIR,
    DataValidationError,
)
from plot_ray.data.sink import QUARANTINE_PARTS_DIR, PreparedDatasink, merge_quarantine
from plot_ray.data.tokenization import (
    Normalizer,
    PreferenceTokenizer,
    load_tokenizer_quickly,
    row_subpreference,
    tokenizer_identity,
)

__all__ = [
    "PrepareResult",
    "PreparedDatasink",
    "SourceSummary",
    "list_subpreferences",
    "read_normalized",
    "run_prepare",
]

logger = logging.getLogger(__name__)

SHARD_ROWS = 8192  # rows per tokenized shard (at least; the last one of a run may be smaller)
BLOCK_BYTES = int(os.environ.get("PLOT_RAY_DATA_BLOCK_BYTES", str(1 << 20)))


# ------------------------------------------------------------------------------ the run
def run_prepare(
    cfg: PlotRayConfig,
    progress: bool = True,
    print_fn: Callable[[str], None] | None = print,
    top_k: int = 10,
    verbose: bool = False,
) -> PrepareResult:
    """Prepare ``cfg.data`` for training with ``cfg.model``'s tokenizer (``plot-ray prepare``).

    Connects to Ray per ``cfg.cluster`` (or reuses the connected driver), runs the pipeline
    (see the module docstring) and returns the result. Through ``print_fn`` (None: silent) it
    says what it reads, where Ray Data's log goes, rows per pass, the summary table and the
    largest ``Q_diff`` entries (``top_k`` per direction); with ``progress`` also rows written
    so far every few seconds during a pass. Ray Data's own log records always go to
    ``{data.output_dir}/logs/prepare.log``; ``verbose=True`` also shows them, Ray's start-up
    lines and Ray Data's progress bars (with ``progress``) on the terminal.

    Raises :class:`~plot_ray.data.schema.DataValidationError` when no row is usable, or when
    ``data.strict`` is set and any row was quarantined (the quarantine file and ``summary.json``
    are still written, with ``status`` ``failed_empty`` / ``failed_strict``, and no token-count
    artifact is written). ``data.output_dir`` must be a path that every Ray node can write
    (a shared filesystem on multi-node clusters): the shard writers run on the nodes.
    """
    from plot_ray.cluster import check_shared_storage, init_ray_from_config
    from plot_ray.models.loading import tokenizer_fingerprint

    say = print_fn or (lambda _msg: None)
    started = time.perf_counter()
    data = cfg.data
    if "://" in data.output_dir:
        raise ValueError(
            f"data.output_dir={data.output_dir!r}: prepare writes to a local or shared "
            "filesystem path (on a multi-node cluster, one that every node mounts)"
        )
    sources = resolve_sources(data.sources)
    eval_sources = resolve_sources(data.eval_sources) if data.eval_sources else []
    tokenizer = _load_tokenizer(cfg)
    fingerprint = tokenizer_fingerprint(tokenizer)
    init_ray_from_config(cfg.cluster, quiet=not (progress and verbose))
    check_shared_storage(cfg, "prepare")  # shard writers run on every node
    _check_cpu_budget(cfg)
    out = Path(data.output_dir)
    say(
        f"prepare: {len(sources)} source(s)"
        + (f" + {len(eval_sources)} eval source(s)" if eval_sources else "")
        + f"; tokenizer {cfg.model.tokenizer_path} ({len(tokenizer)} tokens); "
        f"{data.tokenize_actors} tokenizer actor(s) × {data.tokenize_cpus_per_actor:g} CPU → {out}"
    )
    for s in sources:
        say(describe_source(s))
    for s in eval_sources:
        say(describe_source(s) + " (eval)")
    out.mkdir(parents=True, exist_ok=True)
    _clean_outputs(out)

    show_ray_progress = progress and verbose
    with ray_data_log(out / LOG_FILE, verbose) as log, _ray_data_settings(show_ray_progress):
        say(f"Ray Data's log: {log.path}" + ("" if verbose else " (shown here too with --verbose)"))
        subpreferences = list_subpreferences(sources, eval_sources)
        say(f"sub-preferences: {', '.join(subpreferences)}")
        ticker = progress and not verbose
        result, parts = _prepare_split(
            "train", cfg, sources, subpreferences, tokenizer, out, say, ticker
        )
        say(result.stage_line("train"))
        if eval_sources:
            result.eval, _ = _prepare_split(
                "eval", cfg, eval_sources, subpreferences, tokenizer, out / EVAL_DIR, say, ticker
            )
            say(result.eval.stage_line("eval"))
    if log.warnings:
        say(f"Ray Data logged {log.warnings} warning(s) or error(s): see {log.path}")

    pos, neg = sparse_to_dense(parts, len(subpreferences), len(tokenizer))
    result.tokens = {
        sub: {"pos": int(pos[c].sum()), "neg": int(neg[c].sum())}
        for c, sub in enumerate(subpreferences)
    }
    result.seconds = time.perf_counter() - started
    extra = {"vocab_size": len(tokenizer), "tokenizer_fingerprint": fingerprint}
    _fail_on_unusable_data(result, cfg, extra, say)

    counts = TokenCounts(
        pos=pos,
        neg=neg,
        subpreferences=subpreferences,
        vocab_size=len(tokenizer),
        tokenizer_fingerprint=fingerprint,
        metadata={
            "rows": result.rows,
            "sources": [
                {
                    "path": s.path,
                    "split": s.split,
                    "subpreference": s.subpreference_label,
                    **s.fingerprint,
                }
                for s in sources
            ],
            "data_config": data.model_dump(mode="json"),
            "tokenizer": cfg.model.tokenizer_path,
            "ranked_pairing": data.ranked_pairing,
        },
    )
    counts.save(out)
    write_summary(result, cfg, extra)
    if result.eval is not None:
        write_summary(result.eval, cfg, extra)
    say(result.table())
    if top_k:
        say(counts.format_top_differences(tokenizer, k=top_k))
    return result


# ------------------------------------------------------------------ checks and settings
def _load_tokenizer(cfg: PlotRayConfig):
    """The model's tokenizer, refused early if it cannot render and end responses."""
    tokenizer = load_tokenizer_quickly(cfg.model.tokenizer_path, cfg.model.trust_remote_code)
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"the tokenizer at {cfg.model.tokenizer_path!r} has no eos token: responses end in "
            "eos so that models learn to stop"
        )
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer at {cfg.model.tokenizer_path!r} has no chat template: prompts are "
            "rendered with it (set one, e.g. save the model's tokenizer with `chat_template`)"
        )
    return tokenizer


def _check_cpu_budget(cfg: PlotRayConfig) -> None:
    """An actor pool that takes every CPU starves the read tasks: Ray Data then waits forever."""
    data = cfg.data
    total = ray.cluster_resources().get("CPU", 0.0)
    need = data.tokenize_actors * data.tokenize_cpus_per_actor
    if need + READ_CPUS <= total:
        return
    msg = (
        f"data.tokenize_actors ({data.tokenize_actors}) × data.tokenize_cpus_per_actor "
        f"({data.tokenize_cpus_per_actor}) = {need:g} CPUs leaves less than {READ_CPUS} of the "
        f"cluster's {total:g} CPUs for the read tasks, and Ray Data would wait forever: lower "
        "one of them (e.g. data.tokenize_cpus_per_actor=0.5)"
    )
    if cfg.cluster.resolved_address is None:
        raise ValueError(msg)
    logger.warning("%s (continuing: an autoscaling cluster may add CPUs)", msg)


def _clean_outputs(out: Path) -> None:
    """Remove what a previous prepare wrote here (only plot-ray's own files)."""
    for name in (TOKENIZED_DIR, QUARANTINE_PARTS_DIR, EVAL_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (
        QUARANTINE_FILE,
        SUMMARY_FILE,
        f"{ARTIFACT_STEM}.safetensors",
        f"{ARTIFACT_STEM}.json",
    ):
        (out / name).unlink(missing_ok=True)


@contextlib.contextmanager
def _ray_data_settings(show_progress: bool):
    """Ray Data settings for a prepare pass, restored afterwards.

    Input order is kept (shards and counts are then deterministic); progress bars are turned
    off unless ``show_progress`` (never turned on against the user's own setting). A dataset
    keeps the settings that were current when it was created.
    """
    ctx = ray.data.DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.enable_progress_bars,
        ctx.target_max_block_size,
    )
    ctx.execution_options.preserve_order = True
    # Small blocks: a read task's output would otherwise be one block per file, i.e. one actor
    # task per file, which neither streams nor balances over the actor pool.
    ctx.target_max_block_size = BLOCK_BYTES
    if not show_progress:
        ctx.enable_progress_bars = False
    try:
        yield
    finally:
        (
            ctx.execution_options.preserve_order,
            ctx.enable_progress_bars,
            ctx.target_max_block_size,
        ) = saved


# ------------------------------------------------------------------------------- read
def _raw_dataset(sources: list[ResolvedSource]):
    """Every source's raw records (one read task per file), in source order."""
    parts = [read_raw(s, num_cpus=READ_CPUS) for s in sources]
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def read_normalized(data: DataConfig, eval_split: bool = False):
    """The configured sources as normalised rows (a ``ray.data.Dataset``, input order).

    Columns: :data:`~plot_ray.data.schema.NORMALIZED_SCHEMA`. Rejected rows are included with
    their ``reason`` (rows that a ``where`` filter left out with ``filtered``); filter on
    ``reason`` being null to keep the usable ones.
    """
    train = resolve_sources(data.sources)
    evals = resolve_sources(data.eval_sources) if eval_split else []
    subpreferences = list_subpreferences(train, evals)
    sources = evals if eval_split else train
    with _ray_data_settings(show_progress=True):
        return _raw_dataset(sources).map_batches(
            _normalize_block,
            fn_kwargs={"sources": sources, "subpreferences": subpreferences},
            batch_format="pyarrow",
            batch_size=None,
            num_cpus=READ_CPUS,
        )


def _normalize_block(raw: pa.Table, sources, subpreferences) -> pa.Table:
    return Normalizer(sources, subpreferences)(raw)


# ------------------------------------------------------------------- sub-preferences
def list_subpreferences(
    sources: list[ResolvedSource], eval_sources: list[ResolvedSource] = ()
) -> list[str]:
    """The sorted sub-preferences of a run: the sources' tags, plus the rows' own
    ``subpreference`` values for sources left at ``default`` (one quick extra read of those).

    Raises if an eval source has a sub-preference that no training source has.
    """

    def tags(group: list[ResolvedSource]) -> set[str]:
        fixed = {s.subpreference for s in group if not s.tags_per_row}
        return fixed | _discover_tags([s for s in group if s.tags_per_row])

    names = tags(list(sources))
    extra = sorted(tags(list(eval_sources)) - names) if eval_sources else []
    if extra:
        raise ValueError(
            f"data.eval_sources use sub-preferences that no training source has: "
            f"{', '.join(extra)} (the token counts and targets are per training sub-preference)"
        )
    return sorted(names)


def _discover_tags(sources: list[ResolvedSource]) -> set[str]:
    if not sources:
        return set()
    tags = _raw_dataset(sources).map_batches(
        _row_tags,
        fn_kwargs={"columns": {s.index: (s.columns, s.where) for s in sources}},
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=READ_CPUS,
    )
    # A few names per block: collect them here (Dataset.unique would start a shuffle).
    return {row["subpreference"] for row in tags.take_all()}


def _row_tags(raw: pa.Table, columns: dict[int, tuple[dict[str, str], dict]]) -> pa.Table:
    """The distinct ``subpreference`` values that one block of raw records names (after each
    source's column mapping and of the rows its ``where`` filter keeps)."""
    names: set[str] = set()
    for src, data in zip(
        raw.column("source_index").to_pylist(), raw.column("record").to_pylist(), strict=True
    ):
        mapping, where = columns[src]
        try:
            record = map_columns(json.loads(data), mapping)
            if passes_where(record, where):
                names.add(row_subpreference(record))
        except (ValueError, TypeError, AttributeError, RowRejected):  # quarantined later
            continue
    return pa.table({"subpreference": pa.array(sorted(names), pa.string())})


# ------------------------------------------------- one pass: tokenize → write → collect
def _prepare_split(
    label: str,
    cfg: PlotRayConfig,
    sources: list[ResolvedSource],
    subpreferences: list[str],
    tokenizer,
    out: Path,
    say: Callable[[str], None],
    ticker: bool,
) -> tuple[PrepareResult, list[tuple[np.ndarray, np.ndarray]]]:
    """One Ray Data pass over ``sources`` into ``out``: the split's result (tokens not yet
    summed) and the write tasks' sparse token counts."""
    data = cfg.data
    started = time.perf_counter()
    (out / TOKENIZED_DIR).mkdir(parents=True, exist_ok=True)
    (out / QUARANTINE_PARTS_DIR).mkdir(parents=True, exist_ok=True)
    sink = PreparedDatasink(
        str(out),
        sources,
        subpreferences,
        vocab_size=len(tokenizer),
        special_ids=tokenizer.all_special_ids,
        ranked_pairing=data.ranked_pairing,
        shard_rows=SHARD_ROWS,
    )
    say(f"{label}: reading, tokenizing and writing shards…")
    ds = _raw_dataset(sources).map_batches(
        PreferenceTokenizer,
        fn_constructor_kwargs={
            "tokenizer_path": cfg.model.tokenizer_path,
            "trust_remote_code": cfg.model.trust_remote_code,
            "sources": sources,
            "subpreferences": subpreferences,
            "max_length": data.max_length,
            "max_prompt_length": data.max_prompt_length,
            "length_policy": data.length_policy,
            "expected": tokenizer_identity(tokenizer),
        },
        batch_size=data.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=data.tokenize_actors),
        num_cpus=data.tokenize_cpus_per_actor,
    )
    progress = (
        ShardProgress(label, out / TOKENIZED_DIR, out / QUARANTINE_PARTS_DIR, say)
        if ticker
        else contextlib.nullcontext()
    )
    with progress:
        ds.write_datasink(sink, ray_remote_args={"num_cpus": READ_CPUS})
    results = sink.results or []
    merge_quarantine(out)

    summaries = _summaries(sources, results)
    rows: Counter[int] = Counter()
    for r in results:
        rows.update(r["rows"])
    result = PrepareResult(
        output_dir=str(out),
        subpreferences=subpreferences,
        sources=[summaries[s.index] for s in sources],
        tokens={},
        rows={sub: {"rows": rows.get(i, 0)} for i, sub in enumerate(subpreferences)},
        shards=sorted(r["shard"] for r in results if r["shard"]),
        seconds=time.perf_counter() - started,
    )
    return result, [(r["keys"], r["counts"]) for r in results]


def _summaries(sources: list[ResolvedSource], results: list[dict]) -> dict[int, SourceSummary]:
    """The write tasks' per-source statistics, added up per source."""
    summaries = {
        s.index: SourceSummary(
            name=s.name,
            subpreference=s.subpreference_label,
            reader=s.requested_reader,
            fingerprint=s.fingerprint,
            where=s.where,
        )
        for s in sources
    }
    for r in results:
        for index, st in r["sources"].items():
            summary = summaries[index]
            summary.rows_in += st["rows_in"]
            summary.rows_out += st["rows_out"]
            summary.filtered += st["filtered"]
            summary.truncated += st["truncated"]
            summary.quarantined = dict(Counter(summary.quarantined) + Counter(st["quarantined"]))
            summary.kinds = dict(Counter(summary.kinds) + Counter(st["kinds"]))
            summary.notes = dict(Counter(summary.notes) + Counter(st["notes"]))
    for s in summaries.values():
        s.quarantined = dict(sorted(s.quarantined.items()))
        s.kinds = dict(sorted(s.kinds.items()))
        s.notes = dict(sorted(s.notes.items()))
    return summaries


# ------------------------------------------------------------------------ the verdict
def _fail_on_unusable_data(
    result: PrepareResult, cfg: PlotRayConfig, extra: dict, say: Callable[[str], None]
) -> None:
    """A ``where`` filter that kept no row, no usable row, or ``data.strict`` with quarantined
    rows: write ``summary.json`` with a failed status, print the table and raise
    :class:`DataValidationError`."""
    emptied = [
        f"data.{key}.{i}.where {s.where} ({s.name}) keeps none of its {s.rows_in} row(s)"
        for key, part in (("sources", result), ("eval_sources", result.eval))
        if part is not None
        for i, s in enumerate(part.sources)
        if s.where and s.rows_in and s.filtered == s.rows_in
    ]
    if emptied:
        result.status = "failed_filtered"
        write_summary(result, cfg, extra)
        say(result.table())
        raise DataValidationError(
            "; ".join(emptied) + f": check the column's values in the source ({WHERE_EQUALITY})"
        )
    if result.rows_out == 0:
        result.status = "failed_empty"
        write_summary(result, cfg, extra)
        say(result.table())
        raise DataValidationError(
            f"no usable rows: {result.rows_in} row(s) read, all quarantined ("
            + (", ".join(f"{r}: {n}" for r, n in result.quarantine_reasons.items()) or "none")
            + f"); see {result.quarantine_path}"
        )
    quarantined = result.num_quarantined + (result.eval.num_quarantined if result.eval else 0)
    if cfg.data.strict and quarantined:
        result.status = "failed_strict"
        write_summary(result, cfg, extra)
        if result.eval is not None:
            result.eval.status = "failed_strict"
            write_summary(result.eval, cfg, extra)
        say(result.table())
        reasons = Counter(result.quarantine_reasons)
        if result.eval is not None:
            reasons.update(result.eval.quarantine_reasons)
        raise DataValidationError(
            f"data.strict is set and {quarantined} row(s) were quarantined ("
            + ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items()))
            + f"); see {result.quarantine_path}"
            + (f" and {result.eval.quarantine_path}" if result.eval else "")
            + " (set data.strict=false to train on the rows that passed)"
        )
