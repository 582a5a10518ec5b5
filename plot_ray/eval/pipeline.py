"""The evaluation's plumbing that every stage shares: shards, one Ray Data pass per batch of
pending shards, actor pools, progress.

    shards(rows, size) -> {k: rows}                  how a task's rows are cut (the unit of resume)
    turns(rows) -> {id: round}                       the rounds of multi-turn conversations
    Stage(prepare, transform, finish)                how rows go through one step
    stream(pending, stage, write, progress)          run a stage, writing each shard when whole
    actor_pool(ds, cls, kwargs, settings, batch)     map_batches over eval.generation.num_engines
                                                     model-holding actors
    Progress                                         one tqdm bar per stage, or nothing

The generation, the judges and scorers, and the attacks all run through :func:`stream`: rows go
into one Ray Dataset (or stay on the driver when a stage needs no model), stream back as they
finish, and a shard is written (atomically, by ``write``) the moment its last row arrives, so a
killed run loses at most the shards in flight.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Key",
    "Progress",
    "Stage",
    "actor_pool",
    "actor_pool_kwargs",
    "shards",
    "stream",
    "turns",
]

Key = tuple[Any, int]  # (what, shard): (task, shard) for results, (attack, behaviour) for attacks


def _same(x):
    return x


@dataclass
class Stage:
    """How rows go through one step: ``prepare`` a shard's rows on the driver (it may make
    more or fewer rows than it is given), ``transform`` them with a Ray Dataset → Ray Dataset
    function (None: no model, stay on the driver), ``finish`` each row on the driver as it
    comes back, and ``collect`` a whole shard's rows into what is written."""

    prepare: Callable[[list[dict]], list[dict]] = _same
    transform: Callable | None = None
    finish: Callable[[dict], dict] = _same
    # a shard's finished rows → the rows written (a multiple-choice item's option rows → one
    # row for the item)
    collect: Callable[[list[dict]], list[dict]] = _same

    def then(self, finish: Callable[[dict], dict]) -> Stage:
        """This stage with ``finish`` applied after its own."""
        first = self.finish
        return Stage(self.prepare, self.transform, lambda row: finish(first(row)), self.collect)


def turns(rows: list[dict], key: str = "case_id") -> dict[str, int]:
    """Each row's round of generation: 1, or one more than the row it comes ``after`` (a later
    turn of a multi-turn question continues after the model's answer to the earlier one, which
    is always an earlier row)."""
    out: dict[str, int] = {}
    for r in rows:
        out[r[key]] = out[r["after"]] + 1 if r.get("after") else 1
    return out


def shards(rows: list[dict], size: int) -> dict[int, list[dict]]:
    """Consecutive rows, ``size`` per shard; a shard never spans two rounds (:func:`turns`), so
    that a round's shards can wait for the completions of the round before."""
    out: dict[int, list[dict]] = {}
    multi_turn = any(r.get("after") for r in rows)  # else rows need no case_id
    rounds = turns(rows) if multi_turn else {}

    def new_round(r: dict, prev: dict) -> bool:
        return multi_turn and rounds[r["case_id"]] != rounds[prev["case_id"]]

    current: list[dict] = []
    for r in rows:
        if current and (len(current) == size or new_round(r, current[-1])):
            out[len(out)] = current
            current = []
        current.append(r)
    if current:
        out[len(out)] = current
    return out


def plain(value: Any) -> Any:
    """numpy scalars (as Ray Data hands rows back) → Python values, for pyarrow."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str | bytes) else value


class Progress:
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


def stream(
    pending: dict[Key, list[dict]],
    stage: Stage,
    write: Callable[[Key, list[dict]], None],
    progress: Progress,
) -> None:
    """Run ``stage`` over the rows of every pending shard and ``write`` each shard (its
    prepared rows, in their order) as soon as all of them are back. Raises if a row never comes back:
    a transform that drops rows is a bug, never a silent gap in the results."""
    if not pending:
        return
    prepared = {key: stage.prepare(rows) for key, rows in pending.items()}
    rows = [
        {**r, "_key": i_key, "_index": i}
        for i_key, key in enumerate(prepared)
        for i, r in enumerate(prepared[key])
    ]
    keys = list(prepared)
    # what comes back is what ``prepare`` made (one row per multiple-choice option, say)
    expected = {key: len(v) for key, v in prepared.items()}
    if stage.transform is None:
        results = iter(rows)
    else:
        import ray

        results = stage.transform(ray.data.from_items(rows)).iter_rows()
    buffers: dict[Key, list[dict]] = defaultdict(list)
    for row in results:
        row = {k: plain(v) for k, v in row.items()}
        key = keys[row.pop("_key")]
        buffers[key].append(stage.finish(row))
        progress.update(1)
        if len(buffers[key]) == expected[key]:
            done = sorted(buffers.pop(key), key=lambda r: r["_index"])
            write(key, stage.collect([{k: v for k, v in r.items() if k != "_index"} for r in done]))
            expected.pop(key)
    if expected:
        raise RuntimeError(f"rows of shards {sorted(expected)} never came back from the pipeline")


def actor_pool_kwargs(kwargs: dict, settings, batch_size: int) -> dict:
    """``map_batches`` arguments for a pool of ``settings.num_engines`` model-holding actors,
    each reserving ``settings.bundle()`` (one GPU with ``eval.use_gpu``, else a share of the
    cores); ``kwargs`` are the actor's constructor arguments."""
    import ray

    bundle = settings.bundle()
    return dict(
        fn_constructor_kwargs=kwargs,
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=settings.num_engines),
        num_cpus=bundle["CPU"],
        num_gpus=bundle.get("GPU", 0),
        batch_format="numpy",
    )


def actor_pool(ds, cls, kwargs: dict, settings, batch_size: int):
    """``ds`` through a pool of ``cls`` actors (a Ray Data callable class)."""
    return ds.map_batches(cls, **actor_pool_kwargs(kwargs, settings, batch_size))
