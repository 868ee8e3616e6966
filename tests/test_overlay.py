"""Tests for mesofcn.reporting.overlay: drawing faces on frames, and atomic PNG / H.264 output."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from mesofcn.detection.compression import video_rate
from mesofcn.detection.image_processing_mesofcn import face_crop_window, heatmap_on_frame
from mesofcn.reporting.overlay import (
    FAKE_COLOR,
    REAL_COLOR,
    OverlayFace,
    VideoOverlayWriter,
    draw_detections,
    label_text,
    pad_to_even,
    write_png,
)

HEIGHT, WIDTH, GREY = 120, 160, 100
WHITE = (255, 255, 255)


def grey_frame(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.full((height, width, 3), GREY, dtype=np.uint8)


def crop_heatmap(top: int, left: int, side: int, value: float, shape=(HEIGHT, WIDTH)) -> np.ndarray:
    """A frame-sized heatmap: ``value`` inside the square crop region, 0 outside."""
    heat = np.zeros(shape, dtype=np.float32)
    heat[top : top + side, left : left + side] = value
    return heat


def colour_mask(image: np.ndarray, colour) -> np.ndarray:
    return (image == np.asarray(colour, dtype=np.uint8)).all(axis=2)


def decode(path: Path) -> tuple[SimpleNamespace, list[np.ndarray], str]:
    """The stream's facts (read while the file is open: PyAV 18 refuses to read a closed container's stream), its
    RGB frames and its codec name."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        facts = SimpleNamespace(
            pix_fmt=stream.codec_context.pix_fmt,
            width=stream.width,
            height=stream.height,
            average_rate=stream.average_rate,
            duration=stream.duration,
            time_base=stream.time_base,
        )
        return facts, frames, stream.codec_context.name


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


# --- draw_detections ----------------------------------------------------------------------------------------


def test_heatmap_blended_in_region_and_far_pixels_unchanged():
    frame = grey_frame()
    before = frame.copy()
    heat = crop_heatmap(top=40, left=30, side=50, value=0.9)
    out = draw_detections(frame, [OverlayFace((35, 45, 40, 40), 0.9, "fake", heat)], heatmap_alpha=0.5)
    np.testing.assert_array_equal(frame, before)  # input untouched
    assert out.dtype == np.uint8 and out.shape == frame.shape
    # Below and right of crop region, box and label: identical.
    np.testing.assert_array_equal(out[95:], frame[95:])
    np.testing.assert_array_equal(out[:, 110:], frame[:, 110:])
    # Inside the crop region (away from the box line): the documented blend of the JET colour.
    jet = cv2.applyColorMap(np.array([[round(0.9 * 255)]], np.uint8), cv2.COLORMAP_JET)[0, 0, ::-1]
    weight = 0.5 * (0.25 + 0.75 * 0.9)
    expected = np.round(GREY + weight * (jet.astype(np.float32) - GREY))
    np.testing.assert_array_equal(out[60, 55], expected)
    np.testing.assert_array_equal(out[87, 32], expected)  # in the crop region, outside the box
    assert out[60, 55, 0] > GREY + 50  # fake heat is red


def test_zero_heat_and_no_heatmap_leave_face_interior_untouched():
    frame = grey_frame()
    faces = [
        OverlayFace((20, 40, 30, 30), 0.1, "real", np.zeros((HEIGHT, WIDTH), np.float32)),
        OverlayFace((90, 40, 30, 30), 0.8, "fake"),
    ]
    out = draw_detections(frame, faces)
    np.testing.assert_array_equal(out[50:65, 25:45], frame[50:65, 25:45])
    np.testing.assert_array_equal(out[50:65, 95:115], frame[50:65, 95:115])


def test_low_heat_region_is_tinted_faintly():
    out = draw_detections(grey_frame(), [OverlayFace((0, 0, 1, 1), 0.0, "real", crop_heatmap(50, 50, 20, 1e-6))])
    changed = np.abs(out[55, 55].astype(int) - GREY)
    assert 0 < changed.max() < 0.45 * 0.3 * 255  # blue tint at weight ~0.25 * alpha
    assert out[55, 55, 2] > GREY  # JET at 0 is blue


