"""Evaluation tasks: read the evaluation sets and build every task's cases.

    build_cases(eval_cfg) -> {task: [case rows]}

Every case row has the same string columns, so that the cases of all tasks travel through one
Ray Dataset and one engine start per model:

    case_id      stable id: "<attack>/<behavior_id>/<n>", "benign/<id>", "logic/<id>", "ppl/<id>"
    task         harmful | benign | logic | perplexity
    message      the user turn the model receives (an attack's test case for ``harmful``)
    reference    the behaviour's target string / the benign reference answer / the logic
                 answer / the response whose perplexity is measured
    behavior_id, behavior, attack, category      (harmful; "" elsewhere)
    template_family, family_split, primed_form   (a jailbreak template's family, whether the
                 family is held out of training, the surface form it primes; "" elsewhere)

Inputs, each a file (small enough for the driver; the work on them is what is distributed):

- behaviours: the synthetic benchmark's ``behaviors.jsonl`` (``behavior_id, behavior, target,
  topic``) or a HarmBench CSV (``Behavior, FunctionalCategory, SemanticCategory, ContextString,
  BehaviorID``) / JSONL with those names; targets may come from a HarmBench-style JSON map
  ``{BehaviorID: "Sure, here is ..."}`` named ``<behaviours file>.targets.json``.
- templates: JSONL of ``{template_id, template}`` (the synthetic benchmark adds ``family``,
  ``family_heldout`` and ``form``, which become the cases' template columns).
- benign: JSONL of ``{id, prompt, reference}``; logic: JSONL of ``{id, question, answer}``;
  perplexity: JSONL of ``{id, prompt, response}`` (default: the benign prompts' references).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from plot_ray.config import EvalConfig
from plot_ray.eval.attacks import StaticContext

__all__ = [
    "CASE_COLUMNS",
    "EvalDataError",
    "build_cases",
    "eval_behaviors",
    "eval_paths",
    "harmful_case",
    "load_behaviors",
]

CASE_COLUMNS = (
    "case_id",
    "task",
    "message",
    "reference",
    "behavior_id",
    "behavior",
    "attack",
    "category",
    "template_family",
    "family_split",
    "primed_form",
)


class EvalDataError(ValueError):
    """An evaluation set is missing, malformed, or lacks a field a task needs."""


def eval_paths(ev: EvalConfig) -> dict[str, Path | None]:
    """Each evaluation set's path: given explicitly, else the synthetic benchmark's file under
    ``eval.data_dir``."""
    base = Path(ev.data_dir) / "eval" if ev.data_dir else None
    defaults = {
        "behaviors": "behaviors.jsonl",
        "templates": "jailbreak_templates.jsonl",
        "benign": "benign.jsonl",
        "logic": "logic_heldout.jsonl",
        "perplexity": None,
    }
    out: dict[str, Path | None] = {}
    for key, name in defaults.items():
        given = getattr(ev, key)
        out[key] = Path(given) if given else (base / name if base and name else None)
    return out


def _read_rows(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise EvalDataError(f"eval.{what}: no such file {path}")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise EvalDataError(f"{path}:{n}: a JSON object per line, got {type(row).__name__}")
            rows.append(row)
    return rows


def _field(row: dict, names: tuple[str, ...], path: Path, n: int, required: bool = True) -> str:
    for name in names:
        value = row.get(name)
        if value not in (None, ""):
            return str(value)
    if required:
        raise EvalDataError(
            f"{path}: row {n} has no {' / '.join(names)} field (keys: {sorted(row)})"
        )
    return ""


def load_behaviors(path: Path) -> list[dict]:
    """Behaviours in one schema: ``behavior_id, behavior, category, target, context``.
    HarmBench's copyright behaviours need a hash-based judge plot-ray does not have: refused."""
    rows = _read_rows(path, "behaviors")
    targets_file = path.with_suffix(".targets.json")
    targets = json.loads(targets_file.read_text()) if targets_file.is_file() else {}
    out, seen = [], set()
    for n, row in enumerate(rows, 1):
        if str(row.get("FunctionalCategory", "")).lower() == "copyright":
            raise EvalDataError(
                f"{path}: row {n} is a copyright behaviour; its judge (hash matching) is not "
                "part of plot-ray: filter those rows out"
            )
        bid = _field(row, ("behavior_id", "BehaviorID", "id"), path, n)
        if bid in seen:
            raise EvalDataError(f"{path}: behaviour id {bid!r} appears twice")
        seen.add(bid)
        out.append(
            {
                "behavior_id": bid,
                "behavior": _field(row, ("behavior", "Behavior"), path, n),
                "category": _field(
                    row, ("category", "SemanticCategory", "topic"), path, n, required=False
                ),
                "target": targets.get(bid) or _field(row, ("target",), path, n, required=False),
                "context": _field(row, ("context", "ContextString"), path, n, required=False),
            }
        )
    return out


