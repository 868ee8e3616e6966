"""Real vs GAN-generated faces (the paper: FFHQ vs PGAN / StyleGAN) -> a DatasetDict of 128x128 face crops.

Every full image goes through one identical pipeline, so a detector cannot learn the sources' different file
histories instead of the generator: decoded to RGB, compressed as a one-frame H.264 video at the level's CRF
with FF++'s settings (like a frame of an FF++ video, :func:`~mesofcn.detection.compression.compress_frames`), then the
most confident face is detected and cut with the processor's
:func:`~mesofcn.detection.image_processing_mesofcn.crop_face`. With ``encode_crops`` the order changes: the face is cut
and resized from the decoded image first and the 128x128 crop is what gets encoded, so every source ends in the same
resize and the same H.264 encoding at the same scale whatever its original size (the paper's images were all 1024 px;
mixed-size photo sources need this). Images without a face above the score threshold are skipped and counted in the
dataset card.

Splits are per image, deterministic and stratified by source: each source's images are ordered by a seeded hash
of their relative path and cut into train / validation / test by the given fractions (paper: 56k/7k/7k per
source, i.e. 0.8/0.1/0.1). ``method`` is the source name ("real" first, then the fake sources in the order given),
``video`` the image's path relative to its source folder, ``frame`` 0. Masks follow the label
(``mask_source`` "whole-image"): all zeros for a real photo, all ones for a generated image (every pixel of it
is synthetic; pixels where the crop leaves the image are 0).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Features

from ..detection.compression import compress_frames, compression_crf
from ..detection.media import load_image
from ..detection.media_files import MediaError
from .common import run_build
from .execution import BuildReport
from .rows import FaceCropper, count_row, empty_stats, face_features
from .settings import BuildOptions, check_positive_int
from .splitting import DEFAULT_SPLIT, check_fractions, split_images
from .work import ItemResult, PrepareError, PreparePlan, WorkItem, file_fingerprint

__all__ = [
    "GAN_IMAGE_EXTENSIONS",
    "REAL_SOURCE",
    "GanFacesWorker",
    "ImageChunkTask",
    "build_gan_faces",
    "gan_faces_features",
    "list_images",
    "plan_gan_faces",
]

#: Name of the real source (``method`` 0, label real).
REAL_SOURCE = "real"
#: Image files read from the source folders (recursively, case-insensitive).
GAN_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp"})
#: Images per work item: the unit written (and resumed) at once.
DEFAULT_CHUNK_SIZE = 256

_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def gan_faces_features(fake_names: Sequence[str]) -> Features:
    """The builder's columns; ``method`` names are "real" then the fake sources in the order given."""
    return face_features([REAL_SOURCE, *fake_names])


def list_images(folder: str | os.PathLike[str]) -> list[str]:
    """Image files under ``folder`` (recursively), as sorted POSIX paths relative to it."""
    root = Path(folder)
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.suffix.lower() in GAN_IMAGE_EXTENSIONS and path.is_file()
    )


@dataclass(frozen=True)
class ImageChunkTask:
    """Images of one source and split to compress, detect and crop."""

    compression: str
    source: str
    method: int
    label: int
    folder: str
    images: tuple[str, ...]


@dataclass
class GanFacesWorker(FaceCropper):
    """Turns one :class:`ImageChunkTask` into rows (see :class:`~mesofcn.data.rows.FaceCropper`);
    ``encode_crops``: H.264-encode the face crop instead of the full image (see the module docstring)."""

    encode_crops: bool = False

    def __call__(self, item: WorkItem) -> ItemResult:
        task: ImageChunkTask = item.task
        stats = empty_stats(task.compression, task.source, "real" if task.label == 0 else "fake", videos=0)
        rows = []
        for name in task.images:
            try:
                image = load_image(Path(task.folder) / name)
            except MediaError as error:
                stats["notes"].append(f"{task.source}/{name}: skipped, unreadable ({error.problem})")
                continue
            stats["sampled"] += 1
            row = self._row(task, name, image)
            if row is None:
                stats["no_face"] += 1
                continue
            rows.append(row)
            count_row(stats, row)
        return ItemResult(rows=rows, stats=stats)

    def _row(self, task: ImageChunkTask, name: str, image: np.ndarray) -> dict[str, Any] | None:
        """Compress like a video frame, detect, crop (or detect, crop, compress the crop); None without a face."""
        crf = compression_crf(task.compression)
        frame = image if self.encode_crops else compress_frames([image], crf)[0]
        face = self.find_face(frame)
        if face is None:
            return None
        mask = np.full(frame.shape[:2], task.label, dtype=np.uint8)
        columns = {"label": task.label, "method": task.method, "compression": task.compression}
        encode = (lambda crop: compress_frames([crop], crf)[0]) if self.encode_crops else None
        return self.crop_row(frame, face, mask, "whole-image", **columns, video=name, frame=0, encode=encode)


