"""Load user-supplied media files safely: every problem is a one-line
:class:`~mesofcn.detection.media_files.MediaError`.

:func:`load_image` reads any still image PIL understands as upright RGB uint8, refusing images whose header
claims more than ``max_pixels`` pixels before any pixel data is decoded (a small PNG can claim 30000 x 30000
and would otherwise allocate gigabytes). :func:`media_kind` tells images from videos by extension, and by
content when the extension says nothing.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .image_processing_mesofcn import to_rgb_uint8
from .media_files import DEFAULT_MAX_PIXELS, MediaError, check_media_file, check_pixels, is_image_path, is_video_path

__all__ = [
    "check_media_file",
    "load_image",
    "media_kind",
]

#: Formats PIL can identify but not decode, which FFmpeg reads as video (MPEG-1 elementary streams).
_PIL_VIDEO_FORMATS = frozenset({"MPEG"})

#: FFmpeg demuxers that "open" files which are not videos: ``tty`` renders any text file named ``*.nfo``,
#: ``*.ans``, ... as ANSI-art video.
_FFMPEG_NON_VIDEO_FORMATS = frozenset({"tty"})

#: Exceptions PIL raises for damaged files while parsing headers, decoding or reading EXIF.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)

#: ``Image.MAX_IMAGE_PIXELS`` is process-global; this lock keeps concurrent loads from restoring it wrongly.
_PIL_LIMIT_LOCK = threading.Lock()


def load_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an upright (H, W, 3) uint8 RGB array.

    EXIF orientation is applied. Grey, palette, RGBA/LA (alpha dropped), CMYK, 16-bit and 32-bit images are
    converted to RGB uint8; 16-bit values are scaled (65535 -> 255), not clipped.

    Args:
        path: the image file.
        max_pixels: refuse images whose header claims more than this many pixels (width x height), checked
            before decoding, so a decompression bomb costs nothing; None: no limit.

    Raises:
        MediaError: missing, directory, empty, not an image, too large, truncated or corrupt, or zero-sized.
        ValueError: ``max_pixels`` is neither a positive integer nor None.
    """
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1
    ):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    max_pixels = None if max_pixels is None else int(max_pixels)
    file = check_media_file(path)
    with _open_image(file, path, max_pixels) as image:
        _check_size(image, path, max_pixels)
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
        except _DECODE_ERRORS as error:
            raise MediaError(path, f"image is truncated or corrupt ({_reason(error)})") from error
        try:
            return to_rgb_uint8(_native_pixels(image))
        except (ValueError, TypeError) as error:
            raise MediaError(path, f"unsupported image mode {image.mode} ({error})") from error


def media_kind(path: str | os.PathLike[str]) -> Literal["image", "video"]:
    """``"image"`` or ``"video"``: by extension when it is a known one, else by sniffing the content.

    The content is only identified (PIL reads the header; PyAV opens the container and looks for a video
    stream), not decoded, so a file with a known extension but broken content is reported by the loader later.

    Raises:
        MediaError: missing, directory or empty file, or content that is neither an image nor a video.
    """
    file = check_media_file(path)
    if is_image_path(file):
        return "image"
    if is_video_path(file):
        return "video"
    if _pil_identifies(file):
        return "image"
    if _has_video_stream(file):
        return "video"
    raise MediaError(path, "not an image or video file")


def _open_image(file: Path, path: str | os.PathLike[str], max_pixels: int | None) -> Image.Image:
    """``Image.open`` (header only) with PIL's bomb limit set to ``max_pixels`` for this call (None: none).

    PIL warns above ``MAX_IMAGE_PIXELS`` and raises ``DecompressionBombError`` above twice that; the warning
    is silenced (our own check in :func:`_check_size` refuses those images with a clear message) and the
    error becomes a MediaError. The global limit is restored right after the header is read.
    """
    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                return Image.open(file)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Image.DecompressionBombError as error:
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(claimed.group(1)):,} pixels" if claimed else f"more than {2 * (max_pixels or 0):,} pixels"
        raise MediaError(path, f"image too large: header claims {size}, limit is {max_pixels or 0:,}") from error
    except UnidentifiedImageError as error:
        raise MediaError(path, "not an image file (unrecognised or unsupported format)") from error
    except PermissionError as error:
        raise MediaError(path, f"cannot read file ({error.strerror})") from error
    except _DECODE_ERRORS as error:
        raise MediaError(path, f"image header is corrupt ({_reason(error)})") from error


def _check_size(image: Image.Image, path: str | os.PathLike[str], max_pixels: int | None) -> None:
    """Refuse a zero-sized image or one whose header claims more than ``max_pixels`` pixels."""
    width, height = image.size
    if width < 1 or height < 1:
        raise MediaError(path, f"image has no pixels (size {width}x{height})")
    check_pixels(path, width, height, max_pixels)


def _native_pixels(image: Image.Image) -> Image.Image | np.ndarray:
    """16-bit grey images as a native-endian uint16 array (big-endian TIFFs load as "I;16B"); others as is."""
    if image.mode.startswith("I;16"):
        array = np.asarray(image)
        return array.astype(array.dtype.newbyteorder("="))
    return image


def _pil_identifies(file: Path) -> bool:
    """True when PIL recognises the file as a still image (header only; a decompression bomb still counts)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return image.format not in _PIL_VIDEO_FORMATS
    except Image.DecompressionBombError:
        return True
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        return False


def _has_video_stream(file: Path) -> bool:
    """True when FFmpeg can open the file as a container holding at least one video stream (text excluded)."""
    import av  # lazy: PyAV loads only when a file's content must be sniffed, not with mesofcn

    try:
        with av.open(str(file), mode="r") as container:
            return bool(container.streams.video) and container.format.name not in _FFMPEG_NON_VIDEO_FORMATS
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return False


def _reason(error: BaseException) -> str:
    """The exception's message on one line, or its type name when the message is empty."""
    return " ".join(str(error).split()) or type(error).__name__
