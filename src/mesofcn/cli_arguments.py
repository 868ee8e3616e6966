"""Argument types shared by the `mesofcn` subcommands: one definition of what a valid number is."""

from __future__ import annotations

import argparse

#: Help of the `--model` option of the commands that analyse media the way `mesofcn detect` does.
MODEL_HELP = (
    "checkpoint folder or Hub id (resolved from the HF cache when offline); default: $MESOFCN_DEFAULT_MODEL "
    "or the default model installed in the package (see the README)"
)


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, steps)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def probability(text: str) -> float:
    """A number between 0 and 1 (thresholds)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


__all__ = ["MODEL_HELP", "positive_int", "probability"]
