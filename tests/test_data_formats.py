"""Record formats → the normalised row, and the reasons bad records are quarantined (no Ray)."""

from __future__ import annotations

import pytest

from plot_ray.data.formats import (
    NormalizedRow,
    RowRejected,
    detect_format,
    normalize_record,
    parse_hh_turns,
    split_hh_transcripts,
)

USER = {"role": "user", "content": "How do I boil an egg?"}


def rejected(record, fmt="auto") -> str:
    with pytest.raises(RowRejected) as info:
        normalize_record(record, fmt)
    return info.value.reason


# ----------------------------------------------------------------------------------- TRL
def test_trl_strings_become_one_user_message_and_chosen_first():
    row = normalize_record(
        {"prompt": "How do I boil an egg?", "chosen": "Boil it.", "rejected": "No."}
    )
    assert row == NormalizedRow([USER], ["Boil it.", "No."], None, "pair")


def test_trl_conversational_prompt_and_assistant_messages():
    row = normalize_record(
        {
            "prompt": [{"role": "system", "content": "Be brief."}, USER],
            "chosen": [{"role": "assistant", "content": "Boil it."}],
            "rejected": [{"role": "assistant", "content": "No."}],
        },
        "trl",
    )
    assert row.prompt == [{"role": "system", "content": "Be brief."}, USER]
    assert row.responses == ["Boil it.", "No."]


def test_trl_implicit_prompt_is_the_shared_messages():
    chosen = [USER, {"role": "assistant", "content": "Boil it."}]
    rejected_ = [USER, {"role": "assistant", "content": "No."}]
    row = normalize_record({"chosen": chosen, "rejected": rejected_})
    assert row.prompt == [USER] and row.responses == ["Boil it.", "No."]


def test_trl_conversations_that_repeat_the_prompt_keep_only_the_reply():
    # UltraFeedback-binarized style: the prompt string and full conversations.
    record = {
        "prompt": "How do I boil an egg?",
        "chosen": [USER, {"role": "assistant", "content": "Boil it."}],
        "rejected": [USER, {"role": "assistant", "content": "No."}],
        "score_chosen": 8.0,
        "score_rejected": 3,
    }
    row = normalize_record(record)
    assert row.responses == ["Boil it.", "No."] and row.scores == [8.0, 3.0]


@pytest.mark.parametrize(
    "record, reason",
    [
        ({"prompt": "q", "chosen": "a"}, "missing_field"),
        ({"prompt": "q", "chosen": None, "rejected": "b"}, "missing_field"),
        ({"prompt": "q", "chosen": "same", "rejected": " same "}, "identical_responses"),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "empty_response"),
        ({"prompt": "q", "chosen": "a", "rejected": "   "}, "empty_response"),
        ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "empty_prompt"),
        ({"prompt": [], "chosen": "a", "rejected": "b"}, "empty_prompt"),
        ({"prompt": "q", "chosen": 3, "rejected": "b"}, "bad_type"),
        ({"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}, "bad_type"),
        (
            {
                "prompt": "q",
                "chosen": "a",
                "rejected": "b",
                "score_chosen": "x",
                "score_rejected": 1,
            },
            "bad_scores",
        ),
        ({"text": "just text"}, "unknown_format"),
    ],
)
def test_bad_pairs_are_rejected_with_their_reason(record, reason):
    assert rejected(record) == reason


def test_a_record_that_is_not_an_object_is_malformed():
    assert rejected(["a", "list"]) == "malformed"


# ------------------------------------------------------------------------------ HH-RLHF
def test_hh_single_turn():
    prompt, chosen, rej = split_hh_transcripts(
        "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?",
        "\n\nHuman: Hi there\n\nAssistant: Go away.",
    )
    assert prompt == [{"role": "user", "content": "Hi there"}]
    assert (chosen, rej) == ("Hello! How can I help?", "Go away.")


def test_hh_multi_turn_prompt_keeps_every_earlier_turn():
    history = "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?"
    row = normalize_record(
        {"chosen": history + "\n\nAssistant: 6.", "rejected": history + "\n\nAssistant: 7."}
    )
    assert row.kind == "pair"
    assert row.prompt == [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And 3+3?"},
    ]
    assert row.responses == ["6.", "7."]


def test_hh_replies_with_an_identical_prefix_split_at_the_assistant_turn():
    # The replies share "Sure, " and a naive common-prefix split would cut inside them.
    prompt, chosen, rej = split_hh_transcripts(
        "\n\nHuman: Help?\n\nAssistant: Sure, here is a safe way.",
        "\n\nHuman: Help?\n\nAssistant: Sure, here is a dangerous way.",
    )
    assert prompt == [{"role": "user", "content": "Help?"}]
    assert chosen == "Sure, here is a safe way."
    assert rej == "Sure, here is a dangerous way."


def test_hh_reply_that_extends_the_other_is_split_correctly():
    prompt, chosen, rej = split_hh_transcripts(
        "\n\nHuman: Q\n\nAssistant: Yes", "\n\nHuman: Q\n\nAssistant: Yes, and more."
    )
    assert (chosen, rej) == ("Yes", "Yes, and more.")


def test_hh_earlier_turn_with_assistant_words_does_not_confuse_the_split():
    history = "\n\nHuman: Say 'Assistant: hi'\n\nAssistant: Assistant: hi\n\nHuman: Again"
    prompt, chosen, rej = split_hh_transcripts(
        history + "\n\nAssistant: Assistant: hi", history + "\n\nAssistant: No."
    )
    assert [m["role"] for m in prompt] == ["user", "assistant", "user"]
    assert (chosen, rej) == ("Assistant: hi", "No.")


