"""
``mesofcn prepare pack``: face-crop DatasetDicts -> one packed folder of uint8 NumPy arrays (format: see
:mod:`mesofcn.training.packed_data`), decoded once so that training reads crops from memory maps instead of decoding
PNGs.

Several source folders are joined split by split exactly as training joins them (``concatenate_split``: same row
order, method names as strings, shared columns only), so ``--dataset_dir PACKED`` trains on the rows that
``--dataset_dir A B C`` trains on. The sources must have been cropped alike (one ``crop_scale``); the packed folder
records it in its own ``mesofcn_build.json``, which training checks like any dataset's.

With ``jpeg_quality`` (``--jpeg-quality Q``) the crops are stored as OpenCV JPEGs of that quality in one blob per
split instead of ``images.npy``: lossy (the index and ``mesofcn_build.json`` say so), about a tenth of the bytes, for a
training set that has to travel; masks and metadata stay exact, and reading decodes the crops transparently.

Writing holds the output folder's lock like every ``prepare`` build, writes into ``OUT/.staging`` and then moves the
files into place with the index last: a reader never sees a half-written packed folder as finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Features, List, Value
from PIL import Image

from .. import __version__
from ..atomic_files import atomic_output
from ..data.assembly import BUILD_SETTINGS_FILE, publish_staged
from ..data.work import PrepareError, output_lock
from .augmentation import encode_jpeg
from .data import (
    DatasetError,
    build_settings_of,
    concatenate_split,
    crop_scale_of_datasets,
    crop_size_of_datasets,
    get_split,
    load_dataset_dict,
)
from .packed_data import (
    IMAGES_FILE,
    JPEG_FILE,
    JPEG_OFFSETS_FILE,
    JPEG_QUALITIES,
    LOSSLESS_PACK_VERSION,
    MASK_INDEX_FILE,
    MASKS_FILE,
    NO_MASK,
    PACK_FORMAT,
    PACK_INDEX,
    PACK_MARKER,
    PACK_VERSION,
    STRINGS_FILE,
    combined_checksum,
    images_entry,
    is_packed,
    sha256_of,
)

#: The single compressed copy --compress writes beside the arrays (a plain zip: `python -m zipfile -e` unpacks it).
PACK_ARCHIVE = "mesofcn_pack.zip"
_STAGING, _TRASH, _LOCK = ".staging", ".trash", ".lock"
#: Rows decoded per step (memory: about 50 KiB per row).
_CHUNK_ROWS = 256
#: Value dtypes stored as .npy columns.
_NUMERIC_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_NUMERIC_DTYPES += ("float16", "float32", "float64")


@dataclass
class PackReport:
    """What a pack wrote."""

    out: Path
    rows: dict[str, int]
    masks: dict[str, int]
    bytes_raw: int
    bytes_compressed: int | None = None
    seconds: float = 0.0
    sources: list[str] = field(default_factory=list)
    jpeg_quality: int | None = None

    def summary_line(self) -> str:
        rows = ", ".join(f"{split} {count}" for split, count in self.rows.items())
        crops = "exact crops" if self.jpeg_quality is None else f"lossy JPEG crops, quality {self.jpeg_quality}"
        text = f"packed {rows} rows ({crops}) from {len(self.sources)} folder(s) into {self.out}: "
        text += format_bytes(self.bytes_raw)
        if self.bytes_compressed is not None:
            text += f"; compressed copy {self.out / PACK_ARCHIVE}: {format_bytes(self.bytes_compressed)}"
        return text + f" ({self.seconds:.1f} s)"


def format_bytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB ({count} bytes)"


def _check_pack_output(out: Path) -> None:
    """Accept a new or empty folder, or one an earlier pack wrote (marked); refuse anything else (user files)."""
    if out.exists() and not out.is_dir():
        raise PrepareError(f"{out}: exists and is not a folder")
    if out.is_dir() and not (out / PACK_MARKER).exists() and any(entry.name != _LOCK for entry in out.iterdir()):
        raise PrepareError(f"{out}: folder is not empty and not a mesofcn prepare pack output; choose a new --out")


def pack_datasets(
    dataset_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    compress: bool = False,
    progress: bool = True,
    jpeg_quality: int | None = None,
) -> PackReport:
    """Pack the face-crop DatasetDicts `dataset_dirs` into `out` (see the module docstring), the crops as exact uint8
    arrays or, with `jpeg_quality` (1..100), as JPEGs; PrepareError (one line) for unusable sources, output folder or
    quality."""
    start = time.perf_counter()
    if jpeg_quality is not None and (isinstance(jpeg_quality, bool) or jpeg_quality not in JPEG_QUALITIES):
        raise PrepareError(f"JPEG quality must be an integer from 1 to 100, got {jpeg_quality!r}")
    out = Path(out)
    sources = [Path(folder) for folder in dataset_dirs]
    for source in sources:
        if source.resolve() == out.resolve():
            raise PrepareError(f"{out}: --out must not be one of the packed folders")
        if is_packed(source):
            raise PrepareError(f"{source}: already a packed folder; pack the DatasetDicts it was made from")
    try:
        datasets = [load_dataset_dict(source) for source in sources]
        crop_scale = crop_scale_of_datasets(sources)
        size = crop_size_of_datasets(sources)
        source_settings = [build_settings_of(source) for source in sources]
    except DatasetError as error:
        raise PrepareError(str(error)) from error
    split_names = list(datasets[0])
    for source, data in zip(sources[1:], datasets[1:], strict=True):
        if list(data) != split_names:
            raise PrepareError(f"{source} has the splits {', '.join(data)}; {sources[0]} has {', '.join(split_names)}")
    where = " + ".join(str(source) for source in sources)
    try:
        splits = {
            split: concatenate_split(
                [get_split(data, split, source) for source, data in zip(sources, datasets, strict=True)],
                f"split {split!r} of {where}",
            )
            for split in split_names
        }
    except DatasetError as error:
        raise PrepareError(str(error)) from error

    with output_lock(out, check=_check_pack_output):
        (out / PACK_MARKER).touch()
        staging = out / _STAGING
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(data) for data in splits.values()), desc="packing", unit="face", disable=not progress)
        split_entries = {}
        for split, data in splits.items():
            writer = _crop_writer(staging / split, len(data), size, jpeg_quality)
            split_entries[split] = _write_split(data, writer, size, f"split {split!r} of {where}", bar)
        bar.close()
        images = images_entry(jpeg_quality)
        settings = {
            "builder": "pack",
            "crop_scale": crop_scale,
            "size": size,
            "sources": [str(source.resolve()) for source in sources],
            "source_settings": source_settings,
            "image_encoding": images["encoding"],
            "jpeg_quality": jpeg_quality,
            "lossy": images["lossy"],
        }
        (staging / BUILD_SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        files = {
            path.relative_to(staging).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
            for path in sorted(staging.rglob("*"))
            if path.is_file()
        }
        index = {
            "format": PACK_FORMAT,
            "version": LOSSLESS_PACK_VERSION if jpeg_quality is None else PACK_VERSION,
            "mesofcn_version": __version__,
            "size": size,
            "crop_scale": crop_scale,
            "images": images,
            "sources": settings["sources"],
            "splits": split_entries,
            "files": files,
            "checksum": combined_checksum(files),
        }
        (staging / PACK_INDEX).write_text(json.dumps(index, indent=1) + "\n")
        _publish(staging, out)
        bytes_raw = sum(entry["bytes"] for entry in files.values()) + (out / PACK_INDEX).stat().st_size
        archive = out / PACK_ARCHIVE
        bytes_compressed = None
        if compress:
            bytes_compressed = _write_archive(out, [*files, PACK_INDEX], archive)
        else:
            archive.unlink(missing_ok=True)  # an older copy would no longer match
    return PackReport(
        out=out,
        rows={split: entry["rows"] for split, entry in split_entries.items()},
        masks={split: entry["masks"] for split, entry in split_entries.items()},
        bytes_raw=bytes_raw,
        bytes_compressed=bytes_compressed,
        seconds=time.perf_counter() - start,
        sources=settings["sources"],
        jpeg_quality=jpeg_quality,
    )


class _ArrayCropWriter:
    """Writes a split's crops, exactly, into images.npy (memory-mapped while writing)."""

    def __init__(self, folder: Path, rows: int, size: int):
        self.folder = folder
        self.images = np.lib.format.open_memmap(
            folder / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(rows, size, size, 3)
        )

    def write(self, row: int, crop: np.ndarray) -> None:
        self.images[row] = crop

    def close(self) -> None:
        self.images.flush()
        del self.images


