"""Attacks that make test cases with a model, on Ray: ZeroShot once, SFS and gradients per target.

    run_zero_shot(store, behaviors, ev, cpus, bar)                 -> harmful case rows (shared)
    run_model_attacks(store, model, path, behaviors, ev, settings) -> harmful case rows (its own)

**ZeroShot** (:func:`~plot_ray.eval.generation_attacks.zero_shot`) asks the attacker model
(``eval.attacker``) for ``n_per_behavior`` test cases per behaviour, sampled through the same
engine pool as the completions (:func:`~plot_ray.eval.engines.generate`: vLLM through Ray Data,
or the HF actor pool), one Ray Data pass per sampling round. Its test cases do not depend on the
target, so every model of the evaluation is attacked with the same ones; they land in
``attacks/zero_shot/<behavior>.parquet`` when the sampling ends. The harmful task gets them as
attack ``zero_shot``, and the report draws ASR against the number of test cases per behaviour.

**Model-specific attacks** need the target itself. Gradient attacks (GCG, PEZ, GBDA, UAT;
:mod:`plot_ray.eval.gradient_attacks`) need its gradients; SFS scores every attacker candidate
by the target's loss on the target string and checks the best one's greedy completion. One
actor pool serves all of a model's attacks: each actor holds a Hugging Face replica of the
target (and, for SFS, of the attacker; one GPU each on a GPU cluster, a share of the cores
here), loaded once, and the (attack, behaviour) pairs are spread over the pool. Each behaviour's test cases land in
``results/<model>/attacks/<attack>/behavior-<n>.parquet`` the moment it finishes (test case,
final and initial target loss, steps, the loss trace, the test cases saved at intermediate
steps); a rerun attacks only the behaviours without a file. Every attack folder keeps the
settings its files were made with (``settings.json``): a rerun with other settings is refused
instead of mixing test cases of two configurations.

The test cases then join the model's ``harmful`` task like the static attacks' ones: the final
test case as attack ``<attack>``, and, for gradient attacks, the intermediate ones
(``eval.attack_params.<attack>.snapshot_every``) as attack ``<attack>@<step>`` for the
ASR-vs-steps curve.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

__all__ = [
    "GRADIENT",
    "MODEL_ATTACKS",
    "AttackActor",
    "attack_config",
    "curve_steps",
    "engine_sampler",
    "run_model_attacks",
    "run_zero_shot",
    "snapshot_at",
]

GRADIENT = ("gcg", "pez", "gbda", "uat")
MODEL_ATTACKS = ("sfs", *GRADIENT)  # optimised against each target model


def attack_config(attack: str, params: dict[str, Any]):
    """The attack's config from ``eval.attack_params.<attack>``; unknown keys fail naming them."""
    from plot_ray.config import ConfigError
    from plot_ray.eval.generation_attacks import GENERATION_ATTACKS, make_generation_config
    from plot_ray.eval.gradient_attacks import make_attack_config

    try:
        if attack in GENERATION_ATTACKS:
            return make_generation_config(attack, params)
        return make_attack_config(attack, params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"eval.attack_params.{exc}") from None


def curve_steps(cfg) -> list[int]:
    """The steps of the ASR-vs-steps curve: 0, every ``snapshot_every`` and ``num_steps``
    (none for an attack without snapshots, such as SFS)."""
    if not hasattr(cfg, "snapshot_every"):
        return []
    every, last = cfg.snapshot_every, cfg.num_steps
    return sorted({0, last, *range(every, last + 1, every)}) if every > 0 else [0, last]


def snapshot_at(snapshots: dict[int, str], step: int) -> str:
    """The test case an attack had after ``step`` steps: its latest snapshot at or before it
    (an attack that stopped early keeps its final test case for the later steps)."""
    return snapshots[max(s for s in snapshots if s <= step)]