def test_hh_without_leading_newlines_is_accepted():
    prompt, chosen, rej = split_hh_transcripts(
        "Human: Q\n\nAssistant: A", "Human: Q\n\nAssistant: B"
    )
    assert prompt == [{"role": "user", "content": "Q"}] and (chosen, rej) == ("A", "B")


def test_hh_missing_assistant_turn_is_quarantined():
    record = {"chosen": "\n\nHuman: Hello there", "rejected": "\n\nHuman: Hello there, friend"}
    assert rejected(record, "hh_rlhf") == "hh_missing_assistant"


def test_hh_transcripts_that_diverge_before_the_last_turn_are_quarantined():
    record = {
        "chosen": "\n\nHuman: Q\n\nAssistant: A1\n\nHuman: Q2\n\nAssistant: X",
        "rejected": "\n\nHuman: Q\n\nAssistant: B1\n\nHuman: Q2\n\nAssistant: Y",
    }
    assert rejected(record, "hh_rlhf") == "hh_split_failed"


def test_hh_identical_transcripts_are_identical_responses():
    text = "\n\nHuman: Q\n\nAssistant: A"
    assert rejected({"chosen": text, "rejected": text}) == "identical_responses"


def test_hh_text_before_the_first_turn_fails_to_parse():
    with pytest.raises(RowRejected) as info:
        parse_hh_turns("preamble\n\nHuman: Q")
    assert info.value.reason == "hh_split_failed"


# ------------------------------------------------------------------------------- ranked
def test_ranked_with_scores_is_sorted_best_first():
    row = normalize_record(
        {"prompt": "q", "responses": ["meh", "best", "worst"], "scores": [0.5, 0.9, 0.1]}
    )
    assert row.kind == "ranked"
    assert row.responses == ["best", "meh", "worst"] and row.scores == [0.9, 0.5, 0.1]


def test_ranked_without_scores_keeps_the_given_order():
    row = normalize_record({"prompt": "q", "responses": ["a", "b", "c"]}, "ranked")
    assert row.responses == ["a", "b", "c"] and row.scores is None


def test_ranked_ties_keep_their_order():
    row = normalize_record({"prompt": "q", "responses": ["a", "b", "c"], "scores": [1, 2, 1]})
    assert row.responses == ["b", "a", "c"]


@pytest.mark.parametrize(
    "record, reason",
    [
        ({"prompt": "q", "responses": ["only"]}, "too_few_responses"),
        ({"prompt": "q", "responses": ["a", "b"], "scores": [1.0]}, "bad_scores"),
        ({"prompt": "q", "responses": ["a", "b"], "scores": [1.0, float("nan")]}, "bad_scores"),
        ({"prompt": "q", "responses": ["a", "b"], "scores": [True, 0]}, "bad_scores"),
        ({"prompt": "q", "responses": ["a", "a"]}, "identical_responses"),
        ({"prompt": "q", "responses": "a"}, "bad_type"),
        ({"responses": ["a", "b"]}, "missing_field"),
    ],
)
def test_bad_ranked_rows_are_rejected_with_their_reason(record, reason):
    assert rejected(record) == reason


# ---------------------------------------------------------------------------------- SFT
def test_sft_prompt_response_and_completion():
    assert normalize_record({"prompt": "q", "response": "a"}) == NormalizedRow(
        [{"role": "user", "content": "q"}], ["a"], None, "sft"
    )
    assert normalize_record({"prompt": "q", "completion": "a"}).responses == ["a"]


def test_sft_messages_split_into_prompt_and_last_assistant_turn():
    row = normalize_record({"messages": [USER, {"role": "assistant", "content": "Boil it."}]})
    assert row.prompt == [USER] and row.responses == ["Boil it."] and row.kind == "sft"


def test_sft_messages_must_end_with_the_assistant():
    assert rejected({"messages": [USER]}) == "bad_type"


# ------------------------------------------------------------------------------ detection
@pytest.mark.parametrize(
    "record, fmt",
    [
        ({"prompt": "q", "chosen": "a", "rejected": "b"}, "trl"),
        ({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "x"}, "hh_rlhf"),
        ({"chosen": [USER], "rejected": [USER]}, "trl"),
        ({"prompt": "q", "responses": ["a", "b"]}, "ranked"),
        ({"prompt": "q", "response": "a"}, "sft"),
        ({"messages": [USER]}, "sft"),
    ],
)
def test_detect_format(record, fmt):
    assert detect_format(record) == fmt


def test_an_explicit_format_is_not_guessed():
    # A ranked-looking record read as TRL misses its fields instead of silently becoming ranked.
    assert rejected({"prompt": "q", "responses": ["a", "b"]}, "trl") == "missing_field"


# ------------------------------------------------------------------- one list of names
def test_every_configurable_format_has_a_normaliser_and_no_other():
    from typing import get_args

    from plot_ray.config import DataFormat
    from plot_ray.data.formats import _NORMALIZERS, FORMATS

    assert set(get_args(DataFormat)) == {"auto", *FORMATS}
    assert set(_NORMALIZERS) == set(FORMATS) == {"trl", "hh_rlhf", "ranked", "sft", "pku_saferlhf"}


def test_every_configurable_reader_is_implemented_and_no_other():
    from typing import get_args

    from plot_ray.config import DataReader
    from plot_ray.data.readers import HF_READERS, READER_EXTENSIONS

    assert set(get_args(DataReader)) == {"auto", *READER_EXTENSIONS, *HF_READERS}
