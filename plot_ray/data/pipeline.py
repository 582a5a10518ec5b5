"""``plot-ray prepare``: read → validate → normalise → tokenize → write shards + count tokens.

One Ray Data pass per split::

    read tasks (one per file)          raw records, in file order
      → actor pool (PreferenceTokenizer, data.tokenize_actors × data.tokenize_cpus_per_actor)
            normalise + validate + chat template + tokenize + length policy
      → PreparedDatasink write tasks   tokenized shard + quarantine part per bundle, and the
                                       bundle's sparse token counts, returned to the driver
    driver                             sums the counts, merges quarantine, writes the artifact

Outputs under ``data.output_dir``: ``tokenized/part-*.parquet``, ``quarantine.parquet``,
``summary.json``, ``token_counts.safetensors`` + ``token_counts.json``; with
``data.eval_sources`` the same (less the counts) under ``eval/``. Shards are named after their
first input row (source, file, row), so that a second run on the same input and tokenizer writes
identical files, and sorting them by name gives input order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from plot_ray.config import DataConfig, PlotRayConfig
from plot_ray.data.counts import TokenCounts, count_response_tokens, sparse_to_dense
from plot_ray.data.formats import RowRejected
from plot_ray.data.readers import ResolvedSource, filesystem_for, read_raw, resolve_sources
from plot_ray.data.schema import (
    QUARANTINE_SCHEMA,
    REASONS,
    TOKENIZED_COLUMNS,
    DataValidationError,
)
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

TOKENIZED_DIR = "tokenized"
QUARANTINE_FILE = "quarantine.parquet"
SUMMARY_FILE = "summary.json"
EVAL_DIR = "eval"
_PARTS_DIR = ".quarantine_parts"
SHARD_ROWS = 8192  # rows per tokenized shard (at least; the last one of a run may be smaller)
READ_CPUS = 0.25  # read tasks mostly split lines; the actor pool does the CPU work
BLOCK_BYTES = int(os.environ.get("PLOT_RAY_DATA_BLOCK_BYTES", 1 << 20))


# ----------------------------------------------------------------------------- results
@dataclass
class SourceSummary:
    """Rows in and out of one source."""

    name: str
    subpreference: str
    reader: str
    rows_in: int = 0
    rows_out: int = 0
    truncated: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def num_quarantined(self) -> int:
        return sum(self.quarantined.values())


@dataclass
class PrepareResult:
    """What ``run_prepare`` did; everything here is also in ``summary.json``."""

    output_dir: str
    subpreferences: list[str]
    sources: list[SourceSummary]
    tokens: dict[str, dict[str, int]]  # subpreference → {"pos": n, "neg": n}
    rows: dict[str, dict[str, int]]  # subpreference → {"rows": n, "pairs"/...: n}
    shards: list[str]
    seconds: float
    status: str = "complete"
    eval: PrepareResult | None = None

    @property
    def rows_in(self) -> int:
        return sum(s.rows_in for s in self.sources)

    @property
    def rows_out(self) -> int:
        return sum(s.rows_out for s in self.sources)

    @property
    def truncated(self) -> int:
        return sum(s.truncated for s in self.sources)

    @property
    def quarantine_reasons(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for s in self.sources:
            total.update(s.quarantined)
        return dict(sorted(total.items()))

    @property
    def num_quarantined(self) -> int:
        return sum(self.quarantine_reasons.values())

    @property
    def tokenized_dir(self) -> Path:
        return Path(self.output_dir) / TOKENIZED_DIR

    @property
    def quarantine_path(self) -> Path:
        return Path(self.output_dir) / QUARANTINE_FILE

    @property
    def summary_path(self) -> Path:
        return Path(self.output_dir) / SUMMARY_FILE

    @property
    def counts_path(self) -> Path:
        return Path(self.output_dir) / "token_counts.safetensors"

    def counts(self, tokenizer=None) -> TokenCounts:
        return TokenCounts.load(self.output_dir, tokenizer=tokenizer)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "status": self.status,
            "output_dir": self.output_dir,
            "subpreferences": self.subpreferences,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "quarantined": self.num_quarantined,
            "truncated": self.truncated,
            "quarantine_reasons": self.quarantine_reasons,
            "tokens": self.tokens,
            "rows": self.rows,
            "sources": [asdict(s) for s in self.sources],
            "shards": self.shards,
            "seconds": round(self.seconds, 3),
        }
        if self.eval is not None:
            out["eval"] = self.eval.to_dict()
        return out

    def table(self) -> str:
        """The end-of-run summary: rows per source, quarantine per reason, tokens counted."""
        head = (
            f"{'source':<40} {'sub-preference':<16} {'rows in':>8} {'out':>8} "
            f"{'quarant.':>8} {'truncated':>9}"
        )
        lines = [head, "-" * len(head)]
        for s in self.sources:
            name = s.name if len(s.name) <= 40 else "…" + s.name[-39:]
            lines.append(
                f"{name:<40} {s.subpreference:<16} {s.rows_in:>8} {s.rows_out:>8} "
                f"{s.num_quarantined:>8} {s.truncated:>9}"
            )
        lines.append(
            f"{'total':<40} {'':<16} {self.rows_in:>8} {self.rows_out:>8} "
            f"{self.num_quarantined:>8} {self.truncated:>9}"
        )
        if self.num_quarantined:
            lines.append(f"quarantined by reason (see {self.quarantine_path}):")
            for reason, n in self.quarantine_reasons.items():
                lines.append(f"  {reason:<28} {n:>8}  {REASONS.get(reason, '')}")
        else:
            lines.append("quarantined: none")
        if self.tokens:
            lines.append("response tokens counted (special tokens excluded):")
            for sub, t in self.tokens.items():
                lines.append(f"  {sub:<28} preferred {t['pos']:>10}   rejected {t['neg']:>10}")
            for sub, t in self.tokens.items():
                if not (t["pos"] and t["neg"]):
                    side = "preferred" if not t["pos"] else "rejected"
                    lines.append(
                        f"warning: sub-preference {sub!r} has no {side}-response tokens "
                        "(e.g. SFT rows only): its PLOT target needs both sides"
                    )
        lines.append(f"{self.rows_out} rows in {len(self.shards)} shards, {self.seconds:.1f}s")
        if self.eval is not None:
            lines.extend(["", "eval split:", self.eval.table()])
        return "\n".join(lines)


# -------------------------------------------------------------------------------- sink
class PreparedDatasink(Datasink):
    """Writes tokenized shards and quarantine parts, and returns each bundle's token counts.

    ``write`` runs in parallel write tasks; its return values reach the driver through
    ``on_write_complete`` (``self.results``), where the counts are summed.
    """

    def __init__(
        self,
        output_dir: str,
        sources: list[ResolvedSource],
        subpreferences: list[str],
        vocab_size: int,
        special_ids: list[int],
        ranked_pairing: str,
        shard_rows: int = SHARD_ROWS,
    ):
        self._output_dir = output_dir
        self._sources = {s.index: (s.path, s.subpreference, s.files) for s in sources}
        self._num_sub = len(subpreferences)
        self._vocab_size = vocab_size
        self._special_ids = list(special_ids)
        self._ranked_pairing = ranked_pairing
        self._shard_rows = shard_rows
        self.results: list[dict[str, Any]] | None = None

    def get_name(self) -> str:
        return "WriteShards"

    @property
    def min_rows_per_write(self) -> int:
        return self._shard_rows

    def write(self, blocks: Iterable, ctx) -> dict[str, Any] | None:
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return None
        table = pa.concat_tables(tables)
        first = {c: table.column(c)[0].as_py() for c in ("source_index", "file_index", "row_index")}
        name = (
            f"part-{first['source_index']:04d}-{first['file_index']:06d}-"
            f"{first['row_index']:012d}.parquet"
        )
        rejected = pc.is_valid(table.column("reason"))
        good = table.filter(pc.invert(rejected))
        bad = table.filter(rejected)
        fs, root = filesystem_for(self._output_dir)
        if good.num_rows:
            _write_atomic(
                good.select(list(TOKENIZED_COLUMNS)), fs, f"{root}/{TOKENIZED_DIR}/{name}"
            )
        if bad.num_rows:
            _write_atomic(self._quarantine_table(bad), fs, f"{root}/{_PARTS_DIR}/{name}")
        keys, counts = count_response_tokens(
            good, self._num_sub, self._vocab_size, self._special_ids, self._ranked_pairing
        )
        return {
            "shard": name if good.num_rows else None,
            "keys": keys,
            "counts": counts,
            "sources": _source_stats(table),
            "rows": _row_stats(good),
        }

    def _quarantine_table(self, bad: pa.Table) -> pa.Table:
        src = bad.column("source_index").to_pylist()
        files = bad.column("file_index").to_pylist()
        meta = [self._sources[s] for s in src]
        return pa.Table.from_pydict(
            {
                "source": [m[0] for m in meta],
                "subpreference": [m[1] for m in meta],
                "file": [m[2][f] for m, f in zip(meta, files)],
                "row_index": bad.column("row_index"),
                "row_id": bad.column("row_id"),
                "reason": bad.column("reason"),
                "detail": bad.column("detail"),
                "record": bad.column("record"),
            },
            schema=QUARANTINE_SCHEMA,
        )

    def on_write_complete(self, write_result) -> None:
        self.results = [r for r in write_result.write_returns if r is not None]


def _write_atomic(table: pa.Table, fs, path: str) -> None:
    tmp = path.rsplit("/", 1)
    tmp = f"{tmp[0]}/.tmp-{tmp[1]}"
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, path)


def _source_stats(table: pa.Table) -> dict[int, dict[str, Any]]:
    src = table.column("source_index").to_numpy()
    reasons = table.column("reason").to_pylist()
    kinds = table.column("kind").to_pylist()
    truncated = table.column("truncated").to_numpy(zero_copy_only=False)
    out: dict[int, dict[str, Any]] = {}
    for s in np.unique(src):
        mask = src == s
        idx = np.flatnonzero(mask)
        quarantined = Counter(reasons[i] for i in idx if reasons[i] is not None)
        out[int(s)] = {
            "rows_in": int(mask.sum()),
            "rows_out": int(sum(reasons[i] is None for i in idx)),
            "truncated": int(truncated[mask].sum()),
            "quarantined": dict(quarantined),
            "kinds": dict(Counter(kinds[i] for i in idx if reasons[i] is None)),
        }
    return out


def _row_stats(good: pa.Table) -> dict[int, int]:
    if not good.num_rows:
        return {}
    sub = good.column("subpreference_id").to_numpy()
    ids, n = np.unique(sub, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, n)}


# ---------------------------------------------------------------------------- pipeline
@contextlib.contextmanager
def _ordered_execution(progress: bool):
    """Ray Data keeps input order (shards and counts are then deterministic)."""
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
    if not progress:
        ctx.enable_progress_bars = False
    try:
        yield
    finally:
        (
            ctx.execution_options.preserve_order,
            ctx.enable_progress_bars,
            ctx.target_max_block_size,
        ) = saved


def _raw_dataset(sources: list[ResolvedSource]):
    parts = [read_raw(s, num_cpus=READ_CPUS) for s in sources]
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def read_normalized(data: DataConfig, eval_split: bool = False):
    """The configured sources as normalised rows (a ``ray.data.Dataset``, input order).

    Columns: :data:`~plot_ray.data.schema.NORMALIZED_SCHEMA`. Rejected rows are included with
    their ``reason``; filter on ``reason`` being null to keep the usable ones.
    """
    train = resolve_sources(data.sources)
    evals = resolve_sources(data.eval_sources) if eval_split else []
    subpreferences = list_subpreferences(train, evals)
    sources = evals if eval_split else train
    with _ordered_execution(progress=True):  # the dataset keeps this context when it runs
        return _raw_dataset(sources).map_batches(
            _normalize_block,
            fn_kwargs={"sources": sources, "subpreferences": subpreferences},
            batch_format="pyarrow",
            batch_size=None,
            num_cpus=READ_CPUS,
        )


def _normalize_block(raw: pa.Table, sources, subpreferences) -> pa.Table:
    return Normalizer(sources, subpreferences)(raw)


def _row_tags(raw: pa.Table) -> pa.Table:
    """The distinct ``subpreference`` values that one block of raw records names."""
    names: set[str] = set()
    for data in raw.column("record").to_pylist():
        try:
            names.add(row_subpreference(json.loads(data)))
        except (ValueError, RowRejected):  # malformed rows are quarantined later
            continue
    return pa.table({"subpreference": pa.array(sorted(names), pa.string())})


def _discover_tags(sources: list[ResolvedSource]) -> set[str]:
    if not sources:
        return set()
    tags = _raw_dataset(sources).map_batches(
        _row_tags, batch_format="pyarrow", batch_size=None, num_cpus=READ_CPUS
    )
    # A few names per block: collect them here (Dataset.unique would start a shuffle).
    return {row["subpreference"] for row in tags.take_all()}


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


def _actor_pool(data: DataConfig):
    return ray.data.ActorPoolStrategy(size=data.tokenize_actors)


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
    for name in (TOKENIZED_DIR, _PARTS_DIR, EVAL_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (QUARANTINE_FILE, SUMMARY_FILE, "token_counts.safetensors", "token_counts.json"):
        (out / name).unlink(missing_ok=True)


def _run_split(
    cfg: PlotRayConfig,
    sources: list[ResolvedSource],
    subpreferences: list[str],
    tokenizer,
    fingerprint: str,
    out: Path,
    progress: bool,
) -> tuple[PrepareResult, list[tuple[np.ndarray, np.ndarray]]]:
    data = cfg.data
    started = time.perf_counter()
    (out / TOKENIZED_DIR).mkdir(parents=True, exist_ok=True)
    (out / _PARTS_DIR).mkdir(parents=True, exist_ok=True)
    sink = PreparedDatasink(
        str(out),
        sources,
        subpreferences,
        vocab_size=len(tokenizer),
        special_ids=tokenizer.all_special_ids,
        ranked_pairing=data.ranked_pairing,
        shard_rows=SHARD_ROWS,
    )
    with _ordered_execution(progress):
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
            compute=_actor_pool(data),
            num_cpus=data.tokenize_cpus_per_actor,
        )
        ds.write_datasink(sink, ray_remote_args={"num_cpus": READ_CPUS})
    results = sink.results or []

    summaries = {
        s.index: SourceSummary(
            name=s.name,
            subpreference="(per row)" if s.tags_per_row else s.subpreference,
            reader=s.requested_reader,
            fingerprint=s.fingerprint,
        )
        for s in sources
    }
    rows: Counter[int] = Counter()
    for r in results:
        rows.update(r["rows"])
        for index, st in r["sources"].items():
            summary = summaries[index]
            summary.rows_in += st["rows_in"]
            summary.rows_out += st["rows_out"]
            summary.truncated += st["truncated"]
            summary.quarantined = dict(Counter(summary.quarantined) + Counter(st["quarantined"]))
            summary.kinds = dict(Counter(summary.kinds) + Counter(st["kinds"]))
    for s in summaries.values():
        s.quarantined = dict(sorted(s.quarantined.items()))
        s.kinds = dict(sorted(s.kinds.items()))
    _merge_quarantine(out)
    parts = [(r["keys"], r["counts"]) for r in results]
    shards = sorted(r["shard"] for r in results if r["shard"])
    result = PrepareResult(
        output_dir=str(out),
        subpreferences=subpreferences,
        sources=[summaries[s.index] for s in sources],
        tokens={},
        rows={sub: {"rows": rows.get(i, 0)} for i, sub in enumerate(subpreferences)},
        shards=shards,
        seconds=time.perf_counter() - started,
    )
    return result, parts


def _merge_quarantine(out: Path) -> None:
    parts_dir = out / _PARTS_DIR
    parts = sorted(parts_dir.glob("part-*.parquet"))
    tables = [pq.read_table(p, schema=QUARANTINE_SCHEMA) for p in parts]
    table = pa.concat_tables(tables) if tables else QUARANTINE_SCHEMA.empty_table()
    pq.write_table(table, out / QUARANTINE_FILE)
    shutil.rmtree(parts_dir, ignore_errors=True)


def _write_summary(result: PrepareResult, cfg: PlotRayConfig, extra: dict[str, Any]) -> None:
    from plot_ray import __version__

    payload = {
        **result.to_dict(),
        **extra,
        "plot_ray_version": __version__,
        "tokenizer": cfg.model.tokenizer_path,
        "data_config": cfg.data.model_dump(mode="json"),
    }
    (Path(result.output_dir) / SUMMARY_FILE).write_text(json.dumps(payload, indent=2) + "\n")


def run_prepare(
    cfg: PlotRayConfig,
    progress: bool = True,
    print_fn: Callable[[str], None] | None = print,
    top_k: int = 10,
) -> PrepareResult:
    """Prepare ``cfg.data`` for training with ``cfg.model``'s tokenizer (``plot-ray prepare``).

    Connects to Ray per ``cfg.cluster`` (or reuses the connected driver), runs the pipeline
    (see the module docstring), prints the summary table and the largest ``Q_diff`` entries
    (``top_k`` per direction) through ``print_fn`` (None: silent) and returns the result.

    Raises :class:`~plot_ray.data.schema.DataValidationError` when no row is usable, or when
    ``data.strict`` is set and any row was quarantined (the quarantine file and ``summary.json``
    are still written, with ``status`` ``failed_empty`` / ``failed_strict``, and no token-count
    artifact is written). ``data.output_dir`` must be a path that every Ray node can write
    (a shared filesystem on multi-node clusters): the shard writers run on the nodes.
    """
    from plot_ray.cluster import init_ray_from_config
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
    fingerprint = tokenizer_fingerprint(tokenizer)
    init_ray_from_config(cfg.cluster, quiet=not progress)
    _check_cpu_budget(cfg)
    out = Path(data.output_dir)
    say(
        f"prepare: {len(sources)} source(s)"
        + (f" + {len(eval_sources)} eval source(s)" if eval_sources else "")
        + f"; tokenizer {cfg.model.tokenizer_path} ({len(tokenizer)} tokens); "
        f"{data.tokenize_actors} tokenizer actor(s) × {data.tokenize_cpus_per_actor:g} CPU → {out}"
    )
    subpreferences = list_subpreferences(sources, eval_sources)
    say(f"sub-preferences: {', '.join(subpreferences)}")
    out.mkdir(parents=True, exist_ok=True)
    _clean_outputs(out)

    result, parts = _run_split(cfg, sources, subpreferences, tokenizer, fingerprint, out, progress)
    pos, neg = sparse_to_dense(parts, len(subpreferences), len(tokenizer))
    result.tokens = {
        sub: {"pos": int(pos[c].sum()), "neg": int(neg[c].sum())}
        for c, sub in enumerate(subpreferences)
    }
    if eval_sources:
        result.eval, _ = _run_split(
            cfg, eval_sources, subpreferences, tokenizer, fingerprint, out / EVAL_DIR, progress
        )
    result.seconds = time.perf_counter() - started
    extra = {"vocab_size": len(tokenizer), "tokenizer_fingerprint": fingerprint}

    if result.rows_out == 0:
        result.status = "failed_empty"
        _write_summary(result, cfg, extra)
        say(result.table())
        raise DataValidationError(
            f"no usable rows: {result.rows_in} row(s) read, all quarantined ("
            + (", ".join(f"{r}: {n}" for r, n in result.quarantine_reasons.items()) or "none")
            + f"); see {result.quarantine_path}"
        )
    quarantined = result.num_quarantined + (result.eval.num_quarantined if result.eval else 0)
    if data.strict and quarantined:
        result.status = "failed_strict"
        _write_summary(result, cfg, extra)
        if result.eval is not None:
            result.eval.status = "failed_strict"
            _write_summary(result.eval, cfg, extra)
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
                    "subpreference": "(per row)" if s.tags_per_row else s.subpreference,
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
    _write_summary(result, cfg, extra)
    if result.eval is not None:
        _write_summary(result.eval, cfg, extra)
    say(result.table())
    if top_k:
        say(counts.format_top_differences(tokenizer, k=top_k))
    return result