def test_box_colour_follows_label():
    frame = grey_frame()
    fake = draw_detections(frame, [OverlayFace((40, 50, 40, 40), 0.93, "fake")])
    real = draw_detections(frame, [OverlayFace((40, 50, 40, 40), 0.12, "real")])
    # Middle of the left edge (x = 40), below any label.
    np.testing.assert_array_equal(fake[70, 40], FAKE_COLOR)
    np.testing.assert_array_equal(real[70, 40], REAL_COLOR)
    np.testing.assert_array_equal(fake[89, 60], FAKE_COLOR)  # bottom edge at y + h - 1
    assert colour_mask(fake, REAL_COLOR).sum() == 0 and colour_mask(real, FAKE_COLOR).sum() == 0


def test_label_text():
    assert label_text(OverlayFace((0, 0, 1, 1), 0.934, "fake")) == "fake 0.93"
    assert label_text(OverlayFace((0, 0, 1, 1), 0.12, "real", track_id=2)) == "#2 real 0.12"


def text_extent(image: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of the pure-white label text pixels."""
    ys, xs = np.nonzero(colour_mask(image, WHITE))
    assert len(xs) > 0, "no label text drawn"
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_label_is_kept_whole_inside_the_frame_at_edges():
    middle = text_extent(draw_detections(grey_frame(), [OverlayFace((60, 60, 30, 30), 0.93, "fake")]))
    width, height = middle[2] - middle[0], middle[3] - middle[1]
    assert middle[3] < 60  # above the box when there is room
    for box in [(150, 100, 30, 30), (-20, -20, 30, 30), (140, -5, 40, 20), (-10, 110, 25, 25)]:
        out = draw_detections(grey_frame(), [OverlayFace(box, 0.93, "fake")])
        x0, y0, x1, y1 = text_extent(out)
        assert (x1 - x0, y1 - y0) == (width, height), box  # the whole text, not clipped
        assert x0 > 0 and x1 < WIDTH - 1 and y0 > 0 and y1 < HEIGHT - 1, box


def label_block_size(text: str) -> tuple[int, int]:
    """(width, height) of the label block of ``text`` on this file's 160x120 frames: OpenCV's Hershey text at scale
    0.35 and thickness 1, plus 1 px of padding on each side. Measured with the installed OpenCV, whose glyph widths
    change between releases ("fake 0.50" is 37 px wide in 5.0 and 42 px in 5.1)."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
    return width + 2, height + baseline + 2


@pytest.mark.parametrize(
    ("box", "room_above"),
    [((60, 60, 30, 30), True), ((30, 2, 60, 60), False)],
    ids=["above-the-box", "inside-the-box-top"],
)
def test_box_and_label_are_drawn_there_and_nothing_else(box, room_above):
    """Exactly the box's 1 px outline and the label block change: the block sits on the box's top-left corner,
    above it or, with no room above, just inside it; red background, white text inside its padding."""
    frame = grey_frame()
    out = draw_detections(frame, [OverlayFace(box, 0.5, "fake")])
    x, y, w, h = box
    outline = np.zeros((HEIGHT, WIDTH), bool)
    outline[y : y + h, x : x + w] = True
    outline[y + 1 : y + h - 1, x + 1 : x + w - 1] = False
    label_width, label_height = label_block_size("fake 0.50")
    assert label_height == 12 and 30 <= label_width <= 50  # a one-line label of 9 characters, whatever the release
    left, top = x, y - label_height if room_above else y
    label = np.zeros((HEIGHT, WIDTH), bool)
    label[top : top + label_height, left : left + label_width] = True
    np.testing.assert_array_equal((out != frame).any(axis=2), outline | label)
    assert colour_mask(out, FAKE_COLOR)[outline & ~label].all()
    text = label & ~colour_mask(out, FAKE_COLOR)
    assert text.sum() > 40 and (out[text] >= FAKE_COLOR).all()  # white, anti-aliased over the red
    ys, xs = np.nonzero(text)
    assert (
        left < xs.min() and xs.max() < left + label_width - 1 and top < ys.min() and ys.max() < top + label_height - 1
    )


def test_heatmap_tints_exactly_the_face_window_inside_the_frame():
    """A face past the left edge: its map, placed by heatmap_on_frame, tints the part of the crop window inside the
    frame (columns 0-31, rows 28-71) and nothing else, each pixel by the documented blend of its heat, cold (blue)
    on the left and hot (red) on the right; the box and label are drawn over it."""
    box, landmarks = (-10, 30, 40, 40), [[0, 40], [20, 40], [10, 50], [2, 60], [18, 60]]
    window = face_crop_window(box, landmarks)
    assert (window.left, window.top, window.side) == (-12, 28, 44)
    patch_map = np.tile(np.linspace(0.1, 1.0, 49, dtype=np.float32), (49, 1))
    heat = heatmap_on_frame(patch_map, window, HEIGHT, WIDTH)
    frame = grey_frame()
    plain = draw_detections(frame, [OverlayFace(box, 0.9, "fake")])
    out = draw_detections(frame, [OverlayFace(box, 0.9, "fake", heat)], heatmap_alpha=0.5)
    in_window = np.zeros((HEIGHT, WIDTH), bool)
    in_window[28:72, 0:32] = True
    drawn = (plain != frame).any(axis=2)  # box and label
    tinted = (out != plain).any(axis=2)
    np.testing.assert_array_equal(tinted, in_window & ~drawn)
    np.testing.assert_array_equal(out[drawn], plain[drawn])
    jet = cv2.applyColorMap(np.round(heat[tinted] * 255).astype(np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    weight = 0.5 * (0.25 + 0.75 * heat[tinted])[:, None]
    np.testing.assert_array_equal(out[tinted], np.round(GREY + weight * (jet - np.float32(GREY))))
    assert out[60, 20, 0] > GREY + 50 > out[60, 0, 0] and out[60, 0, 2] > GREY + 20  # heat 0.84: red; 0.3: blue


def test_face_outside_the_frame_draws_nothing():
    frame = grey_frame()
    np.testing.assert_array_equal(draw_detections(frame, [OverlayFace((500, 500, 40, 40), 0.9, "fake")]), frame)


@pytest.mark.parametrize("size", [(1, 1), (3, 7), (16, 16)])
def test_tiny_frames(size):
    frame = grey_frame(*size)
    faces = [
        OverlayFace((-3, -3, 10, 10), 0.7, "fake", np.ones(size, np.float32), track_id=1),
        OverlayFace((0, 0, 1, 1), 0.2, "real"),
    ]
    out = draw_detections(frame, faces)
    assert out.shape == (*size, 3) and out.dtype == np.uint8
    assert not np.array_equal(out, frame)


def test_grey_and_float_frames_are_accepted():
    grey = np.full((HEIGHT, WIDTH), GREY, np.uint8)
    assert draw_detections(grey, []).shape == (HEIGHT, WIDTH, 3)
    as_float = np.full((3, 5, 3), 0.5, np.float32)  # 3 rows: must not be read as channels-first
    np.testing.assert_array_equal(draw_detections(as_float, []), np.full((3, 5, 3), 128))


def test_invalid_inputs():
    with pytest.raises(ValueError, match="does not match"):
        draw_detections(grey_frame(), [OverlayFace((0, 0, 5, 5), 0.5, "fake", np.ones((10, 10)))])
    with pytest.raises(ValueError, match="heatmap_alpha"):
        draw_detections(grey_frame(), [], heatmap_alpha=1.5)
    with pytest.raises(ValueError, match="label"):
        OverlayFace((0, 0, 5, 5), 0.5, "maybe")
    with pytest.raises(ValueError, match="score"):
        OverlayFace((0, 0, 5, 5), 1.5, "fake")
    with pytest.raises(ValueError, match="box"):
        OverlayFace((0, 0, float("nan"), 5), 0.5, "fake")


# --- write_png ----------------------------------------------------------------------------------------------


def test_write_png_round_trips_and_leaves_no_temporary(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    target = tmp_path / "deep" / "er" / "out.png"
    assert write_png(target, image) == target
    np.testing.assert_array_equal(np.asarray(Image.open(target)), image)
    assert leftovers(target.parent, "out.png") == []
    write_png(target, image[::-1])  # overwrite in place
    np.testing.assert_array_equal(np.asarray(Image.open(target)), image[::-1])
    assert leftovers(target.parent, "out.png") == []


def test_write_png_failure_keeps_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def failing_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_png(target, np.zeros((4, 4, 3), np.uint8))
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path, "out.png") == []


def test_write_png_rejects_bad_arrays_before_creating_anything(tmp_path):
    with pytest.raises(ValueError, match="channels-last"):
        write_png(tmp_path / "bad.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="channels-last"):
        write_png(tmp_path / "bad.png", np.zeros((3, 8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []


# --- VideoOverlayWriter --------------------------------------------------------------------------------------


def test_video_writer_odd_size_frame_count_and_content(tmp_path):
    target = tmp_path / "out" / "clip.mp4"
    frames = []
    for index in range(12):
        frame = np.zeros((17, 33, 3), np.uint8)
        frame[:, 17:] = 40 + 15 * index  # right part brightens frame by frame, to the (odd) edge
        frames.append(frame)
    with VideoOverlayWriter(target, fps=25) as writer:
        for frame in frames:
            writer.write(frame)
        assert writer.frame_size == (17, 33)
    stream, decoded, codec = decode(target)
    assert codec == "h264" and stream.pix_fmt == "yuv420p"
    assert (stream.width, stream.height) == (34, 18) and len(decoded) == 12
    for frame, image in zip(frames, decoded, strict=True):
        assert np.abs(image[:17, :33].astype(int) - frame).mean() < 4
        assert abs(int(image[17, 33, 0]) - int(frame[16, 32, 0])) < 12  # padding repeats the edge pixel
    assert leftovers(target.parent, "clip.mp4") == []


def test_video_writer_fractional_fps(tmp_path):
    target = tmp_path / "ntsc.mp4"
    with VideoOverlayWriter(target, fps=29.97) as writer:
        assert writer.rate == Fraction(2997, 100)
        for _ in range(30):
            writer.write(grey_frame(32, 48))
    stream, decoded, _ = decode(target)
    assert len(decoded) == 30
    assert float(stream.average_rate) == pytest.approx(29.97, abs=0.005)
    assert float(stream.duration * stream.time_base) == pytest.approx(30 / 29.97, abs=0.01)


def test_video_rate():
    assert video_rate(25) == 25
    assert video_rate(30000 / 1001) == Fraction(30000, 1001)
    assert video_rate(Fraction(24000, 1001)) == Fraction(24000, 1001)
    for bad in (0, -1, float("nan"), float("inf"), "30"):
        with pytest.raises(ValueError):
            video_rate(bad)


def test_pad_to_even():
    image = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    padded = pad_to_even(image)
    assert padded.shape == (4, 6, 3)
    np.testing.assert_array_equal(padded[:3, :5], image)
    np.testing.assert_array_equal(padded[3, :5], image[2])
    np.testing.assert_array_equal(padded[:3, 5], image[:, 4])
    assert pad_to_even(padded) is padded


def test_video_writer_exception_leaves_nothing(tmp_path):
    target = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoOverlayWriter(target, fps=25) as writer:
        for _ in range(3):
            writer.write(grey_frame(32, 32))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_video_writer_exception_keeps_existing_file(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"previous run")
    with pytest.raises(RuntimeError), VideoOverlayWriter(target, fps=25) as writer:
        writer.write(grey_frame(32, 32))
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"previous run"
    assert leftovers(tmp_path, "clip.mp4") == []


def test_video_writer_size_change_raises_and_leaves_nothing(tmp_path):
    target = tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match="differs from the first"), VideoOverlayWriter(target, fps=25) as writer:
        writer.write(grey_frame(32, 32))
        writer.write(grey_frame(32, 34))
    assert list(tmp_path.iterdir()) == []


def test_video_writer_without_frames_raises_and_creates_nothing(tmp_path):
    with pytest.raises(ValueError, match="no frames were written"), VideoOverlayWriter(tmp_path / "a.mp4", fps=25):
        pass
    assert list(tmp_path.iterdir()) == []


def test_video_writer_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="must end in"):
        VideoOverlayWriter(tmp_path / "clip.gif", fps=25)
    with pytest.raises(ValueError, match="crf"):
        VideoOverlayWriter(tmp_path / "clip.mp4", fps=25, crf=60)
    with pytest.raises(ValueError, match="fps"):
        VideoOverlayWriter(tmp_path / "clip.mp4", fps=0)
    writer = VideoOverlayWriter(tmp_path / "clip.mp4", fps=25)
    writer.write(grey_frame(8, 8))
    assert writer.close() == tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match="closed"):
        writer.write(grey_frame(8, 8))
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
