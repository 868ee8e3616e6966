"""
What the `mesofcn` commands share: the one-line CommandError and the exit codes, the checks of output folders, and
the detection helpers that `detect`, `evaluate --media`, `calibrate`, `demo` and `serve` run alike (loading the
pipeline, its call options from the arguments, analysing one input). Light at import time: the pipeline and its
dependencies are imported when a command runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..detection.media_files import printable
from ..detection.tracking import DEFAULT_MIN_FACE_FRACTION, DEFAULT_MIN_TRACK_SHARE

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A problem with the command itself (bad option, unloadable model): reported in one line, exit code 2."""


def command_parser(*add_parsers: Callable) -> argparse.ArgumentParser:
    """The `mesofcn` parser with the subcommands that `add_parsers` add (each `add_*_parser(commands)`)."""
    parser = argparse.ArgumentParser(
        prog="mesofcn",
        description="Detect and localize manipulated faces (deepfakes) in images and videos.",
    )
    parser.add_argument("--version", action="version", version=f"mesofcn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parser in add_parsers:
        add_parser(commands)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen command's handler: its exit code, a CommandError as `error: <line>` and exit
    code 2, Ctrl-C as 130. Every entry (the `mesofcn` command, `python -m mesofcn.cli.app`) runs its commands here."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when it has none): errors are reported in one line."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def check_writable_folder(folder: Path, option: str, out: Path) -> None:
    """`folder` is, or can be created as, a folder we may write in (its nearest existing ancestor decides)."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"{option} {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {out}: cannot write in {existing}")


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
    The deepfake-detection pipeline for `model` (folder, Hub id, exported .onnx file or a bundled checkpoint's
    name; when None, the bundled checkpoints, both asked on images: see mesofcn.detection.defaults and
    mesofcn.detection.opinions), run by `backend` ("torch" by default, "onnx" for ONNX Runtime; an .onnx file implies
    it), with a one-line error when it can't load (pickle weights are refused, naming the file).
    """
    from transformers import pipeline

    from ..detection.defaults import resolve_model_name
    from ..detection.inference import resolve_dtype
    from ..detection.modeling_mesofcn import PickleFileError, refuse_pickle_weights
    from ..detection.pipeline_mesofcn import DeepfakeDetectionPipeline

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if is_onnx_file(model) or backend == "onnx":
        check_onnx_options(model, device, dtype, backend)
    if is_onnx_file(model):
        from ..detection.modeling_mesofcn_onnx import OnnxModelError

        try:
            return DeepfakeDetectionPipeline.from_onnx(model, batch_size=batch_size, num_threads=threads)
        except OnnxModelError as error:
            raise CommandError(f"{model}: {error}") from error
    # No model: the bundled checkpoints, both asked on images; a named one (even a bundled name) answers alone.
    opinions = not model
    try:
        model = resolve_model_name(model) if model else str(bundled_detector_path())
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
            opinions=opinions,
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


def bundled_detector_path() -> Path:
    """The checkpoint a run without a model starts from: the manipulated-face default, else the generated-face one
    (the pipeline brings the other when both are installed); FileNotFoundError naming both when neither is."""
    from ..detection.defaults import (
        DEFAULT_MODEL_ENV,
        DEFAULT_MODEL_NAME,
        GENERATED_MODEL_ENV,
        GENERATED_MODEL_NAME,
        default_detector_path,
        installed_bundled_models,
        require_default_model,
    )

    if installed_bundled_models():
        return default_detector_path()
    problems = []
    for name in (DEFAULT_MODEL_NAME, GENERATED_MODEL_NAME):
        try:
            require_default_model(name)
        except FileNotFoundError as error:
            problems.append(str(error).split(": pass --model")[0])
    raise FileNotFoundError(
        f"no bundled model is installed ({'; '.join(problems)}): pass --model with a checkpoint folder or Hub id, set "
        f"${DEFAULT_MODEL_ENV} or ${GENERATED_MODEL_ENV}, or reinstall mesofcn"
    )


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
    if getattr(args, "generated_on_videos", False):
        call_options["generated_on_videos"] = True
    return call_options


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
    from ..reporting.reports import write_overlay, write_timeline_plot

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


__all__ = [
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "INPUT_ERRORS",
    "CommandError",
    "analyse_input",
    "check_onnx_options",
    "check_writable_folder",
    "command_parser",
    "bundled_detector_path",
    "detect_call_options",
    "first_line",
    "is_onnx_file",
    "load_detection_pipeline",
    "run_command",
]
