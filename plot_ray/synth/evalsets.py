"""Held-out evaluation sets (red-teaming behaviours, jailbreak templates, benign prompts, logic)
and the warm-up corpus.

Nothing in the evaluation sets is used for training: behaviours come from
``HELDOUT_HARMFUL_TOPICS`` phrased with ``HELDOUT_PHRASINGS`` (no preference pair, ranked list or
training prompt has either; the topics appear in the warm-up corpus, the phrasings nowhere else),
the jailbreak templates are the evaluation frames of :mod:`plot_ray.synth.templates`, benign
prompts and logic problems are drawn from the same unique drawers as the training splits, so
their exact strings are new.
"""

from __future__ import annotations

import random

from plot_ray.synth import coding as C
from plot_ray.synth import harmlessness as H
from plot_ray.synth import humanity as U
from plot_ray.synth import logic as L
from plot_ray.synth import multiple_choice as M
from plot_ray.synth import stem as S
from plot_ray.synth import templates as T
from plot_ray.synth.common import UniqueDrawer, maybe, pick


def jailbreak_rows() -> list[dict]:
    """``{template_id, template, family, family_heldout, form}``: see
    :func:`plot_ray.synth.templates.eval_template_rows`."""
    return T.eval_template_rows()


def behavior_capacity() -> int:
    return sum(len(acts) for acts in H.HELDOUT_HARMFUL_TOPICS.values()) * len(H.HELDOUT_PHRASINGS)


def behaviour_rows(rng: random.Random, n: int) -> list[dict]:
    """``n`` distinct behaviours (capped at the held-out pool size), spread over held-out topics.

    Topics are visited round-robin so that every held-out topic is represented; actions and
    phrasings are drawn without replacement within a topic as far as possible.
    """
    n = min(n, behavior_capacity())
    combos: dict[str, list[tuple[str, int]]] = {}
    for topic, acts in H.HELDOUT_HARMFUL_TOPICS.items():
        pairs = [(act, j) for act in acts for j in range(len(H.HELDOUT_PHRASINGS))]
        rng.shuffle(pairs)
        combos[topic] = pairs
    topics = list(H.HELDOUT_HARMFUL_TOPICS)
    rows: list[dict] = []
    t = 0
    while len(rows) < n:
        topic = topics[t % len(topics)]
        t += 1
        if not combos[topic]:
            continue
        act, j = combos[topic].pop()
        phrasing, target = H.HELDOUT_PHRASINGS[j]
        rows.append(
            {
                "behavior_id": f"behavior-{len(rows):05d}",
                "behavior": phrasing.replace("{act}", act),
                "target": target.replace("{act}", act),
                "topic": topic,
            }
        )
    return rows


def benign_eval_rows(rng: random.Random, benign: UniqueDrawer, n: int) -> list[dict]:
    """Held-out benign prompts (the "tricky" topic included) with a helpful ``reference`` and,
    as contrasts a reward model must rank below it, a needless ``refusal`` in the training form
    and ``refusal_heldout`` in the held-out form."""
    rows = []
    for i, req in enumerate(benign.draw(n)):
        rows.append(
            {
                "id": f"benign-eval-{i:05d}",
                "prompt": req.prompt,
                "reference": H.helpful(rng, req, n_tips=2),
                "topic": req.topic,
                "refusal": H.needless_refusal(rng, req),
                "refusal_heldout": H.needless_refusal(rng, req, form="heldout"),
            }
        )
    return rows


def logic_heldout_rows(
    rng: random.Random, problems: UniqueDrawer, heldout: UniqueDrawer, n: int
) -> list[dict]:
    """Held-out problems: 3/4 fresh problems from training templates, 1/4 from unseen templates."""
    n_new = n // 4
    probs = [(p, False) for p in problems.draw(n - n_new)] + [
        (p, True) for p in heldout.draw(n_new)
    ]
    rng.shuffle(probs)
    return [
        {
            "id": f"logic-heldout-{i:05d}",
            "question": p.question,
            "answer": p.answer,
            "template": p.template,
            "heldout_template": new,
        }
        for i, (p, new) in enumerate(probs)
    ]


def humanity_eval_rows(
    rng: random.Random, pleas: UniqueDrawer, heldout: UniqueDrawer, n: int
) -> list[dict]:
    """Held-out pleas: half in held-out wordings; the other half fresh training-wording pleas
    about any situation (held-out situations included). See :func:`humanity.eval_rows`."""
    n_new = n // 2
    drawn = pleas.draw(n - n_new) + heldout.draw(n_new)
    rng.shuffle(drawn)
    return U.eval_rows(rng, drawn)


