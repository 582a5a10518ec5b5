"""Token distributions: counting response tokens per sub-preference, and the saved artifact.

For each sub-preference c, ``pos[c, v]`` counts token v over preferred responses and
``neg[c, v]`` over rejected ones; prompt, padding and special tokens (``all_special_ids``, so
eos too) are never counted. Which responses count (``data.ranked_pairing``):

=========  ==========================================================================
pair       chosen → pos, rejected → neg
ranked     best → pos; ``best_worst``: the worst → neg, ``best_rest``: all others → neg
sft        the response → pos (SFT rows have no rejected response)
=========  ==========================================================================

The artifact is ``token_counts.safetensors`` (int64 tensors ``pos`` and ``neg``, shape (C, V),
metadata in the header) plus ``token_counts.json`` (the same metadata, for people): vocabulary
size, tokenizer fingerprint, the sorted sub-preferences, row and token counts per
sub-preference, source fingerprints, the data config and the plot-ray version.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from plot_ray.config import RankedPairing

__all__ = ["TokenCounts", "count_response_tokens", "sparse_to_dense"]

ARTIFACT_STEM = "token_counts"
ARTIFACT_VERSION = 1


def count_response_tokens(
    table: pa.Table,
    num_subpreferences: int,
    vocab_size: int,
    special_ids: list[int] | np.ndarray,
    ranked_pairing: RankedPairing = "best_worst",
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse counts of one tokenized block: ``(keys, counts)`` with
    ``key = (subpreference_id * 2 + polarity) * vocab_size + token_id`` (polarity 0 = pos,
    1 = neg). ``table`` needs ``subpreference_id``, ``kind`` and ``response_ids``; rows with a
    null ``response_ids`` (quarantined) are skipped. Reduce blocks with :func:`sparse_to_dense`.
    """
    table = table.filter(pc.is_valid(table.column("response_ids")))
    if table.num_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    responses = table.column("response_ids").combine_chunks()
    per_row = pc.list_value_length(responses).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(responses)
    lengths = pc.list_value_length(flat).to_numpy(zero_copy_only=False).astype(np.int64)
    tokens = pc.list_flatten(flat).to_numpy(zero_copy_only=False).astype(np.int64)

    # Polarity per response: 0 = preferred, 1 = rejected, -1 = not counted.
    first = np.concatenate([[0], np.cumsum(per_row)[:-1]])
    last = first + per_row - 1
    kinds = np.asarray(table.column("kind").to_pylist(), dtype=object)
    polarity = np.full(int(per_row.sum()), -1, np.int64)
    ranked = kinds == "ranked"
    pair = kinds == "pair"
    polarity[first[pair] + 1] = 1
    if ranked_pairing == "best_rest":
        rest = np.repeat(ranked, per_row)
        polarity[rest] = 1
    elif ranked_pairing == "best_worst":
        polarity[last[ranked]] = 1
    else:
        allowed = " or ".join(get_args(RankedPairing))
        raise ValueError(f"ranked_pairing must be {allowed}, got {ranked_pairing!r}")
    polarity[first] = 0

    sub = table.column("subpreference_id").to_numpy(zero_copy_only=False).astype(np.int64)
    sub_per_response = np.repeat(sub, per_row)
    group = np.repeat(sub_per_response * 2 + polarity, lengths)  # per token
    special = np.zeros(vocab_size, bool)
    special[np.asarray(special_ids, np.int64)] = True
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids outside the vocabulary [0, {vocab_size})")
    keep = (np.repeat(polarity, lengths) >= 0) & ~special[tokens]
    keys = group[keep] * vocab_size + tokens[keep]
    uniq, counts = np.unique(keys, return_counts=True)
    return uniq, counts.astype(np.int64)