def _check_sources(real: str | os.PathLike[str], fakes: Sequence[tuple[str, str | os.PathLike[str]]]) -> None:
    names = [name for name, _ in fakes]
    if not fakes:
        raise PrepareError("give at least one fake source (NAME=DIR)")
    for name in names:
        if not _SOURCE_NAME.fullmatch(name) or name == REAL_SOURCE:
            raise PrepareError(
                f"fake source name {name!r}: use letters, digits, '.', '_', '-', and not {REAL_SOURCE!r}"
            )
    if len(set(names)) != len(names):
        raise PrepareError(f"fake source names must differ, got {names}")
    for folder in [real, *(folder for _, folder in fakes)]:
        if not Path(folder).exists():
            raise PrepareError(f"{folder}: image folder not found")
        if not Path(folder).is_dir():
            raise PrepareError(f"{folder}: not a folder")
        if not list_images(folder):
            raise PrepareError(f"{folder}: holds no images ({', '.join(sorted(GAN_IMAGE_EXTENSIONS))})")


def plan_gan_faces(
    real: str | os.PathLike[str],
    fakes: Sequence[tuple[str, str | os.PathLike[str]]],
    options: BuildOptions,
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    encode_crops: bool = False,
) -> PreparePlan:
    """List the work: per compression level, source and split, chunks of ``chunk_size`` images."""
    _check_sources(real, fakes)
    fractions = check_fractions(split)
    sources = [(REAL_SOURCE, Path(real)), *((name, Path(folder)) for name, folder in fakes)]
    items = []
    for level in options.compressions:
        for method, (name, folder) in enumerate(sources):
            for split_name, images in split_images(list_images(folder), fractions, seed).items():
                items += _chunks(level, method, name, folder, split_name, images, chunk_size)
    names = [name for name, _ in fakes]
    settings = {
        "split": list(fractions),
        "seed": seed,
        **options.crop_settings(),
        "chunk_size": chunk_size,
        "encode_crops": encode_crops,
    }
    order = (
        "the most confident face cut with mesofcn's `crop_face` (the processor's crop) and that crop compressed as "
        "a one-frame H.264 video with FF++'s settings"
        if encode_crops
        else "each full image compressed as a one-frame H.264 video with FF++'s settings, then the most confident "
        "face cut with mesofcn's `crop_face` (the processor's crop)"
    )
    intro = (
        f"{options.size}x{options.size} face crops of real ({real}) and GAN-generated faces ({', '.join(names)}): "
        f"{order} ({', '.join(options.compressions)}). Splits are per image, seeded and "
        "stratified by source. `mask` follows the label (`mask_source` whole-image): all zeros for a real photo, "
        "all 255 for a generated image. Check the licences of the source images before sharing this dataset."
    )
    return PreparePlan(
        builder="gan-faces",
        settings=settings,
        features=gan_faces_features(names),
        items=items,
        command="",
        card={"title": "Real vs GAN faces for MesoFCN", "intro": intro, "unit": "image"},
    )


def _chunks(
    level: str, method: int, name: str, folder: Path, split: str, images: list[str], chunk_size: int
) -> list[WorkItem]:
    items = []
    for index, start in enumerate(range(0, len(images), chunk_size)):
        chunk = tuple(images[start : start + chunk_size])
        task = ImageChunkTask(level, name, method, 0 if method == 0 else 1, str(folder), chunk)
        items.append(
            WorkItem(
                key=f"{level}/{name}/{split}-{index:05d}",
                split=split,
                order=(level, method, index),
                fingerprint=file_fingerprint([folder / image for image in chunk], folder),
                task=task,
            )
        )
    return items


def build_gan_faces(
    real: str | os.PathLike[str],
    fakes: Mapping[str, str | os.PathLike[str]] | Sequence[tuple[str, str | os.PathLike[str]]],
    out: str | os.PathLike[str],
    *,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    encode_crops: bool = False,
    options: BuildOptions | None = None,
    **option_values: Any,
) -> BuildReport:
    """Build (or resume) the real-vs-GAN face dataset in ``out``; see the module docstring.

    Args:
        real: folder of real face images (label real, method "real").
        fakes: source name -> folder of generated images (label fake, method = the name), in ``method`` order.
        split: train / validation / test fractions per source.
        seed: seed of the split.
        chunk_size: images per work item (the unit written, and resumed, at once).
        encode_crops: encode the face crop, not the full image (one resize and encoding at one scale for all).
        options, option_values: as for :func:`~mesofcn.data.faceforensics.build_faceforensics`; each image is
            compressed once per level of ``compressions``.
    """
    options = BuildOptions.of(options, **option_values)
    check_positive_int("chunk_size", chunk_size)
    pairs = list(fakes.items()) if isinstance(fakes, Mapping) else [tuple(pair) for pair in fakes]
    plan = plan_gan_faces(
        real, pairs, options, split=split, seed=seed, chunk_size=chunk_size, encode_crops=encode_crops
    )
    worker = GanFacesWorker(**options.cropper_fields(), encode_crops=encode_crops)
    return run_build(plan, out, worker, options, call=f"build_gan_faces({str(real)!r}, ..., {str(out)!r})")
