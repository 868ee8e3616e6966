"""Streaming video decoding with PyAV: probe a file, then iterate over a sample of its frames.

Frames are decoded sequentially and only the sampled ones are converted to RGB, so memory use stays at one
frame whatever the video's length. Frames come back upright (the container's display-matrix rotation is
applied) and carry their presentation time, so variable-frame-rate videos get true timestamps.
Every problem with the input file surfaces as :class:`MediaError` (a ``ValueError``), never as a bare
PyAV exception.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .media_files import MediaError, MediaLimits, check_media_file

if TYPE_CHECKING:
    import av
    import av.container
    import av.error
    import av.video.stream

# PyAV (FFmpeg's libraries) is imported by the functions that open or decode a video, not with this module:
# `import mesofcn`, the CLI's start-up and image-only runs never load it.

__all__ = [
    "FrameSampling",
    "VideoFrame",
    "VideoInfo",
    "evenly_spaced_indices",
    "iter_video_frames",
    "probe_video",
    "rotate_upright",
]

logger = logging.getLogger(__name__)

#: Frames a complete video may decode fewer than its container declares (edit lists) without a warning.
_NORMAL_SHORTFALL = 2


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One decoded frame.

    Attributes:
        index: 0-based position among all decoded frames of the video (not among the sampled ones).
        time: presentation time in seconds from the start of the stream (``pts * time_base``), falling back to
            ``index / fps`` when the frame has no timestamp.
        image: RGB uint8 array (H, W, 3), already rotated upright.
    """

    index: int
    time: float
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a video to keep.

    Set exactly one of:
        every: keep frames 0, k, 2k, ... (every k-th decoded frame).
        num_frames: keep N frames evenly spaced over the whole video (fewer if the video has fewer frames).

    ``FrameSampling()`` means ``every=5``; ``FrameSampling(num_frames=32)`` needs no ``every=None``.
    """

    every: int | None = None
    num_frames: int | None = None

    def __post_init__(self) -> None:
        if self.every is None and self.num_frames is None:
            object.__setattr__(self, "every", 5)
        if self.every is not None and self.num_frames is not None:
            raise ValueError(f"set only one of every={self.every} and num_frames={self.num_frames}")
        for name in ("every", "num_frames"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
            ):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def mode(self) -> str:
        """``"every"`` or ``"evenly"``."""
        return "every" if self.every is not None else "evenly"

    def describe(self) -> dict[str, object]:
        """JSON-ready description for reports, e.g. ``{"mode": "every", "every": 5}``."""
        if self.every is not None:
            return {"mode": "every", "every": int(self.every)}
        return {"mode": "evenly", "num_frames": int(self.num_frames)}  # type: ignore[arg-type]


def evenly_spaced_indices(total: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over ``range(total)``, first and last included, unique and sorted."""
    if total <= 0 or count <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))