def sparse_to_dense(
    parts: list[tuple[np.ndarray, np.ndarray]], num_subpreferences: int, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum sparse block counts into dense ``pos``, ``neg`` int64 arrays of shape (C, V)."""
    dense = np.zeros(num_subpreferences * 2 * vocab_size, np.int64)
    for keys, counts in parts:
        np.add.at(dense, np.asarray(keys, np.int64), np.asarray(counts, np.int64))
    dense = dense.reshape(num_subpreferences, 2, vocab_size)
    return np.ascontiguousarray(dense[:, 0]), np.ascontiguousarray(dense[:, 1])


def _artifact_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        p = p / f"{ARTIFACT_STEM}.safetensors"
    elif p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    return p, p.with_suffix(".json")


@dataclass
class TokenCounts:
    """Response-token counts per sub-preference (the token-distribution artifact).

    ``pos``, ``neg``: int64 numpy arrays of shape (C, V), C = ``len(subpreferences)``.
    """

    pos: np.ndarray
    neg: np.ndarray
    subpreferences: list[str]
    vocab_size: int
    tokenizer_fingerprint: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (len(self.subpreferences), self.vocab_size)
        for name in ("pos", "neg"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != shape:
                raise ValueError(f"TokenCounts.{name} has shape {arr.shape}, expected {shape}")
            setattr(self, name, arr.astype(np.int64, copy=False))

    # ------------------------------------------------------------------ distributions
    def index(self, subpreference: str) -> int:
        try:
            return self.subpreferences.index(subpreference)
        except ValueError:
            raise KeyError(
                f"no sub-preference {subpreference!r}; have {', '.join(self.subpreferences)}"
            ) from None

    def q_plus(self) -> np.ndarray:
        """``Q+ = n+ / Σ n+`` per sub-preference, (C, V) float64 (zeros where nothing counted)."""
        return _normalise_rows(self.pos)

    def q_minus(self) -> np.ndarray:
        return _normalise_rows(self.neg)

    def q_diff(self) -> np.ndarray:
        """``Q_diff = Q+ − Q-`` per sub-preference, (C, V) float64; each row sums to 0."""
        return self.q_plus() - self.q_minus()

    def preference_targets(self, plot_cfg=None, vocab_size: int | None = None):
        """The loss package's ``PreferenceTargets`` built from these counts (row c of its
        matrices is ``subpreferences[c]``, the index the shards' ``subpreference_id`` uses).

        ``vocab_size``: the model's output size when it is larger than the tokenizer's
        vocabulary (padded embedding matrices); the extra ids get zero counts.
        """
        import torch

        from plot_ray.losses import PreferenceTargets

        pos, neg = self.pos, self.neg
        if vocab_size is not None and vocab_size != self.vocab_size:
            if vocab_size < self.vocab_size:
                raise ValueError(
                    f"the model scores {vocab_size} tokens but the counts cover "
                    f"{self.vocab_size}: the artifact was made with another tokenizer"
                )
            pad = ((0, 0), (0, vocab_size - self.vocab_size))
            pos, neg = np.pad(pos, pad), np.pad(neg, pad)
        return PreferenceTargets.from_counts(
            torch.from_numpy(pos), torch.from_numpy(neg), plot_cfg, names=self.subpreferences
        )

    def top_differences(self, tokenizer=None, k: int = 10) -> dict[str, dict[str, list]]:
        """The k largest ``Q_diff`` entries in both directions, per sub-preference.

        Returns ``{subpreference: {"preferred": [(token_id, token, q_diff), ...],
        "rejected": [...]}}``, ``preferred`` most positive first, ``rejected`` most negative
        first, only tokens with a non-zero difference. ``token`` is the decoded text when a
        tokenizer is given (it must be the artifact's, else :class:`TokenizerMismatchError`).
        """
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        diff = self.q_diff()
        out: dict[str, dict[str, list]] = {}
        for c, name in enumerate(self.subpreferences):
            row = diff[c]
            most = np.argsort(-row, kind="stable")[:k]
            least = np.argsort(row, kind="stable")[:k]
            out[name] = {
                "preferred": [_entry(tokenizer, v, row) for v in most if row[v] > 0],
                "rejected": [_entry(tokenizer, v, row) for v in least if row[v] < 0],
            }
        return out

    def format_top_differences(self, tokenizer=None, k: int = 10) -> str:
        """:meth:`top_differences` as a text table (what ``plot-ray prepare`` prints)."""
        lines = []
        for name, sides in self.top_differences(tokenizer, k).items():
            c = self.index(name)
            lines.append(
                f"Q_diff for {name!r} ({int(self.pos[c].sum())} preferred / "
                f"{int(self.neg[c].sum())} rejected response tokens):"
            )
            if not sides["preferred"] and not sides["rejected"]:
                lines.append("  no difference: preferred and rejected responses use tokens alike")
            for label, entries in (
                ("more in preferred", "preferred"),
                ("more in rejected", "rejected"),
            ):
                shown = ", ".join(f"{text!r} {value:+.4f}" for _, text, value in sides[entries])
                lines.append(f"  {label:<18} {shown or '-'}")
        return "\n".join(lines)

    # -------------------------------------------------------------------------- I/O
    def check_tokenizer(self, tokenizer, what: str | None = None) -> None:
        from plot_ray.models.loading import check_tokenizer_fingerprint

        check_tokenizer_fingerprint(
            self.tokenizer_fingerprint,
            tokenizer,
            expected_vocab_size=self.vocab_size,
            what=what or "the token-count artifact",
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``token_counts.safetensors`` + ``token_counts.json`` (``path``: a folder or
        the ``.safetensors`` file). Returns the ``.safetensors`` path."""
        from safetensors.numpy import save_file

        p = Path(path)
        if p.suffix != ".safetensors":
            p.mkdir(parents=True, exist_ok=True)
        tensors_path, json_path = _artifact_paths(p)
        meta = self._full_metadata()
        text = json.dumps(meta, sort_keys=True)
        save_file(
            {"pos": self.pos, "neg": self.neg}, str(tensors_path), metadata={"plot_ray": text}
        )
        json_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return tensors_path

    def _full_metadata(self) -> dict[str, Any]:
        from plot_ray import __version__

        return {
            **self.metadata,
            "artifact": "plot_ray.token_counts",
            "artifact_version": ARTIFACT_VERSION,
            "plot_ray_version": self.metadata.get("plot_ray_version", __version__),
            "vocab_size": self.vocab_size,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
            "subpreferences": list(self.subpreferences),
            "tokens": {
                name: {"pos": int(self.pos[c].sum()), "neg": int(self.neg[c].sum())}
                for c, name in enumerate(self.subpreferences)
            },
        }

    @classmethod
    def load(cls, path: str | os.PathLike, tokenizer=None) -> TokenCounts:
        """Load an artifact (a prepare output folder, or its ``.safetensors``/``.json`` file).

        With ``tokenizer``, raises :class:`~plot_ray.models.loading.TokenizerMismatchError`
        unless it is the tokenizer the counts were made with.
        """
        from safetensors import safe_open

        tensors_path, _ = _artifact_paths(path)
        if not tensors_path.is_file():
            raise FileNotFoundError(
                f"no token-count artifact at {tensors_path}: run `plot-ray prepare` first"
            )
        with safe_open(str(tensors_path), framework="numpy") as f:
            header = f.metadata() or {}
            pos, neg = f.get_tensor("pos"), f.get_tensor("neg")
        if "plot_ray" not in header:
            raise ValueError(f"{tensors_path} is not a plot-ray token-count artifact")
        meta = json.loads(header["plot_ray"])
        if meta.get("artifact_version", 0) > ARTIFACT_VERSION:
            raise ValueError(
                f"{tensors_path} was written by a newer plot-ray "
                f"({meta.get('plot_ray_version')}); upgrade plot-ray to read it"
            )
        derived = ("artifact", "artifact_version", "vocab_size", "tokenizer_fingerprint",
                   "subpreferences", "tokens")  # fmt: skip
        counts = cls(
            pos=pos,
            neg=neg,
            subpreferences=list(meta["subpreferences"]),
            vocab_size=int(meta["vocab_size"]),
            tokenizer_fingerprint=meta["tokenizer_fingerprint"],
            metadata={k: v for k, v in meta.items() if k not in derived},
        )
        if tokenizer is not None:
            counts.check_tokenizer(tokenizer, what=f"the token counts in {tensors_path}")
        return counts


def _entry(tokenizer, token_id, row: np.ndarray) -> tuple[int, str, float]:
    v = int(token_id)
    return v, tokenizer.decode([v]) if tokenizer is not None else str(v), float(row[v])


def _normalise_rows(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(totals > 0, counts / np.where(totals > 0, totals, 1), 0.0)
    return out
