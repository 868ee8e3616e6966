"""
`mesofcn calibrate --media REALS.csv --out DIR [--model M] [--max-flagged 0.05]`: a copy of a detector whose decision
point is moved so that at most the chosen share of your real media is called fake.

Each listed file is analysed exactly as `mesofcn detect` analyses it; mesofcn.training.calibration finds the log-odds
shift and folds it into the classifier's bias, so 0.5 stays the threshold everywhere (CLI, pipeline, your own code).
DIR gets the calibrated checkpoint and `calibration.json` (the shift, the target, reals flagged and listed fakes caught
before and after). Fakes in the list do not move the shift: they only show what the calibration costs. DIR is
written beside its final name and renamed into place, and an existing DIR is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import probability

#: File in a calibrated checkpoint that records how it was calibrated.
CALIBRATION_FILE = "calibration.json"
#: Share of real items a calibrated detector may flag, when --max-flagged is not given.
DEFAULT_MAX_FLAGGED = 0.05


def add_calibrate_parser(commands) -> None:
    """Add `mesofcn calibrate` to the CLI's subparsers."""
    from .evaluate_media import add_media_analysis_arguments

    parser = commands.add_parser(
        "calibrate",
        help="move a detector's decision point on your own real media",
        description=__doc__.strip().split("\n\n")[1],
    )
    parser.add_argument(
        "--media",
        type=Path,
        required=True,
        metavar="LABELS.csv",
        help="CSV with columns path,label[,group]: the real items set the shift, fakes are only reported",
    )
    parser.add_argument("--out", type=Path, required=True, help="new folder for the calibrated checkpoint")
    parser.add_argument("--model", help="checkpoint folder (default: the bundled default model)")
    parser.add_argument(
        "--max-flagged",
        type=probability,
        default=DEFAULT_MAX_FLAGGED,
        metavar="P",
        help=f"share of the real items that may still be called fake (default {DEFAULT_MAX_FLAGGED})",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="faces per network call")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_media_analysis_arguments(parser.add_argument_group("how each file is analysed (as `mesofcn detect`)"))
    parser.set_defaults(handler=run_calibrate, threshold=0.5)


def run_calibrate(args: argparse.Namespace) -> int:
    """Analyse the list, find the shift, write the calibrated checkpoint and its record; print the effect."""
    from ..training.calibration import calibration_shift, fold_shift_into_classifier
    from ..training.media_evaluation import analyse_items
    from .common import EXIT_OK, EXIT_SOME_FAILED, CommandError, is_onnx_file
    from .evaluate_media import media_analyser, read_labels

    if args.out.exists():
        raise CommandError(f"--out {args.out}: already exists; choose a new folder")
    if is_onnx_file(args.model):
        raise CommandError(f"--model {args.model}: calibrate needs the checkpoint folder (its weights are rewritten)")
    items = read_labels(args)
    if not any(item.label == 0 for item in items):
        raise CommandError(f"{args.media}: no real items to calibrate on")
    detector, analyse, _ = media_analyser(args)
    results = analyse_items(items, analyse, progress=not args.quiet, desc="calibrating")
    errors = [result for result in results if result.error is not None]
    for result in errors:
        print(f"error: {result.error}", file=sys.stderr)
    try:
        shift = calibration_shift(results, args.max_flagged)
    except ValueError as error:
        raise CommandError(f"{args.media}: {error}") from error
    record = calibration_record(args, detector, results, shift)
    model = detector.model.float()
    fold_shift_into_classifier(model, shift)
    write_calibrated_checkpoint(model, detector.image_processor, record, args.out)
    print(calibration_summary(record))
    print(f"wrote {args.out}")
    return EXIT_SOME_FAILED if errors else EXIT_OK


def calibration_record(args: argparse.Namespace, detector, results, shift: float) -> dict:
    """What `calibration.json` says: source, list, sampling, target, shift and its effect on the listed items."""
    import math

    from .. import __version__
    from ..detection.pipeline_mesofcn import model_name
    from ..detection.video import FrameSampling
    from ..training.calibration import flagged_share

    def effect(label: int) -> dict:
        before, count = flagged_share(results, label, 0.0)
        after, _ = flagged_share(results, label, shift)
        return {"items": count, "called_fake_before": before, "called_fake_after": after}

    return {
        "source_model": model_name(detector.model),
        "labels": str(args.media),
        "sampling": FrameSampling(every=args.every, num_frames=args.frames).describe(),
        "verdict_rule": {"min_face_fraction": args.min_face_fraction, "min_track_share": args.min_track_share},
        "dtype": args.dtype,
        "max_flagged": args.max_flagged,
        "log_odds_shift": shift,
        "equivalent_threshold": 1.0 / (1.0 + math.exp(-shift)),
        "real": effect(0),
        "fake": effect(1),
        "errors": sum(result.error is not None for result in results),
        "mesofcn_version": __version__,
    }


def calibration_summary(record: dict) -> str:
    """Two lines a person reads: reals flagged and fakes caught, before -> after."""
    real, fake = record["real"], record["fake"]
    lines = [
        f"log-odds shift {record['log_odds_shift']:+.4f} (the old P(fake) {record['equivalent_threshold']:.4f} "
        "is the new 0.5)",
        f"real items called fake: {real['called_fake_before']}/{real['items']} -> {real['called_fake_after']}"
        f"/{real['items']} (target at most {record['max_flagged']:.0%})",
    ]
    if fake["items"]:
        lines.append(f"fake items caught: {fake['called_fake_before']}/{fake['items']} -> {fake['called_fake_after']}")
    return "\n".join(lines)


def write_calibrated_checkpoint(model, processor, record: dict, out: Path) -> None:
    """The checkpoint and its record, saved beside `out` and renamed into place (never a half-written folder)."""
    from ..atomic_files import atomic_directory, write_json_atomic
    from ..detection.registration import save_detector

    with atomic_directory(out) as partial:
        save_detector(model, processor, partial)
        write_json_atomic(partial / CALIBRATION_FILE, record)


__all__ = ["CALIBRATION_FILE", "DEFAULT_MAX_FLAGGED", "add_calibrate_parser", "run_calibrate"]
