"""The attacks that need a model, on Ray: shared attacks once, per-target attacks per model.

    run_shared_attacks(store, behaviors, ev, settings, progress, say) -> harmful case rows
    run_target_attacks(store, model, path, behaviors, ev, settings, progress) -> harmful case rows

Which attacks run here, and how, is read from their specs (:mod:`plot_ray.eval.attacks`,
``EvalConfig.attack_specs``);
static attacks need no model and are part of the run's cases (:mod:`plot_ray.eval.tasks`).

**Shared attacks** (ZeroShot) sample test cases from the attacker model (``eval.attacker``)
through the same engine pool as the completions (:func:`~plot_ray.eval.engines.generate`: vLLM
through Ray Data, or the HF actor pool), each sample with its own seed. Their test cases do not
depend on the target, so every model of the evaluation gets the same ones; they land in
``attacks/<attack>/<behavior>.parquet`` when the sampling ends, and a rerun samples only the
behaviours without a file.

**Per-target attacks** (SFS and the gradient attacks GCG, PEZ, GBDA, UAT) need the target
itself: its gradients, or its loss on the target string and its greedy completions. One actor
pool serves all of a model's attacks: each actor holds a Hugging Face replica of the target
(and, when an attack needs it, of the attacker; on its own GPU in the evaluation's dtype with
``eval.use_gpu``, else on a share of the cores), loaded once, and the (attack, behaviour) pairs
are spread over the pool (:func:`attack_actor_kwargs`). Each
behaviour's test cases land in ``results/<model>/attacks/<attack>/<behavior>.parquet`` the
moment it finishes (test case, final and initial target loss, steps, the loss trace, the test
cases saved at intermediate steps, why it stopped); a rerun attacks only the behaviours without
a file.

Every attack folder keeps the settings its files were made with (``settings.json``): a rerun
with other settings is refused instead of mixing test cases of two configurations. The test
cases then join the model's ``harmful`` task like the static attacks' ones: the final test
case as attack ``<attack>``, and the intermediate ones (``AttackConfig.curve_steps``) as
attack ``<attack>@<step>`` for the ASR-vs-steps curve.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

from plot_ray.eval.attacks import AttackConfig, AttackSpec, SharedContext, Target
from plot_ray.eval.judges import RefusalJudge
from plot_ray.eval.pipeline import Progress, Stage, actor_pool_kwargs, stream

__all__ = [
    "AttackActor",
    "attack_actor_kwargs",
    "engine_sampler",
    "run_shared_attacks",
    "run_target_attacks",
    "snapshot_at",
]


def snapshot_at(snapshots: dict[int, str], step: int) -> str:
    """The test case an attack had after ``step`` steps: its latest snapshot at or before it
    (an attack that stopped early keeps its final test case for the later steps)."""
    return snapshots[max(s for s in snapshots if s <= step)]


def _check_attack_settings(store, folder, spec: AttackSpec, cfg: AttackConfig, ev) -> None:
    """Refuse to mix test cases made with other settings into ``folder``."""
    settings = {"attack": spec.name, "params": cfg.model_dump(), "seed": ev.seed}
    if spec.needs_attacker:
        settings["attacker"] = ev.attacker
    store.check_or_write_json(folder / "settings.json", settings, f"attack {spec.name!r}")


# ----------------------------------------------------------------------------- per target
class AttackActor:
    """A Ray Data actor holding one replica of the target model (and, when an attack needs it,
    of the attacker); each row names its ``attack`` and behaviour, and comes back with the
    attack's results as JSON text (``results``). One pool serves every attack on a model, so
    the model loads once per actor, not once per attack. The specs and the refusal judge travel
    with the actor (registries are per process): an attack registered by the driver runs in the
    workers as long as its module is importable there, as an installed package or the job's
    working directory is."""

    def __init__(
        self,
        model: str,
        attacks: dict[str, tuple[AttackSpec, dict]],
        threads: int,
        dtype: str,
        seed: int,
        refusal: RefusalJudge,
        attacker: str | None = None,
        device: str = "cpu",
        trust_remote_code: bool = False,
    ):
        import os

        import torch

        from plot_ray.models import load_causal_lm, load_tokenizer
        from plot_ray.models.devices import checked_device

        device = checked_device(device)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.specs = {name: spec for name, (spec, _) in attacks.items()}
        self.cfgs = {name: spec.make_config(p) for name, (spec, p) in attacks.items()}

        def load(path: str):
            return load_causal_lm(
                path, dtype=dtype, trust_remote_code=trust_remote_code, device_map=device
            ).eval()

        model_obj = load(model)
        model_obj.requires_grad_(False)
        extra: dict[str, Any] = {}
        if any(spec.needs_attacker for spec in self.specs.values()):
            extra = {
                "attacker": load(attacker),
                "attacker_tokenizer": load_tokenizer(attacker, trust_remote_code=trust_remote_code),
            }
        self.target = Target(
            model=model_obj,
            tokenizer=load_tokenizer(model, trust_remote_code=trust_remote_code),
            seed=seed,
            refusal=refusal,
            **extra,
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        results = []
        for i in range(len(batch["behavior_id"])):
            b = {
                k: str(batch[k][i])
                for k in ("behavior_id", "behavior", "category", "target", "context")
                if k in batch
            }
            name = str(batch["attack"][i])
            out = self.specs[name].run(b, self.cfgs[name], self.target)
            results.append(json.dumps([asdict(r) for r in out]))
        batch["results"] = np.array(results, dtype=object)
        return batch


def _result_rows(attack: str, behavior: dict, results: list[dict]) -> list[dict]:
    """One behaviour's stored rows: one per test case the attack produced."""
    return [
        {
            "behavior_id": behavior["behavior_id"],
            "attack": attack,
            "n": n,
            "test_case": r["test_case"],
            "loss": float(r["loss"]),
            "initial_loss": float(r["initial_loss"]),
            "steps": int(r["steps"]),
            "losses": json.dumps(r["losses"]),
            "snapshots": json.dumps({str(k): v for k, v in r["snapshots"].items()}),
            "stop_reason": r.get("stop_reason", ""),
        }
        for n, r in enumerate(results)
    ]


