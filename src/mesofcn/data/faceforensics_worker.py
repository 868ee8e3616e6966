"""One FF++ video -> rows: its sampled frames' most confident faces, cropped with their masks (FF++'s mask video read
in step with the video, or a difference mask against the original), with notes on what did not line up."""

from __future__ import annotations

import math
import os
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..detection.compression import encode_video, read_x264_options
from ..detection.face_detection import DetectedFace
from ..detection.media_files import MediaError
from ..detection.video import FrameSampling, VideoFrame, iter_video_frames, probe_video
from .faceforensics_masks import difference_mask, mask_from_video
from .rows import FaceCropper, count_row, empty_stats
from .settings import FFPP_METHOD_NAMES
from .work import ItemResult, WorkItem

__all__ = ["FaceForensicsWorker", "VideoSource", "VideoTask"]


@dataclass(frozen=True)
class VideoSource:
    """A video to read; with ``derive_crf`` it is a raw (c0) video to re-encode at that CRF first."""

    path: str
    derive_crf: int | None = None


@dataclass(frozen=True)
class VideoTask:
    """One FF++ video to turn into rows: the video, its mask video and the original it was made from."""

    compression: str
    method: str
    video: str
    source: VideoSource
    mask: str | None = None
    original: VideoSource | None = None
    expected_crf: int | None = None


class _Companion:
    """A mask or original video read in step with the fake: ``at(index)`` gives its frame of that index or None
    (after its end, or once it failed; the reason is kept in ``problem``). ``path`` is the file it reads."""

    def __init__(self, frames, name: str, path: str | None = None) -> None:
        self.frames = frames
        self.name = name
        self.path = path
        self.problem: str | None = None
        self.ended_at: int | None = None

    def at(self, index: int) -> VideoFrame | None:
        if self.frames is None:
            return None
        try:
            frame = next(self.frames, None)
        except MediaError as error:
            self.problem, self.frames = str(error), None
            return None
        if frame is None or frame.index != index:
            self.ended_at, self.frames = index, None
            return None
        return frame


@dataclass
class FaceForensicsWorker(FaceCropper):
    """Turns one :class:`VideoTask` into rows (see :class:`~mesofcn.data.rows.FaceCropper`).

    ``every`` is the frame sampling; ``work_dir`` holds the temporary re-encodes of raw videos.
    """

    every: int = 5
    work_dir: str = ""

    def __call__(self, item: WorkItem) -> ItemResult:
        task: VideoTask = item.task
        label = "real" if task.method == "pristine" else "fake"
        stats = empty_stats(task.compression, task.method, label, videos=1)
        stats["notes"] += _encoder_notes(task)
        rows: list[dict[str, Any]] = []
        sampling = FrameSampling(every=self.every)
        with ExitStack() as stack:
            try:
                frames = self._open(task.source, item.key, sampling, stack)
                mask_video = VideoSource(task.mask) if task.mask else None
                mask = self._companion(mask_video, "mask video", item.key, sampling, stack)
                # The original is only read for difference masks, i.e. when there is no mask video.
                original = self._companion(None if task.mask else task.original, "original", item.key, sampling, stack)
                for frame in frames:
                    stats["sampled"] += 1
                    row = self._row(task, frame, mask.at(frame.index), original.at(frame.index))
                    if row is None:
                        stats["no_face"] += 1
                        continue
                    rows.append(row)
                    count_row(stats, row)
            except MediaError as error:
                stats["notes"].append(f"{item.key}: {error}; kept the {len(rows)} faces before it")
            stats["notes"] += _companion_notes(item.key, mask, original, task)
        return ItemResult(rows=rows, stats=stats)

    def _row(self, task: VideoTask, frame: VideoFrame, mask_frame, original_frame) -> dict[str, Any] | None:
        face = self.find_face(frame.image)
        if face is None:
            return None
        mask, source = _frame_mask(task, frame.image, face, mask_frame, original_frame)
        columns = {
            "label": 0 if task.method == "pristine" else 1,
            "method": FFPP_METHOD_NAMES.index(task.method),
            "compression": task.compression,
            "video": task.video,
            "frame": frame.index,
        }
        return self.crop_row(frame.image, face, mask, source, **columns)

    def _open(self, source: VideoSource, key: str, sampling: FrameSampling, stack: ExitStack):
        """Sampled frames of a video; a raw video to derive is first re-encoded to a temporary file."""
        path = source.path
        if source.derive_crf is not None:
            name = f"{key.replace('/', '__')}.{Path(source.path).stem}.{os.getpid()}.tmp"
            path = Path(self.work_dir) / "derived" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            stack.callback(path.unlink, missing_ok=True)
            fps = probe_video(source.path).fps or 30
            with closing(iter_video_frames(source.path, FrameSampling(every=1))) as frames:
                encode_video((frame.image for frame in frames), path, source.derive_crf, fps=fps)
        return stack.enter_context(closing(iter_video_frames(path, sampling)))

    def _companion(self, source: VideoSource | None, name: str, key: str, sampling, stack) -> _Companion:
        if source is None:
            return _Companion(None, name)
        try:
            return _Companion(self._open(source, key, sampling, stack), name, source.path)
        except MediaError as error:
            companion = _Companion(None, name, source.path)
            companion.problem = str(error)
            return companion


def _frame_mask(
    task: VideoTask, image: np.ndarray, face: DetectedFace, mask_frame, original_frame
) -> tuple[np.ndarray | None, str]:
    """The full-frame 0/1 mask of one sampled frame and its mask_source."""
    if task.method == "pristine":
        return np.zeros(image.shape[:2], dtype=np.uint8), "ffpp"
    if mask_frame is not None:
        return mask_from_video(mask_frame.image, image.shape[:2]), "ffpp"
    if original_frame is not None and original_frame.image.shape == image.shape:
        return difference_mask(image, original_frame.image, face.box), "difference"
    return None, "none"


def _encoder_notes(task: VideoTask) -> list[str]:
    """A note when a downloaded video's x264 settings show another CRF than its folder's level."""
    if task.expected_crf is None:
        return []
    options = read_x264_options(task.source.path)
    try:
        crf = float(options["crf"]) if options else math.nan
    except (KeyError, ValueError):
        return []
    if math.isnan(crf) or crf == task.expected_crf:
        return []
    where = f"{task.video} ({task.method}) in {task.compression}/"
    return [f"{where} was encoded at CRF {crf:g} (x264 settings in the file)"]


def _companion_notes(key: str, mask: _Companion, original: _Companion, task: VideoTask) -> list[str]:
    """Notes on the mask video / original: unusable, or of another length than the video (frames are matched
    by index up to the shorter one; later frames of the video get no mask)."""
    notes = []
    for companion in (mask, original):
        if companion.problem:
            notes.append(f"{key}: {companion.name} unusable ({companion.problem}); those frames have no mask")
        elif companion.path is not None:
            lengths = _frame_counts(task.source.path, companion.path)
            if lengths is not None and lengths[0] != lengths[1]:
                notes.append(
                    f"{key}: the video has {lengths[0]} frames, its {companion.name} {lengths[1]}; frames are "
                    f"matched by index up to the shorter"
                    + (f", frames from {companion.ended_at} on have no mask" if companion.ended_at is not None else "")
                )
    if task.method != "pristine" and task.mask is None and task.original is None:
        notes.append(f"{key}: no mask video and no original: mask_source none")
    return notes


def _frame_counts(first: str, second: str) -> tuple[int, int] | None:
    """Frame counts from the containers' indexes (None when a file cannot be probed)."""
    try:
        return probe_video(first).num_frames, probe_video(second).num_frames
    except MediaError:
        return None
