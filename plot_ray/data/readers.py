"""Readers: every ``DataSource`` becomes a Ray dataset of raw records, one per input row.

Readers (``DataSource.reader``; ``auto`` picks from the path):

=========  ===================================================================================
jsonl      JSON Lines (``.jsonl``/``.ndjson``, optionally ``.gz``/``.bz2``/``.zst``); a line that
           is not valid JSON is quarantined as ``malformed``, never skipped
json       one JSON array of records per file (JSON Lines content is accepted too)
parquet    Parquet files, read by row group
csv        CSV with a header row (string fields; chat message lists need jsonl/parquet)
hf_disk    a Hugging Face ``save_to_disk`` folder (a ``DatasetDict`` folder picks ``split``)
hf_hub     a Hugging Face hub name (or a local dataset repository folder) through
           ``datasets.load_dataset(path, name=subset, data_dir=data_dir, revision=revision)``
=========  ===================================================================================

Both Hugging Face readers take a split or a slice of one in ``datasets``' own syntax
(``train[:5%]``, ``test[100:200]``, ``train[-1000:]``): the whole split is loaded and the read
tasks read only the rows of the slice, so row ids are those of the whole split. File readers
take a split name only (it picks the files named after it); for them ``limit`` caps the rows.
``subset``, ``data_dir`` and ``revision`` are for hub sources only; ``columns`` (any reader)
renames source columns to the format's fields, and a mapped column that the source does not
have is an error before anything is read (for jsonl, checked on the first record), as is a
``where`` filter column that the renamed columns do not include. The filter itself runs on the
rows after reading (:func:`plot_ray.data.formats.passes_where`); ``limit`` caps the rows read,
before it.

A source path may be a file, a glob, a folder or (hub) a dataset name; remote URIs
(``s3://``, ``gs://``) work for file readers through pyarrow's filesystems. In a folder of data
files, files named after the split (``train.jsonl``, ``train-00000.parquet``) are read if there
are any, else every data file. Both Hugging Face readers read the dataset's Arrow files in
parallel read tasks (one per file), like the other readers.

Every raw row keeps where it came from (``source_index``, ``file_index``, ``row_index``) and its
record as JSON text (bytes), so that normalisation can quarantine it with a precise location.
"""

from __future__ import annotations

import functools
import glob as globlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from plot_ray.config import DataSource, EvalSet
from plot_ray.data.formats import mapped_names
from plot_ray.data.schema import DataValidationError

__all__ = [
    "READ_CPUS",
    "load_hub_split",
    "RecordFilesDatasource",
    "ResolvedSource",
    "read_raw",
    "resolve_source",
    "resolve_sources",
    "row_id",
]

logger = logging.getLogger(__name__)

READER_EXTENSIONS = {
    "jsonl": (".jsonl", ".ndjson"),
    "json": (".json",),
    "parquet": (".parquet", ".pq"),
    "csv": (".csv",),
}
# Readers of Hugging Face datasets (a save_to_disk folder, a hub name); the others read files.
# With READER_EXTENSIONS they are the `DataSource.reader` names of the config (tests check it).
HF_READERS = ("hf_disk", "hf_hub")
_COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")
_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
ROWS_PER_BLOCK = 1024
# CPUs per read task, for every read plot-ray asks Ray Data for (raw corpora in `prepare`, the
# tokenized shards in training). Reading mostly splits lines and decodes Parquet; the CPUs are
# for the tokenizer actors or the training workers, and a read task that waited for a whole CPU
# behind them would stall the whole pipeline (silently: Ray Data just waits).
READ_CPUS = 0.25


@dataclass(frozen=True)
class ResolvedSource:
    """A ``DataSource`` with its reader and files decided (and fingerprinted) on the driver.

    ``files`` are what the read tasks open: data files for file readers, the Arrow files of the
    dataset for the Hugging Face readers (``reader == "arrow"`` after resolution).
    """

    index: int
    path: str
    format: str
    subpreference: str
    split: str
    limit: int | None
    reader: str  # jsonl | json | parquet | csv | arrow
    requested_reader: str  # what the config asked for (auto resolved): ... | hf_disk | hf_hub
    files: tuple[str, ...]
    file_keys: tuple[str, ...]  # stable per-file names that feed row ids
    fingerprint: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)  # {schema field: source column}
    where: dict[str, Any] = field(default_factory=dict)  # row filter on the mapped columns
    # (first, stop) row of each file to read, for a split slice; empty: every row
    row_ranges: tuple[tuple[int, int], ...] = ()

    @property
    def tags_per_row(self) -> bool:
        """A source left at ``subpreference: default`` takes each row's own ``subpreference``."""
        return self.subpreference == "default"

    @property
    def subpreference_label(self) -> str:
        """The sub-preference as summaries show it: ``(per row)`` for a row-tagged source."""
        return "(per row)" if self.tags_per_row else self.subpreference

    @property
    def name(self) -> str:
        where = "/".join(p for p in (self.path, self.fingerprint.get("data_dir")) if p)
        subset = self.fingerprint.get("subset")
        where = f"{where}:{subset}" if subset else where
        return where if self.split == "train" else f"{where}[{self.split}]"


