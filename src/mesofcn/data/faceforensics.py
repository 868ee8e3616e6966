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
import math
import os
import re
from contextlib import ExitStack, closing
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..detection.compression import COMPRESSION_CRF, encode_video, normalize_compression, read_x264_options
from ..detection.face_detection import DetectedFace, FaceDetector, RetinaFaceDetector
from ..detection.media_files import MediaError
from ..detection.video import FrameSampling, VideoFrame, iter_video_frames, probe_video
from .common import (
    MIN_FACE_SCORE,
    BuildReport,
    FaceCropper,
    ItemResult,
    PrepareError,
    PreparePlan,
    WorkDir,
    WorkItem,
    check_num_proc,
    count_row,
    empty_stats,
    face_features,
    file_fingerprint,
    run_build,
    select_shard,
)
from .settings import DEFAULT_METHODS, FFPP_METHODS

__all__ = [
    "DEFAULT_METHODS",
    "DIFFERENCE_MIN_THRESHOLD",
    "FFPP_FEATURES",
    "FFPP_METHODS",
    "FFPP_METHOD_NAMES",
    "MASK_VIDEO_THRESHOLD",
    "FaceForensicsProcessor",
    "VideoSource",
    "VideoTask",
    "build_faceforensics",
    "difference_mask",
    "load_official_splits",
    "official_split",
    "plan_faceforensics",
]

#: The ``method`` ClassLabel: fixed, so datasets built with different --methods stay compatible.
FFPP_METHOD_NAMES: tuple[str, ...] = ("pristine", *FFPP_METHODS)
FFPP_FEATURES = face_features(FFPP_METHOD_NAMES)

