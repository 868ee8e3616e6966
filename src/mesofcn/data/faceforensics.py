"""FaceForensics++ -> a DatasetDict of 128x128 face crops with manipulation masks, as the paper trains on.

Reads the official download layout::

    <root>/original_sequences/youtube/<level>/videos/NNN.mp4                 pristine (label real)
    <root>/manipulated_sequences/<Method>/<level>/videos/<target>_<source>.mp4   fakes (label fake)
    <root>/manipulated_sequences/<Method>/masks/videos/<target>_<source>.mp4     FF++'s per-frame masks

with ``<level>`` one of ``raw`` (c0), ``c23``, ``c40``. A level that is not downloaded but whose ``raw`` videos
are is derived from them with FF++'s own H.264 settings (:mod:`mesofcn.detection.compression`).

Sampling and cropping follow the paper: one frame in every ``every`` (5), the most confident face of each frame
(RetinaFace; box, landmarks, detector name and score recorded), cut with the processor's own
:func:`~mesofcn.detection.image_processing_mesofcn.crop_face`, so training sees exactly what inference sees.

Masks: FF++'s mask video, frame-aligned (same frame index), thresholded and cropped with the face's geometry;
pristine faces get an all-zero mask. Where a method has no mask videos, a *difference mask* against the
aligned original (|fake - original|, thresholded above the background's own compression noise, cleaned and
limited to the face box) is used when the original is there; otherwise there is no mask (``mask_source``
"none", ``mask`` None). Splits follow the official 720/140/140 lists shipped with the package: a pair
[a, b] puts a, b, a_b and b_a in its split. DeepFakeDetection (Google/Jigsaw actors) has no official split: its
videos and their ``original_sequences/actors`` originals all go to "test".
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..detection.compression import COMPRESSION_CRF
from .common import run_build
from .execution import BuildReport
from .faceforensics_masks import DIFFERENCE_MIN_THRESHOLD, DIFFERENCE_REGION_SCALE, MASK_VIDEO_THRESHOLD
from .faceforensics_worker import FaceForensicsWorker, VideoSource, VideoTask
from .rows import face_features
from .settings import DEFAULT_METHODS, FFPP_METHOD_NAMES, FFPP_METHODS, BuildOptions, check_positive_int
from .work import PrepareError, PreparePlan, WorkDir, WorkItem, file_fingerprint

__all__ = [
    "DEFAULT_METHODS",
    "FFPP_FEATURES",
    "FFPP_METHODS",
    "FFPP_METHOD_NAMES",
    "build_faceforensics",
    "load_official_splits",
    "official_split",
    "plan_faceforensics",
]

#: The builder's columns; ``method`` is :data:`~mesofcn.data.settings.FFPP_METHOD_NAMES` whatever --methods says.
FFPP_FEATURES = face_features(FFPP_METHOD_NAMES)


_SPLIT_FILES = {"train": "train.json", "validation": "val.json", "test": "test.json"}
_PAIR_NAME = re.compile(r"(\d{3})_(\d{3})")
_ORIGINAL_NAME = re.compile(r"\d{3}")
_DFD_NAME = re.compile(r"(\d+)_(\d+)__(.+)__[A-Za-z0-9]+")
_DFD = "DeepFakeDetection"


# --- official splits -------------------------------------------------------------------------------------


@cache
def load_official_splits() -> dict[str, tuple[tuple[str, str], ...]]:
    """FF++'s official split lists (shipped with mesofcn): split name -> pairs of 3-digit ids."""
    folder = resources.files("mesofcn.data") / "splits"
    return {
        split: tuple(tuple(pair) for pair in json.loads((folder / name).read_text()))
        for split, name in _SPLIT_FILES.items()
    }


@cache
def _split_by_id() -> dict[str, str]:
    return {video_id: split for split, pairs in load_official_splits().items() for pair in pairs for video_id in pair}


def official_split(video: str) -> str | None:
    """Split of an FF++ video stem ("519" or "519_515"), or None when its ids are not in one official pair."""
    by_id = _split_by_id()
    if _ORIGINAL_NAME.fullmatch(video):
        return by_id.get(video)
    match = _PAIR_NAME.fullmatch(video)
    if match is None:
        return None
    target, source = (by_id.get(video_id) for video_id in match.groups())
    return target if target is not None and target == source else None


