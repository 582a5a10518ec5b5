"""The prepare pass's sink: tokenized shards and quarantine parts, written atomically by Ray tasks.

:class:`PreparedDatasink` runs in Ray Data's parallel write tasks. Each task receives a bundle of
at least ``shard_rows`` tokenized rows (the output of the tokenizer actors, usable and rejected
rows together), and

- writes the usable rows as ``{output_dir}/tokenized/part-SSSS-FFFFFF-RRRRRRRRRRRR.parquet``,
  named after the bundle's first input row (source, file, row index), so that a second run on
  the same input writes identical files and name order is input order;
- writes the rejected rows as a quarantine part under ``{output_dir}/.quarantine_parts/``
  (rows that a source's ``where`` filter left out are only counted);
- returns only small things to the driver: the shard name, the bundle's sparse response-token
  counts (:func:`~plot_ray.data.counts.count_response_tokens`) and per-source row statistics.

Every file is written under a temporary name and renamed, so a killed run never leaves a
half-written shard that looks finished. :func:`merge_quarantine` turns the parts into one
``quarantine.parquet`` on the driver once the pass is done.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from plot_ray.data.counts import count_response_tokens
from plot_ray.data.readers import ResolvedSource, filesystem_for
from plot_ray.data.schema import (
    FILTERED,
    QUARANTINE_FILE,
    QUARANTINE_SCHEMA,
    TOKENIZED_COLUMNS,
    TOKENIZED_DIR,
)

__all__ = ["QUARANTINE_PARTS_DIR", "PreparedDatasink", "merge_quarantine"]

# Quarantine parts of a running pass; merged into QUARANTINE_FILE and removed when it ends.
QUARANTINE_PARTS_DIR = ".quarantine_parts"


class PreparedDatasink(Datasink):
    """Writes tokenized shards and quarantine parts, and returns each bundle's token counts.

    ``write`` runs in parallel write tasks; its return values reach the driver through
    ``on_write_complete`` (``self.results``, one dict per non-empty bundle with keys ``shard``,
    ``keys``/``counts`` (sparse counts), ``sources`` and ``rows``), where the counts are summed.
    """

    def __init__(
        self,
        output_dir: str,
        sources: list[ResolvedSource],
        subpreferences: list[str],
        vocab_size: int,
        special_ids: list[int],
        ranked_pairing: str,
        shard_rows: int,
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
        reason = table.column("reason")
        rejected = pc.is_valid(reason)
        filtered = pc.fill_null(pc.equal(reason, FILTERED), False)
        good = table.filter(pc.invert(rejected))
        bad = table.filter(pc.and_(rejected, pc.invert(filtered)))
        fs, root = filesystem_for(self._output_dir)
        if good.num_rows:
            _write_atomic(
                good.select(list(TOKENIZED_COLUMNS)), fs, f"{root}/{TOKENIZED_DIR}/{name}"
            )
        if bad.num_rows:
            _write_atomic(self._quarantine_table(bad), fs, f"{root}/{QUARANTINE_PARTS_DIR}/{name}")
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
                "file": [m[2][f] for m, f in zip(meta, files, strict=True)],
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
    folder, name = path.rsplit("/", 1)
    tmp = f"{folder}/.tmp-{name}"
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, path)


def _source_stats(table: pa.Table) -> dict[int, dict[str, Any]]:
    """Per source index: rows in/out, filtered out by ``where``, truncated, quarantined per
    reason, usable rows per kind and per note (the format's label of a usable row, in
    ``detail``)."""
    src = table.column("source_index").to_numpy()
    reasons = table.column("reason").to_pylist()
    details = table.column("detail").to_pylist()
    kinds = table.column("kind").to_pylist()
    truncated = table.column("truncated").to_numpy(zero_copy_only=False)
    out: dict[int, dict[str, Any]] = {}
    for s in np.unique(src):
        mask = src == s
        idx = np.flatnonzero(mask)
        quarantined = Counter(reasons[i] for i in idx if reasons[i] not in (None, FILTERED))
        out[int(s)] = {
            "rows_in": int(mask.sum()),
            "rows_out": int(sum(reasons[i] is None for i in idx)),
            "filtered": int(sum(reasons[i] == FILTERED for i in idx)),
            "truncated": int(truncated[mask].sum()),
            "quarantined": dict(quarantined),
            "kinds": dict(Counter(kinds[i] for i in idx if reasons[i] is None)),
            "notes": dict(Counter(details[i] for i in idx if reasons[i] is None and details[i])),
        }
    return out


def _row_stats(good: pa.Table) -> dict[int, int]:
    """Usable rows per sub-preference id."""
    if not good.num_rows:
        return {}
    sub = good.column("subpreference_id").to_numpy()
    ids, n = np.unique(sub, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, n, strict=True)}


def merge_quarantine(out: Path) -> None:
    """The write tasks' quarantine parts → ``{out}/quarantine.parquet`` (in input order; an
    empty file with the schema when nothing was quarantined); the parts are removed."""
    parts_dir = out / QUARANTINE_PARTS_DIR
    parts = sorted(parts_dir.glob("part-*.parquet"))
    tables = [pq.read_table(p, schema=QUARANTINE_SCHEMA) for p in parts]
    table = pa.concat_tables(tables) if tables else QUARANTINE_SCHEMA.empty_table()
    pq.write_table(table, out / QUARANTINE_FILE)
    shutil.rmtree(parts_dir, ignore_errors=True)
