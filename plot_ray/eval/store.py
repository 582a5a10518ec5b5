"""Results on disk, as they are produced: parquet shards keyed by model, task, stage and shard.

    <eval.output_dir>/<eval.name>/
        cases/<task>.parquet                      every task's cases (the same for every model)
        cases/manifest.json                       what the cases were built from + shard size
        cases/quarantine.jsonl                    evaluation-set rows set aside, with reasons
        results/<model>/settings.json             the model path and generation settings
        results/<model>/<task>/<stage>/shard-00000.parquet
                                                  stage: completions | scores
        metrics.json, report.md, figures/*.png    computed from the shards (plot_ray.eval.report)

A shard file appears only when the whole shard is done (written to a temporary name in the same
folder, then renamed), so after a kill every file present is complete and a rerun redoes only
the shards that are missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ResultStore", "SettingsMismatchError"]


class SettingsMismatchError(RuntimeError):
    """Results on disk were made with other inputs or settings than the run asks for."""


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _atomic_write_json(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class ResultStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    # ------------------------------------------------------------------ cases and settings
    def write_cases(self, cases: dict[str, list[dict]], manifest: dict) -> None:
        """Write the cases once; a later run must ask for the same ones (same manifest)."""
        self.check_or_write_json(self.root / "cases" / "manifest.json", manifest, "the cases")
        for task, rows in cases.items():
            path = self.root / "cases" / f"{task}.parquet"
            if not path.is_file():
                _atomic_write_table(pa.Table.from_pylist(rows), path)

    def write_quarantine(self, rows: list[dict]) -> Path:
        """The evaluation sets' rows that were set aside (``cases/quarantine.jsonl``: set, row,
        reason, detail, the record as read)."""
        path = self.root / "cases" / "quarantine.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        os.replace(tmp, path)
        return path

    def check_or_write_json(
        self, path: Path, expected: dict, what: str, name_key: str = "eval.name"
    ) -> None:
        """Write ``expected`` to ``path`` once; later it must be equal, or
        :class:`SettingsMismatchError` names the keys that changed (and ``name_key``, the
        config key that picks another folder)."""
        if path.is_file():
            found = json.loads(path.read_text())
            if found != json.loads(json.dumps(expected, sort_keys=True)):
                changed = sorted(
                    k for k in set(found) | set(expected) if found.get(k) != expected.get(k)
                )
                raise SettingsMismatchError(
                    f"{self.root} holds results made with other settings for {what} "
                    f"(changed: {', '.join(changed)}): rerun with --force to start over, or "
                    f"choose another {name_key}"
                )
            return
        _atomic_write_json(expected, path)

    def check_model_settings(self, model: str, settings: dict) -> None:
        self.check_or_write_json(
            self.root / "results" / model / "settings.json", settings, f"model {model!r}"
        )

    # ---------------------------------------------------------------------------- shards
    def shard_path(self, model: str, task: str, stage: str, shard: int) -> Path:
        return self.root / "results" / model / task / stage / f"shard-{shard:05d}.parquet"

    def has(self, model: str, task: str, stage: str, shard: int) -> bool:
        return self.shard_path(model, task, stage, shard).is_file()

    def write(self, model: str, task: str, stage: str, shard: int, rows: list[dict]) -> Path:
        path = self.shard_path(model, task, stage, shard)
        _atomic_write_table(pa.Table.from_pylist(rows), path)
        return path

    def write_table(self, path: Path, rows: list[dict]) -> Path:
        """Any result file under the store, written whole (see the module docstring)."""
        _atomic_write_table(pa.Table.from_pylist(rows), path)
        return path

    def write_json(self, path: Path, obj: dict) -> Path:
        """Any JSON result file under the store, written whole."""
        _atomic_write_json(obj, path)
        return path

    def read_table(self, path: Path) -> list[dict]:
        return pq.read_table(path).to_pylist()

    def read(self, model: str, task: str, stage: str, shard: int) -> list[dict]:
        return pq.read_table(self.shard_path(model, task, stage, shard)).to_pylist()

    def read_all(self, model: str, task: str, stage: str) -> list[dict]:
        folder = self.root / "results" / model / task / stage
        rows: list[dict] = []
        for path in sorted(folder.glob("shard-*.parquet")):
            rows.extend(pq.read_table(path).to_pylist())
        return rows
