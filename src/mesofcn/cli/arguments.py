"""Argument types shared by the `mesofcn` subcommands: one definition of what a valid number is."""

from __future__ import annotations

import argparse

from ..detection.media_files import DEFAULT_MAX_DURATION, DEFAULT_MAX_PIXELS
from ..detection.video_faces import DEFAULT_DETECT_EVERY, DEFAULT_DETECT_SIZE

#: Help of the `--model` option of the commands that analyse media the way `mesofcn detect` does.
MODEL_HELP = (
    "checkpoint folder, Hub id (resolved from the HF cache when offline) or .onnx file written by `mesofcn export "
    "onnx` (run by ONNX Runtime); default: $MESOFCN_DEFAULT_MODEL or the default model installed in the package "
    "(see the README)"
)


def add_device_arguments(group) -> None:
    """`--device` and `--dtype` of the commands that run the network with torch (detect, serve, evaluate --media)."""
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    group.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="network precision")


def add_backend_arguments(group) -> None:
    """`--backend` and `--threads` of the commands that may run the network by ONNX Runtime (detect, serve)."""
    group.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        help="what runs the network: torch (default for a checkpoint folder), or onnx: ONNX Runtime on the CPU "
        "(a checkpoint folder is exported to fp32 ONNX in memory at start-up, a few seconds; an .onnx file given "
        "to --model, e.g. an int8 one from `mesofcn export onnx`, always runs this way)",
    )
    group.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads of the network, either backend (default: torch's choice, e.g. from OMP_NUM_THREADS)",
    )


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, steps)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def jpeg_quality(text: str) -> int:
    """A JPEG quality, an integer from 1 to 100 (OpenCV's IMWRITE_JPEG_QUALITY)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 100, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (limits, where 0 lifts the limit)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (durations, rates)."""
    value = float(text)
    if not value > 0.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
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
    mesofcn.detection.media_files.MediaLimits; 0 lifts a limit."""
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


def detect_size(text: str) -> int:
    """A detection size: 0 (full resolution) or at least 32 pixels."""
    value = int(text)
    if value != 0 and value < 32:
        raise argparse.ArgumentTypeError(f"must be 0 (full resolution) or >= 32 pixels, got {text}")
    return value


def add_detection_arguments(group) -> None:
    """`--detect-every` and `--detect-size`: how often and at what size the face detector sees a video's frames
    (mesofcn.detection.video_faces). Unset: the pipeline's defaults."""
    group.add_argument(
        "--detect-every",
        type=positive_int,
        metavar="N",
        help="run the face detector at least every N video frames and follow the faces by optical flow in between "
        f"(default {DEFAULT_DETECT_EVERY}; frames sampled N or more apart are all detected; 1: detect every "
        "analysed frame); it also runs at once on a cut or when a face is lost",
    )
    group.add_argument(
        "--detect-size",
        type=detect_size,
        metavar="PIXELS",
        help="the face detector sees video frames shrunk to this longer side, faster on large frames but blind "
        "to faces under about 16 pixels of the shrunk frame and less sure of borderline ones (default "
        f"{DEFAULT_DETECT_SIZE or 0}: full resolution); images are always searched at full resolution",
    )


def probability(text: str) -> float:
    """A number between 0 and 1 (thresholds)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


__all__ = [
    "MODEL_HELP",
    "add_backend_arguments",
    "add_device_arguments",
    "add_detection_arguments",
    "add_limit_arguments",
    "detect_size",
    "jpeg_quality",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
]
