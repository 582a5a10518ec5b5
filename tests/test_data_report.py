"""What ``plot-ray prepare`` shows on the terminal and where Ray Data's own output goes.

The first tests need no Ray: the progress line read from shard footers, and the routing of the
``ray.data`` logger. The last two run the real pipeline (local Ray, the tiny model's tokenizer)
on the smallest corpus of the synthetic benchmark, quiet (the default) and verbose.
"""

from __future__ import annotations

import logging
import re
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plot_ray.config import load_config
from plot_ray.data import report as report_module
from plot_ray.data import run_prepare
from plot_ray.data.report import ShardProgress, ray_data_log
from plot_ray.data.schema import LOG_FILE

# Lines that only Ray Data itself prints (its logger and its non-interactive progress report).
RAY_DATA_MARKERS = ("Execution plan of Dataset", "Starting execution of Dataset", "Total Progress")


@pytest.fixture
def ray_data_terminal(monkeypatch):
    """Point Ray Data's terminal handlers at the current ``sys.stderr``.

    They keep the stream that was ``sys.stderr`` when ``ray.data`` was imported, which under
    pytest is the session's capture, invisible to ``capfd``; a real terminal run writes to the
    real stderr.
    """
    import sys

    import ray.data  # noqa: F401  (configures the ``ray.data`` logger)

    handlers = [  # pytest adds its own capture handlers to the logger too: leave those
        h
        for h in logging.getLogger("ray.data").handlers
        if isinstance(h, logging.StreamHandler)
        and not isinstance(h, logging.FileHandler)
        and type(h).__module__.startswith("ray.")
    ]
    assert handlers, "Ray Data has no terminal handler to route"
    for h in handlers:
        monkeypatch.setattr(h, "stream", sys.stderr)
    return handlers


def _write_rows(path, n):
    pq.write_table(pa.table({"x": list(range(n))}), path)


def test_shard_progress_counts_finished_shards_and_quarantine_parts_only(tmp_path):
    shards, parts = tmp_path / "tokenized", tmp_path / "parts"
    shards.mkdir()
    parts.mkdir()
    _write_rows(shards / "part-0000-000000-000000000000.parquet", 3)
    _write_rows(shards / "part-0000-000000-000000000003.parquet", 5)
    _write_rows(shards / ".tmp-part-0000-000001-000000000000.parquet", 7)  # still being written
    _write_rows(parts / "part-0000-000000-000000000000.parquet", 2)
    progress = ShardProgress("train", shards, parts, say=print)
    # 3 + 5 rows in two finished shards; the temporary file is not counted yet.
    assert re.fullmatch(
        r"  train: 8 rows written in 2 shard\(s\), 2 quarantined \(\d+s\)", progress.line()
    )


def test_shard_progress_says_nothing_after_it_stops_and_speaks_while_running(tmp_path):
    said: list[str] = []
    with ShardProgress("eval", tmp_path, tmp_path, said.append, every_s=0.05):
        for _ in range(200):  # at most ~2 s for the first tick
            if said:
                break
            time.sleep(0.01)
    n = len(said)
    time.sleep(0.2)
    assert n >= 1 and said[0].startswith("  eval: 0 rows written in 0 shard(s)")
    assert len(said) == n  # the thread stopped with the block


def test_ray_data_log_keeps_ray_data_info_off_the_terminal_but_in_the_file(
    tmp_path, capfd, ray_data_terminal
):
    log = logging.getLogger("ray.data._internal.some_operator")
    path = tmp_path / "logs" / "prepare.log"
    with ray_data_log(path, verbose=False) as handler:
        log.info("Execution plan of Dataset X: Read -> Map")
        log.warning("an operator is slow")
        log.error("a task failed: ValueError")
    log.info("after the block")
    out, err = capfd.readouterr()
    terminal = out + err
    assert "Execution plan" not in terminal and "an operator is slow" not in terminal
    assert "a task failed: ValueError" in terminal  # errors always reach the user
    text = path.read_text()
    assert "Execution plan of Dataset X" in text and "an operator is slow" in text
    assert "a task failed" in text and "after the block" not in text
    assert handler.warnings == 2  # the warning and the error
    assert "after the block" in terminal  # the terminal handler is restored afterwards


def test_ray_data_log_verbose_shows_ray_data_info_on_the_terminal_too(
    tmp_path, capfd, ray_data_terminal
):
    path = tmp_path / "prepare.log"
    with ray_data_log(path, verbose=True):
        logging.getLogger("ray.data.x").info("Execution plan of Dataset Y")
    _, err = capfd.readouterr()
    assert "Execution plan of Dataset Y" in err
    assert "Execution plan of Dataset Y" in path.read_text()


# ---------------------------------------------------------------------- a real prepare
def _config(synth_dir, tiny_model_dir, out):
    source = {"path": str(synth_dir / "logic" / "validation.jsonl"), "subpreference": "logic"}
    return load_config(
        None,
        {
            "data": {
                "sources": [source],
                "output_dir": str(out),
                "tokenize_actors": 1,
            },
            "model": {"name_or_path": str(tiny_model_dir)},
        },
    )


@pytest.mark.ray
def test_prepare_by_default_prints_its_own_stage_lines_and_logs_ray_data_to_a_file(
    ray_local, synth_dir, tiny_model_dir, tmp_path, capfd, monkeypatch, ray_data_terminal
):
    source = synth_dir / "logic" / "validation.jsonl"
    n_rows = sum(1 for line in source.read_text().splitlines() if line.strip())
    out = tmp_path / "prepared"
    monkeypatch.setattr(report_module, "PROGRESS_EVERY_S", 0.5)  # a pass takes seconds
    printed: list[str] = []
    capfd.readouterr()  # drop what earlier fixtures printed
    run_prepare(_config(synth_dir, tiny_model_dir, out), progress=True, print_fn=printed.append)
    out_text, err_text = capfd.readouterr()
    text = "\n".join(printed)

    log_path = out / LOG_FILE
    assert log_path == out / "logs" / "prepare.log" and log_path.is_file()
    assert f"Ray Data's log: {log_path}" in text
    read_line = rf"  read {re.escape(str(source))} \(jsonl, 1 file\(s\), [\d.]+ KiB\) → logic"
    assert re.search(read_line, text)
    assert "sub-preferences: logic" in text
    assert "train: reading, tokenizing and writing shards…" in text
    assert re.search(r"  train: \d+ rows written in \d shard\(s\), 0 quarantined \(\d+s\)", text)
    assert re.search(
        rf"train: {n_rows} rows read → {n_rows} written in 1 shard\(s\); 0 quarantined, "
        r"0 truncated \([\d.]+s\)",
        text,
    )
    assert "quarantined: none" in text and "Q_diff for 'logic'" in text
    # Ray Data said its usual things, into the file and not onto the terminal.
    log_text = log_path.read_text()
    assert "Execution plan of Dataset" in log_text and "WriteShards" in log_text
    for marker in RAY_DATA_MARKERS:
        assert marker not in out_text and marker not in err_text, marker
    assert out_text.strip() == ""  # everything went through print_fn


@pytest.mark.ray
def test_prepare_verbose_shows_ray_data_on_the_terminal(
    ray_local, synth_dir, tiny_model_dir, tmp_path, capfd, ray_data_terminal
):
    out = tmp_path / "prepared"
    capfd.readouterr()
    run_prepare(
        _config(synth_dir, tiny_model_dir, out), progress=False, print_fn=None, verbose=True
    )
    _, err_text = capfd.readouterr()
    assert "Execution plan of Dataset" in err_text
    assert "Execution plan of Dataset" in (out / LOG_FILE).read_text()
