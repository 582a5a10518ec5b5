"""A tiny reward model for the synthetic benchmark, and the scorer evaluation runs.

Evaluation scores completions with any ``AutoModelForSequenceClassification`` that has one
output: its logit at the last non-padding token is the reward. With no hub here,
:func:`build_reward_model` makes one for the synthetic benchmark: a ``LlamaForSequenceClassification``
shaped like :class:`~plot_ray.models.tiny.TinyModelSpec`, trained from scratch with the
Bradley-Terry loss ``-log σ(r(x, y_chosen) − r(x, y_rejected))`` on the harmlessness and logic
pairs and on the best-vs-worst responses of the ranked lists.

Text the reward model reads, for training and scoring alike, is the whole conversation rendered
with the tokenizer's chat template (``<|bos|><|user|>\\n{prompt}<|eos|><|assistant|>\\n{response}<|eos|>``
for the tiny tokenizer), so the last token it pools is the response's end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from plot_ray.models.tiny import TinyModelSpec
from plot_ray.models.training import (
    TrainSettings,
    pad_right,
    run_fields,
    tail_mean,
    train_steps,
    write_summary,
)

__all__ = [
    "REWARD_SUMMARY",
    "PreferencePair",
    "RewardScorer",
    "benign_refusal_pairs",
    "build_reward_model",
    "build_tiny_reward_model",
    "conversation_ids",
    "pair_accuracy",
    "preference_pairs",
    "score_texts",
]

REWARD_SUMMARY = "plot_ray_reward.json"
# The corpora a reward model learns from and is validated on, by folder under the benchmark.
PAIR_CORPORA = ("harmlessness", "logic")
RANKED_CORPUS = "ranked"


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: ``chosen`` is the better response to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str
    corpus: str  # "harmlessness", "logic" or "ranked" (best vs. worst of a ranked list)


def _read_jsonl(path: Path) -> list[dict]:
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def preference_pairs(data_dir: str | Path, split: str) -> dict[str, list[PreferencePair]]:
    """The comparisons of one split of a synthetic benchmark, per corpus.

    Pairwise corpora give ``(chosen, rejected)``; a ranked list gives its best and its worst
    response (``responses`` is ordered best first). A missing corpus file is skipped, but at
    least one must exist.
    """
    data_dir = Path(data_dir)
    out: dict[str, list[PreferencePair]] = {}
    for corpus in PAIR_CORPORA:
        path = data_dir / corpus / f"{split}.jsonl"
        if path.is_file():
            out[corpus] = [
                PreferencePair(r["prompt"], r["chosen"], r["rejected"], corpus)
                for r in _read_jsonl(path)
            ]
    path = data_dir / RANKED_CORPUS / f"{split}.jsonl"
    if path.is_file():
        out[RANKED_CORPUS] = [
            PreferencePair(r["prompt"], r["responses"][0], r["responses"][-1], RANKED_CORPUS)
            for r in _read_jsonl(path)
            if len(r["responses"]) >= 2
        ]
    if not any(out.values()):
        wanted = ", ".join(f"{c}/{split}.jsonl" for c in (*PAIR_CORPORA, RANKED_CORPUS))
        raise FileNotFoundError(
            f"no preference pairs under {data_dir} (looked for {wanted}): run `plot-ray synth "
            f"--out {data_dir}` first, or point --data at a benchmark folder"
        )
    return out


# --------------------------------------------------------------------------- encoding
def conversation_ids(
    tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int = 512
) -> list[list[int]]:
    """Token ids of each prompt + response conversation, at most ``max_length`` each.

    With a chat template the conversation is ``[user: prompt, assistant: response]`` rendered
    by it; a tokenizer without one reads ``"User: …\\nAssistant: …"`` plus its own special
    tokens. A longer conversation keeps its *last* ``max_length`` tokens: the reward is read
    at the end of the response, so the end must survive truncation.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                tokenize=False,
            )
            for p, r in zip(prompts, responses, strict=True)
        ]
        # The template already wrote every special token.
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    else:
        texts = [f"User: {p}\nAssistant: {r}" for p, r in zip(prompts, responses, strict=True)]
        encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    return [list(ids[-max_length:]) for ids in encoded]


def _rewards(model, sequences: Sequence[Sequence[int]]):
    """``[B]`` float32 rewards of already-encoded sequences, one forward, gradients as enabled."""
    pad_id = model.config.get_text_config().pad_token_id
    ids, mask = pad_right(sequences, pad_id)
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return logits[:, 0].float()


