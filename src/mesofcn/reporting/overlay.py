"""Draw detection results on frames and write them out atomically as PNG images or H.264 videos.

:func:`draw_detections` blends each face's P(fake) heatmap over its crop region, then draws the face box and
a label such as ``"#2 fake 0.93"``. :func:`write_png` and :class:`VideoOverlayWriter` write to a hidden
temporary file beside the target and rename it into place only when complete, so a reader (or a crash)
never sees a half-written file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..atomic_files import atomic_output, commit_temporary, reserve_temporary
from ..detection.compression import CloseOrAbort, H264Settings, H264Writer, compression_crf, video_rate
from ..detection.image_processing_mesofcn import to_rgb_uint8

# PyAV is loaded by H264Writer when a video is written, not with this module: an image's overlay (a PNG) and
# `mesofcn detect` on images never load FFmpeg's libraries.

__all__ = [
    "FAKE_COLOR",
    "REAL_COLOR",
    "OverlayFace",
    "VideoOverlayWriter",
    "draw_detections",
    "label_text",
    "pad_to_even",
    "write_png",
]

#: RGB box and label colours by label.
FAKE_COLOR = (230, 40, 40)
REAL_COLOR = (60, 220, 80)
_LABEL_COLORS = {"fake": FAKE_COLOR, "real": REAL_COLOR}

#: Blend weight at heat 0, as a fraction of ``heatmap_alpha``: a real face's crop region is still faintly
#: tinted (showing what was analysed) while fake regions get the full weight.
_MIN_HEAT_WEIGHT = 0.25
_FONT = cv2.FONT_HERSHEY_SIMPLEX

#: Containers :class:`VideoOverlayWriter` can write H.264 into, by file extension.
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


@dataclass(frozen=True, eq=False)
class OverlayFace:
    """One face to draw.

    Attributes:
        box: (x, y, width, height) in frame pixels; may reach past the frame's edges.
        score: P(fake) in [0, 1].
        label: ``"real"`` or ``"fake"`` (sets the colour).
        heatmap: float (H, W) array at frame resolution, P(fake) per pixel in [0, 1] and 0 outside the face's
            crop region, or None. Only pixels with heat > 0 are tinted.
        track_id: shown as ``#id`` before the label when set (video tracks).

    Compared by identity (``eq=False``): the heatmap array has no single truth value.
    """

    box: tuple[float, float, float, float]
    score: float
    label: str
    heatmap: np.ndarray | None = field(default=None, repr=False)
    track_id: int | None = None

    def __post_init__(self) -> None:
        box = tuple(float(value) for value in self.box)
        if len(box) != 4 or not all(math.isfinite(value) for value in box) or box[2] < 0 or box[3] < 0:
            raise ValueError(f"box must be four finite numbers (x, y, width >= 0, height >= 0), got {self.box!r}")
        object.__setattr__(self, "box", box)
        if not (0.0 <= float(self.score) <= 1.0):
            raise ValueError(f"score must be a probability in [0, 1], got {self.score!r}")
        if self.label not in _LABEL_COLORS:
            raise ValueError(f"label must be one of {sorted(_LABEL_COLORS)}, got {self.label!r}")
        if self.heatmap is not None and np.ndim(self.heatmap) != 2:
            raise ValueError(f"heatmap must be a 2-D (H, W) array, got shape {np.shape(self.heatmap)}")
        if self.track_id is not None and (isinstance(self.track_id, bool) or not isinstance(self.track_id, int)):
            raise ValueError(f"track_id must be an int or None, got {self.track_id!r}")


def label_text(face: OverlayFace) -> str:
    """The label drawn for a face: ``"fake 0.93"``, or ``"#2 real 0.12"`` with a track id."""
    text = f"{face.label} {face.score:.2f}"
    return text if face.track_id is None else f"#{face.track_id} {text}"


def draw_detections(frame: np.ndarray, faces: Sequence[OverlayFace], heatmap_alpha: float = 0.45) -> np.ndarray:
    """A new RGB uint8 copy of ``frame`` (H, W, 3; also grey, RGBA, float or PIL) with the faces drawn on it.

    Heatmaps go first (a JET colour map, blended with weight ``heatmap_alpha * (0.25 + 0.75 * heat)`` where
    heat > 0 and not at all elsewhere), then the boxes, then the labels, so every label stays readable. Pixels
    away from every face's heatmap region, box and label are returned unchanged. Labels sit above the box, or
    just inside it when there is no room above, and are shifted to stay inside the frame.

    Raises:
        ValueError: ``heatmap_alpha`` outside [0, 1], or a heatmap whose shape is not the frame's (H, W).
    """
    if not 0.0 <= heatmap_alpha <= 1.0:
        raise ValueError(f"heatmap_alpha must be in [0, 1], got {heatmap_alpha}")
    canvas = np.array(_rgb_frame(frame), copy=True)
    for face in faces:
        if face.heatmap is not None:
            _blend_heatmap(canvas, face.heatmap, heatmap_alpha)
    style = _Style.for_frame(*canvas.shape[:2])
    visible = [face for face in faces if _box_corners(face.box, canvas.shape[:2]) is not None]
    for face in visible:
        _draw_box(canvas, face, style)
    for face in visible:
        _draw_label(canvas, face, style)
    return canvas


@dataclass(frozen=True)
class _Style:
    """Line and text sizes scaled to the frame, so overlays look alike on 240p and 4K."""

    thickness: int
    font_scale: float
    text_thickness: int
    padding: int

    @classmethod
    def for_frame(cls, height: int, width: int) -> _Style:
        short_side = min(height, width)
        font_scale = min(max(short_side / 900, 0.35), 2.5)
        return cls(
            thickness=max(1, round(short_side / 300)),
            font_scale=font_scale,
            text_thickness=max(1, round(font_scale * 1.5)),
            padding=max(1, round(4 * font_scale)),
        )


def _blend_heatmap(canvas: np.ndarray, heatmap: np.ndarray, alpha: float) -> None:
    """Blend the colour-mapped heat into ``canvas`` in place, only where heat > 0 (NaN counts as 0)."""
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != canvas.shape[:2]:
        raise ValueError(f"heatmap of shape {heat.shape} does not match the frame's {canvas.shape[:2]}")
    heat = np.clip(np.nan_to_num(heat, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    rows, cols = np.flatnonzero(heat.any(axis=1)), np.flatnonzero(heat.any(axis=0))
    if len(rows) == 0 or alpha == 0:
        return
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    heat = heat[window]
    colors = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    weight = (alpha * (_MIN_HEAT_WEIGHT + (1 - _MIN_HEAT_WEIGHT) * heat) * (heat > 0))[..., None]
    region = canvas[window].astype(np.float32)
    canvas[window] = np.round(region + weight * (colors - region)).astype(np.uint8)


def _box_corners(box: tuple[float, float, float, float], shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Inclusive pixel corners (x0, y0, x1, y1) of a box, clamped near the frame; None if it misses the frame."""
    height, width = shape
    x0, y0 = round(box[0]), round(box[1])
    x1, y1 = max(x0, round(box[0] + box[2]) - 1), max(y0, round(box[1] + box[3]) - 1)
    if x1 < 0 or y1 < 0 or x0 >= width or y0 >= height:
        return None
    # Far-away corners change nothing visible but could overflow OpenCV's int32 coordinates.
    margin = max(height, width)
    return (max(x0, -margin), max(y0, -margin), min(x1, width + margin), min(y1, height + margin))