# --- work list -------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Where one method's (or the originals') videos of one level are, and how to read them."""

    videos: Path
    derive_crf: int | None


def _check_root(root: Path) -> None:
    if not root.exists():
        raise PrepareError(f"{root}: FF++ root not found")
    if not root.is_dir():
        raise PrepareError(f"{root}: FF++ root is not a folder")
    missing = [name for name in ("original_sequences", "manipulated_sequences") if not (root / name).is_dir()]
    if missing:
        raise PrepareError(f"{root}: not an FF++ download (no {' or '.join(missing)} folder)")


def _layout(base: Path, level: str, required: bool) -> _Layout | None:
    """``base/<level>/videos``, else ``base/raw/videos`` to derive the level from; PrepareError if required."""
    videos = base / level / "videos"
    if videos.is_dir():
        return _Layout(videos, None)
    raw = base / "raw" / "videos"
    if level != "raw" and raw.is_dir():
        return _Layout(raw, COMPRESSION_CRF[level])
    if required:
        raise PrepareError(f"{videos}: not found (nor {raw} to derive {level} from)")
    return None


def _videos_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.mp4") if path.is_file())


def plan_faceforensics(
    root: str | os.PathLike[str],
    options: BuildOptions,
    *,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    every: int = 5,
) -> PreparePlan:
    """Scan an FF++ download and list the work: one item per (level, video), pristine and fake."""
    root = Path(root)
    _check_root(root)
    unknown = sorted(set(methods) - set(FFPP_METHODS))
    if unknown or not methods:
        raise PrepareError(f"unknown methods {unknown or '(none given)'}; known: {', '.join(FFPP_METHODS)}")
    methods = tuple(method for method in FFPP_METHODS if method in methods)
    items: list[WorkItem] = []
    notes: list[str] = []
    for level in options.compressions:
        items += _level_items(root, level, methods, notes)
    settings = {
        "every": every,
        **options.crop_settings(),
        "mask_video_threshold": MASK_VIDEO_THRESHOLD,
        "difference_min_threshold": DIFFERENCE_MIN_THRESHOLD,
        "difference_region_scale": DIFFERENCE_REGION_SCALE,
    }
    return PreparePlan(
        builder="faceforensics",
        settings=settings,
        features=FFPP_FEATURES,
        items=items,
        command="",
        card={
            "title": "FaceForensics++ faces for MesoFCN",
            "intro": _card_intro(options, methods),
            "unit": "video",
        },
        notes=list(dict.fromkeys(notes)),  # one note per method, not per level
    )


def _level_items(root: Path, level: str, methods: tuple[str, ...], notes: list[str]) -> list[WorkItem]:
    """Work items of one compression level: the youtube originals, then each method's fakes."""
    originals = _layout(root / "original_sequences" / "youtube", level, required=True)
    actors = _layout(root / "original_sequences" / "actors", level, required=False) if _DFD in methods else None
    if originals.derive_crf is not None:
        notes.append(f"{level}: originals derived from raw/ with FF++'s H.264 settings (CRF {originals.derive_crf})")
    items = [_item(root, level, "pristine", path, originals, notes) for path in _videos_in(originals.videos)]
    if actors is not None:
        items += [
            _item(root, level, "pristine", path, actors, notes, split="test") for path in _videos_in(actors.videos)
        ]
    for method in methods:
        base = root / "manipulated_sequences" / method
        fakes = _layout(base, level, required=True)
        if fakes.derive_crf is not None:
            notes.append(f"{level}: {method} derived from raw/ with FF++'s H.264 settings (CRF {fakes.derive_crf})")
        masks = base / "masks" / "videos"
        if not masks.is_dir():
            notes.append(
                f"{method}: no mask videos ({masks.relative_to(root)} not found): difference masks against the "
                "original where it is present, else none"
            )
        reference = actors if method == _DFD else originals
        mask_folder = masks if masks.is_dir() else None
        split = "test" if method == _DFD else None
        items += [
            _item(root, level, method, path, fakes, notes, mask_folder, reference, split)
            for path in _videos_in(fakes.videos)
        ]
    return [item for item in items if item is not None]


