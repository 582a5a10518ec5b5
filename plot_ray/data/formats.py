"""Preference record formats → the internal normalised row (pure Python, no Ray).

One record (a dict read from a jsonl line, a parquet/csv row or a Hugging Face example) becomes
a :class:`NormalizedRow` or raises :class:`RowRejected` with a quarantine ``reason``. The four
formats (``DataSource.format``; ``auto`` picks one per record from its keys):

``trl``
    ``prompt`` + ``chosen`` + ``rejected``. Each is a string or chat messages
    (``[{"role": ..., "content": ...}]``); a response given as messages must be one assistant
    message. Without ``prompt`` and with message lists ("implicit prompt"), the messages the two
    conversations share are the prompt. Optional ``score_chosen`` / ``score_rejected``.
``hh_rlhf``
    Anthropic HH-RLHF transcripts: ``chosen`` / ``rejected`` are full conversations
    ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``; the shared prompt is everything up to the last
    ``"\\n\\nAssistant:"`` that both transcripts have in common, the responses are what follows.
``ranked``
    ``prompt`` + ``responses`` (n >= 2) + optional ``scores``; with scores the responses are
    ordered by score (highest first, ties keep their order), without them they are taken as
    given, best first.
``sft``
    ``prompt`` + ``response`` (or ``completion``), or ``messages`` ending in an assistant turn.
``pku_saferlhf``
    PKU-SafeRLHF as published: ``prompt``, ``response_0``, ``response_1``,
    ``safer_response_id`` (0 or 1), ``is_response_0_safe`` / ``is_response_1_safe``, ...;
    chosen = the safer response, rejected = the other. Rows where both responses are safe, or
    neither is, are kept: ``safer_response_id`` is the annotators' comparison of the two and
    still orders them (a pair of two unsafe replies teaches the less harmful one). Rows whose
    safety flags contradict ``safer_response_id`` (the unsafe one named safer) are quarantined
    as ``inconsistent_labels``. Each row's case (:func:`pku_safety_case`) is its ``note``:
    ``prepare`` counts them per source (``notes`` in the summary).

The public corpora by their published form: UltraFeedback-binarized (``prompt``, ``chosen`` /
``rejected`` message lists that repeat the prompt, ``score_chosen`` / ``score_rejected``) is
``trl``; Anthropic HH-RLHF is ``hh_rlhf``; PKU-SafeRLHF is ``pku_saferlhf``. Other column names
are renamed by ``DataSource.columns`` (:func:`map_columns`) before any of this, and a
``DataSource.where`` filter (:func:`passes_where`) is applied to the renamed columns.

Auto-detection: ``responses`` → ranked; ``safer_response_id`` → pku_saferlhf;
``chosen``/``rejected`` with ``prompt`` → trl, without it → hh_rlhf for strings and trl
(implicit prompt) for message lists; ``messages``, ``response`` or ``completion`` → sft.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, get_args

from plot_ray.config import DataFormat

__all__ = [
    "FORMATS",
    "KINDS",
    "Message",
    "NormalizedRow",
    "RowRejected",
    "WHERE_EQUALITY",
    "detect_format",
    "map_columns",
    "mapped_names",
    "normalize_record",
    "passes_where",
    "pku_safety_case",
    "split_hh_transcripts",
    "parse_hh_turns",
]

# The names users write in `DataSource.format`; the config type is their one home, and every
# name has a normaliser below (tests check that the two agree).
FORMATS = tuple(name for name in get_args(DataFormat) if name != "auto")
KINDS = ("pair", "ranked", "sft")

Message = dict[str, str]

_HUMAN = "\n\nHuman:"
_ASSISTANT = "\n\nAssistant:"


class RowRejected(Exception):
    """A record that cannot be used; ``reason`` is the quarantine reason (a short code)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class NormalizedRow:
    """One usable preference example. ``responses`` are best first."""

    prompt: list[Message]
    responses: list[str]
    scores: list[float] | None
    kind: str  # "pair" | "ranked" | "sft"
    # a label that prepare counts per source (summary `notes`), e.g. PKU-SafeRLHF's safety case
    note: str | None = None


# ------------------------------------------------------------------------- field helpers
def _field(record: dict, name: str) -> Any:
    value = record.get(name)
    if value is None:
        raise RowRejected("missing_field", f"field {name!r} is missing or null")
    return value


