"""Argument types shared by the `mesofcn` subcommands: one definition of what a valid number is."""

from __future__ import annotations

import argparse

from .video import DEFAULT_MAX_DURATION, DEFAULT_MAX_PIXELS

#: Help of the `--model` option of the commands that analyse media the way `mesofcn detect` does.
MODEL_HELP = (
    "checkpoint folder, Hub id (resolved from the HF cache when offline) or .onnx file written by `mesofcn export "
    "onnx` (run by ONNX Runtime); default: $MESOFCN_DEFAULT_MODEL or the default model installed in the package "
    "(see the README)"
)


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, steps)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (limits, where 0 lifts the limit)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A number >= 0 (limits, where 0 lifts the limit)."""
    value = float(text)
    if not value >= 0.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_limit_arguments(group) -> None:
    """`--max-pixels` and `--max-duration`: what the commands that analyse media refuse, before decoding where the
    header tells (a server's guard against inputs that would take gigabytes or hours). Unset: the defaults of
    mesofcn.video.MediaLimits; 0 lifts a limit."""
    group.add_argument(
        "--max-pixels",
        "--max-image-pixels",
        dest="max_pixels",
        type=non_negative_int,
        metavar="N",
        help=f"refuse images and video frames of more pixels, width x height (default {DEFAULT_MAX_PIXELS:,}; "
        "0: no limit)",
    )
    group.add_argument(
        "--max-duration",
        type=non_negative_float,
        metavar="SECONDS",
        help=f"refuse videos longer than this (default {DEFAULT_MAX_DURATION:g} s, 4 hours; 0: no limit)",
    )


def probability(text: str) -> float:
    """A number between 0 and 1 (thresholds)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


__all__ = [
    "MODEL_HELP",
    "add_limit_arguments",
    "non_negative_float",
    "non_negative_int",
    "positive_int",
    "probability",
]
