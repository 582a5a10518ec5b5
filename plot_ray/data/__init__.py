"""Preference data on Ray Data: read, validate, tokenize, count tokens, feed training.

``run_prepare(cfg)`` is ``plot-ray prepare``: it reads every ``data.sources`` corpus (jsonl,
json, parquet, csv, Hugging Face ``save_to_disk`` folders or hub names), normalises TRL,
HH-RLHF, ranked and SFT records to one schema, quarantines what it cannot use (with a reason,
never silently), tokenizes with the model's chat template in an actor pool, and writes

- ``{output_dir}/tokenized/part-*.parquet``: the training rows (schema in
  :mod:`plot_ray.data.schema`);
- ``{output_dir}/quarantine.parquet`` and ``summary.json``;
- ``{output_dir}/token_counts.safetensors`` + ``.json``: response-token counts per
  sub-preference (:class:`TokenCounts`), the input of PLOT's preference distributions.

Training reads the shards with :func:`load_tokenized_dataset` and batches them with
:func:`collate_preference_batch`. Module map, in data-flow order: ``schema`` (the contracts:
Arrow schemas, quarantine reasons, output folder names), ``formats`` (record → normalised row,
no Ray), ``readers`` (sources → raw records), ``tokenization`` (normalise + tokenize batches),
``sink`` (the write tasks: shards, quarantine parts, per-shard counts), ``counts`` (the
artifact), ``pipeline`` (the Ray Data pass, ``run_prepare``), ``report`` (what prepare prints
and writes about itself: stage lines, summary table, ``summary.json``, Ray Data's log file),
``feed`` (training input).

The normalised schema
---------------------
Per row: ``row_id`` (int64, stable: a hash of source path, split, file and row index),
``source`` (the source path), ``subpreference`` (the source's tag), ``prompt`` (chat messages,
a list of ``{"role", "content"}``), ``responses`` (list[str], best first: pairs →
[chosen, rejected], ranked → n, SFT → [response]), ``scores`` (list[float] or null) and
``kind`` ("pair" | "ranked" | "sft"). See :mod:`plot_ray.data.schema` for the Arrow schemas of
normalised rows, tokenized shards and the quarantine file.
"""

from plot_ray.data.counts import TokenCounts, count_response_tokens
from plot_ray.data.feed import (
    PreferenceCollateFn,
    collate_preference_batch,
    load_tokenized_dataset,
    preference_collate_fn,
    select_responses,
)
from plot_ray.data.formats import NormalizedRow, RowRejected, normalize_record, split_hh_transcripts
from plot_ray.data.pipeline import PrepareResult, SourceSummary, read_normalized, run_prepare
from plot_ray.data.readers import READ_CPUS, ResolvedSource, resolve_source, resolve_sources
from plot_ray.data.schema import REASONS, DataValidationError
from plot_ray.data.tokenization import Normalizer, PreferenceTokenizer, tokenize_normalized

__all__ = [
    "DataValidationError",
    "NormalizedRow",
    "Normalizer",
    "PreferenceCollateFn",
    "PreferenceTokenizer",
    "PrepareResult",
    "READ_CPUS",
    "REASONS",
    "ResolvedSource",
    "RowRejected",
    "SourceSummary",
    "TokenCounts",
    "collate_preference_batch",
    "count_response_tokens",
    "load_tokenized_dataset",
    "normalize_record",
    "preference_collate_fn",
    "read_normalized",
    "resolve_source",
    "resolve_sources",
    "run_prepare",
    "select_responses",
    "split_hh_transcripts",
    "tokenize_normalized",
]
