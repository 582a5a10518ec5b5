"""``plot-ray eval``: several models, every task, one report; resumable shard by shard.

    build cases (driver)  ──►  shared attacks (once: the attacker on the engine pool)
                          ──►  per model:  per-target attacks (actor pool holding the model)
                                           generate (engine pool: vLLM or HF, Ray Data)
                                           score    (judges from the registry; the classifier
                                                     judge, reward model and perplexity as
                                                     Ray Data pipelines)
                          ──►  judged tasks: helpfulness of the benign answers, humanity of
                               the humanity answers (every model and both tasks at once, one
                               pool per judge model: ratings, and comparisons with the
                               baseline in both orders)
                          ──►  metrics.json, report.md, figures (plot_ray.eval.report)

Each model's pending shards of all generation tasks go through one Ray Dataset, so a model
starts its engines once. Rows stream back to the driver as they finish and a shard is written
(atomically) the moment its last row arrives (:mod:`plot_ray.eval.pipeline`); killing the run
loses at most the shards in flight, and a rerun generates only the missing ones (see
:mod:`plot_ray.eval.store`).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from plot_ray.config import ConfigError, EvalConfig, EvalModel, PlotRayConfig
from plot_ray.eval.engines import EngineSettings, chat_prompts, generate, resolve_model_path
from plot_ray.eval.pipeline import Progress, Stage, actor_pool, shards, stream, turns
from plot_ray.eval.store import ResultStore
from plot_ray.eval.tasks import build_cases, conversation

if TYPE_CHECKING:  # pragma: no cover
    from plot_ray.eval.judges.helpfulness import JudgedTask

__all__ = [
    "GENERATION_TASKS",
    "eval_dir",
    "judged_requests",
    "nll_scorer_kwargs",
    "pairwise_rows",
    "pool_settings",
    "reward_scorer_kwargs",
    "run_eval",
]

# perplexity scores references: no generation
GENERATION_TASKS = ("harmful", "benign", "logic", "coding", "choice", "humanity")
COMPLETIONS, SCORES = "completions", "scores"
# judged tasks' results beside their scores: per-answer ratings, position-swapped comparisons
RATINGS, PAIRWISE = "ratings", "pairwise"


def eval_dir(cfg: PlotRayConfig) -> Path:
    return Path(cfg.eval.output_dir).resolve() / cfg.eval.name


def _case_manifest(cfg: PlotRayConfig, cases: dict[str, list[dict]]) -> dict:
    digest = hashlib.sha256(
        json.dumps({t: [c["case_id"] for c in rows] for t, rows in cases.items()}).encode()
    ).hexdigest()
    return {
        "tasks": sorted(cases),
        "counts": {t: len(rows) for t, rows in cases.items()},
        "case_ids_sha256": digest,
        "shard_size": cfg.eval.shard_size,
    }


def _refusal_judge_name(ev: EvalConfig) -> str:
    from plot_ray.eval.judges import resolve_judge

    return ev.refusal_judge or resolve_judge(ev.judge)[0].refusal


def _model_settings(path: str, s: EngineSettings, ev: EvalConfig) -> dict:
    """What a model's results depend on (not which engine made them: both give the same)."""
    from plot_ray.eval.judges.helpfulness import judged_tasks

    return {
        "path": path,
        "max_new_tokens": s.max_new_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "seed": s.seed,
        "dtype": s.dtype,
        "judge": ev.judge,
        "refusal_judge": _refusal_judge_name(ev),
        "reward_model": ev.reward_model,
        "logic_style": ev.logic_style,
        **(
            {"coding_isolation": ev.coding_isolation, "coding_timeout_s": ev.coding_timeout_s}
            if "coding" in ev.tasks
            else {}
        ),
        **({"humanity_judge": ev.humanity_judge} if "humanity" in ev.tasks else {}),
        # only beyond the default rule rating, so older results stay valid
        **(
            {
                "humanity_mode": ev.humanity_mode,
                "humanity_max_new_tokens": ev.humanity_max_new_tokens,
                "humanity_baseline": ev.baseline_name,
            }
            if "humanity" in judged_tasks(ev)
            else {}
        ),
        **({"choice_loglik": ev.choice_loglik} if "choice" in ev.tasks else {}),
        **(
            {
                "helpfulness_judge": ev.helpfulness_judge,
                "helpfulness_mode": ev.helpfulness_mode,
                "helpfulness_max_new_tokens": ev.helpfulness_max_new_tokens,
                "helpfulness_baseline": ev.baseline_name,
            }
            if ev.helpfulness_judge
            else {}
        ),
    }


