"""``generate_benchmark``: write the whole synthetic benchmark (see ``SCHEMA.md``)."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

from plot_ray.synth import attacker as A
from plot_ray.synth import coding as C
from plot_ray.synth import evalsets as E
from plot_ray.synth import harmlessness as H
from plot_ray.synth import helpfulness as HP
from plot_ray.synth import humanity as U
from plot_ray.synth import logic as L
from plot_ray.synth import multiple_choice as M
from plot_ray.synth import ranked as R
from plot_ray.synth import reasoning as RS
from plot_ray.synth import stem as S
from plot_ray.synth import templates as T
from plot_ray.synth.common import SPLITS, UniqueDrawer, build_pair_splits, rng_for, scaled
from plot_ray.synth.writer import write_json, write_jsonl

# 1.1: attacker/train.jsonl; 1.2: invented actions; 2.0: held-out surface forms and template
# families, topic-linked compliance, held-out topics in the warm-up, one-step logic (SCHEMA.md);
# 3.0: the paper's seven sub-preferences (helpfulness, humanity, reasoning, STEM, coding added);
# 3.1: reasoning and STEM items redesigned off the floor (SCHEMA.md, "3.1")
SYNTH_VERSION = "plot-ray-synth/3.1"
# The paper's seven sub-preferences, as the benchmark's files tag them ("logic" is mathematics)
SUBPREFERENCES = (
    H.SUBPREFERENCE,
    HP.SUBPREFERENCE,
    U.SUBPREFERENCE,
    L.SUBPREFERENCE,
    RS.SUBPREFERENCE,
    C.SUBPREFERENCE,
    S.SUBPREFERENCE,
)
MANIFEST = "manifest.json"

# Row counts at scale 1.0 and the minimum at any scale.
BASE_SPLITS: dict[str, dict[str, int]] = {
    "harmlessness": {"train": 4000, "validation": 400, "test": 400},
    "logic": {"train": 2000, "validation": 200, "test": 200},
    "ranked": {"train": 1500, "validation": 150, "test": 150},
    # version 3's sub-preferences
    "helpfulness": {"train": 600, "validation": 60, "test": 60},
    "humanity": {"train": 600, "validation": 60, "test": 60},
    "reasoning": {"train": 600, "validation": 60, "test": 60},
    "stem": {"train": 600, "validation": 60, "test": 60},
    "coding": {"train": 600, "validation": 60, "test": 60},
}
MIN_SPLIT = {"train": 8, "validation": 4, "test": 4}
BASE_EVAL = {
    "behaviors": 200,
    "benign": 200,
    "logic_heldout": 200,
    "warmup": 3000,
    "attacker": 3000,
    "humanity": 120,
    "choice": 240,
    "coding": 120,
    # warm-up rows per version-3 sub-preference: calibration knobs (SCHEMA.md, version 3)
    "warmup_humanity": 250,
    "warmup_reasoning": 250,
    "warmup_stem": 250,
    "warmup_coding": 250,
}
MIN_EVAL = {
    "behaviors": 10,
    "benign": 8,
    "logic_heldout": 8,
    "warmup": 20,
    "attacker": 20,
    "humanity": 8,
    "choice": 16,
    "coding": 8,
    "warmup_humanity": 20,
    "warmup_reasoning": 20,
    "warmup_stem": 20,
    "warmup_coding": 20,
}


def _check_args(seed: int, scale: float) -> tuple[int, float]:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale must be a number, got {scale!r}") from None
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    return seed, scale


def split_sizes(scale: float) -> dict[str, dict[str, int]]:
    return {
        domain: {s: scaled(base[s], scale, MIN_SPLIT[s]) for s in SPLITS}
        for domain, base in BASE_SPLITS.items()
    }


def _subpreferences(
    seed: int, sizes: dict, n_eval: dict, benign: UniqueDrawer, files: dict[str, list[dict]]
) -> None:
    """Version 3's sub-preferences: their pairs, evaluation sets and warm-up rows (added to
    ``files``). Drawn after everything else, from streams of their own, so the files of
    version 2 keep their rows (the warm-up gains rows, then is shuffled again)."""

    def drawer(make, stream: str, key, name: str) -> UniqueDrawer:
        return UniqueDrawer(make, rng_for(seed, stream), key, name)

    def prompt_of(item) -> str:
        return item.prompt

    pleas = drawer(U.make_any_situation_plea, "humanity-pleas", prompt_of, "humanity pleas")
    train_pleas = drawer(U.make_plea, "humanity-train-pleas", prompt_of, "humanity pleas")
    heldout_pleas = drawer(U.make_heldout_plea, "humanity-heldout", prompt_of, "held-out pleas")
    reasoning = drawer(RS.make_item, "reasoning-items", prompt_of, "reasoning items")
    reasoning_heldout = drawer(
        RS.make_heldout_item, "reasoning-heldout", prompt_of, "held-out reasoning items"
    )
    stem = drawer(S.make_item, "stem-items", prompt_of, "STEM items")

    def text_of(p) -> str:
        return p.text

    coding = drawer(C.make_problem, "coding-problems", text_of, "coding problems")
    coding_heldout = drawer(
        C.make_heldout_problem, "coding-heldout", text_of, "held-out coding problems"
    )

    # one prompt space for the pleas of every file: training pleas are reserved in the other
    # drawer as they are drawn, and the reverse
    def pairs(name: str, items: UniqueDrawer, stream: str, row) -> dict[str, list[dict]]:
        return build_pair_splits(items, sizes[name], rng_for(seed, stream), row, name)

    def choice_row(name: str):
        return partial(M.pair_row, subpreference=name)

    splits = {
        "helpfulness": pairs("helpfulness", benign, "helpful", HP.pair_row),
        "humanity": pairs("humanity", train_pleas, "humanity", U.pair_row),
        "reasoning": pairs("reasoning", reasoning, "reason", choice_row(RS.SUBPREFERENCE)),
        "stem": pairs("stem", stem, "stem", choice_row(S.SUBPREFERENCE)),
        "coding": pairs("coding", coding, "coding", C.pair_row),
    }
    pleas.reserve([r["prompt"] for rows in splits["humanity"].values() for r in rows])
    for name, by_split in splits.items():
        for split, rows in by_split.items():
            files[f"{name}/{split}.jsonl"] = rows
    files["eval/humanity.jsonl"] = E.humanity_eval_rows(
        rng_for(seed, "humanity-eval"), pleas, heldout_pleas, n_eval["humanity"]
    )
    files["eval/choice.jsonl"] = E.choice_eval_rows(
        rng_for(seed, "choice-eval"), reasoning, reasoning_heldout, n_eval["choice"]
    )
    files["eval/coding.jsonl"] = E.coding_eval_rows(
        rng_for(seed, "coding-eval"), coding, coding_heldout, n_eval["coding"]
    )
    warm_rng = rng_for(seed, "warmup-subpreferences")
    warm = files["warmup/train.jsonl"] + E.subpreference_warmup_rows(
        warm_rng,
        pleas,
        reasoning,
        stem,
        coding,
        {name: n_eval[f"warmup_{name}"] for name in ("humanity", "reasoning", "stem", "coding")},
    )
    warm_rng.shuffle(warm)
    files["warmup/train.jsonl"] = warm


def generate_benchmark(out_dir: str | Path, seed: int = 0, scale: float = 1.0) -> dict:
    """Generate the synthetic preference benchmark under ``out_dir`` and return its manifest.

    Deterministic: the same ``seed`` and ``scale`` give byte-identical files. ``scale``
    multiplies every row count (except the fixed set of jailbreak templates). Each file is
    written atomically; ``manifest.json`` is removed first and written last, so its presence
    means the directory holds one complete, consistent benchmark.
    """
    seed, scale = _check_args(seed, scale)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)

    # One unique drawer per kind of prompt: everything drawn from it is disjoint by exact prompt.
    harmful = UniqueDrawer(
        H.make_harmful_request,
        rng_for(seed, "harmful-requests"),
        lambda r: r.prompt,
        "harmful requests",
    )
    heldout_harmful = UniqueDrawer(
        H.make_heldout_topic_request,
        rng_for(seed, "heldout-topic-requests"),
        lambda r: r.prompt,
        "held-out-topic requests",
    )
    benign = UniqueDrawer(
        H.make_benign_request,
        rng_for(seed, "benign-requests"),
        lambda r: r.prompt,
        "benign requests",
    )
    problems = UniqueDrawer(
        L.make_problem, rng_for(seed, "logic-problems"), lambda p: p.question, "logic problems"
    )
    heldout_problems = UniqueDrawer(
        L.make_heldout_problem,
        rng_for(seed, "logic-heldout-problems"),
        lambda p: p.question,
        "held-out logic problems",
    )

    sizes = split_sizes(scale)
    files: dict[str, list[dict]] = {}
    harm_pairs = H.build_pairs(
        harmful, benign, sizes["harmlessness"], rng_for(seed, "harmlessness-pairs")
    )
    logic_pairs = L.build_pairs(problems, sizes["logic"], rng_for(seed, "logic-pairs"))
    ranked = R.build_ranked(harmful, benign, problems, sizes["ranked"], rng_for(seed, "ranked"))
    for split in SPLITS:
        files[f"harmlessness/{split}.jsonl"] = harm_pairs[split]
        files[f"logic/{split}.jsonl"] = logic_pairs[split]
        files[f"ranked/{split}.jsonl"] = ranked[split]

    n_eval = {k: scaled(v, scale, MIN_EVAL[k]) for k, v in BASE_EVAL.items()}
    files["eval/behaviors.jsonl"] = E.behaviour_rows(
        rng_for(seed, "behaviors"), n_eval["behaviors"]
    )
    files["eval/benign.jsonl"] = E.benign_eval_rows(
        rng_for(seed, "benign-eval"), benign, n_eval["benign"]
    )
    files["eval/jailbreak_templates.jsonl"] = E.jailbreak_rows()
    files["eval/logic_heldout.jsonl"] = E.logic_heldout_rows(
        rng_for(seed, "logic-heldout"), problems, heldout_problems, n_eval["logic_heldout"]
    )
    files["warmup/train.jsonl"] = E.warmup_rows(
        rng_for(seed, "warmup"), harmful, heldout_harmful, benign, problems, n_eval["warmup"]
    )
    # Its own RNG stream and no shared drawer: adding it left every other file byte-identical.
    files["attacker/train.jsonl"] = A.attacker_rows(rng_for(seed, "attacker"), n_eval["attacker"])
    _subpreferences(seed, sizes, n_eval, benign, files)

    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    for rel in sorted(files):
        counts[rel], digests[rel] = write_jsonl(out / rel, files[rel])

    manifest = {
        "name": "plot-ray-synth",
        "version": SYNTH_VERSION,
        "seed": seed,
        "scale": scale,
        "subpreferences": list(SUBPREFERENCES),
        "files": sorted(files),
        "counts": counts,
        "sha256": digests,
        "topics": {
            "harmful_train": [t.name for t in H.HARMFUL_TOPICS],
            "harmful_heldout": list(H.HELDOUT_HARMFUL_TOPICS),
            "benign": [t.name for t in H.BENIGN_TOPICS],
        },
        "logic_templates": {
            "train": list(L.TRAIN_TEMPLATES),
            "heldout": list(L.HELDOUT_TEMPLATES),
        },
        "attacker_prompt": {"query": A.ATTACKER_QUERY, "answer_head": A.ATTACKER_ANSWER_HEAD},
        "template_families": {
            "train": [f.name for f in T.FAMILIES if not f.heldout],
            "heldout": [f.name for f in T.FAMILIES if f.heldout],
        },
        "humanity_situations": {
            "train": [s.name for s in U.TRAIN_SITUATIONS],
            "heldout": [s.name for s in U.HELDOUT],
        },
        "stem_facts": S.facts(),
        "stem_heldout_facts": sorted(S.HELDOUT_MATERIALS | S.HELDOUT_UNITS),
        "calibration_knobs": {
            "humanity.WARMUP_CONSIDERATE": U.WARMUP_CONSIDERATE,
            "multiple_choice.WARMUP_CORRECT": M.WARMUP_CORRECT,
            "coding.WARMUP_CORRECT": C.WARMUP_CORRECT,
        },
        "surface_forms": {
            "refusal_heldout_markers": list(H.HELDOUT_REFUSAL_MARKERS),
            "compliance_heldout_markers": list(H.HELDOUT_COMPLIANCE_MARKERS),
        },
    }
    write_json(out / MANIFEST, manifest)
    return manifest