def rotate_upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """Undo a display-matrix rotation: turn ``image`` counter-clockwise by ``rotation`` degrees.

    ``rotation`` is PyAV's ``VideoFrame.rotation`` convention (counter-clockwise degrees, -180..180; a phone
    video tagged ``rotate=90`` reads -90). It is rounded to the nearest multiple of 90.
    """
    turns = round(rotation / 90) % 4
    if turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=turns))


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about a video without decoding it all.

    Attributes:
        path: the file.
        width, height: frame size after rotation (what :func:`iter_video_frames` yields).
        fps: average frame rate (None if the container gives none).
        num_frames: frame count, approximate. Read from the container's index when it has one (MP4, MOV, AVI),
            which can still exceed what decodes by a frame or two (an edit list dropping frames) or by many (a
            truncated file). Otherwise (MKV, WebM, ...) estimated as ``duration * fps``, so ``num_frames_estimated``
            is True and it may be off by a few frames either way.
        num_frames_estimated: True when ``num_frames`` is the duration-based estimate, not the container's count.
        duration: seconds (None if unknown).
        rotation: display rotation in degrees, counter-clockwise, as applied to the frames.
    """

    path: str
    width: int
    height: int
    fps: float | None
    num_frames: int
    num_frames_estimated: bool
    duration: float | None
    rotation: int


def probe_video(path: str | os.PathLike[str], limits: MediaLimits | None = None) -> VideoInfo:
    """Read a video's size, rate, length and rotation; decodes only the first frame (for size and rotation).

    ``limits`` (none by default) are checked on the header before that frame is decoded.
    """
    with _open_video(path) as container:
        stream = _video_stream(container, path)
        fps = _frame_rate(stream)
        duration = _duration(container, stream)
        if limits is not None:
            limits.check_header(path, stream.codec_context.width, stream.codec_context.height, duration)
        first = _first_frame(container, stream, path)
        rotation = int(round(first.rotation / 90) % 4 * 90)
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        if stream.frames > 0:
            num_frames, estimated = int(stream.frames), False
        elif duration is not None and fps:
            num_frames, estimated = max(1, round(duration * fps)), True
        else:
            num_frames, estimated = 0, True
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            fps=fps,
            num_frames=num_frames,
            num_frames_estimated=estimated,
            duration=duration,
            rotation=rotation if rotation <= 180 else rotation - 360,
        )


def iter_video_frames(
    path: str | os.PathLike[str], sampling: FrameSampling | None = None, limits: MediaLimits | None = None
) -> Iterator[VideoFrame]:
    """Decode ``path`` sequentially and yield only the frames ``sampling`` selects (default: every 5th).

    Streaming: at most two decoded frames are held at a time; decoding stops after the last wanted frame.
    The file is opened (and checked) when this function is called, so a bad path raises :class:`MediaError`
    right away; the container is closed when the iterator is exhausted or closed.

    For ``num_frames`` sampling the frame count comes from the container index or, when there is none
    (MKV, WebM), from a fast packet count (demuxing without decoding). If the file decodes fewer frames than
    that (an edit list dropping a frame, or a truncated file), the indices past its real end are not reached
    and the last decoded frame is yielded once in their place, so the sample still ends at the video's end.

    ``limits`` (none by default) are checked at the call on the header, and on every decoded frame before it is
    converted (its size, and its time against the longest duration).

    Raises:
        MediaError: at the call for a missing, empty, non-video or video-less file, or a header over ``limits``;
            during iteration if decoding fails mid-stream (after yielding the frames decoded before the damage), if
            not a single frame decodes, or at the first frame over ``limits``.
    """
    sampling = sampling or FrameSampling()
    container = _open_video(path)
    try:
        stream = _video_stream(container, path)
        if limits is not None:
            limits.check_header(
                path, stream.codec_context.width, stream.codec_context.height, _duration(container, stream)
            )
        if sampling.every is not None:
            wanted, last_wanted = _every_kth(int(sampling.every)), None
        else:
            total = int(stream.frames) if stream.frames > 0 else _count_packets(path)
            indices = evenly_spaced_indices(total, int(sampling.num_frames))  # type: ignore[arg-type]
            wanted = frozenset(indices.tolist()).__contains__
            last_wanted = int(indices[-1]) if len(indices) else -1
    except BaseException:
        container.close()
        raise
    return _decode_frames(container, stream, path, wanted, last_wanted, limits)


def _every_kth(every: int) -> Callable[[int], bool]:
    """Predicate selecting frame indices 0, k, 2k, ..."""

    def wanted(index: int) -> bool:
        return index % every == 0

    return wanted


def _decode_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: str | os.PathLike[str],
    wanted: Callable[[int], bool],
    last_wanted: int | None,
    limits: MediaLimits | None = None,
) -> Iterator[VideoFrame]:
    """Generator behind :func:`iter_video_frames`; owns and closes ``container``.

    ``last_wanted`` (None: to the end) lets decoding stop once the last sampled frame is out; every decoded frame is
    checked against ``limits`` (if any) before it is converted.
    """
    import av  # lazy: see the note at the module's imports

    with container:
        # Frame and slice threads (FFmpeg picks the count): H.264 rarely has slices, so frame threads are what
        # spread its decoding over the cores; the frames are the same.
        stream.thread_type = "AUTO"
        fps = _frame_rate(stream)
        time_base = stream.time_base
        start = max(stream.start_time or 0, 0)
        decoded = 0
        last_frame: av.VideoFrame | None = None
        try:
            for frame in container.decode(stream):
                index = decoded
                decoded += 1
                if last_wanted is not None and index > last_wanted:
                    return
                if limits is not None:
                    limits.check_frame(
                        path, frame.width, frame.height, _frame_time(frame.pts, time_base, start, index, fps)
                    )
                if wanted(index):
                    yield _to_video_frame(frame, index, time_base, start, fps)
                last_frame = frame
        except av.error.FFmpegError as error:
            problem = f"video is corrupt: decoding failed after {decoded} frames ({_reason(error)})"
            raise MediaError(path, problem) from error
        if decoded == 0:
            raise MediaError(path, "video stream holds no decodable frames")
        _warn_if_short(path, decoded, int(stream.frames), last_wanted)
        if last_wanted is not None and decoded <= last_wanted and last_frame is not None and not wanted(decoded - 1):
            # The count over-promised (e.g. an MP4 edit list drops the last packet): still end on the last frame.
            yield _to_video_frame(last_frame, decoded - 1, time_base, start, fps)


def _to_video_frame(
    frame: av.VideoFrame, index: int, time_base: Fraction | None, start: int, fps: float | None
) -> VideoFrame:
    """Convert a decoded PyAV frame to an upright RGB :class:`VideoFrame`."""
    image = rotate_upright(frame.to_ndarray(format="rgb24"), frame.rotation)
    return VideoFrame(index=index, time=_frame_time(frame.pts, time_base, start, index, fps), image=image)


def _warn_if_short(path: str | os.PathLike[str], decoded: int, declared: int, last_wanted: int | None) -> None:
    """Log (never raise) when a video silently ends early, as truncated MP4/MKV/WebM files do.

    A shortfall of one or two frames is normal (an MP4 edit list can drop frames the index counts), so it is
    only logged at debug level.
    """
    expected = max(declared, (last_wanted + 1) if last_wanted is not None else 0)
    if decoded >= expected:
        return
    level = logging.DEBUG if expected - decoded <= _NORMAL_SHORTFALL else logging.WARNING
    logger.log(level, "%s: decoding ended after %d frames, %d expected (truncated file?)", path, decoded, expected)


def _frame_time(pts: int | None, time_base: Fraction | None, start: int, index: int, fps: float | None) -> float:
    """Seconds since the stream start from the timestamp, else ``index / fps`` (NaN if neither is known)."""
    if pts is not None and time_base is not None:
        return float((pts - start) * time_base)
    return index / fps if fps else math.nan


def _open_video(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open ``path`` for demuxing, turning every failure into a MediaError with a plain-words reason."""
    import av  # lazy: see the note at the module's imports

    file = check_media_file(path)
    try:
        return av.open(str(file), mode="r")
    except av.error.InvalidDataError as error:
        raise MediaError(path, f"not a readable video file (invalid data: {error.strerror})") from error
    except (av.error.FFmpegError, OSError) as error:
        raise MediaError(path, f"cannot open as video ({error})") from error


