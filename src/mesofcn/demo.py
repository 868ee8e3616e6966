"""`mesofcn demo`: detection end to end on two clips made on the spot, one real and one manipulated."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .cli_arguments import positive_int

#: Frames per demo clip, and pixels the face drifts per frame (so tracking has something to do).
CLIP_FRAMES = 30
DRIFT = 2


def demo_photo() -> np.ndarray:
    """scikit-image's bundled public-domain astronaut portrait (Eileen Collins, NASA), 512x512 RGB."""
    try:
        from skimage.data import astronaut
    except ImportError as error:
        from .cli import CommandError

        raise CommandError(
            "mesofcn demo needs scikit-image for its bundled public-domain photo: pip install 'mesofcn[demo]'"
        ) from error
    return astronaut()


def make_demo_clips(folder: Path, frames: int = CLIP_FRAMES, seed: int = 0) -> tuple[Path, Path]:
    """A real clip of the photo drifting sideways and the same clip with the face self-blended (a pseudo-fake
    made the way face swaps leave their traces), both H.264 at CRF 23 like FF++'s c23."""
    from .compression import encode_video
    from .face_detection import RetinaFaceDetector
    from .self_blending import self_blend

    photo = demo_photo()
    faces = RetinaFaceDetector().detect(photo)
    if not faces:
        raise RuntimeError("no face found in the demo photo")
    face = faces[0]
    blended = self_blend(photo, face.landmarks, face.box, seed=seed).image
    height, width = photo.shape[:2]
    canvas_width = width + DRIFT * frames
    real_path, fake_path = folder / "demo_real.mp4", folder / "demo_manipulated.mp4"
    for source, path in ((photo, real_path), (blended, fake_path)):
        encode_video((place(source, DRIFT * i, canvas_width) for i in range(frames)), path, crf=23, fps=25)
    return real_path, fake_path


def place(image: np.ndarray, offset: int, canvas_width: int) -> np.ndarray:
    """`image` on a black canvas `canvas_width` wide, `offset` pixels from the left."""
    canvas = np.zeros((image.shape[0], canvas_width, 3), dtype=np.uint8)
    canvas[:, offset : offset + image.shape[1]] = image
    return canvas


def add_demo_parser(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="detection end to end on a real and a manipulated clip made on the spot",
        description="Build a short real clip of a public-domain face photo and the same clip with the face "
        "self-blended, detect on both, print both verdicts and write annotated overlays.",
    )
    demo.add_argument("--out", type=Path, default=Path("mesofcn-demo"), help="folder for clips, overlays, reports")
    demo.add_argument("--model", help="checkpoint folder or Hub id (default: the bundled checkpoint)")
    demo.add_argument("--frames", type=positive_int, default=CLIP_FRAMES, help="frames per clip")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from .cli import detect_one, load_detection_pipeline, write_json_atomic
    from .defaults import DEFAULT_MODEL_NAME

    args.out.mkdir(parents=True, exist_ok=True)
    detector = load_detection_pipeline(args.model, "cpu", "fp32", 16)
    real, fake = make_demo_clips(args.out, args.frames)
    options = {"progress": not args.quiet, "return_heatmaps": False}
    reports = [
        detect_one(detector, str(clip), options, args.out / f"{clip.stem}_overlay", args.quiet)
        for clip in (real, fake)
    ]
    weights = args.model or f"{DEFAULT_MODEL_NAME} (bundled)"
    for report in reports:
        report["weights"] = weights
    write_json_atomic(args.out / "reports.json", reports)
    print(f"model: {weights}; clips, overlays and reports.json in {args.out}/")
    return 1 if any("error" in report for report in reports) else 0


__all__ = ["add_demo_parser", "make_demo_clips", "run_demo"]
