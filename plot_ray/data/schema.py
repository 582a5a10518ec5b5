"""The data contracts of ``plot_ray.data``: column names, Arrow schemas, quarantine reasons.

Normalised rows (what every reader and format becomes; see :mod:`plot_ray.data.formats`)
-------------------------------------------------------------------------------------------
========================  ===========================================================
``row_id``                int64, stable: a hash of (source path, split, file, row index);
                          the same input row always gets the same id
``source``                str, the ``DataSource.path`` it came from
``subpreference``         str, the source's sub-preference tag
``prompt``                list of ``{"role": str, "content": str}`` chat messages
``responses``             list[str], best first: pairs → [chosen, rejected];
                          ranked → n responses; SFT → [response]
``scores``                list[float] aligned with ``responses``, or null
``kind``                  "pair" | "ranked" | "sft"
========================  ===========================================================

In Arrow (:data:`NORMALIZED_SCHEMA`, what :func:`plot_ray.data.read_normalized` returns) these
columns come with ``source_index``, ``subpreference_id`` and ``file_index`` / ``row_index``
(locating the row in its file), plus ``reason`` / ``detail`` / ``record``, which say why a row is quarantined; for usable rows
``reason`` and ``record`` are null and ``detail`` holds the format's note, if any (counted per
source as ``notes``, e.g. PKU-SafeRLHF's ``both_safe``). A row that its source's ``where``
filter leaves out has the reason :data:`FILTERED` and no record: counted, not quarantined.

Tokenized shards (``{output_dir}/tokenized/part-*.parquet``, :data:`TOKENIZED_SCHEMA`)
----------------------------------------------------------------------------------------
========================  ===========================================================
``row_id``                int64, as above
``subpreference_id``      int32, index into the artifact's sorted sub-preference list
``prompt_ids``            list[int32]: the prompt rendered with the chat template and
                          ``add_generation_prompt=True``
``response_ids``          list[list[int32]], best first; each is the response content's ids
                          followed by ``eos_token_id`` (unless ``length_policy=truncate`` cut it)
``scores``                list[float64] or null
``kind``                  "pair" | "ranked" | "sft"
========================  ===========================================================

``prompt_ids + response_ids[k]`` is the k-th full sequence; training masks the prompt.

Quarantine (``{output_dir}/quarantine.parquet``, :data:`QUARANTINE_SCHEMA`)
---------------------------------------------------------------------------
One row per input row that was not used: ``source``, ``subpreference``, ``file``,
``row_index`` (0-based; for jsonl the line number - 1), ``row_id``, ``reason`` (one of
:data:`REASONS`), ``detail`` (a sentence) and ``record`` (the raw record as text).

The output folder
-----------------
``data.output_dir`` holds :data:`TOKENIZED_DIR`, :data:`QUARANTINE_FILE`, :data:`SUMMARY_FILE`,
the token-count artifact (:mod:`plot_ray.data.counts`), Ray Data's log of the run
(:data:`LOG_FILE`) and, with ``data.eval_sources``, the same (less counts and log) under
:data:`EVAL_DIR`. Prepare writes these names and training reads them: both take them from here.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "DataValidationError",
    "EVAL_DIR",
    "FILTERED",
    "LOG_FILE",
    "MESSAGE_TYPE",
    "NORMALIZED_SCHEMA",
    "QUARANTINE_FILE",
    "QUARANTINE_SCHEMA",
    "RAW_SCHEMA",
    "REASONS",
    "SUMMARY_FILE",
    "TOKENIZED_COLUMNS",
    "TOKENIZED_DIR",
    "TOKENIZED_SCHEMA",
    "WORK_SCHEMA",
]


# The layout of a prepare output folder (``data.output_dir``), relative to it.
TOKENIZED_DIR = "tokenized"
QUARANTINE_FILE = "quarantine.parquet"
SUMMARY_FILE = "summary.json"
EVAL_DIR = "eval"
LOG_FILE = "logs/prepare.log"


class DataValidationError(ValueError):
    """Rows were quarantined while ``data.strict`` is set, or the input cannot be read at all."""


# Quarantine reasons and what each means (printed in summaries, documented for users).
REASONS: dict[str, str] = {
    "malformed": "not a JSON object / not valid UTF-8 / not a record",
    "unknown_format": "the record's keys match no supported format",
    "missing_field": "a required field is missing or null",
    "bad_type": "a field has the wrong type (e.g. a number where text is expected)",
    "bad_scores": "scores are not finite numbers, one per response",
    "empty_prompt": "the prompt is empty",
    "empty_response": "a response is empty or whitespace",
    "identical_responses": "two responses (e.g. chosen and rejected) are identical",
    "too_few_responses": "a ranked row has fewer than 2 responses",
    "hh_missing_assistant": "an HH-RLHF transcript has no 'Assistant:' turn",
    "hh_split_failed": "the HH-RLHF transcripts do not share a prompt up to the final reply",
    "inconsistent_labels": "a row's own labels contradict each other (PKU-SafeRLHF: the "
    "response flagged unsafe is named the safer one)",
    "template_error": "the tokenizer's chat template rejected the prompt",
    "prompt_too_long": "prompt longer than data.max_prompt_length (length_policy=drop)",
    "too_long": "prompt + response longer than data.max_length (length_policy=drop)",
    "identical_after_truncation": "responses became identical after truncation",
}
# The ``reason`` of a row that its source's ``where`` filter leaves out: not a quarantine
# reason (the row is fine, just not selected); ``prepare`` counts these rows per source
# (``filtered``) and writes them nowhere.
FILTERED = "filtered"

MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

# Blocks that the readers produce: one record per row, as JSON text (bytes, so that invalid
# UTF-8 is caught and quarantined instead of being replaced silently).
RAW_SCHEMA = pa.schema(
    [("file_index", pa.int32()), ("row_index", pa.int64()), ("record", pa.binary())]
)

# Located rows; ``reason`` is null for usable rows, ``record`` is kept only for rejected ones.
_LOCATION = [
    ("row_id", pa.int64()),
    ("source_index", pa.int32()),
    ("file_index", pa.int32()),
    ("row_index", pa.int64()),
    ("subpreference_id", pa.int32()),
]
_REJECTION = [("reason", pa.string()), ("detail", pa.string()), ("record", pa.string())]

NORMALIZED_SCHEMA = pa.schema(
    [
        *_LOCATION,
        ("source", pa.string()),
        ("subpreference", pa.string()),
        ("kind", pa.string()),
        ("prompt", MESSAGE_TYPE),
        ("responses", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())),
        *_REJECTION,
    ]
)

TOKENIZED_SCHEMA = pa.schema(
    [
        ("row_id", pa.int64()),
        ("subpreference_id", pa.int32()),
        ("prompt_ids", pa.list_(pa.int32())),
        ("response_ids", pa.list_(pa.list_(pa.int32()))),
        ("scores", pa.list_(pa.float64())),
        ("kind", pa.string()),
    ]
)
TOKENIZED_COLUMNS = tuple(TOKENIZED_SCHEMA.names)

# What the tokenizer actors hand to the writer: tokenized columns + location + rejection.
WORK_SCHEMA = pa.schema(
    [
        *_LOCATION,
        ("kind", pa.string()),
        ("prompt_ids", pa.list_(pa.int32())),
        ("response_ids", pa.list_(pa.list_(pa.int32()))),
        ("scores", pa.list_(pa.float64())),
        ("truncated", pa.bool_()),
        *_REJECTION,
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("subpreference", pa.string()),
        ("file", pa.string()),
        ("row_index", pa.int64()),
        ("row_id", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("record", pa.string()),
    ]
)