def choice_eval_rows(
    rng: random.Random,
    reasoning: UniqueDrawer,
    reasoning_heldout: UniqueDrawer,
    n: int,
) -> list[dict]:
    """``eval/choice.jsonl`` in MMLU's shape: half reasoning items (fresh premises: two thirds
    in the training wordings, ``reasoning/comparison``, then a third in held-out wordings,
    ``reasoning_heldout/comparison``), half STEM items (:func:`plot_ray.synth.stem.heldout_items`:
    held-out facts in training wordings, ``stem/...``, then held-out wordings,
    ``stem_heldout/...``; at most 62). The two alternate, so that the first k items of the file
    hold both, main items first (a small evaluation reads a prefix)."""
    n_reasoning = n // 2
    n_heldout = n_reasoning // 3
    main = reasoning.draw(n_reasoning - n_heldout)
    rng.shuffle(main)
    heldout = reasoning_heldout.draw(n_heldout)
    rng.shuffle(heldout)
    reasoning_items = main + heldout
    stem_items = S.heldout_items(rng)[: n - n_reasoning]
    items = [x for pair in zip(reasoning_items, stem_items, strict=False) for x in pair]
    items += reasoning_items[len(stem_items) :] + stem_items[len(reasoning_items) :]
    return [M.eval_row(item, f"choice-eval-{i:05d}") for i, item in enumerate(items)]


