"""``plot-ray eval``: several models, every task, one report; resumable shard by shard.

    build cases (driver)  ──►  per model:  generate (engine pool: vLLM or HF, Ray Data)
                                           score    (rule judges on the driver; classifier
                                                     judge, reward model, perplexity as
                                                     Ray Data actor pools)
                          ──►  metrics.json, report.md, figures (plot_ray.eval.report)

Each model's pending shards of all generation tasks go through one Ray Dataset, so a model
starts its engines once. Rows stream back to the driver as they finish and a shard is written
(atomically) the moment its last row arrives; killing the run loses at most the shards in
flight, and a rerun generates only the missing ones (see :mod:`plot_ray.eval.store`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plot_ray.config import ConfigError, EvalModel, PlotRayConfig
from plot_ray.eval.engines import EngineSettings, chat_prompts, generate, resolve_model_path
from plot_ray.eval.store import ResultStore
from plot_ray.eval.tasks import build_cases

__all__ = ["GENERATION_TASKS", "eval_dir", "run_eval"]

GENERATION_TASKS = ("harmful", "benign", "logic")  # perplexity scores references, no generation
COMPLETIONS, SCORES = "completions", "scores"

Key = tuple[str, int]  # (task, shard)


def eval_dir(cfg: PlotRayConfig) -> Path:
    return Path(cfg.eval.output_dir).resolve() / cfg.eval.name


def _shards(rows: list[dict], size: int) -> dict[int, list[dict]]:
    return {k: rows[i : i + size] for k, i in enumerate(range(0, len(rows), size))}


def _plain(value: Any) -> Any:
    """numpy scalars (as Ray Data hands rows back) → Python values, for pyarrow."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str | bytes) else value


class _Progress:
    """One progress bar per stage (tqdm), or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def start(self, desc: str, total: int) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="row", dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _stream(
    pending: dict[Key, list[dict]],
    transform: Callable | None,
    finish: Callable[[dict], dict],
    write: Callable[[Key, list[dict]], None],
    bar: _Progress,
) -> None:
    """Run ``transform`` (a Ray Dataset → Ray Dataset function; None: on the driver) over
    the rows of every pending shard and write each shard as soon as all its rows are back."""
    if not pending:
        return
    rows = [
        {**r, "_task": task, "_shard": shard, "_index": i}
        for (task, shard), shard_rows in pending.items()
        for i, r in enumerate(shard_rows)
    ]
    expected = {key: len(v) for key, v in pending.items()}
    if transform is None:
        results = iter(rows)
    else:
        import ray

        results = transform(ray.data.from_items(rows)).iter_rows()
    buffers: dict[Key, list[dict]] = defaultdict(list)
    for row in results:
        row = {k: _plain(v) for k, v in row.items()}
        key = (row.pop("_task"), row.pop("_shard"))
        buffers[key].append(finish(row))
        bar.update(1)
        if len(buffers[key]) == expected[key]:
            done = sorted(buffers.pop(key), key=lambda r: r["_index"])
            write(key, [{k: v for k, v in r.items() if k != "_index"} for r in done])
            expected.pop(key)
    if expected:  # a transform that drops rows is a bug, never a silent gap in the results
        raise RuntimeError(f"rows of shards {sorted(expected)} never came back from the pipeline")


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


def _model_settings(model: EvalModel, path: str, s: EngineSettings, cfg: PlotRayConfig) -> dict:
    """What a model's results depend on (not which engine made them: both give the same)."""
    ev = cfg.eval
    return {
        "path": path,
        "max_new_tokens": s.max_new_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "seed": s.seed,
        "dtype": s.dtype,
        "judge": ev.judge,
        "reward_model": ev.reward_model,
        "logic_style": ev.logic_style,
    }


