"""
Face-crop datasets -> MesoFCN batches, shared by training and evaluation so both see identical inputs.

The datasets are `DatasetDict`s written by `save_to_disk` with (at least) the columns `image` (128x128 RGB face
crop), `mask` (0/255 manipulation mask or None), `label` (0 real, 1 fake), `method` and `compression`. Rows are
decoded and normalized lazily, batch by batch, with `with_transform` (no int64 copies of the images).

A folder packed by `mesofcn prepare pack` (see `mesofcn.training.packed_data`) loads as the same splits without the
`image` and `mask` columns, whose rows name their crop in memory-mapped arrays instead: the transform reads the crops
of a batch from there (no PNG decoding) and everything else (task rows, class balance, augmentation draws,
normalization) is the same code, so both formats give bit-identical batches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Value, concatenate_datasets
from PIL import Image
from torch.utils.data import DataLoader, default_collate
from transformers.image_utils import PILImageResampling

from ..data.assembly import BUILD_SETTINGS_FILE
from ..detection.compression import compression_crf
from ..detection.configuration_mesofcn import MesoFCNConfig
from ..detection.image_processing_mesofcn import MesoFCNImageProcessor, binarize_mask, resize_square, to_rgb_uint8
from ..detection.modeling_mesofcn import sample_mask_labels
from .augmentation import FaceAugmentation, blend_crop
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


def crop_scale_of_datasets(dataset_dirs: Sequence[str | Path], default: float = 1.1) -> float:
    """The `crop_scale` the datasets' faces were cut with (from each build's settings file; `default` for a folder
    without one); a DatasetError when they differ, since one checkpoint crops faces one way."""
    scales = {str(folder): float(build_settings_of(folder).get("crop_scale", default)) for folder in dataset_dirs}
    if len(set(scales.values())) > 1:
        listed = ", ".join(f"{folder}: {scale:g}" for folder, scale in scales.items())
        raise DatasetError(
            f"the datasets were cropped with different crop_scale values ({listed}); rebuild them alike"
        )
    return next(iter(scales.values()), default)


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


class FaceBatchTransform:
    """
    A `with_transform` function: a batch of dataset rows -> `pixel_values` (3x128x128 float32, normalized by the
    processor), `labels` and `mask_labels` (the 49x49 segmentation targets of Fig. 3). A missing mask of a real
    face means "nothing manipulated" (all zeros); a missing mask of a fake is unknown and ignored (-100).
    Columns named in `passthrough` are copied unchanged.

    For training, rows marked in ONLINE_BLEND_COLUMN become fresh self-blended pseudo-fakes (label 1, exact mask)
    and `augmentation` then changes every crop, real or fake, with the same distribution. The draws of a batch come
    from a generator seeded with `seed`, the process's torch seed (DataLoader workers draw differently) and
    `batches_drawn`, the number of batches this transform randomized before: a resumed run that sets it to the
    number of batches the interrupted run had trained on (see `mesofcn.training.trainer`) draws exactly what that run
    would have drawn next, whatever the data loader had prefetched when it was killed.

    Rows of a packed folder (PACKED_COLUMNS instead of `image`/`mask`) read their crops from its memory-mapped
    arrays. Pixels are normalized through a 256-entry table per channel made by the processor itself (the processor's
    normalization maps each uint8 value on its own), which gives its float32 values bit for bit at a fraction of the
    cost; with `uint8_pixels`, `pixel_values` stay uint8 (3xSxS) and the consumer applies the same table on the
    device (:func:`normalize_pixels`): a quarter of the bytes to move and no float work on the CPU.
    """

    def __init__(
        self,
        processor: MesoFCNImageProcessor,
        config: MesoFCNConfig | None = None,
        passthrough: Sequence[str] = (),
        augmentation: FaceAugmentation | None = None,
        seed: int = 0,
        uint8_pixels: bool = False,
    ):
        self.processor = processor
        self.config = config if config is not None else MesoFCNConfig()
        self.passthrough = tuple(passthrough)
        self.augmentation = augmentation
        self.seed = seed
        self.uint8_pixels = uint8_pixels
        self.batches_drawn = 0
        self._table: np.ndarray | None = None

    @property
    def table(self) -> np.ndarray:
        """The (3, 256) float32 normalization table of the processor (made on first use)."""
        if self._table is None:
            self._table = normalization_table(self.processor)
        return self._table

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        labels = [int(label) for label in batch["label"]]
        if any(label not in (0, 1) for label in labels):
            raise DatasetError(f"labels must be 0 (real) or 1 (fake), got {sorted(set(labels))}")
        if PACKED_ROW_COLUMN in batch:
            images, masks = read_packed_rows(batch[PACKED_SPLIT_COLUMN], batch[PACKED_ROW_COLUMN])
        else:
            images = batch["image"]
            masks = batch.get("mask") or [None] * len(images)
        masks = [
            self._known_mask(mask, image, label) for mask, image, label in zip(masks, images, labels, strict=True)
        ]
        if ONLINE_BLEND_COLUMN in batch or self.augmentation is not None:
            images, masks, labels = self._randomize(batch, images, masks, labels)
        pixels, grid = self._encode(images, masks)
        output = {"pixel_values": list(pixels), "labels": labels, "mask_labels": list(grid)}
        output.update({column: batch[column] for column in self.passthrough})
        return output

    def _encode(self, images: list, masks: list) -> tuple[np.ndarray, np.ndarray]:
        """Crops -> (B, 3, S, S) pixels (normalized float32, or uint8 with `uint8_pixels`) and (B, S', S') int64
        label grids, exactly as the processor (plain resize of crops that are not SxS, masks binarized) would."""
        size = self.processor.size.height
        crops = np.stack([self._crop(image, size, self.processor.resample) for image in images])
        channels_first = np.ascontiguousarray(crops.transpose(0, 3, 1, 2))
        # the table lookup is the processor's normalization (float32, bit for bit)
        pixels = channels_first if self.uint8_pixels else self.table[np.arange(3).reshape(1, 3, 1, 1), channels_first]
        full = np.stack(
            [
                np.full((size, size), self.config.mask_ignore_index, dtype=np.int8)
                if mask is None
                else self._crop(mask, size, PILImageResampling.NEAREST, binary=True).astype(np.int8)
                for mask in masks
            ]
        )
        grid = np.ascontiguousarray(sample_mask_labels(full, self.config)).astype(np.int64)
        return pixels, grid

    def _crop(self, image, size: int, resample, binary: bool = False) -> np.ndarray:
        """An image as the processor's uint8 RGB crop (or a mask as its 0/1 crop) of `size` x `size`."""
        array = binarize_mask(image) if binary else to_rgb_uint8(image)
        if array.shape[:2] == (size, size):
            return array
        if not self.processor.do_resize:
            raise DatasetError(f"with do_resize=False crops must be {size}x{size}, got {array.shape[:2]}")
        return resize_square(array, size, resample)

    def _randomize(self, batch: dict[str, list], images: list, masks: list, labels: list[int]):
        """Online self-blends for the marked rows, then the augmentation of every row (uint8 arrays)."""
        rng = self._generator()
        flags = batch.get(ONLINE_BLEND_COLUMN) or [0] * len(images)
        arrays, new_masks, new_labels = [], [], []
        for index, (image, mask, label) in enumerate(zip(images, masks, labels, strict=True)):
            image = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
            mask = None if mask is None else np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
            if int(flags[index]) == 1:
                image, mask = blend_crop(
                    image, batch["box"][index], batch["landmarks"][index], rng, self.processor.crop_scale
                )
                label = 1
            if self.augmentation is not None:
                image, mask = self.augmentation(image, mask, rng)
            arrays.append(image)
            new_masks.append(mask)
            new_labels.append(label)
        return arrays, new_masks, new_labels

    def _generator(self) -> np.random.Generator:
        """The generator of the next batch: seeded from `seed`, torch's seed of this process (or DataLoader worker)
        and the number of batches drawn before."""
        generator = np.random.default_rng([self.seed, torch.initial_seed() % 2**63, self.batches_drawn])
        self.batches_drawn += 1
        return generator

    @staticmethod
    def _known_mask(mask, image, label: int):
        """A real face without a mask gets an all-zero one; a fake without one stays None (ignored)."""
        if mask is not None or label == 1:
            return mask
        height, width = (image.height, image.width) if isinstance(image, Image.Image) else np.shape(image)[:2]
        return np.zeros((height, width), dtype=np.uint8)


