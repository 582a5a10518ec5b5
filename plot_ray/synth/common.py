"""Small helpers shared by the synthetic generators: named RNG streams, unique draws, counts."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

SPLITS: tuple[str, ...] = ("train", "validation", "test")


def rng_for(seed: int, stream: str) -> random.Random:
    """An independent, reproducible RNG for one named stream of one seed.

    String seeds are hashed with SHA-512 by :class:`random.Random`, so the stream does not
    depend on ``PYTHONHASHSEED`` or on the order in which other streams are used.
    """
    return random.Random(f"plot-ray-synth/{int(seed)}/{stream}")


def scaled(base: int, scale: float, minimum: int) -> int:
    """``round(base * scale)``, never below ``minimum``."""
    return max(minimum, int(round(base * scale)))


def maybe(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def pick(rng: random.Random, pool: Sequence[T]) -> T:
    return pool[rng.randrange(len(pool))]


def sentence_join(parts: Sequence[str]) -> str:
    """Join non-empty sentence fragments with single spaces."""
    return " ".join(p.strip() for p in parts if p and p.strip())


def build_pair_splits(
    drawer: UniqueDrawer,
    sizes: dict[str, int],
    rng: random.Random,
    pair_row: Callable[[random.Random, T, str], dict],
    name: str,
) -> dict[str, list[dict]]:
    """Pairwise splits of one sub-preference: ``sizes[split]`` items drawn from ``drawer`` (so
    every split is disjoint from every other set drawn from it), each made a row by
    ``pair_row(rng, item, "<name>-<split>-<n>")``."""
    return {
        split: [
            pair_row(rng, item, f"{name}-{split}-{i:06d}")
            for i, item in enumerate(drawer.draw(sizes[split]))
        ]
        for split in SPLITS
    }


class CapacityError(ValueError):
    """Raised when a generator cannot produce enough distinct items for the requested scale."""


class UniqueDrawer:
    """Draws items from ``make(rng)`` that are unique by ``key(item)`` across every call.

    One drawer is shared by all the splits and sets of one domain, so that everything it hands
    out (train, validation, test, ranked, warm-up, held-out) is disjoint by exact key.
    """

    def __init__(
        self,
        make: Callable[[random.Random], T],
        rng: random.Random,
        key: Callable[[T], str],
        name: str,
    ) -> None:
        self._make = make
        self._rng = rng
        self._key = key
        self._name = name
        self._seen: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def reserve(self, keys: Sequence[str]) -> None:
        """Mark keys as used (e.g. prompts that other sets already hold)."""
        self._seen.update(keys)

    def draw(self, n: int) -> list[T]:
        out: list[T] = []
        attempts = 0
        limit = 200 * n + 2000
        while len(out) < n:
            attempts += 1
            if attempts > limit:
                raise CapacityError(
                    f"synthetic generator {self._name!r} ran out of distinct items after "
                    f"{len(self._seen)} (asked for {n} more); use a smaller scale"
                )
            item = self._make(self._rng)
            k = self._key(item)
            if k in self._seen:
                continue
            self._seen.add(k)
            out.append(item)
        return out
