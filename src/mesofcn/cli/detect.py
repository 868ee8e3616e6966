"""`mesofcn detect INPUT...`: the verdict, overlay and plot of each image or video, one summary line each."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..atomic_files import write_json_atomic
from ..detection.tracking import DEFAULT_MIN_FACE_FRACTION, DEFAULT_MIN_TRACK_SHARE
from .arguments import (
    MODEL_HELP,
    add_backend_arguments,
    add_detection_arguments,
    add_device_arguments,
    add_limit_arguments,
    positive_int,
    probability,
)
from .common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    CommandError,
    analyse_input,
    check_writable_folder,
    command_parser,
    detect_call_options,
    load_detection_pipeline,
)


def add_detect_parser(commands) -> None:
    detect = commands.add_parser(
        "detect",
        help="is this image or video manipulated, and where?",
        description="Find the faces in each input, score each with MesoFCN, link them into tracks across "
        "frames and give a verdict per input (the most suspicious face track among those large and lasting "
        "enough to decide, see --min-face-fraction and --min-track-share). Without --model an image is asked "
        "both bundled questions, manipulated face and generated face, and is fake if either says so.",
    )
    detect.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files")
    detect.add_argument("--model", help=MODEL_HELP)
    detect.add_argument(
        "--generated-on-videos",
        action="store_true",
        help="without --model, also ask the generated-face model on videos (by default only images get both "
        "opinions: it was trained on still photos)",
    )
    sampling = detect.add_mutually_exclusive_group()
    sampling.add_argument("--every", type=positive_int, metavar="K", help="analyse every K-th frame (default 5)")
    sampling.add_argument("--frames", type=positive_int, metavar="N", help="analyse N evenly spaced frames")
    detect.add_argument("--threshold", type=probability, default=0.5, help="P(fake) from which a face is fake")
    detect.add_argument(
        "--min-face-fraction",
        type=probability,
        default=DEFAULT_MIN_FACE_FRACTION,
        metavar="F",
        help="a track may decide the verdict only if its median face size is at least F times the largest "
        f"track's (default {DEFAULT_MIN_FACE_FRACTION}; 0 lets every face size decide)",
    )
    detect.add_argument(
        "--min-track-share",
        type=probability,
        default=DEFAULT_MIN_TRACK_SHARE,
        metavar="S",
        help="...and only if it is seen in at least this share of the analysed frames "
        f"(default {DEFAULT_MIN_TRACK_SHARE}; images: every face covers its one frame)",
    )
    detect.add_argument("--batch-size", type=positive_int, default=16, help="faces per network batch")
    detect.add_argument("--json", type=Path, metavar="OUT.json", help="write the reports as a JSON list")
    detect.add_argument(
        "--overlay",
        type=Path,
        metavar="OUT",
        help="write an annotated copy (MP4 for videos, PNG for images); a folder when there are several inputs",
    )
    detect.add_argument(
        "--plot",
        type=Path,
        metavar="OUT",
        help="write a PNG of P(fake) over time per face track of each video (images have no time axis: skipped); "
        "a folder when there are several inputs",
    )
    add_device_arguments(detect)
    add_detection_arguments(detect)
    add_backend_arguments(detect)
    add_limit_arguments(detect)
    detect.add_argument("--quiet", action="store_true", help="no progress bars")
    detect.set_defaults(handler=run_detect)


def run_detect(args: argparse.Namespace) -> int:
    if args.generated_on_videos and args.model:
        raise CommandError("--generated-on-videos asks the bundled generated-face model; --model names one model")
    # Bad output paths fail in one line before the model loads.
    overlay_paths = plan_outputs(args.inputs, args.overlay, "--overlay")
    plot_paths = plan_outputs(args.inputs, args.plot, "--plot", suffix=".png")
    detector = load_detection_pipeline(
        args.model, args.device, args.dtype, args.batch_size, args.backend, args.threads
    )
    call_options = detect_call_options(args)
    reports, failures = [], 0
    for path, overlay, plot in zip(args.inputs, overlay_paths, plot_paths, strict=True):
        report = detect_one(detector, path, call_options, overlay, args.quiet, plot)
        failures += "error" in report
        reports.append(report)
    if args.json:
        write_json_atomic(args.json, reports)
    if failures:
        print(f"{failures} of {len(reports)} inputs failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def detect_defaults() -> argparse.Namespace:
    """`mesofcn detect`'s arguments with every option at its default: the web app's page and loader start from them."""
    return command_parser(add_detect_parser).parse_args(["detect", "INPUT"])


def plan_outputs(inputs: Sequence[str], out: Path | None, option: str, suffix: str | None = None) -> list[Path | None]:
    """
    Output path per input of `--overlay`/`--plot OUT`: OUT itself for one input when OUT has an extension, else
    OUT/<input file name> in the folder OUT (the writer sets the extension). A CommandError names OUT when it cannot
    be used: a folder where a file is meant, a file where a folder is, a parent that is a file, or (with `suffix`) a
    file name with another extension.
    """
    if out is None:
        return [None] * len(inputs)
    if len(inputs) == 1 and out.suffix:
        if suffix is not None and out.suffix.lower() != suffix:
            raise CommandError(f"{option} {out}: must end in {suffix} (or name a folder)")
        if out.is_dir():
            raise CommandError(f"{option} {out}: is a folder; name a file, or a folder without an extension")
        check_writable_folder(out.parent, option, out)
        return [out]
    if out.exists() and not out.is_dir():
        kind = "several inputs need" if len(inputs) > 1 else "a name without an extension is"
        raise CommandError(f"{option} {out}: is a file, but {kind} a folder")
    check_writable_folder(out, option, out)
    return [out / Path(path).name for path in inputs]


def detect_one(
    detector, path: str, call_options: dict, overlay: Path | None, quiet: bool, plot: Path | None = None
) -> dict:
    """Run one input and print its summary line; a problem with it becomes a one-line error and an error report."""
    from ..reporting.reports import report_to_json, summary_line

    report = analyse_input(detector, path, call_options, overlay, quiet, plot)
    if "error" in report:
        print(f"error: {report['error']}", file=sys.stderr)
        return report
    print(summary_line(report))
    return report_to_json(report)


__all__ = [
    "add_detect_parser",
    "detect_defaults",
    "detect_one",
    "plan_outputs",
    "run_detect",
]