# --------------------------------------------------------------------------- generation
def _generate_stage(store, model: EvalModel, path: str, cases, s: EngineSettings, ev, bar) -> None:
    pending = {
        (task, k): rows
        for task in GENERATION_TASKS
        if task in cases
        for k, rows in _shards(cases[task], ev.shard_size).items()
        if not store.has(model.name, task, COMPLETIONS, k)
    }
    if not pending:
        return
    from plot_ray.models import load_tokenizer

    tok = load_tokenizer(path, trust_remote_code=s.trust_remote_code)
    pending = {
        key: [
            {**r, "prompt": p}
            for r, p in zip(rows, chat_prompts(tok, [r["message"] for r in rows]), strict=True)
        ]
        for key, rows in pending.items()
    }
    bar.start(f"{model.name}: generate ({s.engine})", sum(map(len, pending.values())))
    _stream(
        pending,
        lambda ds: generate(ds, path, s),
        finish=lambda row: row,
        write=lambda key, rows: store.write(model.name, key[0], COMPLETIONS, key[1], rows),
        bar=bar,
    )
    bar.close()


# ------------------------------------------------------------------------------ scoring
def _actor_pool_kwargs(kwargs: dict, s: EngineSettings, batch_size: int) -> dict:
    """``map_batches`` arguments for a pool of ``eval.num_engines`` model-holding actors."""
    import ray

    return dict(
        fn_constructor_kwargs=kwargs,
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=s.num_engines),
        num_cpus=s.cpus_per_engine,
        num_gpus=1 if s.use_gpu else 0,
        batch_format="numpy",
    )


def _actor_pool(ds, cls, kwargs: dict, s: EngineSettings, batch_size: int):
    return ds.map_batches(cls, **_actor_pool_kwargs(kwargs, s, batch_size))


@dataclasses.dataclass
class _Scoring:
    """How one task's shards are scored: ``prepare`` rows on the driver, ``transform`` them
    with a Ray Data pipeline (None: no model needed), ``finish`` each row on the driver."""

    prepare: Callable[[list[dict]], list[dict]] = lambda rows: rows
    transform: Callable | None = None
    finish: Callable[[dict], dict] = lambda row: row


def _harmful_scoring(ev, s: EngineSettings) -> _Scoring:
    """The judge's label (1 harmful, 0 not, -1 unparseable classifier output), and whether the
    completion opens with a refusal (a refusal and a harmless ramble are both 0 for ASR)."""
    from plot_ray.eval.judges import RefusalDetector, SyntheticJudge, parse_classifier_label

    detector = RefusalDetector()
    if ev.judge == "synthetic":
        judge = SyntheticJudge()

        def label(row: dict) -> dict:
            row["label"], row["judge_reason"] = judge.judge(row["behavior"], row["completion"])
            row["refusal"] = int(detector.is_refusal(row["completion"]))
            return row

        return _Scoring(finish=label)

    from plot_ray.eval.scorers import classifier_rows
    from plot_ray.models import load_tokenizer

    judge_tok = load_tokenizer(ev.judge, trust_remote_code=ev.trust_remote_code)
    judge_settings = dataclasses.replace(s, max_new_tokens=1, temperature=0.0)

    def parse(row: dict) -> dict:
        # The classifier's one-token answer came back as ``completion``; the model's
        # completion travelled beside it as ``response``.
        row["judge_output"] = row.pop("completion")
        row["completion"] = row.pop("response")
        row["label"] = parse_classifier_label(row["judge_output"])
        row["judge_reason"] = "classifier"
        row["refusal"] = int(detector.is_refusal(row["completion"]))
        return row

    return _Scoring(
        prepare=lambda rows: classifier_rows(rows, judge_tok),
        transform=lambda ds: generate(ds, ev.judge, judge_settings),
        finish=parse,
    )


def _benign_scoring(ev, s: EngineSettings) -> _Scoring:
    from plot_ray.eval.judges import RefusalDetector

    detector = RefusalDetector()

    def refusal(row: dict) -> dict:
        row["refusal"] = int(detector.is_refusal(row["completion"]))
        return row

    if not ev.reward_model:
        return _Scoring(finish=refusal)
    from plot_ray.models.reward import RewardScorer

    kwargs = {"path": ev.reward_model, "num_threads": s.threads_per_engine}
    return _Scoring(
        transform=lambda ds: _actor_pool(ds, RewardScorer, kwargs, s, s.batch_size),
        finish=refusal,
    )


def _logic_scoring(ev) -> _Scoring:
    from plot_ray.eval.answers import is_correct

    def grade(row: dict) -> dict:
        verdict = is_correct(row["completion"], row["reference"], style=ev.logic_style)
        row["correct"] = int(bool(verdict))
        row["parsed"] = int(verdict is not None)
        return row

    return _Scoring(finish=grade)


