"""
Face-crop datasets on disk -> the rows of a task, shared by training and evaluation.

The datasets are `DatasetDict`s written by `save_to_disk` with (at least) the columns `image` (128x128 RGB face
crop), `mask` (0/255 manipulation mask or None), `label` (0 real, 1 fake), `method` and `compression`. A folder
packed by `mesofcn prepare pack` (see `mesofcn.training.packed_data`) loads as the same splits without the `image`
and `mask` columns, whose rows name their crop in memory-mapped arrays instead. Here: loading and combining dataset
folders, their build settings (the crop they were cut with), the rows a task trains on and class balance. The rows
become batches in :mod:`mesofcn.training.batches`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Value, concatenate_datasets

from ..data.assembly import BUILD_SETTINGS_FILE
from ..detection.compression import compression_crf
from ..detection.image_processing_mesofcn import DEFAULT_CROP_SCALE, DEFAULT_CROP_SIZE
from .packed_data import (
    PACKED_COLUMNS,
    PACKED_ROW_COLUMN,
    PACKED_SPLIT_COLUMN,
    PackedDataError,
    is_packed,
    is_unfinished_pack,
    load_packed_dataset_dict,
    read_packed_rows,
)
from .tasks import TaskSpec

#: Columns a face-crop dataset must have for training and evaluation (a packed one has PACKED_COLUMNS for "image").
REQUIRED_COLUMNS = ("image", "label", "method", "compression")
#: Column added to evaluation splits so that gathered predictions can be matched back to their rows.
ROW_COLUMN = "row_index"
#: Column marking training rows (copies of real faces) to be turned into a fresh self-blend each time they are drawn.
ONLINE_BLEND_COLUMN = "online_blend"
#: Columns online self-blending reads (frame-coordinate face box and landmarks, written by every builder).
GEOMETRY_COLUMNS = ("box", "landmarks")


class DatasetError(ValueError):
    """A dataset folder, split or task selection that cannot be used; the message is one line."""


def load_dataset_dict(dataset_dir: str | Path) -> DatasetDict:
    """
    The `DatasetDict` saved in `dataset_dir`, or a one-line DatasetError saying what is wrong. Splits are loaded
    one by one so that an empty split (which `load_from_disk` cannot read back) becomes an empty Dataset.
    """
    path = Path(dataset_dir)
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} does not exist")
    if is_packed(path) or is_unfinished_pack(path):
        try:
            return load_packed_dataset_dict(path)
        except PackedDataError as error:
            raise DatasetError(str(error)) from error
    index = path / "dataset_dict.json"
    if not index.is_file():
        if (path / "state.json").is_file():
            raise DatasetError(
                f"{path} holds a single Dataset; expected a DatasetDict with train/validation/test splits"
            )
        raise DatasetError(f"{path} is not a DatasetDict saved with save_to_disk (no dataset_dict.json)")
    data = DatasetDict()
    try:
        for split in json.loads(index.read_text())["splits"]:
            folder = path / split
            if json.loads((folder / "state.json").read_text()).get("_data_files"):
                data[split] = Dataset.load_from_disk(str(folder))
            else:
                features = DatasetInfo.from_directory(str(folder)).features
                data[split] = Dataset.from_dict({name: [] for name in features}, features=features)
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"{path} is not a readable DatasetDict ({type(error).__name__}: {error})") from error
    return data


def get_split(data: DatasetDict, split: str, dataset_dir: str | Path) -> Dataset:
    """One split, checked for the columns training and evaluation read."""
    if split not in data:
        raise DatasetError(f"split {split!r} not found in {dataset_dir} (splits: {', '.join(data)})")
    dataset = data[split]
    required = REQUIRED_COLUMNS
    if all(column in dataset.column_names for column in PACKED_COLUMNS):
        required = tuple(column for column in REQUIRED_COLUMNS if column != "image")
    missing = [column for column in required if column not in dataset.column_names]
    if missing:
        raise DatasetError(f"split {split!r} of {dataset_dir} lacks the column(s) {', '.join(missing)}")
    return dataset


def build_settings_of(dataset_dir: str | Path) -> dict:
    """A dataset folder's build settings (:data:`BUILD_SETTINGS_FILE`; empty for a folder without one)."""
    settings_file = Path(dataset_dir) / BUILD_SETTINGS_FILE
    try:
        return json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    except (OSError, ValueError) as error:
        raise DatasetError(f"{settings_file}: unreadable build settings ({error})") from error


def shared_build_setting(dataset_dirs: Sequence[str | Path], key: str, default: float) -> float:
    """The numeric build setting `key` all the datasets share (`default` for a folder whose settings lack it); a
    DatasetError naming each folder's value when they differ, since one checkpoint or pack treats crops one way."""
    values = {str(folder): build_settings_of(folder).get(key, default) for folder in dataset_dirs}
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{folder}: {value:g}" for folder, value in values.items())
        raise DatasetError(f"the datasets were built with different {key} values ({listed}); rebuild them alike")
    return next(iter(values.values()), default)


