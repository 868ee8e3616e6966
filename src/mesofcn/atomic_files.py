"""
Atomic writes of files and folders: everything is written under a hidden temporary name beside its target and
renamed onto it only when complete, so a reader, a crash or a killed run never leaves a half-written file at the
target (an existing one stays as it was until the rename). The one place that knows how; every writer uses it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def reserve_temporary(target: Path, suffix: str = "") -> Path:
    """Create an empty, uniquely named hidden file ``.<name>.partial-<pid>-<random><suffix>`` beside ``target``.

    Created with ``O_EXCL`` and mode 0o666 (minus the umask), so the final file gets ordinary permissions.
    """
    temporary = target.with_name(f".{target.name}.partial-{os.getpid()}-{secrets.token_hex(4)}{suffix}")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temporary


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk, so the rename never exposes an empty file after a crash."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def commit_temporary(temporary: Path, target: Path) -> None:
    """Flush a fully written temporary file and rename it onto ``target``."""
    fsync_file(temporary)
    os.replace(temporary, target)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Reserve a hidden temporary file beside ``target`` (parent folders created) for the block to write; when the
    block ends normally it is flushed and renamed onto ``target``.

    ``suffix`` ends the temporary name, for tools that pick a format by extension (or a cleanup that looks for
    ``*.tmp``). On any exception the temporary file is deleted and the exception propagates.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = reserve_temporary(target, suffix)
    try:
        yield temporary
        commit_temporary(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, suffix: str = "") -> None:
    """Write ``data`` to ``path`` atomically: never a half-written file there."""
    with atomic_output(path, suffix) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically: never a half-written file there."""
    with atomic_output(path) as temporary:
        temporary.write_text(text)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically: never a half-written report."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def replace_directory(source: Path, target: Path) -> None:
    """Move a fully written folder into place of ``target`` (an old one renamed away first, then deleted)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    source.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """A fresh hidden folder ``.<name>.partial-<pid>`` beside ``target`` (not created: the block's writer makes it)
    that replaces ``target`` when the block ends normally; on any exception it is deleted and ``target`` is left
    as it was."""
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        yield partial
        replace_directory(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


__all__ = [
    "atomic_directory",
    "atomic_output",
    "commit_temporary",
    "fsync_file",
    "replace_directory",
    "reserve_temporary",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
