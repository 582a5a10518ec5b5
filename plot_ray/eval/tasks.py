"""Evaluation tasks: read the evaluation sets and build every task's cases.

    build_cases(eval_cfg) -> {task: [case rows]}

Every case row has the same string columns, so that the cases of all tasks travel through one
Ray Dataset and one engine start per model:

    case_id      stable id: "<attack>/<behavior_id>/<n>", "benign/<id>", "logic/<id>", "ppl/<id>",
                 "coding/<task_id>/<sample>", "choice/<id>", "humanity/<id>"
    task         harmful | benign | logic | perplexity | coding | choice | humanity
    message      the user turn the model receives (an attack's test case for ``harmful``)
    history      the conversation before ``message`` (JSON list of {role, content}; "" none)
    after        the case whose conversation, with the model's own answer to it, comes before
                 this one's (a later turn of a multi-turn question; "" none); always an
                 earlier case of the task (:func:`plot_ray.eval.pipeline.turns`)
    reference    the behaviour's target string / the benign reference answer / the logic
                 answer / the response whose perplexity is measured / the coding problem
                 (JSON: its tests and entry point, what the sandbox runs the completion with) /
                 the multiple-choice item (JSON: question, choices, answer_index, subject)
    grader       how a logic answer is graded: gsm8k | math ("" elsewhere)
    behavior_id, behavior, attack, category      (harmful; "" elsewhere but category)
    template_family, family_split, primed_form   (a jailbreak template's family, whether the
                 family is held out of training, the surface form it primes; "" elsewhere)

Inputs (``eval.behaviors``, ``templates``, ``benign``, ``logic``, ``perplexity``) are files or
hub datasets in their published shapes (:mod:`plot_ray.eval.evalsets`: HarmBench's behaviours
CSV and human jailbreaks, GSM8K, MATH, AlpacaEval, MT-Bench, HH-RLHF) or the project's own JSONL
(the synthetic benchmark's ``eval/`` files, the defaults under ``eval.data_dir``, which also
hold its ``coding``, ``choice`` and ``humanity`` sets). Behaviour
targets may come from a HarmBench-style JSON map ``{BehaviorID: "Sure, here is ..."}`` named
``<behaviours file>.targets.json``. The perplexity task defaults to the benign prompts'
references.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from plot_ray.config import EvalConfig, EvalSet
from plot_ray.eval.attacks import StaticContext
from plot_ray.eval.evalsets import EvalDataError, read_eval_set, row_field
from plot_ray.eval.pipeline import turns

__all__ = [
    "CASE_COLUMNS",
    "EvalDataError",
    "build_cases",
    "conversation",
    "eval_behaviors",
    "eval_sets",
    "harmful_case",
    "load_behaviors",
]

CASE_COLUMNS = (
    "case_id",
    "task",
    "message",
    "history",
    "after",
    "reference",
    "grader",
    "behavior_id",
    "behavior",
    "attack",
    "category",
    "template_family",
    "family_split",
    "primed_form",
)


def eval_sets(ev: EvalConfig) -> dict[str, EvalSet | None]:
    """Each evaluation set: given explicitly, else the synthetic benchmark's file under
    ``eval.data_dir``."""
    base = Path(ev.data_dir) / "eval" if ev.data_dir else None
    defaults = {
        "behaviors": "behaviors.jsonl",
        "templates": "jailbreak_templates.jsonl",
        "benign": "benign.jsonl",
        "logic": "logic_heldout.jsonl",
        "perplexity": None,
        "coding": "coding.jsonl",
        "choice": "choice.jsonl",
        "humanity": "humanity.jsonl",
    }
    out: dict[str, EvalSet | None] = {}
    for key, name in defaults.items():
        given = getattr(ev, key)
        out[key] = given or (EvalSet(path=str(base / name)) if base and name else None)
    return out


def load_behaviors(source: Path | str | EvalSet) -> list[dict]:
    """Behaviours in one schema: ``behavior_id, behavior, category, target, context``, from
    HarmBench's CSV (or JSONL with its column names) or the synthetic ``behaviors.jsonl``.
    HarmBench's copyright behaviours need a hash-based judge plot-ray does not have: refused."""
    evalset = source if isinstance(source, EvalSet) else EvalSet(path=str(source))
    where = f"eval.behaviors ({evalset.path})"
    rows = read_eval_set("behaviors", evalset).rows
    path = Path(evalset.path)
    targets_file = path.with_suffix(".targets.json")
    targets = json.loads(targets_file.read_text()) if path.suffix and targets_file.is_file() else {}
    out, seen = [], set()
    for n, row in enumerate(rows, 1):
        if str(row.get("FunctionalCategory", "")).lower() == "copyright":
            raise EvalDataError(
                f"{where}: row {n} is a copyright behaviour; its judge (hash matching) is not "
                "part of plot-ray: keep the others with "
                "`where: {FunctionalCategory: [standard, contextual]}`"
            )
        bid = row_field(row, ("behavior_id", "BehaviorID", "id"), where, n)
        if bid in seen:
            raise EvalDataError(f"{where}: behaviour id {bid!r} appears twice")
        seen.add(bid)
        out.append(
            {
                "behavior_id": bid,
                "behavior": row_field(row, ("behavior", "Behavior"), where, n),
                "category": row_field(
                    row, ("category", "SemanticCategory", "topic"), where, n, required=False
                ),
                "target": targets.get(bid) or row_field(row, ("target",), where, n, required=False),
                "context": row_field(row, ("context", "ContextString"), where, n, required=False),
            }
        )
    return out


