"""The `mesofcn` command line: `mesofcn detect INPUT...` and friends."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .app import add_serve_parser
from .atomic_files import write_json_atomic, write_text_atomic
from .cli_arguments import MODEL_HELP, add_detection_arguments, add_limit_arguments, positive_int, probability
from .cli_calibrate import add_calibrate_parser
from .cli_export import add_export_parser
from .cli_prepare import add_prepare_parser
from .cli_training import add_evaluate_parser, add_train_parser
from .demo import add_demo_parser
from .tracking import DEFAULT_MIN_FACE_FRACTION, DEFAULT_MIN_TRACK_SHARE
from .video import printable

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A problem with the command itself (bad option, unloadable model): reported in one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesofcn",
        description="Detect and localize manipulated faces (deepfakes) in images and videos.",
    )
    parser.add_argument("--version", action="version", version=f"mesofcn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_detect_parser(commands)
    add_prepare_parser(commands)
    add_train_parser(commands)
    add_evaluate_parser(commands)
    add_calibrate_parser(commands)
    add_export_parser(commands)
    add_demo_parser(commands)
    add_serve_parser(commands)
    return parser


def add_detect_parser(commands) -> None:
    detect = commands.add_parser(
        "detect",
        help="is this image or video manipulated, and where?",
        description="Find the faces in each input, score each with MesoFCN, link them into tracks across "
        "frames and give a verdict per input (the most suspicious face track among those large and lasting "
        "enough to decide, see --min-face-fraction and --min-track-share).",
    )
    detect.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files")
    detect.add_argument("--model", help=MODEL_HELP)
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
    detect.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    detect.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="network precision")
    add_detection_arguments(detect)
    add_backend_arguments(detect)
    add_limit_arguments(detect)
    detect.add_argument("--quiet", action="store_true", help="no progress bars")
    detect.set_defaults(handler=run_detect)


def add_backend_arguments(parser) -> None:
    """`--backend` and `--threads` of the commands that run the network (detect)."""
    parser.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        help="what runs the network: torch (default for a checkpoint folder), or onnx: ONNX Runtime on the CPU "
        "(a checkpoint folder is exported to fp32 ONNX in memory at start-up, a few seconds; an .onnx file given "
        "to --model, e.g. an int8 one from `mesofcn export onnx`, always runs this way)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads of the network, either backend (default: torch's choice, e.g. from OMP_NUM_THREADS)",
    )


def is_onnx_file(model: str | None) -> bool:
    """Whether `--model` names an ONNX file (by its .onnx extension) rather than a checkpoint folder or Hub id."""
    return bool(model) and Path(model).suffix.lower() == ".onnx" and not Path(model).is_dir()


def load_detection_pipeline(
    model: str | None,
    device: str,
    dtype: str,
    batch_size: int,
    backend: str | None = None,
    threads: int | None = None,
):
    """
    The deepfake-detection pipeline for `model` (folder, Hub id or exported .onnx file; the default checkpoint when
    None, see mesofcn.defaults), run by `backend` ("torch" by default, "onnx" for ONNX Runtime; an .onnx file
    implies it), with a one-line error when it can't load (pickle weights are refused, naming the file).
    """
    from transformers import pipeline

    from .defaults import require_default_model
    from .inference import resolve_dtype
    from .modeling_mesofcn import PickleFileError, refuse_pickle_weights
    from .pipeline_mesofcn import DeepfakeDetectionPipeline

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if is_onnx_file(model) or backend == "onnx":
        check_onnx_options(model, device, dtype, backend)
    if is_onnx_file(model):
        from .modeling_mesofcn_onnx import OnnxModelError

        try:
            return DeepfakeDetectionPipeline.from_onnx(model, batch_size=batch_size, num_threads=threads)
        except OnnxModelError as error:
            raise CommandError(f"{model}: {error}") from error
    if not model:
        try:
            model = str(require_default_model())
        except FileNotFoundError as error:
            raise CommandError(str(error)) from error
    try:
        refuse_pickle_weights(model)
    except PickleFileError as error:
        raise CommandError(str(error)) from error
    if not Path(model).is_dir() and (Path(model).exists() or model.count("/") != 1):
        raise CommandError(f"{model}: not a checkpoint folder, an .onnx file or a Hub id of the form org/name")
    # Only the onnx backend is named to the pipeline: the default path stays exactly what it was.
    backend_options = {"backend": "onnx", "num_threads": threads} if backend == "onnx" else {}
    try:
        return pipeline(
            "deepfake-detection",
            model=model,
            pipeline_class=DeepfakeDetectionPipeline,  # also for checkpoints saved with the pipeline's code
            device=device,
            dtype=resolve_dtype(dtype),
            batch_size=batch_size,
            trust_remote_code=False,
            **backend_options,
        )
    except ImportError as error:  # the onnx backend's exporter needs the onnx package
        raise CommandError(f'--backend onnx: {first_line(error)} (pip install "mesofcn[onnx]")') from error
    except Exception as error:  # transformers raises OSError, ValueError, KeyError... for unloadable checkpoints
        raise CommandError(f"{model}: cannot load this model ({first_line(error)})") from error


def check_onnx_options(model: str | None, device: str, dtype: str, backend: str | None) -> None:
    """The onnx backend runs on the CPU, at the file's own precision: other --device/--dtype/--backend are errors."""
    import torch

    if is_onnx_file(model) and backend == "torch":
        raise CommandError(f"--backend torch: {model} is an ONNX file; it runs with --backend onnx")
    try:
        is_cpu = torch.device(device).type == "cpu"
    except RuntimeError as error:
        raise CommandError(f"--device {device}: {first_line(error)}") from error
    if not is_cpu:
        raise CommandError(f"--device {device}: the onnx backend runs on the CPU only; use --device cpu")
    if dtype != "fp32":
        raise CommandError(
            f"--dtype {dtype}: the onnx backend runs fp32 (or an int8 file from `mesofcn export onnx --int8`)"
        )


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def run_detect(args: argparse.Namespace) -> int:
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