# --------------------------------------------------------------------------- generation
def _generate_stage(store, model: EvalModel, path: str, cases, s: EngineSettings, ev, bar) -> None:
    """Completions of every generation task, shard by shard; a multi-turn question's later
    turns go in a later round, after the model's own answers to the turns before."""
    pending = {
        (task, k): rows
        for task in GENERATION_TASKS
        if task in cases
        for k, rows in shards(cases[task], ev.shard_size).items()
        if not store.has(model.name, task, COMPLETIONS, k)
    }
    if not pending:
        return
    from plot_ray.models import load_tokenizer

    tok = load_tokenizer(path, trust_remote_code=s.trust_remote_code)
    rounds = {task: turns(cases[task]) for task in GENERATION_TASKS if task in cases}

    answered: dict[str, dict] = {}  # the earlier rounds' completions, read once per round

    def with_prompts(rows: list[dict]) -> list[dict]:
        prompts = chat_prompts(tok, [conversation(r, answered) for r in rows])
        out = [{**r, "prompt": p} for r, p in zip(rows, prompts, strict=True)]
        if s.temperature > 0:  # sampled: each case's own seed, whatever batch it lands in
            for r in out:
                r["seed"] = (s.seed * 1_000_003 + zlib.crc32(r["case_id"].encode())) % 2**31
        return out

    def round_of(key) -> int:
        return rounds[key[0]][pending[key][0]["case_id"]]

    for r in sorted({round_of(key) for key in pending}):
        todo = {key: rows for key, rows in pending.items() if round_of(key) == r}
        if r > 1:  # the rounds before are all on disk now
            for task in {key[0] for key in todo}:
                done = store.read_all(model.name, task, COMPLETIONS)
                answered.update({row["case_id"]: row for row in done})
        bar.start(
            f"{model.name}: generate ({s.engine})" + (f", turn {r}" if r > 1 else ""),
            sum(map(len, todo.values())),
        )
        stream(
            todo,
            Stage(prepare=with_prompts, transform=lambda ds: generate(ds, path, s)),
            write=lambda key, rows: store.write(model.name, key[0], COMPLETIONS, key[1], rows),
            progress=bar,
        )
        bar.close()


# ------------------------------------------------------------------------------ scoring
def _with_refusal(refusal) -> Callable[[dict], dict]:
    """A ``finish`` step adding whether the completion opens with a refusal (1/0): on harmful
    cases beside the judge's label (a refusal and a harmless ramble are both 0 for ASR), on
    benign prompts the over-refusal."""

    def add(row: dict) -> dict:
        row["refusal"] = int(refusal.is_refusal(row["completion"]))
        return row

    return add


def _harmful_scoring(ev: EvalConfig, s: EngineSettings, refusal) -> Stage:
    """The judge's label (1 harmful, 0 not, -1 could not tell) and the refusal flag."""
    from plot_ray.eval.judges import JudgeContext, resolve_judge

    spec, judge_model = resolve_judge(ev.judge)
    judge = spec.build(JudgeContext(ev=ev, engine=s, model=judge_model))
    return judge.stage().then(_with_refusal(refusal))


def reward_scorer_kwargs(ev: EvalConfig, s: EngineSettings) -> dict:
    """:class:`~plot_ray.models.reward.RewardScorer`'s constructor arguments: the reward model
    on the pool's device, in the evaluation's dtype."""
    return {
        "path": ev.reward_model,
        **s.placement(),
        "num_threads": s.threads_per_engine,
        "trust_remote_code": ev.trust_remote_code,
    }


def _benign_scoring(ev: EvalConfig, s: EngineSettings, refusal) -> Stage:
    if not ev.reward_model:
        return Stage(finish=_with_refusal(refusal))
    from plot_ray.models.reward import RewardScorer

    kwargs = reward_scorer_kwargs(ev, s)
    return Stage(
        transform=lambda ds: actor_pool(ds, RewardScorer, kwargs, s, s.batch_size),
        finish=_with_refusal(refusal),
    )


def _logic_scoring() -> Stage:
    from plot_ray.eval.answers import is_correct

    def grade(row: dict) -> dict:
        verdict = is_correct(row["completion"], row["reference"], style=row["grader"])
        row["correct"] = int(bool(verdict))
        row["parsed"] = int(verdict is not None)
        return row

    return Stage(finish=grade)