def _draw_box(canvas: np.ndarray, face: OverlayFace, style: _Style) -> None:
    """The face's rectangle in its label's colour."""
    x0, y0, x1, y1 = _box_corners(face.box, canvas.shape[:2])  # type: ignore[misc]
    cv2.rectangle(canvas, (x0, y0), (x1, y1), _LABEL_COLORS[face.label], style.thickness, cv2.LINE_8)


def _draw_label(canvas: np.ndarray, face: OverlayFace, style: _Style) -> None:
    """The label text on a filled background, above the box (or inside its top), kept inside the frame."""
    height, width = canvas.shape[:2]
    x0, y0, _, _ = _box_corners(face.box, canvas.shape[:2])  # type: ignore[misc]
    text = label_text(face)
    (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.text_thickness)
    label_width = text_width + 2 * style.padding
    label_height = text_height + baseline + 2 * style.padding
    top = y0 - label_height if y0 - label_height >= 0 else y0
    top = max(0, min(top, height - label_height))
    left = max(0, min(x0, width - label_width))
    background = _LABEL_COLORS[face.label]
    cv2.rectangle(canvas, (left, top), (left + label_width - 1, top + label_height - 1), background, cv2.FILLED)
    origin = (left + style.padding, top + style.padding + text_height)
    cv2.putText(
        canvas, text, origin, _FONT, style.font_scale, _text_color(background), style.text_thickness, cv2.LINE_AA
    )


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (Rec. 601 luma)."""
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else (255, 255, 255)


def _rgb_frame(frame: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an (H, W) or channels-last (H, W, 1|3|4) frame, or a PIL image.

    (H, W, 3) uint8 arrays pass through unconverted. Other channels-last arrays are handed to ``to_rgb_uint8``
    channels-first, because its layout guess reads an (H, W, C) array with H in {1, 3, 4} (a 1x1 or 3-row
    frame) as channels-first, while a channels-first array is never misread. Channels-first input is refused.
    """
    if isinstance(frame, np.ndarray) and frame.ndim == 3:
        if frame.shape[2] not in (1, 3, 4):
            raise ValueError(f"a frame must be (H, W) or (H, W, 1|3|4) channels-last, got shape {frame.shape}")
        if frame.dtype == np.uint8 and frame.shape[2] == 3:
            return frame
        return to_rgb_uint8(np.moveaxis(frame, 2, 0))
    return to_rgb_uint8(frame)


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write an image as PNG atomically (temporary file in the same folder, then ``os.replace``).

    Parent folders are created. On any error the temporary file is removed and an existing file at ``path``
    is left as it was. ``rgb`` is (H, W, 3) uint8 (round-trips exactly), or a grey, RGBA, float or PIL image
    that is converted to RGB uint8 first.
    """
    target = Path(path)
    image = Image.fromarray(_rgb_frame(rgb))
    with atomic_output(target, target.suffix or ".png") as temporary:
        image.save(temporary, format="PNG")
    return target


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """Repeat the last row and/or column once when the height/width is odd (yuv420p needs even sizes)."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


