"""Real faces and their self-blended pseudo-fakes (SBI-style, :mod:`mesofcn.data.blending`) -> a DatasetDict of
128x128 face crops with exact manipulation masks.

The sources are real videos and images. Every sampled frame (every ``every``-th frame of a video, or the image)
gets its most confident face detected once, on the uncompressed frame, and a self-blended version of the FULL
frame made with :func:`~mesofcn.data.blending.self_blend` (seed derived from the build seed, the source and the
frame index). Then both classes go through the same video pipeline, so that a real and its pseudo-fake differ
only by the blend: the run of sampled real frames is compressed as one H.264 video at the level's CRF
(:func:`~mesofcn.detection.compression.compress_frames`, FF++'s settings), and the run of blended frames as another
with the same settings and frame count (long videos in clips of ``clip_frames`` sampled frames); an image is a
one-frame video. A sampled frame without a face goes into both runs unchanged (the runs stay alike) and gives no rows.
Both compressed versions are cut with the same face box and landmarks by the processor's
:func:`~mesofcn.detection.image_processing_mesofcn.crop_face`, the blend mask with the same geometry.

With ``donor_probability`` > 0, that share of the pseudo-fakes paste another person's face (from the ``donors``
images, aligned by the five landmarks and colour-matched: Face X-ray's blends) through the same kind of mask,
so that identity seams are learned as well as blending seams; ``downsample_probability`` pastes a lower-resolution
copy, as swappers that generate a small face and scale it up do.

Rows: ``method`` "real" (label real, ``mask`` all zeros, ``mask_source`` "zeros"), "self-blend" or "donor-blend"
(label fake, ``mask`` the exact blend mask, ``mask_source`` "self-blend"); ``video`` is the source's path relative
to the given folder (its file name for a file given directly), ``frame`` the frame index (0 for an image).

Splits are by source, seeded and deterministic: a video or image never spans splits, and images in a subfolder
(an identity folder such as ``krasserm_lfw/<Name>/``) stay together; images directly in a given folder are
split one by one. Videos and image groups are split separately (stratified by kind).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Features

from ..detection.compression import compress_frames, compression_crf
from ..detection.face_detection import DetectedFace
from .blending import SelfBlend, SelfBlendSettings, self_blend
from .common import run_build
from .donors import Donor, DonorPool
from .execution import BuildReport
from .rows import FaceCropper, count_row, empty_stats, face_features
from .sampling import rows_of_runs
from .self_blend_sources import SelfBlendSource, exclude_sources, list_sources, split_sources
from .settings import BuildOptions, check_positive_int, check_probability
from .splitting import DEFAULT_SPLIT, check_fractions
from .work import ItemResult, PrepareError, PreparePlan, WorkItem, file_fingerprint

__all__ = [
    "DEFAULT_CLIP_FRAMES",
    "FAKE_MASK_SOURCE",
    "METHOD_NAMES",
    "REAL_MASK_SOURCE",
    "SelfBlendWorker",
    "blend_seed",
    "build_self_blend",
    "plan_self_blend",
    "self_blend_features",
]

#: ``method`` names: the real frames, their self-blends, and their blends with another person's face (donor).
METHOD_NAMES: tuple[str, str, str] = ("real", "self-blend", "donor-blend")
#: ``mask_source`` of a real row (an all-zero mask: nothing manipulated) and of a pseudo-fake (the exact blend mask).
REAL_MASK_SOURCE = "zeros"
FAKE_MASK_SOURCE = "self-blend"
#: Sampled frames of a video compressed as one H.264 clip (bounds memory: two runs of full frames are held).
DEFAULT_CLIP_FRAMES = 64


def self_blend_features() -> Features:
    """The builder's columns (the other builders' schema, ``method`` one of :data:`METHOD_NAMES`)."""
    return face_features(list(METHOD_NAMES))


def blend_seed(seed: int, name: str, frame: int) -> int:
    """The blend's seed for one frame of one source: a hash of the build seed, the source name and the index."""
    digest = hashlib.sha256(f"{seed}/{name}/{frame}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass(frozen=True)
class SourceTask:
    """One source to sample, blend, compress and crop at one compression level."""

    compression: str
    source: SelfBlendSource


@dataclass
class SelfBlendWorker(FaceCropper):
    """Turns one source's :class:`SourceTask` into real / pseudo-fake row pairs (see the module docstring)."""

    every: int = 5
    seed: int = 0
    clip_frames: int = DEFAULT_CLIP_FRAMES
    max_frames: int | None = None
    donors: tuple[str, ...] = ()
    donor_probability: float = 0.0
    settings: SelfBlendSettings = field(default_factory=SelfBlendSettings)
    _pool: DonorPool | None = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_pool": None}

    def __call__(self, item: WorkItem) -> ItemResult:
        task: SourceTask = item.task
        stats = empty_stats(task.compression, METHOD_NAMES[0], "real", videos=int(task.source.kind == "video"))
        rows = rows_of_runs(
            task.source.path,
            task.source.kind,
            self.every,
            self.max_frames,
            self.clip_frames,
            lambda clip: self._clip_rows(task, clip, stats),
            stats["notes"],
            task.source.name,
        )
        return ItemResult(rows=rows, stats=stats)

    def _clip_rows(
        self, task: SourceTask, clip: list[tuple[int, np.ndarray]], stats: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Detect and blend each frame, compress the real and the blended run alike, crop the pairs."""
        blends = [self._blend(task.source, index, image, stats) for index, image in clip]
        crf = compression_crf(task.compression)
        reals = compress_frames([image for _, image in clip], crf)
        fakes = compress_frames(
            [image if blend is None else blend[1].image for (_, image), blend in zip(clip, blends, strict=True)], crf
        )
        rows = []
        for (index, _), blend, real, fake in zip(clip, blends, reals, fakes, strict=True):
            if blend is not None:
                face, pseudo_fake, method = blend
                rows += self._pair_rows(task, index, face, pseudo_fake.mask, method, real, fake)
        stats["sampled"] += len(clip)
        for row in rows:
            count_row(stats, row)
        return rows

    def _blend(
        self, source: SelfBlendSource, index: int, image: np.ndarray, stats: dict[str, Any]
    ) -> tuple[DetectedFace, SelfBlend, int] | None:
        """The most confident face of the uncompressed frame, the frame's pseudo-fake and its method index (a
        donor blend with probability ``donor_probability``, else a self-blend); None without a face."""
        face = self.find_face(image)
        if face is None:
            stats["no_face"] += 1
            return None
        rng = np.random.default_rng(blend_seed(self.seed, source.name, index))
        donor = self._donor(face, source, rng) if rng.uniform() < self.donor_probability else None
        try:
            donated = None if donor is None else (donor.image, donor.landmarks)
            pseudo_fake = self_blend(image, face.landmarks, face.box, seed=rng, settings=self.settings, donor=donated)
        except ValueError as error:
            stats["no_face"] += 1
            stats["notes"].append(f"{source.name} frame {index}: skipped, no blend ({error})")
            return None
        return face, pseudo_fake, 1 if donor is None else 2

    def _donor(self, face: DetectedFace, source: SelfBlendSource, rng: np.random.Generator) -> Donor | None:
        if self._pool is None:
            self._pool = DonorPool.load(self.donors, self.find_face)
        return self._pool.choose(face.landmarks, source.path, rng)

    def _pair_rows(
        self,
        task: SourceTask,
        index: int,
        face: DetectedFace,
        mask: np.ndarray,
        method: int,
        real: np.ndarray,
        fake: np.ndarray,
    ) -> list[dict[str, Any]]:
        """The real and the pseudo-fake row of one frame, cut with one geometry."""
        columns = {"compression": task.compression, "video": task.source.name, "frame": index}
        real_row = self.crop_row(real, face, np.zeros_like(mask), REAL_MASK_SOURCE, label=0, method=0, **columns)
        fake_row = self.crop_row(fake, face, mask, FAKE_MASK_SOURCE, label=1, method=method, **columns)
        return [real_row, fake_row]


def plan_self_blend(
    real: Sequence[str | os.PathLike[str]],
    options: BuildOptions,
    *,
    every: int = 5,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    clip_frames: int = DEFAULT_CLIP_FRAMES,
    exclude: Sequence[str | os.PathLike[str]] = (),
    blend_options: dict[str, Any] | None = None,
) -> PreparePlan:
    """List the work: one item per compression level and source (`exclude`: files never used)."""
    fractions = check_fractions(split)
    found = list_sources(real)
    sources = exclude_sources(found, exclude)
    splits = split_sources(sources, fractions, seed)
    items = [
        _work_item(level, split_name, source)
        for level in options.compressions
        for split_name, sources in splits.items()
        for source in sources
    ]
    settings = {
        "every": every,
        "split": list(fractions),
        "seed": seed,
        **options.crop_settings(),
        "clip_frames": clip_frames,
        "excluded_files": len(found) - len(sources),
        **(blend_options or {}),
    }
    return PreparePlan(
        builder="self-blend",
        settings=settings,
        features=self_blend_features(),
        items=items,
        command="",
        card={
            "title": "Real faces and self-blended pseudo-fakes for MesoFCN",
            "intro": _intro(options, every),
            "unit": "video",
        },
        notes=[
            "Each source yields one real and one self-blend row per face; the count tables list each source once, "
            "under method real, with the rows of both classes."
        ],
    )


def _work_item(level: str, split: str, source: SelfBlendSource) -> WorkItem:
    return WorkItem(
        key=f"{level}/{source.name}",
        split=split,
        order=(level, source.kind, source.name),
        fingerprint=file_fingerprint([source.path], source.root),
        task=SourceTask(level, source),
    )


def _intro(options: BuildOptions, every: int) -> str:
    return (
        f"{options.size}x{options.size} face crops of real videos and images and of their self-blended pseudo-fakes "
        f"(SBI-style: the face blended with a transformed copy of itself through a deformed, feathered mask). Every "
        f"{every}th frame of a video (or the image) is blended as a full frame; then the run of real frames and the "
        "run of blended frames are each compressed as an H.264 video with FF++'s settings "
        f"({', '.join(options.compressions)}), "
        "and both are cut with the same face box (detected once, on the uncompressed real frame) by mesofcn's "
        "`crop_face`: a real and its pseudo-fake differ only by the blend. `mask_source` is `zeros` for a real "
        "(all-zero mask) and `self-blend` for a pseudo-fake (the exact blend mask). Splits are by source (a video, "
        "an image, or an identity subfolder of images), seeded. Check the licences of the source media before "
        "sharing this dataset."
    )


def build_self_blend(
    real: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    every: int = 5,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 0,
    clip_frames: int = DEFAULT_CLIP_FRAMES,
    max_frames: int | None = None,
    exclude: Sequence[str | os.PathLike[str]] = (),
    donors: Sequence[str | os.PathLike[str]] = (),
    donor_probability: float = 0.0,
    downsample_probability: float = 0.0,
    options: BuildOptions | None = None,
    **option_values: Any,
) -> BuildReport:
    """Build (or resume) the real / self-blend face dataset in ``out``; see the module docstring.

    Args:
        real: real videos, images, or folders searched recursively for both.
        every: keep one video frame in every ``every``.
        split: train / validation / test fractions (of videos, and of image groups).
        seed: seed of the split and of the blends.
        clip_frames: sampled frames of a video compressed as one H.264 clip.
        max_frames: at most this many sampled frames of a video (None: all).
        exclude: files never used, as a source or as a donor (e.g. the validation set's).
        donors: images (or folders of them) whose faces are pasted in donor blends (Face X-ray style).
        donor_probability: share of the pseudo-fakes that paste a donor's face instead of the face itself.
        downsample_probability: share of the pseudo-fakes whose pasted face is a lower-resolution copy.
        options, option_values: as for :func:`~mesofcn.data.faceforensics.build_faceforensics`; each source is
            processed once per level of ``compressions``.
    """
    options = BuildOptions.of(options, **option_values)
    check_positive_int("every", every)
    check_positive_int("clip_frames", clip_frames)
    if max_frames is not None:
        check_positive_int("max_frames", max_frames)
    check_probability("donor_probability", donor_probability)
    check_probability("downsample_probability", downsample_probability)
    donor_files = tuple(
        source.path
        for source in (exclude_sources(list_sources(donors), exclude) if donors else [])
        if source.kind == "image"
    )
    if donor_probability > 0 and not donor_files:
        raise PrepareError("donor blends need donor images: give --donors")
    blend_options = {
        "max_frames": max_frames,
        "donor_probability": donor_probability,
        "donor_images": len(donor_files),
        "downsample_probability": downsample_probability,
    }
    plan = plan_self_blend(
        list(real),
        options,
        every=every,
        split=split,
        seed=seed,
        clip_frames=clip_frames,
        exclude=exclude,
        blend_options=blend_options,
    )
    worker = SelfBlendWorker(
        **options.cropper_fields(),
        every=every,
        seed=seed,
        clip_frames=clip_frames,
        max_frames=max_frames,
        donors=donor_files,
        donor_probability=donor_probability,
        settings=SelfBlendSettings(downsample_probability=downsample_probability),
    )
    call = f"build_self_blend({[str(path) for path in real]!r}, {str(out)!r})"
    return run_build(plan, out, worker, options, call=call)
