"""The resumable work of a build: its plan (settings + sorted work items) and one result file per finished item.

Each finished item is written atomically as its own small Parquet file under ``<out>/.work/<split>/<key>.parquet``
(temporary name, then ``os.replace``), carrying its statistics and a fingerprint of its inputs in the file's
metadata. An item counts as done exactly when that file exists and its fingerprint matches, so a builder killed at
any moment (even SIGKILL) and run again redoes only the missing items and ends with the rows of an uninterrupted run.

A build or merge holds an exclusive lock on its output folder (``<out>/.lock``, an ``flock`` that dies with its
process, so a killed build leaves no stale lock): a second ``mesofcn prepare`` into the same folder is refused with
a one-line error instead of interleaving its writes with the first's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features

from ..atomic_files import atomic_output, write_bytes_atomic
from .rows import SPLITS

__all__ = [
    "DATASET_MARKER",
    "ItemWorker",
    "ItemResult",
    "PrepareError",
    "PreparePlan",
    "WorkDir",
    "WorkItem",
    "file_fingerprint",
    "identity_difference",
    "output_lock",
    "select_shard",
    "shard_text",
]

_FORMAT = 1
_WORK = ".work"
_PLAN = "plan.json"
_META_KEY = b"mesofcn"
#: The file that says an output folder holds a complete DatasetDict (written last).
DATASET_MARKER = "dataset_dict.json"
_LOCK = ".lock"


class PrepareError(ValueError):
    """A problem with a builder's inputs or output folder, reported in one line."""


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


@dataclass(frozen=True)
class WorkItem:
    """One unit of resumable work.

    Attributes:
        key: unique relative path of its result file, e.g. ``"c23/Deepfakes/519_515"``.
        split: "train", "validation" or "test".
        order: sort key of its rows within the split (compression, method id, video ...).
        fingerprint: hash of the inputs; a finished result with another fingerprint is redone.
        task: what the builder's worker needs (picklable); not saved in the plan.
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


class ItemWorker(Protocol):
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
                    f"{self.out}: was started by a different build ({identity_difference(previous, plan)}); "
                    "rerun with the same settings or choose a new --out"
                )
            if previous.shard != plan.shard:
                raise PrepareError(
                    f"{self.out}: holds shard {shard_text(previous.shard)}, not {shard_text(plan.shard)}; "
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
    started = (out / _WORK).is_dir() or (out / DATASET_MARKER).is_file()
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


def identity_difference(previous: PreparePlan, plan: PreparePlan) -> str:
    if previous.builder != plan.builder:
        return f"builder {previous.builder} vs {plan.builder}"
    changed = [
        f"{key} {previous.settings.get(key)!r} vs {plan.settings.get(key)!r}"
        for key in sorted(set(previous.settings) | set(plan.settings))
        if previous.settings.get(key) != plan.settings.get(key)
    ]
    return "; ".join(changed) or "different columns"


def shard_text(shard: tuple[int, int] | None) -> str:
    return "none (a full build)" if shard is None else f"{shard[0]}/{shard[1]}"