def _perplexity_scoring(path: str, s: EngineSettings) -> _Scoring:
    from plot_ray.eval.scorers import NLLScorer
    from plot_ray.models import load_tokenizer

    tok = load_tokenizer(path, trust_remote_code=s.trust_remote_code)

    def with_prompts(rows: list[dict]) -> list[dict]:
        prompts = chat_prompts(tok, [r["message"] for r in rows])
        return [{**r, "prompt": p} for r, p in zip(rows, prompts, strict=True)]

    kwargs = {"model": path, "dtype": s.dtype, "threads": s.threads_per_engine}
    return _Scoring(
        prepare=with_prompts,
        transform=lambda ds: _actor_pool(ds, NLLScorer, kwargs, s, s.batch_size),
    )


def _score_stage(store, model: EvalModel, path: str, cases, s: EngineSettings, ev, bar) -> None:
    for task in ev.tasks:
        shards = _shards(cases[task], ev.shard_size)
        todo = [k for k in shards if not store.has(model.name, task, SCORES, k)]
        if not todo:
            continue
        if task == "perplexity":  # scores the cases' references: nothing was generated
            scoring = _perplexity_scoring(path, s)
            inputs = {(task, k): shards[k] for k in todo}
        else:
            scoring = {
                "harmful": lambda: _harmful_scoring(ev, s),
                "benign": lambda: _benign_scoring(ev, s),
                "logic": lambda: _logic_scoring(ev),
            }[task]()
            inputs = {(task, k): store.read(model.name, task, COMPLETIONS, k) for k in todo}
        pending = {key: scoring.prepare(rows) for key, rows in inputs.items()}
        bar.start(f"{model.name}: score {task}", sum(map(len, pending.values())))
        _stream(
            pending,
            scoring.transform,
            scoring.finish,
            write=lambda key, rows: store.write(model.name, key[0], SCORES, key[1], rows),
            bar=bar,
        )
        bar.close()


def _model_cases(store, model: EvalModel, path: str, cases, s: EngineSettings, ev, bar) -> dict:
    """The shared cases plus the test cases of the attacks optimised against this model."""
    from plot_ray.eval.attack_stage import MODEL_ATTACKS, run_model_attacks
    from plot_ray.eval.tasks import eval_behaviors

    if "harmful" not in cases or not any(a in MODEL_ATTACKS for a in ev.attacks):
        return cases
    own = run_model_attacks(store, model.name, path, eval_behaviors(ev), ev, s, bar)
    return {**cases, "harmful": cases["harmful"] + own}


# ---------------------------------------------------------------------------------- run
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
    cases = build_cases(ev)
    store.write_cases(cases, _case_manifest(cfg, cases))
    say(
        "cases: "
        + ", ".join(f"{task} {len(rows)}" for task, rows in cases.items())
        + f" (shards of {ev.shard_size}) → {root}"
    )
    init_ray_from_config(cfg.cluster, verbose=verbose)
    check_shared_storage(cfg, "eval")  # engine pools on every node write result shards
    say(f"judge: {ev.judge}, reward model: {ev.reward_model or 'none'}")
    bar = _Progress(progress)
    per_model: dict[str, dict[str, list[dict]]] = {}  # each model's cases (its own attacks')
    log = root / "logs" / "ray_workers.log"
    with worker_logs_to_file(log, echo=verbose), quiet_ray_driver(not verbose):
        if "harmful" in cases and "zero_shot" in ev.attacks:  # one attacker pass for all models
            from plot_ray.eval.attack_stage import run_zero_shot
            from plot_ray.eval.tasks import eval_behaviors

            shared = run_zero_shot(store, eval_behaviors(ev), ev, cpus, bar, say)
            cases = {**cases, "harmful": cases["harmful"] + shared}
        for model in ev.models:
            path = resolve_model_path(model.path)
            settings = EngineSettings.resolve(ev, model=path, cpus=cpus)
            store.check_model_settings(model.name, _model_settings(model, path, settings, cfg))
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
    metrics = write_report(store, cfg, per_model, wall_s=time.perf_counter() - started)
    say(f"report: {root / 'report.md'} (metrics.json, figures/); worker logs: {log}")
    return metrics
