"""Tests for mesofcn.detection.video on small videos encoded here with PyAV, plus a few real clips from the shared
data.

Every synthetic frame carries its own index as six black/white vertical stripes (bit 0 leftmost), which
survive lossy compression, so each test can check exactly which frames came back.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import mesofcn.detection.video
from mesofcn.detection.media_files import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_PIXELS,
    MediaError,
    MediaLimits,
    is_image_path,
    is_video_path,
    printable,
)
from mesofcn.detection.video import (
    FrameSampling,
    VideoFrame,
    evenly_spaced_indices,
    iter_video_frames,
    probe_video,
    rotate_upright,
)
from tests.conftest import shared_data_dir

SHARED_DATA = shared_data_dir()

WIDTH, HEIGHT, RATE, NUM_FRAMES = 64, 48, 25, 40
STRIPE = 8  # px per index bit


# --- synthetic videos --------------------------------------------------------------------------------------


def index_image(index: int) -> np.ndarray:
    """64x48 RGB frame showing ``index`` in binary: stripe b (x = 8b..8b+7) is white when bit b is set.

    The right 16 columns hold noise, so that frames take real bytes and truncating a file cuts frames.
    """
    image = np.random.default_rng(index).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for bit in range(6):
        image[:, bit * STRIPE : (bit + 1) * STRIPE] = 255 if index >> bit & 1 else 0
    return image


def read_index(image: np.ndarray) -> int:
    """Inverse of :func:`index_image` on a decoded (lossy) frame."""
    columns = image.mean(axis=(0, 2))
    return sum(1 << bit for bit in range(6) if columns[bit * STRIPE + 2 : bit * STRIPE + 6].mean() > 128)


def encode_video(
    path: Path,
    num_frames: int = NUM_FRAMES,
    codec: str = "mpeg4",
    rotation: float | None = None,
    pts_ms: list[int] | None = None,
    options: dict[str, str] | None = None,
    image_fn=index_image,
) -> Path:
    """Write a small test video; ``pts_ms`` gives variable-rate timestamps in milliseconds."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = 2_000_000
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(image_fn(i), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """40-frame 25 fps test videos in several containers/codecs (mkv has no frame count in its header)."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mp4": encode_video(folder / "mpeg4.mp4"),
        "h264": encode_video(folder / "h264.mp4", codec="libx264"),  # B-frames: decode order != display order
        "mkv": encode_video(folder / "h264.mkv", codec="libx264"),
        "avi": encode_video(folder / "mpeg4.avi"),
    }


def assert_frames(frames: list[VideoFrame], indices: list[int], fps: float = RATE) -> None:
    """Indices, times, shapes and the index drawn into each frame all agree."""
    assert [f.index for f in frames] == indices
    for frame in frames:
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
        assert read_index(frame.image) == frame.index
        assert frame.time == pytest.approx(frame.index / fps, abs=1e-6)


# --- sampling ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("every", [1, 5, 7, 40, 100])
def test_every_kth_frame(videos: dict[str, Path], every: int) -> None:
    frames = list(iter_video_frames(videos["mp4"], FrameSampling(every=every)))
    assert_frames(frames, list(range(0, NUM_FRAMES, every)))


@pytest.mark.parametrize("kind", ["h264", "mkv", "avi"])
def test_every_kth_frame_other_containers(videos: dict[str, Path], kind: str) -> None:
    assert_frames(list(iter_video_frames(videos[kind], FrameSampling(every=3))), list(range(0, NUM_FRAMES, 3)))


def test_default_sampling_is_every_fifth(videos: dict[str, Path]) -> None:
    assert FrameSampling() == FrameSampling(every=5)
    assert_frames(list(iter_video_frames(videos["mp4"])), [0, 5, 10, 15, 20, 25, 30, 35])


@pytest.mark.parametrize("kind", ["mp4", "h264", "mkv", "avi"])
@pytest.mark.parametrize(
    ("num_frames", "expected"),
    [
        (1, [0]),
        (2, [0, 39]),
        (4, [0, 13, 26, 39]),
        (7, [0, 6, 13, 20, 26, 32, 39]),
        (40, list(range(40))),
        (100, list(range(40))),  # more than the video has: every frame once
    ],
)
def test_evenly_spaced_frames(videos: dict[str, Path], kind: str, num_frames: int, expected: list[int]) -> None:
    frames = list(iter_video_frames(videos[kind], FrameSampling(num_frames=num_frames)))
    assert_frames(frames, expected)


def test_evenly_spaced_indices() -> None:
    assert evenly_spaced_indices(40, 4).tolist() == [0, 13, 26, 39]
    assert evenly_spaced_indices(10, 3).tolist() == [0, 4, 9]  # 4.5 rounds half to even
    assert evenly_spaced_indices(3, 10).tolist() == [0, 1, 2]
    assert evenly_spaced_indices(0, 5).tolist() == []
    assert evenly_spaced_indices(1, 1).tolist() == [0]


def test_frame_sampling_validation_and_describe() -> None:
    assert FrameSampling().describe() == {"mode": "every", "every": 5}
    assert FrameSampling(every=2).describe() == {"mode": "every", "every": 2}
    assert FrameSampling(num_frames=32).describe() == {"mode": "evenly", "num_frames": 32}
    assert FrameSampling(num_frames=32).every is None and FrameSampling(num_frames=32).mode == "evenly"
    with pytest.raises(ValueError, match="only one of"):
        FrameSampling(every=5, num_frames=32)
    for bad in (0, -3, 2.5, True, "5"):
        with pytest.raises(ValueError, match="every must be an integer >= 1"):
            FrameSampling(every=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="num_frames must be an integer >= 1"):
            FrameSampling(num_frames=bad)  # type: ignore[arg-type]


def test_iteration_is_lazy_and_can_stop_early(videos: dict[str, Path]) -> None:
    iterator = iter_video_frames(videos["mp4"], FrameSampling(every=1))
    first = next(iterator)
    assert first.index == 0 and read_index(first.image) == 0
    iterator.close()  # closes the container
    with pytest.raises(StopIteration):
        next(iterator)


# --- variable frame rate and rotation ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_uses_timestamps(tmp_path: Path, suffix: str) -> None:
    pts_ms = [0, 40, 80, 200, 210, 220, 500, 540]
    path = encode_video(tmp_path / f"vfr{suffix}", num_frames=len(pts_ms), pts_ms=pts_ms)
    frames = list(iter_video_frames(path, FrameSampling(every=2)))
    assert [f.index for f in frames] == [0, 2, 4, 6]
    assert [read_index(f.image) for f in frames] == [0, 2, 4, 6]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.08, 0.21, 0.5], abs=1e-6)


def quadrant_image(index: int) -> np.ndarray:
    """A dark frame with a bright top-left quadrant: shows which way a rotation went."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[: HEIGHT // 2, : WIDTH // 2] = 255
    return image


def bright_quadrant(image: np.ndarray) -> str:
    h, w = image.shape[0] // 2, image.shape[1] // 2
    means = {
        "top-left": image[:h, :w].mean(),
        "top-right": image[:h, w:].mean(),
        "bottom-left": image[h:, :w].mean(),
        "bottom-right": image[h:, w:].mean(),
    }
    return max(means, key=means.__getitem__)


@pytest.mark.parametrize(
    ("rotation", "size", "quadrant"),
    [
        (0, (HEIGHT, WIDTH), "top-left"),
        (90, (WIDTH, HEIGHT), "bottom-left"),  # counter-clockwise quarter turn
        (-90, (WIDTH, HEIGHT), "top-right"),  # clockwise: what a phone's "rotate=90" tag means
        (180, (HEIGHT, WIDTH), "bottom-right"),
    ],
)
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int, size: tuple[int, int], quadrant: str) -> None:
    path = encode_video(tmp_path / "rotated.mp4", num_frames=5, rotation=rotation, image_fn=quadrant_image)
    info = probe_video(path)
    assert info.rotation == rotation
    assert (info.height, info.width) == size
    frames = list(iter_video_frames(path, FrameSampling(every=2)))
    assert [f.index for f in frames] == [0, 2, 4]
    for frame in frames:
        assert frame.image.shape == (*size, 3)
        assert frame.image.flags.c_contiguous
        assert bright_quadrant(frame.image) == quadrant
        expected = np.rot90(quadrant_image(0), k=rotation // 90)
        assert np.abs(frame.image.astype(int) - expected).mean() < 8


def test_rotate_upright_helper() -> None:
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert rotate_upright(image, 0) is image
    assert rotate_upright(image, 90).tolist() == [[2, 5], [1, 4], [0, 3]]  # counter-clockwise
    assert rotate_upright(image, -90).tolist() == [[3, 0], [4, 1], [5, 2]]  # clockwise
    assert rotate_upright(image, 180).tolist() == [[5, 4, 3], [2, 1, 0]]
    assert rotate_upright(image, -180).tolist() == rotate_upright(image, 180).tolist()
    assert rotate_upright(image, 89.6).tolist() == rotate_upright(image, 90).tolist()


# --- probing -----------------------------------------------------------------------------------------------


def test_probe_video(videos: dict[str, Path]) -> None:
    info = probe_video(videos["mp4"])
    assert info.path == str(videos["mp4"])
    assert (info.width, info.height, info.fps, info.rotation) == (WIDTH, HEIGHT, RATE, 0)
    assert info.num_frames == NUM_FRAMES and not info.num_frames_estimated
    assert info.duration == pytest.approx(NUM_FRAMES / RATE)


def test_probe_video_estimates_count_without_index(videos: dict[str, Path]) -> None:
    info = probe_video(videos["mkv"])  # Matroska stores no frame count
    assert info.num_frames_estimated
    assert abs(info.num_frames - NUM_FRAMES) <= 2
    assert info.fps == RATE


# --- errors ------------------------------------------------------------------------------------------------


def assert_media_error(path: Path, problem: str) -> None:
    """Both entry points fail at the call with ``"<path>: <problem>"``."""
    for call in (probe_video, iter_video_frames):
        with pytest.raises(MediaError, match=problem) as raised:
            call(path)
        assert str(raised.value).startswith(f"{path}: ")
        assert raised.value.path == str(path)
        assert isinstance(raised.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    assert_media_error(tmp_path / "nope.mp4", "file not found")


def test_directory(tmp_path: Path) -> None:
    assert_media_error(tmp_path, "is a directory")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    assert_media_error(path, r"file is empty \(0 bytes\)")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    assert_media_error(path, "not a readable video file")


def test_symbolic_link_loop(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").symlink_to(tmp_path / "b.mp4")
    (tmp_path / "b.mp4").symlink_to(tmp_path / "a.mp4")
    assert_media_error(tmp_path / "a.mp4", "symbolic link loop")


def test_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    """Opening a FIFO for reading would block until a writer comes: it is refused from its file type alone."""
    path = tmp_path / "pipe.mp4"
    os.mkfifo(path)
    assert_media_error(path, "not a regular file")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file without read permission (simulated: root reads everything) is one clear error, not a traceback."""
    path = encode_video(tmp_path / "secret.mp4", num_frames=2)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    assert_media_error(path, r"cannot read file \(Permission denied\)")


def test_a_newline_in_a_path_stays_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.mp4"
    with pytest.raises(MediaError) as raised:
        probe_video(path)
    message = str(raised.value)
    assert "\n" not in message and message == f"{tmp_path}/two\\nlines.mp4: file not found"
    assert raised.value.path == str(path)  # the real path is kept
    assert printable("visage-é顔 a b.mp4") == "visage-é顔 a b.mp4" and printable("a\tb\r") == "a\\tb\\r"


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    assert_media_error(path, r"no video stream \(streams: audio\)")


def truncate(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def decode_all(path: Path, sampling: FrameSampling) -> tuple[list[VideoFrame], MediaError | None]:
    """Collect frames until the end or a MediaError; any other exception fails the test."""
    frames: list[VideoFrame] = []
    try:
        for frame in iter_video_frames(path, sampling):
            frames.append(frame)
    except MediaError as error:
        return frames, error
    return frames, None


def test_truncated_mp4_with_index_at_end(videos: dict[str, Path], tmp_path: Path) -> None:
    """PyAV writes the MP4 index (moov) last, so half a file has no index: rejected when opened."""
    path = truncate(videos["mp4"], tmp_path / "half.mp4")
    assert_media_error(path, "not a readable video file")


@pytest.mark.parametrize("kind", ["faststart", "mkv", "avi"])
def test_truncated_file_never_raises_a_bare_exception(
    videos: dict[str, Path], tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    if kind == "faststart":  # index first, as phones and web encoders write MP4s
        source = encode_video(tmp_path / "full.mp4", options={"movflags": "faststart"})
    else:
        source = videos[kind]
    path = truncate(source, tmp_path / f"half{source.suffix}")
    with caplog.at_level(logging.WARNING, logger="mesofcn.detection.video"):
        frames, error = decode_all(path, FrameSampling(every=1))
    assert 0 < len(frames) < NUM_FRAMES
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(read_index(f.image) == f.index for f in frames[:-1])  # the last one may be partly concealed
    if error is not None:
        assert "corrupt: decoding failed after" in str(error) and str(error).startswith(f"{path}: ")
    elif kind != "mkv":  # the MP4/AVI index declares 40 frames: the short read is logged
        assert "decoding ended after" in caplog.text
    if error is None:
        sampled, _ = decode_all(path, FrameSampling(num_frames=4))
        if kind == "mkv":  # no index: the packets that are there get counted, so the spread fits the real length
            expected = evenly_spaced_indices(len(frames), 4).tolist()
        else:  # spread over the declared 40, and the last frame that decodes stands in for the unreachable ones
            expected = [i for i in (0, 13, 26, 39) if i < len(frames)] + [len(frames) - 1]
        assert [f.index for f in sampled] == expected


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_corrupt_packet_stops_with_frame_count(tmp_path: Path, suffix: str) -> None:
    """Garbage in the middle of the stream: the frames before it come out, then a MediaError says how many."""
    path = encode_video(tmp_path / f"video{suffix}")
    with av.open(str(path)) as container:
        position, size = next(
            (p.pos, p.size) for i, p in enumerate(container.demux(container.streams.video[0])) if i == 20
        )
    data = bytearray(path.read_bytes())
    data[position : position + size] = bytes(size)
    path.write_bytes(bytes(data))
    frames, error = decode_all(path, FrameSampling(every=1))
    assert error is not None, "FFmpeg accepted a zeroed MPEG-4 packet"
    assert 10 <= len(frames) <= 20
    assert [read_index(f.image) for f in frames] == list(range(len(frames)))
    assert str(error).startswith(f"{path}: video is corrupt: decoding failed after {len(frames)} frames")


def test_probe_truncated_to_header_only(videos: dict[str, Path], tmp_path: Path) -> None:
    path = truncate(videos["mkv"], tmp_path / "head.mkv", fraction=0.02)
    with pytest.raises(MediaError):
        probe_video(path)


# --- paths -------------------------------------------------------------------------------------------------


def test_path_kinds() -> None:
    for name in ("a.mp4", "b.AVI", "c.mov", "d.mkv", "e.webm", "f.m4v", "g.mpg", "h.mpeg", "i.wmv", "j.flv"):
        assert is_video_path(name) and not is_image_path(name)
    for name in ("a.png", "b.JPG", "c.jpeg", "d.bmp", "e.webp", "f.tif", "g.tiff"):
        assert is_image_path(Path(name)) and not is_video_path(Path(name))
    for name in ("a.txt", "mp4", "a.mp4.part", "folder/"):
        assert not is_video_path(name) and not is_image_path(name)


# --- real clips --------------------------------------------------------------------------------------------


def shared_video(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"shared test video not found: {path} (set MESOFCN_SHARED_DATA to the shared/data folder)")
    return path


def test_real_clip() -> None:
    path = shared_video("real_videos_more/filby89+spectre/samples/LRS3/00002.mp4")
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.num_frames, info.rotation) == (224, 224, 25.0, 48, 0)
    frames = list(iter_video_frames(path, FrameSampling(num_frames=4)))
    assert [f.index for f in frames] == [0, 16, 31, 47]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.64, 1.24, 1.88])
    assert all(f.image.shape == (224, 224, 3) and f.image.std() > 10 for f in frames)


def test_real_clip_whose_index_counts_one_frame_too_many(caplog: pytest.LogCaptureFixture) -> None:
    """This H.264 MP4 declares 62 frames; its edit list discards one, so 61 decode."""
    path = shared_video("real_videos_more/tencent-ailab+V-Express/scripts/prepare_dataset/RD_Radio10_0_clip_0.mp4")
    assert probe_video(path).num_frames == 62
    with caplog.at_level(logging.WARNING, logger="mesofcn.detection.video"):
        frames = list(iter_video_frames(path, FrameSampling(num_frames=4)))
    assert [f.index for f in frames] == [0, 20, 41, 60]  # 61 is past the end: the last real frame stands in
    assert frames[-1].time == pytest.approx(61061 / 30000)
    assert caplog.text == ""  # a one-frame shortfall is normal, not worth a warning


# --- limits ------------------------------------------------------------------------------------------------


def test_limits_default_and_from_options() -> None:
    assert MediaLimits() == MediaLimits(max_pixels=DEFAULT_MAX_PIXELS, max_duration=DEFAULT_MAX_DURATION)
    assert DEFAULT_MAX_PIXELS == 100_000_000 and DEFAULT_MAX_DURATION == 4 * 3600
    assert MediaLimits.from_options() == MediaLimits()
    assert MediaLimits.from_options(max_pixels=0, max_duration=0) == MediaLimits(None, None)  # 0 lifts a limit
    assert MediaLimits.from_options(max_duration=60).describe() == {
        "max_pixels": DEFAULT_MAX_PIXELS,
        "max_duration": 60,
    }
    for bad in ({"max_pixels": -1}, {"max_duration": 0}, {"max_pixels": True}):
        with pytest.raises(ValueError, match="positive number or None"):
            MediaLimits(**bad)


def test_limits_are_checked_on_the_header_before_any_frame_is_decoded(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 64x48, 1.6 s video: over a limit of pixels or seconds it is refused from its header, nothing decoded."""

    def no_decoding(*args, **kwargs):
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(mesofcn.detection.video, "_first_frame", no_decoding)
    monkeypatch.setattr(mesofcn.detection.video, "_decode_frames", no_decoding)
    path = videos["h264"]
    for call in (probe_video, iter_video_frames):
        limits = {"limits": MediaLimits(max_pixels=3000)}
        with pytest.raises(
            MediaError, match=r"video frame too large: header claims 64x48 = 3,072 pixels, limit is 3,000"
        ):
            call(path, **limits)
        with pytest.raises(MediaError, match=r"video too long: header claims 1.6 s, limit is 1.5 s"):
            call(path, **{"limits": MediaLimits(max_duration=1.5)})


def test_a_stream_without_a_duration_stops_at_the_first_frame_past_the_limit(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        mesofcn.detection.video, "_duration", lambda container, stream: None
    )  # a header without a length
    frames = []
    with pytest.raises(MediaError, match=r"video too long: a frame at 0.5 s, limit is 0.45 s"):
        for frame in iter_video_frames(videos["h264"], FrameSampling(every=1), MediaLimits(max_duration=0.45)):
            frames.append(frame)
    assert [frame.index for frame in frames] == list(range(12))  # 0.00 .. 0.44 s at 25 fps


def test_limits_within_bounds_change_nothing(videos: dict[str, Path]) -> None:
    limits = MediaLimits(max_pixels=64 * 48, max_duration=1.6)
    assert probe_video(videos["mkv"], limits) == probe_video(videos["mkv"])
    frames = list(iter_video_frames(videos["mkv"], FrameSampling(every=10), limits))
    assert [frame.index for frame in frames] == [0, 10, 20, 30]
