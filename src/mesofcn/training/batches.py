"""
Face-crop rows -> MesoFCN batches, shared by training and evaluation so both see identical inputs.

Rows (as :mod:`mesofcn.training.data` loads and selects them) are decoded and normalized lazily, batch by batch, with
`with_transform` (no int64 copies of the images). Rows of a packed folder (see `mesofcn.training.packed_data`) read
their crops from its memory-mapped arrays instead of decoding PNGs; everything else (augmentation draws,
normalization) is the same code, so both formats give bit-identical batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from torch.utils.data import DataLoader, default_collate
from transformers.image_utils import PILImageResampling

from ..detection.configuration_mesofcn import MesoFCNConfig
from ..detection.image_processing_mesofcn import MesoFCNImageProcessor, binarize_mask, resize_square, to_rgb_uint8
from ..detection.modeling_mesofcn import sample_mask_labels
from .augmentation import FaceAugmentation, blend_crop
from .data import GEOMETRY_COLUMNS, ONLINE_BLEND_COLUMN, DatasetError
from .packed_data import PACKED_COLUMNS, PACKED_ROW_COLUMN, PACKED_SPLIT_COLUMN, read_packed_rows


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


__all__ = [
    "FaceBatchTransform",
    "make_dataloader",
    "normalization_table",
    "normalize_pixels",
    "stack_collate",
    "with_face_transform",
]
