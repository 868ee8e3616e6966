"""
`mesofcn evaluate --media LABELS.csv --out DIR`: evaluation on your own labelled images and videos.

Each listed file is analysed exactly as `mesofcn detect` analyses it (same pipeline loader, same call options and
defaults, same per-input error handling); mesofcn.training.media_evaluation turns the reports into metrics. Writes,
each atomically, DIR/results.json, DIR/predictions.csv, DIR/roc.png and DIR/scores.png, and prints a summary table.
Exit code 0, or 1 when some item could not be analysed (it is recorded; the others are evaluated), 2 for a bad
labels file, option or model. Light at import time: argparse wiring only until the command runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from ..detection.tracking import DEFAULT_MIN_FACE_FRACTION, DEFAULT_MIN_TRACK_SHARE
from .arguments import (
    add_detection_arguments,
    add_device_arguments,
    add_limit_arguments,
    positive_int,
    probability,
)

RESULTS_FILE, PREDICTIONS_FILE, ROC_FILE, SCORES_FILE = "results.json", "predictions.csv", "roc.png", "scores.png"
#: Batch size of `mesofcn detect`, used with --media when --batch-size is not given.
DETECT_BATCH_SIZE = 16
#: Batch size of the dataset mode when none is given.
DATASET_BATCH_SIZE = 64
#: Options that only mean something with --media (their dest, and how to name them in an error).
MEDIA_ONLY = {
    "root": "--root",
    "every": "--every",
    "frames": "--frames",
    "max_pixels": "--max-pixels",
    "max_duration": "--max-duration",
    "detect_every": "--detect-every",
    "detect_size": "--detect-size",
}
#: Dataset-mode options without a default that --media ignores.
DATASET_ONLY = {"task": "--task", "mixed_precision": "--mixed_precision"}


def add_media_arguments(parser: argparse.ArgumentParser, source) -> None:
    """The --media mode's arguments, on `mesofcn evaluate`'s parser (`source`: the --dataset/--media group)."""
    source.add_argument(
        "--media",
        type=Path,
        metavar="LABELS.csv",
        help="evaluate on the images/videos listed in a CSV with columns path,label[,group] (label real/fake or 0/1)",
    )
    media = parser.add_argument_group("--media mode (each file analysed as `mesofcn detect` does)")
    add_media_analysis_arguments(media)
    media.add_argument(
        "--bootstrap", type=int, default=1000, metavar="B", help="stratified resamples for the AUC interval (0: none)"
    )
    media.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")


def add_media_analysis_arguments(group) -> None:
    """How each listed file is analysed, as `mesofcn detect` analyses it: the list's root, sampling, verdict rule,
    device and precision (shared by `evaluate --media` and `calibrate`)."""
    group.add_argument(
        "--root", type=Path, metavar="DIR", help="folder the CSV's paths are relative to; None: the CSV's folder"
    )
    sampling = group.add_mutually_exclusive_group()
    sampling.add_argument(
        "--every", type=positive_int, metavar="K", help="analyse every K-th frame; 5 without --every or --frames"
    )
    sampling.add_argument("--frames", type=positive_int, metavar="N", help="analyse N evenly spaced frames")
    group.add_argument(
        "--min-face-fraction",
        type=probability,
        default=DEFAULT_MIN_FACE_FRACTION,
        metavar="F",
        help="verdict rule, as for detect: a track decides only if its median face is at least F times the largest's",
    )
    group.add_argument(
        "--min-track-share",
        type=probability,
        default=DEFAULT_MIN_TRACK_SHARE,
        metavar="S",
        help="verdict rule, as for detect: ...and only if it is seen in at least this share of the analysed frames",
    )
    add_device_arguments(group)
    add_detection_arguments(group)
    add_limit_arguments(group)


def check_dataset_mode_arguments(args: argparse.Namespace) -> None:
    """--dataset mode: --model is required and --media's options are refused; the batch size gets its default."""
    from .common import CommandError

    given = [name for dest, name in MEDIA_ONLY.items() if getattr(args, dest, None) is not None]
    if given:
        raise CommandError(f"{', '.join(given)}: only with --media")
    if not getattr(args, "model", None):
        raise CommandError("--model is required with --dataset")
    if args.batch_size is None:
        args.batch_size = DATASET_BATCH_SIZE


