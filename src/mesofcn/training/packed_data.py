"""
The packed training format that ``mesofcn prepare pack`` writes (see :mod:`mesofcn.training.pack`): the face crops
of one or more face-crop DatasetDicts, decoded once into uint8 NumPy arrays that training memory-maps, so that no
PNG is decoded on the training loop's critical path; or, with ``--jpeg-quality Q``, re-encoded as JPEG (lossy, about
a tenth of the bytes) for a copy that has to travel, decoded per batch.

A packed folder holds::

    mesofcn_pack.json          the index (written last): format, version, crop size and scale, how the crops are
                               stored ("images": encoding, quality, lossy), the source folders, per split its row
                               count, column features and files, per file its size and SHA-256, and one checksum
                               over them all
    mesofcn_build.json         the build settings training reads (crop_scale, size, builder "pack", sources, and
                               image_encoding / jpeg_quality / lossy)
    <split>/images.npy         (N, S, S, 3) uint8 RGB crops, exactly the decoded PNG pixels (encoding "uint8")
    <split>/images_jpeg.bin    or, with encoding "jpeg" (version 2), the N crops as JPEG files (OpenCV, RGB stored as
                               JPEG's usual YCbCr) one after another ...
    <split>/image_offsets.npy  ... and (N + 1,) int64 offsets into it: row i is bytes offsets[i]:offsets[i + 1]
    <split>/mask_index.npy     (N,) int32: the row's mask in masks.npy, or -1 for a row without a mask (None)
    <split>/masks.npy          (M, S, S/8) uint8: the distinct binary masks (mask > 0), bit-packed along rows
                               (np.packbits); all-zero masks share one entry
    <split>/<column>.npy       numeric metadata columns (label, method ids, frame, box, landmarks, ...)
    <split>/strings.json       text metadata columns (compression, video, detector, ...) as JSON lists

Everything is read with ``np.load(..., allow_pickle=False)`` (arrays memory-mapped), ``json`` and, for JPEG crops, a
memory map of raw bytes that OpenCV decodes: nothing is unpickled. JPEG crops are lossy (quality 90, on the default
training set: a mean absolute error of 1.6 gray levels per channel, PSNR 40.6 dB, 4.3 KiB per crop against 48 KiB),
so a JPEG pack trains on slightly different pixels than its sources; masks and metadata stay exact. Version-1
indexes (all lossless packs, also the ones written now) and version-2 ones (JPEG) are read.

Masks are kept as the binary 0/1 masks the processor makes of them (``binarize_mask``) at full
resolution: training reads only their 49x49 label grid, but the flip of ``--augment`` moves that grid onto the other
columns, and a full-resolution mask keeps any geometric augmentation exact; bit-packing makes them 2 KiB each.

Loading returns a DatasetDict of the metadata columns plus two columns locating each row's crop
(:data:`PACKED_SPLIT_COLUMN`, :data:`PACKED_ROW_COLUMN`), so that task selection, class balance and online blends
work on it exactly as on the PNG datasets; :func:`read_packed_rows` fetches the crops of a batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, Value

from .augmentation import decode_jpeg

#: The index file that marks (and describes) a finished packed folder; training detects the format by it.
PACK_INDEX = "mesofcn_pack.json"
#: A marker written into the output folder when a pack starts: a folder with it but without the index is unfinished.
PACK_MARKER = ".mesofcn_pack"
PACK_FORMAT = "mesofcn-pack"
#: The index version of packs with JPEG crops; lossless packs are still written (and read) as version 1, so older
#: mesofcn reads them, and refuses a JPEG pack by its version rather than by a missing images.npy.
PACK_VERSION = 2
LOSSLESS_PACK_VERSION = 1
PACK_VERSIONS = (LOSSLESS_PACK_VERSION, PACK_VERSION)
#: Columns of a loaded packed split that locate each row's crop: the split folder and the row in its arrays.
PACKED_SPLIT_COLUMN = "packed_split"
PACKED_ROW_COLUMN = "packed_row"
PACKED_COLUMNS = (PACKED_SPLIT_COLUMN, PACKED_ROW_COLUMN)
#: mask_index value of a row without a mask.
NO_MASK = -1
IMAGES_FILE, MASKS_FILE, MASK_INDEX_FILE, STRINGS_FILE = "images.npy", "masks.npy", "mask_index.npy", "strings.json"
JPEG_FILE, JPEG_OFFSETS_FILE = "images_jpeg.bin", "image_offsets.npy"
#: The index's "images" entry of a pack without one (version 1, written before JPEG crops existed).
LOSSLESS_IMAGES = {"encoding": "uint8", "lossy": False}
#: The JPEG qualities --jpeg-quality accepts (OpenCV's IMWRITE_JPEG_QUALITY range).
JPEG_QUALITIES = range(1, 101)


class PackedDataError(ValueError):
    """A packed folder that cannot be used (half-written, altered, another version); the message is one line."""


def is_packed(path: str | Path) -> bool:
    """Whether `path` is a finished packed folder (its index exists)."""
    return (Path(path) / PACK_INDEX).is_file()


def is_unfinished_pack(path: str | Path) -> bool:
    """Whether `path` is a packed folder whose writing never finished (marker without index)."""
    return (Path(path) / PACK_MARKER).exists() and not is_packed(path)


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def combined_checksum(files: dict[str, dict]) -> str:
    """One SHA-256 over the sorted (file name, size, SHA-256) entries of the index."""
    text = "\n".join(f"{name} {entry['bytes']} {entry['sha256']}" for name, entry in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def read_index(path: str | Path) -> dict:
    """The checked index of packed folder `path`; a one-line PackedDataError naming the folder otherwise."""
    path = Path(path)
    index_file = path / PACK_INDEX
    if not index_file.is_file():
        if is_unfinished_pack(path):
            raise PackedDataError(
                f"{path}: half-written packed folder (no {PACK_INDEX}); run mesofcn prepare pack again"
            )
        raise PackedDataError(f"{path}: not a packed folder (no {PACK_INDEX})")
    try:
        index = json.loads(index_file.read_text())
        if index.get("format") != PACK_FORMAT:
            raise ValueError(f"format {index.get('format')!r}, expected {PACK_FORMAT!r}")
        if index.get("version") not in PACK_VERSIONS:
            versions = " and ".join(map(str, PACK_VERSIONS))
            raise ValueError(f"version {index.get('version')!r}; this mesofcn reads versions {versions}")
        image_encoding(index)
        files, splits = index["files"], index["splits"]
        if combined_checksum(files) != index["checksum"]:
            raise ValueError("its checksum does not match its file list")
        for split, entry in splits.items():
            int(entry["rows"]), Features.from_dict(entry["features"])
            if not all(name in files for name in entry["files"]):
                raise ValueError(f"split {split!r} names files the index does not list")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PackedDataError(f"{index_file}: unusable packed index ({type(error).__name__}: {error})") from None
    return index


def images_entry(jpeg_quality: int | None) -> dict:
    """The index's "images" entry: exact uint8 crops, or JPEG crops of `jpeg_quality` (lossy)."""
    if jpeg_quality is None:
        return dict(LOSSLESS_IMAGES)
    return {"encoding": "jpeg", "quality": int(jpeg_quality), "lossy": True}


