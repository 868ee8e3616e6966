"""H.264 compression exactly as FaceForensics++ made its c23 / c40 (and lossless c0 / "raw") videos.

FF++'s ``dataset/compress.py`` runs ``ffmpeg -i %04d.png -crf {crf} -c:v {codec}`` on RGB PNG frames, with
``codec = libx264`` for CRF 23 and 40 and ``libx264rgb`` for CRF 0. No preset is given, so x264's default
("medium") applies, and ffmpeg turns RGB input into ``yuv444p`` for libx264 (no chroma subsampling, so odd
frame sizes are fine). This module makes the same encoder calls through PyAV, so the GAN-face builder
compresses images "like a video frame" of FF++, the FF++ builder can derive c23 / c40 from a raw download,
and tests can make FF++-like videos.

The x264 settings string embedded in the output equals the one in FF++'s files except for the thread count:
FF++'s ffmpeg picked it from the machine (15, 22, 34 ... threads), which changes the bitstream slightly; here
it defaults to one thread, so the output is identical on every machine.

"raw" (alias "c0") is CRF 0 through ``libx264rgb``: lossless, decoding gives back the exact input pixels.

:class:`H264Writer` is mesofcn's one H.264 writer: FF++'s videos here and the overlay videos of
:mod:`mesofcn.reporting.overlay` (with their own CRF, preset and container) all go through it.
"""

from __future__ import annotations

import abc
import contextlib
import io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import numpy as np

if TYPE_CHECKING:
    import av
    import av.video.stream

# PyAV is imported by the functions that encode, not with this module: the CLI builds its parser from the
# compression levels below without loading FFmpeg's libraries.

__all__ = [
    "COMPRESSION_CRF",
    "COMPRESSION_LEVELS",
    "CloseOrAbort",
    "H264Settings",
    "H264Writer",
    "compress_frames",
    "compression_crf",
    "encode_video",
    "h264_settings",
    "normalize_compression",
    "read_x264_options",
    "video_rate",
]

#: FF++'s compression levels (its folder names) and their CRF values; "raw" is FF++'s c0 (lossless).
COMPRESSION_CRF: dict[str, int] = {"raw": 0, "c23": 23, "c40": 40}
COMPRESSION_LEVELS: tuple[str, ...] = tuple(COMPRESSION_CRF)
_ALIASES = {"c0": "raw"}

#: Bytes at the start of a file searched for x264's settings string (it sits in the first frame's SEI).
_SEI_SEARCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class H264Settings:
    """Encoder, pixel format and x264 options for one CRF, as FF++'s ffmpeg call chose them."""

    crf: int
    codec: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)


def normalize_compression(level: str) -> str:
    """FF++ level name for ``level``: "c23", "c40" or "raw" ("c0" and any case accepted)."""
    name = str(level).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in COMPRESSION_CRF:
        known = ", ".join([*COMPRESSION_LEVELS, *_ALIASES])
        raise ValueError(f"unknown compression level {level!r}; known: {known}")
    return name


def compression_crf(level: str | int) -> int:
    """CRF of an FF++ level name ("c23" -> 23), or an integer CRF in 0..51 checked and returned."""
    if isinstance(level, str):
        return COMPRESSION_CRF[normalize_compression(level)]
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= 51:
        raise ValueError(f"crf must be an integer in 0..51 or a level name, got {level!r}")
    return int(level)


def h264_settings(crf: str | int, threads: int = 1) -> H264Settings:
    """FF++'s encoder choice for a CRF: libx264 / yuv444p, or libx264rgb / rgb24 for the lossless CRF 0."""
    value = compression_crf(crf)
    codec, pix_fmt = ("libx264rgb", "rgb24") if value == 0 else ("libx264", "yuv444p")
    return H264Settings(crf=value, codec=codec, pix_fmt=pix_fmt, options={"crf": str(value), "threads": str(threads)})


class CloseOrAbort(abc.ABC):
    """A writer used as a context manager: :meth:`close` when the block ends normally, :meth:`abort` when it raises
    (so a half-written output is thrown away, never finished)."""

    def __enter__(self: _Writer) -> _Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    @abc.abstractmethod
    def close(self) -> object:
        """Finish the output."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Throw the output away."""


_Writer = TypeVar("_Writer", bound=CloseOrAbort)