def run_media_evaluation(args: argparse.Namespace) -> int:
    """Read the labels, load the detector as `detect` does, evaluate, write DIR's files, print the summary."""
    from ..detection.pipeline_mesofcn import model_name
    from ..detection.video import FrameSampling
    from ..training.media_evaluation import evaluate_media, summary_table
    from .common import EXIT_OK, EXIT_SOME_FAILED

    check_media_arguments(args)
    items = read_labels(args)
    detector, analyse, call_options = media_analyser(args)
    evaluation = evaluate_media(
        items,
        analyse,
        threshold=args.threshold,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        progress=not args.quiet,
    )
    evaluation.results = {
        "mode": "media",
        "labels": str(args.media),
        "root": str(args.root if args.root is not None else args.media.parent),
        "model": model_name(detector.model),
        "sampling": FrameSampling(every=args.every, num_frames=args.frames).describe(),
        "verdict_rule": {
            key: call_options[key] for key in ("min_face_fraction", "min_track_share") if key in call_options
        },
        "device": args.device,
        "dtype": args.dtype,
        **evaluation.results,
    }
    write_media_outputs(Path(args.out), evaluation)
    for error in evaluation.results["errors"]:
        print(f"error: {error['error']}", file=sys.stderr)
    print(summary_table(evaluation.results))
    print(f"wrote {Path(args.out) / RESULTS_FILE}")
    return EXIT_SOME_FAILED if evaluation.results["n_errors"] else EXIT_OK


def read_labels(args: argparse.Namespace) -> list:
    """The items of `--media`, or a one-line CommandError naming the list and the problem."""
    from ..data.media_lists import MediaListError, read_media_list
    from .common import CommandError

    try:
        return read_media_list(args.media, args.root)
    except MediaListError as error:
        raise CommandError(str(error)) from error


def media_analyser(args: argparse.Namespace):
    """(pipeline, analyse(path) -> report, call options): each file analysed exactly as `mesofcn detect` would."""
    from .common import analyse_input, detect_call_options, load_detection_pipeline

    detector = load_detection_pipeline(args.model, args.device, args.dtype, args.batch_size or DETECT_BATCH_SIZE)
    call_options = detect_call_options(args)
    return detector, lambda path: analyse_input(detector, str(path), call_options), call_options


def check_media_arguments(args: argparse.Namespace) -> None:
    from .common import CommandError

    given = [name for dest, name in DATASET_ONLY.items() if getattr(args, dest, None) is not None]
    if given:
        raise CommandError(f"{', '.join(given)}: only with --dataset")
    if not 0.0 <= args.threshold <= 1.0:
        raise CommandError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.batch_size is not None and args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.bootstrap < 0:
        raise CommandError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if args.root is not None and not args.root.is_dir():
        raise CommandError(f"--root {args.root}: not a folder")


def write_media_outputs(out: Path, evaluation) -> None:
    """predictions.csv, roc.png, scores.png and last results.json (so a results file means a finished output), each
    written to a temporary name, then renamed."""
    from ..atomic_files import write_json_atomic, write_text_atomic
    from ..reporting.figures import roc_figure, score_histogram_figure
    from ..reporting.overlay import write_png
    from ..training.media_evaluation import PREDICTION_COLUMNS, prediction_rows, roc_curves

    results = evaluation.results
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=PREDICTION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(prediction_rows(evaluation.items))
    write_text_atomic(out / PREDICTIONS_FILE, text.getvalue())

    overall = results["overall"]
    title = f"ROC: {overall['n_real']} real, {overall['n_fake']} fake items (groups: their fakes vs all reals)"
    write_png(out / ROC_FILE, roc_figure(roc_curves(evaluation), title))
    scored = [result for result in evaluation.items if result.error is None]
    reals = [result.score for result in scored if result.item.label == 0]
    fakes = [result.score for result in scored if result.item.label == 1]
    no_face = results["n_no_face"]
    title = f"item scores (no face: {no_face['real']} real, {no_face['fake']} fake, scored 0)"
    write_png(out / SCORES_FILE, score_histogram_figure(reals, fakes, results["threshold"], title))
    write_json_atomic(out / RESULTS_FILE, results)


__all__ = [
    "add_media_analysis_arguments",
    "add_media_arguments",
    "check_dataset_mode_arguments",
    "media_analyser",
    "read_labels",
    "run_media_evaluation",
    "write_media_outputs",
]
