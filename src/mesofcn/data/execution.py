"""Carrying out a plan: every work item not done yet goes through the builder's worker, in this process or in a
pool of worker processes, and its rows are written as its result file; the report counts what was done."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tqdm.auto import tqdm

from .work import ItemWorker, PreparePlan, WorkDir, WorkItem

__all__ = ["BuildReport", "execute_plan"]


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
    """Runs items with a worker and writes their results; one per process."""

    def __init__(self, worker: ItemWorker, out: Path, schema: pa.Schema, parallel: bool) -> None:
        worker.setup(parallel)
        self.worker = worker
        self.workdir = WorkDir(out)
        self.schema = schema

    def __call__(self, item: WorkItem) -> dict[str, Any]:
        result = self.worker(item)
        stats = {**result.stats, "key": item.key, "split": item.split}
        self.workdir.write_result(item, result.rows, self.schema, stats)
        return stats


_WORKER_RUNNER: _Runner | None = None


def _init_worker(worker: ItemWorker, out: Path, schema: pa.Schema) -> None:
    global _WORKER_RUNNER
    _WORKER_RUNNER = _Runner(worker, out, schema, parallel=True)


def _run_in_worker(item: WorkItem) -> dict[str, Any]:
    assert _WORKER_RUNNER is not None, "worker not initialised"
    return _WORKER_RUNNER(item)


def execute_plan(
    plan: PreparePlan,
    out: str | os.PathLike[str],
    worker: ItemWorker,
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
        for stats in _process(pending, worker, Path(out), plan.features.arrow_schema, num_proc):
            report.videos += stats.get("videos", 0)
            report.sampled += stats["sampled"]
            report.rows += stats["rows"]
            report.no_face += stats["no_face"]
            bar.update(1)
            bar.set_postfix_str(f"{report.sampled / max(time.perf_counter() - start, 1e-9):.1f} {noun}/s")
    report.seconds = time.perf_counter() - start
    return report


def _process(
    items: list[WorkItem], worker: ItemWorker, out: Path, schema: pa.Schema, num_proc: int
) -> Iterator[dict[str, Any]]:
    """Yield each item's stats as it finishes: in this process, or in a pool of spawned worker processes.

    A worker that dies (killed, out of memory, or failing to start: e.g. a script without an
    ``if __name__ == "__main__":`` guard) stops the build with BrokenProcessPool instead of hanging it.
    """
    if not items:
        return
    if num_proc == 1:
        runner = _Runner(worker, out, schema, parallel=False)
        for item in items:
            yield runner(item)
        return
    context = multiprocessing.get_context("spawn")  # onnxruntime and torch threads do not survive fork
    workers = min(num_proc, len(items))
    with ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(worker, out, schema)) as pool:
        futures = [pool.submit(_run_in_worker, item) for item in items]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()