def _coding_scoring(ev: EvalConfig) -> Stage:
    """Each completion run against its problem's hidden tests in the sandbox, a shard's
    programs at once (plot_ray/eval/sandbox: a jail per program; ``passed`` 1/0 and how it
    ended: passed, failed, timeout, crashed, memory, output_limit, sandbox_error)."""
    from plot_ray.eval.sandbox.execute import Limits, run_programs
    from plot_ray.eval.sandbox.problems import CodeProblem

    t = ev.coding_timeout_s
    limits = Limits(wall_seconds=t, cpu_seconds=max(1, math.ceil(t)))

    def run(rows: list[dict]) -> list[dict]:
        programs = [
            CodeProblem(**json.loads(r["reference"])).program(r["completion"]) for r in rows
        ]
        results = run_programs(programs, limits, isolation=ev.coding_isolation)
        return [
            {
                **r,
                "passed": int(x.status == "passed"),
                "status": x.status,
                "detail": x.detail,
                "runtime_s": x.runtime_s,
            }
            for r, x in zip(rows, results, strict=True)
        ]

    return Stage(prepare=run)


_CHOICE_CASE_COLUMNS = (
    "case_id",
    "task",
    "category",
    "completion",
    "generated_letter",
    "pred_generated_letter",
)


def _humanity_scoring(ev: EvalConfig) -> Stage:
    """A rule humanity judge (``eval.humanity_judge``) on each answer: ``label`` (1
    considerate), ``judge_score`` (1-10; None when it cannot tell) and ``judge_reason``. A judge
    model rates in the judged stage (``ratings`` shards): the scores are the answers as they
    are."""
    from plot_ray.eval.judges import JudgeContext, resolve_humanity_judge

    spec, model = resolve_humanity_judge(ev.humanity_judge)
    if model is not None:
        return Stage()
    judge = spec.build(JudgeContext(ev=ev))

    def rate(row: dict) -> dict:
        row = judge.label_row(row)
        row.setdefault("judge_score", None)  # one schema per shard, rated or not
        return row

    return Stage(finish=rate)


def _choice_scoring(path: str, s: EngineSettings, loglik: bool = True) -> Stage:
    """A shard's multiple-choice completions: the generated letter read from each, and (with
    ``loglik``, ``eval.choice_loglik``) every option's log-likelihood (letter and text
    continuations) from a pool of NLLScorer actors; written as one row per item with
    ``pred_<method>`` for every method of :mod:`plot_ray.eval.choice` (only
    ``pred_generated_letter`` without ``loglik``)."""
    from plot_ray.eval.choice import choose, grade_generated, loglik_stage

    def graded(row: dict) -> dict:
        return grade_generated({**row, "choice_item": row["reference"]})

    if not loglik:
        keep = (*_CHOICE_CASE_COLUMNS, "subject", "answer_index", "n_choices")
        return Stage(finish=graded, collect=lambda rows: [{k: r[k] for k in keep} for r in rows])
    generated: dict[str, dict] = {}  # item id → its case and generated-letter columns

    def with_items(rows: list[dict]) -> list[dict]:
        items = [graded(r) for r in rows]
        generated.update({item["item_id"]: item for item in items})
        return items

    def collect(scored: list[dict]) -> list[dict]:
        out = []
        for item in choose(scored):
            case = generated.pop(item["id"])
            out.append({**{k: case[k] for k in _CHOICE_CASE_COLUMNS}, **item})
        return out

    stage = loglik_stage(nll_scorer_kwargs(path, s), s, s.batch_size)
    first = stage.prepare
    return Stage(
        prepare=lambda rows: first(with_items(rows)), transform=stage.transform, collect=collect
    )


def nll_scorer_kwargs(path: str, s: EngineSettings) -> dict:
    """:class:`~plot_ray.eval.scorers.NLLScorer`'s constructor arguments: the evaluated model
    on the pool's device, in the evaluation's dtype."""
    return {
        "model": path,
        **s.placement(),
        "threads": s.threads_per_engine,
        "trust_remote_code": s.trust_remote_code,
    }


