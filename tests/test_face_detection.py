"""Tests for mesofcn.detection.face_detection: on scikit-image's astronaut (and copies of her flipped, scaled,
rotated, padded, greyed, cut by the frame's edge or pasted five times into one canvas) and its LFW subset in every
checkout, and on more real photos from the shared test data where it is present."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import retinaface
from PIL import Image
from skimage import data

from mesofcn.detection.face_detection import (
    LANDMARK_NAMES,
    DetectedFace,
    FaceDetector,
    RetinaFaceDetector,
    available_face_detectors,
    load_face_detector,
)
from tests.conftest import (
    ASTRONAUT_BOX,
    ASTRONAUT_LANDMARKS,
    ASTRONAUT_SCORE,
    GROUP_COPIES,
    astronaut_face,
    astronaut_group,
    resize_image,
    shared_data_dir,
)

SHARED_DATA = shared_data_dir()
FACES = SHARED_DATA / "faces"

needs_data = pytest.mark.skipif(
    not FACES.is_dir(),
    reason=f"shared test data not found at {SHARED_DATA} (set MESOFCN_SHARED_DATA to the shared/data folder)",
)


def load_file(path: Path) -> np.ndarray:
    """An image file as RGB uint8."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_rgb(relative: str) -> np.ndarray:
    """Read a shared-data image as RGB uint8, skipping the test if the file is absent."""
    path = FACES / relative
    if not path.is_file():
        pytest.skip(f"shared test image missing: {path}")
    return load_file(path)


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector(num_threads=1)


def assert_plausible_face(face: DetectedFace) -> None:
    """Eyes above the mouth, image-left before image-right, nose between, all landmarks inside the box."""
    left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks
    assert left_eye[0] < right_eye[0]
    assert left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert min(left_eye[0], left_mouth[0]) < nose[0] < max(right_eye[0], right_mouth[0])
    x, y, w, h = face.box
    assert np.all(face.landmarks[:, 0] > x) and np.all(face.landmarks[:, 0] < x + w)
    assert np.all(face.landmarks[:, 1] > y) and np.all(face.landmarks[:, 1] < y + h)
    eye_distance = float(np.linalg.norm(right_eye - left_eye))
    assert 0.2 * w < eye_distance < 0.7 * w