class H264Writer(CloseOrAbort):
    """The one place mesofcn writes H.264: opens the output container, adds one stream at an exact frame rate
    (time base 1 / rate, frame i at pts i), encodes RGB uint8 frames and flushes the encoder on :meth:`close`.

    FF++'s videos (:func:`encode_video`, :func:`compress_frames`) and the overlay videos of
    :mod:`mesofcn.reporting.overlay` differ only in the :class:`H264Settings`, the container format and its options
    passed in. The first frame fixes the stream's size; every later one must have it.

    Use as a context manager: a normal exit closes the file, an exception aborts it (the container is closed without
    flushing; a partial file may remain at ``target``: callers that need atomic files write to a temporary name).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        settings: H264Settings,
        fps: float | Fraction,
        *,
        container_format: str = "mp4",
        container_options: dict[str, str] | None = None,
    ) -> None:
        import av  # lazy: see the note at the module's imports

        self.settings = settings
        self.rate = video_rate(fps)
        self.frames_written = 0
        self._shape: tuple[int, ...] | None = None
        self._stream: av.video.stream.VideoStream | None = None
        where = target if isinstance(target, io.IOBase) else str(target)
        self._container = av.open(where, mode="w", format=container_format, options=container_options or {})

    def write(self, image: np.ndarray) -> None:
        """Encode one (H, W, 3) RGB uint8 frame of the first frame's size (ValueError otherwise)."""
        import av  # lazy: see the note at the module's imports

        image = _check_frame(image, self._shape)
        if self._stream is None:
            self._start(image.shape)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = 1 / self.rate
        self._mux(self._stream.encode(frame))  # type: ignore[union-attr]
        self.frames_written += 1

    def close(self) -> int:
        """Flush the encoder and finish the container; returns the frame count. ValueError when none was written."""
        if self._stream is None:
            self.abort()
            raise ValueError("no frames to encode")
        self._mux(self._stream.encode(None))
        self._container.close()
        return self.frames_written

    def abort(self) -> None:
        """Close the container without flushing, ignoring errors (what was written is being thrown away)."""
        with contextlib.suppress(Exception):
            self._container.close()

    def _start(self, shape: tuple[int, ...]) -> None:
        """Add the H.264 stream for frames of ``shape`` (H, W, 3)."""
        self._shape = shape
        settings = self.settings
        stream = self._container.add_stream(settings.codec, rate=self.rate, options=dict(settings.options))
        stream.height, stream.width = shape[:2]
        stream.pix_fmt = settings.pix_fmt
        stream.codec_context.time_base = 1 / self.rate
        self._stream = stream

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)


def encode_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    crf: str | int,
    fps: float | Fraction = 30,
    threads: int = 1,
) -> int:
    """Encode RGB uint8 (H, W, 3) frames as an H.264 MP4 at ``crf`` with FF++'s settings; return the frame count.

    Frames are consumed one at a time (a long video never sits in memory). All must have the first frame's size.
    """
    return _write_all(H264Writer(path, h264_settings(crf, threads), fps), frames)


def compress_frames(
    frames: Iterable[np.ndarray], crf: str | int, fps: float | Fraction = 30, threads: int = 1
) -> list[np.ndarray]:
    """Encode frames as one H.264 video in memory, decode it, and return the decoded RGB uint8 frames.

    What a frame of an FF++ video at this CRF looks like: use it on a still image (a one-frame video) or on a
    short clip (inter-frame prediction then applies, as in FF++). CRF 0 / "raw" gives the input back exactly.
    """
    import av  # lazy: see the note at the module's imports

    buffer = io.BytesIO()
    count = _write_all(H264Writer(buffer, h264_settings(crf, threads), fps), frames)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])]
    if len(decoded) != count:
        raise RuntimeError(f"H.264 round trip gave {len(decoded)} frames for {count} encoded")
    return decoded


def _write_all(writer: H264Writer, frames: Iterable[np.ndarray]) -> int:
    """Write every frame with ``writer`` and close it; returns how many were written."""
    with writer:
        for image in frames:
            writer.write(image)
    return writer.frames_written


def _check_frame(image: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    """The frame as a contiguous (H, W, 3) uint8 array, of ``shape`` when given; ValueError otherwise."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"frames must be RGB uint8 arrays of shape (H, W, 3), got {array.dtype} {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"all frames must have one size: got {array.shape} after {shape}")
    return np.ascontiguousarray(array)


def video_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction: 29.97 -> 2997/100, 30000/1001 (float) -> 30000/1001, 25 -> 25.

    A Fraction is kept as it is; a float is read with denominators up to 1001 (the NTSC rates).
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction, np.integer, np.floating)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    rate = fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps {fps!r} is too small to represent")
    return rate


def read_x264_options(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The x264 settings a file was encoded with (``{"crf": "23.0", "threads": "15", ...}``), from the settings
    string x264 writes into the first frame; None when the file has none (another encoder, or stripped)."""
    with Path(path).open("rb") as file:
        head = file.read(_SEI_SEARCH_BYTES)
    match = re.search(rb"x264 - core [^\x00]*? options: ([^\x00]*)", head)
    if match is None:
        return None
    options = {}
    for item in match.group(1).decode("ascii", errors="replace").split():
        key, _, value = item.partition("=")
        options[key] = value
    return options
