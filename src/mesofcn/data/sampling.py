"""Reading the media the builders sample: a video's every n-th frame or an image, in runs that bound memory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from itertools import islice

import numpy as np

from ..detection.media import load_image
from ..detection.media_files import MediaError, is_image_path, is_video_path
from ..detection.video import FrameSampling, iter_video_frames

__all__ = ["media_kind", "rows_of_runs", "runs_of", "sampled_frames"]


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


def rows_of_runs(
    path: str | os.PathLike[str],
    kind: str,
    every: int,
    max_frames: int | None,
    run_length: int,
    rows_of_run: Callable[[list[tuple[int, np.ndarray]]], list[dict]],
    notes: list[str],
    name: str,
) -> list[dict]:
    """The rows ``rows_of_run`` makes of each run of a file's sampled frames (at most ``max_frames`` in all). A file
    that stops decoding keeps the rows made so far and gets a note in ``notes``, instead of failing the build."""
    rows: list[dict] = []
    try:
        for run in runs_of(islice(sampled_frames(path, kind, every), max_frames), run_length):
            rows += rows_of_run(run)
    except MediaError as error:
        notes.append(f"{name}: stopped, unreadable ({error.problem})")
    return rows
