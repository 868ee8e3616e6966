"""
Self-blended pseudo-fakes (after SBI, Shiohara & Yamasaki, CVPR 2022): a real face blended with a slightly
transformed copy of itself through a deformed, blurred face mask. The blend leaves the seams, colour and
sharpness mismatches that face swaps leave, and its mask is an exact segmentation target for MesoFCN's
segmentation head (which the paper could only get from FF++'s mask videos).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..detection.image_processing_mesofcn import to_rgb_uint8

#: Blend weights below this cannot change an 8-bit pixel after rounding; they are zeroed so that the binary
#: target covers exactly the pixels the blend may change.
NEGLIGIBLE_WEIGHT = 1.0 / 255.0


@dataclass(frozen=True)
class SelfBlendSettings:
    """Ranges the generator samples from (uniformly unless noted). Defaults follow SBI's spirit at 128 px."""

    region_scale: tuple[float, float] = (0.85, 1.15)  # ellipse axes, relative to the landmark-derived face size
    deformation: tuple[float, float] = (0.0, 0.12)  # random boundary displacement, fraction of the face size
    blur_sigma: tuple[float, float] = (0.01, 0.06)  # mask feathering, fraction of the face size
    blend_ratio: tuple[float, float] = (0.5, 1.0)  # peak blend weight (1 = source fully inside the mask)
    full_blend_probability: float = 0.5  # chance that the peak weight is exactly 1
    colour_shift: float = 0.06  # per-channel gain +- and offset +- (fraction of 255)
    brightness_contrast: float = 0.08
    scale_jitter: float = 0.03  # source resized by 1 +- this
    shift_jitter: float = 0.02  # source translated by +- this fraction of the face size
    sharpness_probability: float = 0.5  # chance of blurring or sharpening the source
    downsample_probability: float = 0.0  # chance of pasting a lower-resolution copy (swappers paste a small face)
    downsample_range: tuple[float, float] = (0.3, 0.75)  # its resolution, relative to the frame


@dataclass(frozen=True)
class SelfBlend:
    """A pseudo-fake: the blended RGB image, its binary target mask (0/1 uint8) and the blend weights."""

    image: np.ndarray
    mask: np.ndarray
    weights: np.ndarray