def _perplexity_scoring(path: str, s: EngineSettings) -> Stage:
    from plot_ray.eval.scorers import NLLScorer
    from plot_ray.models import load_tokenizer

    tok = load_tokenizer(path, trust_remote_code=s.trust_remote_code)

    def with_prompts(rows: list[dict]) -> list[dict]:
        prompts = chat_prompts(tok, [conversation(r, {}) for r in rows])
        return [{**r, "prompt": p} for r, p in zip(rows, prompts, strict=True)]

    kwargs = nll_scorer_kwargs(path, s)
    return Stage(
        prepare=with_prompts,
        transform=lambda ds: actor_pool(ds, NLLScorer, kwargs, s, s.batch_size),
    )


def _score_stage(store, model: EvalModel, path: str, cases, s: EngineSettings, ev, bar) -> None:
    from plot_ray.eval.judges import refusal_judge

    refusal = refusal_judge(ev.judge, ev.refusal_judge)
    scorings = {
        "harmful": lambda: _harmful_scoring(ev, s, refusal),
        "benign": lambda: _benign_scoring(ev, s, refusal),
        "logic": _logic_scoring,
        "coding": lambda: _coding_scoring(ev),
        "choice": lambda: _choice_scoring(path, s, ev.choice_loglik),
        "humanity": lambda: _humanity_scoring(ev),
        "perplexity": lambda: _perplexity_scoring(path, s),
    }
    for task in ev.tasks:
        task_shards = shards(cases[task], ev.shard_size)
        todo = [k for k in task_shards if not store.has(model.name, task, SCORES, k)]
        if not todo:
            continue
        stage = scorings[task]()
        if task in GENERATION_TASKS:
            inputs = {(task, k): store.read(model.name, task, COMPLETIONS, k) for k in todo}
        else:  # perplexity scores the cases' references: nothing was generated
            inputs = {(task, k): task_shards[k] for k in todo}
        bar.start(f"{model.name}: score {task}", sum(map(len, inputs.values())))
        stream(
            inputs,
            stage,
            write=lambda key, rows: store.write(model.name, key[0], SCORES, key[1], rows),
            progress=bar,
        )
        bar.close()


def _judged_conversation(case: dict, answered: dict[str, dict]) -> list[dict]:
    """The conversation a judge reads: the case's prompt messages (earlier turns with the
    model's own answers) and the model's answer to it."""
    answer = {"role": "assistant", "content": answered[case["case_id"]]["completion"]}
    return [*conversation(case, answered), answer]


def judged_requests(store, ev: EvalConfig, per_model: dict, jt: JudgedTask) -> dict:
    """A judged task's pending request rows, ``{((RATINGS | PAIRWISE, task, model), shard):
    rows}`` (the task's shards): a rating request per answer (``jt.rates``), and
    (``jt.compares``) per answer of a model other than the baseline two comparison requests
    (the model as A, then as B), under the task's rubric."""
    from plot_ray.eval.judges.helpfulness import pair_requests, rating_request

    task, baseline = jt.task, ev.baseline_name
    done: dict[str, dict[str, dict]] = {}

    def answered(name: str) -> dict[str, dict]:
        if name not in done:
            done[name] = {r["case_id"]: r for r in store.read_all(name, task, COMPLETIONS)}
        return done[name]

    pending: dict = {}
    for model in ev.models:
        cases = per_model[model.name][task]
        rounds = turns(cases)
        for k, rows in shards(cases, ev.shard_size).items():
            if jt.rates and not store.has(model.name, task, RATINGS, k):
                mine = answered(model.name)
                pending[((RATINGS, task, model.name), k)] = [
                    rating_request(
                        c["case_id"],
                        _judged_conversation(c, mine),
                        c["reference"],
                        jt.rubric,
                        turn=rounds[c["case_id"]],
                        category=c["category"],
                    )
                    for c in rows
                ]
            if (
                jt.compares
                and model.name != baseline
                and not store.has(model.name, task, PAIRWISE, k)
            ):
                mine, base = answered(model.name), answered(baseline)
                pending[((PAIRWISE, task, model.name), k)] = [
                    request
                    for c in rows
                    for request in pair_requests(
                        c["case_id"],
                        _judged_conversation(c, mine),
                        _judged_conversation(c, base),
                        c["reference"],
                        jt.rubric,
                        turn=rounds[c["case_id"]],
                        category=c["category"],
                    )
                ]
    return pending