def _case(task: str, case_id: str, message: str, reference: str = "", **extra: str) -> dict:
    row = dict.fromkeys(CASE_COLUMNS, "")
    row.update(case_id=case_id, task=task, message=message, reference=reference, **extra)
    return row


def eval_behaviors(ev: EvalConfig) -> list[dict]:
    """The behaviours the harmful task attacks (the first ``eval.num_behaviors``)."""
    evalset = eval_sets(ev)["behaviors"]
    if evalset is None:
        raise EvalDataError("the harmful task needs eval.behaviors (or eval.data_dir)")
    return load_behaviors(evalset)[: ev.num_behaviors]


def _templates(evalset: EvalSet | None) -> list[dict]:
    if evalset is None:
        raise EvalDataError("the human_jailbreaks attack needs eval.templates (or eval.data_dir)")
    return read_eval_set("templates", evalset).rows


def _harmful(ev: EvalConfig, sets: dict, quarantine: list[dict]) -> list[dict]:
    """The test cases of the static attacks (the others add theirs per run or per model)."""
    behaviors = eval_behaviors(ev)
    by_id = {b["behavior_id"]: b for b in behaviors}
    ctx = StaticContext(seed=ev.seed, load_templates=lambda: _templates(sets["templates"]))
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


def _first(rows: list[dict], limit: int | None, rounds: dict[str, int]) -> list[dict]:
    """The rows of the first ``limit`` items (a multi-turn question is one item with all its
    turns), every first turn before every second turn (the rounds generation runs in)."""
    starts = [i for i, r in enumerate(rows) if not r["after"]]
    kept = rows if limit is None or limit >= len(starts) else rows[: starts[limit]]
    return sorted(kept, key=lambda r: rounds[r["id"]])  # stable: the set's order in a round


def _prompt_cases(
    task: str, prefix: str, evalset: EvalSet | None, limit: int | None, quarantine: list[dict]
) -> list[dict]:
    """Cases from a set of prompts (benign, perplexity): ``<prefix>/<id>``."""
    if evalset is None:
        raise EvalDataError(f"the {task} task needs eval.{task} (or eval.data_dir)")
    read = read_eval_set(task, evalset)
    quarantine.extend(read.quarantined)
    rows = read.rows
    rounds = turns(rows, key="id")
    return [
        _case(
            task,
            f"{prefix}/{r['id']}",
            r["prompt"],
            r["reference"],
            category=r["category"],
            history=json.dumps(r["history"]) if r["history"] else "",
            after=f"{prefix}/{r['after']}" if r["after"] else "",
        )
        for r in _first(rows, limit, rounds)
    ]


def _benign(ev: EvalConfig, sets: dict, quarantine: list[dict]) -> list[dict]:
    return _prompt_cases("benign", "benign", sets["benign"], ev.num_benign, quarantine)


def _humanity(ev: EvalConfig, sets: dict, quarantine: list[dict]) -> list[dict]:
    return _prompt_cases("humanity", "humanity", sets["humanity"], ev.num_humanity, quarantine)