def iou(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    width = min(first[0] + first[2], second[0] + second[2]) - max(first[0], second[0])
    height = min(first[1] + first[3], second[1] + second[3]) - max(first[1], second[1])
    overlap = max(width, 0) * max(height, 0)
    return overlap / (first[2] * first[3] + second[2] * second[3] - overlap)


def greyscale(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma, repeated in three channels."""
    return np.repeat(np.round(image @ [0.299, 0.587, 0.114]).astype(np.uint8)[..., None], 3, axis=-1)


def padded(image: np.ndarray) -> np.ndarray:
    """`image` at (x 420, y 300) of a 600x800 black canvas."""
    canvas = np.zeros((600, 800, 3), np.uint8)
    canvas[300:550, 420:670] = image
    return canvas


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated counter-clockwise about its centre (PIL, bilinear, same size, black corners)."""
    return np.asarray(Image.fromarray(image).rotate(degrees, resample=Image.Resampling.BILINEAR))


def rotate_points(points: np.ndarray, degrees: float, side: int = 250) -> np.ndarray:
    """Where `rotated` moves (x, y) points of a `side`-pixel square image."""
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    return (points - side / 2) @ rotation.T + side / 2


class Variant(NamedTuple):
    """A copy of the astronaut and where it moves her points; `order` re-orders the landmarks (a mirror swaps
    image-left and image-right), `box` says whether the box moves with them (not under rotation)."""

    image: Callable[[np.ndarray], np.ndarray]
    points: Callable[[np.ndarray], np.ndarray]
    scale: float = 1.0
    order: tuple[int, ...] = (0, 1, 2, 3, 4)
    box: bool = True
    max_side: int | None = None


VARIANTS = {
    "whole-photo": Variant(lambda face: data.astronaut(), lambda p: p + [100, 16]),
    "padded": Variant(padded, lambda p: p + [420, 300]),
    "greyscale": Variant(greyscale, lambda p: p),
    "mirrored": Variant(lambda face: face[:, ::-1], lambda p: p * [-1, 1] + [250, 0], order=(1, 0, 2, 4, 3)),
    "half-size": Variant(lambda face: resize_image(face, 0.5), lambda p: p * 0.5, scale=0.5),
    "double-size": Variant(lambda face: resize_image(face, 2), lambda p: p * 2, scale=2),
    "double-size-shrunk": Variant(lambda face: resize_image(face, 2), lambda p: p * 2, scale=2, max_side=250),
    "rotated-20": Variant(lambda face: rotated(face, 20), lambda p: rotate_points(p, 20), box=False),
}


# --- the astronaut (no shared data needed) -------------------------------------------------------------------


def test_astronaut_box_landmarks_and_score(detector: RetinaFaceDetector, face_photo) -> None:
    """The known values on the raw crop; the JPEG the other tests use moves them by under half a pixel."""
    (face,) = detector.detect(astronaut_face())
    np.testing.assert_allclose(face.box, ASTRONAUT_BOX, atol=0.05)
    np.testing.assert_allclose(face.landmarks, ASTRONAUT_LANDMARKS, atol=0.05)
    assert face.score == pytest.approx(ASTRONAUT_SCORE, abs=2e-4)
    assert_plausible_face(face)
    (jpeg,) = detector.detect(load_file(face_photo))
    np.testing.assert_allclose(jpeg.box, ASTRONAUT_BOX, atol=0.5)
    np.testing.assert_allclose(jpeg.landmarks, ASTRONAUT_LANDMARKS, atol=0.5)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_face_moves_with_the_image(detector: RetinaFaceDetector, name: str) -> None:
    """Moved, padded, greyed, mirrored, scaled (also found on a shrunk copy with `max_side` and given back in the
    image's own pixels) or rotated: one face, its landmarks where the transform puts the astronaut's, within
    2 px + 5 % of the face's width (measured: at most 4.6 px at double size), its box overlapping the moved box."""
    variant = VARIANTS[name]
    image = np.ascontiguousarray(variant.image(astronaut_face()))
    (face,) = detector.detect(image, max_side=variant.max_side)
    expected = variant.points(np.array(ASTRONAUT_LANDMARKS))[list(variant.order)]
    assert np.abs(face.landmarks - expected).max() < 2 + 0.05 * ASTRONAUT_BOX[2] * variant.scale
    if variant.box:
        x, y, w, h = ASTRONAUT_BOX
        corners = variant.points(np.array([[x, y], [x + w, y + h]]))
        left, top = corners.min(axis=0)
        right, bottom = corners.max(axis=0)
        assert iou(face.box, (left, top, right - left, bottom - top)) > 0.85
    assert face.score > 0.99
    assert_plausible_face(face)


def test_face_cut_by_the_frame_edge_is_found_with_points_past_it(detector: RetinaFaceDetector) -> None:
    """The astronaut with her left 110 px cut off, beside a whole copy: both found, the whole one first. The cut
    face's box starts at the edge, a mouth corner lies left of it (points are not clamped to the image), and its
    image-right eye and mouth corner are where the cut moved them."""
    face = astronaut_face()
    image = np.ascontiguousarray(np.hstack([face[:, 110:], face]))
    whole, cut = detector.detect(image)
    assert whole.score > 0.999 and 0.9 < cut.score < whole.score
    np.testing.assert_allclose(whole.landmarks, np.array(ASTRONAUT_LANDMARKS) + [140, 0], atol=3)
    shifted = np.array(ASTRONAUT_LANDMARKS) - [110, 0]
    np.testing.assert_allclose(cut.landmarks[[1, 4]], shifted[[1, 4]], atol=4)  # measured: 1.1 and 3.2 px
    assert cut.landmarks[3, 0] < 0 < cut.landmarks[0, 0]
    assert -1 < cut.box[0] < 2 and cut.box[0] + cut.box[2] == pytest.approx(sum(ASTRONAUT_BOX[::2]) - 110, abs=4)


def test_five_astronauts_in_one_canvas(detector: RetinaFaceDetector) -> None:
    """Each copy found once, where it was pasted (IoU > 0.8), scores sorted, no duplicate."""
    image, boxes = astronaut_group()
    faces = detector.detect(image)
    assert len(faces) == len(GROUP_COPIES) == 5
    scores = [face.score for face in faces]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.98
    overlaps = np.array([[iou(face.box, box) for box in boxes] for face in faces])
    assert sorted(overlaps.argmax(axis=1)) == [0, 1, 2, 3, 4]
    assert overlaps.max(axis=1).min() > 0.8
    for face in faces:
        assert_plausible_face(face)
    json.dumps([face.to_dict() for face in faces])


def test_lfw_subset_faces_are_found_once_and_other_patches_never(detector: RetinaFaceDetector) -> None:
    """scikit-image's LFW subset: 100 faces of different people and 100 non-face patches, 25x25 grey, each
    enlarged to 100 px in the middle of a 200x200 black canvas. 98 faces are found exactly once; no patch."""
    found = []
    for patch in data.lfw_subset():
        enlarged = Image.fromarray(np.round(patch * 255).astype(np.uint8)).resize((100, 100), Image.Resampling.BICUBIC)
        canvas = np.zeros((200, 200), np.uint8)
        canvas[50:150, 50:150] = np.asarray(enlarged)
        found.append(detector.detect(np.repeat(canvas[..., None], 3, axis=-1)))
    faces, patches = found[:100], found[100:]
    assert sum(len(faces_found) == 1 for faces_found in faces) >= 95
    assert sum(len(faces_found) for faces_found in patches) == 0


# --- real photos (shared data) -----------------------------------------------------------------------------


# --- real photos -------------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(
    "relative",
    [f"krasserm_lfw/Tony_Blair/Tony_Blair_{i:04d}.jpg" for i in range(2, 11)]
    + [f"facenet_pytorch/test_images/{name}/1.jpg" for name in ("angelina_jolie", "kate_siegel", "shea_whigham")],
)
def test_single_face_photo(detector: RetinaFaceDetector, relative: str) -> None:
    image = load_rgb(relative)
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.95
    assert_plausible_face(face)
    x, y, w, h = face.box
    assert x >= 0 and y >= 0 and x + w <= image.shape[1] and y + h <= image.shape[0]
    assert min(w, h) >= 60 and max(w, h) <= 400


@needs_data
def test_face_cut_by_frame_edge_has_negative_x(detector: RetinaFaceDetector) -> None:
    """Tony_Blair_0001 shows a second person cut by the left edge: found, with a box starting left of 0."""
    image = load_rgb("krasserm_lfw/Tony_Blair/Tony_Blair_0001.jpg")
    faces = detector.detect(image)
    assert len(faces) == 2
    central, edge = faces
    assert central.score > edge.score > 0.5
    assert abs(central.box[0] + central.box[2] / 2 - 125) < 20
    assert edge.box[0] < 0 < edge.box[0] + edge.box[2]


@needs_data
def test_landmarks_match_deep3dfacerecon_ground_truth(detector: RetinaFaceDetector) -> None:
    """Compare with the 5-point landmark files shipped with Deep3DFaceRecon (same point order)."""
    folder = FACES / "deep3dfacerecon"
    images = sorted(p for p in folder.glob("*.*") if (folder / "detections" / f"{p.stem}.txt").is_file())
    if not images:
        pytest.skip(f"no Deep3DFaceRecon images with landmark files in {folder}")
    errors = []
    for path in images:
        truth = np.loadtxt(folder / "detections" / f"{path.stem}.txt", dtype=np.float32)
        faces = detector.detect(load_rgb(str(path.relative_to(FACES))))
        nose_x, nose_y = truth[2]
        matching = [
            f for f in faces if f.box[0] < nose_x < f.box[0] + f.box[2] and f.box[1] < nose_y < f.box[1] + f.box[3]
        ]
        assert matching, f"no face found around the annotated nose in {path.name}"
        eye_distance = np.linalg.norm(truth[1] - truth[0])
        errors.append(np.linalg.norm(matching[0].landmarks - truth, axis=1) / eye_distance)
    errors = np.stack(errors)
    assert errors.max() < 0.2  # worst point of the worst image
    assert errors.mean() < 0.08  # measured 0.054 on the 25 images


@needs_data
def test_group_photo(detector: RetinaFaceDetector) -> None:
    image = load_rgb("facenet_pytorch/multiface.jpg")
    faces = detector.detect(image)
    assert len(faces) == 6
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)
    for face in faces:
        assert_plausible_face(face)
        assert 25 < face.size < 60
    centres = np.array([[f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2] for f in faces])
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(faces)) * 1e9
    assert distances.min() > 30  # six different people, no duplicate boxes
    json.dumps([f.to_dict() for f in faces])