def pairwise_rows(requests: list[dict]) -> list[dict]:
    """Judged comparison requests (each question's model-first, then baseline-first) → one
    row per question with both verdicts and the outcome for the model (MT-Bench's rule:
    :func:`~plot_ray.eval.judges.helpfulness.combine_orders`)."""
    from plot_ray.eval.judges.helpfulness import combine_orders

    out = []
    for first, second in zip(requests[::2], requests[1::2], strict=True):
        assert first["order"] == "model_first" and second["order"] == "baseline_first"
        assert first["case_id"] == second["case_id"]
        out.append(
            {
                "case_id": first["case_id"],
                "turn": first["turn"],
                "category": first["category"],
                "model_first": first["preference"],
                "baseline_first": second["preference"],
                "outcome": combine_orders(first["preference"], second["preference"]),
                "judge_prompt_model_first": first["judge_prompt"],
                "judge_prompt_baseline_first": second["judge_prompt"],
                "judge_output_model_first": first["judge_output"],
                "judge_output_baseline_first": second["judge_output"],
            }
        )
    return out


def _judged_stage(cfg: PlotRayConfig, store, per_model: dict, cpus, say, bar) -> None:
    """Judge the judged tasks' answers (:func:`judged_tasks`): every model's pending ratings
    and comparisons of both tasks in one pass per judge, so a judge model that judges both
    (with one reply limit) starts its engines once."""
    from plot_ray.eval.judges import JudgeContext
    from plot_ray.eval.judges.helpfulness import judged_tasks, request_judge, resolve_rated_judge

    ev = cfg.eval
    by_judge: dict[tuple[str, int | None], list[JudgedTask]] = {}
    pending: dict[tuple[str, int | None], dict] = {}
    for jt in judged_tasks(ev).values():
        todo = judged_requests(store, ev, per_model, jt)
        if todo:  # a rule judge ignores the reply limit: one pass whatever it is
            key = (jt.judge, jt.max_new_tokens if jt.model else None)
            by_judge.setdefault(key, []).append(jt)
            pending.setdefault(key, {}).update(todo)

    def write(key, rows: list[dict]) -> None:
        (kind, task, model), k = key
        store.write(model, task, kind, k, rows if kind == RATINGS else pairwise_rows(rows))

    for key, jts in by_judge.items():
        spec, judge_model = resolve_rated_judge(jts[0].judge, jts[0].rubric)
        settings, path = None, None
        if judge_model is not None:
            path = resolve_model_path(judge_model)
            settings = pool_settings(cfg, path, "the judge model's engine pool", cpus, say)
        judge = request_judge(spec.build(JudgeContext(ev=ev, engine=settings, model=path)))
        what = ", ".join(f"{jt.rubric} ({jt.task})" for jt in jts)
        bar.start(f"judge {what}: {key[0]}", sum(map(len, pending[key].values())))
        stream(pending[key], judge.stage(), write=write, progress=bar)
        bar.close()


def _model_cases(store, model: EvalModel, path: str, cases, s: EngineSettings, ev, bar) -> dict:
    """The shared cases plus the test cases of the attacks optimised against this model."""
    from plot_ray.eval.attack_stage import run_target_attacks
    from plot_ray.eval.tasks import eval_behaviors

    if "harmful" not in cases or not ev.attack_specs("per_target"):
        return cases
    own = run_target_attacks(store, model.name, path, eval_behaviors(ev), ev, s, bar)
    return {**cases, "harmful": cases["harmful"] + own}


# ---------------------------------------------------------------------------------- run
def pool_settings(
    cfg: PlotRayConfig,
    path: str,
    what: str,
    cpus: float | None = None,
    say=print,
    section: str = "eval",
) -> EngineSettings:
    """The engine settings of the pools that hold ``path`` (engines, scorers, attack actors:
    one at a time, ``<section>.generation.num_engines`` replicas each), once the cluster can
    hold them. ``section``: the config section that says how (``eval``, or ``pairs`` for
    ``plot-ray make-pairs``).

    With ``<section>.use_gpu`` a cluster that lacks the GPUs is asked for them (the autoscaler's
    ``request_resources``) and given ``cluster.resource_timeout_s`` to provide them; a local
    instance is checked once. Either way a missing GPU is an error, never a switch to CPUs. CPU
    pools are sized from the CPUs there are (``cpus``), so they have nothing to wait for."""
    from plot_ray.cluster import resource_timeout_s, wait_for_resources

    s = EngineSettings.resolve(getattr(cfg, section), model=path, cpus=cpus)
    if s.use_gpu:
        wait_for_resources(
            [s.bundle()] * s.num_engines,
            what=f"{what} ({section}.use_gpu: {section}.generation.num_engines="
            f"{s.num_engines} x 1 GPU)",
            timeout_s=resource_timeout_s(cfg.cluster),
            hint=(
                "add GPU nodes (or connect to a cluster that has them: cluster.address or "
                f"RAY_ADDRESS), lower {section}.generation.num_engines, or set "
                f"{section}.use_gpu=false to generate on CPUs"
            ),
            say=say,
        )
    return s