def attack_actor_kwargs(path: str, specs: list[AttackSpec], ev, settings) -> dict:
    """:class:`AttackActor`'s constructor arguments for the attacks ``specs`` against the model
    at ``path``: the target (and the attacker, when an attack needs it) on the pool's device, in
    the evaluation's dtype."""
    from plot_ray.eval.engines import resolve_model_path
    from plot_ray.eval.judges import refusal_judge

    return {
        "model": path,
        "attacks": {s.name: (s, dict(ev.attack_params.get(s.name, {}))) for s in specs},
        "threads": settings.threads_per_engine,
        **settings.placement(),
        "seed": ev.seed,
        "refusal": refusal_judge(ev.judge, ev.refusal_judge),
        "attacker": (
            resolve_model_path(ev.attacker) if any(s.needs_attacker for s in specs) else None
        ),
        "trust_remote_code": ev.trust_remote_code,
    }


def run_target_attacks(
    store, model_name: str, path: str, behaviors: list[dict], ev, settings, progress: Progress
) -> list[dict]:
    """Attack every behaviour not yet attacked with every per-target attack of
    ``eval.attacks`` (one actor pool for all of them); returns the harmful-task case rows of all
    of them (final and intermediate test cases)."""
    from plot_ray.eval.tasks import harmful_case

    specs = ev.attack_specs("per_target")
    cfgs = {s.name: ev.attack_settings(s.name) for s in specs}
    folders = {s.name: store.root / "results" / model_name / "attacks" / s.name for s in specs}
    pending: dict[tuple[str, int], list[dict]] = {}
    for spec in specs:
        _check_attack_settings(store, folders[spec.name], spec, cfgs[spec.name], ev)
        for i, b in enumerate(behaviors):
            if not (folders[spec.name] / f"{b['behavior_id']}.parquet").is_file():
                pending[(spec.name, i)] = [{**b, "attack": spec.name}]
    if pending:
        todo = [s for s in specs if any(name == s.name for name, _ in pending)]
        kwargs = attack_actor_kwargs(path, todo, ev, settings)

        def transform(ds):
            return ds.map_batches(AttackActor, **actor_pool_kwargs(kwargs, settings, 1))

        def write(key, rows):
            attack, b = key[0], behaviors[key[1]]
            store.write_table(
                folders[attack] / f"{b['behavior_id']}.parquet",
                _result_rows(attack, b, json.loads(rows[0]["results"])),
            )

        progress.start(f"{model_name}: {', '.join(s.name for s in todo)}", len(pending))
        stream(pending, Stage(transform=transform), write, progress)
        progress.close()
    cases: list[dict] = []
    for spec in specs:
        steps = cfgs[spec.name].curve_steps()
        for b in behaviors:
            for row in store.read_table(folders[spec.name] / f"{b['behavior_id']}.parquet"):
                cases.append(harmful_case(b, spec.name, row["n"], row["test_case"]))
                snapshots = {int(k): v for k, v in json.loads(row["snapshots"]).items()}
                for step in steps:
                    test_case = snapshot_at(snapshots, step)
                    cases.append(harmful_case(b, f"{spec.name}@{step}", row["n"], test_case))
    return cases