def test_non_contiguous_view_gives_same_result(detector: RetinaFaceDetector) -> None:
    view = astronaut_face()[:, ::-1]
    assert not view.flags.c_contiguous
    (a,) = detector.detect(view)
    (b,) = detector.detect(np.ascontiguousarray(view))
    assert a.box == b.box and np.array_equal(a.landmarks, b.landmarks)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((480, 640, 3), np.uint8),
        np.full((300, 300, 3), 128, np.uint8),
        np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
    ],
    ids=["black", "grey", "noise", "one-pixel", "cat", "coffee", "rocket"],
)
def test_no_face_in_images_without_one(detector: RetinaFaceDetector, image: np.ndarray) -> None:
    assert detector.detect(image) == []


# --- settings ----------------------------------------------------------------------------------------------


def test_min_score_filters(detector: RetinaFaceDetector) -> None:
    image, _ = astronaut_group()
    all_faces = detector.detect(image)
    threshold = float(np.median([f.score for f in all_faces]))
    strict = RetinaFaceDetector(min_score=threshold, num_threads=1).detect(image)
    expected = [f for f in all_faces if f.score > threshold]
    assert len(strict) == 2 and len(all_faces) == 5
    assert [f.box for f in strict] == [f.box for f in expected]


def test_min_face_size_filters(detector: RetinaFaceDetector) -> None:
    image, boxes = astronaut_group()
    all_faces = detector.detect(image)
    threshold = 52  # the copies' faces are 92, 74, 60, 46 and 37 px wide (and taller)
    large = RetinaFaceDetector(min_face_size=threshold, num_threads=1).detect(image)
    expected = [f for f in all_faces if min(f.box[2], f.box[3]) >= threshold]
    assert [f.box for f in large] == [f.box for f in expected]
    assert sorted(max(range(5), key=lambda i: iou(f.box, boxes[i])) for f in large) == [0, 1, 2]
    assert RetinaFaceDetector(min_face_size=200).detect(astronaut_face()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_score": -0.1}, "min_score"),
        ({"min_score": 1.5}, "min_score"),
        ({"min_score": "high"}, "min_score"),
        ({"min_face_size": -1}, "min_face_size"),
        ({"min_face_size": 2.5}, "min_face_size"),
        ({"num_threads": 0}, "num_threads"),
        ({"num_threads": True}, "num_threads"),
    ],
)
def test_invalid_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetinaFaceDetector(**kwargs)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((64, 64, 3), np.float32), "dtype uint8"),
        (np.zeros((64, 64), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((64, 64, 4), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((2, 64, 64, 3), np.uint8), r"shape \(H, W, 3\)"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
        ([[[0, 0, 0]]], "numpy array"),
    ],
    ids=["float", "grey-2d", "rgba", "batch", "empty", "list"],
)
def test_invalid_image(detector: RetinaFaceDetector, image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detector.detect(image)  # type: ignore[arg-type]


# --- interface ---------------------------------------------------------------------------------------------


def test_registry() -> None:
    detector = load_face_detector(min_score=0.7, num_threads=1)
    assert isinstance(detector, RetinaFaceDetector) and isinstance(detector, FaceDetector)
    assert detector.name == "retinaface-mobilenet0.25"
    assert detector.min_score == 0.7
    assert isinstance(load_face_detector(detector.name), RetinaFaceDetector)
    assert "retinaface" in available_face_detectors()
    with pytest.raises(ValueError, match="unknown face detector 'mtcnn'; known: .*retinaface"):
        load_face_detector("mtcnn")
    with pytest.raises(TypeError):
        load_face_detector(min_scores=0.7)


def test_owns_its_session_and_leaves_package_global_alone() -> None:
    before = retinaface.ONNX_SESSION
    image = astronaut_face()
    a = RetinaFaceDetector(num_threads=1)
    b = RetinaFaceDetector(num_threads=2, min_score=0.9)
    assert a._session is not b._session
    (face_a,) = a.detect(image)
    (face_b,) = b.detect(image)
    assert face_a.box == face_b.box
    assert retinaface.ONNX_SESSION is before
    # The package's own entry point still works and agrees with ours up to its integer truncation.
    (package_face,) = retinaface.detect_faces(image, score_threshold=0.5)
    assert abs(package_face.x - face_a.box[0]) <= 1 and abs(package_face.width - face_a.box[2]) <= 1


def test_detected_face_value_object() -> None:
    landmarks = [[10.123, 20.0], [30.0, 20.5], [20.0, 30.0], [12.0, 40.0], [28.0, 40.0]]
    face = DetectedFace(box=(-1.234, 5, 40.0, 50.0), landmarks=landmarks, score=np.float32(0.987654))
    assert face.landmarks.dtype == np.float32 and face.landmarks.shape == (5, 2)
    assert not face.landmarks.flags.writeable
    assert face.box == (-1.234, 5.0, 40.0, 50.0) and face.size == 40.0
    as_dict = face.to_dict()
    assert as_dict == {
        "box": [-1.23, 5.0, 40.0, 50.0],
        "landmarks": [[10.12, 20.0], [30.0, 20.5], [20.0, 30.0], [12.0, 40.0], [28.0, 40.0]],
        "score": 0.9877,
    }
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert len(LANDMARK_NAMES) == 5
    with pytest.raises(ValueError, match=r"shape \(5, 2\)"):
        DetectedFace(box=(0, 0, 1, 1), landmarks=np.zeros((68, 2)), score=0.5)
    with pytest.raises(ValueError, match="box"):
        DetectedFace(box=(0, 0, 1), landmarks=np.zeros((5, 2)), score=0.5)  # type: ignore[arg-type]
