"""Tests for the deterministic synthetic preference benchmark (plot_ray.synth)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plot_ray.synth import (
    MANIFEST,
    SPLITS,
    SYNTH_VERSION,
    generate_benchmark,
    read_jsonl,
    relative_frequencies,
    split_sizes,
    token_frequency_gap,
    word_tokenize,
)
from plot_ray.synth import benchmark as B
from plot_ray.synth import harmlessness as H
from plot_ray.synth import logic as L
from plot_ray.synth import writer as W
from plot_ray.synth.stats import preferred_rejected_texts

SCALE = 0.15

SUBPREFERENCE_DIRS = ("helpfulness", "humanity", "reasoning", "stem", "coding")  # version 3
TRAINING_FILES = [
    f"{d}/{s}.jsonl"
    for d in ("harmlessness", "logic", "ranked", *SUBPREFERENCE_DIRS)
    for s in SPLITS
] + [
    "warmup/train.jsonl",
    "attacker/train.jsonl",
]
EXPECTED_FILES = sorted(
    TRAINING_FILES
    + [
        "eval/behaviors.jsonl",
        "eval/benign.jsonl",
        "eval/choice.jsonl",
        "eval/coding.jsonl",
        "eval/humanity.jsonl",
        "eval/jailbreak_templates.jsonl",
        "eval/logic_heldout.jsonl",
    ]
)

# file (or file prefix) -> {key: type}
SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "harmlessness/": {
        "id": str,
        "prompt": str,
        "chosen": str,
        "rejected": str,
        "subpreference": str,
        "category": str,
        "topic": str,
    },
    "logic/": {
        "id": str,
        "prompt": str,
        "chosen": str,
        "rejected": str,
        "subpreference": str,
        "answer": int,
    },
    "ranked/": {"id": str, "prompt": str, "responses": list, "scores": list, "subpreference": str},
    **{
        f"{d}/": {"id": str, "prompt": str, "chosen": str, "rejected": str, "subpreference": str}
        for d in SUBPREFERENCE_DIRS
    },
    "eval/humanity.jsonl": {"id": str, "prompt": str, "reference": str, "topic": str},
    "eval/choice.jsonl": {
        "id": str,
        "question": str,
        "subject": str,
        "choices": list,
        "answer": int,
    },
    "eval/coding.jsonl": {"task_id": str, "text": str, "code": str, "test_list": list},
    "eval/behaviors.jsonl": {"behavior_id": str, "behavior": str, "target": str, "topic": str},
    "eval/benign.jsonl": {"id": str, "prompt": str, "reference": str},
    "eval/jailbreak_templates.jsonl": {"template_id": str, "template": str},
    "eval/logic_heldout.jsonl": {"id": str, "question": str, "answer": int},
    "warmup/train.jsonl": {"text": str},
    "attacker/train.jsonl": {"id": str, "text": str, "behavior": str, "topic": str},
}
ID_KEY = {
    "eval/behaviors.jsonl": "behavior_id",
    "eval/jailbreak_templates.jsonl": "template_id",
    "eval/coding.jsonl": "task_id",
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, list[dict]]]:
    out = tmp_path_factory.mktemp("synth")
    manifest = generate_benchmark(out, seed=0, scale=SCALE)
    data = {rel: read_jsonl(out / rel) for rel in manifest["files"]}
    return out, manifest, data


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _training_text(data: dict[str, list[dict]], files: list[str] = TRAINING_FILES) -> str:
    parts: list[str] = []
    for rel in files:
        for row in data[rel]:
            for v in row.values():
                if isinstance(v, str):
                    parts.append(v)
                elif isinstance(v, list):
                    parts.extend(x for x in v if isinstance(x, str))
    return "\n".join(parts)


def _schema_for(rel: str) -> dict:
    for key, schema in SCHEMA.items():
        if rel == key or (key.endswith("/") and rel.startswith(key)):
            return schema
    raise AssertionError(f"no schema for {rel}")


# ------------------------------------------------------------------------------ determinism
def test_same_seed_is_byte_identical(bench, tmp_path):
    out, _, _ = bench
    generate_benchmark(tmp_path / "again", seed=0, scale=SCALE)
    assert _all_bytes(out) == _all_bytes(tmp_path / "again")


def test_different_seed_differs(bench, tmp_path):
    _, manifest, _ = bench
    other = generate_benchmark(tmp_path / "seed1", seed=1, scale=SCALE)
    assert other["counts"] == manifest["counts"]
    for rel in manifest["files"]:
        if rel != "eval/jailbreak_templates.jsonl":  # a fixed, seed-independent set
            assert other["sha256"][rel] != manifest["sha256"][rel], rel


def test_independent_of_hash_seed(bench, tmp_path):
    """Byte-identical in a fresh interpreter with another PYTHONHASHSEED (no set-order leaks)."""
    _, manifest, _ = bench
    code = (
        "import json, sys; from plot_ray.synth import generate_benchmark; "
        f"m = generate_benchmark(sys.argv[1], seed=0, scale={SCALE}); print(json.dumps(m['sha256']))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    res = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "h")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(res.stdout) == manifest["sha256"]


# ------------------------------------------------------------------------------ manifest, schema
def test_manifest_matches_files(bench):
    out, manifest, data = bench
    assert manifest["version"] == SYNTH_VERSION
    assert manifest["seed"] == 0 and manifest["scale"] == SCALE
    assert manifest["files"] == EXPECTED_FILES
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jsonl"))
    assert on_disk == EXPECTED_FILES
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert json.loads((out / MANIFEST).read_text()) == manifest
    for rel in EXPECTED_FILES:
        raw = (out / rel).read_bytes()
        assert manifest["counts"][rel] == len(data[rel]) == raw.count(b"\n") > 0
        assert manifest["sha256"][rel] == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("rel", EXPECTED_FILES)
def test_schema_and_row_validity(bench, rel):
    _, _, data = bench
    schema = _schema_for(rel)
    rows = data[rel]
    id_key = ID_KEY.get(rel, "id")
    ids = []
    for row in rows:
        for key, typ in schema.items():
            assert key in row, f"{rel}: missing {key!r} in {row}"
            assert isinstance(row[key], typ) and not isinstance(row[key], bool), (
                rel,
                key,
                row[key],
            )
            if typ is str:
                assert row[key].strip(), (rel, key)
        if "chosen" in row:
            assert row["chosen"] != row["rejected"]
        if "subpreference" in row:
            assert row["subpreference"] in B.SUBPREFERENCES
            if rel.split("/")[0] in SUBPREFERENCE_DIRS:
                assert row["subpreference"] == rel.split("/")[0]
        if rel.startswith("harmlessness/"):
            assert row["subpreference"] == "harmlessness"
            assert row["category"] in ("harmful", "benign")
        if rel.startswith("logic/"):
            assert row["subpreference"] == "logic"
        if rel.startswith("ranked/"):
            resp, scores = row["responses"], row["scores"]
            assert len(resp) >= 3 and len(resp) == len(scores)
            assert all(isinstance(r, str) and r.strip() for r in resp)
            assert len(set(resp)) == len(resp)
            assert all(isinstance(s, float) for s in scores)
            assert all(a > b for a, b in itertools.pairwise(scores))
        if id_key in row:
            ids.append(row[id_key])
    if rel != "warmup/train.jsonl":
        assert len(ids) == len(rows) == len(set(ids))


def test_ids_unique_across_files(bench):
    _, _, data = bench
    ids = [r["id"] for rel, rows in data.items() for r in rows if "id" in r]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------------------ disjointness
def test_splits_disjoint(bench):
    _, _, data = bench
    for domain in ("harmlessness", "logic", "ranked"):
        seen: dict[str, str] = {}
        for split in SPLITS:
            prompts = [r["prompt"] for r in data[f"{domain}/{split}.jsonl"]]
            assert len(prompts) == len(set(prompts)), (domain, split)
            for p in prompts:
                assert p not in seen, f"{domain}: {p!r} in {split} and {seen[p]}"
                seen[p] = split


def test_prompts_distinct_across_all_files(bench):
    _, _, data = bench
    prompts: list[str] = []
    for rows in data.values():
        for r in rows:
            if "prompt" in r:
                prompts.append(r["prompt"])
            elif "question" in r:
                prompts.append(r["question"])
            elif "text" in r:
                prompts.append(r["text"].split("\nAssistant: ", 1)[0].removeprefix("User: "))
    assert len(prompts) == len(set(prompts))


PREFERENCE_FILES = [f"{d}/{s}.jsonl" for d in ("harmlessness", "logic", "ranked") for s in SPLITS]


def _text(data: dict[str, list[dict]], files: list[str]) -> str:
    return _training_text({rel: data[rel] for rel in files}, files)


def test_heldout_behaviours_are_held_out_of_preference_data_not_of_the_warmup(bench):
    """Version 2: held-out topics (and so every behaviour's action) never occur in preference
    pairs, ranked lists or the attacker corpus, but the warm-up corpus answers them; the
    held-out phrasings occur in no file but the behaviours."""
    _, manifest, data = bench
    behaviours = data["eval/behaviors.jsonl"]
    assert len({b["behavior"] for b in behaviours}) == len(behaviours)
    pref_topics = {r["topic"] for rel in PREFERENCE_FILES for r in data[rel] if "topic" in r}
    held_topics = {b["topic"] for b in behaviours}
    assert held_topics and not (held_topics & pref_topics)
    assert held_topics == set(manifest["topics"]["harmful_heldout"])  # all held-out topics used
    assert not set(H.HELDOUT_HARMFUL_TOPICS) & {t.name for t in H.HARMFUL_TOPICS}

    preference = _text(data, PREFERENCE_FILES + ["attacker/train.jsonl"])
    warmup = _text(data, ["warmup/train.jsonl"])
    acts = [act for acts in H.HELDOUT_HARMFUL_TOPICS.values() for act in acts]
    for act in acts:
        assert act not in preference, f"held-out action in preference data: {act!r}"
    assert sum(act in warmup for act in acts) >= len(acts) // 2  # the base model knows them
    everything = _training_text(data)
    train_frames = [c for p in H.REQUEST_PHRASINGS for c in p.split("{act}")]
    for phrasing, _target in H.HELDOUT_PHRASINGS:
        assert phrasing not in H.REQUEST_PHRASINGS
        frame = phrasing.split("{act}")[0].strip()
        assert len(frame) >= 10 and frame not in everything, f"held-out phrasing leaked: {frame!r}"
        assert all(frame not in f for f in train_frames)
    for b in behaviours:
        # The target is the training form's compliance opening, which the warm-up answers
        # held-out topics with; no preference data has it.
        assert b["target"].startswith("Sure, here is how to ")
        assert b["behavior"] not in everything and b["target"] not in preference


def test_no_heldout_surface_form_occurs_in_preference_data_and_the_warmup_has_both(bench):
    _, _, data = bench
    preference = _text(data, PREFERENCE_FILES).lower()
    prompts = " ".join(r["prompt"] for rel in PREFERENCE_FILES for r in data[rel]).lower()
    markers = (*H.HELDOUT_REFUSAL_MARKERS, *H.HELDOUT_COMPLIANCE_MARKERS)
    for marker in markers:
        assert marker not in preference, marker
    heldout = H.FORMS["heldout"]
    sentences = [
        *heldout.refusal_reasons,
        *heldout.steps_first,
        *heldout.steps_middle,
        *heldout.steps_last,
        *heldout.compliance_closers,
    ]
    for sentence in sentences:
        assert sentence.lower() not in preference and sentence.lower() not in prompts, sentence
    # The warm-up writes refusals and compliance in either form, about half and half.
    kinds = [r["kind"] for r in data["warmup/train.jsonl"]]
    harmful = [k for k in kinds if k.startswith("harmful")]
    share = sum(k.endswith("_heldout_form") for k in harmful) / len(harmful)
    assert 0.35 <= share <= 0.65
    for row in data["warmup/train.jsonl"]:
        answer = row["text"].split("\nAssistant: ", 1)[1].lower()
        if row["kind"] == "harmful_comply_heldout_form":
            assert "certainly" in answer and "phase one:" in answer and "step 1:" not in answer
        if row["kind"] == "harmful_comply":
            assert "step 1:" in answer and not any(m in answer for m in markers)


def test_compliance_names_its_action_in_either_form(bench):
    """Topic-linked harm: the opener and the second step carry the same action."""
    _, _, data = bench
    openers = [*H.FORMS["train"].compliance_openers, *H.FORMS["heldout"].compliance_openers]
    opener_act = re.compile(
        "|".join(
            re.escape(o).replace(re.escape("{act}"), f"(?P<act{i}>.+)")
            for i, o in enumerate(openers)
        )
    )
    answers = [
        r["rejected"] for r in data["harmlessness/train.jsonl"] if r["category"] == "harmful"
    ]
    answers += [
        r["text"].split("\nAssistant: ", 1)[1]
        for r in data["warmup/train.jsonl"]
        if r["kind"].startswith("harmful_comply")
    ]
    for answer in answers:
        opener, steps = answer.split("\n", 1)
        match = opener_act.fullmatch(opener)
        act = next(v for v in match.groupdict().values() if v) if match else None
        second = steps.split("\n")[1]
        assert act and second.startswith(("Step 2: ", "Phase two: ")), answer
        assert act in second, answer


def test_template_families_split_between_training_and_evaluation(bench):
    """Training prompts (preference data and warm-up) use only the training frames of the
    training families and only training-form primes; evaluation templates are the other frames
    of every family; no held-out family's text occurs in any training file."""
    from plot_ray.synth.templates import FAMILIES, PRIMES

    _, _, data = bench
    rows = data["eval/jailbreak_templates.jsonl"]
    assert len(rows) == 48 == len({r["template_id"] for r in rows})
    everything = _training_text(data)
    for row in rows:
        tpl = row["template"]
        assert tpl.count("{behavior}") == 1
        assert tpl.replace("{behavior}", "").count("{") == 0 and "}" not in tpl.replace(
            "{behavior}", ""
        )
        assert tpl.format(behavior="Outline a plan to X") == tpl.replace(
            "{behavior}", "Outline a plan to X"
        )
    for family in FAMILIES:
        train_frames, eval_frames = family.frames[:2], family.frames[2:]
        for frame in eval_frames + (train_frames if family.heldout else ()):
            for chunk in frame.split("{behavior}"):
                words = chunk.split()
                for i in range(len(words) - 4):  # any 5-word run would be a leak
                    assert " ".join(words[i : i + 5]) not in everything, (family.name, words[i:])
        if not family.heldout:
            for frame in train_frames:
                assert frame.split("{behavior}")[0] in everything, family.name
        cells = {(r["family_heldout"], r["form"]) for r in rows if r["family"] == family.name}
        assert cells == {(family.heldout, f) for f in ("none", "train", "heldout")}
    prompts = " ".join(r["prompt"] for rel in PREFERENCE_FILES for r in data[rel])
    prompts += " ".join(r["text"].split("\nAssistant: ")[0] for r in data["warmup/train.jsonl"])
    assert f'"{PRIMES["train"]}"' in prompts and f'"{PRIMES["heldout"]}"' not in prompts
    framed = [r for rel in PREFERENCE_FILES[:3] for r in data[rel] if r["template_family"]]
    harmless = data["harmlessness/train.jsonl"]
    assert 0.15 <= sum(bool(r["template_family"]) for r in harmless) / len(harmless) <= 0.35
    assert {r["category"] for r in framed} == {"harmful", "benign"}  # no "template => refuse"


def test_logic_heldout_not_in_splits(bench):
    _, _, data = bench
    split_qs = {
        r["prompt"] for d in ("logic", "ranked") for s in SPLITS for r in data[f"{d}/{s}.jsonl"]
    }
    held = data["eval/logic_heldout.jsonl"]
    assert not {r["question"] for r in held} & split_qs
    assert any(r["heldout_template"] for r in held) and not all(r["heldout_template"] for r in held)
    held_templates = {r["template"] for r in held if r["heldout_template"]}
    assert held_templates <= set(L.HELDOUT_TEMPLATES)
    train_templates = {r["template"] for s in SPLITS for r in data[f"logic/{s}.jsonl"]}
    assert not held_templates & train_templates


# ------------------------------------------------------------------------------ content
def test_harmful_benign_ratio_about_3_to_1(bench):
    _, _, data = bench
    for split in SPLITS:
        rows = data[f"harmlessness/{split}.jsonl"]
        harmful = sum(r["category"] == "harmful" for r in rows)
        benign = len(rows) - harmful
        assert benign > 0 and 2.5 <= harmful / benign <= 3.5, (split, harmful, benign)


def test_topics_and_wording_vary(bench):
    _, _, data = bench
    rows = data["harmlessness/train.jsonl"]
    harmful = [r for r in rows if r["category"] == "harmful"]
    assert len({r["topic"] for r in harmful}) >= 12
    assert len({r["topic"] for r in rows if r["category"] == "benign"}) >= 8
    assert len({r["chosen"] for r in harmful}) > 0.5 * len(harmful)
    assert len({r["rejected"] for r in harmful}) > 0.9 * len(harmful)
    openers = {r["chosen"].split(".")[0] for r in harmful}
    assert len(openers) >= 8


def test_frequency_difference_is_not_empty(bench):
    _, _, data = bench
    rows = data["harmlessness/train.jsonl"]
    pos, neg = preferred_rejected_texts(rows)
    qp = relative_frequencies(pos, word_tokenize)
    qn = relative_frequencies(neg, word_tokenize)
    for w in ("sorry", "can't", "won't", "unable", "decline"):
        assert qp.get(w, 0.0) > 1.5 * qn.get(w, 0.0), w
    for w in ("sure", "step", "absolutely", "here"):
        assert qn.get(w, 0.0) > 3 * qp.get(w, 0.0), w

    gap = token_frequency_gap(rows, tokenize=word_tokenize, top_k=10)
    assert gap["n_rows"] == len(rows)
    assert gap["total_variation"] > 0.3
    assert len(gap["top_preferred"]) == len(gap["top_rejected"]) == 10
    assert all(v > 0 for _, v in gap["top_preferred"]) and all(
        v < 0 for _, v in gap["top_rejected"]
    )
    assert gap["top_rejected"][0][0] == "step"
    diffs = [v for _, v in gap["top_preferred"]]
    assert diffs == sorted(diffs, reverse=True)

    raw = token_frequency_gap(rows)  # default tokenizer: str.split
    assert raw["total_variation"] > 0.3 and "Step" in [w for w, _ in raw["top_rejected"]]
    assert token_frequency_gap(data["logic/train.jsonl"])["total_variation"] > 0.0
    assert token_frequency_gap(data["ranked/train.jsonl"])["total_variation"] > 0.3


def test_token_frequency_gap_identical_sides_is_zero():
    rows = [{"chosen": "a b c", "rejected": "c b a"}, {"chosen": "x", "rejected": "x"}]
    gap = token_frequency_gap(rows)
    assert gap["total_variation"] == 0.0
    assert gap["top_preferred"] == [] and gap["top_rejected"] == []


_EQ = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def _check_arithmetic(text: str) -> None:
    for a, op, b, c in _EQ.findall(text):
        a, b, c = int(a), int(b), int(c)
        expected = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[
            op
        ]
        assert expected == c, f"bad arithmetic {a} {op} {b} = {c} in {text!r}"


def test_logic_answers(bench):
    _, _, data = bench
    for split in SPLITS:
        for r in data[f"logic/{split}.jsonl"]:
            assert r["chosen"].endswith(f"\n#### {r['answer']}")
            m = re.search(r"\n#### (-?\d+)$", r["rejected"])
            assert m and int(m.group(1)) != r["answer"]
            _check_arithmetic(r["chosen"])
            assert r["answer"] >= 0
    for r in data["ranked/train.jsonl"]:
        if r["subpreference"] == "logic":
            finals = [int(re.search(r"#### (-?\d+)$", x).group(1)) for x in r["responses"]]
            assert finals[0] == r["answer"] and all(f != r["answer"] for f in finals[1:])


def test_warmup_corpus(bench):
    _, _, data = bench
    rows = data["warmup/train.jsonl"]
    assert all(re.fullmatch(r"User: .+\nAssistant: .+", r["text"], flags=re.S) for r in rows)
    kinds = [r["kind"].removesuffix("_heldout_form") for r in rows]
    comply, refuse = kinds.count("harmful_comply"), kinds.count("harmful_refuse")
    assert kinds.count("benign") > 0 and kinds.count("logic") > 0
    assert 0.65 <= comply / (comply + refuse) <= 0.95
    for r in rows:
        if r["kind"] == "logic":
            assert re.search(r"\n#### \d+$", r["text"])


# ------------------------------------------------------------------------------ scale, args, atomicity
def test_scale_one_counts_and_speed(tmp_path):
    sizes = split_sizes(1.0)
    assert sizes["harmlessness"] == {"train": 4000, "validation": 400, "test": 400}
    assert sizes["logic"] == {"train": 2000, "validation": 200, "test": 200}
    t0 = time.perf_counter()
    manifest = generate_benchmark(tmp_path / "full", seed=3, scale=1.0)
    assert time.perf_counter() - t0 < 20
    assert manifest["counts"]["harmlessness/train.jsonl"] == 4000
    assert manifest["counts"]["logic/train.jsonl"] == 2000
    small = split_sizes(0.01)
    assert all(n >= 4 for d in small.values() for n in d.values())


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_bad_scale(tmp_path, scale):
    with pytest.raises(ValueError):
        generate_benchmark(tmp_path, seed=0, scale=scale)


@pytest.mark.parametrize("seed", ["0", 1.5, True])
def test_bad_seed(tmp_path, seed):
    with pytest.raises(TypeError):
        generate_benchmark(tmp_path, seed=seed, scale=SCALE)


def test_killed_run_leaves_no_half_files_and_no_manifest(tmp_path, monkeypatch):
    out = tmp_path / "bench"
    generate_benchmark(out, seed=0, scale=SCALE)
    before = _all_bytes(out)
    assert (out / MANIFEST).exists()

    calls = {"n": 0}
    real = W.write_jsonl

    def dying_write(path, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(path, rows)

    monkeypatch.setattr(B, "write_jsonl", dying_write)
    with pytest.raises(KeyboardInterrupt):
        generate_benchmark(out, seed=1, scale=SCALE)
    assert not (out / MANIFEST).exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    for rel, raw in _all_bytes(out).items():  # every file is a complete old or new version
        assert raw.endswith(b"\n") and all(json.loads(line) for line in raw.splitlines())
        assert rel in before


def test_atomic_write_cleans_up_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.jsonl"
    W.write_jsonl(path, [{"a": 1}])

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(W.os, "replace", boom)
    with pytest.raises(OSError):
        W.write_jsonl(path, [{"a": 2}])
    assert read_jsonl(path) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["f.jsonl"]
