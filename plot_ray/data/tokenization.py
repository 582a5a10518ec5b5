"""Normalise and tokenize batches of raw records (Arrow tables in, Arrow tables out).

:class:`Normalizer` turns raw records (:data:`~plot_ray.data.schema.RAW_SCHEMA` plus
``source_index``) into normalised rows; :func:`tokenize_normalized` tokenizes them with the
model's tokenizer and chat template and applies the length policy; :class:`PreferenceTokenizer`
composes the two as the callable class that Ray Data's actor pool runs (one tokenizer per actor).
All three are plain Python and run the same in a single process.

Tokenization, exactly: ``prompt_ids`` are the ids of
``tokenizer.apply_chat_template(prompt, add_generation_prompt=True)``; each response's ids are
``tokenizer(response, add_special_tokens=False)`` followed by ``eos_token_id``. Length policy:
a prompt longer than ``max_prompt_length`` keeps its last ``max_prompt_length`` tokens (the
generation prompt stays), and a response that does not fit in ``max_length`` with its prompt
loses its tail (and so its eos) under ``truncate``; under ``drop`` such rows are quarantined.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from plot_ray.config import LengthPolicy
from plot_ray.data.formats import RowRejected, map_columns, normalize_record, passes_where
from plot_ray.data.readers import ResolvedSource, row_id
from plot_ray.data.schema import FILTERED, NORMALIZED_SCHEMA, WORK_SCHEMA

__all__ = [
    "Normalizer",
    "PreferenceTokenizer",
    "encode_texts",
    "load_tokenizer_quickly",
    "row_subpreference",
    "tokenize_normalized",
]

DEFAULT_SUBPREFERENCE = "default"
# What AutoTokenizer builds for a folder that names no model-specific tokenizer class.
_GENERIC_FAST_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def row_subpreference(record: object) -> str:
    """The sub-preference a record names in its own ``subpreference`` field (``default`` if
    none), used for sources whose config leaves ``subpreference`` at ``default``."""
    value = record.get("subpreference") if isinstance(record, dict) else None
    if value is None:
        return DEFAULT_SUBPREFERENCE
    if not isinstance(value, str) or not value.strip():
        raise RowRejected(
            "bad_type", f"field 'subpreference' must be a non-empty string, got {value!r}"
        )
    return value


class Normalizer:
    """Raw records → normalised rows (:data:`~plot_ray.data.schema.NORMALIZED_SCHEMA`).

    Rejected rows stay in the output with ``reason``/``detail``/``record`` set, in input order;
    rows that their source's ``where`` filter leaves out stay too, with the reason
    :data:`~plot_ray.data.schema.FILTERED` (so that the writer counts them).
    """

    def __init__(self, sources: Sequence[ResolvedSource], subpreferences: Sequence[str]):
        self._sub_ids = {name: i for i, name in enumerate(subpreferences)}
        self._sources = {s.index: s for s in sources}

    def __call__(self, raw: pa.Table) -> pa.Table:
        cols: dict[str, list] = {name: [] for name in NORMALIZED_SCHEMA.names}
        for src, file_index, row_index, data in zip(
            raw.column("source_index").to_pylist(),
            raw.column("file_index").to_pylist(),
            raw.column("row_index").to_pylist(),
            raw.column("record").to_pylist(),
            strict=True,
        ):
            source = self._sources[src]
            sub = source.subpreference
            cols["row_id"].append(row_id(source.file_keys[file_index], row_index))
            cols["source_index"].append(src)
            cols["file_index"].append(file_index)
            cols["row_index"].append(row_index)
            cols["source"].append(source.path)
            try:
                try:
                    record = json.loads(data.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise RowRejected("malformed", f"not valid JSON / UTF-8: {exc}") from None
                if isinstance(record, dict):
                    record = map_columns(record, source.columns)
                    if source.where and not passes_where(record, source.where):
                        raise RowRejected(FILTERED)
                if source.tags_per_row:
                    sub = row_subpreference(record)
                row = normalize_record(record, source.format)
            except RowRejected as rej:
                cols["subpreference"].append(sub)
                cols["subpreference_id"].append(self._sub_ids.get(sub, -1))
                for name in ("kind", "prompt", "responses", "scores"):
                    cols[name].append(None)
                cols["reason"].append(rej.reason)
                cols["detail"].append(rej.detail)
                kept = rej.reason != FILTERED  # a filtered row is counted, not quarantined
                cols["record"].append(data.decode("utf-8", errors="replace") if kept else None)
                continue
            if sub not in self._sub_ids:
                raise ValueError(
                    f"sub-preference {sub!r} of {source.path} was not seen when the sub-preferences "
                    "were listed (did the input change during the run?)"
                )
            cols["subpreference"].append(sub)
            cols["subpreference_id"].append(self._sub_ids[sub])
            cols["kind"].append(row.kind)
            cols["prompt"].append(row.prompt)
            cols["responses"].append(row.responses)
            cols["scores"].append(row.scores)
            cols["reason"].append(None)
            cols["detail"].append(row.note)  # usable rows: the format's note, counted per source
            cols["record"].append(None)
        return pa.Table.from_pydict(cols, schema=NORMALIZED_SCHEMA)


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """``tokenizer(texts, add_special_tokens=False)["input_ids"]``, faster where that is exact.

    For the generic fast tokenizer class the Rust backend is called directly (transformers'
    per-text ``BatchEncoding`` conversion is ~15% of tokenization time); subclasses, which may
    add Python-side behaviour, go through the tokenizer's own ``__call__``.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        backend is not None
        and type(tokenizer).__name__ in _GENERIC_FAST_CLASSES
        and not getattr(tokenizer, "split_special_tokens", False)
        and backend.truncation is None
        and backend.padding is None
    ):
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def tokenize_normalized(
    table: pa.Table,
    tokenizer,
    max_length: int,
    max_prompt_length: int,
    length_policy: LengthPolicy = "truncate",
) -> pa.Table:
    """Normalised rows → tokenized rows (:data:`~plot_ray.data.schema.WORK_SCHEMA`), in order.

    Rows already rejected pass through; rows that the chat template or the length policy
    reject get their ``reason``. Deterministic for a given input and tokenizer.
    """
    n = table.num_rows
    reason = table.column("reason").to_pylist()
    detail = table.column("detail").to_pylist()
    record = table.column("record").to_pylist()
    kinds = table.column("kind").to_pylist()
    prompts = table.column("prompt").to_pylist()
    responses = table.column("responses").to_pylist()

    def reject(i: int, why: str, text: str) -> None:
        reason[i], detail[i] = why, text
        record[i] = json.dumps(
            {"prompt": prompts[i], "responses": responses[i]}, ensure_ascii=False
        )

    rows = [i for i in range(n) if reason[i] is None]
    try:  # one call for the batch (~30% less overhead than one call per row) ...
        rendered = (
            list(
                tokenizer.apply_chat_template(
                    [prompts[i] for i in rows], add_generation_prompt=True, tokenize=False
                )
            )
            if rows
            else []
        )
    except Exception:  # ... and row by row to find the prompts that the template rejects
        rendered, good = [], []
        for i in rows:
            try:
                rendered.append(
                    tokenizer.apply_chat_template(
                        prompts[i], add_generation_prompt=True, tokenize=False
                    )
                )
                good.append(i)
            except Exception as exc:  # jinja raises its own types; the failure is this row's
                reject(i, "template_error", f"{type(exc).__name__}: {exc}")
        rows = good

    prompt_ids: list[list[int] | None] = [None] * n
    response_ids: list[list[list[int]] | None] = [None] * n
    truncated = [False] * n
    if rows:
        eos = tokenizer.eos_token_id
        enc_prompts = encode_texts(tokenizer, rendered)
        enc_flat = encode_texts(tokenizer, [r for i in rows for r in responses[i]])
        at = 0
        for i, p in zip(rows, enc_prompts, strict=True):
            k = len(responses[i])
            rs = [r + [eos] for r in enc_flat[at : at + k]]
            at += k
            cut = False
            if len(p) > max_prompt_length:
                if length_policy == "drop":
                    reject(i, "prompt_too_long", f"{len(p)} > {max_prompt_length} prompt tokens")
                    continue
                p, cut = p[-max_prompt_length:], True
            room = max_length - len(p)
            longest = max(len(r) for r in rs)
            if longest > room:
                if length_policy == "drop":
                    reject(i, "too_long", f"{len(p)} + {longest} > {max_length} tokens")
                    continue
                rs, cut = [r[:room] for r in rs], True
                if len({tuple(r) for r in rs}) < len(rs):
                    reject(i, "identical_after_truncation", f"cut to {room} response tokens")
                    continue
            prompt_ids[i], response_ids[i], truncated[i] = p, rs, cut

    ok = [r is None for r in reason]
    columns = {
        "row_id": table.column("row_id"),
        "source_index": table.column("source_index"),
        "file_index": table.column("file_index"),
        "row_index": table.column("row_index"),
        "subpreference_id": table.column("subpreference_id"),
        "kind": pa.array(
            [k if good else None for k, good in zip(kinds, ok, strict=True)], pa.string()
        ),
        "prompt_ids": pa.array(prompt_ids, WORK_SCHEMA.field("prompt_ids").type),
        "response_ids": pa.array(response_ids, WORK_SCHEMA.field("response_ids").type),
        "scores": pa.array(
            [
                s if good else None
                for s, good in zip(table.column("scores").to_pylist(), ok, strict=True)
            ],
            pa.list_(pa.float64()),
        ),
        "truncated": pa.array(truncated, pa.bool_()),
        "reason": pa.array(reason, pa.string()),
        "detail": pa.array(detail, pa.string()),
        "record": pa.array(record, pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=WORK_SCHEMA)


def load_tokenizer_quickly(name_or_path: str, trust_remote_code: bool = False):
    """:func:`plot_ray.models.loading.load_tokenizer`, minus ~5 s of imports where possible.

    ``AutoTokenizer`` imports transformers' model code (and torch) before it looks at the
    folder. When a local folder names the generic fast tokenizer class (``tokenizer_class``
    ``TokenizersBackend`` / ``PreTrainedTokenizerFast``, no remote code), that class is what
    ``AutoTokenizer`` would build, so it is built directly; anything else goes through
    ``load_tokenizer``. Either way the result has the same pad-token default and fingerprint.
    """
    config_file = Path(name_or_path) / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        if config.get("tokenizer_class") in _GENERIC_FAST_CLASSES and "auto_map" not in config:
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(name_or_path)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            return tok
    from plot_ray.models.loading import load_tokenizer

    return load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)