# --------------------------------------------------------------------------------- shared
def engine_sampler(model: str, settings):
    """A shared attack's ``sample`` on the engine pool: each call is one Ray Data pass of
    ``generate`` over ``len(prompts) * n`` rows, each row with its own sampling seed (both
    engines honour it), so the n samples of a prompt differ and each is reproducible."""

    def sample(prompts: list[str], sampling: dict, n: int) -> list[list[str]]:
        import ray

        from plot_ray.eval.attacks.generation import seed_for
        from plot_ray.eval.engines import generate

        s = replace(
            settings,
            temperature=float(sampling["temperature"]),
            top_p=float(sampling["top_p"]),
            max_new_tokens=int(sampling["max_tokens"]),
            seed=int(sampling.get("seed") or 0),
            stop=tuple(sampling.get("stop") or ()),
        )
        # A sample's seed depends on its prompt and index only (not on which other prompts
        # are in the call), so a resumed attack draws for a behaviour what it drew before.
        rows = [
            {"prompt": p, "_i": i, "_j": j, "seed": seed_for(s.seed, p, j)}
            for i, p in enumerate(prompts)
            for j in range(n)
        ]
        out: list[list[str]] = [[""] * n for _ in prompts]
        for row in generate(ray.data.from_items(rows), model, s).iter_rows():
            out[int(row["_i"])][int(row["_j"])] = str(row["completion"])
        return out

    return sample


def run_shared_attacks(
    store, behaviors: list[dict], ev, settings, progress: Progress, say
) -> list[dict]:
    """The test cases of every shared attack of ``eval.attacks`` (sampled once, given to every
    model) on the attacker's engine pool of ``settings``; returns the harmful-task case rows.
    Behaviours with a file are not sampled again."""
    from plot_ray.eval.engines import resolve_model_path
    from plot_ray.eval.tasks import harmful_case
    from plot_ray.models import load_tokenizer

    cases: list[dict] = []
    for spec in ev.attack_specs("shared"):
        cfg = ev.attack_settings(spec.name)
        folder = store.root / "attacks" / spec.name
        _check_attack_settings(store, folder, spec, cfg, ev)
        pending = [b for b in behaviors if not (folder / f"{b['behavior_id']}.parquet").is_file()]
        if pending:
            path = resolve_model_path(ev.attacker)
            say(f"{spec.name}: {len(pending)} behaviours from the attacker {path}")
            progress.start(f"attacker: {spec.name}", len(pending))
            ctx = SharedContext(
                sample=engine_sampler(path, settings),
                tokenizer=load_tokenizer(path, trust_remote_code=ev.trust_remote_code),
                seed=ev.seed,
            )
            made = spec.run(pending, cfg, ctx)
            for b in pending:
                rows = [
                    {
                        "behavior_id": c.behavior_id,
                        "attack": spec.name,
                        "n": c.n,
                        "test_case": c.test_case,
                        **c.extra,
                    }
                    for c in made
                    if c.behavior_id == b["behavior_id"]
                ]
                store.write_table(folder / f"{b['behavior_id']}.parquet", rows)
                progress.update(1)
            progress.close()
        cases += [
            harmful_case(b, spec.name, row["n"], row["test_case"])
            for b in behaviors
            for row in store.read_table(folder / f"{b['behavior_id']}.parquet")
        ]
    return cases


def shared_attack_rows(store, spec: AttackSpec, behaviors: list[dict]) -> list[dict]:
    """A shared attack's stored test cases, each with its behaviour's text (for
    ``AttackSpec.quality``)."""
    folder = store.root / "attacks" / spec.name
    return [
        {**row, "behavior": b["behavior"]}
        for b in behaviors
        for row in store.read_table(folder / f"{b['behavior_id']}.parquet")
    ]