def _logic(ev: EvalConfig, sets: dict, quarantine: list[dict]) -> list[dict]:
    if sets["logic"] is None:
        raise EvalDataError("the logic task needs eval.logic (or eval.data_dir)")
    style = ev.logic_style if "logic_style" in ev.model_fields_set else ""
    read = read_eval_set("logic", sets["logic"], style)
    quarantine.extend(read.quarantined)
    rows = read.rows
    return [
        _case(
            "logic",
            f"logic/{r['id']}",
            r["question"],
            r["answer"],
            grader=r["grader"],
            category=r["category"],
        )
        for r in rows[: ev.num_logic]
    ]


def _perplexity(ev: EvalConfig, sets: dict, quarantine: list[dict]) -> list[dict]:
    if sets["perplexity"] is not None:
        cases = _prompt_cases("perplexity", "ppl", sets["perplexity"], None, quarantine)
        if any(c["after"] for c in cases):
            raise EvalDataError("eval.perplexity: multi-turn questions have no fixed responses")
        return cases
    # Default: the held-out benign prompts' reference answers (never seen in training).
    return [
        {**c, "task": "perplexity", "case_id": "ppl/" + c["case_id"].split("/", 1)[1]}
        for c in _benign(ev, sets, [])  # the benign task reports its own set-aside rows
        if c["reference"] and not c["after"]
    ]


def _coding(ev: EvalConfig, sets: dict, quarantine: list[dict]) -> list[dict]:
    """``eval.coding_samples`` cases per problem (``coding/<task_id>/<sample>``), each carrying
    its problem as JSON in ``reference``."""
    if sets["coding"] is None:
        raise EvalDataError("the coding task needs eval.coding (HumanEval- or MBPP-shaped)")
    read = read_eval_set("coding", sets["coding"])
    quarantine.extend(read.quarantined)
    return [
        _case(
            "coding",
            f"coding/{r['id']}/{sample}",
            r["prompt"],
            json.dumps(dataclasses.asdict(r["problem"])),
        )
        for r in read.rows[: ev.num_coding]
        for sample in range(ev.coding_samples)
    ]


def _choice(ev: EvalConfig, sets: dict, quarantine: list[dict]) -> list[dict]:
    """One case per multiple-choice item: the lettered prompt as the message (the generated
    letter), the item as JSON in ``reference`` (its options' log-likelihoods)."""
    from plot_ray.eval.choice import case_fields

    if sets["choice"] is None:
        raise EvalDataError("the choice task needs eval.choice (MMLU-, ARC- or HellaSwag-shaped)")
    cases = []
    for item in read_eval_set("choice", sets["choice"]).rows[: ev.num_choice]:
        fields = case_fields(item)
        cases.append(
            _case(
                "choice",
                fields["case_id"],
                fields["message"],
                fields["choice_item"],
                category=fields["category"],
            )
        )
    return cases


_BUILDERS = {
    "harmful": _harmful,
    "benign": _benign,
    "logic": _logic,
    "perplexity": _perplexity,
    "coding": _coding,
    "choice": _choice,
    "humanity": _humanity,
}


def build_cases(ev: EvalConfig, quarantine: list[dict] | None = None) -> dict[str, list[dict]]:
    """Every configured task's cases, in a deterministic order (the order shards are cut in).
    Rows of a published set that cannot be used are appended to ``quarantine`` (with the set,
    the row number and the reason)."""
    sets = eval_sets(ev)
    quarantine = [] if quarantine is None else quarantine
    out = {}
    for task in ev.tasks:
        cases = _BUILDERS[task](ev, sets, quarantine)
        with_a_model = task == "harmful" and len(ev.attack_specs("static")) < len(ev.attacks)
        if not cases and not with_a_model:  # attacks with a model add their cases later
            raise EvalDataError(f"the {task} task has no cases: check its input file")
        ids = [c["case_id"] for c in cases]
        if len(set(ids)) != len(ids):
            raise EvalDataError(f"the {task} task has repeated ids; ids must be unique")
        out[task] = cases
    return out


def conversation(case: dict, answered: dict[str, dict]) -> list[dict]:
    """The messages a case's prompt is made of: the conversation of the case it comes after
    with the model's completion of it (``answered``: case id → its completed row), then its
    own ``history`` and ``message``."""
    before: list[dict] = []
    if case["after"]:
        prior = answered[case["after"]]
        before = [
            *conversation(prior, answered),
            {"role": "assistant", "content": prior["completion"]},
        ]
    history = json.loads(case["history"]) if case["history"] else []
    return [*before, *history, {"role": "user", "content": case["message"]}]