def tokenizer_identity(tokenizer) -> tuple:
    """A cheap summary that tells tokenizers apart across nodes: (vocabulary size, eos id,
    special ids). The full fingerprint check happens on the driver."""
    return (len(tokenizer), tokenizer.eos_token_id, tuple(sorted(tokenizer.all_special_ids)))


class PreferenceTokenizer:
    """Ray Data ``map_batches`` callable class: raw records → tokenized rows.

    The tokenizer is loaded once per actor from its path; tokenizers' own thread pool is off
    (one actor = the CPUs Ray gave it; parallelism comes from the actor pool).
    """

    def __init__(
        self,
        tokenizer_path: str,
        sources: Sequence[ResolvedSource],
        subpreferences: Sequence[str],
        max_length: int,
        max_prompt_length: int,
        length_policy: LengthPolicy = "truncate",
        trust_remote_code: bool = False,
        expected: tuple | None = None,
    ):
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.tokenizer = load_tokenizer_quickly(tokenizer_path, trust_remote_code)
        if expected is not None and tokenizer_identity(self.tokenizer) != expected:
            # e.g. a node-local model path that holds another version on this node
            raise ValueError(
                f"the tokenizer at {tokenizer_path!r} on this node differs from the driver's "
                f"(vocabulary size, eos or special ids {tokenizer_identity(self.tokenizer)} != "
                f"{expected}): every node must see the same tokenizer files"
            )
        self.normalize = Normalizer(sources, subpreferences)
        self.max_length = max_length
        self.max_prompt_length = max_prompt_length
        self.length_policy = length_policy

    def __call__(self, raw: pa.Table) -> pa.Table:
        return tokenize_normalized(
            self.normalize(raw),
            self.tokenizer,
            self.max_length,
            self.max_prompt_length,
            self.length_policy,
        )
