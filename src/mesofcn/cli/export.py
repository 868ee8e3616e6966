"""
`mesofcn export onnx --model M --out model.onnx [--int8] [--calibration SRC ...]`: one self-contained ONNX file for
ONNX Runtime (and `mesofcn detect --model model.onnx`).

Light at import time: argparse wiring only until the command runs (the work is in mesofcn.training.onnx_export).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import positive_int

EXPORT_ONNX_DESCRIPTION = """\
Export a checkpoint folder to one ONNX file: BatchNorm folded into the convolutions, a dynamic batch axis, input
`pixel_values` (N, 3, 128, 128), outputs `logits` (N, 2) and `segmentation_logits` (N, 2, 49, 49). Its metadata
holds the model config, the image processor config (crop scale, size, normalization), the precision (fp32 or
int8) and the mesofcn version, so `mesofcn detect --model model.onnx` (or your own ONNX Runtime code) needs
nothing else. The file is written to a temporary name beside --out and renamed into place.

--int8: static quantization by ONNX Runtime (QDQ format, int8 weights per output channel in a 7-bit range, uint8
activations with min/max ranges; the first convolution and the two 1x1 heads stay float32), calibrated on real
face crops made exactly as detection makes them (RetinaFace, then the checkpoint's image processor): up to
{crops} crops (--calibration-crops) from the images and videos of --calibration (videos: {frames} evenly spaced
frames each, up to {faces} faces per frame), files visited in an order that mixes the whole list. Default
source: the real face photos in the shared research data's faces/ folder ($MESOFCN_SHARED_DATA/faces) when
present; otherwise --calibration is required. Check an int8 file against the fp32 one on your own faces
(scripts/benchmark.py prints the P(fake) differences)."""


def add_export_parser(commands) -> None:
    """Add `mesofcn export onnx` to the CLI's subparsers."""
    from ..training.onnx_export import (
        CALIBRATION_FACES_PER_FRAME,
        CALIBRATION_FRAMES_PER_VIDEO,
        CALIBRATION_METHODS,
        DEFAULT_CALIBRATION_CROPS,
        DEFAULT_CALIBRATION_METHOD,
    )

    export = commands.add_parser("export", help="export a checkpoint for other runtimes (ONNX, int8)")
    formats = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    description = EXPORT_ONNX_DESCRIPTION.format(
        crops=DEFAULT_CALIBRATION_CROPS, frames=CALIBRATION_FRAMES_PER_VIDEO, faces=CALIBRATION_FACES_PER_FRAME
    )
    parser = formats.add_parser(
        "onnx",
        help="one ONNX file (fp32, or int8 with --int8) with its config and processor in the metadata",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="checkpoint folder (as save_pretrained writes it)")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument("--int8", action="store_true", help="quantize to int8 (static, calibrated on real faces)")
    parser.add_argument(
        "--calibration",
        nargs="+",
        metavar="DIR_OR_CSV",
        help="--int8 calibration sources: folders of real face images/videos, or media lists (CSV path,label[,group]"
        ", real rows used); default: the shared data's faces/ folder when present",
    )
    parser.add_argument(
        "--calibration-crops",
        type=positive_int,
        default=DEFAULT_CALIBRATION_CROPS,
        metavar="N",
        help=f"face crops used for --int8 calibration (default {DEFAULT_CALIBRATION_CROPS})",
    )
    parser.add_argument(
        "--calibration-method",
        choices=CALIBRATION_METHODS,
        default=DEFAULT_CALIBRATION_METHOD,
        help=f"how --int8 sets activation ranges (default {DEFAULT_CALIBRATION_METHOD})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_export_onnx)


def run_export_onnx(args: argparse.Namespace) -> int:
    """Load, (calibrate,) export, write; print what was written. Every expected problem is a one-line CommandError."""
    from ..training.onnx_export import (
        ExportError,
        calibration_files,
        collect_calibration_crops,
        default_calibration_source,
        load_checkpoint,
    )
    from .common import EXIT_OK, CommandError, check_writable_folder, first_line

    out: Path = args.out
    if out.is_dir():
        raise CommandError(f"--out {out}: is a folder; name the .onnx file to write")
    check_writable_folder(out.parent, "--out", out)
    if args.calibration and not args.int8:
        raise CommandError("--calibration: only with --int8")
    sources = args.calibration
    if args.int8 and not sources:
        default = default_calibration_source()
        if default is None:
            raise CommandError("--int8 needs --calibration (no shared data faces/ folder: set MESOFCN_SHARED_DATA)")
        sources = [default]
    try:
        if args.int8:
            calibration_files(sources)  # a bad source fails here, before minutes of loading and exporting
        model, processor = load_checkpoint(args.model)
        require_onnx()
        calibration = None
        if args.int8:
            calibration = collect_calibration_crops(
                sources, processor, max_crops=args.calibration_crops, progress=not args.quiet
            )
            for error in calibration.errors:
                print(f"note: skipped {error}", file=sys.stderr)
        export(args, model, processor, calibration)
    except ExportError as error:
        raise CommandError(str(error)) from error
    except OSError as error:  # the write itself (disk full, permissions...): nothing is left at --out
        raise CommandError(f"--out {out}: cannot write ({first_line(error)})") from error
    return EXIT_OK


def require_onnx() -> None:
    """ExportError naming the extra when the `onnx` package (the exporter's writer) is missing."""
    from ..training.onnx_export import ExportError

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError('export needs the onnx package: pip install "mesofcn[onnx]"') from None


def export(args: argparse.Namespace, model, processor, calibration) -> None:
    from ..training.onnx_export import export_checkpoint

    method = args.calibration_method
    export_checkpoint(model, processor, args.out, int8=args.int8, calibration=calibration, method=method)
    size = args.out.stat().st_size / 1e6
    what = "int8" if args.int8 else "fp32"
    if calibration is not None:
        what += f", calibrated on {len(calibration.pixel_values)} face crops from {calibration.files_used} files"
    print(f"wrote {args.out} ({what}, {size:.1f} MB)")


__all__ = ["add_export_parser", "run_export_onnx"]
