"""The fast video path: detection on a shrunk copy, optical-flow following between detections, the background
thread that runs ahead of the network, and per-face maps dropped unless asked for."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from PIL import Image

from mesofcn.cli import main
from mesofcn.detection.face_detection import RetinaFaceDetector, shrink_to_max_side
from mesofcn.detection.prefetch import prefetch
from mesofcn.detection.tracking import box_iou
from mesofcn.detection.video_faces import VideoFaceFinder, follow_face
from tests.conftest import write_video


@pytest.fixture(scope="module")
def photo(face_photo) -> np.ndarray:
    return np.asarray(Image.open(face_photo).convert("RGB").resize((256, 256)))


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


def shifted(image: np.ndarray, dx: float, dy: float, zoom: float = 1.0) -> np.ndarray:
    """`image` moved by (dx, dy) pixels and scaled by `zoom` about its centre (edges replicated)."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, zoom)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class CountingDetector:
    """RetinaFace that records the size of every frame it is shown."""

    name = "counting"

    def __init__(self, inner: RetinaFaceDetector) -> None:
        self.inner, self.calls = inner, []

    def detect(self, image: np.ndarray, max_side: int | None = None):
        self.calls.append((image.shape[:2], max_side))
        return self.inner.detect(image, max_side=max_side)


# --- detection on a shrunk copy ----------------------------------------------------------------------------------


def test_shrink_keeps_small_images_and_maps_large_ones_back():
    image = np.zeros((300, 500, 3), np.uint8)
    same, sx, sy = shrink_to_max_side(image, 640)
    assert same is image and (sx, sy) == (1.0, 1.0)
    small, sx, sy = shrink_to_max_side(image, 250)
    assert small.shape == (150, 250, 3) and sx == pytest.approx(2.0) and sy == pytest.approx(2.0)
    with pytest.raises(ValueError, match="max_side"):
        shrink_to_max_side(image, 0)