def with_face_transform(
    dataset: Dataset,
    processor: MesoFCNImageProcessor,
    config: MesoFCNConfig | None = None,
    passthrough: Sequence[str] = (),
    augmentation: FaceAugmentation | None = None,
    seed: int = 0,
    uint8_pixels: bool = False,
) -> Dataset:
    """`dataset` formatted by FaceBatchTransform, decoding only the columns it reads."""
    if all(column in dataset.column_names for column in PACKED_COLUMNS):
        columns = [*PACKED_COLUMNS, "label"]
    else:
        columns = ["image", "label"] + (["mask"] if "mask" in dataset.column_names else [])
    columns += list(passthrough)
    if ONLINE_BLEND_COLUMN in dataset.column_names:
        columns += [ONLINE_BLEND_COLUMN, *GEOMETRY_COLUMNS]
    transform = FaceBatchTransform(processor, config, passthrough, augmentation, seed, uint8_pixels)
    return dataset.with_transform(transform, columns=columns)


def normalization_table(processor: MesoFCNImageProcessor) -> np.ndarray:
    """The processor's normalized float32 value of every uint8 value in every channel, as a (3, 256) table, computed
    by the processor itself on a crop holding all 256 values; ValueError if its output is not a per-value map."""
    size = processor.size.height
    if size * size < 256:
        raise ValueError(f"crops of {size}x{size} cannot hold all 256 values")
    ramp = (np.arange(size * size) % 256).astype(np.uint8).reshape(size, size)
    encoded = processor(np.repeat(ramp[:, :, None], 3, axis=2), return_tensors="np")["pixel_values"][0]
    table = np.empty((3, 256), dtype=np.float32)
    for channel in range(3):
        table[channel, ramp.ravel()] = encoded[channel].ravel()
        if not np.array_equal(table[channel][ramp], encoded[channel]):
            raise ValueError("the processor's normalization is not a function of each pixel value")
    return table


