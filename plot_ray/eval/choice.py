"""Multiple-choice evaluation (MMLU, ARC, HellaSwag shapes): readers, prompts, scoring by the
model's log-likelihood of each option and by the letter it generates, accuracy with counts.

Published shapes, each normalised to one item schema
``{id, question, choices: [str], answer_index: int, subject: str, shape: str}`` (``subject`` is
``""`` where the shape has none and the reader was given none; ``shape`` names the source shape):

=============  ==========================================================  ====================
shape          fields read                                                 subject / id
=============  ==========================================================  ====================
``mmlu``       ``cais/mmlu``: ``question, subject, choices: [str],          ``subject``;
               answer: int 0..K-1`` (a letter "A".. is accepted too)       ``<subject>/<row>``
``mmlu`` CSV   the original release: no header, ``question, A, B, C, D,     the file name less
               answer-letter`` per line (``abstract_algebra_test.csv``)     ``_test/_dev/_val``
``arc``        ``allenai/ai2_arc``: ``id, question, choices: {text: [...],  the reader's
               label: ["A", ...] or ["1", ...]}, answerKey``; also the      ``subject``; ``id``
               original ``question: {stem, choices: [{text, label}]}``
``hellaswag``  ``ctx`` (or ``ctx_a`` + ``ctx_b``)``, endings: [str],        ``activity_label``;
               label`` (int or digit string)                               ``ind`` or the row
=============  ==========================================================  ====================

Files: ``.jsonl``, ``.json`` (a list of rows), ``.parquet`` (what the hub's datasets download
as) and ``.csv`` (MMLU's original). A malformed row (answer out of range, fewer than two or
empty choices, duplicate or unknown labels, a missing field) raises :class:`ChoiceFormatError`
naming the file, the row number and its id; duplicate ids are refused too.

Prompts (one standard format, zero-shot, documented here and nowhere else)::

    lettered_prompt:  "{question}\\nA. {choice 0}\\nB. {choice 1}\\n...\\nAnswer:"
    cloze_prompt:     "Question: {question}\\nAnswer:"     (hellaswag: the context itself)

Methods (the keys of :data:`METHODS`, each an item's predicted option index ``pred_<method>``):

=========================  ==================================================================
method                     the option chosen
=========================  ==================================================================
``loglik_letter``          argmax of log p(" A" | lettered prompt), over the options' letters
``loglik_text``            argmax of log p(" {option text}" | cloze prompt), summed (acc)
``loglik_text_per_token``  the same divided by the continuation's token count
``loglik_text_per_char``   the same divided by its length in characters, leading space
                           included (lm-evaluation-harness's ``acc_norm``)
``generated_letter``       the letter read from a completion of the lettered prompt by
                           :func:`extract_letter`; ``None`` (unparseable) when there is none
                           or when it names several letters
=========================  ==================================================================

Ties go to the first option. The log-likelihoods come from
:class:`~plot_ray.eval.scorers.NLLScorer` with ``continuation=True`` (prompt and continuation
tokenized apart, no EOS, the prompt cut from the left when too long), one row per (item,
option, method):

    option_rows(items)            items -> rows of prompt/reference (what NLLScorer scores)
    loglik_stage(kwargs, s, bs)   a pipeline Stage: option rows through the NLLScorer pool
    choose(scored)                scored option rows -> one row per item with pred_<method>
    loglik_choices(scorer, items) the same in-process (no Ray), with a scorer instance
    case_fields(item)             an item as a case row's string fields (message: the lettered
                                  prompt the generation engines answer; choice_item: the item)
    grade_generated(row)          a completed row -> pred_generated_letter (None: unparseable)
    choice_accuracy(rows, method) accuracy, counts and a Wilson interval
    choice_table(rows, methods)   the same per subject and over all items
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LETTERS",
    "METHODS",
    "SHAPES",
    "ChoiceFormatError",
    "case_fields",
    "choice_accuracy",
    "choice_table",
    "choose",
    "cloze_prompt",
    "extract_letter",
    "grade_generated",
    "lettered_prompt",
    "loglik_choices",
    "loglik_stage",
    "normalise_rows",
    "option_rows",
    "read_mmlu_csv",
]

LETTERS = string.ascii_uppercase  # option k is LETTERS[k]; at most 26 options
LOGLIK_METHODS = ("loglik_letter", "loglik_text", "loglik_text_per_token", "loglik_text_per_char")
METHODS = (*LOGLIK_METHODS, "generated_letter")
# What option_rows makes per option: "letter" continuations (" A") and "text" ones (" Paris").
CONTINUATIONS = ("letter", "text")


class ChoiceFormatError(ValueError):
    """A multiple-choice row that does not fit its shape; the message names the row."""


# --------------------------------------------------------------------------------------------
# Readers: one small normaliser per published shape
# --------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """numpy arrays and scalars (rows from pandas or Ray Data) → lists and Python values."""
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, str) else value


def _choices(value: Any, where: str) -> list[str]:
    value = _plain(value)
    if not isinstance(value, list | tuple) or len(value) < 2:
        raise ChoiceFormatError(f"{where}: choices must be a list of at least 2, got {value!r}")
    if len(value) > len(LETTERS):
        raise ChoiceFormatError(f"{where}: {len(value)} choices, at most {len(LETTERS)}")
    out = []
    for k, c in enumerate(value):
        if not isinstance(c, str | int | float) or not str(c).strip():
            raise ChoiceFormatError(f"{where}: choice {k} is empty or not text: {c!r}")
        out.append(str(c).strip())
    return out


def _question(value: Any, where: str, field: str = "question") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ChoiceFormatError(f"{where}: {field} must be non-empty text, got {value!r}")
    return value.strip()


def _index(answer: Any, n: int, where: str, field: str) -> int:
    """An answer given as an int, a digit string or a letter → its 0-based index."""
    answer = _plain(answer)
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip() in LETTERS:
        index = LETTERS.index(answer.strip())
    elif isinstance(answer, str) and answer.strip().isdigit():
        index = int(answer)
    elif isinstance(answer, int) and not isinstance(answer, bool):
        index = answer
    else:
        raise ChoiceFormatError(
            f"{where}: {field} must be an option index or letter, got {answer!r}"
        )
    if not 0 <= index < n:
        raise ChoiceFormatError(
            f"{where}: {field} {answer!r} is out of range for {n} choices (0..{n - 1})"
        )
    return index


def normalise_mmlu(row: Mapping, where: str, number: int, subject: str | None = None) -> dict:
    """``cais/mmlu``: ``question, subject, choices, answer`` (0-based int)."""
    for field in ("question", "choices", "answer"):
        if field not in row:
            raise ChoiceFormatError(f"{where}: missing field {field!r} (mmlu shape)")
    subj = subject if subject is not None else str(row.get("subject") or "")
    choices = _choices(row["choices"], where)
    return {
        "id": str(row.get("id") or f"{subj or 'mmlu'}/{number}"),
        "question": _question(row["question"], where),
        "choices": choices,
        "answer_index": _index(row["answer"], len(choices), where, "answer"),
        "subject": subj,
        "shape": "mmlu",
    }


def normalise_arc(row: Mapping, where: str, number: int, subject: str | None = None) -> dict:
    """``allenai/ai2_arc`` (``choices: {text, label}``) or the original release
    (``question: {stem, choices: [{text, label}]}``); ``answerKey`` is one of the labels."""
    for field in ("question", "answerKey"):
        if field not in row:
            raise ChoiceFormatError(f"{where}: missing field {field!r} (arc shape)")
    question = row["question"]
    if isinstance(question, Mapping):  # the original release nests the options
        options = question.get("choices")
        if not isinstance(options, list) or not all(isinstance(o, Mapping) for o in options):
            raise ChoiceFormatError(f"{where}: question.choices must be a list of {{text, label}}")
        texts = [o.get("text") for o in options]
        labels = [o.get("label") for o in options]
        question = question.get("stem")
    else:
        options = row.get("choices")
        if not isinstance(options, Mapping) or "text" not in options or "label" not in options:
            raise ChoiceFormatError(f"{where}: choices must be {{text: [...], label: [...]}}")
        texts, labels = _plain(options["text"]), _plain(options["label"])
    choices = _choices(texts, where)
    labels = [str(x).strip() for x in labels]
    if len(labels) != len(choices):
        raise ChoiceFormatError(f"{where}: {len(choices)} choices but {len(labels)} labels")
    if len(set(labels)) != len(labels):
        raise ChoiceFormatError(f"{where}: duplicate labels {labels}")
    key = str(row["answerKey"]).strip()
    if key not in labels:
        raise ChoiceFormatError(
            f"{where}: answerKey {row['answerKey']!r} is not a label of {labels}"
        )
    return {
        "id": str(row.get("id") or f"arc/{number}"),
        "question": _question(question, where),
        "choices": choices,
        "answer_index": labels.index(key),
        "subject": subject if subject is not None else "",
        "shape": "arc",
    }


def normalise_hellaswag(row: Mapping, where: str, number: int, subject: str | None = None) -> dict:
    """HellaSwag: ``ctx`` (or ``ctx_a`` + ``ctx_b``), ``endings``, ``label``."""
    if "ctx" in row:
        context = row["ctx"]
    elif "ctx_a" in row:
        context = f"{row['ctx_a']} {str(row.get('ctx_b') or '').strip()}".strip()
    else:
        raise ChoiceFormatError(f"{where}: missing field 'ctx' (hellaswag shape)")
    for field in ("endings", "label"):
        if field not in row:
            raise ChoiceFormatError(f"{where}: missing field {field!r} (hellaswag shape)")
    if row["label"] in ("", None):
        raise ChoiceFormatError(f"{where}: no label (HellaSwag's test split is unlabelled)")
    choices = _choices(row["endings"], where)
    return {
        "id": str(row.get("ind") if row.get("ind") not in (None, "") else f"hellaswag/{number}"),
        "question": _question(context, where, "ctx"),
        "choices": choices,
        "answer_index": _index(row["label"], len(choices), where, "label"),
        "subject": subject if subject is not None else str(row.get("activity_label") or ""),
        "shape": "hellaswag",
    }


SHAPES: dict[str, Callable[..., dict]] = {
    "mmlu": normalise_mmlu,
    "arc": normalise_arc,
    "hellaswag": normalise_hellaswag,
}


def detect_shape(row: Mapping) -> str:
    """The shape a row's fields say it has."""
    if "endings" in row:
        return "hellaswag"
    if "answerKey" in row:
        return "arc"
    if "choices" in row and "answer" in row:
        return "mmlu"
    raise ChoiceFormatError(
        f"cannot tell the multiple-choice shape from the fields {sorted(row)}: expected "
        "mmlu (question, choices, answer), arc (question, choices, answerKey) or "
        "hellaswag (ctx, endings, label)"
    )


