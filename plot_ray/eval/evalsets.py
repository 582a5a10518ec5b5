"""Evaluation sets in their published shapes: read one, tell its shape, normalise its rows.

    read_eval_set(key, evalset) -> EvalSetRows(rows, format, where)

``key`` is the evaluation key the set is given under (``behaviors``, ``templates``, ``benign``,
``logic``, ``perplexity``); ``evalset`` a :class:`~plot_ray.config.EvalSet`. Reading happens on
the driver: evaluation sets are small, the work on them is what gets distributed.

Readers (``reader``; ``auto`` picks from the path): ``jsonl``, ``json`` (one JSON array, or
JSON Lines), ``csv``, ``parquet``, ``python`` (a Python file holding a list of strings, read as
data with :mod:`ast`, never run), ``hf_disk`` (a ``save_to_disk`` folder) and ``hf_hub`` (a
hub name through ``datasets.load_dataset(path, name=subset, data_dir=..., revision=...)``; a
split slice such as ``test[:100]`` keeps the row numbers of the whole split). ``columns``
renames source columns to the fields below before the shape is told; ``where`` then keeps the
rows whose columns hold the given values (as for training sources:
:func:`plot_ray.data.formats.passes_where`), e.g. ``{FunctionalCategory: [standard,
contextual]}`` for HarmBench's behaviours; kept rows keep their row numbers.

Shapes (``format``; ``auto`` tells them from the first row's columns) and their rows:

===========  =====================  =================================================================
key          format                 published shape → normalised row
===========  =====================  =================================================================
behaviors    harmbench, plot_ray    HarmBench's behaviours CSV (``Behavior, FunctionalCategory,
                                    SemanticCategory, ContextString, BehaviorID``) or the synthetic
                                    ``behaviors.jsonl``: read by :func:`plot_ray.eval.tasks.load_behaviors`
templates    harmbench_jailbreaks   HarmBench's ``baselines/human_jailbreaks/jailbreaks.py`` (its list
                                    of template strings) or a JSON array of strings → ``{template_id:
                                    "<n>", template}``; the behaviour follows a template after a blank
                                    line unless the template has a ``{behavior}`` slot
             plot_ray               ``{template_id, template[, family, family_heldout, form]}``
logic        gsm8k                  ``{question, answer: "... #### N"}`` (``openai/gsm8k``) → ``{id,
                                    question, answer: N, grader: gsm8k}``
             math                   ``{problem, solution[, answer, level, type | subject,
                                    unique_id]}`` (MATH, MATH-500) → the answer is ``answer`` where
                                    given, else the last ``\\boxed{}`` of ``solution``; ``grader: math``
             plot_ray               ``{id, question, answer}``, graded by ``eval.logic_style``
benign       alpaca_eval            AlpacaEval's ``[{instruction, output, generator, dataset}]`` →
                                    prompt ``instruction``, reference ``output``, category ``dataset``
             mt_bench               MT-Bench's ``question.jsonl`` ``{question_id, category, turns,
                                    reference?}`` → one row per turn; turn ``k > 1`` continues the
                                    conversation after the model's own answer to turn ``k - 1``
                                    (``after``)
             hh_rlhf                HH-RLHF ``{chosen, rejected}`` transcripts → the shared prompt
                                    (earlier turns in ``history``), reference: the chosen reply
             plot_ray               ``{id, prompt, reference[, topic | category]}``
perplexity   hh_rlhf                as for benign; the response is the chosen reply
             plot_ray               ``{id, prompt, response}``
coding       humaneval              HumanEval's ``{task_id, prompt, canonical_solution, test,
                                    entry_point}`` → ``{id, prompt: the instruction shown, problem}``
             mbpp                   MBPP's ``{task_id, text, code, test_list, test_setup_code}`` or
                                    sanitized MBPP's ``prompt`` / ``test_imports``; the prompt shows
                                    the tests, as MBPP's own prompt does
choice       mmlu, arc, hellaswag   ``cais/mmlu`` (or MMLU's header-less CSV), ``allenai/ai2_arc``,
                                    HellaSwag → items ``{id, question, choices, answer_index,
                                    subject}`` (:mod:`plot_ray.eval.choice` normalises them)
===========  =====================  =================================================================

Rows without an id (GSM8K, AlpacaEval, HH-RLHF, HarmBench's templates) are numbered by their
place in the file or split (from 0). Every error names the key, the source and the row.
"""