def crop_scale_of_datasets(dataset_dirs: Sequence[str | Path], default: float = DEFAULT_CROP_SCALE) -> float:
    """The `crop_scale` the datasets' faces were cut with (the processor's default for a folder built without
    settings); a DatasetError when they differ."""
    return float(shared_build_setting(dataset_dirs, "crop_scale", default))


def crop_size_of_datasets(dataset_dirs: Sequence[str | Path], default: int = DEFAULT_CROP_SIZE) -> int:
    """The side of the datasets' face crops (the processor's default for a folder built without settings); a
    DatasetError when they differ."""
    return int(shared_build_setting(dataset_dirs, "size", default))


def crop_crf_of_datasets(dataset_dirs: Sequence[str | Path], compression: str) -> int | None:
    """The CRF at which the checkpoint's processor must encode inference crops: the task's `compression` when the
    datasets' crops were H.264-encoded after cutting (`prepare gan-faces --encode-crops`), else None. A
    DatasetError when only some were, or when such crops train a task of every compression (no single CRF)."""
    encoded = {str(folder): bool(build_settings_of(folder).get("encode_crops", False)) for folder in dataset_dirs}
    if not any(encoded.values()):
        return None
    if not all(encoded.values()):
        listed = ", ".join(folder for folder, value in encoded.items() if not value)
        raise DatasetError(
            f"some datasets encode their face crops (--encode-crops) and {listed} does not; rebuild them alike"
        )
    try:
        return compression_crf(compression)
    except (KeyError, ValueError) as error:
        raise DatasetError(
            f"datasets with encoded face crops need a task of one compression (c23 or c40), not {compression!r}: "
            "the checkpoint encodes inference crops at it"
        ) from error


def load_splits_of_datasets(dataset_dirs: Sequence[str | Path], splits: Sequence[str]) -> dict[str, Dataset]:
    """
    Each of `splits` from every dataset folder (each folder read once), concatenated split by split (e.g. a
    self-blend dataset beside an FF++ one). With several folders, each `method` ClassLabel becomes its names
    (datasets name their methods differently) and only the columns all of them share are kept.
    """
    loaded = [(dataset_dir, load_dataset_dict(dataset_dir)) for dataset_dir in dataset_dirs]
    where = " + ".join(str(path) for path in dataset_dirs)
    packed = [str(path) for path in dataset_dirs if is_packed(path)]
    if packed and len(packed) != len(dataset_dirs):
        raise DatasetError(
            f"{', '.join(packed)} packed and other folders not: pack them all together (mesofcn prepare pack) or none"
        )
    splits_by_name = {}
    for split in splits:
        parts = [get_split(data, split, path) for path, data in loaded]
        splits_by_name[split] = concatenate_split(parts, f"split {split!r} of {where}")
    return splits_by_name


def concatenate_split(parts: list[Dataset], where: str) -> Dataset:
    """One split of several datasets (`where` names it in errors) as one Dataset: method names as strings, shared
    columns only."""
    if len(parts) == 1:
        return parts[0]
    parts = [
        part.remove_columns("method").add_column("method", column_as_strings(part, "method"), feature=Value("string"))
        if isinstance(part.features["method"], ClassLabel)
        else part
        for part in parts
    ]
    shared = [column for column in parts[0].column_names if all(column in part.column_names for part in parts)]
    try:
        return concatenate_datasets([part.select_columns(shared) for part in parts])
    except ValueError as error:
        raise DatasetError(f"{where} cannot be combined ({error})") from error


def add_online_blend_rows(dataset: Dataset) -> Dataset:
    """
    `dataset` plus a copy of every real row, marked in ONLINE_BLEND_COLUMN: the training transform turns each copy
    into a new self-blended pseudo-fake (from the row's face box and landmarks) whenever it is drawn.
    """
    missing = [column for column in GEOMETRY_COLUMNS if column not in dataset.column_names]
    if missing:
        raise DatasetError(f"online self-blending needs the column(s) {', '.join(missing)} (face box and landmarks)")
    labels = np.asarray(dataset.with_format("numpy")["label"], dtype=np.int64)
    real = np.flatnonzero(labels == 0)
    flags = np.concatenate([np.zeros(len(dataset), dtype=np.int8), np.ones(len(real), dtype=np.int8)])
    combined = dataset.select(np.concatenate([np.arange(len(dataset)), real]))
    return combined.add_column(ONLINE_BLEND_COLUMN, flags)


def column_as_strings(dataset: Dataset, column: str) -> list[str]:
    """A ClassLabel or string column as names, one per row."""
    values = dataset.with_format("numpy")[column]
    feature = dataset.features[column]
    if isinstance(feature, ClassLabel):
        names = feature.names
        return [names[int(value)] for value in values]
    return ["" if value is None else str(value) for value in values]