def normalise_rows(
    rows: Iterable[Mapping], shape: str = "auto", source: str = "rows", subject: str | None = None
) -> list[dict]:
    """Rows of one published shape (``"auto"``: told by the first row's fields) → items.

    ``source`` names the rows in errors; ``subject`` overrides the rows' own (ARC has none)."""
    items: list[dict] = []
    seen: dict[str, int] = {}
    normalise = None
    for number, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ChoiceFormatError(f"{source} row {number}: not an object: {row!r}")
        where = f"{source} row {number} (id {row.get('id', row.get('ind'))!r})"
        if normalise is None:
            if shape != "auto" and shape not in SHAPES:
                raise ValueError(f"shape must be 'auto' or one of {sorted(SHAPES)}, got {shape!r}")
            normalise = SHAPES[detect_shape(row) if shape == "auto" else shape]
        item = normalise(row, where, number, subject)
        if item["id"] in seen:
            raise ChoiceFormatError(
                f"{where}: id {item['id']!r} already used by row {seen[item['id']]}"
            )
        seen[item["id"]] = number
        items.append(item)
    return items


def _csv_subject(path: Path) -> str:
    return re.sub(r"_(test|dev|val)$", "", path.stem)


def read_mmlu_csv(path: Path, subject: str | None = None) -> list[dict]:
    """MMLU's original CSV: no header; question, the options, the answer letter."""
    subj = subject if subject is not None else _csv_subject(path)
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for number, cells in enumerate(csv.reader(f)):
            if number == 0 and cells and cells[-1].strip().lower() == "answer":
                continue  # a header some re-exports add
            if len(cells) < 4:
                raise ChoiceFormatError(
                    f"{path} line {number + 1}: expected question, at least 2 options and the "
                    f"answer letter, got {len(cells)} cells"
                )
            rows.append(
                {
                    "question": cells[0],
                    "choices": cells[1:-1],
                    "answer": cells[-1].strip(),
                    "subject": subj,
                    "id": f"{subj}/{len(rows)}",
                }
            )
    return normalise_rows(rows, "mmlu", str(path))