def score_texts(
    model,
    tokenizer,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 32,
    max_length: int = 512,
) -> list[float]:
    """Rewards (the scalar logit, in the model's units) of each ``(prompt, response)``, in order.

    In-process, no Ray (Ray Data actors call it through :class:`RewardScorer`); batches of
    ``batch_size`` texts, right-padded. ``model`` must have one label and ``config.pad_token_id`` set (the
    id of ``tokenizer``'s pad token), as :func:`~plot_ray.models.loading.load_reward_model`
    and :class:`RewardScorer` arrange.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if model.config.get_text_config().pad_token_id is None:
        raise ValueError(
            "the reward model's config.pad_token_id is not set, so it cannot find the last "
            "token of a padded text: set it to the tokenizer's pad_token_id (RewardScorer does)"
        )
    if len(prompts) == 0 and len(responses) == 0:
        return []
    sequences = conversation_ids(tokenizer, prompts, responses, max_length)
    if any(not seq for seq in sequences):
        raise ValueError("a prompt + response encoded to no tokens; cannot score it")
    was_training = model.training
    model.eval()
    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            out.extend(_rewards(model, sequences[start : start + batch_size]).tolist())
    model.train(was_training)
    return out


def benign_refusal_pairs(data_dir: str | Path) -> dict[str, list[PreferencePair]]:
    """Helpfulness that sees refusals: on the held-out benign prompts
    (``eval/benign.jsonl``), the helpful reference against a needless refusal of the same
    prompt, in the training form (``refusal``) and the held-out form (``refusal_heldout``).
    Empty for a benchmark without those contrasts (version 1)."""
    path = Path(data_dir) / "eval" / "benign.jsonl"
    if not path.is_file():
        return {}
    rows = list(_read_jsonl(path))
    return {
        kind: [PreferencePair(r["prompt"], r["reference"], r[kind], "benign") for r in rows]
        for kind in ("refusal", "refusal_heldout")
        if rows and all(r.get(kind) for r in rows)
    }


def pair_accuracy(
    model, tokenizer, pairs: Sequence[PreferencePair], batch_size: int = 32, max_length: int = 512
) -> float:
    """Fraction of ``pairs`` whose chosen response gets a strictly higher reward."""
    if not pairs:
        raise ValueError("no pairs to score")
    prompts = [p.prompt for p in pairs]
    chosen = score_texts(
        model, tokenizer, prompts, [p.chosen for p in pairs], batch_size, max_length
    )
    rejected = score_texts(
        model, tokenizer, prompts, [p.rejected for p in pairs], batch_size, max_length
    )
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


# --------------------------------------------------------------------------- building
def build_tiny_reward_model(tokenizer, spec: TinyModelSpec | None = None, seed: int = 0):
    """A randomly initialised one-label ``LlamaForSequenceClassification`` sized for ``tokenizer``
    (shape from :class:`~plot_ray.models.tiny.TinyModelSpec`, head_dim 64)."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    spec = spec or TinyModelSpec()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
        rms_norm_eps=1e-5,
        **asdict(spec),
    )
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(config)


def _bradley_terry_loss(model, batch: list[tuple[list[int], list[int]]]) -> tuple:
    """``-log σ(r_chosen − r_rejected)`` averaged over ``B`` encoded ``(chosen, rejected)``
    pairs, and the fraction of them the model already orders right (``accuracy``)."""
    import torch

    # Chosen and rejected in one forward: rows [0, B) chosen, [B, 2B) rejected.
    rewards = _rewards(model, [chosen for chosen, _ in batch] + [rej for _, rej in batch])
    margin = rewards[: len(batch)] - rewards[len(batch) :]
    loss = -torch.nn.functional.logsigmoid(margin).mean()
    return loss, {"accuracy": float((margin.detach() > 0).float().mean())}


def _train_bradley_terry(
    model,
    tokenizer,
    pairs: Sequence[PreferencePair],
    settings: TrainSettings,
    progress: bool,
) -> tuple[list[float], list[float]]:
    """:func:`~plot_ray.models.training.train_steps` on the Bradley-Terry loss over ``pairs``.
    Returns the per-step losses and training-batch accuracies."""
    prompts = [p.prompt for p in pairs]
    max_length = settings.max_length
    chosen = conversation_ids(tokenizer, prompts, [p.chosen for p in pairs], max_length)
    rejected = conversation_ids(tokenizer, prompts, [p.rejected for p in pairs], max_length)
    history = train_steps(
        model,
        list(zip(chosen, rejected, strict=True)),
        partial(_bradley_terry_loss, model),
        settings,
        weight_decay=0.01,
        desc="reward model",
        progress=progress,
    )
    return history["loss"], history["accuracy"]


