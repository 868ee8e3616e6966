"""Self-blended pseudo-fakes: the mask is exactly where the image may change, inside the face, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from mesofcn.data.blending import SelfBlendSettings, face_geometry, self_blend

# A 200x240 frame with a face box (x, y, w, h) and five landmarks in detector order.
BOX = (70.0, 50.0, 100.0, 120.0)
LANDMARKS = np.array([[100, 95], [140, 95], [120, 120], [104, 145], [136, 145]], dtype=np.float32)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = rng.integers(40, 215, (25, 30, 3)).astype(np.uint8)
    import cv2

    return cv2.resize(smooth, (240, 200), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("seed", range(8))
def test_pixels_outside_the_mask_are_identical(frame, seed):
    blend = self_blend(frame, LANDMARKS, BOX, seed=seed)
    outside = blend.mask == 0
    assert (blend.image[outside] == frame[outside]).all()
    changed = (blend.image != frame).any(axis=2)
    assert changed[blend.mask == 1].mean() > 0.3  # the blend does change the face
    assert set(np.unique(blend.mask)) == {0, 1}


@pytest.mark.parametrize("seed", range(8))
def test_mask_is_non_empty_and_inside_the_face_region(frame, seed):
    blend = self_blend(frame, LANDMARKS, BOX, seed=seed)
    ys, xs = np.nonzero(blend.mask)
    assert len(ys) > 0.3 * BOX[2] * BOX[3]
    x, y, w, h = BOX
    margin = 0.35
    assert xs.min() >= x - margin * w and xs.max() <= x + (1 + margin) * w
    assert ys.min() >= y - margin * h and ys.max() <= y + (1 + margin) * h
    # It covers the landmarks (eyes, nose, mouth).
    assert all(blend.mask[int(py), int(px)] for px, py in LANDMARKS)


def test_same_seed_same_output_and_other_seeds_differ(frame):
    a = self_blend(frame, LANDMARKS, BOX, seed=7)
    b = self_blend(frame, LANDMARKS, BOX, seed=7)
    c = self_blend(frame, LANDMARKS, BOX, seed=8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, c.mask)


def test_works_on_a_128px_crop_with_crop_landmarks(frame):
    from mesofcn import crop_face

    crop, _, window = crop_face(frame, BOX, LANDMARKS)
    scale = 128 / window.side
    crop_landmarks = (LANDMARKS - [window.left, window.top]) * scale
    blend = self_blend(crop, crop_landmarks, seed=1)
    assert blend.image.shape == (128, 128, 3) and blend.mask.any()
    assert (blend.image[blend.mask == 0] == crop[blend.mask == 0]).all()


def test_zero_transformation_changes_nothing(frame):
    still = SelfBlendSettings(
        colour_shift=0.0, brightness_contrast=0.0, scale_jitter=0.0, shift_jitter=0.0, sharpness_probability=0.0
    )
    blend = self_blend(frame, LANDMARKS, BOX, seed=3, settings=still)
    assert np.abs(blend.image.astype(int) - frame.astype(int)).max() <= 1


def test_face_geometry_follows_the_eye_line():
    centre, size, angle = face_geometry(LANDMARKS, BOX)
    assert abs(angle) < 1e-9 and 90 < size < 130 and 115 < centre[0] < 125
    rotated = LANDMARKS[:, ::-1].copy()  # swap x/y: a face lying on its side
    assert abs(abs(face_geometry(rotated)[2]) - np.pi / 2) < 1e-6


def test_bad_landmarks_raise(frame):
    with pytest.raises(ValueError, match="five finite"):
        self_blend(frame, LANDMARKS[:3], BOX)
    with pytest.raises(ValueError, match="outside the image"):
        self_blend(frame, LANDMARKS + 5000, seed=0)
