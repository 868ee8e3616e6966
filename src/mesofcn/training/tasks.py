"""
Training tasks of the paper (which dataset rows a checkpoint learns from) and the paper's reference numbers.

A task name is `ff-{c23,c40}-{df,f2f,fs,nt,all}` (FaceForensics++: pristine faces + one manipulation method, or
all four of them), `gan-{c23,c40}-{pgan,stylegan,all}` (real FFHQ faces + faces of one GAN, or of every GAN in
the dataset) or `sbi-{c23,c40}-{self,all}` (real faces + their self-blended pseudo-fakes only, or + every fake
of the datasets given, e.g. FF++ fakes beside a self-blend dataset). The compression part selects rows whose
`compression` column equals it; `any` in its place takes every compression (e.g. `sbi-any-all`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: FF++ method abbreviations of the task names and the dataset's method names they stand for.
FF_METHODS = {"df": "Deepfakes", "f2f": "Face2Face", "fs": "FaceSwap", "nt": "NeuralTextures"}
#: GAN sources of the task names; a dataset method matches when its name contains the source's name.
GAN_SOURCES = ("pgan", "stylegan")
#: Dataset methods of blended pseudo-fakes (mesofcn.data.self_blend: self-blends and donor blends) and the
#: sbi task target selecting them.
SELF_BLEND_METHOD = "self-blend"
BLEND_METHODS = (SELF_BLEND_METHOD, "donor-blend")
SELF_BLEND_TARGETS = ("self",)
COMPRESSIONS = ("c23", "c40")
#: Compression part of a task name that selects rows of every compression.
ANY_COMPRESSION = "any"

#: The task grammar in words, for help texts and errors.
TASK_NAMES_HELP = (
    "ff-{c23,c40}-{df,f2f,fs,nt,all}, gan-{c23,c40}-{pgan,stylegan,all} or sbi-{c23,c40}-{self,all} "
    "(any instead of c23/c40: every compression)"
)

_TASK_PATTERN = re.compile(r"^(ff|gan|sbi)-(c23|c40|any)-([a-z0-9]+)$")

#: Frame-level test accuracy (%) of the paper at its best λ, by task (DESIGN.md, "Results to reproduce").
PAPER_ACCURACY = {
    "ff-c23-df": 97.90,
    "ff-c23-f2f": 98.58,
    "ff-c23-fs": 98.32,
    "ff-c40-df": 92.40,
    "ff-c40-f2f": 87.11,
    "ff-c40-fs": 91.26,
    "gan-c23-pgan": 99.98,
    "gan-c23-stylegan": 99.59,
    "gan-c40-pgan": 99.81,
    "gan-c40-stylegan": 97.66,
}
#: XceptionNet (22M parameters, 299 px) on the same tasks, as the paper quotes it.
XCEPTIONNET_ACCURACY = {
    "ff-c23-df": 98.85,
    "ff-c23-f2f": 98.36,
    "ff-c23-fs": 98.23,
    "ff-c40-df": 94.28,
    "ff-c40-f2f": 91.56,
    "ff-c40-fs": 93.70,
}
#: Segmentation pixel accuracy (%) over the 49x49 label grid with λ = 1 (Table III).
PAPER_SEGMENTATION_PIXEL_ACCURACY = {"ff-c23-df": 89.62, "ff-c23-f2f": 86.38, "ff-c23-fs": 86.80}

#: λ values of the paper's classification sweep (Table II) and the segmentation-only setting (Table III).
CLASSIFICATION_LAMBDAS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
SEGMENTATION_LAMBDA = 1.0


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task name: the data family, the compression and the fake source(s) it trains on."""

    name: str
    family: str  # "ff", "gan" or "sbi"
    compression: str  # "c23", "c40" or "any"
    target: str  # an abbreviation of FF_METHODS / GAN_SOURCES, or "all"

    @property
    def dataset_title(self) -> str:
        """Human name of the dataset the task reads, for model cards."""
        level = "every compression" if self.compression == ANY_COMPRESSION else self.compression
        if self.family == "ff":
            return f"FaceForensics++ ({level})"
        if self.family == "sbi":
            return f"real faces and their self-blended pseudo-fakes ({level})"
        return f"FFHQ vs GAN faces ({level})"

    @property
    def fake_description(self) -> str:
        """Which fakes the task trains on, in words."""
        if self.family == "ff":
            names = FF_METHODS.values() if self.target == "all" else [FF_METHODS[self.target]]
            return ", ".join(names)
        if self.family == "sbi":
            others = " and every other fake in the datasets" if self.target == "all" else ""
            return "self-blended pseudo-fakes" + others
        if self.target == "all":
            return "every GAN source in the dataset"
        return {"pgan": "PGAN", "stylegan": "StyleGAN"}[self.target]

    @property
    def real_description(self) -> str:
        return {"ff": "pristine FF++ faces", "gan": "real (FFHQ) faces", "sbi": "real faces of every dataset given"}[
            self.family
        ]

    def matches_fake_method(self, method: str) -> bool:
        """Whether a fake row of dataset method `method` belongs to this task (case-insensitive)."""
        name = method.strip().lower()
        if self.family == "ff":
            wanted = FF_METHODS if self.target == "all" else {self.target: FF_METHODS[self.target]}
            return any(name in (abbreviation, full.lower()) for abbreviation, full in wanted.items())
        if self.family == "sbi" and self.target != "all":
            return name in BLEND_METHODS
        if self.target == "all":
            return True
        return self.target in name

    def matches_compression(self, compression: str | None) -> bool:
        return self.compression == ANY_COMPRESSION or (compression or "").strip().lower() == self.compression