def _messages(value: Any, name: str) -> list[Message]:
    """A prompt as chat messages: a string becomes one user message."""
    if isinstance(value, str):
        if not value.strip():
            raise RowRejected("empty_prompt", f"field {name!r} is empty")
        return [{"role": "user", "content": value}]
    if value == []:
        raise RowRejected("empty_prompt", f"field {name!r} is an empty list")
    if not isinstance(value, list):
        raise RowRejected(
            "bad_type",
            f"field {name!r} must be a string or a list of chat messages, "
            f"got {type(value).__name__}",
        )
    out = []
    for i, msg in enumerate(value):
        if (
            not isinstance(msg, dict)
            or not isinstance(msg.get("role"), str)
            or not isinstance(msg.get("content"), str)
        ):
            raise RowRejected(
                "bad_type", f"{name}[{i}] must be a {{'role': str, 'content': str}} message"
            )
        out.append({"role": msg["role"], "content": msg["content"]})
    if not any(m["content"].strip() for m in out):
        raise RowRejected("empty_prompt", f"every message of {name!r} is empty")
    return out


def _response(value: Any, name: str) -> str:
    """A response as text: a string, one assistant message, or a list holding one."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        if value.get("role", "assistant") != "assistant" or not isinstance(
            value.get("content"), str
        ):
            raise RowRejected("bad_type", f"field {name!r} must be one assistant message")
        value = value["content"]
    if not isinstance(value, str):
        raise RowRejected(
            "bad_type",
            f"field {name!r} must be a string or one assistant message, got "
            f"{type(value).__name__}" + (f" of {len(value)}" if isinstance(value, list) else ""),
        )
    if not value.strip():
        raise RowRejected("empty_response", f"field {name!r} is empty")
    return value


def _score(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RowRejected("bad_scores", f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_distinct(responses: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, text in enumerate(responses):
        key = text.strip()
        if key in seen:
            raise RowRejected("identical_responses", f"responses {seen[key]} and {i} are identical")
        seen[key] = i


def map_columns(record: dict, columns: dict[str, str]) -> dict:
    """``record`` with its source columns renamed to schema fields (``{field: column}``).

    The mapped columns are read first and then replaced, so a mapping may swap two names
    (``{chosen: rejected, rejected: chosen}``); unmapped columns are kept as they are.
    """
    if not columns:
        return record
    missing = [column for column in columns.values() if column not in record]
    if missing:
        field_name = next(f for f, c in columns.items() if c == missing[0])
        raise RowRejected(
            "missing_field", f"column {missing[0]!r} (mapped to {field_name!r}) is missing"
        )
    values = {field_name: record[column] for field_name, column in columns.items()}
    out = {k: v for k, v in record.items() if k not in set(columns.values())}
    out.update(values)
    return out


def mapped_names(names: list[str], columns: dict[str, str]) -> list[str]:
    """A source's column ``names`` as :func:`map_columns` leaves them (renamed ones last)."""
    return [n for n in names if n not in set(columns.values())] + list(columns)


# How a `where` filter compares, for the errors of a filter that keeps no row
WHERE_EQUALITY = 'a filter compares as JSON does: true is not "true", 1 is 1.0'


def passes_where(record: dict, where: dict[str, Any]) -> bool:
    """Whether ``record`` (columns already mapped) passes a ``where`` filter: every filtered
    column equals its value, or one of its values for a list. JSON equality: ``true`` is not
    ``1``, ``1`` is ``1.0``. A record without a filtered column is rejected (``missing_field``)."""
    for column, wanted in where.items():
        if column not in record:
            raise RowRejected(
                "missing_field", f"column {column!r} (of the `where` filter) is missing"
            )
        value = record[column]
        if not any(_same(value, w) for w in (wanted if isinstance(wanted, list) else [wanted])):
            return False
    return True


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted
    return value == wanted


# ------------------------------------------------------------------------------ formats
def detect_format(record: dict) -> str:
    """The format a record is written in, from its keys (see the module docstring)."""
    if "responses" in record:
        return "ranked"
    if "safer_response_id" in record:
        return "pku_saferlhf"
    if "chosen" in record or "rejected" in record:
        if "prompt" in record:
            return "trl"
        return "trl" if isinstance(record.get("chosen"), list) else "hh_rlhf"
    if "messages" in record or "response" in record or "completion" in record:
        return "sft"
    raise RowRejected(
        "unknown_format",
        f"cannot tell the format from the keys {sorted(record)[:8]}: expected prompt/chosen/"
        "rejected, HH-RLHF chosen/rejected transcripts, prompt/responses or prompt/response",
    )


def _trl(record: dict) -> NormalizedRow:
    chosen_raw, rejected_raw = _field(record, "chosen"), _field(record, "rejected")
    if record.get("prompt") is None:
        if not (isinstance(chosen_raw, list) and isinstance(rejected_raw, list)):
            raise RowRejected("missing_field", "field 'prompt' is missing or null")
        prompt, chosen_raw, rejected_raw = _split_shared_messages(chosen_raw, rejected_raw)
    else:
        prompt = _messages(record["prompt"], "prompt")
        chosen_raw = _drop_repeated_prompt(chosen_raw, prompt)
        rejected_raw = _drop_repeated_prompt(rejected_raw, prompt)
    responses = [_response(chosen_raw, "chosen"), _response(rejected_raw, "rejected")]
    _check_distinct(responses)
    scores = None
    if record.get("score_chosen") is not None and record.get("score_rejected") is not None:
        scores = [
            _score(record["score_chosen"], "score_chosen"),
            _score(record["score_rejected"], "score_rejected"),
        ]
    return NormalizedRow(prompt, responses, scores, "pair")