def _where(index: int, source: DataSource) -> str:
    """How errors name a source: its position in the list and its path."""
    return f"data source {index} ({source.path!r})"


def row_id(file_key: str, row_index: int) -> int:
    """A stable, non-negative int64 id for row ``row_index`` of the file named ``file_key``."""
    digest = hashlib.blake2b(f"{file_key}\x00{row_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


# ---------------------------------------------------------------------------- resolution
def filesystem_for(path: str):
    """(pyarrow filesystem, path in it) for a local path or a URI such as ``s3://...``."""
    from pyarrow import fs as pafs

    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def _reader_for(path: str) -> str | None:
    name = path.lower()
    for comp in _COMPRESSIONS:
        if name.endswith(comp):
            name = name[: -len(comp)]
    for reader, exts in READER_EXTENSIONS.items():
        if name.endswith(exts):
            return reader
    return None


def _looks_like_hub_name(path: str) -> bool:
    return (
        "://" not in path
        and not path.startswith((".", "/", "~"))
        and path.count("/") <= 1
        and not _reader_for(path)
    )


def _stat(fs, path: str) -> dict[str, Any]:
    info = fs.get_file_info(path)
    mtime = getattr(info, "mtime_ns", None)
    return {"file": path, "size": info.size, "mtime_ns": mtime}


def _matches_split(name: str, split: str) -> bool:
    stem = Path(name).name.lower()
    return any(stem.startswith(split.lower() + sep) for sep in (".", "-", "_"))


def _list_data_files(fs, root: str, source: DataSource) -> list[str]:
    from pyarrow import fs as pafs

    def wanted(path: str) -> bool:
        kind = _reader_for(path)
        return kind is not None and source.reader in ("auto", kind)

    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    files = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and not Path(i.path).name.startswith((".", "_"))
        and wanted(i.path)
    )
    named = [f for f in files if _matches_split(f, source.split)]
    return named or files


def resolve_source(index: int, source: DataSource) -> ResolvedSource:
    """Decide reader and files for one source; raises a clear error if there is nothing to read."""
    reader = source.reader
    path = source.path
    local = "://" not in path
    if local:
        path = os.path.expanduser(path)
    is_glob = any(c in path for c in "*?[")
    exists = is_glob or not local or os.path.exists(path)
    if reader == "auto":
        if local and os.path.isdir(path):
            markers = os.listdir(path)
            reader = "hf_disk" if any(m in markers for m in _HF_DISK_MARKERS) else "auto"
        elif not exists and _looks_like_hub_name(path):
            reader = "hf_hub"
    if reader in HF_READERS:
        return _resolve_hf(index, source, reader)
    _check_file_source(index, source)
    if local and not exists:
        raise FileNotFoundError(f"data source {source.path!r}: no such file or folder")

    if is_glob and local:
        fs, _ = filesystem_for(".")
        files = sorted(p for p in map(os.path.abspath, globlib.glob(path, recursive=True)))
        files = [f for f in files if os.path.isfile(f)]
        root = os.path.commonpath(files) if files else path
        if files and os.path.isfile(root):
            root = os.path.dirname(root)
    else:
        from pyarrow import fs as pafs

        fs, root = filesystem_for(path)
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"data source {source.path!r}: no such file or folder")
        if info.type == pafs.FileType.Directory:
            files = _list_data_files(fs, root, source)
        else:
            files = [root]
            root = os.path.dirname(root)
    if not files:
        raise FileNotFoundError(
            f"data source {source.path!r}: no data files found (looked for "
            f"{', '.join(e for exts in READER_EXTENSIONS.values() for e in exts)})"
        )
    kinds = {reader} if reader != "auto" else {_reader_for(f) for f in files}
    if None in kinds or len(kinds) != 1:
        raise ValueError(
            f"data source {source.path!r}: cannot tell the reader from the file names "
            f"({', '.join(sorted(str(k) for k in kinds))}); set its `reader` "
            f"(one of {', '.join(READER_EXTENSIONS)})"
        )
    (reader,) = kinds
    scheme = "" if local else path.split("://", 1)[0] + "://"
    uris = tuple(scheme + f if scheme and not f.startswith(scheme) else f for f in files)
    keys = tuple(
        f"{source.path}|{source.split}|{os.path.relpath(f, root) if local else f}" for f in files
    )
    resolved = _resolved(
        index,
        source,
        reader=reader,
        requested_reader=reader,
        files=uris,
        file_keys=keys,
        fingerprint={"reader": reader, "files": [_stat(fs, f) for f in files]},
    )
    if source.columns or source.where:
        _check_columns(index, source, _file_columns(reader, uris[0]))
    return resolved