#: A mask-video pixel is "manipulated" above this value (any channel). FF++'s masks are 0/255 (Deepfakes) or
#: grey face renders whose darkest pixels are about 25 (NeuralTextures); H.264 ringing stays below it.
MASK_VIDEO_THRESHOLD = 12
#: Difference masks: lowest threshold on the blurred |fake - original|. It is raised to twice the 90th
#: percentile of the difference outside the face region when compression noise there is stronger (originals
#: and fakes encoded at different CRFs); a percentile this low ignores changes outside the face (which
#: NeuralTextures makes) as long as they cover under a tenth of the background.
DIFFERENCE_MIN_THRESHOLD = 15
_NOISE_PERCENTILE, _NOISE_FACTOR = 90, 2.0
#: Difference masks are kept only inside the face box scaled by this factor around its centre.
DIFFERENCE_REGION_SCALE = 1.1

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
    compressions: tuple[str, ...] = ("c23",),
    methods: tuple[str, ...] = DEFAULT_METHODS,
    every: int = 5,
    shard: tuple[int, int] | None = None,
    detector_name: str = RetinaFaceDetector.name,
    min_score: float = MIN_FACE_SCORE,
    crop_scale: float = 1.1,
    size: int = 128,
    command: str = "",
) -> PreparePlan:
    """Scan an FF++ download and list the work: one item per (level, video), pristine and fake."""
    root = Path(root)
    _check_root(root)
    compressions = tuple(dict.fromkeys(normalize_compression(level) for level in compressions))
    unknown = sorted(set(methods) - set(FFPP_METHODS))
    if unknown or not methods:
        raise PrepareError(f"unknown methods {unknown or '(none given)'}; known: {', '.join(FFPP_METHODS)}")
    methods = tuple(method for method in FFPP_METHODS if method in methods)
    items: list[WorkItem] = []
    notes: list[str] = []
    for level in compressions:
        items += _level_items(root, level, methods, notes)
    settings = {
        "every": every,
        "detector": detector_name,
        "min_score": min_score,
        "crop_scale": crop_scale,
        "size": size,
        "mask_video_threshold": MASK_VIDEO_THRESHOLD,
        "difference_min_threshold": DIFFERENCE_MIN_THRESHOLD,
        "difference_region_scale": DIFFERENCE_REGION_SCALE,
    }
    return PreparePlan(
        builder="faceforensics",
        settings=settings,
        features=FFPP_FEATURES,
        items=select_shard(items, shard),
        command=command,
        card={
            "title": "FaceForensics++ faces for MesoFCN",
            "intro": _card_intro(compressions, methods),
            "unit": "video",
        },
        notes=list(dict.fromkeys(notes)),  # one note per method, not per level
        shard=shard,
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


def _card_intro(compressions: tuple[str, ...], methods: tuple[str, ...]) -> str:
    return (
        f"128x128 face crops from FaceForensics++ ({', '.join(compressions)}; pristine and "
        f"{', '.join(methods)}), one frame in every `every`, the most confident face per frame, cut with "
        "mesofcn's `crop_face` (the processor's crop). `mask` is a 0/255 PNG (all zero for pristine faces) or "
        "None; `mask_source` says where it came from (ffpp: FF++'s mask video, difference: |fake - original| "
        "of the aligned frames inside the face box, none: no mask). Splits: FF++'s official lists "
        "(val.json -> validation); DeepFakeDetection, which has none, is all in test. The videos are under the "
        "FaceForensics Terms of Use: research use only, do not redistribute."
    )


# --- processing one video --------------------------------------------------------------------------------


def difference_mask(fake: np.ndarray, original: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A 0/1 (H, W) manipulation mask from two frame-aligned RGB frames, limited to the face ``box`` (x, y, w, h).

    |fake - original| (max over channels) is blurred at a scale set by the face size, thresholded above
    max(:data:`DIFFERENCE_MIN_THRESHOLD`, twice the 90th percentile outside the face region: compression noise),
    opened (drops specks and edge lines), closed, cut to the face box scaled by
    :data:`DIFFERENCE_REGION_SCALE`, and its regions' holes are filled.
    """
    if fake.shape != original.shape:
        raise ValueError(f"frames differ in size: {fake.shape} vs {original.shape}")
    face_size = max(box[2], box[3])
    difference = cv2.absdiff(fake, original).max(axis=2)
    blur = _odd(face_size / 25)
    difference = cv2.GaussianBlur(difference, (blur, blur), 0)
    region = _box_region(difference.shape, box, DIFFERENCE_REGION_SCALE)
    background = difference[~region]
    noise = _NOISE_FACTOR * float(np.percentile(background, _NOISE_PERCENTILE)) if background.size else 0.0
    threshold = max(DIFFERENCE_MIN_THRESHOLD, noise)
    mask = (difference > threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _disk(face_size / 20))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _disk(face_size / 6))
    mask[~region] = 0
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled


def _odd(size: float) -> int:
    value = max(3, int(round(size)))
    return value + 1 - value % 2


def _disk(size: float) -> np.ndarray:
    side = _odd(size)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def _box_region(shape: tuple[int, int], box: tuple[float, float, float, float], scale: float) -> np.ndarray:
    """Boolean (H, W) array, True inside ``box`` scaled by ``scale`` around its centre."""
    x, y, width, height = box
    center_x, center_y = x + width / 2, y + height / 2
    left, right = int(round(center_x - scale * width / 2)), int(round(center_x + scale * width / 2))
    top, bottom = int(round(center_y - scale * height / 2)), int(round(center_y + scale * height / 2))
    region = np.zeros(shape, dtype=bool)
    region[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
    return region


def _mask_from_video(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """0/1 mask of a decoded mask-video frame, resized (nearest) to the video's frame size if it differs."""
    mask = (frame.max(axis=2) > MASK_VIDEO_THRESHOLD).astype(np.uint8)
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask


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
class FaceForensicsProcessor(FaceCropper):
    """Turns one :class:`VideoTask` into rows (see :class:`~mesofcn.data.common.FaceCropper`).

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
        return _mask_from_video(mask_frame.image, image.shape[:2]), "ffpp"
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


# --- the builder -----------------------------------------------------------------------------------------


def build_faceforensics(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    compressions: tuple[str, ...] | list[str] = ("c23",),
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS,
    every: int = 5,
    num_proc: int = 1,
    shard: tuple[int, int] | None = None,
    detector: FaceDetector | None = None,
    min_score: float = MIN_FACE_SCORE,
    crop_scale: float = 1.1,
    size: int = 128,
    progress: bool = True,
    command: str | None = None,
    remove_work: bool = False,
) -> BuildReport:
    """Build (or resume) the FF++ face dataset in ``out``; see the module docstring.

    Args:
        root: the FF++ download (holding original_sequences/ and manipulated_sequences/).
        out: output folder: the DatasetDict (``datasets.load_from_disk(out)``), README.md and ``.work/``.
        compressions: levels to build ("c23", "c40", "raw"/"c0"); each is a ``compression`` value.
        methods: manipulation methods (pristine videos are always included).
        every: keep frames 0, every, 2*every ... of each video (the paper: 5).
        num_proc: worker processes (each runs its own single-threaded detector).
        shard: (i, n) builds only every n-th video from the i-th, leaving ``.work`` for :func:`merge_prepared`.
        detector: face detector to use instead of RetinaFace (its ``name`` is recorded).
        remove_work: delete ``.work`` after the dataset is written (a rerun then starts over).
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    check_num_proc(num_proc)
    detector_name = detector.name if detector is not None else RetinaFaceDetector.name
    plan = plan_faceforensics(
        root,
        compressions=tuple(compressions),
        methods=tuple(methods),
        every=every,
        shard=shard,
        detector_name=detector_name,
        min_score=min_score,
        crop_scale=crop_scale,
        size=size,
        command=command or f"build_faceforensics({str(root)!r}, {str(out)!r})",
    )
    processor = FaceForensicsProcessor(
        every=every,
        work_dir=str(WorkDir(out).root),
        detector=detector,
        min_score=min_score,
        crop_scale=crop_scale,
        size=size,
    )
    return run_build(plan, out, processor, num_proc=num_proc, progress=progress, remove_work=remove_work)
