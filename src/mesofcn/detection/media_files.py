"""Media files as inputs: what counts as a video or an image, the one-line MediaError, the size and length limits.

Shared by image loading (`media`) and video decoding (`video`); imports nothing heavy.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "MediaError",
    "MediaLimits",
    "check_media_file",
    "check_pixels",
    "is_image_path",
    "is_video_path",
    "printable",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

#: Largest image or video frame (width x height) analysed unless told otherwise: 100 megapixels, a 10000x10000
#: frame of about 300 MB as RGB uint8 (8K is 33 megapixels).
DEFAULT_MAX_PIXELS = 100_000_000
#: Longest video, in seconds, analysed unless told otherwise: 4 hours.
DEFAULT_MAX_DURATION = 4 * 3600.0


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name has a common video extension (case-insensitive); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True when the file name has a common still-image extension (case-insensitive); the file is not opened."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def printable(text: str | os.PathLike[str]) -> str:
    """``text`` (a path, a message) on one line: control characters (a newline in a file name) escaped as ``\\n``."""
    text = os.fsdecode(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class MediaError(ValueError):
    """A media file that cannot be used: missing, empty, not a video, no video stream, corrupt, or over a limit.

    The message is one line, ``<path>: <problem>``, with control characters in the path escaped.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(printable(f"{path}: {problem}"))


def check_pixels(
    path: str | os.PathLike[str],
    width: int,
    height: int,
    max_pixels: int | None,
    what: str = "image",
    claimed: bool = True,
) -> None:
    """MediaError when a ``what`` ("image", "video frame") of ``width`` x ``height`` exceeds ``max_pixels`` (None: no
    limit); ``claimed``: the size comes from a header, checked before anything is decoded."""
    if max_pixels is not None and width * height > max_pixels:
        size = f"{'header claims ' if claimed else ''}{width}x{height} = {width * height:,} pixels"
        raise MediaError(path, f"{what} too large: {size}, limit is {max_pixels:,}")


@dataclass(frozen=True)
class MediaLimits:
    """The most detection analyses (a server's guard against inputs that would take hours or gigabytes).

    Attributes:
        max_pixels: pixels (width x height) of an image or a video frame.
        max_duration: seconds of video.

    ``None`` lifts a limit. Both are checked on the header before decoding where it gives the size and the length;
    otherwise (a stream without a duration, a frame larger than its header said) decoding stops with a MediaError
    at the first frame past the limit.
    """

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_duration: float | None = DEFAULT_MAX_DURATION

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_duration"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")

    @classmethod
    def from_options(cls, max_pixels: int | None = None, max_duration: float | None = None) -> MediaLimits:
        """Limits from user options: None keeps a default, 0 lifts the limit."""
        default = cls()
        return cls(
            max_pixels=default.max_pixels if max_pixels is None else (max_pixels or None),
            max_duration=default.max_duration if max_duration is None else (max_duration or None),
        )

    def describe(self) -> dict[str, float | None]:
        """JSON-ready, for reports: ``{"max_pixels": ..., "max_duration": ...}``."""
        return {"max_pixels": self.max_pixels, "max_duration": self.max_duration}

    def check_header(self, path: str | os.PathLike[str], width: int, height: int, duration: float | None) -> None:
        """MediaError when a video's header claims frames or a length over the limits."""
        check_pixels(path, width, height, self.max_pixels, "video frame")
        self._check_seconds(path, duration, "header claims")

    def check_frame(self, path: str | os.PathLike[str], width: int, height: int, time: float) -> None:
        """MediaError when a decoded frame is larger than ``max_pixels`` or lies past ``max_duration``."""
        check_pixels(path, width, height, self.max_pixels, "video frame", claimed=False)
        self._check_seconds(path, time, "a frame at")

    def _check_seconds(self, path: str | os.PathLike[str], seconds: float | None, where: str) -> None:
        if self.max_duration is not None and seconds is not None and seconds > self.max_duration:
            raise MediaError(path, f"video too long: {where} {seconds:,.1f} s, limit is {self.max_duration:,g} s")


def check_media_file(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` is an existing, non-empty regular file; return it as a Path.

    Raises:
        MediaError: "file not found", "symbolic link loop", "is a directory, not a file", "not a regular file" (a
            FIFO or device, which could block or never end), "file is empty (0 bytes)" or "cannot read file" (no
            permission).
    """
    file = Path(path)
    try:
        status = file.stat()
    except OSError as error:
        problems = {errno.ENOENT: "file not found", errno.ENOTDIR: "file not found", errno.ELOOP: "symbolic link loop"}
        raise MediaError(path, problems.get(error.errno, f"cannot access file ({error.strerror})")) from error
    if stat.S_ISDIR(status.st_mode):
        raise MediaError(path, "is a directory, not a file")
    if not stat.S_ISREG(status.st_mode):
        raise MediaError(path, "not a regular file")
    if status.st_size == 0:
        raise MediaError(path, "file is empty (0 bytes)")
    try:
        with file.open("rb"):
            pass
    except OSError as error:
        raise MediaError(path, f"cannot read file ({error.strerror})") from error
    return file
