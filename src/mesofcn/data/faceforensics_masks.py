"""The manipulation masks of FF++ fakes: FF++'s own mask videos, thresholded, or, for methods that ship none, a
*difference mask* against the aligned original (|fake - original|, thresholded above the background's own
compression noise, cleaned and limited to the face box)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "DIFFERENCE_MIN_THRESHOLD",
    "DIFFERENCE_REGION_SCALE",
    "MASK_VIDEO_THRESHOLD",
    "difference_mask",
    "mask_from_video",
]

#: A mask-video pixel is "manipulated" above this value (any channel). FF++'s masks are 0/255 (Deepfakes) or
#: grey face renders whose darkest pixels are about 25 (NeuralTextures); H.264 ringing stays below it.
MASK_VIDEO_THRESHOLD = 12
#: Difference masks: lowest threshold on the blurred |fake - original|. It is raised to twice the 90th
#: percentile of the difference outside the face region when compression noise there is stronger (originals
#: and fakes encoded at different CRFs); a percentile this low ignores changes outside the face (which
#: NeuralTextures makes) as long as they cover under a tenth of the background.
DIFFERENCE_MIN_THRESHOLD = 15
_NOISE_PERCENTILE, _NOISE_FACTOR = 90, 2.0
#: Difference masks are kept only inside the face box scaled by this factor around its centre. (Not the crop's
#: scale, :data:`~mesofcn.detection.image_processing_mesofcn.DEFAULT_CROP_SCALE`, though both are 1.1: this bounds
#: where a mask may be, whatever crop the dataset is built with.)
DIFFERENCE_REGION_SCALE = 1.1


def difference_mask(fake: np.ndarray, original: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A 0/1 (H, W) manipulation mask from two frame-aligned RGB frames, limited to the face ``box`` (x, y, w, h).

    |fake - original| (max over channels) is blurred at a scale set by the face size, thresholded above
    max(:data:`DIFFERENCE_MIN_THRESHOLD`, twice the 90th percentile outside the face region: compression noise),
    opened (drops specks and edge lines), closed, cut to the face box scaled by
    :data:`DIFFERENCE_REGION_SCALE`, and its regions' holes are filled.
    """
    if fake.shape != original.shape:
        raise ValueError(f"frames differ in size: {fake.shape} vs {original.shape}")
    face_size = max(box[2], box[3])
    difference = cv2.absdiff(fake, original).max(axis=2)
    blur = _odd(face_size / 25)
    difference = cv2.GaussianBlur(difference, (blur, blur), 0)
    region = _box_region(difference.shape, box, DIFFERENCE_REGION_SCALE)
    background = difference[~region]
    noise = _NOISE_FACTOR * float(np.percentile(background, _NOISE_PERCENTILE)) if background.size else 0.0
    threshold = max(DIFFERENCE_MIN_THRESHOLD, noise)
    mask = (difference > threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _disk(face_size / 20))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _disk(face_size / 6))
    mask[~region] = 0
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled


def _odd(size: float) -> int:
    value = max(3, int(round(size)))
    return value + 1 - value % 2


def _disk(size: float) -> np.ndarray:
    side = _odd(size)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def _box_region(shape: tuple[int, int], box: tuple[float, float, float, float], scale: float) -> np.ndarray:
    """Boolean (H, W) array, True inside ``box`` scaled by ``scale`` around its centre."""
    x, y, width, height = box
    center_x, center_y = x + width / 2, y + height / 2
    left, right = int(round(center_x - scale * width / 2)), int(round(center_x + scale * width / 2))
    top, bottom = int(round(center_y - scale * height / 2)), int(round(center_y + scale * height / 2))
    region = np.zeros(shape, dtype=bool)
    region[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
    return region


def mask_from_video(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """0/1 mask of a decoded mask-video frame, resized (nearest) to the video's frame size if it differs."""
    mask = (frame.max(axis=2) > MASK_VIDEO_THRESHOLD).astype(np.uint8)
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask
