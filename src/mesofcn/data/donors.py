"""Donor faces for the self-blend builder's donor blends (Face X-ray style): another person's face, detected once
per process, and the choice of the donor whose landmark shape is nearest the target's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..detection.face_detection import DetectedFace
from ..detection.media import load_image
from ..detection.media_files import MediaError

__all__ = ["DONOR_CANDIDATES", "DONOR_SIDE", "Donor", "DonorPool", "face_window", "landmark_shape"]

#: Donors drawn for a donor blend; the one whose landmark shape is nearest the target's is pasted.
DONOR_CANDIDATES = 16
#: Longest side of a stored donor face window (pixels): bounds the pool's memory.
DONOR_SIDE = 320


@dataclass(frozen=True)
class Donor:
    """Another person's face for donor blends: a window around it (RGB), its landmarks there, and its source."""

    image: np.ndarray
    landmarks: np.ndarray
    source: str


class DonorPool:
    """The faces of donor images, detected once per process, and the choice of a donor for a target face: among
    :data:`DONOR_CANDIDATES` random donors of other sources, the one whose landmark shape is nearest (as Face
    X-ray picks a donor), so that the alignment barely distorts it."""

    def __init__(self, donors: list[Donor]) -> None:
        self.donors = donors
        self.shapes = np.stack([landmark_shape(donor.landmarks) for donor in donors]) if donors else None

    @classmethod
    def load(cls, paths: Sequence[str], find_face: Callable[[np.ndarray], DetectedFace | None]) -> DonorPool:
        """The most confident face of each donor image (unreadable images and images without a face are skipped)."""
        donors = []
        for path in paths:
            try:
                image = load_image(path)
            except MediaError:
                continue
            face = find_face(image)
            if face is not None:
                donors.append(face_window(image, face, path))
        return cls(donors)

    def choose(self, landmarks: np.ndarray, source_path: str, rng: np.random.Generator) -> Donor | None:
        """The nearest-shaped of a random draw of donors not from `source_path`, or None if there is none."""
        if self.shapes is None:
            return None
        others = [index for index, donor in enumerate(self.donors) if donor.source != source_path]
        if not others:
            return None
        drawn = rng.choice(others, size=min(DONOR_CANDIDATES, len(others)), replace=False)
        distances = np.linalg.norm(self.shapes[drawn] - landmark_shape(landmarks), axis=(1, 2))
        return self.donors[int(drawn[int(np.argmin(distances))])]


def landmark_shape(landmarks: np.ndarray) -> np.ndarray:
    """Five landmarks centred and scaled to unit size: comparable across faces of any size and position."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centred = points - points.mean(axis=0)
    return centred / max(float(np.linalg.norm(centred)), 1e-6)


def face_window(image: np.ndarray, face: DetectedFace, source: str) -> Donor:
    """A window of twice the face's size around it, at most :data:`DONOR_SIDE` pixels, with its landmarks."""
    points = np.asarray(face.landmarks, dtype=np.float64).reshape(5, 2)
    side = 2.0 * max(float(face.box[2]), float(face.box[3]))
    left, top = points.mean(axis=0) - side / 2
    scale = min(1.0, DONOR_SIDE / side)
    matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])
    pixels = max(8, round(side * scale))
    window = cv2.warpAffine(image, matrix, (pixels, pixels), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    return Donor(window, (points - (left, top)) * scale, source)