class _JpegCropWriter:
    """Writes a split's crops, in row order, as JPEGs of `quality` into one blob, and their (N + 1) offsets."""

    def __init__(self, folder: Path, rows: int, quality: int):
        self.folder, self.quality = folder, quality
        self.blob = (folder / JPEG_FILE).open("wb")
        self.offsets = np.zeros(rows + 1, dtype=np.int64)

    def write(self, row: int, crop: np.ndarray) -> None:
        encoded = encode_jpeg(crop, self.quality)
        self.blob.write(encoded.tobytes())
        self.offsets[row + 1] = self.offsets[row] + len(encoded)

    def close(self) -> None:
        self.blob.close()
        np.save(self.folder / JPEG_OFFSETS_FILE, self.offsets, allow_pickle=False)


def _crop_writer(folder: Path, rows: int, size: int, jpeg_quality: int | None) -> _ArrayCropWriter | _JpegCropWriter:
    """A new split folder and the writer of its crops (exact arrays, or JPEGs of `jpeg_quality`)."""
    folder.mkdir(parents=True)
    return (
        _ArrayCropWriter(folder, rows, size) if jpeg_quality is None else _JpegCropWriter(folder, rows, jpeg_quality)
    )


def _write_split(data, images: _ArrayCropWriter | _JpegCropWriter, size: int, where: str, bar) -> dict:
    """Decode one split's crops (into `images`, in row order) and masks into the arrays of their folder; its index
    entry."""
    folder = images.folder
    rows = len(data)
    mask_index = np.full(rows, NO_MASK, dtype=np.int32)
    masks: list[np.ndarray] = []
    empty_entry = None
    has_mask = "mask" in data.column_names
    pixels = data.select_columns(["image", "mask"] if has_mask else ["image"])
    for begin in range(0, rows, _CHUNK_ROWS):
        chunk = pixels[begin : begin + _CHUNK_ROWS]
        chunk_masks = chunk["mask"] if has_mask else [None] * len(chunk["image"])
        for offset, (image, mask) in enumerate(zip(chunk["image"], chunk_masks, strict=True)):
            row = begin + offset
            images.write(row, _rgb_crop(image, size, f"{where}, row {row}"))
            if mask is None:
                continue
            binary = _binary_mask(mask, size, f"{where}, row {row}")
            if not binary.any():
                if empty_entry is None:
                    empty_entry = len(masks)
                    masks.append(np.packbits(binary, axis=-1))
                mask_index[row] = empty_entry
            else:
                mask_index[row] = len(masks)
                masks.append(np.packbits(binary, axis=-1))
        bar.update(len(chunk["image"]))
    images.close()
    packed_masks = np.stack(masks) if masks else np.zeros((0, size, (size + 7) // 8), dtype=np.uint8)
    np.save(folder / MASKS_FILE, packed_masks, allow_pickle=False)
    np.save(folder / MASK_INDEX_FILE, mask_index, allow_pickle=False)
    metadata = [name for name in data.column_names if name not in ("image", "mask")]
    strings = {}
    for name in metadata:
        values = data.select_columns([name]).to_dict()[name]
        array = _numeric_column(values, data.features[name])
        if array is None:
            strings[name] = values
        else:
            np.save(folder / f"{name}.npy", array, allow_pickle=False)
    if strings:
        try:
            (folder / STRINGS_FILE).write_text(json.dumps(strings))
        except TypeError as error:
            raise PrepareError(f"{where}: a metadata column is neither numbers nor text ({error})") from error
    features = {name: feature for name, feature in data.features.items() if name in metadata}
    return {
        "rows": rows,
        "masks": len(packed_masks),
        "rows_with_mask": int((mask_index != NO_MASK).sum()),
        "features": Features(features).to_dict(),
        "files": sorted(f"{folder.name}/{path.name}" for path in folder.iterdir()),
    }


def _numeric_column(values: list, feature) -> np.ndarray | None:
    """A column of numbers (or fixed-length lists of numbers) without missing values as an array of the feature's
    dtype; None for anything else (stored as JSON)."""
    inner, length = feature, None
    if isinstance(feature, List):
        inner, length = feature.feature, feature.length
        if length is None or length < 0:
            return None
    if isinstance(inner, ClassLabel):
        dtype = np.dtype(np.int64)
    elif isinstance(inner, Value) and inner.dtype in _NUMERIC_DTYPES:
        dtype = np.dtype(inner.dtype)
    else:
        return None
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError):  # None among the values, or ragged lists
        return None
    expected = (len(values),) if length is None else (len(values), length)
    return array if array.shape == expected else None


def _rgb_crop(image, size: int, where: str) -> np.ndarray:
    """A stored crop as the (S, S, 3) uint8 array training decodes from it; RGB crops of the build's size only (what
    the builders write), so that every training path sees the same pixels."""
    if not isinstance(image, Image.Image) or image.mode != "RGB" or image.size != (size, size):
        described = f"{image.mode} {image.size[0]}x{image.size[1]}" if isinstance(image, Image.Image) else type(image)
        raise PrepareError(f"{where}: the crop is {described}; packing needs {size}x{size} RGB crops")
    return np.asarray(image)


def _binary_mask(mask, size: int, where: str) -> np.ndarray:
    """A stored mask as the 0/1 mask the processor makes of it (any value > 0 is manipulated)."""
    if not isinstance(mask, Image.Image) or mask.mode not in ("L", "1") or mask.size != (size, size):
        described = f"{mask.mode} {mask.size[0]}x{mask.size[1]}" if isinstance(mask, Image.Image) else type(mask)
        raise PrepareError(f"{where}: the mask is {described}; packing needs {size}x{size} grey (L) masks")
    return (np.asarray(mask) > 0).astype(np.uint8)


def _publish(staging: Path, out: Path) -> None:
    """Move the staged files into `out`: the old index removed first, the new index last; leftovers of an older pack
    (splits it had) removed."""
    (out / PACK_INDEX).unlink(missing_ok=True)
    trash = out / _TRASH
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir()
    keep = {entry.name for entry in staging.iterdir()} | {_LOCK, PACK_MARKER, _STAGING, _TRASH, PACK_ARCHIVE}
    for entry in out.iterdir():
        if entry.name not in keep:
            os.replace(entry, trash / entry.name)
    publish_staged(staging, out, trash, marker=PACK_INDEX)
    shutil.rmtree(staging, ignore_errors=True)


def _write_archive(out: Path, names: list[str], archive: Path) -> int:
    """A deflate zip of the packed files (unpack with `python -m zipfile -e ARCHIVE DIR`); its size in bytes."""
    with (
        atomic_output(archive, suffix=".tmp") as partial,
        zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as handle,
    ):
        for name in sorted(names):
            handle.write(out / name, arcname=name)
    return archive.stat().st_size


__all__ = ["PACK_ARCHIVE", "PackReport", "pack_datasets"]
