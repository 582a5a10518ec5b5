"""What ``plot-ray prepare`` tells the user, and writes about itself.

- :class:`PrepareResult` / :class:`SourceSummary`: rows in and out per source, quarantine counts
  per reason, tokens counted; :meth:`PrepareResult.table` is the end-of-run summary table and
  :func:`write_summary` writes the same as ``summary.json``.
- Stage lines while it runs: :func:`describe_source` (what is read) and :class:`ShardProgress`
  (rows written so far, every few seconds, during the long tokenize-and-write pass).
- :func:`ray_data_log`: Ray Data's own log records of the run go to
  ``{output_dir}/logs/prepare.log``; the terminal shows them (and Ray Data's progress bars) only
  when asked for (``verbose``), errors always.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plot_ray.config import PlotRayConfig
from plot_ray.data.counts import ARTIFACT_STEM, TokenCounts
from plot_ray.data.readers import ResolvedSource
from plot_ray.data.schema import QUARANTINE_FILE, REASONS, SUMMARY_FILE, TOKENIZED_DIR

__all__ = [
    "PROGRESS_EVERY_S",
    "PrepareResult",
    "ShardProgress",
    "SourceSummary",
    "describe_source",
    "ray_data_log",
    "write_summary",
]

PROGRESS_EVERY_S = 10.0  # seconds between progress lines of a running pass


# ----------------------------------------------------------------------------- results
@dataclass
class SourceSummary:
    """Rows in and out of one source: ``rows_in`` = ``rows_out`` + quarantined + ``filtered``
    (the rows its ``where`` filter left out)."""

    name: str
    subpreference: str
    reader: str
    rows_in: int = 0
    rows_out: int = 0
    filtered: int = 0
    truncated: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)  # usable rows per format note
    fingerprint: dict[str, Any] = field(default_factory=dict)
    where: dict[str, Any] = field(default_factory=dict)  # the source's row filter

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
    def filtered(self) -> int:
        return sum(s.filtered for s in self.sources)

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
        return Path(self.output_dir) / f"{ARTIFACT_STEM}.safetensors"

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
            "filtered": self.filtered,
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

    def stage_line(self, label: str) -> str:
        """One line for a finished pass: rows read → written, quarantined, truncated, (rows
        filtered out by ``where``,) time."""
        filtered = f", {self.filtered:,} filtered by where" if self.filtered else ""
        return (
            f"{label}: {self.rows_in:,} rows read → {self.rows_out:,} written in "
            f"{len(self.shards)} shard(s); {self.num_quarantined:,} quarantined, "
            f"{self.truncated:,} truncated{filtered} ({self.seconds:.1f}s)"
        )

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
        for s in self.sources:
            if s.filtered:
                lines.append(f"{s.name}: {s.filtered} row(s) filtered by where {s.where}")
            if s.notes:
                notes = ", ".join(f"{note} {n}" for note, n in s.notes.items())
                lines.append(f"{s.name}: usable rows by case: {notes}")
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


def write_summary(result: PrepareResult, cfg: PlotRayConfig, extra: dict[str, Any]) -> None:
    """``{result.output_dir}/summary.json``: the result, ``extra``, the version and the config."""
    from plot_ray import __version__

    payload = {
        **result.to_dict(),
        **extra,
        "plot_ray_version": __version__,
        "tokenizer": cfg.model.tokenizer_path,
        "data_config": cfg.data.model_dump(mode="json"),
    }
    (Path(result.output_dir) / SUMMARY_FILE).write_text(json.dumps(payload, indent=2) + "\n")


# -------------------------------------------------------------------------- stage lines
def _size(n_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def describe_source(source: ResolvedSource) -> str:
    """``  read <name> (<reader>, <n> file(s), <size>[, rows where <filter>]) →
    <sub-preference>``, for the start."""
    files = source.fingerprint.get("files", [])
    sizes = [f.get("size") for f in files if isinstance(f, dict)]
    size = f", {_size(sum(sizes))}" if sizes and all(isinstance(s, int) for s in sizes) else ""
    tag = "each row's own sub-preference" if source.tags_per_row else source.subpreference
    kept = f", rows where {source.where}" if source.where else ""
    return (
        f"  read {source.name} ({source.requested_reader}, {len(source.files)} file(s){size}"
        f"{kept}) → {tag}"
    )


class ShardProgress:
    """While a pass runs, says every ``every_s`` seconds (default :data:`PROGRESS_EVERY_S`) how
    many rows its write tasks have written so far, e.g.
    ``  train: 24,576 rows written in 3 shard(s), 12 quarantined (31s)``.

    It reads the Parquet footers of the finished shards in ``shards_dir`` and of the quarantine
    parts in ``quarantine_dir`` (both renamed into place only when complete), so it needs
    nothing from Ray. A pass that
    ends before the first interval says nothing. Use as a context manager around the pass.
    """

    def __init__(
        self,
        label: str,
        shards_dir: Path,
        quarantine_dir: Path,
        say: Callable[[str], None],
        every_s: float | None = None,
    ):
        self.label = label
        self._dirs = (shards_dir, quarantine_dir)
        self._say = say
        self._every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self._rows: dict[Path, int] = {}  # footer row counts, read once per file
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def _count(self, folder: Path) -> tuple[int, int]:
        import pyarrow.parquet as pq

        rows = files = 0
        for path in folder.glob("part-*.parquet"):  # temporary files start with ".tmp-"
            if path not in self._rows:
                try:
                    self._rows[path] = pq.read_metadata(path).num_rows
                except OSError:  # removed or replaced since the listing: count it next time
                    continue
            rows += self._rows[path]
            files += 1
        return rows, files

    def line(self) -> str:
        written, shards = self._count(self._dirs[0])
        quarantined, _ = self._count(self._dirs[1])
        return (
            f"  {self.label}: {written:,} rows written in {shards} shard(s), "
            f"{quarantined:,} quarantined ({time.perf_counter() - self._started:.0f}s)"
        )

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._say(self.line())

    def __enter__(self) -> ShardProgress:
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="prepare-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# --------------------------------------------------------------------- Ray Data's logs
_LOG_FORMAT = "%(asctime)s\t%(levelname)s %(name)s:%(lineno)s -- %(message)s"


class _RayDataLogFile(logging.FileHandler):
    """A log file that also counts the warnings and errors written to it."""

    def __init__(self, path: Path):
        super().__init__(path, mode="w", encoding="utf-8")
        self.setFormatter(logging.Formatter(_LOG_FORMAT))
        self.setLevel(logging.INFO)
        self.path = path
        self.warnings = 0

    def emit(self, record: logging.LogRecord) -> None:
        # Ray Data's own note that progress bars are off is the quiet mode working, not news.
        if record.levelno >= logging.WARNING and "Progress bars" not in record.getMessage():
            self.warnings += 1
        super().emit(record)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextlib.contextmanager
def ray_data_log(path: Path, verbose: bool = False) -> Iterator[_RayDataLogFile]:
    """Copy the ``ray.data`` logger's records (INFO and up) to ``path`` while the block runs.

    Without ``verbose`` the logger's terminal handlers pass only errors meanwhile (execution
    plans, progress lines and notices stay in the file); Ray Data's own handlers and its
    session log (``/tmp/ray/session_*/logs/ray-data``) are left as they are. Failures still
    reach the user in full: a failed pass raises its exception in the driver, and errors are
    logged to the terminal as well. Yields the file handler (``.path``, ``.warnings``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _RayDataLogFile(path)
    logger = logging.getLogger("ray.data")
    muted = []
    if not verbose:
        # FileHandler is a StreamHandler too; Ray Data's session-file handler is neither.
        muted = [
            h
            for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        ]
    for h in muted:
        h.addFilter(_errors_only)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        for h in muted:
            h.removeFilter(_errors_only)
        handler.close()
