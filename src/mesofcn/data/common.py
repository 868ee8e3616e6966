"""What the FF++ and GAN-face dataset builders share: schema, rows, resumable work, assembly, card, merge.

A build is a *plan* (settings + a sorted list of work items: one video, or one chunk of images) carried out
item by item. Each finished item is written atomically as its own small Parquet file under
``<out>/.work/<split>/<key>.parquet`` (temporary name, then ``os.replace``), carrying its statistics and a
fingerprint of its inputs in the file's metadata. An item counts as done exactly when that file exists and its
fingerprint matches, so a builder killed at any moment (even SIGKILL) and run again redoes only the missing
items and ends with the rows of an uninterrupted run. The final ``DatasetDict`` is assembled from the item
files in a fixed order (split, compression, method, video, frame), streamed through memory-mapped Arrow files
(so it scales past memory), saved with ``save_to_disk`` into a staging folder and then moved into place with
``dataset_dict.json`` last: ``datasets.load_from_disk`` never sees a half-written dataset.

``--shard i/n`` builds every n-th item of the sorted plan; :func:`merge_prepared` assembles finished shards.

A build or merge holds an exclusive lock on its output folder (``<out>/.lock``, an ``flock`` that dies with its
process, so a killed build leaves no stale lock): a second ``mesofcn prepare`` into the same folder is refused with
a one-line error instead of interleaving its writes with the first's.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Image, List, Value
from datasets.splits import NamedSplit
from datasets.utils import logging as datasets_logging
from PIL import Image as PILImage
from tqdm.auto import tqdm

from ..atomic_files import atomic_output, write_bytes_atomic
from ..detection.face_detection import DetectedFace, FaceDetector, RetinaFaceDetector
from ..detection.image_processing_mesofcn import crop_face
from ..detection.media import load_image
from ..detection.media_files import is_image_path, is_video_path
from ..detection.video import FrameSampling, iter_video_frames
from .settings import MIN_FACE_SCORE, parse_shard

__all__ = [
    "BUILD_SETTINGS_FILE",
    "BuildReport",
    "FaceCropper",
    "ItemProcessor",
    "ItemResult",
    "LABEL_NAMES",
    "MASK_SOURCES",
    "MIN_FACE_SCORE",
    "PrepareError",
    "PreparePlan",
    "SPLITS",
    "WorkDir",
    "WorkItem",
    "assemble",
    "check_num_proc",
    "count_row",
    "empty_stats",
    "encode_png",
    "execute_plan",
    "face_features",
    "face_row",
    "file_fingerprint",
    "finish_build",
    "media_kind",
    "merge_prepared",
    "most_confident_face",
    "output_lock",
    "parse_shard",
    "publish_staged",
    "run_build",
    "runs_of",
    "sampled_frames",
    "select_shard",
]

#: Split names of every DatasetDict the builders write (FF++'s val.json becomes "validation").
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Class names; "fake" is class 1 everywhere, as in the model's config.
LABEL_NAMES: tuple[str, ...] = ("real", "fake")
#: Where a row's mask came from: "ffpp" FF++'s mask video (or the all-zero mask of a pristine face), "difference"
#: |fake - original| of the aligned frames, "whole-image" the whole image is what its label says (GAN faces: all
#: zeros for a real photo, all ones for a generated image), "none" no mask (``mask`` is None; training ignores it).
MASK_SOURCES: tuple[str, ...] = ("ffpp", "difference", "whole-image", "zeros", "self-blend", "none")
_FORMAT = 1
_WORK = ".work"
_PLAN = "plan.json"
_META_KEY = b"mesofcn"
_STAGING = ".staging"
_TRASH = ".trash"
_MARKER = "dataset_dict.json"
_LOCK = ".lock"
#: The build's settings (builder, crop_scale, size, detector ...) beside the DatasetDict, read by training so that
#: a checkpoint's processor crops faces the way its training data was cropped.
BUILD_SETTINGS_FILE = "mesofcn_build.json"


class PrepareError(ValueError):
    """A problem with a builder's inputs or output folder, reported in one line."""


