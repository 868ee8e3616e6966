"""Assembling a build's finished items into a DatasetDict, publishing it, and merging shards.

The DatasetDict is assembled from the item files in a fixed order (split, compression, method, video, frame),
streamed through memory-mapped Arrow files (so it scales past memory), saved with ``save_to_disk`` into a staging
folder and then moved into place with ``dataset_dict.json`` last: ``datasets.load_from_disk`` never sees a
half-written dataset. ``--shard i/n`` builds every n-th item of the sorted plan; :func:`merge_prepared` assembles
finished shards.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, DatasetInfo, Features
from datasets.splits import NamedSplit
from datasets.utils import logging as datasets_logging

from .card import card_text
from .execution import BuildReport
from .rows import SPLITS
from .work import (
    DATASET_MARKER,
    PrepareError,
    PreparePlan,
    WorkDir,
    WorkItem,
    identity_difference,
    output_lock,
    shard_text,
)

__all__ = ["BUILD_SETTINGS_FILE", "assemble", "finish_build", "merge_prepared", "publish_staged"]

_STAGING = ".staging"
_TRASH = ".trash"
#: The build's settings (builder, crop_scale, size, detector ...) beside the DatasetDict, read by training so that
#: a checkpoint's processor crops faces the way its training data was cropped.
BUILD_SETTINGS_FILE = "mesofcn_build.json"


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
    card = card_text(plan, sources, [plan.command])
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


def publish_staged(saved: Path, out: Path, trash: Path, marker: str = DATASET_MARKER) -> None:
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
    card = card_text(merged, sources, commands)
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
        raise PrepareError(f"{workdir.out}: not a prepare output (no {workdir.plan_path.relative_to(workdir.out)})")
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
            difference = identity_difference(plans[0], plan)
            raise PrepareError(f"{path}: built with other settings than {dirs[0]} ({difference})")
    shards = [plan.shard for plan in plans if plan.shard is not None]
    if shards:
        counts = {count for _, count in shards}
        indices = sorted(index for index, _ in shards)
        if len(shards) != len(plans) or len(counts) != 1 or indices != list(range(next(iter(counts)))):
            given = ", ".join(shard_text(plan.shard) for plan in plans)
            raise PrepareError(f"shards must be all of 0/n .. n-1/n exactly once; got {given}")
    seen: dict[str, str] = {}
    for plan, path in zip(plans, dirs, strict=True):
        for item in plan.items:
            where = seen.setdefault(f"{item.split}/{item.key}", str(path))
            if where != str(path):
                raise PrepareError(f"work item {item.key} is in both {where} and {path}")
