"""Face detection, tracking and `mesofcn detect` on synthetic inputs built from scikit-image's astronaut photo.

The photo (`skimage.data.astronaut`, public domain, NASA) ships with scikit-image, so these tests need no shared
data. In the 512x512 original the detector finds one face at about (178, 57, 95, 120).
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mesofcn import __version__, crop_face
from mesofcn.cli import EXIT_OK, main
from mesofcn.detection.face_detection import RetinaFaceDetector
from mesofcn.detection.pipeline_mesofcn import unwrap
from mesofcn.detection.tracking import DEFAULT_MIN_FACE_FRACTION, DEFAULT_MIN_TRACK_SHARE
from tests.conftest import write_video

skimage_data = pytest.importorskip("skimage.data")

CANVAS_HEIGHT, CANVAS_WIDTH = 320, 384
BACKGROUND = (40, 90, 140)
NUM_FRAMES = 25
DRIFT_PER_FRAME = 3  # pixels per frame for the moving-face video


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


@pytest.fixture(scope="module")
def head(astronaut) -> np.ndarray:
    """The astronaut's head and some context, shrunk to 114x126 (its face becomes about 56x68 px)."""
    region = np.ascontiguousarray(astronaut[17:227, 130:320])
    return np.asarray(Image.fromarray(region).resize((114, 126), resample=Image.BILINEAR))


def canvas() -> np.ndarray:
    return np.full((CANVAS_HEIGHT, CANVAS_WIDTH, 3), BACKGROUND, dtype=np.uint8)


