"""Labelled real and fake media (a :mod:`~mesofcn.data.media_lists` CSV) -> a DatasetDict of 128x128 face crops.

For fakes made by tools that ship no masks: face swaps, lip-sync and reenactment videos, and their real inputs.
Each item (a video or an image) goes through one pipeline whatever its label, so that the classes differ only by
the manipulation: the ``every``-th frames of a video (at most ``max_frames``) or the image are decoded, the most
confident face of each frame is detected, the run of frames is compressed as one H.264 video at the level's CRF
with FF++'s settings (:func:`~mesofcn.detection.compression.compress_frames`; an image is a one-frame video), and the
face is cut from the compressed frame by the processor's :func:`~mesofcn.detection.image_processing_mesofcn.crop_face`.

Rows: ``label`` from the list; ``method`` "real" or the fake's ``group`` (``fake`` when it has none); ``video``
the path as written in the list; ``mask`` all zeros for a real face (``mask_source`` "zeros") and missing for a
fake (``mask_source`` "none": where a tool changed pixels is unknown, so the segmentation loss ignores it).
Every row goes into the split ``split`` (the list is the split: write one list per split).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..detection.compression import compress_frames, compression_crf
from .common import run_build
from .execution import BuildReport
from .media_lists import MediaListItem, read_media_list
from .rows import SPLITS, FaceCropper, count_row, empty_stats, face_features
from .sampling import media_kind, rows_of_runs
from .settings import BuildOptions, check_positive_int
from .work import ItemResult, PrepareError, PreparePlan, WorkItem, file_fingerprint

__all__ = ["MediaItemTask", "MediaWorker", "build_media", "media_method_names", "plan_media"]

#: Sampled frames of a video compressed (and held in memory) as one H.264 clip.
DEFAULT_CLIP_FRAMES = 64
#: ``method`` of real rows, and of fakes listed without a group.
REAL_METHOD, UNGROUPED_FAKE = "real", "fake"


def media_method_names(items: Sequence[MediaListItem]) -> list[str]:
    """``real`` first, then the fakes' groups in sorted order."""
    return [REAL_METHOD, *sorted({item.group or UNGROUPED_FAKE for item in items if item.label == 1})]


@dataclass(frozen=True)
class MediaItemTask:
    """One listed video or image to sample, compress and crop at one compression level."""

    compression: str
    path: str
    name: str
    kind: str
    label: int
    method: int
    method_name: str