def run_eval(
    cfg: PlotRayConfig,
    *,
    force: bool = False,
    progress: bool = True,
    print_fn: Callable[[str], None] | None = print,
    verbose: bool = False,
    cpus: float | None = None,
) -> dict:
    """Evaluate every ``eval.models`` entry on every ``eval.tasks`` task; returns the metrics
    (also in ``metrics.json``) after writing the report. Reuses finished shards.

    ``cpus``: the CPUs the engine pools may share (default: the cluster's); a sweep's trial
    passes its own share."""
    from plot_ray.cluster import (
        check_shared_storage,
        init_ray_from_config,
        quiet_ray_driver,
        worker_logs_to_file,
    )
    from plot_ray.eval.report import write_report

    ev = cfg.eval
    say = print_fn or (lambda _msg: None)
    if not ev.models:
        raise ConfigError("eval.models: name at least one model to evaluate ({name, path})")
    root = eval_dir(cfg)
    if force and root.exists():
        shutil.rmtree(root)
    store = ResultStore(root)
    started = time.perf_counter()
    quarantined: list[dict] = []
    cases = build_cases(ev, quarantined)
    store.write_cases(cases, _case_manifest(cfg, cases))
    if quarantined:
        path = store.write_quarantine(quarantined)
        reasons = Counter(f"eval.{q['set']}: {q['reason']}" for q in quarantined)
        say(f"set aside {len(quarantined)} unusable rows ({dict(reasons)}) → {path}")
    say(
        "cases: "
        + ", ".join(f"{task} {len(rows)}" for task, rows in cases.items())
        + f" (shards of {ev.shard_size}) → {root}"
    )
    init_ray_from_config(cfg.cluster, verbose=verbose)
    check_shared_storage(cfg, "eval")  # engine pools on every node write result shards
    say(
        f"judge: {ev.judge} (refusals: {_refusal_judge_name(ev)}), "
        f"reward model: {ev.reward_model or 'none'}"
    )
    bar = Progress(progress)
    per_model: dict[str, dict[str, list[dict]]] = {}  # each model's cases (its own attacks')
    log = root / "logs" / "ray_workers.log"
    with worker_logs_to_file(log, echo=verbose), quiet_ray_driver(not verbose):
        if "harmful" in cases and ev.attack_specs("shared"):  # one pass for all models
            from plot_ray.eval.attack_stage import run_shared_attacks
            from plot_ray.eval.tasks import eval_behaviors

            attacker = resolve_model_path(ev.attacker)
            shared = run_shared_attacks(
                store,
                eval_behaviors(ev),
                ev,
                pool_settings(cfg, attacker, "the attacker's engine pool", cpus, say),
                bar,
                say,
            )
            cases = {**cases, "harmful": cases["harmful"] + shared}
        for model in ev.models:
            path = resolve_model_path(model.path)
            settings = pool_settings(cfg, path, f"evaluating {model.name!r}", cpus, say)
            store.check_model_settings(model.name, _model_settings(path, settings, ev))
            say(
                f"{model.name}: engine {settings.engine} x{settings.num_engines} "
                f"({settings.dtype}, "
                f"{'GPU' if settings.use_gpu else f'{settings.threads_per_engine} CPU thread(s)'}"
                " each)"
            )
            t = time.perf_counter()
            per_model[model.name] = mine = _model_cases(
                store, model, path, cases, settings, ev, bar
            )
            _generate_stage(store, model, path, mine, settings, ev, bar)
            _score_stage(store, model, path, mine, settings, ev, bar)
            say(f"{model.name}: done in {time.perf_counter() - t:.1f}s ({path})")
        _judged_stage(cfg, store, per_model, cpus, say, bar)
    metrics = write_report(store, cfg, per_model, wall_s=time.perf_counter() - started)
    say(f"report: {root / 'report.md'} (metrics.json, figures/); worker logs: {log}")
    return metrics
