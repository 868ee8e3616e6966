"""Labelled media lists: CSV files of ``path,label[,group]`` rows naming real and fake videos or images.

One format serves training (``mesofcn prepare media``), evaluation (``mesofcn evaluate --media``) and exclusion
(``mesofcn prepare self-blend --exclude``), so a validation set written once is the same set everywhere. Labels
are ``real``/``fake`` (or 0/1: class 0 is real, 1 fake); ``group`` (e.g. the manipulation tool) is optional.
Paths are relative to ``root`` when given, else to the CSV's folder.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MediaListError", "MediaListItem", "media_list_paths", "read_media_list"]

_LABELS = {"real": 0, "0": 0, "fake": 1, "1": 1}


class MediaListError(ValueError):
    """A labelled media list that cannot be read; the message is one line naming the file."""


@dataclass(frozen=True)
class MediaListItem:
    """One row: the resolved path, the path as written, the label (0 real, 1 fake) and the group ("" if none)."""

    path: Path
    name: str
    label: int
    group: str


def read_media_list(labels: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> list[MediaListItem]:
    """The rows of a labelled media list, in file order (files are not opened: a missing one is the caller's)."""
    labels = Path(labels)
    base = Path(root) if root is not None else labels.parent
    try:
        with labels.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"path", "label"} - set(reader.fieldnames or ())
            if missing:
                raise MediaListError(f"{labels}: missing column(s) {', '.join(sorted(missing))} (need path,label)")
            items = [_item(row, base, labels, line) for line, row in enumerate(reader, start=2)]
    except OSError as error:
        raise MediaListError(f"{labels}: cannot read ({error.strerror or error})") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise MediaListError(f"{labels}: not a UTF-8 CSV file ({error})") from None
    if not items:
        raise MediaListError(f"{labels}: no rows")
    _check_unique(items, labels)
    return items


def _check_unique(items: list[MediaListItem], labels: Path) -> None:
    """A file listed twice would be counted twice (or under two labels): refuse it."""
    seen: set[Path] = set()
    for item in items:
        resolved = item.path.resolve()
        if resolved in seen:
            raise MediaListError(f"{labels}: {item.name!r} is listed more than once")
        seen.add(resolved)


def _item(row: dict[str, str | None], base: Path, labels: Path, line: int) -> MediaListItem:
    name = (row.get("path") or "").strip()
    if not name:
        raise MediaListError(f"{labels}: line {line}: empty path")
    label = _LABELS.get((row.get("label") or "").strip().lower())
    if label is None:
        raise MediaListError(f"{labels}: line {line}: label must be real or fake (or 0/1), got {row.get('label')!r}")
    return MediaListItem(base / name, name, label, (row.get("group") or "").strip())


def media_list_paths(labels: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The resolved paths of a labelled media list (e.g. the files a build must never use)."""
    return [item.path for item in read_media_list(labels, root)]
