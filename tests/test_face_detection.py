"""Tests for mesofcn.detection.face_detection on real face photos from the shared test data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import retinaface
from PIL import Image

from mesofcn.detection.face_detection import (
    LANDMARK_NAMES,
    DetectedFace,
    FaceDetector,
    RetinaFaceDetector,
    available_face_detectors,
    load_face_detector,
)
from tests.conftest import shared_data_dir

SHARED_DATA = shared_data_dir()
FACES = SHARED_DATA / "faces"

needs_data = pytest.mark.skipif(
    not FACES.is_dir(),
    reason=f"shared test data not found at {SHARED_DATA} (set MESOFCN_SHARED_DATA to the shared/data folder)",
)


def load_rgb(relative: str) -> np.ndarray:
    """Read a shared-data image as RGB uint8, skipping the test if the file is absent."""
    path = FACES / relative
    if not path.is_file():
        pytest.skip(f"shared test image missing: {path}")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


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
def test_lfw_face_sizes_and_position(detector: RetinaFaceDetector) -> None:
    """LFW crops are 250x250 with the face centred and roughly 90x130 px."""
    image = load_rgb("krasserm_lfw/Tony_Blair/Tony_Blair_0002.jpg")
    (face,) = detector.detect(image)
    x, y, w, h = face.box
    assert abs(x + w / 2 - 125) < 20 and abs(y + h / 2 - 125) < 25
    assert 70 < w < 110 and 100 < h < 160


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


@needs_data
def test_mirrored_image_gives_mirrored_landmarks(detector: RetinaFaceDetector) -> None:
    image = load_rgb("krasserm_lfw/Tony_Blair/Tony_Blair_0002.jpg")
    width = image.shape[1]
    (face,) = detector.detect(image)
    (mirrored,) = detector.detect(np.ascontiguousarray(image[:, ::-1]))
    # x -> width - x, and image-left/right swap: eyes 0<->1, mouth corners 3<->4, nose stays.
    expected = face.landmarks[[1, 0, 2, 4, 3]].copy()
    expected[:, 0] = width - expected[:, 0]
    assert np.abs(mirrored.landmarks - expected).max() < 3.0
    x, y, w, h = face.box
    mx, my, mw, mh = mirrored.box
    assert abs((width - (mx + mw)) - x) < 3 and abs(my - y) < 3 and abs(mw - w) < 3 and abs(mh - h) < 3


@needs_data
def test_non_contiguous_view_gives_same_result(detector: RetinaFaceDetector) -> None:
    image = load_rgb("krasserm_lfw/Tony_Blair/Tony_Blair_0003.jpg")
    view = image[:, ::-1]
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
    ],
    ids=["black", "grey", "noise", "one-pixel"],
)
def test_no_face_in_blank_images(detector: RetinaFaceDetector, image: np.ndarray) -> None:
    assert detector.detect(image) == []


# --- settings ----------------------------------------------------------------------------------------------


@needs_data
def test_min_score_filters(detector: RetinaFaceDetector) -> None:
    image = load_rgb("facenet_pytorch/multiface.jpg")
    all_faces = detector.detect(image)
    threshold = float(np.median([f.score for f in all_faces]))
    strict = RetinaFaceDetector(min_score=threshold, num_threads=1).detect(image)
    expected = [f for f in all_faces if f.score > threshold]
    assert 0 < len(strict) < len(all_faces)
    assert [f.box for f in strict] == [f.box for f in expected]


@needs_data
def test_min_face_size_filters(detector: RetinaFaceDetector) -> None:
    image = load_rgb("facenet_pytorch/multiface.jpg")
    all_faces = detector.detect(image)
    threshold = 36  # the six faces measure 32.8 to 41.3 px on their smaller side
    large = RetinaFaceDetector(min_face_size=threshold, num_threads=1).detect(image)
    expected = [f for f in all_faces if min(f.box[2], f.box[3]) >= threshold]
    assert 0 < len(large) < len(all_faces)
    assert [f.box for f in large] == [f.box for f in expected]
    lfw = load_rgb("krasserm_lfw/Tony_Blair/Tony_Blair_0002.jpg")
    assert RetinaFaceDetector(min_face_size=200).detect(lfw) == []


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


@needs_data
def test_owns_its_session_and_leaves_package_global_alone() -> None:
    before = retinaface.ONNX_SESSION
    image = load_rgb("krasserm_lfw/Tony_Blair/Tony_Blair_0004.jpg")
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
