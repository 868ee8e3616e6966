"""`mesofcn detect --plot`: the P(fake)-over-time figure of a video, its file naming, and bad output paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mesofcn.cli import EXIT_OK, EXIT_USAGE, main
from mesofcn.reporting.figures import PALETTE, TIMELINE_SIZE, nice_ticks, track_timeline_figure
from tests.conftest import write_video


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def color_pixels(image: np.ndarray, color) -> int:
    return int(np.all(np.abs(image.astype(int) - np.array(color)) <= 10, axis=-1).sum())


def video_report(tracks: list[dict], verdict_track: int | None = None) -> dict:
    return {
        "path": "/videos/clip.mp4",
        "media": "video",
        "label": "fake" if verdict_track is not None else "no_face",
        "score": 0.8 if verdict_track is not None else None,
        "threshold": 0.5,
        "verdict_track": verdict_track,
        "duration": 4.0,
        "tracks": tracks,
    }


def track(track_id: int, times, scores) -> dict:
    return {"id": track_id, "frames": [{"time": t, "score": s} for t, s in zip(times, scores, strict=True)]}


def test_figure_draws_one_line_per_track_with_two_frames_and_thickens_the_decider():
    report = video_report(
        [
            track(0, [0.0, 1.0, 2.0, 3.0], [0.1, 0.2, 0.15, 0.1]),
            track(1, [0.5, 1.5, 2.5, 3.5], [0.7, 0.8, 0.9, 0.8]),
            track(2, [2.0], [0.95]),  # seen in one frame: no line
        ],
        verdict_track=1,
    )
    image = track_timeline_figure(report)
    assert image.shape == (TIMELINE_SIZE[1], TIMELINE_SIZE[0], 3) and image.dtype == np.uint8
    first, second, third = (color_pixels(image, PALETTE[index]) for index in range(3))
    assert first > 200 and second > first  # the deciding track is drawn thicker
    assert third == 0  # only two tracks are drawn


def test_figure_of_a_video_without_tracks_is_still_a_framed_plot():
    image = track_timeline_figure(video_report([]), size=(640, 320))
    assert image.shape == (320, 640, 3)
    assert (image < 128).any(axis=-1).mean() > 0.01  # axes, ticks, threshold and the note


def test_nice_ticks_end_at_a_round_value_at_or_above_the_maximum():
    assert nice_ticks(0.76) == (0.8, [0.0, 0.2, 0.4, 0.6, 0.8])
    assert nice_ticks(9.7) == (10.0, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0])
    assert nice_ticks(0.0)[0] == 1.0


def assert_plot_png(path, drawn_tracks: bool) -> None:
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (TIMELINE_SIZE[1], TIMELINE_SIZE[0], 3)
    assert (image < 128).any(axis=-1).mean() > 0.01, "blank plot"
    assert (color_pixels(image, PALETTE[0]) > 100) == drawn_tracks


def test_plot_of_a_face_video_and_a_notice_for_an_image(capsys, tmp_path, fake_checkpoint, face_video, face_photo):
    out_dir = tmp_path / "plots"
    report_path = tmp_path / "r.json"
    code, out, err = run(
        capsys,
        "detect",
        face_video,
        face_photo,
        "--model",
        fake_checkpoint,
        "--every",
        2,
        "--plot",
        out_dir,
        "--json",
        report_path,
        "--quiet",
    )
    assert code == EXIT_OK, err
    plot = out_dir / (face_video.stem + ".png")
    assert_plot_png(plot, drawn_tracks=True)
    assert sorted(p.name for p in out_dir.iterdir()) == [plot.name]  # no plot for the image, no temporary files
    notices = [line for line in err.splitlines() if "no time axis" in line]
    assert len(notices) == 1 and str(face_photo) in notices[0]
    video_report_, image_report = json.loads(report_path.read_text())
    assert video_report_["plot"] == str(plot) and "plot" not in image_report


def test_plot_of_one_video_is_the_file_named(capsys, tmp_path, checkpoint_dir):
    frames = [np.full((64, 96, 3), 30 + 5 * i, dtype=np.uint8) for i in range(12)]
    video = write_video(tmp_path / "blank.mp4", frames)
    target = tmp_path / "out" / "timeline.png"
    code, out, err = run(capsys, "detect", video, "--model", checkpoint_dir, "--plot", target, "--quiet")
    assert code == EXIT_OK, err
    assert_plot_png(target, drawn_tracks=False)  # no face: axes, threshold and a note, no line
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


@pytest.mark.parametrize("case", ["file_for_several", "wrong_extension", "parent_is_a_file", "folder_for_one"])
def test_bad_plot_paths_fail_in_one_line_before_any_work(capsys, tmp_path, checkpoint_dir, case):
    inputs = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    a_file = tmp_path / "taken.png"
    a_file.write_bytes(b"x")
    if case == "file_for_several":
        out, phrase = a_file, "is a file"
    elif case == "wrong_extension":
        inputs, out, phrase = inputs[:1], tmp_path / "plot.jpg", "must end in .png"
    elif case == "parent_is_a_file":
        inputs, out, phrase = inputs[:1], a_file / "plot.png", "not a folder"
    else:
        inputs, out, phrase = inputs[:1], tmp_path / "plots.png", "is a folder"
        out.mkdir()
    code, stdout, err = run(capsys, "detect", *inputs, "--model", checkpoint_dir, "--plot", out, "--quiet")
    assert code == EXIT_USAGE and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --plot") and str(out) in lines[0] and phrase in lines[0]