def normalize_pixels(pixels: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) pixels -> the processor's float32 values through `table` (normalization_table as a tensor on
    the same device): a gather, so the result equals the CPU path bit for bit on any device."""
    channels = torch.arange(3, device=pixels.device).view(1, 3, 1, 1)
    return table[channels, pixels.long()]


def row_image(dataset: Dataset, row: int):
    """The stored crop of one row (a PIL image, or the uint8 array of a packed folder's row)."""
    if all(column in dataset.column_names for column in PACKED_COLUMNS):
        record = dataset.select_columns(list(PACKED_COLUMNS))[int(row)]
        return read_packed_rows([record[PACKED_SPLIT_COLUMN]], [record[PACKED_ROW_COLUMN]])[0][0]
    return dataset[int(row)]["image"]


def stack_collate(rows: list):
    """`default_collate` with numeric NumPy arrays stacked by NumPy: the same tensors, but torch.stack of a batch of
    small arrays can take 100+ ms in its thread pool on a busy CPU, where one NumPy copy takes a fraction of a ms."""
    if not rows or not isinstance(rows[0], dict):
        return default_collate(rows)
    batch = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if isinstance(values[0], np.ndarray) and values[0].dtype.kind in "biuf":
            batch[key] = torch.from_numpy(np.stack(values))
        else:
            batch[key] = default_collate(values)
    return batch


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int | None = None,
) -> DataLoader:
    """A DataLoader over a transformed dataset; batches are stacked tensors (labels as int64)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=stack_collate,
        generator=generator,
        persistent_workers=num_workers > 0,
    )


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
    "FaceBatchTransform",
    "add_online_blend_rows",
    "add_row_index",
    "balance_classes",
    "build_settings_of",
    "class_counts",
    "column_as_strings",
    "crop_crf_of_datasets",
    "crop_scale_of_datasets",
    "effective_labels",
    "get_split",
    "load_dataset_dict",
    "load_splits_of_datasets",
    "make_dataloader",
    "normalization_table",
    "normalize_pixels",
    "row_image",
    "select_task_rows",
    "stack_collate",
    "spread_subset",
    "task_row_indices",
    "with_face_transform",
]
