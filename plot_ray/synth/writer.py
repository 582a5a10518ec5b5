"""Atomic, deterministic JSON-lines writing (and reading) for the synthetic benchmark."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path


def dumps_row(row: dict) -> str:
    """One JSON line; key order is the row's insertion order, so output is byte-stable."""
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename over ``path``.

    A killed run leaves either the previous file or the complete new one, never half a file
    (a stray ``.tmp-<pid>`` file at worst).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, rows: Iterable[dict]) -> tuple[int, str]:
    """Atomically write rows as JSON lines; returns (row count, sha256 of the bytes)."""
    lines = [dumps_row(r) for r in rows]
    data = ("\n".join(lines) + "\n").encode("utf-8") if lines else b""
    atomic_write_bytes(path, data)
    return len(lines), hashlib.sha256(data).hexdigest()


def write_json(path: Path, obj: dict) -> None:
    data = (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    atomic_write_bytes(path, data)


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file written by this package (blank lines are skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