def _drop_repeated_prompt(value: Any, prompt: list[Message]) -> Any:
    """Some corpora (e.g. UltraFeedback-binarized) repeat the prompt inside chosen/rejected
    conversations; keep only what follows it."""
    if isinstance(value, list) and len(value) == len(prompt) + 1:
        head = [
            {"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m
            for m in value[:-1]
        ]
        if head == prompt:
            return value[-1]
    return value


def _split_shared_messages(chosen: list, rejected: list) -> tuple[list[Message], list, list]:
    """Implicit-prompt conversations → (shared prompt messages, chosen tail, rejected tail)."""
    chosen_msgs = _messages(chosen, "chosen")
    rejected_msgs = _messages(rejected, "rejected")
    shared = 0
    # conversations of different lengths share at most the shorter prefix
    for a, b in zip(chosen_msgs[:-1], rejected_msgs[:-1], strict=False):
        if a != b:
            break
        shared += 1
    if shared == 0:
        raise RowRejected(
            "missing_field", "no 'prompt' field and the two conversations share no messages"
        )
    tails = chosen_msgs[shared:], rejected_msgs[shared:]
    for name, tail in zip(("chosen", "rejected"), tails, strict=True):
        if len(tail) != 1 or tail[0]["role"] != "assistant":
            raise RowRejected(
                "bad_type",
                f"{name!r} must end in exactly one assistant message after the shared prompt",
            )
    return _messages(chosen_msgs[:shared], "prompt"), tails[0], tails[1]


def parse_hh_turns(text: str) -> list[Message]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b"`` → user and assistant chat messages.

    Raises :class:`RowRejected` (``hh_split_failed``) when text precedes the first turn.
    """
    if text.startswith("Human:") or text.startswith("Assistant:"):
        text = "\n\n" + text
    turns: list[Message] = []
    pos = 0
    while pos < len(text):
        h = text.find(_HUMAN, pos)
        a = text.find(_ASSISTANT, pos)
        starts = [s for s in (h, a) if s >= 0]
        if not starts:
            break
        start = min(starts)
        if start > pos and not turns and text[pos:start].strip():
            raise RowRejected("hh_split_failed", "text before the first 'Human:' turn")
        if turns:
            turns[-1]["content"] += text[pos:start]
        role, marker = ("user", _HUMAN) if start == h else ("assistant", _ASSISTANT)
        turns.append({"role": role, "content": ""})
        pos = start + len(marker)
    if turns:
        turns[-1]["content"] += text[pos:]
    elif text.strip():
        raise RowRejected("hh_split_failed", "no 'Human:' or 'Assistant:' turn in the transcript")
    for turn in turns:
        turn["content"] = turn["content"].strip()
    return turns


def split_hh_transcripts(chosen: str, rejected: str) -> tuple[list[Message], str, str]:
    """Split two HH-RLHF transcripts into (shared prompt messages, chosen reply, rejected reply).

    The split point is the last ``"\\n\\nAssistant:"`` inside the transcripts' common prefix, so
    replies that start alike, and earlier turns that contain the same words, split correctly.
    Rejected when there is no such marker (``hh_missing_assistant``) or when a reply holds a
    further ``Human:`` turn, i.e. the transcripts diverge before their final assistant turn
    (``hh_split_failed``).
    """
    if chosen.startswith("Human:"):
        chosen = "\n\n" + chosen
    if rejected.startswith("Human:"):
        rejected = "\n\n" + rejected
    limit = min(len(chosen), len(rejected))
    common = 0
    while common < limit and chosen[common] == rejected[common]:
        common += 1
    # The marker may end exactly at the divergence point ("...Assistant:" + differing text).
    cut = chosen.rfind(_ASSISTANT, 0, common)
    if cut < 0:
        if _ASSISTANT not in chosen or _ASSISTANT not in rejected:
            raise RowRejected("hh_missing_assistant", "a transcript has no 'Assistant:' turn")
        raise RowRejected(
            "hh_split_failed", "the transcripts share no prompt ending in an 'Assistant:' turn"
        )
    prompt = parse_hh_turns(chosen[:cut])
    if not prompt or prompt[-1]["role"] != "user":
        raise RowRejected("hh_split_failed", "the shared prompt does not end with a Human turn")
    replies = []
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        reply = text[cut + len(_ASSISTANT) :]
        if _HUMAN in reply:
            raise RowRejected(
                "hh_split_failed", f"the {name} transcript diverges before its final assistant turn"
            )
        replies.append(reply.strip())
    return prompt, replies[0], replies[1]


def _hh_rlhf(record: dict) -> NormalizedRow:
    chosen, rejected = _field(record, "chosen"), _field(record, "rejected")
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise RowRejected("bad_type", "HH-RLHF 'chosen' and 'rejected' must be transcripts")
    prompt, chosen_reply, rejected_reply = split_hh_transcripts(chosen, rejected)
    if not any(m["content"] for m in prompt):
        raise RowRejected("empty_prompt", "the shared HH-RLHF prompt is empty")
    responses = [_response(chosen_reply, "chosen"), _response(rejected_reply, "rejected")]
    _check_distinct(responses)
    return NormalizedRow(prompt, responses, None, "pair")


def _ranked(record: dict) -> NormalizedRow:
    prompt = _messages(_field(record, "prompt"), "prompt")
    raw = _field(record, "responses")
    if not isinstance(raw, list):
        raise RowRejected("bad_type", f"field 'responses' must be a list, got {type(raw).__name__}")
    if len(raw) < 2:
        raise RowRejected("too_few_responses", f"a ranked row needs >= 2 responses, got {len(raw)}")
    responses = [_response(r, f"responses[{i}]") for i, r in enumerate(raw)]
    scores = None
    if record.get("scores") is not None:
        raw_scores = record["scores"]
        if not isinstance(raw_scores, list) or len(raw_scores) != len(responses):
            raise RowRejected(
                "bad_scores",
                f"'scores' must be a list of {len(responses)} numbers (one per response)",
            )
        scores = [_score(s, f"scores[{i}]") for i, s in enumerate(raw_scores)]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep order
        responses = [responses[i] for i in order]
        scores = [scores[i] for i in order]
    _check_distinct(responses)
    return NormalizedRow(prompt, responses, scores, "ranked")


def _sft(record: dict) -> NormalizedRow:
    if record.get("messages") is not None and record.get("prompt") is None:
        messages = _messages(record["messages"], "messages")
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise RowRejected(
                "bad_type", "'messages' must hold a prompt and end with an assistant turn"
            )
        prompt = _messages(messages[:-1], "messages")
        response = _response(messages[-1], "messages[-1]")
        return NormalizedRow(prompt, [response], None, "sft")
    prompt = _messages(_field(record, "prompt"), "prompt")
    name = "response" if record.get("response") is not None else "completion"
    return NormalizedRow(prompt, [_response(_field(record, name), name)], None, "sft")


def _response_id(record: dict, name: str) -> int:
    value = _field(record, name)
    if isinstance(value, bool) or value not in (0, 1):
        raise RowRejected("bad_type", f"field {name!r} must be 0 or 1, got {value!r}")
    return int(value)


def pku_safety_case(record: dict) -> str:
    """``"one_safe"``, ``"both_safe"``, ``"neither_safe"`` or ``"unlabelled"`` (no flags)."""
    flags = [record.get(f"is_response_{i}_safe") for i in (0, 1)]
    if not all(isinstance(f, bool) for f in flags):
        return "unlabelled"
    return {2: "both_safe", 1: "one_safe", 0: "neither_safe"}[sum(flags)]


def _pku_saferlhf(record: dict) -> NormalizedRow:
    prompt = _messages(_field(record, "prompt"), "prompt")
    replies = [_response(_field(record, f"response_{i}"), f"response_{i}") for i in (0, 1)]
    safer = _response_id(record, "safer_response_id")
    if pku_safety_case(record) == "one_safe" and not record[f"is_response_{safer}_safe"]:
        raise RowRejected(
            "inconsistent_labels",
            f"safer_response_id is {safer} but only response_{1 - safer} is flagged safe",
        )
    responses = [replies[safer], replies[1 - safer]]
    _check_distinct(responses)
    return NormalizedRow(prompt, responses, None, "pair", note=pku_safety_case(record))


_NORMALIZERS = {
    "trl": _trl,
    "hh_rlhf": _hh_rlhf,
    "ranked": _ranked,
    "sft": _sft,
    "pku_saferlhf": _pku_saferlhf,
}


def normalize_record(
    record: Any, fmt: str = "auto", columns: dict[str, str] | None = None
) -> NormalizedRow:
    """One record in ``fmt`` (or ``auto``), its columns renamed by ``columns`` first
    (:func:`map_columns`) → a :class:`NormalizedRow`.

    Raises :class:`RowRejected` (with the quarantine reason) for a record that cannot be used.
    """
    if not isinstance(record, dict):
        raise RowRejected("malformed", f"a record must be an object, got {type(record).__name__}")
    record = map_columns(record, columns or {})
    if fmt == "auto":
        fmt = detect_format(record)
    try:
        normalizer = _NORMALIZERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected auto or one of {FORMATS}") from None
    return normalizer(record)