def face_features(method_names: Sequence[str]) -> Features:
    """The columns every builder writes; ``method`` is a ClassLabel over ``method_names``."""
    return Features(
        {
            "image": Image(),
            "mask": Image(),
            "label": ClassLabel(names=list(LABEL_NAMES)),
            "method": ClassLabel(names=list(method_names)),
            "compression": Value("string"),
            "video": Value("string"),
            "frame": Value("int32"),
            "box": List(Value("float32"), length=4),
            "landmarks": List(Value("float32"), length=10),
            "detector": Value("string"),
            "detector_score": Value("float32"),
            "mask_source": Value("string"),
        }
    )


# --- rows ------------------------------------------------------------------------------------------------


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) RGB or (H, W) grey uint8 array (never JPEG: it changes the artifacts)."""
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def most_confident_face(
    detector: FaceDetector, image: np.ndarray, min_score: float = MIN_FACE_SCORE
) -> DetectedFace | None:
    """The highest-scoring face scoring at least ``min_score``, or None."""
    faces = [face for face in detector.detect(image) if face.score >= min_score]
    return max(faces, key=lambda face: face.score) if faces else None


def face_row(
    *,
    crop: np.ndarray,
    mask_crop: np.ndarray | None,
    label: int,
    method: int,
    compression: str,
    video: str,
    frame: int,
    face: DetectedFace,
    detector: str,
    mask_source: str,
) -> dict[str, Any]:
    """One row in Arrow storage form: PNG bytes for the crop and the 0/255 mask (0/1 ``mask_crop`` in)."""
    if mask_source not in MASK_SOURCES:
        raise ValueError(f"mask_source must be one of {MASK_SOURCES}, got {mask_source!r}")
    if (mask_crop is None) != (mask_source == "none"):
        raise ValueError(f"mask_source 'none' goes with a missing mask and only with it, got {mask_source!r}")
    mask = None if mask_crop is None else {"bytes": encode_png((mask_crop > 0).astype(np.uint8) * 255), "path": None}
    return {
        "image": {"bytes": encode_png(crop), "path": None},
        "mask": mask,
        "label": int(label),
        "method": int(method),
        "compression": compression,
        "video": video,
        "frame": int(frame),
        "box": [float(v) for v in face.box],
        "landmarks": [float(v) for v in np.asarray(face.landmarks, dtype=np.float32).reshape(-1)],
        "detector": detector,
        "detector_score": float(face.score),
        "mask_source": mask_source,
    }


@dataclass
class FaceCropper:
    """The detect-and-crop step shared by the builders' processors: the most confident face of an image, and its
    row (the processor's :func:`~mesofcn.detection.image_processing_mesofcn.crop_face` applied to the image and its
    mask).

    Picklable until :meth:`setup` builds the detector in the process that runs it (``detector`` None: RetinaFace,
    single-threaded when several processes share the CPUs); pass ``detector`` to use another one.
    """

    detector: FaceDetector | None = None
    min_score: float = MIN_FACE_SCORE
    crop_scale: float = 1.1
    size: int = 128
    _detector: FaceDetector | None = field(default=None, init=False, repr=False)

    def setup(self, parallel: bool) -> None:
        if self.detector is not None:
            self._detector = self.detector
        else:
            self._detector = RetinaFaceDetector(min_score=self.min_score, num_threads=1 if parallel else None)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_detector": None}

    def find_face(self, image: np.ndarray) -> DetectedFace | None:
        if self._detector is None:
            raise RuntimeError("call setup() before processing")
        return most_confident_face(self._detector, image, self.min_score)

    def crop_row(
        self,
        image: np.ndarray,
        face: DetectedFace,
        mask: np.ndarray | None,
        mask_source: str,
        encode: Callable[[np.ndarray], np.ndarray] | None = None,
        **columns: Any,
    ) -> dict[str, Any]:
        """The row of ``face``: ``image`` and the full-frame 0/1 ``mask`` cut with one geometry (the crop then
        passed through ``encode`` when given, e.g. an H.264 round trip); ``columns`` gives label, method,
        compression, video and frame."""
        crop, mask_crop, _ = crop_face(image, face.box, face.landmarks, mask, self.crop_scale, self.size)
        if encode is not None:
            crop = encode(crop)
        return face_row(
            crop=crop, mask_crop=mask_crop, face=face, detector=self._detector.name, mask_source=mask_source, **columns
        )


def file_fingerprint(paths: Iterable[str | os.PathLike[str] | None], root: str | os.PathLike[str]) -> str:
    """Short hash of files' paths (relative to ``root``) and sizes: a replaced or added input changes it."""
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            digest.update(b"-\n")
            continue
        relative = Path(os.path.relpath(path, root)).as_posix()
        digest.update(f"{relative}\t{Path(path).stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


# --- plan and work items -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkItem:
    """One unit of resumable work.

    Attributes:
        key: unique relative path of its result file, e.g. ``"c23/Deepfakes/519_515"``.
        split: "train", "validation" or "test".
        order: sort key of its rows within the split (compression, method id, video ...).
        fingerprint: hash of the inputs; a finished result with another fingerprint is redone.
        task: what the builder's processor needs (picklable); not saved in the plan.
    """

    key: str
    split: str
    order: tuple
    fingerprint: str
    task: Any = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "split": self.split, "order": list(self.order), "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkItem:
        return cls(key=data["key"], split=data["split"], order=tuple(data["order"]), fingerprint=data["fingerprint"])


@dataclass
class ItemResult:
    """A processed item: its rows (Arrow storage form, in frame order) and JSON-ready statistics.

    ``stats`` keys: compression, method, label (names), videos (1 per video, 0 for image chunks), sampled
    (frames or images looked at), rows, no_face, mask_sources ({source: rows}), notes (list of strings).
    """

    rows: list[dict[str, Any]]
    stats: dict[str, Any]


class ItemProcessor(Protocol):
    """Turns a work item into rows. Must be picklable before :meth:`setup` (it is sent to worker processes)."""

    def setup(self, parallel: bool) -> None:
        """Build what cannot be pickled (the face detector's onnxruntime session), in the process that runs."""

    def __call__(self, item: WorkItem) -> ItemResult: ...


@dataclass
class PreparePlan:
    """Everything a build needs to resume, to merge with its other shards, and to write its card.

    ``settings`` must be equal for a resumed run and for merged shards; ``card`` holds ``title``, ``intro``
    (markdown) and ``unit`` ("video" or "image"); ``notes`` are build-level remarks for the card.
    """

    builder: str
    settings: dict[str, Any]
    features: Features
    items: list[WorkItem]
    command: str
    card: dict[str, str]
    notes: list[str] = field(default_factory=list)
    shard: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "builder": self.builder,
            "settings": self.settings,
            "features": self.features.to_dict(),
            "shard": list(self.shard) if self.shard else None,
            "command": self.command,
            "card": self.card,
            "notes": self.notes,
            "items": [item.to_json() for item in self.items],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreparePlan:
        return cls(
            builder=data["builder"],
            settings=data["settings"],
            features=Features.from_dict(data["features"]),
            items=[WorkItem.from_json(item) for item in data["items"]],
            command=data["command"],
            card=data["card"],
            notes=list(data.get("notes", [])),
            shard=tuple(data["shard"]) if data.get("shard") else None,
        )

    def identity(self) -> dict[str, Any]:
        """What must match between a resumed run and the run that started the folder."""
        return {"builder": self.builder, "settings": self.settings, "features": self.features.to_dict()}


def select_shard(items: Sequence[WorkItem], shard: tuple[int, int] | None) -> list[WorkItem]:
    """Items sorted by (split, order), then every n-th from the i-th for shard (i, n); all when None."""
    ordered = sorted(items, key=lambda item: (SPLITS.index(item.split), item.order))
    if shard is None:
        return ordered
    index, count = shard
    return ordered[index::count]


class WorkDir:
    """The ``.work`` folder of an output folder: the plan and one result file per finished item."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.root = self.out / _WORK

    @property
    def plan_path(self) -> Path:
        return self.root / _PLAN

    def result_path(self, item: WorkItem) -> Path:
        return self.root / item.split / f"{item.key}.parquet"

    def read_plan(self) -> PreparePlan | None:
        if not self.plan_path.is_file():
            return None
        return PreparePlan.from_json(json.loads(self.plan_path.read_text()))

    def start(self, plan: PreparePlan) -> None:
        """Check the folder can take this plan (fresh, or started with the same settings), then save the plan."""
        _check_output_folder(self.out)
        previous = self.read_plan()
        if previous is not None:
            if previous.identity() != plan.identity():
                raise PrepareError(
                    f"{self.out}: was started by a different build ({_identity_difference(previous, plan)}); "
                    "rerun with the same settings or choose a new --out"
                )
            if previous.shard != plan.shard:
                raise PrepareError(
                    f"{self.out}: holds shard {_shard_text(previous.shard)}, not {_shard_text(plan.shard)}; "
                    "use one --out per shard"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_temporaries()
        write_bytes_atomic(self.plan_path, json.dumps(plan.to_json(), indent=1).encode(), suffix=".tmp")

    def is_done(self, item: WorkItem) -> bool:
        meta = self.read_meta(item)
        return meta is not None and meta.get("fingerprint") == item.fingerprint

    def read_meta(self, item: WorkItem) -> dict[str, Any] | None:
        """The result file's metadata (fingerprint and stats), or None when it is missing or unreadable."""
        path = self.result_path(item)
        if not path.is_file():
            return None
        try:
            metadata = pq.read_schema(path).metadata or {}
            return json.loads(metadata[_META_KEY])
        except (OSError, KeyError, ValueError, pa.ArrowException):
            return None

    def write_result(self, item: WorkItem, rows: list[dict[str, Any]], schema: pa.Schema, stats: dict) -> None:
        """Write an item's rows and stats as one Parquet file, atomically (temporary name, then rename)."""
        table = pa.Table.from_pylist(rows, schema=schema)
        meta = json.dumps({"fingerprint": item.fingerprint, "stats": stats}, sort_keys=True).encode()
        table = table.replace_schema_metadata({_META_KEY: meta})
        # A killed run's temporary (a *.tmp name) is removed by the next run: see _remove_temporaries.
        with atomic_output(self.result_path(item), suffix=".tmp") as temporary, temporary.open("wb") as file:
            pq.write_table(table, file)

    def _remove_temporaries(self) -> None:
        """Delete what a killed run left half-written (result files before their rename, derived videos)."""
        for path in self.root.rglob("*.tmp"):
            path.unlink(missing_ok=True)


def _check_output_folder(out: Path) -> None:
    """Refuse a non-empty folder that is neither a builder output nor a started build (protects user files)."""
    if out.exists() and not out.is_dir():
        raise PrepareError(f"{out}: exists and is not a folder")
    started = (out / _WORK).is_dir() or (out / _MARKER).is_file()
    if out.is_dir() and not started and any(entry.name != _LOCK for entry in out.iterdir()):
        raise PrepareError(f"{out}: folder is not empty and not a mesofcn prepare output; choose a new --out")


@contextmanager
def output_lock(out: str | os.PathLike[str], check: Callable[[Path], None] | None = None) -> Iterator[None]:
    """Hold ``out``'s lock (creating the folder) while a build or merge writes there; PrepareError naming the
    process that holds it when another one does. The lock is released when the block ends or the process dies.
    ``check`` refuses an unsuitable folder first (default: anything but a builder output; ``prepare pack`` passes
    its own)."""
    out = Path(out)
    (check or _check_output_folder)(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / _LOCK).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise PrepareError(
                f"{out}: another mesofcn prepare is writing there (process {holder}); wait for it to end or choose "
                "another --out"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def _identity_difference(previous: PreparePlan, plan: PreparePlan) -> str:
    if previous.builder != plan.builder:
        return f"builder {previous.builder} vs {plan.builder}"
    changed = [
        f"{key} {previous.settings.get(key)!r} vs {plan.settings.get(key)!r}"
        for key in sorted(set(previous.settings) | set(plan.settings))
        if previous.settings.get(key) != plan.settings.get(key)
    ]
    return "; ".join(changed) or "different columns"


def _shard_text(shard: tuple[int, int] | None) -> str:
    return "none (a full build)" if shard is None else f"{shard[0]}/{shard[1]}"


# --- running the plan --------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    """What a builder or a merge did: work done in this run, and where the dataset is (None for a lone shard)."""

    builder: str
    out: Path
    items: int
    done_before: int
    videos: int = 0
    sampled: int = 0
    rows: int = 0
    no_face: int = 0
    seconds: float = 0.0
    unit: str = "video"
    dataset: Path | None = None
    split_rows: dict[str, int] = field(default_factory=dict)

    def throughput_line(self) -> str:
        """``faceforensics: 5 videos, 487 sampled frames (3 without a face), 484 faces in 31.2 s: 15.6 frames/s``."""
        noun = "frames" if self.unit == "video" else "images"
        done = self.items - self.done_before
        count = f"{self.videos} videos" if self.unit == "video" else f"{done} chunks"
        rate = self.sampled / self.seconds if self.seconds > 0 else 0.0
        line = (
            f"{self.builder}: {count}, {self.sampled} sampled {noun} ({self.no_face} without a face), "
            f"{self.rows} faces in {self.seconds:.1f} s: {rate:.1f} {noun}/s"
        )
        if self.done_before:
            line += f" ({self.done_before} of {self.items} work items were already done)"
        return line


class _Runner:
    """Runs items with a processor and writes their results; one per process."""

    def __init__(self, processor: ItemProcessor, out: Path, schema: pa.Schema, parallel: bool) -> None:
        processor.setup(parallel)
        self.processor = processor
        self.workdir = WorkDir(out)
        self.schema = schema

    def __call__(self, item: WorkItem) -> dict[str, Any]:
        result = self.processor(item)
        stats = {**result.stats, "key": item.key, "split": item.split}
        self.workdir.write_result(item, result.rows, self.schema, stats)
        return stats


_WORKER_RUNNER: _Runner | None = None


def _init_worker(processor: ItemProcessor, out: Path, schema: pa.Schema) -> None:
    global _WORKER_RUNNER
    _WORKER_RUNNER = _Runner(processor, out, schema, parallel=True)


def _run_in_worker(item: WorkItem) -> dict[str, Any]:
    assert _WORKER_RUNNER is not None, "worker not initialised"
    return _WORKER_RUNNER(item)


def run_build(
    plan: PreparePlan,
    out: str | os.PathLike[str],
    processor: ItemProcessor,
    num_proc: int = 1,
    progress: bool = True,
    remove_work: bool = False,
) -> BuildReport:
    """Carry out ``plan`` in ``out`` (resuming what an earlier run finished) and assemble the dataset, holding the
    output folder's lock throughout (see :func:`output_lock`)."""
    with output_lock(out):
        report = execute_plan(plan, out, processor, num_proc=num_proc, progress=progress)
        return finish_build(plan, out, report, remove_work=remove_work, progress=progress)


def execute_plan(
    plan: PreparePlan,
    out: str | os.PathLike[str],
    processor: ItemProcessor,
    num_proc: int = 1,
    progress: bool = True,
) -> BuildReport:
    """Save the plan in ``out/.work``, then process every item not done yet (in ``num_proc`` processes)."""
    if num_proc < 1:
        raise ValueError(f"num_proc must be >= 1, got {num_proc}")
    workdir = WorkDir(out)
    workdir.start(plan)
    pending = [item for item in plan.items if not workdir.is_done(item)]
    unit = plan.card.get("unit", "video")
    done_before = len(plan.items) - len(pending)
    report = BuildReport(plan.builder, Path(out), items=len(plan.items), done_before=done_before, unit=unit)
    start = time.perf_counter()
    noun = "frames" if unit == "video" else "images"
    bar = tqdm(
        total=len(pending), unit="video" if unit == "video" else "chunk", disable=not progress, desc=plan.builder
    )
    with bar:
        for stats in _process(pending, processor, Path(out), plan.features.arrow_schema, num_proc):
            report.videos += stats.get("videos", 0)
            report.sampled += stats["sampled"]
            report.rows += stats["rows"]
            report.no_face += stats["no_face"]
            bar.update(1)
            bar.set_postfix_str(f"{report.sampled / max(time.perf_counter() - start, 1e-9):.1f} {noun}/s")
    report.seconds = time.perf_counter() - start
    return report


def _process(
    items: list[WorkItem], processor: ItemProcessor, out: Path, schema: pa.Schema, num_proc: int
) -> Iterator[dict[str, Any]]:
    """Yield each item's stats as it finishes: in this process, or in a pool of spawned worker processes.

    A worker that dies (killed, out of memory, or failing to start: e.g. a script without an
    ``if __name__ == "__main__":`` guard) stops the build with BrokenProcessPool instead of hanging it.
    """
    if not items:
        return
    if num_proc == 1:
        runner = _Runner(processor, out, schema, parallel=False)
        for item in items:
            yield runner(item)
        return
    context = multiprocessing.get_context("spawn")  # onnxruntime and torch threads do not survive fork
    workers = min(num_proc, len(items))
    with ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(processor, out, schema)) as pool:
        futures = [pool.submit(_run_in_worker, item) for item in items]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


# --- assembly --------------------------------------------------------------------------------------------


def finish_build(
    plan: PreparePlan,
    out: str | os.PathLike[str],
    report: BuildReport,
    remove_work: bool = False,
    progress: bool = True,
) -> BuildReport:
    """Assemble the DatasetDict and its card in ``out`` from the finished items (a lone shard stops here)."""
    if plan.shard is not None:
        return report
    workdir = WorkDir(out)
    sources = [(workdir, plan.items)]
    card = _card_text(plan, sources, [plan.command])
    report.split_rows = assemble(sources, plan.features, Path(out), card, progress, _build_settings(plan))
    report.dataset = Path(out)
    if remove_work:
        shutil.rmtree(workdir.root)
    return report


def assemble(
    sources: Sequence[tuple[WorkDir, Sequence[WorkItem]]],
    features: Features,
    out: Path,
    card: str,
    progress: bool = True,
    settings: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Write the DatasetDict (every split, empty ones included), README.md and the build ``settings``
    (:data:`BUILD_SETTINGS_FILE`) into ``out``; rows per split.

    Each split's item files are streamed in (order, key) order into one Arrow file, memory-mapped as a Dataset
    and saved with ``save_to_disk`` into a staging folder, which is then moved into ``out``.
    """
    staging, trash = out / _STAGING, out / _TRASH
    for leftover in (staging, trash):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    by_split: dict[str, list[tuple[tuple, str, Path]]] = defaultdict(list)
    for workdir, items in sources:
        for item in items:
            by_split[item.split].append((item.order, item.key, workdir.result_path(item)))
    splits = {}
    for split in SPLITS:
        stream = staging / f"{split}.stream.arrow"
        _concatenate(sorted(by_split[split]), features.arrow_schema, stream)
        splits[split] = Dataset.from_file(str(stream), info=DatasetInfo(features=features), split=NamedSplit(split))
    dataset = DatasetDict(splits)
    num_shards = {split: 1 if len(data) == 0 else None for split, data in dataset.items()}
    saved = staging / "dataset"
    with _datasets_progress(progress):
        dataset.save_to_disk(str(saved), num_shards=num_shards)
    (saved / "README.md").write_text(card)
    (saved / BUILD_SETTINGS_FILE).write_text(json.dumps(settings or {}, indent=2, sort_keys=True) + "\n")
    rows = {split: len(data) for split, data in dataset.items()}
    del dataset, splits
    publish_staged(saved, out, trash)
    shutil.rmtree(staging, ignore_errors=True)
    return rows


@contextmanager
def _datasets_progress(enabled: bool) -> Iterator[None]:
    """Turn the datasets library's own progress bars off inside the block unless ``enabled``."""
    was_enabled = datasets_logging.is_progress_bar_enabled()
    if not enabled:
        datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            datasets_logging.enable_progress_bar()


def _concatenate(parts: list[tuple[tuple, str, Path]], schema: pa.Schema, target: Path) -> None:
    """Stream item files into one Arrow IPC stream file with the dataset's schema (one item in memory)."""
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for _, _, path in parts:
            table = pq.read_table(path).replace_schema_metadata(None).cast(schema)
            writer.write_table(table)


def publish_staged(saved: Path, out: Path, trash: Path, marker: str = _MARKER) -> None:
    """Move what was written in ``saved`` into ``out``: drop the old ``marker`` (the file that says the folder is
    complete) first, move the parts (old ones of the same name to ``trash``), the new marker last."""
    (out / marker).unlink(missing_ok=True)
    trash.mkdir(exist_ok=True)
    for entry in sorted(saved.iterdir()):
        if entry.name == marker:
            continue
        target = out / entry.name
        if target.exists():
            os.replace(target, trash / entry.name)
        os.replace(entry, target)
    os.replace(saved / marker, out / marker)
    shutil.rmtree(trash, ignore_errors=True)


# --- merge -----------------------------------------------------------------------------------------------


def merge_prepared(
    shard_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    command: str | None = None,
    progress: bool = True,
) -> BuildReport:
    """Assemble the finished shards of one build (``--shard i/n`` outputs, or full builds of the same settings
    with different videos) into one DatasetDict in ``out``."""
    if not shard_dirs:
        raise PrepareError("give at least one shard folder to merge")
    plans = [_finished_plan(WorkDir(path)) for path in shard_dirs]
    _check_mergeable(plans, shard_dirs)
    out = Path(out)
    sources = [(WorkDir(path), plan.items) for path, plan in zip(shard_dirs, plans, strict=True)]
    first = plans[0]
    merged = PreparePlan(
        builder=first.builder,
        settings=first.settings,
        features=first.features,
        items=[item for plan in plans for item in plan.items],
        command=command or "mesofcn prepare merge",
        card=first.card,
        notes=sorted({note for plan in plans for note in plan.notes}),
    )
    start = time.perf_counter()
    commands = [*(plan.command for plan in plans), merged.command]
    card = _card_text(merged, sources, commands)
    with output_lock(out):
        split_rows = assemble(sources, first.features, out, card, progress, _build_settings(first))
    return BuildReport(
        builder=f"{first.builder} (merge)",
        out=out,
        items=len(merged.items),
        done_before=len(merged.items),
        seconds=time.perf_counter() - start,
        unit=first.card.get("unit", "video"),
        dataset=out,
        split_rows=split_rows,
    )


def _build_settings(plan: PreparePlan) -> dict[str, Any]:
    return {"builder": plan.builder, **plan.settings}


def _finished_plan(workdir: WorkDir) -> PreparePlan:
    plan = workdir.read_plan()
    if plan is None:
        raise PrepareError(f"{workdir.out}: not a prepare output (no {_WORK}/{_PLAN})")
    missing = [item for item in plan.items if not workdir.is_done(item)]
    if missing:
        raise PrepareError(
            f"{workdir.out}: unfinished, {len(missing)} of {len(plan.items)} work items missing "
            f"(first: {missing[0].key}); rerun its command to finish it: {plan.command}"
        )
    return plan


def _check_mergeable(plans: list[PreparePlan], dirs: Sequence[str | os.PathLike[str]]) -> None:
    """Same builder and settings; shards of one n, each present once; no work item twice."""
    for plan, path in zip(plans[1:], dirs[1:], strict=True):
        if plan.identity() != plans[0].identity():
            difference = _identity_difference(plans[0], plan)
            raise PrepareError(f"{path}: built with other settings than {dirs[0]} ({difference})")
    shards = [plan.shard for plan in plans if plan.shard is not None]
    if shards:
        counts = {count for _, count in shards}
        indices = sorted(index for index, _ in shards)
        if len(shards) != len(plans) or len(counts) != 1 or indices != list(range(next(iter(counts)))):
            given = ", ".join(_shard_text(plan.shard) for plan in plans)
            raise PrepareError(f"shards must be all of 0/n .. n-1/n exactly once; got {given}")
    seen: dict[str, str] = {}
    for plan, path in zip(plans, dirs, strict=True):
        for item in plan.items:
            where = seen.setdefault(f"{item.split}/{item.key}", str(path))
            if where != str(path):
                raise PrepareError(f"work item {item.key} is in both {where} and {path}")


# --- dataset card ----------------------------------------------------------------------------------------


def _card_text(
    plan: PreparePlan, sources: Sequence[tuple[WorkDir, Sequence[WorkItem]]], commands: Sequence[str]
) -> str:
    """README.md: what the dataset is, the exact command(s), settings, counts, masks and notes."""
    stats = [workdir.read_meta(item)["stats"] for workdir, items in sources for item in items]
    unit = plan.card.get("unit", "video")
    lines = [
        "---",
        f"pretty_name: {plan.card['title']}",
        "task_categories:",
        "- image-classification",
        "- image-segmentation",
        "tags:",
        "- deepfake-detection",
        "- mesofcn",
        "---",
        "",
        f"# {plan.card['title']}",
        "",
        plan.card["intro"].strip(),
        "",
        "## Command",
        "",
        "```",
        *commands,
        "```",
        "",
        "## Settings",
        "",
        *(f"- {key}: {value}" for key, value in plan.settings.items()),
        "",
        *_count_tables(stats, unit, plan.features["method"].names),
        *_notes(plan.notes, stats),
    ]
    return "\n".join(lines) + "\n"


def _count_tables(stats: list[dict[str, Any]], unit: str, method_names: Sequence[str]) -> list[str]:
    """Markdown tables: rows per split / compression / method / label, and rows per mask source."""
    groups: dict[tuple, Counter] = defaultdict(Counter)
    masks: dict[tuple, Counter] = defaultdict(Counter)
    for entry in stats:
        key = (SPLITS.index(entry["split"]), entry["compression"], method_names.index(entry["method"]), entry["label"])
        groups[key].update({k: entry.get(k, 0) for k in ("videos", "sampled", "rows", "no_face")})
        masks[key].update(entry["mask_sources"])
    sampled = "sampled frames" if unit == "video" else "images"
    head = ["split", "compression", "method", "label"] + (["videos"] if unit == "video" else [])
    lines = [
        "## Counts",
        "",
        "| " + " | ".join([*head, sampled, "faces (rows)", f"{sampled} without a face"]) + " |",
        "|" + "---|" * (len(head) + 3),
    ]
    totals: dict[str, Counter] = defaultdict(Counter)
    for key in sorted(groups):
        counts = groups[key]
        cells = [SPLITS[key[0]], key[1], method_names[key[2]], key[3]]
        cells += [str(counts["videos"])] if unit == "video" else []
        cells += [str(counts["sampled"]), str(counts["rows"]), str(counts["no_face"])]
        lines.append("| " + " | ".join(cells) + " |")
        totals[SPLITS[key[0]]].update(counts)
    lines += ["", "| split | faces (rows) | " + f"{sampled} without a face |", "|---|---|---|"]
    for split in SPLITS:
        lines.append(f"| {split} | {totals[split]['rows']} | {totals[split]['no_face']} |")
    lines += ["", "## Masks (rows per mask_source)", "", "| split | compression | method | label | "]
    lines[-1] += " | ".join(MASK_SOURCES) + " |"
    lines.append("|" + "---|" * (4 + len(MASK_SOURCES)))
    for key in sorted(masks):
        cells = [SPLITS[key[0]], key[1], method_names[key[2]], key[3], *(str(masks[key][s]) for s in MASK_SOURCES)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _notes(plan_notes: list[str], stats: list[dict[str, Any]]) -> list[str]:
    notes = [*plan_notes, *(note for entry in stats for note in entry.get("notes", []))]
    if not notes:
        return []
    return ["## Notes", "", *(f"- {note}" for note in notes), ""]


# --- helpers shared by the builders ----------------------------------------------------------------------


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


def check_num_proc(num_proc: int) -> int:
    """``num_proc`` as an int >= 1 (ValueError otherwise)."""
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc must be an integer >= 1, got {num_proc!r}")
    return num_proc


def empty_stats(compression: str, method: str, label: str, videos: int) -> dict[str, Any]:
    """Fresh per-item statistics (see :class:`ItemResult`)."""
    return {
        "compression": compression,
        "method": method,
        "label": label,
        "videos": videos,
        "sampled": 0,
        "rows": 0,
        "no_face": 0,
        "mask_sources": dict.fromkeys(MASK_SOURCES, 0),
        "notes": [],
    }


def count_row(stats: dict[str, Any], row: dict[str, Any]) -> None:
    """Add one written row to ``stats``."""
    stats["rows"] += 1
    stats["mask_sources"][row["mask_source"]] += 1