# --------------------------------------------------------------------------------------------
# Case rows: an item in the evaluation's string-only case columns
# --------------------------------------------------------------------------------------------
def case_fields(item: Mapping) -> dict[str, str]:
    """An item as the string fields of an evaluation case (plot_ray/eval/tasks.py's case row):
    ``case_id`` ``"choice/<id>"``, ``message`` the lettered prompt (what the generation engines
    answer), ``reference`` the answer's letter, ``category`` the subject, and ``choice_item`` the
    whole item as JSON, from which :func:`option_rows` and :func:`grade_generated` read it."""
    return {
        "case_id": f"choice/{item['id']}",
        "message": lettered_prompt(item),
        "reference": LETTERS[item["answer_index"]],
        "category": item["subject"],
        "choice_item": json.dumps(dict(item), ensure_ascii=False),
    }


def _item(row: Mapping) -> Mapping:
    """The item itself, or the one a case row (:func:`case_fields`) carries."""
    return json.loads(row["choice_item"]) if "choice_item" in row else row


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------
def lettered_prompt(item: Mapping) -> str:
    """The question, its options as ``A. ...`` lines, and ``Answer:`` (no trailing space: the
    continuation brings its own, ``" A"``)."""
    options = [f"{LETTERS[k]}. {c}" for k, c in enumerate(item["choices"])]
    return "\n".join([item["question"], *options, "Answer:"])