def parse_task(name: str) -> TaskSpec:
    """`"ff-c23-df"` -> TaskSpec; a clear ValueError naming the valid tasks for anything else."""
    match = _TASK_PATTERN.match(name.strip().lower())
    targets = {"ff": (*FF_METHODS, "all"), "gan": (*GAN_SOURCES, "all"), "sbi": (*SELF_BLEND_TARGETS, "all")}
    if match is None or match.group(3) not in targets[match.group(1)]:
        raise ValueError(f"unknown task {name!r}: use {TASK_NAMES_HELP}")
    family, compression, target = match.groups()
    return TaskSpec(name=f"{family}-{compression}-{target}", family=family, compression=compression, target=target)


def planned_tasks() -> list[str]:
    """Every task a checkpoint is planned for (one Hub repo and one model card each)."""
    tasks = [f"ff-{c}-{t}" for c in COMPRESSIONS for t in (*FF_METHODS, "all")]
    return tasks + [f"gan-{c}-{t}" for c in COMPRESSIONS for t in (*GAN_SOURCES, "all")]


def tasks_for_methods(family: str, compression: str, methods: Iterable[str]) -> list[str]:
    """The method-specific tasks whose fakes occur among `methods` (dataset method names), in task order."""
    names = list(methods)
    candidates = FF_METHODS if family == "ff" else GAN_SOURCES
    tasks = []
    for target in candidates:
        spec = parse_task(f"{family}-{compression}-{target}")
        if any(spec.matches_fake_method(method) for method in names):
            tasks.append(spec.name)
    return tasks


__all__ = [
    "ANY_COMPRESSION",
    "CLASSIFICATION_LAMBDAS",
    "COMPRESSIONS",
    "FF_METHODS",
    "GAN_SOURCES",
    "PAPER_ACCURACY",
    "PAPER_SEGMENTATION_PIXEL_ACCURACY",
    "SEGMENTATION_LAMBDA",
    "BLEND_METHODS",
    "SELF_BLEND_METHOD",
    "SELF_BLEND_TARGETS",
    "TASK_NAMES_HELP",
    "XCEPTIONNET_ACCURACY",
    "TaskSpec",
    "parse_task",
    "planned_tasks",
    "tasks_for_methods",
]