def _check_file_source(index: int, source: DataSource) -> None:
    """File readers take a split name only, and none of the hub's settings."""
    hub_only = [k for k in ("subset", "data_dir", "revision") if getattr(source, k) is not None]
    if hub_only:
        raise ValueError(
            f"{_where(index, source)}: `{hub_only[0]}` applies to hub sources (reader hf_hub) "
            "only; this source is read as files (for a local copy of a hub dataset repository, "
            "set `reader: hf_hub`)"
        )
    if any(c in source.split for c in "[]+"):
        raise ValueError(
            f"{_where(index, source)}: split {source.split!r} is a slice, which hub and "
            "save_to_disk sources support; for files give a split name and cap the rows with "
            "`limit`"
        )


def _file_columns(reader: str, path: str) -> list[str] | None:
    """The column names of a data file (jsonl: its first record's keys); None if unknown."""
    if reader == "parquet":
        import pyarrow.parquet as pq

        with _open(path, random_access=True) as f:
            return pq.ParquetFile(f).schema_arrow.names
    if reader == "jsonl":
        with _open(path) as stream:
            for line in _lines(stream):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        return None  # quarantined as malformed when read
                    return list(record) if isinstance(record, dict) else None
        return None
    if reader == "csv":
        import pyarrow.csv as pcsv

        with _open(path) as stream:
            return pcsv.open_csv(stream).schema.names
    return None


def _check_columns(index: int, source: DataSource, present: list[str] | None) -> None:
    """Every mapped column is in the source, and every filtered one after the mapping."""
    if present is None:
        return
    for field_name, column in source.columns.items():
        if column not in present:
            raise ValueError(
                f"{_where(index, source)}: columns.{field_name} names the column {column!r}, "
                f"which the source does not have; its columns: {', '.join(present)}"
            )
    mapped = mapped_names(present, source.columns)
    for column in source.where:
        if column not in mapped:
            raise ValueError(
                f"{_where(index, source)}: where.{column} filters on a column that the source "
                f"does not have; its columns (after `columns`): {', '.join(mapped)}"
            )


def _resolved(index: int, source: DataSource, **found) -> ResolvedSource:
    """A :class:`ResolvedSource` carrying ``source``'s settings plus what resolving found."""
    return ResolvedSource(
        index=index,
        path=source.path,
        format=source.format,
        subpreference=source.subpreference,
        split=source.split,
        limit=source.limit,
        columns=dict(source.columns),
        where=dict(source.where),
        **found,
    )