def build_reward_model(
    data_dir: str | Path,
    out: str | Path,
    *,
    tokenizer_from: str | Path | None = None,
    vocab_size: int = 4096,
    spec: TinyModelSpec | None = None,
    steps: int = 300,
    batch_size: int = 16,
    lr: float = 1e-3,
    max_length: int = 256,
    seed: int = 0,
    num_threads: int | None = None,
    progress: bool = True,
) -> dict:
    """Train a tiny Bradley-Terry reward model on a synthetic benchmark and save it to ``out``.

    ``tokenizer_from``: a model folder (or hub name) whose tokenizer to reuse, so the reward
    model and the policy tokenize alike; without it a byte-level BPE tokenizer of
    ``vocab_size`` is trained on the benchmark's training text, as ``plot-ray build-model``
    does. Trains on ``{harmlessness,logic,ranked}/train.jsonl`` (ranked: best vs. worst),
    ``steps`` × ``batch_size`` pairs, and reports held-out pair accuracy per corpus on the
    ``validation`` splits, and (``benign_refusal``) how often it ranks a held-out benign
    prompt's helpful answer above a needless refusal of it (:func:`benign_refusal_pairs`).
    ``num_threads`` sets torch's intra-op threads for the build
    (default: torch's own) and restores the previous count afterwards.

    ``out`` receives ``model.safetensors`` + ``config.json``, the tokenizer files and
    :data:`REWARD_SUMMARY`; the returned dict is that summary.
    """
    from plot_ray.models.loading import load_tokenizer
    from plot_ray.models.tiny import build_tokenizer, corpus_texts, save_model, torch_threads

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    spec = spec or TinyModelSpec()
    train = preference_pairs(data_dir, "train")
    train_pairs = [pair for corpus in sorted(train) for pair in train[corpus]]
    if tokenizer_from is not None:
        tokenizer = load_tokenizer(str(tokenizer_from))
    else:
        tokenizer = build_tokenizer(corpus_texts(data_dir), vocab_size=vocab_size)
    model = build_tiny_reward_model(tokenizer, spec, seed=seed)
    validation = preference_pairs(data_dir, "validation")
    settings = TrainSettings(steps, batch_size, lr, max_length, seed)
    with torch_threads(num_threads):
        losses, accuracies = _train_bradley_terry(model, tokenizer, train_pairs, settings, progress)
        held_out = {
            corpus: {
                "accuracy": pair_accuracy(model, tokenizer, pairs, max_length=max_length),
                "pairs": len(pairs),
            }
            for corpus, pairs in sorted(validation.items())
            if pairs
        }
        refusals = {
            kind: {
                "accuracy": pair_accuracy(model, tokenizer, pairs, max_length=max_length),
                "pairs": len(pairs),
            }
            for kind, pairs in benign_refusal_pairs(data_dir).items()
        }
    out = save_model(model, tokenizer, out)
    fields = {
        "architecture": type(model).__name__,
        **run_fields(model, tokenizer, spec, tokenizer_from, settings),
        "train_pairs": {corpus: len(pairs) for corpus, pairs in sorted(train.items())},
    }
    return write_summary(
        out,
        REWARD_SUMMARY,
        fields,
        losses=losses,
        results={
            "train_last_accuracy": tail_mean(accuracies),
            "validation": held_out,
            "benign_refusal": refusals,
        },
        started=started,
        data_dir=data_dir,
    )


# --------------------------------------------------------------------------- scoring actor
class RewardScorer:
    """Scores ``prompt`` / ``completion`` columns with a saved reward model: the callable class
    that Ray Data's ``map_batches`` runs on an actor pool (one model per actor).

    ``__call__`` takes a numpy batch (``dict[str, np.ndarray]``) and returns it with a float32
    ``reward`` column added. Column names are arguments for corpora that name them otherwise.
    The model sits on ``device`` (``"cuda"`` in an actor that Ray gave a GPU) in ``dtype``.
    """

    def __init__(
        self,
        path: str,
        device: str = "cpu",
        batch_size: int = 32,
        max_length: int = 512,
        dtype: str = "float32",
        num_threads: int | None = None,
        prompt_column: str = "prompt",
        response_column: str = "completion",
        trust_remote_code: bool = False,
    ):
        import os

        import torch

        from plot_ray.models.devices import checked_device
        from plot_ray.models.loading import load_reward_model, load_tokenizer

        device = checked_device(device)  # a GPU actor never scores on the CPU
        # Several actors share the machine's cores; the Rust tokenizer's own pool would add more.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        self.model = load_reward_model(
            path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            pad_token_id=self.tokenizer.pad_token_id,
            device_map=device,  # the weights load straight onto the device, in ``dtype``
        )
        self.batch_size = batch_size
        self.max_length = max_length
        self.prompt_column = prompt_column
        self.response_column = response_column

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        missing = [c for c in (self.prompt_column, self.response_column) if c not in batch]
        if missing:
            raise KeyError(
                f"RewardScorer needs columns {self.prompt_column!r} and {self.response_column!r}; "
                f"missing {missing}, batch has {sorted(batch)}"
            )
        rewards = score_texts(
            self.model,
            self.tokenizer,
            [str(p) for p in batch[self.prompt_column]],
            [str(r) for r in batch[self.response_column]],
            batch_size=self.batch_size,
            max_length=self.max_length,
        )
        return {**batch, "reward": np.asarray(rewards, dtype=np.float32)}