def test_detection_on_a_shrunk_copy_comes_back_in_frame_coordinates(detector, photo):
    big = cv2.resize(photo, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    full, shrunk = detector.detect(big), detector.detect(big, max_side=256)
    assert len(full) == len(shrunk) == 1
    assert box_iou(full[0].box, shrunk[0].box) > 0.85
    assert np.abs(full[0].landmarks - shrunk[0].landmarks).max() < 0.06 * full[0].box[2]  # 4x fewer pixels
    # min_face_size counts the frame's pixels, not the shrunk copy's.
    assert RetinaFaceDetector(min_face_size=int(full[0].size) + 50).detect(big, max_side=256) == []


# --- following faces by optical flow -----------------------------------------------------------------------------


@pytest.mark.parametrize(("dx", "dy", "zoom"), [(6.0, -3.0, 1.0), (0.0, 0.0, 1.08), (-4.0, 2.0, 0.95)])
def test_a_moved_face_is_followed(detector, photo, dx, dy, zoom):
    face = detector.detect(photo)[0]
    after = shifted(photo, dx, dy, zoom)
    moved = follow_face(face, grey(photo), grey(after), 1.0)
    centre = np.array([128.0, 128.0])
    expected = (face.landmarks - centre) * zoom + centre + (dx, dy)
    assert moved is not None
    assert np.abs(moved.landmarks - expected).max() < 1.0
    assert moved.box[2] == pytest.approx(face.box[2] * zoom, rel=0.03)
    assert box_iou(moved.box, detector.detect(after)[0].box) > 0.85


def test_a_face_that_vanishes_is_lost(detector, photo):
    face = detector.detect(photo)[0]
    noise = np.random.default_rng(0).integers(0, 256, photo.shape[:2], dtype=np.uint8)
    assert follow_face(face, grey(photo), noise, 1.0) is None


def test_finder_detects_every_n_frames_and_follows_in_between(detector, photo):
    counting = CountingDetector(detector)
    finder = VideoFaceFinder(counting, detect_every=5)
    canvas = np.zeros((256, 352, 3), np.uint8)
    frames = []
    for index in range(12):
        frame = canvas.copy()
        frame[:, 3 * index : 3 * index + 256] = photo
        frames.append(frame)
    found = [finder.faces(index, frame) for index, frame in enumerate(frames)]
    assert finder.detections == len(counting.calls) == 3  # frames 0, 5, 10
    for frame, faces in zip(frames, found, strict=True):
        assert len(faces) == 1
        assert box_iou(faces[0].box, detector.detect(frame)[0].box) > 0.9
    finder.reset()
    assert finder.detections == 0
    finder.faces(0, frames[0])
    finder.faces(1, np.full_like(frames[0], 200))  # a cut: looked at again at once
    assert finder.detections == 2


def test_frames_sampled_far_apart_are_all_detected(detector, photo):
    finder = VideoFaceFinder(CountingDetector(detector), detect_every=5)
    for index in (0, 5, 10):
        finder.faces(index, photo)
    assert finder.detections == 3


def test_detect_size_reaches_the_detector(detector, photo):
    counting = CountingDetector(detector)
    VideoFaceFinder(counting, detect_every=1, detect_size=128).faces(0, photo)
    assert counting.calls == [((256, 256), 128)]


@pytest.mark.parametrize(("every", "size"), [(0, None), (2.5, None), (True, None), (5, 16)])
def test_bad_detection_settings_are_refused(detector, every, size):
    with pytest.raises(ValueError, match="detect_every|detect_size"):
        VideoFaceFinder(detector, detect_every=every, detect_size=size)


# --- the background thread ---------------------------------------------------------------------------------------


def test_prefetch_keeps_order_and_raises_where_the_producer_failed():
    def produce():
        yield from range(5)
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(produce(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))
    with pytest.raises(ValueError, match="depth"):
        list(prefetch([], depth=0))


def test_closing_prefetch_early_stops_and_closes_the_producer():
    closed = threading.Event()

    def produce():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    items = prefetch(produce(), depth=2)
    assert next(items) == 0
    items.close()
    assert closed.wait(5)
    assert not any(thread.name == "mesofcn-prefetch" for thread in threading.enumerate())


# --- the pipeline and the command --------------------------------------------------------------------------------


def test_fast_path_matches_detection_on_every_frame(detect, face_video):
    full = detect(str(face_video), every=1, detect_every=1, prefetch=0)
    fast = detect(str(face_video), every=1)
    assert fast["detection"]["frames"] == 4 and full["detection"]["frames"] == 20  # 20 frames, detector every 5th
    assert (
        fast["detection"] == {"every": 5, "size": None, "frames": 4}
        and fast["analysed_frames"] == full["analysed_frames"]
    )
    assert len(fast["faces"]) == len(full["faces"]) == 20 and len(fast["tracks"]) == 1
    for a, b in zip(full["faces"], fast["faces"], strict=True):
        assert box_iou(a["box"], b["box"]) > 0.9
        assert abs(a["score"] - b["score"]) < 0.02
    assert fast["label"] == full["label"]


def test_pipeline_refuses_bad_detection_settings(detect, face_video):
    with pytest.raises(ValueError, match="detect_every"):
        detect(str(face_video), detect_every=0)
    with pytest.raises(ValueError, match="prefetch"):
        detect(str(face_video), prefetch=-1)


@pytest.mark.parametrize("option", [["--detect-every", "0"], ["--detect-size", "16"]])
def test_cli_refuses_bad_detection_settings(option, face_video, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(face_video), *option])
    assert exit_info.value.code == 2
    assert option[0] in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_clip(shared_data, tmp_path_factory) -> str:
    """The first 30 frames (1.2 s) of FF++ 519, a real 720p interview."""
    from itertools import islice

    from mesofcn.detection.video import FrameSampling, iter_video_frames

    video = shared_data / "ffpp_mini" / "original_sequences" / "youtube" / "c23" / "videos" / "519.mp4"
    frames = [frame.image for frame in islice(iter_video_frames(video, FrameSampling(every=1)), 30)]
    return str(write_video(tmp_path_factory.mktemp("clip") / "519-start.mp4", frames))


def test_fast_path_on_a_real_video_keeps_boxes_and_verdict(detect, real_clip):
    full = detect(real_clip, every=1, detect_every=1, prefetch=0)
    fast = detect(real_clip, every=1)
    assert fast["detection"]["frames"] == 6 and full["detection"]["frames"] == 30
    assert len(fast["faces"]) == len(full["faces"]) == 30
    ious = [box_iou(a["box"], b["box"]) for a, b in zip(full["faces"], fast["faces"], strict=True)]
    assert np.median(ious) > 0.9 and min(ious) > 0.8
    assert fast["label"] == full["label"]