def paste(frame: np.ndarray, patch: np.ndarray, top: int, left: int) -> np.ndarray:
    frame[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return frame


@pytest.fixture(scope="module")
def videos(tmp_path_factory, head) -> dict[str, Path]:
    """Moving face, two faces and no face: 25 frames each at 25 fps, 384x320."""
    folder = tmp_path_factory.mktemp("synthetic_videos")
    moving = [paste(canvas(), head, 90, 40 + DRIFT_PER_FRAME * i) for i in range(NUM_FRAMES)]
    two = [paste(paste(canvas(), head, 40, 20), head[:, ::-1], 150, 250) for _ in range(NUM_FRAMES)]
    flat = [np.full((CANVAS_HEIGHT, CANVAS_WIDTH, 3), (10 * i, 200 - 5 * i, 90), dtype=np.uint8) for i in range(20)]
    return {
        "moving": write_video(folder / "moving.mp4", moving),
        "two": write_video(folder / "two.mp4", two),
        "none": write_video(folder / "none.mp4", flat),
    }


# --- RetinaFace on stills -------------------------------------------------------------------------------------


def test_one_face_with_landmarks_in_image_order(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    x, y, w, h = face.box
    assert face.score > 0.99
    assert 160 < x < 200 and 40 < y < 75 and 80 < w < 115 and 100 < h < 140, face.box
    (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = face.landmarks.tolist()
    assert lex < rex and lmx < rmx  # image-left before image-right
    assert max(ley, rey) < ny < min(lmy, rmy)  # eyes above the nose above the mouth corners
    assert lex < nx < rex
    points = face.landmarks
    assert (points[:, 0] > x).all() and (points[:, 0] < x + w).all()
    assert (points[:, 1] > y).all() and (points[:, 1] < y + h).all()


def test_mirrored_image_mirrors_box_and_swaps_landmark_rows(detector, astronaut):
    width = astronaut.shape[1]
    (face,) = detector.detect(astronaut)
    (mirrored,) = detector.detect(np.ascontiguousarray(astronaut[:, ::-1]))
    x, y, w, h = face.box
    mx, my, mw, mh = mirrored.box
    assert abs(mx - (width - x - w)) < 3 and abs(my - y) < 3 and abs(mw - w) < 3 and abs(mh - h) < 3
    # Mirror the mirrored landmarks back: rows 0<->1 and 3<->4 swap, the nose stays.
    back = mirrored.landmarks[[1, 0, 2, 4, 3]].copy()
    back[:, 0] = width - back[:, 0]
    assert np.abs(back - face.landmarks).max() < 3, (back, face.landmarks)


def test_face_cut_by_left_edge_is_found_and_cropped_with_zero_padding(detector, astronaut):
    """A third of the face (32 of ~95 px) outside the frame. RetinaFace then boxes only the visible part: x stays
    at the edge (about 0, not -32) and the width shrinks; the crop window, centred on the landmarks, still reaches
    past the edge, so the crop starts with black columns."""
    (full,) = detector.detect(astronaut)
    cut = int(round(full.box[0] + full.box[2] / 3))
    image = np.ascontiguousarray(astronaut[:, cut:])
    faces = detector.detect(image)
    assert len(faces) == 1 and faces[0].score > 0.9
    x, y, w, h = faces[0].box
    assert -2 < x < 3, faces[0].box  # real behaviour: the box is clipped to the visible face, not extrapolated
    assert w < full.box[2] * 0.8 and abs(y - full.box[1]) < 6
    right_eye = faces[0].landmarks[1]
    assert abs(right_eye[0] - (full.landmarks[1][0] - cut)) < 6  # the visible eye stays where it was
    crop, _, window = crop_face(image, faces[0].box, faces[0].landmarks)
    assert window.left < 0
    blank = (crop == 0).all(axis=(0, 2))
    leading = int(np.argmin(blank))  # columns of zeros before the first column with any pixel
    assert leading > 0 and not blank[leading:].any()
    assert abs(leading - round(-window.left * 128 / window.side)) <= 2


def test_two_faces_side_by_side_are_disjoint_and_sorted_by_score(detector, astronaut):
    faces = detector.detect(np.concatenate([astronaut, astronaut], axis=1))
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    (ax, ay, aw, ah), (bx, by, bw, bh) = faces[0].box, faces[1].box
    assert ax + aw <= bx or bx + bw <= ax  # disjoint
    assert {int(ax // 512), int(bx // 512)} == {0, 1}  # one in each half, at the same height and size
    assert abs(ay - by) < 2 and abs(aw - bw) < 2 and abs(ah - bh) < 2


def test_two_faces_of_different_sizes_sorted_by_descending_score(detector, astronaut):
    image = np.full((512, 768, 3), 90, dtype=np.uint8)
    image[:, :512] = astronaut
    image[200:456, 512:768] = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    faces = detector.detect(image)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    big, small = sorted(faces, key=lambda face: face.size, reverse=True)
    assert big.box[0] + big.box[2] < small.box[0]  # the small face lies right of the big one
    assert 0.4 < small.size / big.size < 0.6


# --- The pipeline on videos -----------------------------------------------------------------------------------


def test_moving_face_gives_one_track_that_follows_it(detect, videos):
    report = detect(str(videos["moving"]), every=4)
    assert report["analysed_frames"] == [0, 4, 8, 12, 16, 20, 24]
    assert report["frame_size"] == [CANVAS_WIDTH, CANVAS_HEIGHT] and report["fps"] == 25.0
    assert len(report["tracks"]) == 1
    track = report["tracks"][0]
    assert [frame["index"] for frame in track["frames"]] == report["analysed_frames"]
    xs = [frame["box"][0] for frame in track["frames"]]
    assert (np.diff(xs) > 4).all(), xs  # 12 px between samples
    assert abs((xs[-1] - xs[0]) - 24 * DRIFT_PER_FRAME) <= 4, xs


def test_two_faces_give_two_full_tracks_and_fake_checkpoint_says_fake(detect_fake, videos):
    report = detect_fake(str(videos["two"]))
    assert report["sampling"] == {"mode": "every", "every": 5}
    assert report["analysed_frames"] == [0, 5, 10, 15, 20]
    assert len(report["tracks"]) == 2
    for track in report["tracks"]:
        assert [frame["index"] for frame in track["frames"]] == report["analysed_frames"]
        assert track["label"] == "fake" and track["fraction_fake"] == 1.0
    left, right = sorted(report["tracks"], key=lambda track: track["frames"][0]["box"][0])
    assert max(frame["box"][0] for frame in left["frames"]) < 150 < min(frame["box"][0] for frame in right["frames"])
    assert report["label"] == "fake" and abs(report["score"] - 0.98201) < 1e-4
    assert report["verdict_track"] in {track["id"] for track in report["tracks"]}


def test_video_without_faces_says_no_face(detect, videos):
    report = detect(str(videos["none"]))
    assert report["frames_analysed"] == 4 and report["analysed_frames"] == [0, 5, 10, 15]
    assert report["label"] == "no_face" and report["score"] is None and report["verdict_track"] is None
    assert report["tracks"] == [] and report["faces"] == []


# --- Which tracks decide the verdict -----------------------------------------------------------------------------


def resized_head(astronaut, width: int, height: int) -> np.ndarray:
    region = np.ascontiguousarray(astronaut[17:227, 130:320])
    return np.asarray(Image.fromarray(region).resize((width, height), resample=Image.BILINEAR))


@pytest.fixture(scope="module")
def bystanders_video(tmp_path_factory, astronaut) -> Path:
    """25 frames, 640x352: a big main face (box side ~173 px) on the left in every frame, a small inset face
    (~55 px) at the bottom right in every frame, and a mid-size face (~117 px) flickering in frames 9-11 only."""
    main, inset, flicker = (resized_head(astronaut, *size) for size in ((274, 302), (91, 101), (182, 202)))
    frames = []
    for i in range(NUM_FRAMES):
        frame = paste(paste(np.full((352, 640, 3), BACKGROUND, dtype=np.uint8), main, 25, 10), inset, 240, 540)
        frames.append(paste(frame, flicker, 20, 310) if 9 <= i <= 11 else frame)
    return write_video(tmp_path_factory.mktemp("bystanders") / "bystanders.mp4", frames)


def score_faces_by_position(pipe, monkeypatch, score_of_x) -> None:
    """Replace the network's P(fake) of each face by `score_of_x(left edge of its box)`."""
    forward = pipe._forward

    def fixed_scores(model_inputs):
        outputs = forward(model_inputs)
        faces = model_inputs["face"] if isinstance(model_inputs["face"], list) else [model_inputs["face"]]
        scores = [0.0 if face is None else score_of_x(unwrap(face)["box"][0]) for face in faces]
        outputs["p_fake"] = torch.tensor(scores).reshape(outputs["p_fake"].shape)
        return outputs

    monkeypatch.setattr(pipe, "_forward", fixed_scores)


def test_small_inset_and_flicker_do_not_decide_the_verdict(detect, bystanders_video, monkeypatch):
    score_faces_by_position(detect, monkeypatch, lambda x: 0.1 if x < 250 else 0.95 if x < 500 else 0.9)
    report = detect(str(bystanders_video))
    assert report["analysed_frames"] == [0, 5, 10, 15, 20]
    by_x = {round(track["frames"][0]["box"][0], -2): track for track in report["tracks"]}
    assert len(report["tracks"]) == 3, [track["frames"][0]["box"] for track in report["tracks"]]
    main, flicker, inset = by_x[100], by_x[400], by_x[600]
    assert main["num_frames"] == inset["num_frames"] == 5 and flicker["num_frames"] == 1
    assert inset["face_size"] < 0.4 * main["face_size"] < flicker["face_size"]
    assert main["share"] == inset["share"] == 1.0 and flicker["share"] == 0.2
    assert main["eligible"] and not inset["eligible"] and not flicker["eligible"]
    assert report["label"] == "real" and report["verdict_track"] == main["id"]
    assert abs(report["score"] - 0.1) < 1e-6
    assert report["verdict_rule"] == {
        "min_face_fraction": DEFAULT_MIN_FACE_FRACTION,
        "min_track_share": DEFAULT_MIN_TRACK_SHARE,
        "fallback": False,
    }
    # The settings are honoured: a lower size floor lets the inset decide, no share floor lets the flicker.
    relaxed = detect(str(bystanders_video), min_face_fraction=0.2)
    assert relaxed["label"] == "fake" and relaxed["verdict_track"] == inset["id"]
    assert relaxed["verdict_rule"]["min_face_fraction"] == 0.2
    anything = detect(str(bystanders_video), min_face_fraction=0.0, min_track_share=0.0)
    assert anything["verdict_track"] == flicker["id"] and abs(anything["score"] - 0.95) < 1e-6


def test_of_two_equal_faces_the_swapped_one_decides(detect, videos, monkeypatch):
    score_faces_by_position(detect, monkeypatch, lambda x: 0.2 if x < 150 else 0.8)
    report = detect(str(videos["two"]))
    assert len(report["tracks"]) == 2 and all(track["eligible"] for track in report["tracks"])
    swapped = max(report["tracks"], key=lambda track: track["frames"][0]["box"][0])
    assert report["label"] == "fake" and report["verdict_track"] == swapped["id"]
    assert abs(report["score"] - 0.8) < 1e-6


def test_verdict_rule_settings_out_of_range_are_refused(detect, videos):
    with pytest.raises(ValueError, match="min_track_share"):
        detect(str(videos["two"]), min_track_share=1.5)


# --- The command line -----------------------------------------------------------------------------------------


def decode_all(path: Path) -> tuple[int, set[tuple[int, int]]]:
    """Number of decoded frames and the set of their (width, height)."""
    sizes, count = set(), 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            count += 1
            sizes.add((frame.width, frame.height))
    return count, sizes


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_box(box, width: int, height: int) -> None:
    assert isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)
    x, y, w, h = box
    assert w > 0 and h > 0 and -w < x < width and -h < y < height


def test_cli_json_report_and_overlay_on_two_face_video(capsys, tmp_path, fake_checkpoint, videos):
    video = videos["two"]
    json_path, overlay_path = tmp_path / "report.json", tmp_path / "overlay.mp4"
    argv = ["detect", video, "--model", fake_checkpoint, "--json", json_path, "--overlay", overlay_path, "--quiet"]
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert out.strip().startswith(f"{video}: FAKE  P(fake)=0.98  10 faces in 2 tracks, 5 frames analysed")

    reports = json.loads(json_path.read_text())
    assert isinstance(reports, list) and len(reports) == 1
    report = reports[0]
    expected_keys = {
        "path", "media", "label", "score", "threshold", "verdict_track", "verdict_rule", "frames_analysed",
        "frame_size", "fps", "duration", "sampling", "limits", "detection", "tracks", "model", "detector",
        "mesofcn_version", "elapsed_seconds", "overlay",
    }  # fmt: skip
    assert set(report) == expected_keys
    assert report["path"] == str(video) and report["media"] == "video"
    assert report["label"] == "fake" and is_number(report["score"]) and 0.5 <= report["score"] <= 1.0
    assert report["score"] == round(report["score"], 4)
    assert report["threshold"] == 0.5
    assert report["verdict_rule"] == {"min_face_fraction": 0.5, "min_track_share": 0.35, "fallback": False}
    assert report["frames_analysed"] == 5 and isinstance(report["frames_analysed"], int)
    assert report["frame_size"] == [CANVAS_WIDTH, CANVAS_HEIGHT]
    assert report["fps"] == 25.0
    assert is_number(report["duration"]) and abs(report["duration"] - NUM_FRAMES / 25) < 0.05
    assert report["sampling"] == {"mode": "every", "every": 5}
    assert report["detection"] == {"every": 5, "size": None, "frames": 5}  # every-5 sampling: every frame
    assert report["model"] == str(fake_checkpoint) and report["detector"] == "retinaface-mobilenet0.25"
    assert report["mesofcn_version"] == __version__
    assert is_number(report["elapsed_seconds"]) and 0 < report["elapsed_seconds"] < 120
    assert report["overlay"] == str(overlay_path)

    tracks = report["tracks"]
    assert len(tracks) == 2 and len({track["id"] for track in tracks}) == 2
    assert report["verdict_track"] in {track["id"] for track in tracks}
    for track in tracks:
        assert set(track) == {
            "id", "label", "score", "max_score", "fraction_fake", "num_frames", "face_size", "share", "eligible",
            "frames",
        }  # fmt: skip
        assert track["eligible"] is True and track["share"] == 1.0 and 50 < track["face_size"] < 90
        assert isinstance(track["id"], int) and track["label"] == "fake"
        assert 0.5 <= track["score"] <= track["max_score"] <= 1.0
        assert track["fraction_fake"] == 1.0
        assert track["num_frames"] == len(track["frames"]) == 5
        assert [frame["index"] for frame in track["frames"]] == [0, 5, 10, 15, 20]
        for frame in track["frames"]:
            assert set(frame) == {"index", "time", "box", "score"}
            assert isinstance(frame["index"], int) and frame["time"] == round(frame["index"] / 25, 3)
            check_box(frame["box"], CANVAS_WIDTH, CANVAS_HEIGHT)
            assert is_number(frame["score"]) and 0.0 <= frame["score"] <= 1.0
            assert frame["score"] == round(frame["score"], 4)

    assert overlay_path.is_file()
    assert decode_all(overlay_path) == decode_all(video) == (NUM_FRAMES, {(CANVAS_WIDTH, CANVAS_HEIGHT)})
