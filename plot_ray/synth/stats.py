"""Word-level token-frequency statistics: is there a PLOT signal in a preference corpus?

PLOT's target is built from ``Q_diff = Q+ - Q-``, the difference between the relative token
frequencies of preferred and rejected responses. These helpers compute it at word level
(no tokenizer needed) so that a corpus can be checked before any training.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

Tokenize = Callable[[str], list[str]]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def word_tokenize(text: str) -> list[str]:
    """Lower-cased words with inner apostrophes kept ("Can't." -> ["can't"]), punctuation dropped."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def preferred_rejected_texts(rows: Iterable[dict]) -> tuple[list[str], list[str]]:
    """Chosen/rejected texts of pairwise rows; best/worst response of ranked rows."""
    pos: list[str] = []
    neg: list[str] = []
    for row in rows:
        if "responses" in row:
            pos.append(row["responses"][0])
            neg.append(row["responses"][-1])
        else:
            pos.append(row["chosen"])
            neg.append(row["rejected"])
    return pos, neg


def relative_frequencies(texts: Iterable[str], tokenize: Tokenize = str.split) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(tokenize(t))
    total = sum(counts.values())
    return {w: c / total for w, c in counts.items()} if total else {}


def frequency_difference(
    rows: Iterable[dict], tokenize: Tokenize = str.split
) -> tuple[dict[str, float], int, int]:
    """``Q+ - Q-`` over the union support, with the token counts of both sides."""
    pos, neg = preferred_rejected_texts(rows)
    cpos: Counter[str] = Counter()
    cneg: Counter[str] = Counter()
    for t in pos:
        cpos.update(tokenize(t))
    for t in neg:
        cneg.update(tokenize(t))
    npos, nneg = sum(cpos.values()), sum(cneg.values())
    diff: dict[str, float] = {}
    for w in sorted(set(cpos) | set(cneg)):
        qp = cpos[w] / npos if npos else 0.0
        qn = cneg[w] / nneg if nneg else 0.0
        diff[w] = qp - qn
    return diff, npos, nneg


def token_frequency_gap(
    rows: Iterable[dict], tokenize: Tokenize = str.split, top_k: int = 10
) -> dict:
    """The largest entries of ``Q+ - Q-`` in both directions, and the total-variation distance.

    ``rows`` are pairwise rows (``chosen``/``rejected``) or ranked rows (``responses``, best vs.
    worst). Returns::

        {"n_rows", "n_preferred_tokens", "n_rejected_tokens", "support_size",
         "total_variation": 0.5 * sum |Q+ - Q-|,          # 0 means no PLOT signal
         "top_preferred": [[token, Q+ - Q-], ...],       # most positive first
         "top_rejected":  [[token, Q+ - Q-], ...]}       # most negative first

    Ties are broken by token so the result is deterministic.
    """
    rows = list(rows)
    diff, npos, nneg = frequency_difference(rows, tokenize)
    items = list(diff.items())
    top_pos = sorted((kv for kv in items if kv[1] > 0), key=lambda kv: (-kv[1], kv[0]))[:top_k]
    top_neg = sorted((kv for kv in items if kv[1] < 0), key=lambda kv: (kv[1], kv[0]))[:top_k]
    return {
        "n_rows": len(rows),
        "n_preferred_tokens": npos,
        "n_rejected_tokens": nneg,
        "support_size": len(diff),
        "total_variation": 0.5 * sum(abs(v) for v in diff.values()),
        "top_preferred": [[w, v] for w, v in top_pos],
        "top_rejected": [[w, v] for w, v in top_neg],
    }
