"""Models and tokenizers: loading real ones (hub name or local path) and building tiny ones.

Every component (Ray Data tokenization, DeepSpeed training, vLLM evaluation, reward scoring)
loads models through :func:`load_tokenizer` / :func:`load_causal_lm` / :func:`load_reward_model`,
so a tiny local model and a hub model follow the same code path.
"""

from plot_ray.models.loading import (
    TokenizerMismatchError,
    check_tokenizer_fingerprint,
    load_causal_lm,
    load_reward_model,
    load_tokenizer,
    tokenizer_fingerprint,
)
from plot_ray.models.reward import (
    RewardScorer,
    build_reward_model,
    score_texts,
)
from plot_ray.models.tiny import (
    CHAT_TEMPLATE,
    SPECIAL_TOKENS,
    TinyModelSpec,
    build_tiny_model,
    build_tokenizer,
    warm_up,
)

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "RewardScorer",
    "TinyModelSpec",
    "TokenizerMismatchError",
    "build_reward_model",
    "build_tiny_model",
    "build_tokenizer",
    "check_tokenizer_fingerprint",
    "load_causal_lm",
    "load_reward_model",
    "load_tokenizer",
    "score_texts",
    "tokenizer_fingerprint",
    "warm_up",
]
