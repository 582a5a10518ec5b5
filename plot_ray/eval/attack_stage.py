"""Model-specific attacks: test cases optimised against one target model, on a Ray actor pool.

    run_model_attacks(store, model, path, behaviors, ev, settings) -> harmful case rows

Gradient attacks (GCG, PEZ, GBDA, UAT; :mod:`plot_ray.eval.gradient_attacks`) need the target
model's gradients, so each actor of the pool holds a Hugging Face replica of the target (one GPU
each on a GPU cluster, a share of the cores here) and the behaviours are spread over the pool.
Each behaviour's test cases land in ``results/<model>/attacks/<attack>/behavior-<n>.parquet``
the moment it finishes (test case, final and initial target loss, steps, the loss trace, the
test cases saved at intermediate steps); a rerun attacks only the behaviours without a file.

The test cases then join the model's ``harmful`` task like the static attacks' ones: the final
test case as attack ``<attack>``, and the intermediate ones (``eval.attack_params.<attack>.
snapshot_every``) as attack ``<attack>@<step>`` for the ASR-vs-steps curve.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "GRADIENT",
    "AttackActor",
    "attack_config",
    "curve_steps",
    "run_model_attacks",
    "snapshot_at",
]

GRADIENT = ("gcg", "pez", "gbda", "uat")


def attack_config(attack: str, params: dict[str, Any]):
    """The attack's config from ``eval.attack_params.<attack>``; unknown keys fail naming them."""
    from plot_ray.config import ConfigError
    from plot_ray.eval.gradient_attacks import make_attack_config

    try:
        return make_attack_config(attack, params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"eval.attack_params.{exc}") from None


def curve_steps(cfg) -> list[int]:
    """The steps of the ASR-vs-steps curve: 0, every ``snapshot_every`` and ``num_steps``."""
    every, last = cfg.snapshot_every, cfg.num_steps
    return sorted({0, last, *range(every, last + 1, every)}) if every > 0 else [0, last]


def snapshot_at(snapshots: dict[int, str], step: int) -> str:
    """The test case an attack had after ``step`` steps: its latest snapshot at or before it
    (an attack that stopped early keeps its final test case for the later steps)."""
    return snapshots[max(s for s in snapshots if s <= step)]


class AttackActor:
    """A Ray Data actor holding one replica of the target model; attacks one behaviour per
    call and returns one row with the attack's test cases and traces (JSON text columns)."""

    def __init__(self, model: str, attack: str, params: dict, threads: int, dtype: str, seed: int):
        import os

        import torch

        from plot_ray.models import load_causal_lm, load_tokenizer

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.tok = load_tokenizer(model)
        self.model = load_causal_lm(model, dtype=dtype).eval()
        self.model.requires_grad_(False)
        self.attack = attack
        self.cfg = attack_config(attack, params)
        self.seed = seed

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from plot_ray.eval.gradient_attacks import run_gradient_attack

        out: dict[str, list] = {"results": []}
        for behavior, target in zip(batch["behavior"], batch["target"], strict=True):
            results = run_gradient_attack(
                self.attack, self.model, self.tok, str(behavior), str(target), self.cfg, self.seed
            )
            out["results"].append(
                json.dumps(
                    [
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
                )
            )
        batch["results"] = np.array(out["results"], dtype=object)
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
        }
        for n, r in enumerate(results)
    ]


def run_model_attacks(store, model_name: str, path: str, behaviors: list[dict], ev, settings, bar):
    """Attack every behaviour not yet attacked with every gradient attack in ``eval.attacks``;
    returns the harmful-task case rows of all of them (final and intermediate test cases)."""
    from plot_ray.eval.runner import _actor_pool_kwargs, _stream
    from plot_ray.eval.tasks import harmful_case

    cases: list[dict] = []
    for attack in (a for a in ev.attacks if a in GRADIENT):
        params = dict(ev.attack_params.get(attack, {}))
        steps = curve_steps(attack_config(attack, params))  # bad keys fail before actors start
        folder = store.root / "results" / model_name / "attacks" / attack
        pending = {
            (attack, i): [b]
            for i, b in enumerate(behaviors)
            if not (folder / f"{b['behavior_id']}.parquet").is_file()
        }
        if pending:
            kwargs = {
                "model": path,
                "attack": attack,
                "params": params,
                "threads": settings.threads_per_engine,
                "dtype": settings.dtype,
                "seed": ev.seed,
            }

            def transform(ds, kwargs=kwargs):
                return ds.map_batches(AttackActor, **_actor_pool_kwargs(kwargs, settings, 1))

            def write(key, rows, attack=attack, folder=folder):
                b = behaviors[key[1]]
                store.write_table(
                    folder / f"{b['behavior_id']}.parquet",
                    _attack_rows(attack, b, json.loads(rows[0]["results"])),
                )

            bar.start(f"{model_name}: {attack}", len(pending))
            _stream(pending, transform, lambda row: row, write, bar)
            bar.close()
        for b in behaviors:
            for row in store.read_table(folder / f"{b['behavior_id']}.parquet"):
                cases.append(harmful_case(b, attack, row["n"], row["test_case"]))
                snapshots = {int(k): v for k, v in json.loads(row["snapshots"]).items()}
                for step in steps:
                    test_case = snapshot_at(snapshots, step)
                    cases.append(harmful_case(b, f"{attack}@{step}", row["n"], test_case))
    return cases
