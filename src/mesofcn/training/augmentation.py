"""
Training-time augmentation of 128x128 face crops, applied alike to real and fake faces so that nothing but the
manipulation tells the classes apart (resolution, blur, noise and JPEG re-compression must not mean "fake"), and
online self-blending: a real crop turned into a fresh pseudo-fake (:func:`mesofcn.data.blending.self_blend`)
every time it is drawn, with its exact blend mask as segmentation target.

Both act on uint8 RGB crops before the processor normalizes them; masks follow every geometric change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..data.blending import resample_through, self_blend
from ..detection.image_processing_mesofcn import DEFAULT_CROP_SCALE, face_crop_window


@dataclass(frozen=True)
class FaceAugmentation:
    """Probabilities and ranges of the photometric and geometric changes (each drawn independently per crop)."""

    flip_probability: float = 0.5
    downscale_probability: float = 0.4
    downscale_range: tuple[float, float] = (0.35, 0.9)  # the crop is resized to this fraction of its side and back
    blur_probability: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_probability: float = 0.2
    noise_sigma: tuple[float, float] = (1.0, 6.0)  # grey levels
    jpeg_probability: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 95)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """An augmented copy of `image` (HxWx3 uint8) and `mask` (HxW, or None), flipped together."""
        image = np.ascontiguousarray(image)
        if rng.uniform() < self.flip_probability:
            image = image[:, ::-1]
            mask = None if mask is None else np.ascontiguousarray(np.asarray(mask)[:, ::-1])
        if rng.uniform() < self.downscale_probability:
            image = resample_through(image, rng.uniform(*self.downscale_range))
        if rng.uniform() < self.blur_probability:
            image = cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(*self.blur_sigma))
        if rng.uniform() < self.noise_probability:
            noise = rng.normal(0.0, rng.uniform(*self.noise_sigma), size=image.shape)
            image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if rng.uniform() < self.jpeg_probability:
            image = jpeg_round_trip(image, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        return np.ascontiguousarray(image), mask


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """`image` (RGB) encoded as JPEG at `quality` and decoded again."""
    return decode_jpeg(encode_jpeg(image, quality))


def encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image as the bytes (1-D uint8 array) of an OpenCV JPEG at `quality` (1..100)."""
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a face crop")
    return encoded.reshape(-1)


def decode_jpeg(data: np.ndarray) -> np.ndarray | None:
    """JPEG bytes (1-D uint8 array) as an (H, W, 3) uint8 RGB image; None when OpenCV cannot decode them."""
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else np.ascontiguousarray(image[..., ::-1])


def landmarks_in_crop(
    box: Sequence[float], landmarks: Sequence[float], crop_side: int, crop_scale: float = DEFAULT_CROP_SCALE
) -> tuple[np.ndarray, list[float]]:
    """A face's frame-coordinate landmarks and box mapped into its `crop_side`-pixel crop (same window as
    :func:`~mesofcn.detection.image_processing_mesofcn.crop_face`)."""
    window = face_crop_window(box, landmarks, crop_scale)
    factor = crop_side / window.side
    points = (np.asarray(landmarks, dtype=np.float64).reshape(5, 2) - (window.left, window.top)) * factor
    x, y, width, height = (float(value) for value in box)
    crop_box = [(x - window.left) * factor, (y - window.top) * factor, width * factor, height * factor]
    return points, crop_box


def blend_crop(
    image: np.ndarray,
    box: Sequence[float],
    landmarks: Sequence[float],
    rng: np.random.Generator,
    crop_scale: float = DEFAULT_CROP_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """A new self-blended pseudo-fake of a real face crop and its 0/255 mask. Rows carry frame coordinates: they
    are mapped into the crop with the window of the `crop_scale` the crop was cut with."""
    points, crop_box = landmarks_in_crop(box, landmarks, image.shape[0], crop_scale)
    blend = self_blend(image, points, crop_box, seed=rng)
    return blend.image, blend.mask * np.uint8(255)


__all__ = ["FaceAugmentation", "blend_crop", "decode_jpeg", "encode_jpeg", "jpeg_round_trip", "landmarks_in_crop"]
