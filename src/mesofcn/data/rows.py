"""The rows every dataset builder writes: their columns, their statistics, and the detect-and-crop step that makes
them (the processor's :func:`~mesofcn.detection.image_processing_mesofcn.crop_face`, so training sees what detection
sees).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import ClassLabel, Features, Image, List, Value
from PIL import Image as PILImage

from ..detection.face_detection import DetectedFace, FaceDetector, RetinaFaceDetector
from ..detection.image_processing_mesofcn import DEFAULT_CROP_SCALE, DEFAULT_CROP_SIZE, crop_face
from .settings import MIN_FACE_SCORE

__all__ = [
    "LABEL_NAMES",
    "MASK_SOURCES",
    "SPLITS",
    "FaceCropper",
    "count_row",
    "empty_stats",
    "encode_png",
    "face_features",
    "face_row",
    "most_confident_face",
]

#: Split names of every DatasetDict the builders write (FF++'s val.json becomes "validation").
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Class names; "fake" is class 1 everywhere, as in the model's config.
LABEL_NAMES: tuple[str, ...] = ("real", "fake")
#: Where a row's mask came from: "ffpp" FF++'s mask video (or the all-zero mask of a pristine face), "difference"
#: |fake - original| of the aligned frames, "whole-image" the whole image is what its label says (GAN faces: all
#: zeros for a real photo, all ones for a generated image), "none" no mask (``mask`` is None; training ignores it).
MASK_SOURCES: tuple[str, ...] = ("ffpp", "difference", "whole-image", "zeros", "self-blend", "none")


def face_features(method_names: Sequence[str]) -> Features:
    """The columns every builder writes; ``method`` is a ClassLabel over ``method_names``."""
    return Features(
        {
            "image": Image(),
            "mask": Image(),
            "label": ClassLabel(names=list(LABEL_NAMES)),
            "method": ClassLabel(names=list(method_names)),
            "compression": Value("string"),
            "video": Value("string"),
            "frame": Value("int32"),
            "box": List(Value("float32"), length=4),
            "landmarks": List(Value("float32"), length=10),
            "detector": Value("string"),
            "detector_score": Value("float32"),
            "mask_source": Value("string"),
        }
    )


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) RGB or (H, W) grey uint8 array (never JPEG: it changes the artifacts)."""
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def most_confident_face(
    detector: FaceDetector, image: np.ndarray, min_score: float = MIN_FACE_SCORE
) -> DetectedFace | None:
    """The highest-scoring face scoring at least ``min_score``, or None."""
    faces = [face for face in detector.detect(image) if face.score >= min_score]
    return max(faces, key=lambda face: face.score) if faces else None


def face_row(
    *,
    crop: np.ndarray,
    mask_crop: np.ndarray | None,
    label: int,
    method: int,
    compression: str,
    video: str,
    frame: int,
    face: DetectedFace,
    detector: str,
    mask_source: str,
) -> dict[str, Any]:
    """One row in Arrow storage form: PNG bytes for the crop and the 0/255 mask (0/1 ``mask_crop`` in)."""
    if mask_source not in MASK_SOURCES:
        raise ValueError(f"mask_source must be one of {MASK_SOURCES}, got {mask_source!r}")
    if (mask_crop is None) != (mask_source == "none"):
        raise ValueError(f"mask_source 'none' goes with a missing mask and only with it, got {mask_source!r}")
    mask = None if mask_crop is None else {"bytes": encode_png((mask_crop > 0).astype(np.uint8) * 255), "path": None}
    return {
        "image": {"bytes": encode_png(crop), "path": None},
        "mask": mask,
        "label": int(label),
        "method": int(method),
        "compression": compression,
        "video": video,
        "frame": int(frame),
        "box": [float(v) for v in face.box],
        "landmarks": [float(v) for v in np.asarray(face.landmarks, dtype=np.float32).reshape(-1)],
        "detector": detector,
        "detector_score": float(face.score),
        "mask_source": mask_source,
    }


@dataclass
class FaceCropper:
    """The detect-and-crop step shared by the builders' workers: the most confident face of an image, and its
    row (the processor's :func:`~mesofcn.detection.image_processing_mesofcn.crop_face` applied to the image and its
    mask).

    Picklable until :meth:`setup` builds the detector in the process that runs it (``detector`` None: RetinaFace,
    single-threaded when several processes share the CPUs); pass ``detector`` to use another one.
    """

    detector: FaceDetector | None = None
    min_score: float = MIN_FACE_SCORE
    crop_scale: float = DEFAULT_CROP_SCALE
    size: int = DEFAULT_CROP_SIZE
    _detector: FaceDetector | None = field(default=None, init=False, repr=False)

    def setup(self, parallel: bool) -> None:
        if self.detector is not None:
            self._detector = self.detector
        else:
            self._detector = RetinaFaceDetector(min_score=self.min_score, num_threads=1 if parallel else None)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_detector": None}

    def find_face(self, image: np.ndarray) -> DetectedFace | None:
        if self._detector is None:
            raise RuntimeError("call setup() before processing")
        return most_confident_face(self._detector, image, self.min_score)

    def crop_row(
        self,
        image: np.ndarray,
        face: DetectedFace,
        mask: np.ndarray | None,
        mask_source: str,
        encode: Callable[[np.ndarray], np.ndarray] | None = None,
        **columns: Any,
    ) -> dict[str, Any]:
        """The row of ``face``: ``image`` and the full-frame 0/1 ``mask`` cut with one geometry (the crop then
        passed through ``encode`` when given, e.g. an H.264 round trip); ``columns`` gives label, method,
        compression, video and frame."""
        crop, mask_crop, _ = crop_face(image, face.box, face.landmarks, mask, self.crop_scale, self.size)
        if encode is not None:
            crop = encode(crop)
        return face_row(
            crop=crop, mask_crop=mask_crop, face=face, detector=self._detector.name, mask_source=mask_source, **columns
        )


def empty_stats(compression: str, method: str, label: str, videos: int) -> dict[str, Any]:
    """Fresh per-item statistics (see :class:`ItemResult`)."""
    return {
        "compression": compression,
        "method": method,
        "label": label,
        "videos": videos,
        "sampled": 0,
        "rows": 0,
        "no_face": 0,
        "mask_sources": dict.fromkeys(MASK_SOURCES, 0),
        "notes": [],
    }


def count_row(stats: dict[str, Any], row: dict[str, Any]) -> None:
    """Add one written row to ``stats``."""
    stats["rows"] += 1
    stats["mask_sources"][row["mask_source"]] += 1