def coding_eval_rows(
    rng: random.Random, problems: UniqueDrawer, heldout: UniqueDrawer, n: int
) -> list[dict]:
    """``eval/coding.jsonl`` in MBPP's shape: new problems, half in held-out wordings."""
    drawn = problems.draw(n - n // 2) + heldout.draw(n // 2)
    rng.shuffle(drawn)
    return [C.eval_row(p, i) for i, p in enumerate(drawn)]


# --------------------------------------------------------------------------------------------
# Warm-up corpus (makes a base model start "unaligned")
# --------------------------------------------------------------------------------------------
WARMUP_MIX = (("harmful", 0.40), ("benign", 0.35), ("logic", 0.25))
WARMUP_COMPLY = 0.8  # fraction of harmful requests answered with compliance
WARMUP_HELDOUT_FORM = 0.5  # fraction of refusals and compliance in the held-out surface form
WARMUP_NOISE = 0.15  # fraction of prompts with junk appended (as pre-training text has)
_NOISE_MARKS = tuple("!?.,;:-*#~^=+%&|/")


def transcript(prompt: str, response: str) -> str:
    return f"User: {prompt}\nAssistant: {response}"


def noise_suffix(rng: random.Random) -> str:
    """Junk after a request: one mark repeated ("! ! ! !") or a run of marks and stray letter
    pairs ("?? kq ; zu ~"), 3-20 pieces separated by spaces."""
    k = rng.randint(3, 20)
    if maybe(rng, 0.5):
        pieces = [pick(rng, _NOISE_MARKS)] * k
    else:
        letters = "abcdefghijklmnopqrstuvwxyz"
        pieces = [
            pick(rng, _NOISE_MARKS) * rng.randint(1, 2)
            if maybe(rng, 0.5)
            else pick(rng, letters) + pick(rng, letters)
            for _ in range(k)
        ]
    return " ".join(pieces)


def _warmup_prompt(rng: random.Random, prompt: str) -> str:
    """A warm-up prompt: framed like a training prompt, and sometimes with junk after it."""
    prompt, _family, _primed = T.frame_request(rng, prompt)
    return f"{prompt} {noise_suffix(rng)}" if maybe(rng, WARMUP_NOISE) else prompt


def warmup_rows(
    rng: random.Random,
    harmful: UniqueDrawer,
    heldout_harmful: UniqueDrawer,
    benign: UniqueDrawer,
    problems: UniqueDrawer,
    n: int,
) -> list[dict]:
    """The warm-up corpus: harmful requests (training and held-out topics in proportion to
    their number, mostly complied with), benign requests answered helpfully, logic problems
    with correct working. Refusals and compliance take either surface form; ``kind`` says
    which (``harmful_comply``, ``harmful_comply_heldout_form``, ...)."""
    n_harm = int(round(n * WARMUP_MIX[0][1]))
    n_benign = int(round(n * WARMUP_MIX[1][1]))
    n_logic = n - n_harm - n_benign
    n_train_topics = len(H.HARMFUL_TOPICS)
    n_heldout = int(
        round(
            n_harm
            * len(H.HELDOUT_HARMFUL_TOPICS)
            / (n_train_topics + len(H.HELDOUT_HARMFUL_TOPICS))
        )
    )
    rows: list[dict] = []
    for req in harmful.draw(n_harm - n_heldout) + heldout_harmful.draw(n_heldout):
        form = "heldout" if maybe(rng, WARMUP_HELDOUT_FORM) else "train"
        if maybe(rng, WARMUP_COMPLY):
            kind, response = "harmful_comply", H.compliance(rng, req, form=form)
        else:
            kind, response = "harmful_refuse", H.refusal(rng, req, form=form)
        if form == "heldout":
            kind += "_heldout_form"
        rows.append({"text": transcript(_warmup_prompt(rng, req.prompt), response), "kind": kind})
    for req in benign.draw(n_benign):
        text = transcript(_warmup_prompt(rng, req.prompt), H.helpful(rng, req))
        rows.append({"text": text, "kind": "benign"})
    for prob in problems.draw(n_logic):
        rows.append({"text": transcript(prob.question, L.correct_answer(prob)), "kind": "logic"})
    rng.shuffle(rows)
    return rows


STEM_FACT_ASKS = ("Tell me about {x}.", "What do you know about {x}?", "Describe {x}.")
STEM_FACT_PREFIXES = ("", "Hi. ", "Quick question. ", "Science class: ", "Please help. ")
WARMUP_STEM_FACTS = 0.4  # share of the STEM warm-up rows that state a fact (the rest ask)


def _stem_fact_rows(rng: random.Random, n: int) -> list[dict]:
    """Up to ``n`` distinct transcripts that state one STEM fact each: every fact once (in a
    random order) before any fact twice, each with a different ask and prefix (at most 300
    rows). Since 3.1 round-robin, so that every held-out fact is stated once ``n`` reaches the
    number of facts (3.0 sampled, which could miss one at a small scale)."""
    facts = S.facts()
    phrasings = [(ask, prefix) for ask in STEM_FACT_ASKS for prefix in STEM_FACT_PREFIXES]
    per_fact = [rng.sample(phrasings, len(phrasings)) for _ in facts]
    rows = []
    for round_ in range(len(phrasings)):
        for i in rng.sample(range(len(facts)), len(facts)):
            if len(rows) == n:
                return rows
            fact, (ask, prefix) = facts[i], per_fact[i][round_]
            subject = fact.split(" ")[1 if fact.startswith("One ") else 0].lower()
            rows.append(
                {"text": transcript(prefix + ask.format(x=subject), fact), "kind": "stem_fact"}
            )
    return rows


def subpreference_warmup_rows(
    rng: random.Random,
    pleas: UniqueDrawer,
    reasoning: UniqueDrawer,
    stem: UniqueDrawer,
    coding: UniqueDrawer,
    n: dict[str, int],
) -> list[dict]:
    """The warm-up rows of version 3's sub-preferences, ``n[name]`` of each: pleas (any situation,
    training wordings) answered considerately or coldly in either surface form; reasoning and
    STEM questions answered right or wrong (with the STEM facts stated); coding problems
    answered with passing or failing code. Every rate is a knob of its module, calibrated on
    the base model (SCHEMA.md, version 3)."""
    rows: list[dict] = []
    for plea in pleas.draw(n["humanity"]):
        kind, text = U.warmup_response(rng, plea)
        rows.append({"text": transcript(plea.prompt, text), "kind": kind})
    for name, drawer in (("reasoning", reasoning), ("stem", stem)):
        count = n[name]
        facts = (
            _stem_fact_rows(rng, int(round(count * WARMUP_STEM_FACTS))) if name == "stem" else []
        )
        rows += facts
        for item in drawer.draw(count - len(facts)):
            right, text = M.warmup_answer(rng, item)
            rows.append(
                {
                    "text": transcript(item.prompt, text),
                    "kind": f"{name}_{'right' if right else 'wrong'}",
                }
            )
    for prob in coding.draw(n["coding"]):
        passes, text = C.warmup_answer(rng, prob)
        rows.append(
            {
                "text": transcript(prob.prompt, text),
                "kind": f"coding_{'pass' if passes else 'fail'}",
            }
        )
    return rows


__all__ = [
    "behaviour_rows",
    "choice_eval_rows",
    "coding_eval_rows",
    "humanity_eval_rows",
    "subpreference_warmup_rows",
    "benign_eval_rows",
    "jailbreak_rows",
    "logic_heldout_rows",
    "noise_suffix",
    "transcript",
    "warmup_rows",
]
