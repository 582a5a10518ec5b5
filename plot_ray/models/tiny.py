"""Tiny real models for laptops and CI: a byte-level BPE tokenizer trained on the synthetic
corpus and a small Llama-style ``LlamaForCausalLM``, saved with ``save_pretrained``
(safetensors) so transformers, DeepSpeed and vLLM all load it like any hub model.

Attention uses head_dim 64, the smallest that vLLM's CPU attention backend accepts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from plot_ray.models.training import TrainSettings, pad_right, train_steps, write_summary

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "TinyModelSpec",
    "build_tiny_model",
    "build_tokenizer",
    "corpus_texts",
    "chat_from_transcript",
    "warm_up",
    "build_from_corpus",
    "save_model",
    "torch_threads",
]

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (BOS, EOS, PAD, *ROLE_TOKENS)

# Each turn is `<|role|>\n{content}<|eos|>`; a response (what training scores) is the
# assistant's content plus its <|eos|>, so models learn to stop.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{% endif %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """Train a byte-level BPE tokenizer on ``texts``; returns a ``PreTrainedTokenizerFast``
    with BOS/EOS/PAD, role tokens and the chat template set."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 bytes + merges), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        model_max_length=1024,
        padding_side="right",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny Llama. The defaults make a ~1.5M-parameter model that trains in
    seconds per hundred steps on one CPU core."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    head_dim: int = 64
    max_position_embeddings: int = 1024
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.head_dim != 64:
            # vLLM's CPU attention rejects small head sizes ("Unsupported CPU attention").
            raise ValueError(f"head_dim must be 64 for vLLM's CPU backend, got {self.head_dim}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")


def build_tiny_model(tokenizer, spec: TinyModelSpec = TinyModelSpec(), seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` sized for ``tokenizer``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
        **asdict(spec),
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=64,
    )
    return model


# --------------------------------------------------------------------------- the corpus
def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def corpus_texts(
    data_dir: str | Path,
    splits: tuple[str, ...] = ("train",),
    exclude: tuple[str, ...] = ("attacker",),
) -> Iterator[str]:
    """Every string in the ``{split}.jsonl`` files below ``data_dir`` (tokenizer training text).

    Only training splits are read, so evaluation text never shapes the model or tokenizer.
    Folders named in ``exclude`` are skipped: the attacker corpus trains the red-teaming
    attacker, not the model under test (and leaving it out keeps the base tokenizer as it was
    before the corpus existed).
    """
    root = Path(data_dir)
    files = sorted(
        p
        for s in splits
        for p in root.glob(f"**/{s}.jsonl")
        if not set(p.relative_to(root).parts[:-1]) & set(exclude)
    )
    if not files:
        raise FileNotFoundError(
            f"no {'/'.join(splits)}.jsonl files under {data_dir}: run `plot-ray synth --out "
            f"{data_dir}` first, or point --data at a corpus folder"
        )
    for path in files:
        with path.open() as fh:
            for line in fh:
                if line.strip():
                    yield from _strings(json.loads(line))


def chat_from_transcript(text: str) -> list[dict[str, str]] | None:
    """``"User: ...\\nAssistant: ..."`` → chat messages, or None if ``text`` is not a transcript."""
    if not text.startswith("User: ") or "\nAssistant: " not in text:
        return None
    user, _, assistant = text[len("User: ") :].partition("\nAssistant: ")
    if not user.strip() or not assistant.strip():
        return None
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _warmup_ids(tokenizer, rows: Iterable[dict], max_length: int) -> list[list[int]]:
    out = []
    for row in rows:
        text = row["text"]
        messages = chat_from_transcript(text)
        if messages is not None:
            ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
        else:
            ids = [tokenizer.bos_token_id, *tokenizer(text)["input_ids"], tokenizer.eos_token_id]
        out.append(list(ids)[:max_length])
    return out


def _causal_lm_loss(model, pad_id: int, batch: list[list[int]]) -> tuple:
    """Mean next-token cross-entropy (nats per predicted token) of ``B`` token-id lists,
    right-padded to ``[B, T]``; padding is neither attended to nor predicted."""
    ids, mask = pad_right(batch, pad_id)
    labels = ids.masked_fill(mask == 0, -100)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss, {}


def warm_up(
    model,
    tokenizer,
    rows: list[dict],
    steps: int = 300,
    batch_size: int = 16,
    lr: float = 3e-3,
    max_length: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Plain causal-LM pre-training on ``rows`` (``{"text": ...}``), single process.

    On the synthetic warm-up corpus harmful requests are mostly answered with compliance, so
    the result is a fluent but "unaligned" base model for preference fine-tuning to fix.
    Transcripts (``User: …\\nAssistant: …``) are rendered with the chat template so the base
    model already speaks the format that fine-tuning and evaluation use. Returns the losses.
    """
    if not rows:
        raise ValueError("warm-up corpus is empty")
    settings = TrainSettings(steps, batch_size, lr, max_length, seed)
    history = train_steps(
        model,
        _warmup_ids(tokenizer, rows, max_length),
        partial(_causal_lm_loss, model, tokenizer.pad_token_id),
        settings,
        weight_decay=0.0,
        desc="warm-up",
        progress=progress,
    )
    return history["loss"]


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``num_threads`` torch intra-op threads (None: as they are) and give
    the caller its own count back: torch's setting is process-wide."""
    import torch

    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def save_model(model, tokenizer, out: str | Path) -> Path:
    """``save_pretrained`` the weights (safetensors) and the tokenizer into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_from_corpus(
    data_dir: str | Path,
    out_dir: str | Path,
    vocab_size: int = 4096,
    spec: TinyModelSpec = TinyModelSpec(),
    warmup_steps: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Tokenizer + tiny model from a synthetic (or any jsonl) corpus, saved to ``out_dir``.

    With ``warmup_steps > 0`` the model is first pre-trained on ``{data_dir}/warmup/train.jsonl``.
    Returns (and writes as ``plot_ray_build.json``) a summary of what was built.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    tokenizer = build_tokenizer(corpus_texts(data_dir), vocab_size=vocab_size)
    model = build_tiny_model(tokenizer, spec, seed=seed)
    losses: list[float] = []
    if warmup_steps > 0:
        warmup_file = Path(data_dir) / "warmup" / "train.jsonl"
        if not warmup_file.is_file():
            raise FileNotFoundError(f"warm-up corpus {warmup_file} not found")
        with warmup_file.open() as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        losses = warm_up(model, tokenizer, rows, steps=warmup_steps, seed=seed, progress=progress)
    save_model(model, tokenizer, out)
    fields = {
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "spec": asdict(spec),
        "seed": seed,
        "warmup_steps": warmup_steps,
    }
    return write_summary(
        out,
        "plot_ray_build.json",
        fields,
        losses=losses,
        loss_prefix="warmup",
        started=started,
        data_dir=data_dir,
    )