class VideoOverlayWriter(CloseOrAbort):
    """Encode RGB frames to an H.264 (libx264, yuv420p) video, written atomically.

    Use as a context manager::

        with VideoOverlayWriter("out.mp4", fps=29.97) as writer:
            for frame in frames:
                writer.write(draw_detections(frame, faces))

    Frames go to a hidden ``.out.mp4.partial-<pid>-<random>.mp4`` beside the target, which is renamed to the
    target when the block ends normally. If the block raises, or no frame was written, the temporary file is
    deleted and nothing appears at ``path`` (an existing file there is left untouched); with no frames and no
    exception in flight, leaving the block raises ValueError. The encoding itself is
    :class:`~mesofcn.detection.compression.H264Writer`'s, with this class's output settings.

    The first frame fixes the size. yuv420p needs even dimensions, so an odd height or width is padded by one
    row/column repeating the edge pixels: a 33x17 input gives a 34x18 video. ``fps`` may be fractional; it
    is stored as a fraction (29.97 -> 2997/100; pass ``Fraction(30000, 1001)`` for NTSC exactly).

    Args:
        path: output file; ``.mp4``/``.m4v`` (MP4, with the index at the front for streaming), ``.mov`` or
            ``.mkv``.
        fps: frames per second.
        crf: x264 constant rate factor, 0 (lossless) to 51; 23 is x264's default, lower is better quality.
        preset: x264 speed/size trade-off (``"ultrafast"`` ... ``"veryslow"``).
    """

    def __init__(
        self, path: str | os.PathLike[str], fps: float | Fraction, crf: int = 23, *, preset: str = "medium"
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _MUXERS:
            raise ValueError(f"{path}: video file name must end in one of {', '.join(sorted(_MUXERS))}")
        self.crf = compression_crf(crf)
        self.rate = video_rate(fps)
        self.preset = preset
        self._format = _MUXERS[suffix]
        self._input_size: tuple[int, int] | None = None
        self._temporary: Path | None = None
        self._writer: H264Writer | None = None
        self._closed = False

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(height, width) of the input frames, fixed by the first one; None before it."""
        return self._input_size

    @property
    def frames_written(self) -> int:
        """Frames encoded so far."""
        return 0 if self._writer is None else self._writer.frames_written

    @property
    def settings(self) -> H264Settings:
        """The encoder settings of the overlay videos: libx264, yuv420p, this writer's CRF and preset."""
        return H264Settings(self.crf, "libx264", "yuv420p", {"crf": str(self.crf), "preset": self.preset})

    def write(self, frame_rgb: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame (grey, RGBA, float or PIL images are converted) of the first size.

        Raises:
            ValueError: the writer is closed, or the frame's size differs from the first frame's.
        """
        if self._closed:
            raise ValueError(f"{self.path}: the video writer is closed")
        image = _rgb_frame(frame_rgb)
        if self._input_size is None:
            self._start(image.shape[:2])
        elif image.shape[:2] != self._input_size:
            raise ValueError(
                f"{self.path}: frame of size {image.shape[1]}x{image.shape[0]} (WxH) differs from the first "
                f"frame's {self._input_size[1]}x{self._input_size[0]}"
            )
        self._writer.write(pad_to_even(image))  # type: ignore[union-attr]

    def close(self) -> Path:
        """Flush the encoder, finish the file and rename it to ``path``; a second call does nothing.

        Raises:
            ValueError: no frame was written (no file is created).
        """
        if self._closed:
            return self.path
        self._closed = True
        if self._writer is None or self._temporary is None:
            raise ValueError(f"{self.path}: no frames were written, so no video was created")
        try:
            self._writer.close()
            commit_temporary(self._temporary, self.path)
        except BaseException:
            self._discard()
            raise
        return self.path

    def abort(self) -> None:
        """Stop without producing a file: close the encoder and delete the temporary file."""
        self._closed = True
        self._discard()

    def _start(self, size: tuple[int, int]) -> None:
        """Open the H.264 writer on a temporary file beside ``path``, for frames of ``size`` (height, width)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = reserve_temporary(self.path, self.path.suffix)
        options = {"movflags": "+faststart"} if self._format in ("mp4", "mov") else {}
        try:
            self._writer = H264Writer(
                self._temporary, self.settings, self.rate, container_format=self._format, container_options=options
            )
        except BaseException:
            self._discard()
            raise
        self._input_size = size

    def _discard(self) -> None:
        """Abort the writer (the file is going anyway) and delete the temporary file."""
        if self._writer is not None:
            self._writer.abort()
        if self._temporary is not None:
            self._temporary.unlink(missing_ok=True)