@dataclass
class MediaWorker(FaceCropper):
    """Turns one :class:`MediaItemTask` into rows (see the module docstring)."""

    every: int = 5
    max_frames: int | None = None
    clip_frames: int = DEFAULT_CLIP_FRAMES

    def __call__(self, item: WorkItem) -> ItemResult:
        task: MediaItemTask = item.task
        label_name = "real" if task.label == 0 else "fake"
        stats = empty_stats(task.compression, task.method_name, label_name, videos=int(task.kind == "video"))
        rows = rows_of_runs(
            task.path,
            task.kind,
            self.every,
            self.max_frames,
            self.clip_frames,
            lambda run: self._run_rows(task, run, stats),
            stats["notes"],
            task.name,
        )
        return ItemResult(rows=rows, stats=stats)

    def _run_rows(
        self, task: MediaItemTask, run: list[tuple[int, np.ndarray]], stats: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Compress one run of frames as an H.264 clip, detect each face on the decoded frame, crop the clip's."""
        compressed = compress_frames([image for _, image in run], compression_crf(task.compression))
        rows = []
        for (index, image), frame in zip(run, compressed, strict=True):
            stats["sampled"] += 1
            face = self.find_face(image)
            if face is None:
                stats["no_face"] += 1
                continue
            mask = np.zeros(frame.shape[:2], dtype=np.uint8) if task.label == 0 else None
            row = self.crop_row(
                frame, face, mask, "zeros" if task.label == 0 else "none", label=task.label, method=task.method,
                compression=task.compression, video=task.name, frame=index,
            )  # fmt: skip
            rows.append(row)
            count_row(stats, row)
        return rows


def plan_media(
    labels: str | os.PathLike[str],
    options: BuildOptions,
    *,
    root: str | os.PathLike[str] | None = None,
    every: int = 5,
    max_frames: int | None = None,
    split: str = "train",
) -> PreparePlan:
    """List the work: one item per compression level and listed file (missing or non-media files are refused)."""
    if split not in SPLITS:
        raise PrepareError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    listed = read_media_list(labels, root)
    names = media_method_names(listed)
    items = [_work_item(level, split, entry, names) for level in options.compressions for entry in listed]
    settings = {
        "every": every,
        "max_frames": max_frames,
        "split": split,
        **options.crop_settings(),
    }
    return PreparePlan(
        builder="media",
        settings=settings,
        features=face_features(names),
        items=items,
        command="",
        card={
            "title": "Labelled real and fake media for MesoFCN",
            "intro": _intro(options, every),
            "unit": "video",
        },
    )


def _work_item(level: str, split: str, entry: MediaListItem, names: list[str]) -> WorkItem:
    if not entry.path.is_file():
        raise PrepareError(f"{entry.path}: not found (listed as {entry.name!r})")
    kind = media_kind(entry.path)
    if kind is None:
        raise PrepareError(f"{entry.path}: neither a video nor an image file")
    method = REAL_METHOD if entry.label == 0 else entry.group or UNGROUPED_FAKE
    task = MediaItemTask(level, str(entry.path), entry.name, kind, entry.label, names.index(method), method)
    return WorkItem(
        key=f"{level}/{work_key(entry.name)}",
        split=split,
        order=(level, entry.label, entry.name),
        fingerprint=f"{file_fingerprint([entry.path], entry.path.parent)}/{entry.label}/{method}",
        task=task,
    )


def work_key(name: str) -> str:
    """The listed path as a result-file key inside the work folder (a path leaving it is replaced by its hash)."""
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts:
        return "outside/" + hashlib.sha256(name.encode()).hexdigest()[:16] + "_" + Path(name).name
    return Path(name).as_posix()


def _intro(options: BuildOptions, every: int) -> str:
    return (
        f"{options.size}x{options.size} face crops of labelled real and fake videos and images. Every "
        f"{every}th frame of a video (or the image) is decoded, its most confident face detected, and the run of "
        f"frames compressed as one H.264 video with FF++'s settings ({', '.join(options.compressions)}) whatever its "
        "label, then cut by mesofcn's `crop_face`. `method` is `real` or the fake's group (its tool); fakes have "
        "no mask (`mask_source` `none`). Check the licences of the source media before sharing this dataset."
    )


def build_media(
    labels: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    every: int = 5,
    max_frames: int | None = None,
    split: str = "train",
    options: BuildOptions | None = None,
    **option_values: Any,
) -> BuildReport:
    """Build (or resume) the labelled-media face dataset in ``out``; see the module docstring.

    Args:
        labels: a ``path,label[,group]`` CSV (:func:`~mesofcn.data.media_lists.read_media_list`); ``root`` its base.
        every: keep one video frame in every ``every``; ``max_frames``: at most this many per video.
        split: the split every row goes into.
        options, option_values: as for :func:`~mesofcn.data.faceforensics.build_faceforensics`; each file is
            processed once per level of ``compressions``.
    """
    options = BuildOptions.of(options, **option_values)
    check_positive_int("every", every)
    if max_frames is not None:
        check_positive_int("max_frames", max_frames)
    plan = plan_media(labels, options, root=root, every=every, max_frames=max_frames, split=split)
    worker = MediaWorker(**options.cropper_fields(), every=every, max_frames=max_frames)
    return run_build(plan, out, worker, options, call=f"build_media({str(labels)!r}, {str(out)!r})")
