"""`mesofcn detect` on the five FaceForensics++ c23 videos of the shared `ffpp_mini` set: faces are found in
(nearly) every analysed frame, one track follows the speaker, and only the speaker's track may decide the verdict
(not the faces on the screen behind him, nor brief false detections on the background).

The default sampling (every 5th frame, 489 frames) took about 115 s on 2 busy cores, over the 90 s budget, so
these tests analyse every 10th frame (about 245 frames) instead. Skipped when the shared data is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from mesofcn.cli import EXIT_OK, main
from mesofcn.detection.tracking import DEFAULT_MIN_FACE_FRACTION, DEFAULT_MIN_TRACK_SHARE
from mesofcn.detection.video import FrameSampling, iter_video_frames

VIDEO_NAMES = ["004.mp4", "004_982.mp4", "519.mp4", "519_515.mp4", "750_743.mp4"]


@pytest.fixture(scope="module")
def reports(shared_data, checkpoint_dir, tmp_path_factory) -> dict[str, dict]:
    """One `mesofcn detect --every 10` run over every ffpp_mini video; reports by file name."""
    videos = sorted((shared_data / "ffpp_mini").glob("**/*.mp4"))
    assert sorted(video.name for video in videos) == VIDEO_NAMES
    json_path = tmp_path_factory.mktemp("ffpp_mini_reports") / "reports.json"
    argv = ["detect", *videos, "--model", checkpoint_dir, "--every", 10, "--json", json_path, "--quiet"]
    assert main([str(a) for a in argv]) == EXIT_OK
    return {Path(report["path"]).name: report for report in json.loads(json_path.read_text())}


@pytest.mark.parametrize("name", VIDEO_NAMES)
def test_faces_in_nearly_every_frame_and_one_track_follows_the_speaker(reports, name):
    report = reports[name]
    assert "error" not in report, report.get("error")
    assert report["media"] == "video" and report["sampling"] == {"mode": "every", "every": 10}
    analysed = report["frames_analysed"]
    assert analysed >= 30
    with_faces = {frame["index"] for track in report["tracks"] for frame in track["frames"]}
    assert all(index % 10 == 0 for index in with_faces)
    assert len(with_faces) >= 0.95 * analysed, (len(with_faces), analysed)
    # Single-speaker videos: other faces (e.g. one on a screen behind the speaker in 004) form their own tracks.
    longest = max(report["tracks"], key=lambda track: track["num_frames"])
    assert longest["num_frames"] >= 0.9 * analysed, [track["num_frames"] for track in report["tracks"]]
    assert len({frame["index"] for frame in longest["frames"]}) == longest["num_frames"]  # one face per frame


@pytest.mark.parametrize("name", VIDEO_NAMES)
def test_only_the_speaker_may_decide_the_verdict(reports, name):
    report = reports[name]
    speaker = max(report["tracks"], key=lambda track: track["num_frames"])
    assert speaker["eligible"] and speaker["share"] >= 0.9
    assert report["verdict_track"] == speaker["id"] and report["score"] == speaker["score"]
    assert report["verdict_rule"] == {
        "min_face_fraction": DEFAULT_MIN_FACE_FRACTION,
        "min_track_share": DEFAULT_MIN_TRACK_SHARE,
        "fallback": False,
    }
    others = [track for track in report["tracks"] if track["id"] != speaker["id"]]
    assert not any(track["eligible"] for track in others), [(t["face_size"], t["share"]) for t in others]


def test_screen_insets_behind_the_presenter_are_not_eligible(reports):
    """004 shows pictures on a screen behind the presenter. In the original one of them (a face 85 % the size of
    his) covers 32 % of the analysed frames: too short. In the NeuralTextures copy a small face on it covers 55 %:
    too small. Both floors are needed."""
    original, speaker = reports["004.mp4"]["tracks"], reports["004.mp4"]["verdict_track"]
    big_inset = max((track for track in original if track["id"] != speaker), key=lambda track: track["share"])
    speaker_size = next(track["face_size"] for track in original if track["id"] == speaker)
    assert big_inset["face_size"] > 0.75 * speaker_size and 0.25 < big_inset["share"] < DEFAULT_MIN_TRACK_SHARE
    manipulated, speaker = reports["004_982.mp4"]["tracks"], reports["004_982.mp4"]["verdict_track"]
    small_inset = max((track for track in manipulated if track["id"] != speaker), key=lambda track: track["share"])
    speaker_size = next(track["face_size"] for track in manipulated if track["id"] == speaker)
    assert small_inset["share"] > 0.5 and small_inset["face_size"] < 0.25 * speaker_size
    assert not big_inset["eligible"] and not small_inset["eligible"]


FLICKER_CLIP = (295, 325)  # frames of 519.mp4 around a false detection on the map behind the anchor (306-309)


@pytest.fixture(scope="module")
def clip_with_flicker(shared_data, tmp_path_factory) -> Path:
    """Frames 295-324 of the real 519.mp4, losslessly re-encoded (FFV1: decoded frames kept bit for bit)."""
    source = shared_data / "ffpp_mini" / "original_sequences" / "youtube" / "c23" / "videos" / "519.mp4"
    path = tmp_path_factory.mktemp("clip_519") / "519_frames_295_324.mkv"
    start, stop = FLICKER_CLIP
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.height, stream.width, stream.pix_fmt = 480, 640, "bgr0"
        for frame in iter_video_frames(source, FrameSampling(every=1)):
            if frame.index >= stop:
                break
            if frame.index >= start:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame.image, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_a_brief_false_detection_on_the_background_does_not_decide(detect, clip_with_flicker):
    """At --every 1 a patch of the map behind the anchor of 519 (real) is taken for a face, bigger than his, in 4
    consecutive frames: the former rule (any track seen in 3 frames) let such a track make the video fake. The
    detector runs on every frame here (`detect_every=1`): the default, every 5th frame, happens not to see it."""
    report = detect(str(clip_with_flicker), every=1, detect_every=1)
    assert report["frames_analysed"] == FLICKER_CLIP[1] - FLICKER_CLIP[0]
    speaker = max(report["tracks"], key=lambda track: track["num_frames"])
    assert speaker["share"] == 1.0 and speaker["eligible"] and report["verdict_track"] == speaker["id"]
    flickers = [track for track in report["tracks"] if track["id"] != speaker["id"]]
    assert flickers and max(track["num_frames"] for track in flickers) >= 3
    assert max(track["face_size"] for track in flickers) > speaker["face_size"]  # bigger: the size floor alone fails
    assert all(track["share"] < 0.2 and not track["eligible"] for track in flickers)