def cloze_prompt(item: Mapping) -> str:
    """The question without its options, for scoring each option's text as the answer; a
    HellaSwag passage, which the options complete, is given as it is."""
    if item.get("shape") == "hellaswag":
        return item["question"]
    return f"Question: {item['question']}\nAnswer:"


# --------------------------------------------------------------------------------------------
# Scoring by log-likelihood
# --------------------------------------------------------------------------------------------
def option_rows(
    items: Sequence[Mapping], continuations: Sequence[str] = CONTINUATIONS
) -> list[dict]:
    """One row per (item, option, continuation) of ``items`` (items or case rows,
    :func:`case_fields`): ``prompt`` and ``reference`` (what
    :class:`~plot_ray.eval.scorers.NLLScorer` scores), with the item's id, answer and subject
    (what :func:`choose` needs) and the option's index ``option``."""
    unknown = set(continuations) - set(CONTINUATIONS)
    if unknown or not continuations:
        raise ValueError(f"continuations must be some of {CONTINUATIONS}, got {continuations}")
    rows = []
    for item in map(_item, items):
        prompts = {"letter": lettered_prompt(item), "text": cloze_prompt(item)}
        for how in continuations:
            for k, text in enumerate(item["choices"]):
                rows.append(
                    {
                        "item_id": item["id"],
                        "subject": item["subject"],
                        "answer_index": item["answer_index"],
                        "n_choices": len(item["choices"]),
                        "option": k,
                        "continuation": how,
                        "prompt": prompts[how],
                        "reference": f" {LETTERS[k]}" if how == "letter" else f" {text}",
                    }
                )
    return rows


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for k, v in enumerate(values):
        if v > values[best]:
            best = k  # strictly greater: a tie goes to the first option
    return best


def choose(scored: Iterable[Mapping]) -> list[dict]:
    """Scored option rows (:func:`option_rows` plus NLLScorer's ``nll`` and ``num_tokens``) →
    one row per item, in order of first appearance: ``id, subject, answer_index, n_choices``,
    the per-option ``logprob_letter`` / ``logprob_text`` (nats), ``tokens_text``,
    ``chars_text``, and ``pred_<method>`` for the methods the continuations allow.

    Raises if an item lacks an option's score or has one twice (rows lost or mixed up on the
    way are a bug, never a silent guess)."""
    items: dict[str, dict] = {}
    for row in scored:
        item = items.setdefault(
            row["item_id"],
            {
                "id": row["item_id"],
                "subject": row["subject"],
                "answer_index": int(row["answer_index"]),
                "n_choices": int(row["n_choices"]),
                "_scores": defaultdict(dict),
            },
        )
        per_option = item["_scores"][row["continuation"]]
        option = int(row["option"])
        if option in per_option:
            raise ValueError(
                f"item {row['item_id']!r}: option {option} ({row['continuation']}) scored twice"
            )
        per_option[option] = (-float(row["nll"]), int(row["num_tokens"]), len(row["reference"]))
    out = []
    for item in items.values():
        scores = item.pop("_scores")
        n = item["n_choices"]
        for how, per_option in scores.items():
            if sorted(per_option) != list(range(n)):
                raise ValueError(
                    f"item {item['id']!r}: {how} scores for options {sorted(per_option)}, "
                    f"expected 0..{n - 1}"
                )
            logprobs = [per_option[k][0] for k in range(n)]
            item[f"logprob_{how}"] = logprobs
            if how == "letter":
                item["pred_loglik_letter"] = _argmax(logprobs)
                continue
            tokens = [per_option[k][1] for k in range(n)]
            chars = [per_option[k][2] for k in range(n)]
            item["tokens_text"], item["chars_text"] = tokens, chars
            item["pred_loglik_text"] = _argmax(logprobs)
            item["pred_loglik_text_per_token"] = _argmax(
                [lp / max(t, 1) for lp, t in zip(logprobs, tokens, strict=True)]
            )
            item["pred_loglik_text_per_char"] = _argmax(
                [lp / c for lp, c in zip(logprobs, chars, strict=True)]
            )
        out.append(item)
    return out


