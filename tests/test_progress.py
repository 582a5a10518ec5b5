"""The training progress bar's reader of rank 0's metrics.jsonl (no Ray)."""

from __future__ import annotations

import json

from plot_ray.train.trainer import _last_appended_row


def test_the_progress_reader_sees_only_complete_new_rows_and_survives_a_trimmed_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert _last_appended_row(path, 0) == (None, 0)  # not written yet
    path.write_text(json.dumps({"step": 1}) + "\n" + json.dumps({"step": 2}) + "\n")
    row, offset = _last_appended_row(path, 0)
    assert row == {"step": 2} and offset == path.stat().st_size
    assert _last_appended_row(path, offset) == (None, offset)  # nothing new
    with path.open("a") as fh:
        fh.write('{"step": 3')  # a line still being written
    assert _last_appended_row(path, offset) == (None, offset)
    with path.open("a") as fh:
        fh.write("}\n")
    row, offset = _last_appended_row(path, offset)
    assert row == {"step": 3}
    # a restore trims the file to the checkpoint's steps: it is read again from the start
    path.write_text(json.dumps({"step": 1}) + "\n")
    row, offset = _last_appended_row(path, offset)
    assert row == {"step": 1} and offset == path.stat().st_size


def test_a_file_trimmed_and_regrown_past_the_offset_is_read_from_the_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 0.5}) + "\n" for s in (1, 2)))
    _, offset = _last_appended_row(path, 0)
    # the trimmed file grew back past the old offset, which now points inside its last line
    path.write_text("".join(json.dumps({"step": s, "x": "a" * 7}) + "\n" for s in (1, 2)))
    assert offset < path.stat().st_size < offset + 28
    row, offset = _last_appended_row(path, offset)
    assert row == {"step": 2, "x": "aaaaaaa"} and offset == path.stat().st_size