def _item(
    root: Path,
    level: str,
    method: str,
    path: Path,
    layout: _Layout,
    notes: list[str],
    masks: Path | None = None,
    originals: _Layout | None = None,
    split: str | None = None,
) -> WorkItem | None:
    """The work item of one video, or None (with a note) when it belongs to no official split.

    ``split`` overrides the official lists (DeepFakeDetection and its actors' originals: "test").
    """
    video = path.stem
    split = split or official_split(video)
    if split is None:
        notes.append(f"{path.relative_to(root)}: skipped, its ids are not one pair of the official split lists")
        return None
    mask = masks / path.name if masks is not None and (masks / path.name).is_file() else None
    original = None
    if method != "pristine" and originals is not None:
        original_path = originals.videos / f"{_original_stem(method, video)}.mp4"
        if original_path.is_file():
            original = VideoSource(str(original_path), originals.derive_crf)
    task = VideoTask(
        compression=level,
        method=method,
        video=video,
        source=VideoSource(str(path), layout.derive_crf),
        mask=str(mask) if mask else None,
        original=original,
        expected_crf=COMPRESSION_CRF[level] if layout.derive_crf is None and level != "raw" else None,
    )
    fingerprint = file_fingerprint([task.source.path, task.mask, original.path if original else None], root)
    key = f"{level}/{method}/{video}"
    order = (level, FFPP_METHOD_NAMES.index(method), video)
    return WorkItem(key=key, split=split, order=order, fingerprint=fingerprint, task=task)


def _original_stem(method: str, video: str) -> str:
    """The original a fake was made from: the target of ``target_source``, or ``NN__scene`` for DFD."""
    if method == _DFD:
        match = _DFD_NAME.fullmatch(video)
        return f"{match.group(1)}__{match.group(3)}" if match else ""
    return video.split("_")[0]


def _card_intro(options: BuildOptions, methods: tuple[str, ...]) -> str:
    return (
        f"{options.size}x{options.size} face crops from FaceForensics++ ({', '.join(options.compressions)}; "
        f"pristine and {', '.join(methods)}), one frame in every `every`, the most confident face per frame, cut with "
        "mesofcn's `crop_face` (the processor's crop). `mask` is a 0/255 PNG (all zero for pristine faces) or "
        "None; `mask_source` says where it came from (ffpp: FF++'s mask video, difference: |fake - original| "
        "of the aligned frames inside the face box, none: no mask). Splits: FF++'s official lists "
        "(val.json -> validation); DeepFakeDetection, which has none, is all in test. The videos are under the "
        "FaceForensics Terms of Use: research use only, do not redistribute."
    )


# --- the builder -----------------------------------------------------------------------------------------


def build_faceforensics(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS,
    every: int = 5,
    options: BuildOptions | None = None,
    **option_values: Any,
) -> BuildReport:
    """Build (or resume) the FF++ face dataset in ``out``; see the module docstring.

    Args:
        root: the FF++ download (holding original_sequences/ and manipulated_sequences/).
        out: output folder: the DatasetDict (``datasets.load_from_disk(out)``), README.md and ``.work/``.
        methods: manipulation methods (pristine videos are always included).
        every: keep frames 0, every, 2*every ... of each video (the paper: 5).
        options: what every builder takes (:class:`~mesofcn.data.settings.BuildOptions`: compressions, num_proc,
            shard, detector, min_score, crop_scale, size, progress, command, remove_work); ``option_values`` set
            single ones on top (``compressions=["c23", "c40"], progress=False``).
    """
    options = BuildOptions.of(options, **option_values)
    check_positive_int("every", every)
    plan = plan_faceforensics(root, options, methods=tuple(methods), every=every)
    worker = FaceForensicsWorker(every=every, work_dir=str(WorkDir(out).root), **options.cropper_fields())
    return run_build(plan, out, worker, options, call=f"build_faceforensics({str(root)!r}, {str(out)!r})")