def detect_call_options(args: argparse.Namespace) -> dict:
    """
    The pipeline options of `mesofcn detect` from its arguments (threshold, verdict rule, quiet, every, frames,
    limits); `mesofcn evaluate --media` analyses each item with the same options.
    """
    call_options = {
        "threshold": args.threshold,
        # Parsers that lack the verdict-rule options (e.g. evaluate's) get the defaults.
        "min_face_fraction": getattr(args, "min_face_fraction", DEFAULT_MIN_FACE_FRACTION),
        "min_track_share": getattr(args, "min_track_share", DEFAULT_MIN_TRACK_SHARE),
        "progress": not args.quiet,
        "return_heatmaps": False,
    }
    if args.every or args.frames:
        call_options.update(every=args.every, num_frames=args.frames)
    # Limits not given (None) keep the pipeline's defaults; parsers without them (e.g. evaluate --dataset) too.
    call_options.update(max_pixels=getattr(args, "max_pixels", None), max_duration=getattr(args, "max_duration", None))
    # Detection settings not given keep the pipeline's defaults; --detect-size 0 means full resolution.
    if getattr(args, "detect_every", None) is not None:
        call_options["detect_every"] = args.detect_every
    if getattr(args, "detect_size", None) is not None:
        call_options["detect_size"] = args.detect_size or None
    return call_options


def detect_defaults() -> argparse.Namespace:
    """`mesofcn detect`'s arguments with every option at its default: the web app's page and loader start from them."""
    return build_parser().parse_args(["detect", "INPUT"])


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


def check_writable_folder(folder: Path, option: str, out: Path) -> None:
    """`folder` is, or can be created as, a folder we may write in (its nearest existing ancestor decides)."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"{option} {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {out}: cannot write in {existing}")


def detect_one(
    detector, path: str, call_options: dict, overlay: Path | None, quiet: bool, plot: Path | None = None
) -> dict:
    """Run one input and print its summary line; a problem with it becomes a one-line error and an error report."""
    from .reports import report_to_json, summary_line

    report = analyse_input(detector, path, call_options, overlay, quiet, plot)
    if "error" in report:
        print(f"error: {report['error']}", file=sys.stderr)
        return report
    print(summary_line(report))
    return report_to_json(report)


#: What a bad input raises while it is analysed (MediaError is a ValueError): reported, never a traceback.
INPUT_ERRORS = (ValueError, OSError, RuntimeError)


def analyse_input(
    detector,
    path: str,
    call_options: dict,
    overlay: Path | None = None,
    quiet: bool = False,
    plot: Path | None = None,
) -> dict:
    """
    The pipeline's report on one input (plus `elapsed_seconds`, and `overlay` / `plot` when asked for; an image
    gets no plot, with a one-line notice), or, when the input cannot be analysed, `{"path", "error",
    "mesofcn_version"}` with a one-line message that names it.
    """
    from .reports import write_overlay, write_timeline_plot

    start = time.perf_counter()
    try:
        # An overlay draws each face's map: keep them for it (otherwise a video's maps are dropped as they come).
        report = detector(path, **call_options, **({"return_patch_maps": True} if overlay is not None else {}))
        if overlay is not None:
            report["overlay"] = str(write_overlay(report, overlay, quiet=quiet))
        if plot is not None:
            written = write_timeline_plot(report, plot)
            if written is None:
                print(f"note: {path}: an image has no time axis, no plot written", file=sys.stderr)
            else:
                report["plot"] = str(written)
    except INPUT_ERRORS as error:
        message = str(error) if printable(path) in str(error) else printable(f"{path}: {first_line(error)}")
        return {"path": str(path), "error": message, "mesofcn_version": __version__}
    report["elapsed_seconds"] = round(time.perf_counter() - start, 3)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = [
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "INPUT_ERRORS",
    "CommandError",
    "analyse_input",
    "build_parser",
    "check_writable_folder",
    "detect_call_options",
    "detect_defaults",
    "detect_one",
    "first_line",
    "is_onnx_file",
    "load_detection_pipeline",
    "main",
    "plan_outputs",
    "write_json_atomic",
    "write_text_atomic",
]


if __name__ == "__main__":
    # `python -m mesofcn.cli` runs this file as __main__, a second copy of the module: the subcommands raise the
    # package module's CommandError, which only that copy's main catches.
    from mesofcn.cli import main as package_main

    sys.exit(package_main())