from __future__ import annotations

import ast
import csv
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from plot_ray.config import EvalSet

__all__ = [
    "EvalDataError",
    "EvalSetRows",
    "Quarantined",
    "read_choice",
    "read_eval_set",
    "row_field",
    "source_rows",
]


class EvalDataError(ValueError):
    """An evaluation set is missing, malformed, or lacks a field a task needs."""


class Quarantined(Exception):
    """One row of a published set that cannot be used (its other rows can): set aside with a
    reason, counted and written beside the cases, never dropped silently."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass
class EvalSetRows:
    rows: list[dict]
    format: str  # the shape read (never "auto")
    where: str  # "eval.<key> (<path>)", for messages
    # rows set aside: {set, row, reason, detail, record}
    quarantined: list[dict] = field(default_factory=list)
    filtered: int = 0  # rows that the set's `where` filter left out


_FILE_READERS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
_FILE_READERS |= {".parquet": "parquet", ".pq": "parquet", ".py": "python"}
_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


# ------------------------------------------------------------------------------- reading
def _reader(evalset: EvalSet, where: str) -> str:
    if evalset.reader != "auto":
        return evalset.reader
    path = Path(os.path.expanduser(evalset.path))
    if path.suffix.lower() in _FILE_READERS:
        return _FILE_READERS[path.suffix.lower()]
    if path.is_dir():
        if any((path / m).is_file() for m in _HF_DISK_MARKERS):
            return "hf_disk"
        return "hf_hub"  # a dataset repository cloned to a folder
    if not path.exists() and not evalset.path.startswith((".", "/", "~")):
        return "hf_hub"
    raise EvalDataError(f"{where}: cannot tell how to read it; set its `reader`")


def _json_rows(path: Path, where: str) -> list:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{where}: not a valid JSON array ({exc})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{where}: line {n} is not valid JSON ({exc.msg})") from None
    return rows


def _python_strings(path: Path, where: str) -> list[str]:
    """The longest list (or tuple) of string literals assigned at the top of a Python file,
    e.g. HarmBench's ``JAILBREAKS = [...]``; the file is parsed, never executed."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise EvalDataError(f"{where}: not a Python file ({exc.msg}, line {exc.lineno})") from None
    lists = []
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.List | ast.Tuple) and value.elts:
            try:
                items = ast.literal_eval(value)
            except ValueError:
                continue
            if all(isinstance(i, str) for i in items):
                lists.append(list(items))
    if not lists:
        raise EvalDataError(f"{where}: no list of strings assigned at the top of the file")
    return max(lists, key=len)


def _hub_rows(evalset: EvalSet, reader: str, where: str) -> tuple[list[dict], int]:
    """Rows of a hub / save_to_disk split (slice), and the split row number of the first."""
    import datasets

    from plot_ray.data.readers import load_hub_split

    split = evalset.split.split("[", 1)[0].strip()
    try:
        instruction = datasets.ReadInstruction.from_spec(evalset.split)
    except (ValueError, AssertionError) as exc:
        msg = f"{where}: split {evalset.split!r} is not a split or a slice such as 'test[:100]'"
        raise EvalDataError(f"{msg} ({exc})") from None
    if reader == "hf_disk":
        obj = datasets.load_from_disk(os.path.expanduser(evalset.path))
    else:
        try:
            obj = load_hub_split(where, evalset, split)
        except ValueError as exc:
            raise EvalDataError(str(exc)) from None
    if isinstance(obj, datasets.DatasetDict):
        if split not in obj:
            raise EvalDataError(f"{where}: no split {split!r}; it has {', '.join(sorted(obj))}")
        obj = obj[split]
    (part,) = instruction.to_absolute({split: obj.num_rows})
    return obj.select(range(part.from_, part.to)).to_list(), part.from_


