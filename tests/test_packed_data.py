"""The packed training format (`mesofcn prepare pack`): bit-exact round trip, the same batches and losses as the
PNG datasets, one-line errors for bad packed folders, and no pickle anywhere; with --jpeg-quality, lossy crops close
to the originals beside exact masks and metadata, in a fraction of the bytes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mesofcn import MesoFCNImageProcessor
from mesofcn.cli import main as mesofcn
from mesofcn.cli.training import build_train_parser
from mesofcn.data.work import PrepareError, output_lock
from mesofcn.detection.modeling_mesofcn import MesoFCNForDeepfakeDetection
from mesofcn.training.augmentation import FaceAugmentation
from mesofcn.training.batches import make_dataloader, normalization_table, normalize_pixels, with_face_transform
from mesofcn.training.data import DatasetError, crop_scale_of_datasets, load_dataset_dict, load_splits_of_datasets
from mesofcn.training.pack import PACK_ARCHIVE, pack_datasets
from mesofcn.training.packed_data import (
    PACK_INDEX,
    PACK_MARKER,
    PACKED_COLUMNS,
    PACKED_ROW_COLUMN,
    PACKED_SPLIT_COLUMN,
    PackedDataError,
    combined_checksum,
    read_packed_rows,
    sha256_of,
)
from mesofcn.training.run_setup import TrainingError
from mesofcn.training.trainer import train
from tests.face_datasets import build_face_dataset

GAN_METHODS = ["real", "pgan", "stylegan"]
#: Mean absolute error (gray levels per channel) of the synthetic test crops packed at JPEG quality 90: measured 3.17
#: (their pixel noise of sigma 4 is what JPEG drops; real face crops come back closer), asserted with some margin.
JPEG90_MAX_MAE = 3.5

# Each in-process run gets its own Accelerate state (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[Path]:
    """Two tiny face-crop datasets with different method names (FF++ style, every third fake without a mask, and a
    GAN-style one), cropped alike (crop_scale 1.3 in their build settings)."""
    root = tmp_path_factory.mktemp("sources")
    ff = build_face_dataset(root / "ff", compressions=("c23",), missing_fake_mask_every=3)
    gan = build_face_dataset(
        root / "gan",
        fake_methods=("pgan",),
        method_names=GAN_METHODS,
        real_method="real",
        split_videos={"train": 4, "validation": 2, "test": 2},
        frames_per_video=3,
    )
    for folder in (ff, gan):
        (folder / "mesofcn_build.json").write_text(json.dumps({"builder": "test", "crop_scale": 1.3, "size": 128}))
    return [ff, gan]


@pytest.fixture(scope="module")
def packed(sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "pack"
    pack_datasets(sources, out, compress=True, progress=False)
    return out


@pytest.fixture(scope="module")
def jpeg_packed(sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jpeg_packed") / "pack"
    pack_datasets(sources, out, progress=False, jpeg_quality=90)
    return out


def load_error(folder: Path, error: type[Exception] = DatasetError) -> str:
    """The message loading `folder` fails with, checked to be one line naming the folder."""
    with pytest.raises(error) as raised:
        load_dataset_dict(folder)
    message = str(raised.value)
    assert "\n" not in message and str(folder) in message
    return message


def copy_pack(packed: Path, target: Path) -> Path:
    """A copy of packed folder `packed` (without its zip) to alter."""
    import shutil

    shutil.copytree(packed, target, ignore=shutil.ignore_patterns(PACK_ARCHIVE, ".lock"))
    return target


def resign(folder: Path) -> None:
    """Rewrite the index's sizes and checksums for the files as they are now, as if the altered folder had been
    written so: only the format checks behind the checksums can refuse it."""
    index = json.loads((folder / PACK_INDEX).read_text())
    for name, entry in index["files"].items():
        entry.update(bytes=(folder / name).stat().st_size, sha256=sha256_of(folder / name))
    index["checksum"] = combined_checksum(index["files"])
    (folder / PACK_INDEX).write_text(json.dumps(index))


def packed_rows(split) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """The crops and masks of every row of a loaded packed split, as training reads them."""
    return read_packed_rows(split[PACKED_SPLIT_COLUMN], split[PACKED_ROW_COLUMN])


def test_round_trip_is_bit_exact(sources, packed):
    """Crops, binary masks (None kept apart from all-zero), labels and every metadata column come back exactly."""
    original = load_splits_of_datasets(sources, ["train", "validation", "test"])
    data = load_dataset_dict(packed)
    assert list(data) == ["train", "validation", "test"]
    for split, reference in original.items():
        restored = data[split]
        assert len(restored) == len(reference) and all(column in restored.column_names for column in PACKED_COLUMNS)
        metadata = [name for name in reference.column_names if name not in ("image", "mask")]
        assert restored.select_columns(metadata).features == reference.select_columns(metadata).features
        assert restored.select_columns(metadata).to_dict() == reference.select_columns(metadata).to_dict()
        folder = packed / split
        images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
        masks = np.load(folder / "masks.npy", allow_pickle=False)
        mask_index = np.load(folder / "mask_index.npy", allow_pickle=False)
        for row, (image, mask) in enumerate(zip(reference["image"], reference["mask"], strict=True)):
            assert np.array_equal(images[row], np.asarray(image))
            if mask is None:
                assert mask_index[row] == -1
            else:
                unpacked = np.unpackbits(masks[mask_index[row]], axis=-1, count=128)
                assert np.array_equal(unpacked, (np.asarray(mask) > 0).astype(np.uint8))
    # all-zero masks (the reals') share one stored entry; fakes without a mask have none
    train_index = json.loads((packed / PACK_INDEX).read_text())["splits"]["train"]
    assert train_index["masks"] < train_index["rows_with_mask"] < train_index["rows"]
    assert crop_scale_of_datasets([packed]) == 1.3
    with pytest.raises(DatasetError, match="different crop_scale"):
        crop_scale_of_datasets([packed, sources[0].parent / "elsewhere"])


@pytest.mark.parametrize("augment, separately", [(False, False), (True, False), (True, True)])
def test_packed_batches_equal_the_png_batches(sources, packed, augment, separately, tmp_path):
    """Same rows in the same order, same augmentation draws, same normalization (the uint8 batch normalized by the
    table equals the processor's float32 values bit for bit); also with each folder packed on its own and the packed
    folders joined at training time."""
    processor = MesoFCNImageProcessor(crop_scale=1.3)
    augmentation = FaceAugmentation() if augment else None
    original = load_splits_of_datasets(sources, ["train"])["train"]
    reference = make_dataloader(
        with_face_transform(original, processor, augmentation=augmentation, seed=3), 8, True, 0, 5
    )
    if separately:
        folders = [pack_datasets([source], tmp_path / source.name, progress=False).out for source in sources]
        rows = load_splits_of_datasets(folders, ["train"])["train"]
    else:
        rows = load_dataset_dict(packed)["train"]
    loader = make_dataloader(
        with_face_transform(rows, processor, augmentation=augmentation, seed=3, uint8_pixels=True),
        8,
        True,
        0,
        5,
    )
    table = torch.from_numpy(normalization_table(processor))
    count = 0
    for expected, batch in zip(reference, loader, strict=True):
        assert batch["pixel_values"].dtype == torch.uint8
        assert torch.equal(normalize_pixels(batch["pixel_values"], table), expected["pixel_values"])
        assert torch.equal(batch["labels"], expected["labels"]) and torch.equal(
            batch["mask_labels"], expected["mask_labels"]
        )
        count += 1
    assert count == len(reference) > 1


def train_args(datasets: list[Path], output: Path, *extra: str) -> argparse.Namespace:
    argv = ["--dataset_dir", *map(str, datasets), "--task", "ff-c23-df", "--output_dir", str(output)]
    argv += ["--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "--seed", "7"]
    argv += ["--max_train_steps", "4", "--eval_steps", "4", "--max_train_samples", "16", "--deterministic", *extra]
    return build_train_parser().parse_args(argv)


def test_training_on_the_packed_copy_gives_the_same_losses(sources, packed, tmp_path, monkeypatch):
    """A few steps with --augment and --online_self_blend: every training loss is exactly equal (same inputs, same
    deterministic CPU kernels; no tolerance needed), and so are the final weights."""
    losses: list[float] = []
    forward = MesoFCNForDeepfakeDetection.forward

    def recording_forward(self, *args, **kwargs):
        outputs = forward(self, *args, **kwargs)
        if self.training:
            losses.append(outputs.loss.item())
        return outputs

    monkeypatch.setattr(MesoFCNForDeepfakeDetection, "forward", recording_forward)
    extra = ["--augment", "--online_self_blend"]
    train(train_args([sources[0]], tmp_path / "png", *extra))
    png_losses, losses[:] = list(losses), []
    ff_only = tmp_path / "ff_packed"
    pack_datasets([sources[0]], ff_only, progress=False)
    train(train_args([ff_only], tmp_path / "packed", *extra))
    assert len(png_losses) == 4 and losses == png_losses
    reference = load_file(tmp_path / "png" / "final" / "model.safetensors")
    weights = load_file(tmp_path / "packed" / "final" / "model.safetensors")
    assert all(torch.equal(tensor, weights[key]) for key, tensor in reference.items())
    # the processor saved with the checkpoint crops as the packed data was cropped
    config = json.loads((tmp_path / "packed" / "final" / "preprocessor_config.json").read_text())
    assert config["crop_scale"] == 1.3


def test_bad_packed_folders_are_one_line_errors_naming_them(sources, packed, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / PACK_MARKER).touch()
    (half / "train").mkdir()
    assert "half-written" in load_error(half)

    def copy_of(name: str) -> Path:
        return copy_pack(packed, tmp_path / name)

    truncated = copy_of("truncated")
    images = truncated / "train" / "images.npy"
    images.write_bytes(images.read_bytes()[:-100])
    assert "train/images.npy" in load_error(truncated)
    flipped = copy_of("flipped")
    raw = bytearray((flipped / "train" / "images.npy").read_bytes())
    raw[-1] ^= 1
    (flipped / "train" / "images.npy").write_bytes(bytes(raw))
    assert "checksum" in load_error(flipped)
    missing = copy_of("missing")
    (missing / "validation" / "mask_index.npy").unlink()
    assert "missing" in load_error(missing)
    garbled = copy_of("garbled")
    (garbled / PACK_INDEX).write_text("{not json")
    assert "index" in load_error(garbled)
    newer = copy_of("newer")
    index = json.loads((newer / PACK_INDEX).read_text())
    (newer / PACK_INDEX).write_text(json.dumps({**index, "version": 99}))
    assert "version 99" in load_error(newer)
    # an index claiming JPEG crops it has not got (or in a version-1 index) is refused before any file is read
    jpeg = {"encoding": "jpeg", "quality": 90, "lossy": True}
    for name, changes, expected in [
        ("webp", {"images": {"encoding": "webp"}}, "unknown crop encoding"),
        ("quality", {"version": 2, "images": {**jpeg, "quality": 0}}, "unknown crop encoding"),
        ("jpeg_v1", {"images": jpeg}, "JPEG crops in a version 1 index"),
        ("no_size", {"version": 2, "images": jpeg, "size": None}, "JPEG crops of size None"),
        ("no_blob", {"version": 2, "images": jpeg}, "image_offsets.npy"),
    ]:
        claim = copy_of(name)
        index = json.loads((claim / PACK_INDEX).read_text())
        (claim / PACK_INDEX).write_text(json.dumps({**index, **changes}))
        assert expected in load_error(claim)
    # training says the same in one line, and refuses packed and unpacked folders together
    with pytest.raises(TrainingError, match="checksum"):
        train(train_args([flipped], tmp_path / "o"))
    with pytest.raises(TrainingError, match="pack them all together"):
        train(train_args([packed, sources[0]], tmp_path / "o"))


def test_pack_refuses_user_folders_other_writers_and_packed_sources(sources, packed, tmp_path, capsys):
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(PrepareError, match="not a mesofcn prepare pack output"):
        pack_datasets(sources, user, progress=False)
    assert (user / "notes.txt").read_text() == "mine"
    with pytest.raises(PrepareError, match="already a packed folder"):
        pack_datasets([packed], tmp_path / "again", progress=False)
    busy = tmp_path / "busy"
    with output_lock(busy), pytest.raises(PrepareError, match="another mesofcn prepare is writing there"):
        pack_datasets(sources, busy, progress=False)
    assert mesofcn(["prepare", "pack", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) != 0
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "nope does not exist" in error


def test_repacking_replaces_the_folder_and_the_cli_prints_sizes(sources, tmp_path, capsys):
    out = tmp_path / "pack"
    assert mesofcn(["prepare", "pack", *map(str, sources), "--out", str(out), "--compress", "--quiet"]) == 0
    line = capsys.readouterr().out
    assert "MB" in line and PACK_ARCHIVE in line and (out / PACK_ARCHIVE).is_file()
    assert mesofcn(["prepare", "pack", str(sources[1]), "--out", str(out), "--quiet"]) == 0
    assert not (out / PACK_ARCHIVE).exists()  # the old compressed copy no longer matched
    assert len(load_dataset_dict(out)["train"]) == len(load_dataset_dict(sources[1])["train"])


def test_the_compressed_copy_unpacks_into_a_usable_packed_folder(packed, tmp_path):
    import zipfile

    with zipfile.ZipFile(packed / PACK_ARCHIVE) as archive:
        archive.extractall(tmp_path / "unpacked")
    restored = load_dataset_dict(tmp_path / "unpacked")
    assert len(restored["train"]) == len(load_dataset_dict(packed)["train"])


def test_no_pickle_is_written_or_read(packed, monkeypatch):
    """Every .npy opens with allow_pickle=False (no object arrays), and loading never calls pickle."""
    import pickle

    for path in packed.rglob("*.npy"):
        assert np.load(path, allow_pickle=False).dtype != object
    assert not [path for path in packed.rglob("*") if path.suffix in (".pkl", ".pickle", ".pt", ".bin")]

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    data = load_dataset_dict(packed)
    transformed = with_face_transform(data["train"], MesoFCNImageProcessor(crop_scale=1.3))
    assert transformed[:2]["pixel_values"][0].shape == (3, 128, 128)


def test_evaluation_on_the_packed_copy_matches(sources, tmp_path, checkpoint_dir):
    """`mesofcn evaluate` reads a packed folder too: the same results, predictions and mask-grid figure."""
    from mesofcn.training.evaluation import evaluate_checkpoint

    packed_ff = tmp_path / "ff_packed"
    pack_datasets([sources[0]], packed_ff, progress=False)
    original = evaluate_checkpoint(str(checkpoint_dir), sources[0], tmp_path / "a", split="test", progress=False)
    restored = evaluate_checkpoint(str(checkpoint_dir), packed_ff, tmp_path / "b", split="test", progress=False)
    different = {"dataset", "images_per_second"}  # the folder's name and the measured speed
    assert {key: value for key, value in restored.items() if key not in different} == {
        key: value for key, value in original.items() if key not in different
    }
    for name in ("predictions.csv", "masks_grid.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_jpeg_pack_is_close_small_and_exact_where_it_must_be(sources, packed, jpeg_packed):
    """Quality 90: the same rows, metadata and (bit-identical) masks as the lossless pack; crops within the measured
    error; the crops' blob a small fraction of images.npy; the index and build settings say the crops are lossy."""
    original = load_splits_of_datasets(sources, ["train", "validation", "test"])
    exact, lossy = load_dataset_dict(packed), load_dataset_dict(jpeg_packed)
    for split, reference in original.items():
        assert len(lossy[split]) == len(reference) == len(exact[split])
        metadata = [name for name in reference.column_names if name not in ("image", "mask")]
        assert lossy[split].select_columns(metadata).to_dict() == reference.select_columns(metadata).to_dict()
        crops, masks = packed_rows(lossy[split])
        exact_crops, exact_masks = packed_rows(exact[split])
        for crop, mask, exact_crop, exact_mask in zip(crops, masks, exact_crops, exact_masks, strict=True):
            assert crop.shape == exact_crop.shape and crop.dtype == np.uint8
            assert (mask is None and exact_mask is None) or np.array_equal(mask, exact_mask)
        error = np.abs(np.stack(crops).astype(np.int16) - np.stack(exact_crops).astype(np.int16)).mean()
        assert 0 < error < JPEG90_MAX_MAE, f"{split}: mean absolute error {error:.2f}"
        for name in ("masks.npy", "mask_index.npy", "label.npy"):
            assert (jpeg_packed / split / name).read_bytes() == (packed / split / name).read_bytes()
        assert not (jpeg_packed / split / "images.npy").exists()
        blob = (jpeg_packed / split / "images_jpeg.bin").stat().st_size
        assert blob * 8 < (packed / split / "images.npy").stat().st_size  # measured 13.9x smaller
        offsets = np.load(jpeg_packed / split / "image_offsets.npy", allow_pickle=False)
        assert offsets.dtype == np.int64 and offsets.shape == (len(reference) + 1,) and offsets[-1] == blob
    index = json.loads((jpeg_packed / PACK_INDEX).read_text())
    assert index["version"] == 2 and index["images"] == {"encoding": "jpeg", "quality": 90, "lossy": True}
    settings = json.loads((jpeg_packed / "mesofcn_build.json").read_text())
    assert settings["lossy"] is True and settings["image_encoding"] == "jpeg" and settings["jpeg_quality"] == 90
    assert crop_scale_of_datasets([jpeg_packed]) == 1.3


def test_lossless_packs_stay_version_1_and_old_ones_load_bit_identically(packed, tmp_path):
    """A pack without --jpeg-quality is written as before (version 1, images.npy), its index saying the crops are
    exact; one written before the "images" entry existed loads, crops bit for bit equal to its images.npy."""
    index = json.loads((packed / PACK_INDEX).read_text())
    assert index["version"] == 1 and index["images"] == {"encoding": "uint8", "lossy": False}
    old = copy_pack(packed, tmp_path / "old")
    del index["images"]  # the index is not among its own checksummed files
    (old / PACK_INDEX).write_text(json.dumps(index))
    for split, data in load_dataset_dict(old).items():
        crops, _ = packed_rows(data)
        assert np.array_equal(np.stack(crops), np.load(old / split / "images.npy", allow_pickle=False))


def test_broken_jpeg_packs_are_one_line_errors_naming_the_file(jpeg_packed, tmp_path):
    """A truncated blob or altered offsets fail the size and checksum checks; offsets that fail the format checks
    (even under a rewritten index) and undecodable bytes are refused naming the file."""
    truncated = copy_pack(jpeg_packed, tmp_path / "truncated")
    blob = truncated / "train" / "images_jpeg.bin"
    blob.write_bytes(blob.read_bytes()[:-100])
    assert "train/images_jpeg.bin" in load_error(truncated)
    resign(truncated)  # same bytes, sizes and checksums rewritten: the offsets now run past the blob's end
    message = load_error(truncated)
    assert "train/image_offsets.npy" in message and "expected 0 to" in message

    altered = copy_pack(jpeg_packed, tmp_path / "altered")
    offsets_file = altered / "validation" / "image_offsets.npy"
    offsets = np.load(offsets_file, allow_pickle=False)
    np.save(offsets_file, offsets[[0, 2, 1, *range(3, len(offsets))]], allow_pickle=False)
    assert "checksum" in load_error(altered)
    resign(altered)
    assert "validation/image_offsets.npy: offsets do not rise" in load_error(altered)
    np.save(offsets_file, offsets[:-1], allow_pickle=False)
    resign(altered)
    assert f"validation/image_offsets.npy: shape ({len(offsets) - 1},) int64, expected ({len(offsets)},)" in (
        load_error(altered)
    )
    np.save(offsets_file, offsets.astype(np.int32), allow_pickle=False)
    resign(altered)
    assert "int32, expected" in load_error(altered)

    garbled = copy_pack(jpeg_packed, tmp_path / "garbled")
    first = int(offsets[1])
    raw = bytearray((garbled / "validation" / "images_jpeg.bin").read_bytes())
    raw[:first] = bytes(first)  # row 0 zeroed: no JPEG any more
    (garbled / "validation" / "images_jpeg.bin").write_bytes(bytes(raw))
    resign(garbled)
    data = load_dataset_dict(garbled)["validation"]  # offsets fine: found when the row is read
    with pytest.raises(PackedDataError, match=r"validation/images_jpeg.bin: row 0 holds no JPEG") as raised:
        packed_rows(data.select(range(2)))
    assert "\n" not in str(raised.value)


def test_an_invalid_jpeg_quality_is_refused(sources, tmp_path, capsys):
    out = tmp_path / "pack"
    for quality in ("0", "101", "ninety", "9.5"):
        with pytest.raises(SystemExit) as raised:
            mesofcn(["prepare", "pack", str(sources[0]), "--out", str(out), "--jpeg-quality", quality])
        assert raised.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert "--jpeg-quality" in error and "from 1 to 100" in error and quality in error
    for quality in (0, 101, True):
        with pytest.raises(PrepareError, match="JPEG quality must be an integer from 1 to 100"):
            pack_datasets([sources[0]], out, progress=False, jpeg_quality=quality)
    assert not out.exists()
    assert mesofcn(["prepare", "pack", str(sources[0]), "--out", str(out), "--jpeg-quality", "85", "--quiet"]) == 0
    assert "lossy JPEG crops, quality 85" in capsys.readouterr().out
    assert json.loads((out / PACK_INDEX).read_text())["images"]["quality"] == 85


def test_training_and_evaluation_run_on_a_jpeg_pack(jpeg_packed, tmp_path, checkpoint_dir):
    """`mesofcn train` (with --augment and --online_self_blend) and `mesofcn evaluate` read a JPEG pack as they read
    any packed folder."""
    from mesofcn.training.evaluation import evaluate_checkpoint

    train(train_args([jpeg_packed], tmp_path / "run", "--augment", "--online_self_blend"))
    weights = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    results = evaluate_checkpoint(str(checkpoint_dir), jpeg_packed, tmp_path / "eval", split="test", progress=False)
    assert (tmp_path / "eval" / "predictions.csv").is_file() and results