def _case(task: str, case_id: str, message: str, reference: str = "", **extra: str) -> dict:
    row = dict.fromkeys(CASE_COLUMNS, "")
    row.update(case_id=case_id, task=task, message=message, reference=reference, **extra)
    return row


def eval_behaviors(ev: EvalConfig) -> list[dict]:
    """The behaviours the harmful task attacks (the first ``eval.num_behaviors``)."""
    path = eval_paths(ev)["behaviors"]
    if path is None:
        raise EvalDataError("the harmful task needs eval.behaviors (or eval.data_dir)")
    return load_behaviors(path)[: ev.num_behaviors]


def _templates(path: Path | None) -> list[dict]:
    if path is None:
        raise EvalDataError("the human_jailbreaks attack needs eval.templates (or eval.data_dir)")
    templates = _read_rows(path, "templates")
    for n, t in enumerate(templates, 1):
        _field(t, ("template",), path, n)
    return templates


def _harmful(ev: EvalConfig, paths: dict) -> list[dict]:
    """The test cases of the static attacks (the others add theirs per run or per model)."""
    behaviors = eval_behaviors(ev)
    by_id = {b["behavior_id"]: b for b in behaviors}
    ctx = StaticContext(seed=ev.seed, load_templates=lambda: _templates(paths["templates"]))
    cases = []
    for spec in ev.attack_specs("static"):
        made = spec.run(behaviors, ev.attack_settings(spec.name), ctx)
        for c in made:
            labels = {k: v for k, v in c.extra.items() if k in CASE_COLUMNS}
            cases.append(harmful_case(by_id[c.behavior_id], spec.name, c.n, c.test_case, **labels))
    return cases


def harmful_case(behavior: dict, attack: str, n: int, test_case: str, **labels: str) -> dict:
    """The harmful task's case for test case ``n`` of ``attack`` on ``behavior``; ``labels``:
    the template's case columns (``template_family``, ``family_split``, ``primed_form``)."""
    return _case(
        "harmful",
        f"{attack}/{behavior['behavior_id']}/{n}",
        test_case,
        behavior.get("target", ""),
        behavior_id=behavior["behavior_id"],
        behavior=behavior["behavior"],
        attack=attack,
        category=behavior.get("category", ""),
        **labels,
    )


def _prompt_task(
    task: str,
    path: Path | None,
    limit: int | None,
    message: tuple[str, ...],
    reference: tuple[str, ...],
    category: tuple[str, ...],
    reference_required: bool,
) -> list[dict]:
    """Cases from a JSONL of prompts: one per row, ``<task>/<id>``."""
    if path is None:
        raise EvalDataError(f"the {task} task needs eval.{task} (or eval.data_dir)")
    return [
        _case(
            task,
            f"{task}/{_field(r, ('id',), path, n)}",
            _field(r, message, path, n),
            _field(r, reference, path, n, required=reference_required),
            category=_field(r, category, path, n, required=False),
        )
        for n, r in enumerate(_read_rows(path, task)[:limit], 1)
    ]


def _benign(ev: EvalConfig, paths: dict) -> list[dict]:
    return _prompt_task(
        "benign",
        paths["benign"],
        ev.num_benign,
        ("prompt",),
        ("reference",),
        ("topic", "category"),
        False,
    )


def _logic(ev: EvalConfig, paths: dict) -> list[dict]:
    return _prompt_task(
        "logic",
        paths["logic"],
        ev.num_logic,
        ("question", "prompt", "problem"),
        ("answer",),
        ("template", "type"),
        True,
    )


def _perplexity(ev: EvalConfig, paths: dict) -> list[dict]:
    if paths["perplexity"] is not None:
        p = paths["perplexity"]
        rows = _read_rows(p, "perplexity")
        return [
            _case(
                "perplexity",
                f"ppl/{_field(r, ('id',), p, n)}",
                _field(r, ("prompt",), p, n),
                _field(r, ("response", "reference", "chosen"), p, n),
            )
            for n, r in enumerate(rows, 1)
        ]
    # Default: the held-out benign prompts' reference answers (never seen in training).
    benign = _benign(ev, paths)
    return [
        {**c, "task": "perplexity", "case_id": "ppl/" + c["case_id"].split("/", 1)[1]}
        for c in benign
        if c["reference"]
    ]


_BUILDERS = {"harmful": _harmful, "benign": _benign, "logic": _logic, "perplexity": _perplexity}


def build_cases(ev: EvalConfig) -> dict[str, list[dict]]:
    """Every configured task's cases, in a deterministic order (the order shards are cut in)."""
    paths = eval_paths(ev)
    out = {}
    for task in ev.tasks:
        cases = _BUILDERS[task](ev, paths)
        with_a_model = task == "harmful" and len(ev.attack_specs("static")) < len(ev.attacks)
        if not cases and not with_a_model:  # attacks with a model add their cases later
            raise EvalDataError(f"the {task} task has no cases: check its input file")
        ids = [c["case_id"] for c in cases]
        if len(set(ids)) != len(ids):
            raise EvalDataError(f"the {task} task has repeated ids; ids must be unique")
        out[task] = cases
    return out