def loglik_choices(
    scorer,
    items: Sequence[Mapping],
    batch_size: int = 64,
    continuations: Sequence[str] = CONTINUATIONS,
) -> list[dict]:
    """:func:`choose` over ``items`` scored in-process by ``scorer`` (an
    :class:`~plot_ray.eval.scorers.NLLScorer` built with ``continuation=True``), ``batch_size``
    option rows per call: what the Ray Data path computes, without Ray."""
    import numpy as np

    if not getattr(scorer, "continuation", False):
        raise ValueError("the scorer must be an NLLScorer built with continuation=True")
    rows = option_rows(items, continuations)
    scored = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = {
            key: np.array([r[key] for r in chunk], dtype=object) for key in ("prompt", "reference")
        }
        out = scorer(batch)
        for r, nll, n in zip(chunk, out["nll"], out["num_tokens"], strict=True):
            scored.append({**r, "nll": float(nll), "num_tokens": int(n)})
    return choose(scored)


def loglik_stage(
    scorer_kwargs: dict, settings, batch_size: int, continuations: Sequence[str] = CONTINUATIONS
):
    """A :class:`~plot_ray.eval.pipeline.Stage` for :func:`~plot_ray.eval.pipeline.stream`:
    a shard's items or case rows → option rows → a pool of NLLScorer actors (``scorer_kwargs``: its
    constructor arguments, e.g. the runner's ``nll_scorer_kwargs``; ``continuation`` is set
    here) → scored option rows. The ``write`` given to ``stream`` turns a shard's option rows
    into item rows with :func:`choose`."""
    from plot_ray.eval.pipeline import Stage, actor_pool
    from plot_ray.eval.scorers import NLLScorer

    kwargs = {**scorer_kwargs, "continuation": True}
    return Stage(
        prepare=lambda items: option_rows(items, continuations),
        transform=lambda ds: actor_pool(ds, NLLScorer, kwargs, settings, batch_size),
    )


# --------------------------------------------------------------------------------------------
# Generated letters
# --------------------------------------------------------------------------------------------
def _letter_patterns(n_choices: int) -> dict[str, re.Pattern]:
    """The patterns of :func:`extract_letter` for options A .. ``LETTERS[n_choices - 1]``.
    Letters are uppercase except right after ``answer:``, so the article "a" is not option A."""
    L = f"[{LETTERS[0]}-{LETTERS[n_choices - 1]}]"
    lower = L.lower()
    end = r"(?![A-Za-z0-9])"
    return {
        "hedged": re.compile(rf"(?<![A-Za-z0-9])[\(\[]?{L}[\)\]]?\s+or\s+[\(\[]?{L}{end}"),
        "stated": re.compile(
            rf"\b(?i:answer)\s*(?:(?i:is|would\s+be|should\s+be|will\s+be)\b\s*)?[:=]?\s*"
            rf"(?:(?i:option|choice|letter)\s*)?[\(\[]?({L}){end}"
            rf"|\b(?i:answer)\s*:\s*[\(\[]?({lower})(?![A-Za-z0-9 ])"
            rf"|\\boxed\{{\s*(?:\\text\{{\s*)?({L}){end}"
            rf"|(?<![A-Za-z0-9])[\(\[]?({L})[\)\]]?\s+"
            rf"(?i:is\s+(?:the\s+)?(?:correct|right|best|answer))\b"
        ),
        "named": re.compile(rf"\b(?i:option|choice)\s*[\(\[]?({L}){end}"),
        "placed": re.compile(
            rf"(?m)^\s*[\(\[]?({L})(?:[\)\]\.:,]|\s*$)"  # a line starting "C." or "(C)"
            rf"|[\(\[]({L})[\)\]]"  # "(C)" anywhere
            rf"|(?<![A-Za-z0-9])({L})[.!]?\s*\Z"  # a lone letter at the end
        ),
    }