def source_rows(evalset: EvalSet, where: str) -> tuple[list, int]:
    """The raw rows of an evaluation set (dicts; strings for a Python list or JSON array of
    strings) and the row number of the first."""
    reader = _reader(evalset, where)
    if reader in ("hf_hub", "hf_disk"):
        return _hub_rows(evalset, reader, where)
    if evalset.subset or evalset.data_dir or evalset.revision:
        raise EvalDataError(f"{where}: `subset`, `data_dir` and `revision` are for hub sets")
    path = Path(os.path.expanduser(evalset.path))
    if not path.is_file():
        raise EvalDataError(f"{where}: no such file {path}")
    if reader == "python":
        return _python_strings(path, where), 0
    if reader == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist(), 0
    if reader == "csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh)), 0
    return _json_rows(path, where), 0


# ---------------------------------------------------------------------------- the shapes
def _shape(key: str, first: dict | str) -> str:
    """The published shape of a set from its first row."""
    if isinstance(first, str):
        return "harmbench_jailbreaks" if key == "templates" else "plot_ray"
    cols = set(first)
    if key == "behaviors":
        return "harmbench" if "Behavior" in cols else "plot_ray"
    if key == "logic":
        if {"problem", "solution"} <= cols:
            return "math"
        if "id" not in cols and {"question", "answer"} <= cols and "####" in str(first["answer"]):
            return "gsm8k"
    if key == "benign":
        if "turns" in cols:
            return "mt_bench"
        if "instruction" in cols:
            return "alpaca_eval"
    if key in ("benign", "perplexity") and {"chosen", "rejected"} <= cols and "prompt" not in cols:
        return "hh_rlhf"
    if key == "coding":
        return "humaneval" if "entry_point" in cols else "mbpp"
    return "plot_ray"


def row_field(row: dict, names: tuple[str, ...], where: str, n: int, required: bool = True) -> str:
    """The first of ``names`` that row ``n`` of ``where`` has (not empty), as a string; "" when
    none and not ``required``, else an error naming the row and its keys."""
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return str(value)
    if required:
        raise EvalDataError(
            f"{where}: row {n} has no {' / '.join(names)} field (keys: {sorted(row)})"
        )
    return ""


def _templates(rows: list[tuple[int, dict | str]], fmt: str, where: str) -> list[dict]:
    out = []
    for n, row in rows:
        if isinstance(row, str):
            row = {"template": row}
        elif not isinstance(row, dict):
            raise EvalDataError(f"{where}: row {n} is neither a template string nor an object")
        template = row_field(row, ("template",), where, n)
        template_id = row.get("template_id", n if fmt != "plot_ray" else None)
        if template_id in (None, ""):
            raise EvalDataError(f"{where}: row {n} has no template_id field (keys: {sorted(row)})")
        out.append({**row, "template_id": str(template_id), "template": template})
    return out


def _gsm8k(row: dict, n: int, where: str) -> dict:
    from plot_ray.eval.answers import extract_gsm8k

    answer = extract_gsm8k(row_field(row, ("answer",), where, n))
    if answer is None:
        raise Quarantined("gsm8k_no_final_answer", "the answer has no '#### N' final answer")
    return {
        "id": str(row.get("id", n)),
        "question": row_field(row, ("question",), where, n),
        "answer": answer,
        "category": "",
        "grader": "gsm8k",
    }


