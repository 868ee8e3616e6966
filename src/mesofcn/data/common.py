"""What the dataset builders share, in one import: a build is a *plan* (settings + a sorted list of work items: one
video, or one chunk of images) carried out item by item and then assembled into a DatasetDict.

The pieces live by concern: :mod:`.rows` (columns, rows, the face cropper), :mod:`.sampling` (reading the media),
:mod:`.work` (the plan, the resumable item files, the output folder's lock), :mod:`.execution` (processing the items,
in worker processes), :mod:`.assembly` (the DatasetDict, publishing it, merging shards) and :mod:`.card` (its
README). :func:`run_build` carries out any builder's plan from start to finish with the options every builder
shares (:class:`~mesofcn.data.settings.BuildOptions`); the names of those modules that builders and their users
need are re-exported here.
"""

from __future__ import annotations

import os
from dataclasses import replace

from .assembly import BUILD_SETTINGS_FILE, assemble, finish_build, merge_prepared, publish_staged
from .execution import BuildReport, execute_plan
from .rows import (
    LABEL_NAMES,
    MASK_SOURCES,
    SPLITS,
    FaceCropper,
    count_row,
    empty_stats,
    encode_png,
    face_features,
    face_row,
    most_confident_face,
)
from .sampling import media_kind, runs_of, sampled_frames
from .settings import MIN_FACE_SCORE, BuildOptions, parse_shard
from .work import (
    ItemResult,
    ItemWorker,
    PrepareError,
    PreparePlan,
    WorkDir,
    WorkItem,
    file_fingerprint,
    output_lock,
    select_shard,
)

__all__ = [
    "BUILD_SETTINGS_FILE",
    "BuildOptions",
    "BuildReport",
    "FaceCropper",
    "ItemWorker",
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


def run_build(
    plan: PreparePlan,
    out: str | os.PathLike[str],
    worker: ItemWorker,
    options: BuildOptions,
    call: str = "",
) -> BuildReport:
    """Carry out a builder's plan with its worker: plan -> process -> execute -> finish, the same for every builder.

    The plan's items are cut to ``options.shard`` and its command set (``options.command``, else ``call``: the
    builder's Python call); then, holding the output folder's lock throughout (see :func:`output_lock`), every item
    not done by an earlier run is processed in ``options.num_proc`` processes and the dataset is assembled in ``out``
    (a lone shard stops before that)."""
    plan = replace(
        plan,
        items=select_shard(plan.items, options.shard),
        shard=options.shard,
        command=options.command or call,
    )
    with output_lock(out):
        report = execute_plan(plan, out, worker, num_proc=options.num_proc, progress=options.progress)
        return finish_build(plan, out, report, remove_work=options.remove_work, progress=options.progress)