def image_encoding(index: dict) -> dict:
    """The "images" entry of an index (LOSSLESS_IMAGES for a version-1 index without one), checked; ValueError if
    this mesofcn cannot read it."""
    entry = index.get("images", LOSSLESS_IMAGES)
    if entry == LOSSLESS_IMAGES:
        return entry
    quality = entry.get("quality") if isinstance(entry, dict) else None
    if not isinstance(quality, int) or quality not in JPEG_QUALITIES or entry != images_entry(quality):
        raise ValueError(f"unknown crop encoding {entry!r}")
    if index.get("version") != PACK_VERSION:
        raise ValueError(f"JPEG crops in a version {index.get('version')!r} index")
    if not isinstance(index.get("size"), int) or index["size"] < 1:
        raise ValueError(f"JPEG crops of size {index.get('size')!r}")
    return entry


def verify_files(path: str | Path, index: dict, checksums: bool = True) -> None:
    """Every file of the index present with its size (and, with `checksums`, its SHA-256); PackedDataError naming
    the first that is not."""
    path = Path(path)
    for name, entry in sorted(index["files"].items()):
        file = path / name
        if not file.is_file():
            raise PackedDataError(f"{path}: packed file {name} is missing; run mesofcn prepare pack again")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise PackedDataError(
                f"{path}: packed file {name} has {size} bytes, the index says {entry['bytes']}; run mesofcn prepare "
                "pack again"
            )
        if checksums and sha256_of(file) != entry["sha256"]:
            raise PackedDataError(
                f"{path}: packed file {name} does not match its checksum; run mesofcn prepare pack again"
            )