def _letters(pattern: re.Pattern, text: str) -> set[str]:
    return {next(g for g in m.groups() if g).upper() for m in pattern.finditer(text)}


def extract_letter(text: str | None, n_choices: int = 4) -> str | None:
    """The option letter a completion chooses, or ``None`` when it names none or several.

    A completion that hedges between letters (``"A or B"``) is ``None``. Otherwise the first
    rule that finds a letter decides: the whole completion is one letter (``"C"``, ``"(c)"``,
    ``"**C.**"``); the answer is stated (``"Answer: C"``, ``"answer: c"``, ``"The answer is
    (C)"``, ``"answer is option C"``, ``"\\boxed{C}"``, ``"C is correct"``); an option is named
    (``"Option C"``, ``"choice C"``); a letter is placed as an answer (a line starting ``"C."``,
    ``"C)"`` or ``"(C)"``, a bracketed ``"(C)"`` anywhere, a lone letter ending the text, as in
    ``"so it is C."``). Two different letters under the deciding rule make the completion
    ambiguous (``None``): a completion that echoes the option list is not an answer. Letters past
    the ``n_choices``-th never count (``"Answer: E"`` with 4 options is unparseable)."""
    if not text:
        return None
    if not 1 <= n_choices <= len(LETTERS):
        raise ValueError(f"n_choices must be in 1..{len(LETTERS)}, got {n_choices}")
    text = text.replace("*", "")  # markdown bold
    patterns = _letter_patterns(n_choices)
    if patterns["hedged"].search(text):
        return None
    bare = text.strip().strip(".:;,!()[]\"'` \n\t")
    if len(bare) == 1 and bare.upper() in LETTERS[:n_choices]:
        return bare.upper()
    for rule in ("stated", "named", "placed"):
        found = _letters(patterns[rule], text)
        if found:
            return found.pop() if len(found) == 1 else None
    return None


def grade_generated(row: dict) -> dict:
    """A completed row (an item or a case row, with the engine's ``completion``) → the same row
    with ``item_id, subject, answer_index, n_choices``, ``generated_letter`` (``None``:
    unparseable) and ``pred_generated_letter`` (its option index, or ``None``)."""
    item = _item(row)
    letter = extract_letter(row["completion"], len(item["choices"]))
    row.update(
        item_id=item["id"],
        subject=item["subject"],
        answer_index=item["answer_index"],
        n_choices=len(item["choices"]),
        generated_letter=letter,
        pred_generated_letter=None if letter is None else LETTERS.index(letter),
    )
    return row


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def choice_accuracy(rows: Iterable[Mapping], method: str, level: float = 0.95) -> dict:
    """Accuracy of ``method`` over rows with ``answer_index`` and ``pred_<method>`` (an option
    index, or ``None`` for an unparseable generation, which counts as wrong).

    Returns ``{"method", "accuracy", "n", "correct", "wrong", "unparseable",
    "accuracy_parsed"`` (correct / parsed)``, "low", "high"}``: the accuracy's ``level``
    Wilson interval; fractions in [0, 1], NaN without rows."""
    from plot_ray.eval.metrics import wilson_interval

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    key = f"pred_{method}"
    n = correct = unparseable = 0
    for row in rows:
        if key not in row:
            raise KeyError(f"row {row.get('id', row.get('item_id'))!r} has no {key!r}")
        n += 1
        if row[key] is None:
            unparseable += 1
        elif int(row[key]) == int(row["answer_index"]):
            correct += 1
    parsed = n - unparseable
    low, high = wilson_interval(correct, n, level)
    return {
        "method": method,
        "accuracy": correct / n if n else float("nan"),
        "n": n,
        "correct": correct,
        "wrong": parsed - correct,
        "unparseable": unparseable,
        "accuracy_parsed": correct / parsed if parsed else float("nan"),
        "low": low,
        "high": high,
    }


def choice_table(
    rows: Sequence[Mapping], methods: Sequence[str] = LOGLIK_METHODS, level: float = 0.95
) -> list[dict]:
    """:func:`choice_accuracy` per method and subject (sorted), then per method over all rows
    (``subject`` ``None``)."""
    by_subject: dict[str, list[Mapping]] = defaultdict(list)
    for row in rows:
        by_subject[str(row.get("subject") or "")].append(row)
    table = []
    for method in methods:
        for subject in sorted(by_subject):
            table.append(
                {"subject": subject, **choice_accuracy(by_subject[subject], method, level)}
            )
        table.append({"subject": None, **choice_accuracy(rows, method, level)})
    return table