def _resolve_hf(index: int, source: DataSource, reader: str) -> ResolvedSource:
    """Both Hugging Face readers: find the Arrow files behind the requested split (slice)."""
    import datasets

    where = _where(index, source)
    if "+" in source.split:
        raise ValueError(
            f"{where}: split {source.split!r} names several splits; list each as its own source"
        )
    try:  # datasets' own slice syntax and rounding
        instruction = datasets.ReadInstruction.from_spec(source.split)
    except (ValueError, AssertionError) as exc:
        raise ValueError(
            f"{where}: split {source.split!r} is not a split name or a slice such as "
            f"'train[:5%]' ({exc})"
        ) from None
    split = source.split.split("[", 1)[0].split("(", 1)[0].strip()
    if reader == "hf_disk":
        if source.subset or source.data_dir or source.revision:
            raise ValueError(
                f"{where}: `subset`, `data_dir` and `revision` apply to hub sources "
                "(reader hf_hub), not to a save_to_disk folder"
            )
        obj = datasets.load_from_disk(os.path.expanduser(source.path))
    else:
        obj = load_hub_split(where, source, split)
    if isinstance(obj, datasets.DatasetDict):
        if split not in obj:
            raise ValueError(f"{where}: no split {split!r}; it has {', '.join(sorted(obj))}")
        obj = obj[split]
    if obj._indices is not None:  # a selection/shuffle view: write it out flat first
        obj = obj.flatten_indices()
    files = tuple(f["filename"] for f in obj.cache_files)
    if not files:
        raise ValueError(
            f"{where}: the dataset is held in memory, not in Arrow files; save it with "
            "`save_to_disk` and use reader=hf_disk"
        )
    (part,) = instruction.to_absolute({split: obj.num_rows})
    if part.to <= part.from_:
        raise ValueError(
            f"{where}: split {source.split!r} has no rows (the split holds {obj.num_rows})"
        )
    if source.columns or source.where:
        _check_columns(index, source, obj.column_names)
    ranges = () if (part.from_, part.to) == (0, obj.num_rows) else _file_ranges(files, part)
    # keys name the whole split, so that a slice's rows keep the ids they have in it
    settings = {k: getattr(source, k) for k in ("subset", "data_dir", "revision")}
    prefix = "|".join([source.path, *(f"{k}={v}" for k, v in settings.items() if v), split])
    return _resolved(
        index,
        source,
        reader="arrow",
        requested_reader=reader,
        files=files,
        file_keys=tuple(f"{prefix}|{i}" for i in range(len(files))),
        row_ranges=ranges,
        fingerprint={
            "reader": reader,
            **{k: v for k, v in settings.items() if v},
            "dataset_fingerprint": getattr(obj, "_fingerprint", None),
            "num_rows": part.to - part.from_,
            "files": [
                {"file": f, "size": os.path.getsize(f), "mtime_ns": os.stat(f).st_mtime_ns}
                for f in files
            ],
        },
    )


def load_hub_split(where: str, source: DataSource | EvalSet, split: str):
    """``datasets.load_dataset`` for a hub source's whole ``split``; errors name the source
    (``where``) and say the call that failed."""
    import datasets

    kwargs = {k: getattr(source, k) for k in ("data_dir", "revision") if getattr(source, k)}
    call = f"datasets.load_dataset({source.path!r}, name={source.subset!r}, split={split!r}" + (
        "".join(f", {k}={v!r}" for k, v in kwargs.items()) + ")"
    )
    try:
        return datasets.load_dataset(source.path, name=source.subset, split=split, **kwargs)
    except Exception as exc:  # datasets raises many types (hub, network, builder errors)
        hint = ""
        if source.subset and "config" in str(exc).lower():
            hint = f" (is `subset: {source.subset}` one of the dataset's subsets?)"
        raise ValueError(f"{where}: {call} failed{hint}: {type(exc).__name__}: {exc}") from exc


def _file_ranges(files: tuple[str, ...], part) -> tuple[tuple[int, int], ...]:
    """Per-file (first, stop) rows for the split rows [part.from_, part.to)."""
    ranges = []
    offset = 0
    for path in files:
        with pa.memory_map(path) as source:
            try:
                rows = sum(b.num_rows for b in pa.ipc.open_stream(source))
            except pa.ArrowInvalid:
                rows = pa.ipc.open_file(source).count_rows()
        first = min(max(part.from_ - offset, 0), rows)
        stop = min(max(part.to - offset, 0), rows)
        ranges.append((first, stop))
        offset += rows
    return tuple(ranges)


def resolve_sources(sources: list[DataSource]) -> list[ResolvedSource]:
    if not sources:
        raise ValueError("data.sources is empty: list at least one corpus to prepare")
    seen: dict[tuple, int] = {}
    for i, s in enumerate(sources):
        # the same split under two filters is two selections (e.g. one per sub-preference)
        key = (s.path, s.subset, s.data_dir, s.split, json.dumps(s.where, sort_keys=True))
        if key in seen:
            raise ValueError(
                f"data.sources.{i} repeats data.sources.{seen[key]} ({s.path!r}, split "
                f"{s.split!r}): each row would be read twice"
            )
        seen[key] = i
    return [resolve_source(i, s) for i, s in enumerate(sources)]


# --------------------------------------------------------------------------- read tasks
def _open(path: str, random_access: bool = False):
    fs, p = filesystem_for(path)
    if random_access:
        return fs.open_input_file(p)
    return fs.open_input_stream(p, compression="detect")


def _lines(stream) -> Iterator[bytes]:
    tail = b""
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail


def _json_bytes(row: dict) -> bytes:
    return json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")