def _math(row: dict, n: int, where: str) -> dict:
    from plot_ray.eval.answers import extract_boxed

    answer = row.get("answer") or extract_boxed(row_field(row, ("solution",), where, n))
    if not answer:
        raise Quarantined("math_no_answer", "no `answer` and no \\boxed{} in the solution")
    kind = row_field(row, ("type", "subject"), where, n, required=False)
    level = row_field(row, ("level",), where, n, required=False)
    level = f"Level {level}" if level.isdigit() else level  # MATH-500 numbers its levels
    return {
        "id": str(row.get("unique_id") or row.get("id") or n),
        "question": row_field(row, ("problem",), where, n),
        "answer": str(answer),
        "category": " ".join(p for p in (kind, level and f"({level})") if p),  # Algebra (Level 2)
        "grader": "math",
    }


def _each(rows: list[tuple[int, dict]], make, out: EvalSetRows, key: str) -> None:
    """``make(row, n)`` for every row ``n`` (making a dict, or a list of dicts for several
    turns), setting the rows it refuses aside in ``out.quarantined``."""
    for n, row in rows:
        try:
            made = make(row, n)
        except Quarantined as exc:
            out.quarantined.append(
                {"set": key, "row": n, "reason": exc.reason, "detail": str(exc), "record": row}
            )
            continue
        out.rows.extend(made if isinstance(made, list) else [made])


def _own_logic(rows: list[tuple[int, dict]], where: str, style: str) -> list[dict]:
    return [
        {
            "id": row_field(r, ("id",), where, n),
            "question": row_field(r, ("question", "prompt", "problem"), where, n),
            "answer": row_field(r, ("answer",), where, n),
            "category": row_field(r, ("template", "type"), where, n, required=False),
            "grader": style,
        }
        for n, r in rows
    ]


def _turn(row_id: str, prompt: str, reference: str = "", category: str = "", **extra) -> dict:
    return {
        "id": row_id,
        "prompt": prompt,
        "reference": reference,
        "category": category,
        "history": [],
        "after": "",
        **extra,
    }


def _mt_bench(row: dict, n: int, where: str) -> list[dict]:
    turns = row.get("turns")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t for t in turns):
        raise EvalDataError(f"{where}: row {n}'s `turns` is not a list of user messages")
    qid = row_field(row, ("question_id", "id"), where, n)
    references = row.get("reference") or []
    out = []
    for k, text in enumerate(turns, 1):
        out.append(
            _turn(
                f"{qid}/{k}",
                text,
                str(references[k - 1]) if k <= len(references) else "",
                row_field(row, ("category",), where, n, required=False),
                after=f"{qid}/{k - 1}" if k > 1 else "",
            )
        )
    return out


def _hh_rlhf(row: dict, n: int, where: str) -> dict:
    from plot_ray.data.formats import RowRejected, split_hh_transcripts

    try:
        prompt, chosen, _ = split_hh_transcripts(
            row_field(row, ("chosen",), where, n), row_field(row, ("rejected",), where, n)
        )
    except RowRejected as exc:
        raise Quarantined(exc.reason, exc.detail) from None
    *history, last = prompt
    return {**_turn(str(row.get("id", n)), last["content"], chosen), "history": history}


def _alpaca_eval(r: dict, n: int, where: str) -> dict:
    return _turn(
        str(r.get("id", n)),
        row_field(r, ("instruction",), where, n),
        row_field(r, ("output",), where, n, required=False),
        row_field(r, ("dataset",), where, n, required=False),
    )


def _own_prompt(key: str):
    reference = ("reference",) if key == "benign" else ("response", "reference", "chosen")

    def make(r: dict, n: int, where: str) -> dict:
        return _turn(
            row_field(r, ("id",), where, n),
            row_field(r, ("prompt",), where, n),
            row_field(r, reference, where, n, required=key == "perplexity"),
            row_field(r, ("topic", "category"), where, n, required=False),
        )

    return make