def face_geometry(landmarks: np.ndarray, box: Sequence[float] | None = None) -> tuple[np.ndarray, float, float]:
    """Centre (x, y), size (pixels) and in-plane angle (radians, from the eye line) of a face."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eyes, mouth = points[:2].mean(axis=0), points[3:].mean(axis=0)
    eye_vector = points[1] - points[0]
    angle = float(np.arctan2(eye_vector[1], eye_vector[0]))
    # The face spans about 2.2 eye-to-mouth distances from forehead to chin, centred a little below the nose.
    eye_to_mouth = float(np.linalg.norm(mouth - eyes))
    size = max(2.2 * eye_to_mouth, 2.0 * float(np.linalg.norm(eye_vector)))
    if box is not None:
        size = 0.5 * size + 0.5 * max(float(box[2]), float(box[3]))
    centre = 0.5 * (eyes + mouth) + np.array([-np.sin(angle), np.cos(angle)]) * 0.1 * eye_to_mouth
    return centre, max(size, 4.0), angle


def face_region_mask(
    shape: tuple[int, int],
    landmarks: np.ndarray,
    box: Sequence[float] | None,
    rng: np.random.Generator,
    settings: SelfBlendSettings,
) -> np.ndarray:
    """A randomly scaled, deformed ellipse over the face (float32 0/1), covering jaw and forehead."""
    centre, size, angle = face_geometry(landmarks, box)
    scale = rng.uniform(*settings.region_scale, size=2)
    axes = np.array([0.40, 0.52]) * size * scale
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radius = 1.0 + smooth_noise(rng, len(theta)) * rng.uniform(*settings.deformation) * size / axes.mean()
    local = np.stack([axes[0] * radius * np.cos(theta), axes[1] * radius * np.sin(theta)], axis=1)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    polygon = local @ rotation.T + centre
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(np.float32)


def smooth_noise(rng: np.random.Generator, length: int, harmonics: int = 4) -> np.ndarray:
    """A smooth periodic random signal in about [-1, 1]: low-frequency boundary wobble."""
    t = np.linspace(0, 2 * np.pi, length, endpoint=False)
    signal = sum(rng.normal() / k * np.cos(k * t) + rng.normal() / k * np.sin(k * t) for k in range(1, harmonics + 1))
    return signal / max(np.abs(signal).max(), 1e-6)


def feathered_weights(
    region: np.ndarray, face_size: float, rng: np.random.Generator, settings: SelfBlendSettings
) -> np.ndarray:
    """Blur the region into soft blend weights and scale them by a random peak ratio."""
    sigma = max(0.5, rng.uniform(*settings.blur_sigma) * face_size)
    weights = cv2.GaussianBlur(region, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    weights /= max(float(weights.max()), 1e-6)
    if rng.uniform() >= settings.full_blend_probability:
        weights *= rng.uniform(*settings.blend_ratio)
    weights[weights < NEGLIGIBLE_WEIGHT] = 0.0
    return weights


def transformed_source(
    image: np.ndarray, centre: np.ndarray, face_size: float, rng: np.random.Generator, settings: SelfBlendSettings
) -> np.ndarray:
    """The copy blended back in: colour, brightness/contrast, sharpness and slight scale/translation changes."""
    source = image.astype(np.float32)
    gain = 1.0 + rng.uniform(-settings.colour_shift, settings.colour_shift, size=3)
    offset = rng.uniform(-settings.colour_shift, settings.colour_shift, size=3) * 255
    contrast = 1.0 + rng.uniform(-settings.brightness_contrast, settings.brightness_contrast)
    brightness = rng.uniform(-settings.brightness_contrast, settings.brightness_contrast) * 255
    mean = source.mean(axis=(0, 1))
    source = (source - mean) * contrast + mean + brightness
    source = source * gain + offset
    if rng.uniform() < settings.sharpness_probability:
        blurred = cv2.GaussianBlur(source, (0, 0), sigmaX=rng.uniform(0.5, 1.5))
        amount = rng.uniform(-1.0, 1.0)  # < 0 blurs, > 0 sharpens (unsharp mask)
        source = source + amount * (source - blurred)
    scale = 1.0 + rng.uniform(-settings.scale_jitter, settings.scale_jitter)
    shift = rng.uniform(-settings.shift_jitter, settings.shift_jitter, size=2) * face_size
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, scale)
    matrix[:, 2] += shift
    source = cv2.warpAffine(
        source, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    if rng.uniform() < settings.downsample_probability:
        source = resample_through(source, rng.uniform(*settings.downsample_range))
    return np.clip(source, 0, 255)


def resample_through(image: np.ndarray, factor: float) -> np.ndarray:
    """`image` shrunk to `factor` of its size (area filter) and enlarged back (bilinear): a lower-resolution copy."""
    height, width = image.shape[:2]
    small = (max(8, round(width * factor)), max(8, round(height * factor)))
    reduced = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)


def aligned_donor(
    image: np.ndarray, landmarks: np.ndarray, donor: np.ndarray, donor_landmarks: np.ndarray, region: np.ndarray
) -> np.ndarray:
    """Another person's face (`donor`, RGB) moved onto the face at `landmarks` by the similarity transform of the
    five landmarks, and its colours matched to the target's inside `region` (mean and standard deviation per
    channel), as a face swapper aligns and colour-corrects the face it pastes (float32, the frame's size)."""
    matrix, _ = cv2.estimateAffinePartial2D(
        np.asarray(donor_landmarks, dtype=np.float32).reshape(5, 2), np.asarray(landmarks, dtype=np.float32)
    )
    if matrix is None:
        raise ValueError("no similarity transform maps the donor's landmarks onto the face")
    height, width = image.shape[:2]
    warped = cv2.warpAffine(
        to_rgb_uint8(donor).astype(np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )  # fmt: skip
    inside = region > 0
    target, moved = image[inside].astype(np.float32), warped[inside]
    scale = (target.std(axis=0) + 1.0) / (moved.std(axis=0) + 1.0)
    return np.clip((warped - moved.mean(axis=0)) * scale + target.mean(axis=0), 0, 255).astype(np.float32)


def self_blend(
    image: np.ndarray,
    landmarks: np.ndarray | Sequence,
    box: Sequence[float] | None = None,
    seed: int | np.random.Generator | None = None,
    settings: SelfBlendSettings | None = None,
    donor: tuple[np.ndarray, np.ndarray] | None = None,
) -> SelfBlend:
    """
    A self-blended pseudo-fake of the face at `landmarks` (5 points, detector order) in `image` (a frame or a
    crop; RGB). The output differs from the input only where the returned mask is 1, and the same seed gives
    the same result.

    With `donor` = (image, its face's 5 landmarks), the pasted face is that other person's, aligned and
    colour-matched (:func:`aligned_donor`; Face X-ray's blended images) instead of a copy of the face itself:
    the identity seam of a face swap as well as its blending seam. Mask and source changes are drawn alike.
    """
    settings = settings or SelfBlendSettings()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rgb = to_rgb_uint8(image)
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"self_blend needs five finite (x, y) landmarks, got shape {points.shape}")
    centre, size, _ = face_geometry(points, box)
    region = face_region_mask(rgb.shape[:2], points, box, rng, settings)
    if not region.any():
        raise ValueError("the face region lies outside the image; check the landmarks")
    weights = feathered_weights(region, size, rng, settings)
    base = rgb if donor is None else aligned_donor(rgb, points, donor[0], donor[1], region)
    source = transformed_source(base, centre, size, rng, settings)
    original = rgb.astype(np.float32)
    blended = original + weights[..., None] * (source - original)
    output = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return SelfBlend(image=output, mask=(weights > 0).astype(np.uint8), weights=weights)


__all__ = [
    "NEGLIGIBLE_WEIGHT",
    "SelfBlend",
    "SelfBlendSettings",
    "aligned_donor",
    "face_geometry",
    "resample_through",
    "self_blend",
]
