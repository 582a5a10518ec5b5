"""Load tokenizers and causal LMs the Hugging Face way, safely, and fingerprint tokenizers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = [
    "TokenizerMismatchError",
    "check_tokenizer_fingerprint",
    "load_causal_lm",
    "load_reward_model",
    "load_tokenizer",
    "tokenizer_fingerprint",
]

_DTYPES = ("float32", "bfloat16", "float16")


class TokenizerMismatchError(ValueError):
    """An artifact was made with a different tokenizer or vocabulary than the one in use."""


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """A fast tokenizer from a hub name or local folder, with a pad token guaranteed.

    Remote code runs only when the user asks for it (``model.trust_remote_code=true``).
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{name_or_path}: plot-ray needs a fast (Rust) tokenizer")
    if tok.pad_token is None:
        # Padding is always masked out, so any existing special token serves.
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False, **kwargs: Any
):
    """``AutoModelForCausalLM`` from a hub name or local folder; safetensors weights only."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    return AutoModelForCausalLM.from_pretrained(
        name_or_path,
        dtype=getattr(torch, dtype),
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        **kwargs,
    )


def load_reward_model(
    name_or_path: str,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    pad_token_id: int | None = None,
    **kwargs: Any,
):
    """A reward model: ``AutoModelForSequenceClassification`` with one output (the reward, read at
    the last non-pad token), from a hub name or local folder; safetensors weights only.

    ``pad_token_id`` (the tokenizer's) fills in ``config.pad_token_id`` when the checkpoint has
    none, as many hub reward models do: without it the model cannot find the last token of a
    padded text and refuses batches of more than one.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    model = AutoModelForSequenceClassification.from_pretrained(
        name_or_path,
        dtype=getattr(torch, dtype),
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        **kwargs,
    )
    if model.config.num_labels != 1:
        raise ValueError(
            f"{name_or_path}: a reward model has one output (num_labels=1), this one has "
            f"{model.config.num_labels}; pass a reward model, not a classifier"
        )
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    model.eval()
    return model


def tokenizer_fingerprint(tokenizer) -> str:
    """A stable hash of the vocabulary (token → id) and the special tokens.

    Two tokenizers with the same fingerprint map every text to the same ids, so token counts
    made with one are valid for the other.
    """
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    special = {
        "map": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "ids": sorted(int(i) for i in tokenizer.all_special_ids),
    }
    payload = json.dumps({"vocab": vocab, "special": special}, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def check_tokenizer_fingerprint(
    expected: str, tokenizer, expected_vocab_size: int | None = None, what: str = "artifact"
) -> None:
    """Raise :class:`TokenizerMismatchError` unless ``tokenizer`` is the one ``what`` was made with."""
    if expected_vocab_size is not None and expected_vocab_size != len(tokenizer):
        raise TokenizerMismatchError(
            f"{what} was made for a vocabulary of {expected_vocab_size} tokens, but the "
            f"tokenizer in use has {len(tokenizer)}: re-run `plot-ray prepare` with this model's "
            "tokenizer"
        )
    actual = tokenizer_fingerprint(tokenizer)
    if actual != expected:
        raise TokenizerMismatchError(
            f"{what} was made with a different tokenizer (fingerprint {expected[:19]}…, this "
            f"tokenizer {actual[:19]}…): re-run `plot-ray prepare` with this model's tokenizer"
        )