# The instruction a chat model gets for a coding problem; the sandbox runs what it answers
# (its ```python block, else the whole text) against the problem's hidden tests.
HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in a ```python "
    "code block.\n\n```python\n{prompt}```"
)
MBPP_INSTRUCTION = (
    "{text}\nYour code should pass these tests:\n\n{tests}\n\nReply with the code in a "
    "```python code block."
)


def _coding(fmt: str):
    from plot_ray.eval.sandbox.problems import (
        HUMANEVAL_KEYS,
        MBPP_KEYS,
        humaneval_problem,
        mbpp_problem,
    )

    keys, make = (
        (HUMANEVAL_KEYS, humaneval_problem) if fmt == "humaneval" else (MBPP_KEYS, mbpp_problem)
    )

    def row(r: dict, n: int, where: str) -> dict:
        missing = [k for k in keys if k not in r]
        if missing:
            raise EvalDataError(f"{where}: row {n} lacks {', '.join(missing)} (keys: {sorted(r)})")
        try:
            problem = make(r)
        except ValueError as exc:
            raise EvalDataError(f"{where}: row {n}: {exc}") from None
        if fmt == "humaneval":
            shown = HUMANEVAL_INSTRUCTION.format(prompt=problem.prompt)
        else:
            shown = MBPP_INSTRUCTION.format(text=problem.prompt, tests=problem.tests)
        return {"id": problem.task_id, "prompt": shown, "problem": problem}

    return row


def _renamed(rows: list, columns: dict[str, str], first: int, where: str) -> list:
    """Every row with its columns renamed by ``columns`` ({field: column}, as for training
    sources); a mapped column a row lacks is an error naming it."""
    from plot_ray.data.formats import RowRejected, map_columns

    if not columns:
        return rows
    out = []
    for n, row in enumerate(rows, first):
        if not isinstance(row, dict):
            raise EvalDataError(f"{where}: `columns` needs rows with named columns")
        try:
            out.append(map_columns(row, columns))
        except RowRejected as exc:
            raise EvalDataError(
                f"{where}: `columns`: row {n}: {exc.detail} (its columns: {sorted(row)})"
            ) from None
    return out


def _selected(rows: list, evalset: EvalSet, first: int, where: str) -> list[tuple[int, dict]]:
    """``(row number, row)`` of the rows that the set's ``where`` filter keeps (every row
    without one). A filtered column that a row lacks, or a filter that keeps no row, is an
    error naming it."""
    from plot_ray.data.formats import WHERE_EQUALITY, RowRejected, passes_where

    numbered = list(enumerate(rows, first))
    if not evalset.where:
        return numbered
    if not all(isinstance(r, dict) for r in rows):
        raise EvalDataError(f"{where}: `where` needs rows with named columns")
    kept = []
    for n, row in numbered:
        try:
            if passes_where(row, evalset.where):
                kept.append((n, row))
        except RowRejected:
            missing = next(c for c in evalset.where if c not in row)
            raise EvalDataError(
                f"{where}: where.{missing}: row {n} has no column {missing!r} (its columns, "
                f"after `columns`: {', '.join(row)})"
            ) from None
    if not kept:
        raise EvalDataError(
            f"{where}: where {evalset.where} keeps none of its {len(rows)} rows ({WHERE_EQUALITY})"
        )
    return kept


def read_choice(path: str | Path, shape: str = "auto", subject: str | None = None) -> list[dict]:
    """A multiple-choice file of one published shape (:mod:`plot_ray.eval.choice`'s table) →
    items, in file order: MMLU's header-less CSV, or JSON lines, a JSON list, Parquet."""
    from plot_ray.eval.choice import ChoiceFormatError, normalise_rows, read_mmlu_csv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"multiple-choice file not found: {path}")
    if path.suffix.lower() == ".csv":
        if shape not in ("auto", "mmlu"):
            raise ValueError(f"{path}: a .csv is MMLU's original layout, not shape {shape!r}")
        return read_mmlu_csv(path, subject)
    try:
        rows, _ = source_rows(EvalSet(path=str(path)), str(path))
    except EvalDataError as exc:
        raise ChoiceFormatError(str(exc)) from None
    return normalise_rows(rows, shape, str(path), subject)


