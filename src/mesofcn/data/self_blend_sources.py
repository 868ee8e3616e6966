"""The real sources of the self-blend builder: videos and images given directly or found in folders, and their
seeded split by source (a video, an image, or an identity subfolder of images never spans splits)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .sampling import media_kind
from .splitting import split_images
from .work import PrepareError

__all__ = ["SelfBlendSource", "exclude_sources", "list_sources", "split_sources"]


@dataclass(frozen=True)
class SelfBlendSource:
    """One real source: a video or an image, with its name (``video`` column) and split group."""

    path: str
    root: str
    name: str
    kind: str
    group: str


def list_sources(paths: Sequence[str | os.PathLike[str]]) -> list[SelfBlendSource]:
    """Videos and images given directly or found (recursively) in the given folders, in a stable order.

    A file found twice counts once. Raises PrepareError for a missing path, an unsupported file, a folder without
    media, or two different files with the same name (their ``video`` column would be ambiguous).
    """
    if not paths:
        raise PrepareError("give at least one real video, image or folder")
    sources: dict[str, SelfBlendSource] = {}
    for source in (source for path in paths for source in _sources_of(Path(path))):
        first = sources.setdefault(source.name, source)
        if Path(first.path).resolve() != Path(source.path).resolve():
            raise PrepareError(f"two sources are both named {source.name!r} ({first.path}, {source.path}); rename one")
    return list(sources.values())


def exclude_sources(
    sources: Sequence[SelfBlendSource], exclude: Sequence[str | os.PathLike[str]]
) -> list[SelfBlendSource]:
    """`sources` without the files in `exclude` (e.g. a validation set's, never to be trained on). Every excluded
    path must exist: a list read against the wrong root would otherwise exclude nothing, silently."""
    missing = [str(path) for path in exclude if not Path(path).exists()]
    if missing:
        raise PrepareError(f"{missing[0]}: listed to exclude but not found (check the list's root folder)")
    excluded = {Path(path).resolve() for path in exclude}
    return [source for source in sources if Path(source.path).resolve() not in excluded]


def _sources_of(path: Path) -> list[SelfBlendSource]:
    if not path.exists():
        raise PrepareError(f"{path}: not found")
    if path.is_file():
        kind = media_kind(path)
        if kind is None:
            raise PrepareError(f"{path}: neither a video nor an image file")
        return [SelfBlendSource(str(path), str(path.parent), path.name, kind, f"{kind}/{path.name}")]
    sources = []
    for file in sorted(path.rglob("*")):
        kind = media_kind(file) if file.is_file() else None
        if kind is not None:
            name = file.relative_to(path).as_posix()
            sources.append(SelfBlendSource(str(file), str(path), name, kind, _group(kind, name)))
    if not sources:
        raise PrepareError(f"{path}: holds no videos or images")
    return sources


def _group(kind: str, name: str) -> str:
    """The split group: a video alone, an image with the other images of its subfolder (an identity folder)."""
    parent = Path(name).parent.as_posix()
    if kind == "video" or parent == ".":
        return f"{kind}/{name}"
    return f"image/{parent}/"


def split_sources(
    sources: Sequence[SelfBlendSource], fractions: Sequence[float], seed: int
) -> dict[str, list[SelfBlendSource]]:
    """Deterministic split by group (see :func:`_group`), videos and image groups each cut by ``fractions``."""
    splits: dict[str, list[SelfBlendSource]] = {}
    for kind in ("video", "image"):
        groups = sorted({source.group for source in sources if source.kind == kind})
        for split, chosen in split_images(groups, fractions, seed).items():
            members = set(chosen)
            splits.setdefault(split, []).extend(source for source in sources if source.group in members)
    return splits