def _records(
    reader: str, path: str, rows_per_block: int, first: int = 0
) -> Iterator[tuple[int, bytes]]:
    """(row index, record as JSON bytes) for every row of one file, in file order (Arrow files:
    from row ``first``, the start of a split slice)."""
    if reader == "jsonl":
        with _open(path) as stream:
            for i, line in enumerate(_lines(stream)):
                if line.strip():
                    yield i, line
    elif reader == "json":
        with _open(path) as stream:
            text = stream.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise DataValidationError(f"{path}: not valid JSON ({exc})") from None
            # JSON Lines in a .json file, as `datasets` also accepts.
            for i, line in enumerate(text.split(b"\n")):
                if line.strip():
                    yield i, line
            return
        if not isinstance(data, list):
            raise DataValidationError(
                f"{path}: a .json source must hold a list of records (or JSON Lines), got a "
                f"{type(data).__name__}"
            )
        for i, row in enumerate(data):
            yield i, _json_bytes(row) if isinstance(row, dict) else json.dumps(row).encode()
    else:
        for i, row in enumerate(_table_rows(reader, path, rows_per_block, first), start=first):
            yield i, _json_bytes(row)


def _table_rows(reader: str, path: str, rows_per_block: int, first: int = 0) -> Iterator[dict]:
    if first and reader != "arrow":
        raise ValueError(f"reader {reader!r} cannot start at row {first}")
    if reader == "parquet":
        import pyarrow.parquet as pq

        with _open(path, random_access=True) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=rows_per_block):
                yield from batch.to_pylist()
    elif reader == "csv":
        import pyarrow.csv as pcsv

        with _open(path) as stream:
            convert = pcsv.ConvertOptions(strings_can_be_null=False)
            for batch in pcsv.open_csv(stream, convert_options=convert):
                yield from batch.to_pylist()
    elif reader == "arrow":
        with _open(path, random_access=True) as f:
            try:
                batches = pa.ipc.open_stream(f)
            except pa.ArrowInvalid:
                f.seek(0)
                file_reader = pa.ipc.open_file(f)
                batches = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
            for batch in batches:
                if first >= batch.num_rows:  # before the slice: skip without decoding
                    first -= batch.num_rows
                    continue
                yield from batch.slice(first).to_pylist()
                first = 0
    else:
        raise ValueError(f"unknown reader {reader!r}")


def _read_file(
    source_index: int,
    file_index: int,
    reader: str,
    path: str,
    rows_per_block: int,
    row_range: tuple[int, int] | None = None,
) -> Iterator[pa.Table]:
    rows: list[int] = []
    records: list[bytes] = []

    def block() -> pa.Table:
        n = len(rows)
        return pa.table(
            {
                "source_index": pa.array([source_index] * n, pa.int32()),
                "file_index": pa.array([file_index] * n, pa.int32()),
                "row_index": pa.array(rows, pa.int64()),
                "record": pa.array(records, pa.binary()),
            }
        )

    first, stop = row_range or (0, None)
    for i, record in _records(reader, path, rows_per_block, first):
        if stop is not None and i >= stop:
            break
        rows.append(i)
        records.append(record)
        if len(rows) >= rows_per_block:
            yield block()
            rows, records = [], []
    if rows:
        yield block()


class RecordFilesDatasource(Datasource):
    """A Ray Data datasource: one read task per file, blocks of raw records in file order."""

    def __init__(self, source: ResolvedSource, rows_per_block: int = ROWS_PER_BLOCK):
        super().__init__()
        self._source = source
        self._rows_per_block = rows_per_block
        self._sizes = [f.get("size") for f in source.fingerprint.get("files", [])]

    def get_name(self) -> str:
        return f"Read{self._source.reader.capitalize()}"

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(self._sizes) if self._sizes and None not in self._sizes else None

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        src = self._source
        tasks = []
        for i, path in enumerate(src.files):
            meta = BlockMetadata(
                num_rows=None,
                size_bytes=self._sizes[i] if i < len(self._sizes) else None,
                input_files=[path],
                exec_stats=None,
            )
            read = functools.partial(
                _read_file,
                src.index,
                i,
                src.reader,
                path,
                self._rows_per_block,
                src.row_ranges[i] if src.row_ranges else None,
            )
            tasks.append(ReadTask(read, meta, per_task_row_limit=per_task_row_limit))
        return tasks


def read_raw(
    source: ResolvedSource, rows_per_block: int = ROWS_PER_BLOCK, num_cpus: float | None = None
):
    """The raw records of one source as a ``ray.data.Dataset`` (file order, ``limit`` applied).

    Columns: ``source_index``, ``file_index``, ``row_index``, ``record`` (JSON bytes).
    """
    ds = ray.data.read_datasource(
        RecordFilesDatasource(source, rows_per_block),
        override_num_blocks=len(source.files),
        num_cpus=num_cpus,
    )
    if source.limit is not None:
        ds = ds.limit(source.limit)
    return ds
