"""Splitting sources that come without an official split (photo folders, real faces) into train / validation / test.

Deterministic from a seed, and by whole groups where a builder passes groups (a person's photos stay together), so
that no identity or image is in two splits.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from .rows import SPLITS
from .work import PrepareError

__all__ = ["DEFAULT_SPLIT", "check_fractions", "split_images"]

#: Train / validation / test fractions of every source (the paper's 56k/7k/7k).
DEFAULT_SPLIT: tuple[float, float, float] = (0.8, 0.1, 0.1)


def split_images(names: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Deterministic split of one source's images: ordered by sha256 of ``"<seed>/<name>"``, then cut by
    ``fractions`` (largest remainders get the leftover images). Each split's names come back sorted."""
    counts = _split_counts(len(names), fractions)
    ordered = sorted(names, key=lambda name: hashlib.sha256(f"{seed}/{name}".encode()).hexdigest())
    splits, start = {}, 0
    for split, count in zip(SPLITS, counts, strict=True):
        splits[split] = sorted(ordered[start : start + count])
        start += count
    return splits


def _split_counts(total: int, fractions: Sequence[float]) -> list[int]:
    exact = [total * fraction for fraction in fractions]
    counts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(exact)), key=lambda index: (counts[index] - exact[index], index))
    for index in by_remainder[: total - sum(counts)]:
        counts[index] += 1
    return counts


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Train/validation/test fractions: three finite numbers >= 0 that sum to 1."""
    values = tuple(float(value) for value in fractions)
    if len(values) != 3 or any(not math.isfinite(v) or v < 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise PrepareError(f"split must be three fractions >= 0 summing to 1 (train,validation,test), got {fractions}")
    return values  # type: ignore[return-value]