def load_array(file: Path, mmap: bool = True) -> np.ndarray:
    """An .npy file, memory-mapped, never unpickled (object arrays are refused); PackedDataError if unreadable."""
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise PackedDataError(f"{file}: unreadable packed array ({type(error).__name__}: {error})") from None


class JpegCrops:
    """The JPEG crops of a split (a memory map of the blob and its offsets), indexed like images.npy: ``crops[rows]``
    decodes those rows into an (len(rows), S, S, 3) uint8 RGB array."""

    def __init__(self, folder: Path, rows: int, size: int):
        self.blob_file = folder / JPEG_FILE
        offsets = load_array(folder / JPEG_OFFSETS_FILE, mmap=False)
        blob_bytes = self.blob_file.stat().st_size
        self.offsets = check_offsets(offsets, rows, blob_bytes, folder / JPEG_OFFSETS_FILE)
        # np.memmap refuses an empty file (a split of no rows)
        self.blob = np.memmap(self.blob_file, dtype=np.uint8, mode="r") if blob_bytes else np.zeros(0, np.uint8)
        self.shape = (rows, size, size, 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        crops = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for slot, row in enumerate(rows):
            crops[slot] = self.decode(int(row))
        return crops

    def decode(self, row: int) -> np.ndarray:
        """Row `row` as an (S, S, 3) uint8 RGB crop; PackedDataError naming the blob when it is not one."""
        crop = decode_jpeg(self.blob[self.offsets[row] : self.offsets[row + 1]])
        if crop is None or crop.shape != self.shape[1:]:
            found = "no JPEG" if crop is None else f"a {crop.shape} image"
            raise PackedDataError(f"{self.blob_file}: row {row} holds {found}, expected a {self.shape[1:]} JPEG crop")
        return crop


def check_offsets(offsets: np.ndarray, rows: int, blob_bytes: int, file: Path) -> np.ndarray:
    """`offsets` if they cut a blob of `blob_bytes` into `rows` JPEGs (N + 1 int64 values from 0 rising to the blob's
    size); a one-line PackedDataError naming `file` otherwise."""
    if offsets.dtype != np.int64 or offsets.shape != (rows + 1,):
        raise PackedDataError(f"{file}: shape {offsets.shape} {offsets.dtype}, expected ({rows + 1},) int64")
    if offsets[0] != 0 or offsets[-1] != blob_bytes:
        raise PackedDataError(
            f"{file}: offsets run from {offsets[0]} to {offsets[-1]}, expected 0 to {blob_bytes} (the size of "
            f"{JPEG_FILE})"
        )
    if rows and not (np.diff(offsets) > 0).all():
        raise PackedDataError(f"{file}: offsets do not rise from row to row")
    return offsets


@dataclass
class PackedSplit:
    """The arrays of one split folder (memory-mapped; JPEG crops decoded when indexed)."""

    folder: Path
    images: np.ndarray | JpegCrops
    masks: np.ndarray
    mask_index: np.ndarray

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def unpack_mask(self, entry: int) -> np.ndarray:
        """Mask `entry` of masks.npy as an (S, S) uint8 array of 0/1."""
        return np.unpackbits(self.masks[entry], axis=-1, count=self.size)


def open_split(folder: Path, rows: int, index: dict) -> PackedSplit:
    """The checked arrays of split folder `folder` (`rows` rows) of a pack with index `index`."""
    masks = load_array(folder / MASKS_FILE)
    mask_index = load_array(folder / MASK_INDEX_FILE)
    if image_encoding(index)["encoding"] == "jpeg":
        size = int(index["size"])
        images, checks = JpegCrops(folder, rows, size), []
    else:
        images = load_array(folder / IMAGES_FILE)
        size = images.shape[1] if images.ndim == 4 else -1
        checks = [(IMAGES_FILE, images, f"({rows}, S, S, 3) uint8", images.shape == (rows, size, size, 3))]
    width = (size + 7) // 8
    checks += [
        (MASK_INDEX_FILE, mask_index, f"({rows},) int32", mask_index.shape == (rows,)),
        (MASKS_FILE, masks, f"(M, {size}, {width}) uint8", masks.shape[1:] == (size, width)),
    ]
    for name, array, expected, fits in checks:
        if not fits or array.dtype != (np.int32 if name == MASK_INDEX_FILE else np.uint8):
            raise PackedDataError(f"{folder / name}: shape {array.shape} {array.dtype}, expected {expected}")
    if rows and (mask_index.min() < NO_MASK or mask_index.max() >= len(masks)):
        raise PackedDataError(f"{folder / MASK_INDEX_FILE}: mask numbers outside 0..{len(masks) - 1}")
    return PackedSplit(folder, images, masks, mask_index)


#: Split folders opened by this process (memory maps are shared with forked DataLoader workers).
_OPEN_SPLITS: dict[str, PackedSplit] = {}


def packed_split(folder: str) -> PackedSplit:
    """The opened arrays of a split folder named in PACKED_SPLIT_COLUMN (opened once per process)."""
    split = _OPEN_SPLITS.get(folder)
    if split is None:
        path = Path(folder)
        index = read_index(path.parent)
        split = _OPEN_SPLITS[folder] = open_split(path, int(index["splits"][path.name]["rows"]), index)
    return split


def read_packed_rows(folders: list[str], rows: list[int]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """The crops (S, S, 3 uint8; JPEG crops decoded) and masks ((S, S) uint8 0/1, or None) of a batch's rows, in the
    batch's order."""
    images: list = [None] * len(rows)
    masks: list = [None] * len(rows)
    by_folder: dict[str, list[int]] = {}
    for position, folder in enumerate(folders):
        by_folder.setdefault(folder, []).append(position)
    for folder, positions in by_folder.items():
        split = packed_split(folder)
        wanted = np.asarray([int(rows[position]) for position in positions], dtype=np.int64)
        order = np.argsort(wanted, kind="stable")  # ascending reads of the memory map
        block = split.images[wanted[order]]
        entries = split.mask_index[wanted[order]]
        for slot, position in enumerate(np.asarray(positions)[order]):
            images[position] = block[slot]
            entry = int(entries[slot])
            masks[position] = None if entry == NO_MASK else split.unpack_mask(entry)
    return images, masks


def load_packed_split(path: Path, split: str, index: dict) -> Dataset:
    """One split's metadata columns as a Dataset, plus the columns that locate each row's crop."""
    entry = index["splits"][split]
    rows = int(entry["rows"])
    folder = path / split
    features = Features.from_dict(entry["features"])
    columns: dict[str, object] = {}
    strings = {}
    if STRINGS_FILE in {Path(name).name for name in entry["files"]}:
        try:
            strings = json.loads((folder / STRINGS_FILE).read_text())
        except (OSError, ValueError) as error:
            raise PackedDataError(f"{folder / STRINGS_FILE}: unreadable ({error})") from None
    for name in features:
        values = strings[name] if name in strings else load_array(folder / f"{name}.npy", mmap=False)
        if len(values) != rows:
            raise PackedDataError(f"{folder}: column {name} has {len(values)} rows, the index says {rows}")
        columns[name] = values
    open_split(folder, rows, index)  # shapes and offsets checked now rather than in the first batch
    columns[PACKED_SPLIT_COLUMN] = [str(folder.resolve())] * rows
    columns[PACKED_ROW_COLUMN] = np.arange(rows, dtype=np.int64)
    all_features = Features({**features, PACKED_SPLIT_COLUMN: Value("string"), PACKED_ROW_COLUMN: Value("int64")})
    try:
        return Dataset.from_dict(columns, features=all_features)
    except (ValueError, TypeError) as error:
        raise PackedDataError(f"{folder}: metadata columns do not fit their features ({error})") from None


def load_packed_dataset_dict(path: str | Path, checksums: bool = True) -> DatasetDict:
    """The DatasetDict of packed folder `path` (see the module docstring); its files are checked first (sizes
    always, SHA-256 with `checksums`). A one-line PackedDataError when the folder is half-written or altered."""
    path = Path(path)
    index = read_index(path)
    verify_files(path, index, checksums)
    for folder in [key for key in _OPEN_SPLITS if Path(key).parent == path.resolve()]:
        del _OPEN_SPLITS[folder]  # a repacked folder: drop the old memory maps
    return DatasetDict({split: load_packed_split(path, split, index) for split in index["splits"]})


__all__ = [
    "JPEG_QUALITIES",
    "JpegCrops",
    "NO_MASK",
    "PACKED_COLUMNS",
    "PACKED_ROW_COLUMN",
    "PACKED_SPLIT_COLUMN",
    "PACK_FORMAT",
    "PACK_INDEX",
    "PACK_MARKER",
    "PACK_VERSION",
    "PackedDataError",
    "PackedSplit",
    "is_packed",
    "is_unfinished_pack",
    "load_packed_dataset_dict",
    "read_index",
    "read_packed_rows",
    "verify_files",
]