def _video_stream(container: av.container.InputContainer, path: str | os.PathLike[str]) -> av.video.stream.VideoStream:
    """The first video stream, or MediaError naming the stream types that are there instead."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise MediaError(path, f"no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _first_frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str | os.PathLike[str]
) -> av.VideoFrame:
    """Decode the first frame (MediaError if there is none or it cannot be decoded)."""
    import av  # lazy: see the note at the module's imports

    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as error:
        raise MediaError(path, f"video is corrupt: the first frame cannot be decoded ({_reason(error)})") from error
    raise MediaError(path, "video stream holds no decodable frames")


def _frame_rate(stream: av.video.stream.VideoStream) -> float | None:
    """Average frame rate, else the guessed rate; None when the container gives neither."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate:
            return float(rate)
    return None


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """Stream duration in seconds, else the container's; None if unknown."""
    import av  # lazy: see the note at the module's imports

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _count_packets(path: str | os.PathLike[str]) -> int:
    """Count the video stream's packets by demuxing without decoding (one packet per frame for video codecs).

    Empty (flush) packets and packets the container marks as discarded (edit lists) are not counted.
    """
    import av  # lazy: see the note at the module's imports

    with _open_video(path) as container:
        stream = _video_stream(container, path)
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0 and not packet.is_discard)
        except av.error.FFmpegError as error:
            raise MediaError(path, f"video is corrupt: demuxing failed ({_reason(error)})") from error


def _reason(error: av.error.FFmpegError) -> str:
    """FFmpeg's own words for an error ("Invalid data found when processing input"), without errno and file name."""
    return error.strerror or str(error)
