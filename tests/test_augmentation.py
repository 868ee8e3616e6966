"""Training-time augmentation (alike for both classes), online self-blending, and training on several datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import concatenate_datasets

from mesofcn import MesoFCNImageProcessor
from mesofcn.cli.training import build_train_parser
from mesofcn.data.blending import resample_through
from mesofcn.detection.image_processing_mesofcn import crop_face
from mesofcn.training.augmentation import FaceAugmentation, blend_crop, jpeg_round_trip, landmarks_in_crop
from mesofcn.training.batches import FaceBatchTransform
from mesofcn.training.data import (
    ONLINE_BLEND_COLUMN,
    DatasetError,
    add_online_blend_rows,
    balance_classes,
    class_counts,
    load_splits_of_datasets,
    select_task_rows,
)
from mesofcn.training.tasks import parse_task
from mesofcn.training.trainer import train
from tests.face_datasets import build_face_dataset

NOTHING = FaceAugmentation(0.0, 0.0, (0.5, 0.5), 0.0, (1.0, 1.0), 0.0, (1.0, 1.0), 0.0, (90, 90))

# Each in-process run gets its own Accelerate state (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> tuple[Path, Path]:
    """An FF++-like dataset (pristine + Deepfakes) and a self-blend-like one (real + self-blend, named differently)."""
    root = tmp_path_factory.mktemp("multi")
    ff = build_face_dataset(root / "ff", fake_methods=("Deepfakes",), split_videos={"train": 4, "validation": 2})
    sbi = build_face_dataset(
        root / "sbi",
        fake_methods=("self-blend",),
        method_names=["real", "self-blend"],
        real_method="real",
        split_videos={"train": 6, "validation": 2},
    )
    return ff, sbi


def train_split(path: Path):
    return load_splits_of_datasets([path], ["train"])["train"]


def face_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.linspace(40, 200, 128)[None, :, None] + rng.normal(0, 20, (128, 128, 3))
    return np.clip(smooth, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- augmentation


def test_augmentation_with_zero_probabilities_is_the_identity():
    image, mask = face_image(), (np.arange(128 * 128).reshape(128, 128) % 2 * 255).astype(np.uint8)
    out, out_mask = NOTHING(image, mask, np.random.default_rng(0))
    assert np.array_equal(out, image) and np.array_equal(out_mask, mask)


def test_flip_moves_image_and_mask_together():
    flip = FaceAugmentation(1.0, 0.0, (0.5, 0.5), 0.0, (1.0, 1.0), 0.0, (1.0, 1.0), 0.0, (90, 90))
    image, mask = face_image(), np.zeros((128, 128), dtype=np.uint8)
    mask[10:20, 5:15] = 255
    out, out_mask = flip(image, mask, np.random.default_rng(0))
    assert np.array_equal(out, image[:, ::-1])
    assert np.array_equal(np.argwhere(out_mask)[:, 1].min(), 128 - 15) and out_mask.sum() == mask.sum()


def test_photometric_changes_keep_shape_and_change_pixels():
    image = face_image()
    low = resample_through(image, 0.4)
    assert low.shape == image.shape and low.dtype == np.uint8
    assert np.abs(np.diff(low.astype(float), axis=1)).mean() < np.abs(np.diff(image.astype(float), axis=1)).mean()
    jpeg = jpeg_round_trip(image, 50)
    assert jpeg.shape == image.shape and 0 < np.abs(jpeg.astype(int) - image).mean() < 20
    full = FaceAugmentation(0.0, 1.0, (0.5, 0.5), 1.0, (1.0, 1.0), 1.0, (5.0, 5.0), 1.0, (60, 60))
    out, out_mask = full(image, None, np.random.default_rng(1))
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8 and out_mask is None
    assert np.abs(out.astype(int) - image).mean() > 2


def test_augmentation_draws_do_not_depend_on_the_mask():
    """The augmentation takes no label, and a crop with a mask (a fake) or without one gets the same change from
    the same generator state: nothing in it can mark a class."""
    augment = FaceAugmentation()
    image = face_image()
    first, _ = augment(image, None, np.random.default_rng(5))
    second, _ = augment(image, np.zeros((128, 128), np.uint8), np.random.default_rng(5))
    assert np.array_equal(first, second)


# ----------------------------------------------------------------------------------------------- online blending


def test_landmarks_in_crop_follow_the_crop_window():
    frame = np.zeros((400, 400, 3), dtype=np.uint8)
    box = [100.0, 120.0, 80.0, 100.0]
    landmarks = [120.0, 150.0, 160.0, 150.0, 140.0, 175.0, 125.0, 200.0, 155.0, 200.0]
    for x, y in np.reshape(landmarks, (5, 2)).astype(int):
        frame[y - 1 : y + 2, x - 1 : x + 2] = 255
    crop, _, window = crop_face(frame, box, landmarks)
    points, crop_box = landmarks_in_crop(box, landmarks, 128)
    assert window.side == 110
    for x, y in points:  # each mapped landmark sits on its bright dot in the crop
        assert crop[int(round(y)), int(round(x))].max() > 100
    assert crop_box[2] == pytest.approx(80 * 128 / 110) and crop_box[3] == pytest.approx(100 * 128 / 110)


def test_blend_crop_changes_only_inside_its_mask():
    image = face_image(3)
    box, landmarks = [10.0, 10.0, 100.0, 110.0], [40.0, 50.0, 80.0, 50.0, 60.0, 70.0, 45.0, 90.0, 75.0, 90.0]
    blended, mask = blend_crop(image, box, landmarks, np.random.default_rng(0))
    assert set(np.unique(mask)) == {0, 255}
    assert 0.1 < (mask > 0).mean() < 0.9
    assert np.array_equal(blended[mask == 0], image[mask == 0])
    assert not np.array_equal(blended, image)


def test_online_blend_rows_become_new_fakes_each_time(two_datasets):
    _, sbi = two_datasets
    train_rows = train_split(sbi)
    counts = class_counts(train_rows)
    doubled = add_online_blend_rows(train_rows)
    assert len(doubled) == len(train_rows) + counts["real"]
    assert class_counts(doubled) == {"real": counts["real"], "fake": counts["fake"] + counts["real"]}
    fakes = counts["fake"] + counts["real"]
    assert class_counts(balance_classes(doubled, 0)) == {"real": fakes, "fake": fakes}  # online copies count as fake
    marked = np.flatnonzero(np.asarray(doubled[ONLINE_BLEND_COLUMN]) == 1)[:4]
    batch = doubled.select(marked)[:]
    assert batch["label"] == [0, 0, 0, 0]  # stored as real; the transform makes them fake
    transform = FaceBatchTransform(MesoFCNImageProcessor(), seed=1)
    first, second = transform(dict(batch)), transform(dict(batch))
    assert first["labels"] == [1, 1, 1, 1]
    assert all((grid == 1).sum() > 50 for grid in first["mask_labels"])  # exact blend masks on the 49x49 grid
    assert not np.array_equal(np.stack(first["pixel_values"]), np.stack(second["pixel_values"]))  # a new blend


def test_online_blending_needs_face_geometry(two_datasets):
    _, sbi = two_datasets
    rows = train_split(sbi).remove_columns("landmarks")
    with pytest.raises(DatasetError, match="needs the column.*landmarks"):
        add_online_blend_rows(rows)


# ----------------------------------------------------------------------------------------------- several datasets


def test_datasets_with_different_method_names_concatenate(two_datasets):
    ff, sbi = two_datasets
    splits = load_splits_of_datasets([ff, sbi], ["train", "validation"])
    rows = splits["train"]
    assert len(rows) == len(train_split(ff)) + len(train_split(sbi))
    assert len(splits["validation"]) == 2 * 4 * 2  # 2 validation videos of 4 frames in each dataset
    assert set(rows["method"]) == {"pristine", "Deepfakes", "real", "self-blend"}
    both = select_task_rows(rows, parse_task("sbi-c23-all"), "train")
    assert len(both) == len(rows)
    only_blends = select_task_rows(rows, parse_task("sbi-c23-self"), "train")
    assert set(only_blends["method"]) == {"pristine", "real", "self-blend"}
    with pytest.raises(ValueError, match="sbi-"):
        parse_task("sbi-c23-df")
    mixed = concatenate_datasets([rows, rows.map(lambda row: {"compression": "c40"})])
    assert len(select_task_rows(mixed, parse_task("sbi-any-all"), "train")) == 2 * len(rows)
    assert set(select_task_rows(mixed, parse_task("sbi-c40-all"), "train")["compression"]) == {"c40"}
    assert parse_task("ff-any-df").dataset_title == "FaceForensics++ (every compression)"


def test_training_on_two_datasets_with_online_blends_and_augmentation(two_datasets, tmp_path):
    ff, sbi = two_datasets
    argv = ["--dataset_dir", str(ff), str(sbi), "--task", "sbi-c23-all", "--output_dir", str(tmp_path / "run")]
    argv += ["--online_self_blend", "--augment", "--max_train_steps", "3", "--per_device_train_batch_size", "8"]
    argv += ["--report_to", "none", "--disable_tqdm", "--eval_steps", "3"]
    result = train(build_train_parser().parse_args(argv))
    assert result.global_step == 3 and result.best_dir.is_dir()
    final = json.loads((result.final_dir / "eval_results.json").read_text())
    assert final["step"] == 3 and (result.final_dir / "model.safetensors").is_file()
    assert final["frame"] == json.loads((result.best_dir / "eval_results.json").read_text())["frame"]
    arguments = json.loads((result.best_dir / "training_args.json").read_text())
    assert arguments["dataset_dir"] == [str(ff), str(sbi)] and arguments["online_self_blend"] is True
    evaluation = json.loads((result.best_dir / "eval_results.json").read_text())
    assert evaluation["frame"]["num_frames"] == len(load_splits_of_datasets([ff, sbi], ["validation"])["validation"])
    assert torch.isfinite(torch.tensor(evaluation["frame"]["accuracy"]))