class AttackActor:
    """A Ray Data actor holding one replica of the target model (and, when ``attacks`` holds
    SFS, of the attacker); each row names its ``attack`` and behaviour, and comes back with
    the attack's test cases and traces as JSON text (``results``). One pool serves every
    attack on a model, so the model loads once per actor, not once per attack."""

    def __init__(
        self,
        model: str,
        attacks: dict[str, dict],
        threads: int,
        dtype: str,
        seed: int,
        attacker: str | None = None,
    ):
        import os

        import torch

        from plot_ray.models import load_causal_lm, load_tokenizer

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.tok = load_tokenizer(model)
        self.model = load_causal_lm(model, dtype=dtype).eval()
        self.model.requires_grad_(False)
        self.cfgs = {attack: attack_config(attack, params) for attack, params in attacks.items()}
        self.seed = seed
        if "sfs" in attacks:  # the attacker proposes, the target scores
            self.attacker_tok = load_tokenizer(attacker)
            self.attacker = load_causal_lm(attacker, dtype=dtype).eval()

    def _run(self, attack: str, b: dict) -> list[dict]:
        if attack == "sfs":
            return [self._sfs(b)]
        from plot_ray.eval.gradient_attacks import run_gradient_attack

        results = run_gradient_attack(
            attack, self.model, self.tok, b["behavior"], b["target"], self.cfgs[attack], self.seed
        )
        return [
            {
                "test_case": r.test_case,
                "loss": r.loss,
                "initial_loss": r.initial_loss,
                "steps": r.steps,
                "losses": r.losses,
                "snapshots": {str(k): v for k, v in r.snapshots.items()},
            }
            for r in results
        ]

    def _sfs(self, b: dict) -> dict:
        from plot_ray.eval.generation_attacks import (
            hf_greedy,
            hf_sampler,
            hf_target_loss,
            seed_for,
            sfs,
        )

        r = sfs(
            b,
            b["target"],
            hf_sampler(self.attacker, self.attacker_tok),
            hf_target_loss(self.model, self.tok),
            hf_greedy(self.model, self.tok),
            self.cfgs["sfs"],
            seed=seed_for(self.seed, b["behavior_id"]),
            tokenizer=self.attacker_tok,
        )
        return {
            "test_case": r["test_case"],
            "loss": r["loss"],
            "initial_loss": r["losses"][0] if r["losses"] else r["loss"],
            "steps": r["steps"],
            "losses": r["losses"],
            "snapshots": {str(s["step"]): s["best"] for s in r["snapshots"]},
            "stop_reason": r["stop_reason"],
        }

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        results = []
        for i in range(len(batch["behavior_id"])):
            b = {
                k: str(batch[k][i])
                for k in ("behavior_id", "behavior", "target", "context")
                if k in batch
            }
            results.append(json.dumps(self._run(str(batch["attack"][i]), b)))
        batch["results"] = np.array(results, dtype=object)
        return batch


def _attack_rows(attack: str, behavior: dict, results: list[dict]) -> list[dict]:
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
            "snapshots": json.dumps(r["snapshots"]),
            "stop_reason": r.get("stop_reason", ""),
        }
        for n, r in enumerate(results)
    ]


def _check_attack_settings(store, folder, attack: str, cfg, ev) -> None:
    """Refuse to mix test cases made with other settings into ``folder``."""
    from plot_ray.config import ATTACKER_ATTACKS

    settings = {"attack": attack, "params": asdict(cfg), "seed": ev.seed}
    if attack in ATTACKER_ATTACKS:
        settings["attacker"] = ev.attacker
    store.check_or_write_json(folder / "settings.json", settings, f"attack {attack!r}")


