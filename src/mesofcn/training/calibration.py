"""
Threshold calibration on real media (`mesofcn calibrate`): move a detector's decision point so that at most a chosen
share of real items is called fake, and fold the move into the classifier so that 0.5 stays the threshold.

    results = [item_result(item, report) for ...]        # real items analysed as `mesofcn detect` does
    shift = calibration_shift(results, max_flagged=0.05)
    fold_shift_into_classifier(model, shift)             # P(fake) = sigmoid(logit_fake - logit_real - shift)

Why fold instead of shipping a threshold: every consumer of a checkpoint (the CLI, the pipeline, `evaluate`, a
user's own code reading `logits`) then agrees on one decision point, 0.5, and P(fake) keeps one meaning.

An item's verdict score is the mean P(fake) of its deciding track (the verdict rule's eligible tracks, the most
suspicious one decides; a fallback item keeps the track that decided it). Subtracting `shift` from every face's
log-odds lowers each track's mean monotonically, so each item has one crossing shift (the shift at which its
score falls to 0.5), and the calibrated shift is set just above the crossing of the real item that may still be
flagged last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .media_evaluation import MediaItemResult

#: Probabilities are clipped to this distance from 0 and 1 before taking log-odds.
PROBABILITY_EPSILON = 1e-7
#: Log-odds bracket of the crossing search (P(fake) 2e-9 .. 1 - 2e-9).
SHIFT_BRACKET = (-20.0, 20.0)
#: The calibrated shift sits this far (in log-odds) above the crossing it must clear.
SHIFT_MARGIN = 1e-4


def log_odds(scores: Sequence[float]) -> np.ndarray:
    """logit(p) of face scores, clipped away from 0 and 1."""
    p = np.clip(np.asarray(scores, dtype=np.float64), PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)
    return np.log(p) - np.log1p(-p)


def shifted_mean(logits: np.ndarray, shift: float) -> float:
    """Mean P(fake) of a track's faces once `shift` is subtracted from their log-odds."""
    return float(np.mean(1.0 / (1.0 + np.exp(-(logits - shift)))))


def track_crossing(logits: np.ndarray, iterations: int = 80) -> float:
    """The shift at which a track's mean P(fake) is exactly 0.5 (bisection; clamped to the bracket)."""
    low, high = SHIFT_BRACKET
    if shifted_mean(logits, low) < 0.5:
        return low
    if shifted_mean(logits, high) >= 0.5:
        return high
    for _ in range(iterations):
        middle = (low + high) / 2
        low, high = (middle, high) if shifted_mean(logits, middle) >= 0.5 else (low, middle)
    return low


def deciding_tracks(result: MediaItemResult) -> dict[int, list[float]]:
    """Face scores of the tracks that may decide an item's verdict (eligible ones, else the fallback's choice)."""
    allowed = result.eligible_tracks or frozenset({result.verdict_track})
    tracks: dict[int, list[float]] = {}
    for _, track, score in result.frames:
        if track in allowed:
            tracks.setdefault(track, []).append(score)
    return tracks


def item_crossing(result: MediaItemResult) -> float | None:
    """The shift below which the item is called fake (its most resistant deciding track); None without a face."""
    tracks = deciding_tracks(result)
    if not tracks:
        return None
    return max(track_crossing(log_odds(scores)) for scores in tracks.values())


def calibration_shift(results: Sequence[MediaItemResult], max_flagged: float) -> float:
    """
    The log-odds shift after which at most `max_flagged` of the real items (errors left out, items without a face
    counted as not flagged) score 0.5 or more. May be negative: a detector that flags fewer reals than allowed
    is made more sensitive.
    """
    if not 0.0 <= max_flagged < 1.0:
        raise ValueError(f"max_flagged must be in [0, 1), got {max_flagged}")
    reals = [result for result in results if result.error is None and result.item.label == 0]
    if not reals:
        raise ValueError("calibration needs at least one real item that could be analysed")
    crossings = sorted((c for c in map(item_crossing, reals) if c is not None), reverse=True)
    allowed = math.floor(max_flagged * len(reals) + 1e-9)
    if allowed >= len(crossings):  # every item with a face may stay flagged: the most sensitive setting
        return SHIFT_BRACKET[0]
    return crossings[allowed] + SHIFT_MARGIN


def shifted_score(result: MediaItemResult, shift: float) -> float | None:
    """An item's verdict score after the shift (its most suspicious deciding track); None without a face."""
    tracks = deciding_tracks(result)
    if not tracks:
        return None
    return max(shifted_mean(log_odds(scores), shift) for scores in tracks.values())


def flagged_share(results: Sequence[MediaItemResult], label: int, shift: float) -> tuple[int, int]:
    """(called fake, analysed) among the items of `label` after the shift, at threshold 0.5."""
    scored = [result for result in results if result.error is None and result.item.label == label]
    flagged = sum((score := shifted_score(result, shift)) is not None and score >= 0.5 for result in scored)
    return flagged, len(scored)


@torch.no_grad()
def fold_shift_into_classifier(model: torch.nn.Module, shift: float) -> None:
    """Lower the fake class's classifier bias by `shift`: every P(fake) becomes sigmoid(logit - shift)."""
    bias = model.classifier.bias
    if bias is None or bias.numel() != 2:
        raise ValueError("calibration needs the two-class classifier head with a bias (class 0 real, 1 fake)")
    bias[1] -= shift


__all__ = [
    "calibration_shift",
    "deciding_tracks",
    "flagged_share",
    "fold_shift_into_classifier",
    "item_crossing",
    "log_odds",
    "shifted_score",
]
