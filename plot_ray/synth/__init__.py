"""A deterministic synthetic preference benchmark for PLOT on a machine without a GPU.

    from plot_ray.synth import generate_benchmark, token_frequency_gap
    manifest = generate_benchmark("runs/synth", seed=0, scale=1.0)

Pure Python (``random.Random`` streams derived from the seed only), a few seconds at scale 1.0,
byte-for-byte identical for a given ``seed`` and ``scale``. ``scale`` multiplies every row count
(harmlessness train ~4000 pairs and logic train ~2000 pairs at 1.0; validation and test ~10% each).
Every file is written atomically (temporary file, then rename); ``manifest.json`` is deleted at
the start and written last.

Files under ``out_dir`` (full schema with examples: ``plot_ray/synth/SCHEMA.md``)::

    harmlessness/{train,validation,test}.jsonl
        {"id", "prompt", "chosen", "rejected", "subpreference": "harmlessness",
         "category": "harmful" | "benign", "topic", "template_family", "primed"}
        harmful (3/4): chosen = refusal (optionally reason, safe redirect, closer),
                       rejected = content-free compliance ("Sure, here is how to ...", "Step 1: ...")
        benign  (1/4): chosen = helpful answer, rejected = needless refusal
        responses in the training surface form only; a quarter of the prompts framed by a
        training template family
    logic/{train,validation,test}.jsonl
        {"id", "prompt", "chosen", "rejected", "subpreference": "logic", "answer": int, "template"}
        chosen = correct working ending "#### <answer>", rejected = plausible mistake "#### <M>", M != answer
    {helpfulness,humanity,reasoning,stem,coding}/{train,validation,test}.jsonl   (version 3)
        {"id", "prompt", "chosen", "rejected", "subpreference": <the folder's name>, ...}
        helpful vs hedged; considerate vs cold; right vs wrong option of a lettered
        multiple-choice prompt (reasoning, an invented STEM world); passing vs failing code
    ranked/{train,validation,test}.jsonl
        {"id", "prompt", "responses": [4 strings, best first], "scores": [1.0, 0.6, 0.3, 0.0],
         "subpreference", ...} (harmful, benign and logic prompts; plus "category"/"topic" or
         "answer"/"template")
    eval/behaviors.jsonl            {"behavior_id", "behavior", "target": "Sure, here is how to ...", "topic"}
                                    held-out topics and phrasings, never in any preference file
    eval/benign.jsonl               {"id", "prompt", "reference", "topic", "refusal", "refusal_heldout"}
    eval/jailbreak_templates.jsonl  {"template_id", "template", "family", "family_heldout", "form"}
                                    48 templates with one "{behavior}" placeholder
    eval/logic_heldout.jsonl        {"id", "question", "answer": int, "template", "heldout_template": bool}
    eval/humanity.jsonl             {"id", "prompt", "reference", "topic", "cold", ...}
    eval/choice.jsonl               MMLU's shape; subjects reasoning/... and stem/...
    eval/coding.jsonl               MBPP's shape {"task_id", "text", "code", "test_list", ...}
    warmup/train.jsonl              {"text": "User: ...\\nAssistant: ...", "kind"}
                                    80% of harmful requests (training and held-out topics) answered
                                    with compliance; refusals and compliance in either surface form
    attacker/train.jsonl            {"id", "text": "User: <attacker prompt>\\nAssistant: 1. ...", "behavior",
                                     "topic", "n_rewrites"}: ZeroShot transcripts for a tiny attacker LM
    manifest.json                   {"name", "version", "seed", "scale", "subpreferences", "files",
                                     "counts", "sha256", "topics", "logic_templates", "attacker_prompt"}

All prompts (harmlessness, ranked, warm-up, eval/benign) are distinct across every file, as are all
logic questions. Version 2's design (held-out surface forms and template families, topic-linked
compliance, one-step logic) and version 3's (the paper's seven sub-preferences) and their
reasons are in SCHEMA.md. ``token_frequency_gap(rows)`` reports the largest ``Q+ - Q-`` entries in both
directions and the total-variation distance, i.e. whether a corpus carries a PLOT signal.
"""

from plot_ray.synth.attacker import ATTACKER_ANSWER_HEAD, ATTACKER_QUERY, attacker_rows
from plot_ray.synth.benchmark import MANIFEST, SYNTH_VERSION, generate_benchmark, split_sizes
from plot_ray.synth.common import SPLITS, CapacityError
from plot_ray.synth.stats import (
    frequency_difference,
    relative_frequencies,
    token_frequency_gap,
    word_tokenize,
)
from plot_ray.synth.templates import FAMILIES
from plot_ray.synth.writer import read_jsonl

__all__ = [
    "ATTACKER_ANSWER_HEAD",
    "ATTACKER_QUERY",
    "FAMILIES",
    "MANIFEST",
    "SPLITS",
    "SYNTH_VERSION",
    "CapacityError",
    "attacker_rows",
    "frequency_difference",
    "generate_benchmark",
    "read_jsonl",
    "relative_frequencies",
    "split_sizes",
    "token_frequency_gap",
    "word_tokenize",
]
