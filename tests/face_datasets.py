"""Tiny face-crop DatasetDicts with the builders' schema, made by the tests themselves (no shared data needed).

Fakes carry a visible high-frequency pattern inside their mask rectangle, so a few optimizer steps can learn
something; real faces are smooth. Rows have the exact features the dataset builders write.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict

from mesofcn import MesoFCNImageProcessor
from mesofcn.data.rows import face_features
from mesofcn.data.settings import FFPP_METHOD_NAMES
from mesofcn.detection.modeling_mesofcn import MesoFCNDetectionOutput

# The builders' own schema: tests build rows with exactly the features the dataset builders write.
FF_METHOD_NAMES = list(FFPP_METHOD_NAMES)


def synthetic_face(rng: np.random.Generator, fake: bool, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random 'face' and, for fakes, a checkerboard-textured rectangle; returns (RGB, 0/255 mask)."""
    base = rng.uniform(60, 190, size=3)
    ramp = np.linspace(-30, 30, size)[None, :, None]
    image = np.clip(base + ramp + rng.normal(0, 4, (size, size, 3)), 0, 255)
    mask = np.zeros((size, size), dtype=np.uint8)
    if fake:
        side = int(rng.integers(40, 64))
        top, left = (int(v) for v in rng.integers(20, 108 - side, size=2))
        yy, xx = np.mgrid[0:side, 0:side]
        pattern = np.where((yy // 2 + xx // 2) % 2 == 0, 45.0, -45.0)[..., None]
        image[top : top + side, left : left + side] = np.clip(
            image[top : top + side, left : left + side] + pattern, 0, 255
        )
        mask[top : top + side, left : left + side] = 255
    return image.astype(np.uint8), mask


def face_rows(
    num_videos: int,
    frames_per_video: int,
    fake_methods: list[str],
    compressions: tuple[str, ...] = ("c23",),
    seed: int = 0,
    missing_fake_mask_every: int = 0,
    real_method: str = "pristine",
) -> dict[str, list]:
    """Rows cycling over pristine and each fake method (one video each in turn), every compression."""
    rng = np.random.default_rng(seed)
    methods = [real_method, *fake_methods]
    rows: dict[str, list] = {name: [] for name in face_features(methods)}
    fake_count = 0
    for video_index in range(num_videos):
        method = methods[video_index % len(methods)]
        fake = method != real_method
        for compression in compressions:
            for frame in range(frames_per_video):
                image, mask = synthetic_face(rng, fake)
                keep_mask = True
                if fake:
                    fake_count += 1
                    keep_mask = not (missing_fake_mask_every and fake_count % missing_fake_mask_every == 0)
                rows["image"].append(image)
                rows["mask"].append(mask if keep_mask else None)
                rows["label"].append(int(fake))
                rows["method"].append(method)
                rows["compression"].append(compression)
                rows["video"].append(f"{seed}_{video_index:03d}" + ("_x" if fake else ""))
                rows["frame"].append(frame * 5)
                rows["box"].append([10.0, 10.0, 100.0, 110.0])
                rows["landmarks"].append([40.0, 50.0, 80.0, 50.0, 60.0, 70.0, 45.0, 90.0, 75.0, 90.0])
                rows["detector"].append("synthetic")
                rows["detector_score"].append(0.99)
                rows["mask_source"].append(("ffpp" if keep_mask else "none") if fake else "none")
    return rows


def build_face_dataset(
    path: Path,
    fake_methods: tuple[str, ...] = ("Deepfakes", "Face2Face"),
    method_names: list[str] | None = None,
    split_videos: dict[str, int] | None = None,
    frames_per_video: int = 4,
    compressions: tuple[str, ...] = ("c23",),
    missing_fake_mask_every: int = 0,
    real_method: str = "pristine",
) -> Path:
    """Write a DatasetDict (train/validation/test) of synthetic face crops to `path` and return it."""
    names = method_names or FF_METHOD_NAMES
    features = face_features(names)
    split_videos = split_videos or {"train": 12, "validation": 6, "test": 6}
    splits = {}
    for seed, (split, videos) in enumerate(split_videos.items()):
        rows = face_rows(
            videos, frames_per_video, list(fake_methods), compressions, seed, missing_fake_mask_every, real_method
        )
        splits[split] = Dataset.from_dict(rows, features=features)
    DatasetDict(splits).save_to_disk(str(path))
    return path


#: The 49 rows (and columns) of a 128 px mask that are the segmentation targets: the receptive-field centres of
#: Table I's network (receptive field 31, output stride 2), as in Fig. 3.
TARGET_POSITIONS = slice(15, 112, 2)


def assert_rows_feed_the_model(rows: list[dict], seed: int = 0) -> MesoFCNDetectionOutput:
    """Encode dataset rows (decoded: PIL images, masks or None) with the default processor, check that the model
    is given exactly the rows' content, run a random model on them and check its loss against the paper's joint
    loss computed here by hand. Returns the model's output.

    The model is given: pixel values = the rows' 128x128 RGB crops rescaled to [-1, 1] (float32, channels first);
    mask labels = 1 where a row's mask is non-zero, else 0, and -100 (ignored) everywhere for a row without one
    (none at all when no row has a mask); the labels are the rows'. Then `loss = λ·seg + (1-λ)·cls` with `cls` the
    cross-entropy of the image logits and `seg` the cross-entropy of the 49x49 map averaged over the labelled
    positions: each mask sampled at TARGET_POSITIONS, or without masks, 0 for real rows and ignored for fakes.
    """
    from tests.conftest import make_model

    encoded = MesoFCNImageProcessor()(
        [row["image"] for row in rows], masks=[row["mask"] for row in rows], return_tensors="pt"
    )
    images = np.stack([np.asarray(row["image"].convert("RGB")) for row in rows])
    assert images.shape == (len(rows), 128, 128, 3)
    pixels = encoded["pixel_values"]
    assert pixels.dtype == torch.float32 and pixels.shape == (len(rows), 3, 128, 128)
    expected_pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    torch.testing.assert_close(pixels, expected_pixels, atol=1e-6, rtol=0)
    labels = torch.tensor([row["label"] for row in rows])
    if all(row["mask"] is None for row in rows):
        assert "mask_labels" not in encoded
        mask_labels = None
        targets = torch.where(labels == 0, 0, -100)[:, None, None].expand(-1, 49, 49)
    else:
        mask_labels = encoded["mask_labels"]
        expected_masks = [
            np.full((128, 128), -100) if row["mask"] is None else (np.asarray(row["mask"]) > 0).astype(int)
            for row in rows
        ]
        assert mask_labels.dtype == torch.int64
        torch.testing.assert_close(mask_labels, torch.from_numpy(np.stack(expected_masks)), atol=0, rtol=0)
        targets = mask_labels[:, TARGET_POSITIONS, TARGET_POSITIONS]
    model = make_model(seed)
    with torch.no_grad():
        output = model(pixels, labels=labels, mask_labels=mask_labels)
    assert output.logits.shape == (len(rows), 2) and output.segmentation_logits.shape == (len(rows), 2, 49, 49)
    cls = F.cross_entropy(output.logits, labels)
    labelled = int((targets != -100).sum())
    seg = F.cross_entropy(output.segmentation_logits, targets, ignore_index=-100, reduction="sum") / max(labelled, 1)
    weight = model.config.seg_loss_weight
    torch.testing.assert_close(output.cls_loss, cls)
    torch.testing.assert_close(output.seg_loss, seg)
    torch.testing.assert_close(output.loss, weight * seg + (1 - weight) * cls)
    return output


__all__ = [
    "FF_METHOD_NAMES",
    "TARGET_POSITIONS",
    "assert_rows_feed_the_model",
    "build_face_dataset",
    "face_features",
    "face_rows",
    "synthetic_face",
]