def task_row_indices(dataset: Dataset, task: TaskSpec) -> np.ndarray:
    """Rows of `dataset` that belong to `task`: its compression, all real rows and the fakes of its method(s)."""
    labels = np.asarray(dataset.with_format("numpy")["label"], dtype=np.int64)
    methods = column_as_strings(dataset, "method")
    compressions = column_as_strings(dataset, "compression")
    keep = [
        task.matches_compression(compression) and (label == 0 or task.matches_fake_method(method))
        for label, method, compression in zip(labels, methods, compressions, strict=True)
    ]
    return np.flatnonzero(np.asarray(keep, dtype=bool))


def select_task_rows(dataset: Dataset, task: TaskSpec, where: str) -> Dataset:
    """The rows of `task`; a DatasetError when the task finds no real or no fake row there (`where` names it)."""
    indices = task_row_indices(dataset, task)
    selected = dataset.select(indices)
    labels = np.asarray(selected.with_format("numpy")["label"], dtype=np.int64) if len(selected) else np.array([])
    num_fake = int((labels == 1).sum())
    num_real = int((labels == 0).sum())
    if num_fake == 0 or num_real == 0:
        methods = sorted(set(column_as_strings(dataset, "method")))
        compressions = sorted(set(column_as_strings(dataset, "compression")))
        raise DatasetError(
            f"task {task.name} selects {num_real} real and {num_fake} fake rows in {where} "
            f"(methods there: {', '.join(methods) or 'none'}; compressions: {', '.join(compressions) or 'none'})"
        )
    return selected


def spread_subset(dataset: Dataset, count: int) -> Dataset:
    """`count` rows spread evenly over `dataset` (datasets are grouped by video and class: the first rows are not
    a fair sample)."""
    if count >= len(dataset):
        return dataset
    return dataset.select(np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(np.int64)))


def effective_labels(dataset: Dataset) -> np.ndarray:
    """Row labels as training sees them: rows marked for online self-blending count as fake."""
    labels = np.asarray(dataset.with_format("numpy")["label"], dtype=np.int64)
    if ONLINE_BLEND_COLUMN in dataset.column_names:
        labels = np.where(np.asarray(dataset.with_format("numpy")[ONLINE_BLEND_COLUMN]) == 1, 1, labels)
    return labels


def class_counts(dataset: Dataset) -> dict[str, int]:
    labels = effective_labels(dataset)
    return {"real": int((labels == 0).sum()), "fake": int((labels == 1).sum())}


def balance_classes(dataset: Dataset, seed: int) -> Dataset:
    """
    Oversample the minority class so that real and fake rows are equally many: every minority row is repeated
    `majority // minority` times and a seeded random subset fills the remainder. Used for tasks with several
    methods (pristine frames are then 1 in 5), so that the loss does not learn the class prior. Fixed once per
    run (same seed, same rows), which keeps DDP sharding and resumption exact.
    """
    labels = effective_labels(dataset)
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    minority, majority = (real, fake) if len(real) < len(fake) else (fake, real)
    if len(minority) == 0 or len(minority) == len(majority):
        return dataset
    repeats, remainder = divmod(len(majority), len(minority))
    rng = np.random.default_rng(seed)
    extra = np.concatenate([np.tile(minority, repeats - 1), rng.choice(minority, size=remainder, replace=False)])
    return dataset.select(np.sort(np.concatenate([np.arange(len(labels)), extra])))


def row_image(dataset: Dataset, row: int):
    """The stored crop of one row (a PIL image, or the uint8 array of a packed folder's row)."""
    if all(column in dataset.column_names for column in PACKED_COLUMNS):
        record = dataset.select_columns(list(PACKED_COLUMNS))[int(row)]
        return read_packed_rows([record[PACKED_SPLIT_COLUMN]], [record[PACKED_ROW_COLUMN]])[0][0]
    return dataset[int(row)]["image"]


def add_row_index(dataset: Dataset) -> Dataset:
    """A copy of `dataset` with its row numbers in ROW_COLUMN (kept through DDP sharding and gathering)."""
    if ROW_COLUMN in dataset.column_names:
        return dataset
    return dataset.add_column(ROW_COLUMN, np.arange(len(dataset), dtype=np.int64))


__all__ = [
    "GEOMETRY_COLUMNS",
    "ONLINE_BLEND_COLUMN",
    "REQUIRED_COLUMNS",
    "ROW_COLUMN",
    "DatasetError",
    "add_online_blend_rows",
    "add_row_index",
    "balance_classes",
    "build_settings_of",
    "class_counts",
    "column_as_strings",
    "crop_crf_of_datasets",
    "crop_scale_of_datasets",
    "crop_size_of_datasets",
    "effective_labels",
    "get_split",
    "load_dataset_dict",
    "load_splits_of_datasets",
    "row_image",
    "select_task_rows",
    "shared_build_setting",
    "spread_subset",
    "task_row_indices",
]