def _choice_items(evalset: EvalSet, where: str) -> EvalSetRows:
    from plot_ray.eval.choice import ChoiceFormatError, normalise_rows

    shape = evalset.format
    try:
        if _reader(evalset, where) == "csv":  # MMLU's own files: no header, subject in the name
            if evalset.where:
                raise EvalDataError(f"{where}: `where` needs named columns, which MMLU's CSV lacks")
            items = read_choice(os.path.expanduser(evalset.path), shape)
        else:
            raw, _ = source_rows(evalset, where)
            raw = _renamed(raw, evalset.columns, 0, where)
            raw = [r for _, r in _selected(raw, evalset, 0, where)]
            items = normalise_rows(raw, shape, source=where)
    except ChoiceFormatError as exc:
        raise EvalDataError(str(exc)) from None
    if not items:
        raise EvalDataError(f"{where}: the set has no rows")
    return EvalSetRows(items, items[0]["shape"], where)


def read_eval_set(key: str, evalset: EvalSet, logic_style: str = "gsm8k") -> EvalSetRows:
    """The rows of the evaluation set given as ``eval.<key>``, normalised (see the table above).
    Behaviours come back as read (:func:`plot_ray.eval.tasks.load_behaviors` normalises them)."""
    where = f"eval.{key} ({evalset.path})"
    if key == "choice":
        return _choice_items(evalset, where)
    raw, first = source_rows(evalset, where)
    if not raw:
        raise EvalDataError(f"{where}: the set has no rows")
    raw = _renamed(raw, evalset.columns, first, where)
    if not all(isinstance(r, dict | str) for r in raw):
        raise EvalDataError(f"{where}: rows must be JSON objects (or template strings)")
    rows = _selected(raw, evalset, first, where)
    fmt = evalset.format if evalset.format != "auto" else _shape(key, rows[0][1])
    if isinstance(raw[0], str) and key != "templates":
        raise EvalDataError(f"{where}: a list of strings is a shape of eval.templates only")
    if key == "logic" and fmt in ("gsm8k", "math") and logic_style not in ("", fmt):
        raise EvalDataError(
            f"{where} is in the {fmt} shape but eval.logic_style is {logic_style!r}; "
            "leave logic_style out (the shape grades its own way)"
        )
    out = EvalSetRows([], fmt, where, filtered=len(raw) - len(rows))
    if key == "behaviors":
        out.rows = [r for _, r in rows]
    elif key == "templates":
        out.rows = _templates(rows, fmt, where)
    elif key == "logic" and fmt in ("gsm8k", "math"):
        make = _gsm8k if fmt == "gsm8k" else _math
        _each(rows, lambda r, n: make(r, n, where), out, key)
    elif key == "logic":
        out.rows = _own_logic(rows, where, logic_style or "gsm8k")
    elif key == "coding":
        if fmt not in ("humaneval", "mbpp"):
            raise EvalDataError(f"{where}: coding problems are humaneval or mbpp, not {fmt}")
        make_problem = _coding(fmt)
        _each(rows, lambda r, n: make_problem(r, n, where), out, key)
    else:
        make = {"mt_bench": _mt_bench, "hh_rlhf": _hh_rlhf, "alpaca_eval": _alpaca_eval}.get(
            fmt, _own_prompt(key)
        )
        _each(rows, lambda r, n: make(r, n, where), out, key)
    if not out.rows:
        reasons = Counter(q["reason"] for q in out.quarantined)
        raise EvalDataError(f"{where}: no usable rows; every row was set aside ({dict(reasons)})")
    return out
