"""Reading the media the builders sample: a video's every n-th frame or an image, in runs that bound memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice

import numpy as np

from ..detection.media import load_image
from ..detection.media_files import is_image_path, is_video_path
from ..detection.video import FrameSampling, iter_video_frames

__all__ = ["media_kind", "runs_of", "sampled_frames"]


def media_kind(path: str | os.PathLike[str]) -> str | None:
    """ "video" or "image" by the file's extension; None for anything else."""
    if is_video_path(path):
        return "video"
    return "image" if is_image_path(path) else None


def sampled_frames(path: str | os.PathLike[str], kind: str, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) of every ``every``-th frame of a video, or (0, the image) for an image; MediaError when the
    file cannot be decoded."""
    if kind == "image":
        yield 0, load_image(path)
        return
    for frame in iter_video_frames(path, FrameSampling(every=every)):
        yield frame.index, frame.image


def runs_of(frames: Iterator[tuple[int, np.ndarray]], length: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Consecutive runs of at most ``length`` sampled (index, frame) pairs: the unit compressed as one H.264 clip,
    which bounds the frames held in memory."""
    while run := list(islice(frames, length)):
        yield run
