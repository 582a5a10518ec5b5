"""Coding problems in their published shapes, and the program a completion is run as.

HumanEval (``openai/human-eval``, one JSON object per line): ``task_id, prompt,
canonical_solution, test, entry_point``; ``test`` defines ``check(candidate)``. The program is
``prompt + completion`` (the completion is the function's body), then ``test``, then
``check(<entry_point>)``. A completion that writes the whole function (``def <entry_point>(``)
follows the prompt instead: the prompt's own definition (its docstring is a valid body) is
replaced by the later one, and the prompt's imports stay.

MBPP (``google-research/mbpp``): ``task_id, text, code, test_list, test_setup_code`` (and
``challenge_test_list``); the sanitized variant has ``prompt`` instead of ``text`` and
``test_imports``. The program is the setup code and imports, the completion, then every assert
in ``test_list``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from plot_ray.eval.sandbox.execute import (
    DEFAULT_LIMITS,
    Isolation,
    Limits,
    SandboxResult,
    run_programs,
)

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
PYTHON_TAGS = ("python", "py", "python3")
HUMANEVAL_KEYS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
MBPP_KEYS = ("task_id", "code", "test_list")


@dataclasses.dataclass(frozen=True)
class CodeProblem:
    """One problem: ``prompt`` is what the model is shown, ``canonical`` a reference
    completion (for HumanEval the body after the prompt, for MBPP the whole code)."""

    task_id: str
    style: str  # "humaneval" | "mbpp"
    prompt: str
    canonical: str
    tests: str  # the code that checks the completion, run after it
    entry_point: str = ""
    setup: str = ""  # run before the completion (MBPP's test_setup_code and test_imports)

    def program(self, completion: str) -> str:
        """The program the sandbox runs for ``completion`` (raw model text)."""
        code = extract_code(completion)
        if self.style == "humaneval":
            defines = re.search(rf"^\s*def\s+{re.escape(self.entry_point)}\s*\(", code, re.M)
            head = self.prompt + ("\n" if defines else "")
            return f"{head}{code}\n\n{self.tests}\n\ncheck({self.entry_point})\n"
        return f"{self.setup}\n{code}\n\n{self.tests}\n"


def extract_code(completion: str) -> str:
    """The code in a completion: its fenced Python blocks (```python / ```py, joined), else its
    untagged fenced blocks, else the raw text. An unclosed fence runs to the end (a
    generation cut off by its token limit)."""
    blocks = [(tag.lower(), body) for tag, body in FENCE.findall(completion)]
    for wanted in (lambda tag: tag in PYTHON_TAGS, lambda tag: tag == ""):
        chosen = [body for tag, body in blocks if wanted(tag)]
        if chosen:
            return "\n".join(body.rstrip() + "\n" for body in chosen)
    return completion


def _rows(path: Path, required: tuple[str, ...]) -> list[dict]:
    """JSON lines, or one JSON list; an error names every row missing a key."""
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        rows = json.loads(text)
        where = [f"item {i}" for i in range(len(rows))]
    else:
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        rows, where = [], []
        for n, line in numbered:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {n} is not JSON ({exc.msg})") from None
            where.append(f"line {n}")
    bad = [
        f"{w} lacks {', '.join(k for k in required if k not in row)}"
        for w, row in zip(where, rows, strict=True)
        if not isinstance(row, dict) or any(k not in row for k in required)
    ]
    if bad:
        raise ValueError(f"{path}: {len(bad)} of {len(rows)} problems are malformed: {bad[:5]}")
    return rows


def humaneval_problem(row: Mapping) -> CodeProblem:
    """One HumanEval-shaped row (``task_id, prompt, canonical_solution, test, entry_point``)."""
    return CodeProblem(
        task_id=str(row["task_id"]),
        style="humaneval",
        prompt=row["prompt"],
        canonical=row["canonical_solution"],
        tests=row["test"],
        entry_point=row["entry_point"],
    )


def mbpp_problem(row: Mapping) -> CodeProblem:
    """One MBPP-shaped row, original (``text``, ``test_setup_code``) or sanitized (``prompt``,
    ``test_imports``)."""
    if "text" not in row and "prompt" not in row:
        raise ValueError(f"MBPP problem {row['task_id']} has neither text nor prompt")
    imports = "\n".join(row.get("test_imports") or [])
    return CodeProblem(
        task_id=str(row["task_id"]),
        style="mbpp",
        prompt=row.get("text", row.get("prompt")),
        canonical=row["code"],
        tests="\n".join(row["test_list"]),
        setup="\n".join(s for s in (row.get("test_setup_code", ""), imports) if s),
    )


def read_humaneval(path: str | Path) -> list[CodeProblem]:
    """HumanEval-shaped problems from a JSON-lines file (or a JSON list)."""
    return [humaneval_problem(row) for row in _rows(Path(path), HUMANEVAL_KEYS)]


def read_mbpp(path: str | Path) -> list[CodeProblem]:
    """MBPP-shaped problems, original (``text``, ``test_setup_code``) or sanitized
    (``prompt``, ``test_imports``)."""
    problems = []
    for row in _rows(Path(path), MBPP_KEYS):
        try:
            problems.append(mbpp_problem(row))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return problems


def run_completions(
    problems: Sequence[CodeProblem],
    completions: Mapping[str, Sequence[str]],
    limits: Limits = DEFAULT_LIMITS,
    isolation: Isolation = "namespaces",
    workers: int | None = None,
) -> dict[str, list[SandboxResult]]:
    """Every completion of every problem through the sandbox: ``{task_id: [result per
    completion]}`` in the order given. A problem without completions is an error, not a 0."""
    missing = [p.task_id for p in problems if not completions.get(p.task_id)]
    if missing:
        raise ValueError(f"{len(missing)} problems have no completions: {missing[:5]}")
    jobs = [(p.task_id, p.program(text)) for p in problems for text in completions[p.task_id]]
    results = run_programs([program for _, program in jobs], limits, isolation, workers)
    out: dict[str, list[SandboxResult]] = {p.task_id: [] for p in problems}
    for (task_id, _), result in zip(jobs, results, strict=True):
        out[task_id].append(result)
    return out