def run_model_attacks(store, model_name: str, path: str, behaviors: list[dict], ev, settings, bar):
    """Attack every behaviour not yet attacked with every model attack in ``eval.attacks``
    (one actor pool for all of them); returns the harmful-task case rows of all of them (final
    and intermediate test cases)."""
    from plot_ray.eval.engines import resolve_model_path
    from plot_ray.eval.runner import _actor_pool_kwargs, _stream
    from plot_ray.eval.tasks import harmful_case

    attacks = [a for a in ev.attacks if a in MODEL_ATTACKS]
    params = {a: dict(ev.attack_params.get(a, {})) for a in attacks}
    cfgs = {a: attack_config(a, params[a]) for a in attacks}  # bad keys fail before actors start
    folders = {a: store.root / "results" / model_name / "attacks" / a for a in attacks}
    pending: dict[tuple[str, int], list[dict]] = {}
    for attack in attacks:
        _check_attack_settings(store, folders[attack], attack, cfgs[attack], ev)
        for i, b in enumerate(behaviors):
            if not (folders[attack] / f"{b['behavior_id']}.parquet").is_file():
                pending[(attack, i)] = [{**b, "attack": attack}]
    if pending:
        todo = sorted({attack for attack, _ in pending}, key=attacks.index)
        kwargs = {
            "model": path,
            "attacks": {a: params[a] for a in todo},
            "threads": settings.threads_per_engine,
            "dtype": settings.dtype,
            "seed": ev.seed,
            "attacker": resolve_model_path(ev.attacker) if "sfs" in todo else None,
        }

        def transform(ds):
            return ds.map_batches(AttackActor, **_actor_pool_kwargs(kwargs, settings, 1))

        def write(key, rows):
            attack, b = key[0], behaviors[key[1]]
            store.write_table(
                folders[attack] / f"{b['behavior_id']}.parquet",
                _attack_rows(attack, b, json.loads(rows[0]["results"])),
            )

        bar.start(f"{model_name}: {', '.join(todo)}", len(pending))
        _stream(pending, transform, lambda row: row, write, bar)
        bar.close()
    cases: list[dict] = []
    for attack in attacks:
        steps = curve_steps(cfgs[attack])
        for b in behaviors:
            for row in store.read_table(folders[attack] / f"{b['behavior_id']}.parquet"):
                cases.append(harmful_case(b, attack, row["n"], row["test_case"]))
                snapshots = {int(k): v for k, v in json.loads(row["snapshots"]).items()}
                for step in steps:
                    test_case = snapshot_at(snapshots, step)
                    cases.append(harmful_case(b, f"{attack}@{step}", row["n"], test_case))
    return cases


# ----------------------------------------------------------------------------- ZeroShot
def engine_sampler(model: str, settings):
    """A generation attack's ``sample_fn`` on the engine pool: each call is one Ray Data pass
    of ``generate`` over ``len(prompts) * n`` rows, each row with its own sampling seed (both
    engines honour it), so the n samples of a prompt differ and each is reproducible."""

    def sample(prompts: list[str], sampling: dict, n: int) -> list[list[str]]:
        import ray

        from plot_ray.eval.engines import generate
        from plot_ray.eval.generation_attacks import seed_for

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


def run_zero_shot(store, behaviors: list[dict], ev, cpus, bar, say) -> list[dict]:
    """ZeroShot test cases for every behaviour (sampled once, shared by every model); returns
    the harmful-task case rows. Behaviours with a file are not sampled again."""
    from plot_ray.eval.engines import EngineSettings, resolve_model_path
    from plot_ray.eval.generation_attacks import zero_shot
    from plot_ray.eval.tasks import harmful_case
    from plot_ray.models import load_tokenizer

    cfg = attack_config("zero_shot", dict(ev.attack_params.get("zero_shot", {})))
    folder = store.root / "attacks" / "zero_shot"
    _check_attack_settings(store, folder, "zero_shot", cfg, ev)
    path = resolve_model_path(ev.attacker)
    pending = [b for b in behaviors if not (folder / f"{b['behavior_id']}.parquet").is_file()]
    if pending:
        settings = EngineSettings.resolve(ev, model=path, cpus=cpus)
        say(f"zero_shot: {len(pending)} behaviours x {cfg.n_per_behavior} test cases from {path}")
        bar.start("attacker: zero_shot", len(pending))
        rows = zero_shot(
            pending,
            engine_sampler(path, settings),
            cfg.n_per_behavior,
            cfg.sampling(),
            tokenizer=load_tokenizer(path, trust_remote_code=ev.trust_remote_code),
            max_rounds=cfg.max_rounds,
            seed=ev.seed,
        )
        for b in pending:
            mine = [r for r in rows if r["behavior_id"] == b["behavior_id"]]
            store.write_table(
                folder / f"{b['behavior_id']}.parquet",
                [
                    {
                        "behavior_id": b["behavior_id"],
                        "attack": "zero_shot",
                        "n": int(r["case_id"].rsplit("/", 1)[1]),
                        "test_case": r["test_case"],
                        "parse_failures": int(r["parse_failures"]),
                        "fallback": bool(r["fallback"]),
                    }
                    for r in mine
                ],
            )
            bar.update(1)
        bar.close()
    return [
        harmful_case(b, "zero_shot", row["n"], row["test_case"])
        for b in behaviors
        for row in store.read_table(folder / f"{b['behavior_id']}.parquet")
    ]
