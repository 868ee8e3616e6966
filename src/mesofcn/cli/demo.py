"""`mesofcn demo`: detection end to end on two clips made on the spot, one real and one manipulated."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from .arguments import positive_int

#: Frames per demo clip, and pixels the face drifts per frame (so tracking has something to do).
CLIP_FRAMES = 30
DRIFT = 2
RANDOM_WEIGHTS = "random (untrained): scores are meaningless"
RANDOM_WEIGHTS_NOTICE = (
    "note: no default model is installed (see the README), so this demo runs a randomly initialised network: its "
    "scores are meaningless. Pass --model with a trained checkpoint, or set $MESOFCN_DEFAULT_MODEL, for real verdicts."
)


def demo_photo() -> np.ndarray:
    """scikit-image's bundled public-domain astronaut portrait (Eileen Collins, NASA), 512x512 RGB."""
    try:
        from skimage.data import astronaut
    except ImportError as error:
        from .common import CommandError

        raise CommandError(
            "mesofcn demo needs scikit-image for its bundled public-domain photo: pip install 'mesofcn[demo]'"
        ) from error
    return astronaut()


def make_demo_clips(folder: Path, frames: int = CLIP_FRAMES, seed: int = 0) -> tuple[Path, Path]:
    """A real clip of the photo drifting sideways and the same clip with the face self-blended (a pseudo-fake
    made the way face swaps leave their traces), both H.264 at CRF 23 like FF++'s c23."""
    from ..data.blending import self_blend
    from ..detection.compression import encode_video
    from ..detection.face_detection import RetinaFaceDetector

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
    demo.add_argument(
        "--model", help="checkpoint folder or Hub id (default: the installed default model, else random weights)"
    )
    demo.add_argument("--frames", type=positive_int, default=CLIP_FRAMES, help="frames per clip")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from ..atomic_files import write_json_atomic
    from .common import load_detection_pipeline
    from .detect import detect_one

    args.out.mkdir(parents=True, exist_ok=True)
    real, fake = make_demo_clips(args.out, args.frames)
    with tempfile.TemporaryDirectory() as scratch:
        model, weights = demo_model(args.model, Path(scratch))
        detector = load_detection_pipeline(model, "cpu", "fp32", 16)
        options = {"progress": not args.quiet, "return_heatmaps": False}
        reports = [
            detect_one(detector, str(clip), options, args.out / f"{clip.stem}_overlay", args.quiet)
            for clip in (real, fake)
        ]
    for report in reports:
        report["weights"] = weights
        if weights == RANDOM_WEIGHTS:
            report["model"] = "random-init"
    write_json_atomic(args.out / "reports.json", reports)
    if weights == RANDOM_WEIGHTS:
        print("(random weights: the two verdicts above mean nothing; the machinery around them is what ran)")
    print(f"model: {weights}; clips, overlays and reports.json in {args.out}/")
    return 1 if any("error" in report for report in reports) else 0


def demo_model(model: str | None, scratch: Path) -> tuple[str, str]:
    """The checkpoint the demo runs and how to describe it: the one given, else the default, else random weights
    (with a printed notice), so that the machinery runs even where no trained default is installed."""
    from ..detection.defaults import default_model_available, default_model_path

    if model:
        return model, model
    if default_model_available():
        folder = default_model_path()
        return str(folder), f"default ({folder})"
    print(RANDOM_WEIGHTS_NOTICE)
    return untrained_checkpoint(scratch), RANDOM_WEIGHTS


def untrained_checkpoint(folder: Path) -> str:
    """A randomly initialised checkpoint (seeded), for running the machinery where no trained weights exist."""
    import torch

    from ..detection.configuration_mesofcn import MesoFCNConfig
    from ..detection.image_processing_mesofcn import MesoFCNImageProcessor
    from ..detection.modeling_mesofcn import MesoFCNForDeepfakeDetection
    from ..detection.registration import save_detector

    torch.manual_seed(0)
    save_detector(MesoFCNForDeepfakeDetection(MesoFCNConfig()), MesoFCNImageProcessor(), folder)
    return str(folder)


__all__ = ["RANDOM_WEIGHTS", "add_demo_parser", "demo_model", "make_demo_clips", "run_demo", "untrained_checkpoint"]
