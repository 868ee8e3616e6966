"""Tests for the real-vs-GAN face builder: seeded stratified splits, the H.264 frame pipeline, masks, real data."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from datasets import load_from_disk
from PIL import Image

from mesofcn.cli import CommandError
from mesofcn.cli.prepare import add_prepare_parser
from mesofcn.data.gan_faces import build_gan_faces, gan_faces_features, list_images
from mesofcn.data.splitting import split_images
from mesofcn.data.work import PrepareError
from mesofcn.detection.compression import compress_frames
from mesofcn.detection.face_detection import DetectedFace
from mesofcn.detection.image_processing_mesofcn import crop_face
from mesofcn.detection.media import load_image
from mesofcn.training.data import DatasetError, crop_crf_of_datasets
from tests.face_datasets import assert_rows_feed_the_model

MARKER = (slice(0, 6), slice(0, 6))


class CentredFaceDetector:
    """Test double: one face in the middle of any image whose top-left marker block is bright, else none."""

    name = "centred-face-test"

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        if image[MARKER].mean() < 128:
            return []
        return [DetectedFace(box=face_box(image), landmarks=face_landmarks(image), score=0.9)]


def face_box(image: np.ndarray) -> tuple[float, float, float, float]:
    height, width = image.shape[:2]
    return (width * 0.25, height * 0.25, width * 0.5, height * 0.5)


def face_landmarks(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return np.array([[0.4, 0.4], [0.6, 0.4], [0.5, 0.5], [0.42, 0.62], [0.58, 0.62]]) * [width, height]


def write_image(path: Path, seed: int, size: tuple[int, int], face: bool = True) -> None:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), (7, 7), 0)
    image[MARKER] = 255 if face else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """real: 10 images (png/jpg/webp, odd sizes, a subfolder, one without a face, a text file); gan_a: 5; gan_b: 4."""
    root = tmp_path_factory.mktemp("gan")
    for index in range(10):
        suffix = [".png", ".jpg", ".webp", ".PNG"][index % 4]
        folder = root / "real" / ("sub" if index % 3 == 0 else "")
        write_image(folder / f"real{index:02d}{suffix}", index, (97 + index, 81), face=index != 4)
    for index in range(5):
        write_image(root / "gan_a" / f"a{index}.png", 100 + index, (96, 96))
    for index in range(4):
        write_image(root / "gan_b" / f"b{index}.png", 200 + index, (64, 80))
    (root / "real" / "notes.txt").write_text("not an image")
    return {"real": root / "real", "gan_a": root / "gan_a", "gan_b": root / "gan_b"}


@pytest.fixture(scope="module")
def gan_build(sources, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gan_out") / "dataset"
    fakes = {"gan_a": sources["gan_a"], "gan_b": sources["gan_b"]}
    options = {"detector": CentredFaceDetector(), "chunk_size": 3, "progress": False}
    build_gan_faces(sources["real"], fakes, out, compressions=["c23", "c40"], command="gan-test-command", **options)
    return out


def test_gan_build_feeds_the_model(gan_build):
    """Reals (masks all 0) and GAN faces (masks all 1 over the image), two compressions, reach the model as they
    are stored."""
    rows = [row for split in ("train", "validation", "test") for row in load_from_disk(str(gan_build))[split]]
    assert {row["label"] for row in rows} == {0, 1}
    for row in rows:
        centre = np.asarray(row["mask"])[32:96, 32:96] > 0
        assert centre.all() if row["label"] else not centre.any()
    assert_rows_feed_the_model(rows)


def test_split_is_seeded_stratified_and_complete():
    names = [f"img{index:03d}.png" for index in range(70)]
    first = split_images(names, (0.8, 0.1, 0.1), seed=0)
    assert {split: len(values) for split, values in first.items()} == {"train": 56, "validation": 7, "test": 7}
    assert sorted(sum(first.values(), [])) == names
    assert split_images(list(reversed(names)), (0.8, 0.1, 0.1), seed=0) == first
    assert split_images(names, (0.8, 0.1, 0.1), seed=1) != first
    assert {split: len(values) for split, values in split_images(names[:3], (0.8, 0.1, 0.1), 0).items()} == {
        "train": 3,
        "validation": 0,
        "test": 0,
    }


def test_list_images_is_recursive_and_filters_extensions(sources):
    names = list_images(sources["real"])
    assert len(names) == 10 and "notes.txt" not in names
    assert "sub/real00.png" in names and "real03.PNG" not in names and "sub/real03.PNG" in names
    assert names == sorted(names)


def test_rows_labels_masks_and_card(sources, gan_build):
    data = load_from_disk(str(gan_build))
    assert list(data) == ["train", "validation", "test"]
    assert data["train"].features == gan_faces_features(["gan_a", "gan_b"])
    assert data["train"].features["method"].names == ["real", "gan_a", "gan_b"]
    rows = [row for split in data for row in data[split]]
    assert len(rows) == 2 * (9 + 5 + 4)  # two levels; real04 has no face
    assert {row["compression"] for row in rows} == {"c23", "c40"}
    for row in rows:
        assert row["frame"] == 0 and row["mask_source"] == "whole-image"
        assert row["label"] == (0 if row["method"] == 0 else 1)
        mask = np.asarray(row["mask"])
        assert mask.shape == (128, 128)
        assert (mask == (0 if row["label"] == 0 else 255)).mean() > 0.95  # the crop may leave the image: zeros
    real_videos = {row["video"] for row in rows if row["method"] == 0}
    assert real_videos == set(list_images(sources["real"])) - {"real04.png"}
    for split in data:  # the same images in every level, and splits never share an image
        levels = [
            {(row["method"], row["video"]) for row in data[split] if row["compression"] == c} for c in ("c23", "c40")
        ]
        assert levels[0] == levels[1]
    videos = [{(row["method"], row["video"]) for row in data[split]} for split in data]
    assert not (videos[0] & videos[1] or videos[1] & videos[2] or videos[0] & videos[2])
    card = (gan_build / "README.md").read_text()
    assert "gan-test-command" in card
    for split, names in split_images(list_images(sources["real"]), (0.8, 0.1, 0.1), seed=0).items():
        skipped = int("real04.png" in names)
        assert f"| {split} | c40 | real | real | {len(names)} | {len(names) - skipped} | {skipped} |" in card


def test_crop_is_of_the_h264_compressed_image(sources, gan_build):
    data = load_from_disk(str(gan_build))["train"]
    row = next(row for row in data if row["method"] == 1 and row["compression"] == "c40")
    image = load_image(sources["gan_a"] / row["video"])
    compressed = compress_frames([image], 40)[0]
    expected, _, _ = crop_face(compressed, face_box(compressed), face_landmarks(compressed))
    assert np.array_equal(np.asarray(row["image"]), expected)
    uncompressed, _, _ = crop_face(image, face_box(image), face_landmarks(image))
    assert not np.array_equal(np.asarray(row["image"]), uncompressed)


def test_encode_crops_encodes_the_face_crop_not_the_image(sources, tmp_path):
    out = tmp_path / "crops"
    detector = CentredFaceDetector()
    build_gan_faces(sources["real"], {"gan_b": sources["gan_b"]}, out, detector=detector, progress=False,
                    encode_crops=True, compressions=["c40"], split=(1, 0, 0))  # fmt: skip
    data = load_from_disk(str(out))["train"]
    row = next(row for row in data if row["method"] == 1)
    image = load_image(sources["gan_b"] / row["video"])
    crop, _, _ = crop_face(image, face_box(image), face_landmarks(image))
    assert np.array_equal(np.asarray(row["image"]), compress_frames([crop], 40)[0])
    assert not np.array_equal(np.asarray(row["image"]), crop)
    assert "- encode_crops: True" in (out / "README.md").read_text()
    # A checkpoint trained on it encodes its inference crops at the task's CRF; mixing orders is refused.
    assert crop_crf_of_datasets([out], "c40") == 40
    assert crop_crf_of_datasets([sources["real"]], "c23") is None  # a folder without build settings
    with pytest.raises(DatasetError, match="need a task of one compression"):
        crop_crf_of_datasets([out], "any")
    with pytest.raises(DatasetError, match="rebuild them alike"):
        crop_crf_of_datasets([out, sources["real"]], "c40")
    with pytest.raises(PrepareError, match="encode_crops"):  # a resumed build keeps its pipeline order
        build_gan_faces(sources["real"], {"gan_b": sources["gan_b"]}, out, detector=detector, progress=False,
                        compressions=["c40"], split=(1, 0, 0))  # fmt: skip


def test_resume_gives_the_same_rows(sources, gan_build, tmp_path):
    fakes = {"gan_a": sources["gan_a"], "gan_b": sources["gan_b"]}
    options = {"compressions": ["c23", "c40"], "detector": CentredFaceDetector(), "chunk_size": 3, "progress": False}
    out = tmp_path / "again"
    build_gan_faces(sources["real"], fakes, out, **options)
    first_chunk = next(out.glob(".work/*/*/*/*.parquet"))
    first_chunk.unlink()  # as if killed before this chunk was written
    report = build_gan_faces(sources["real"], fakes, out, **options)
    assert report.items - report.done_before == 1
    expected = load_from_disk(str(gan_build))
    assert {s: d.data.table.to_pylist() for s, d in load_from_disk(str(out)).items()} == {
        s: d.data.table.to_pylist() for s, d in expected.items()
    }
    with pytest.raises(PrepareError, match="seed 0 vs 1"):
        build_gan_faces(sources["real"], fakes, out, seed=1, **options)


def test_input_errors(sources, tmp_path):
    detector = CentredFaceDetector()
    with pytest.raises(PrepareError, match=f"{tmp_path / 'none'}: image folder not found"):
        build_gan_faces(tmp_path / "none", {"a": sources["gan_a"]}, tmp_path / "out", detector=detector)
    with pytest.raises(PrepareError, match="not 'real'"):
        build_gan_faces(sources["real"], {"real": sources["gan_a"]}, tmp_path / "out", detector=detector)
    with pytest.raises(PrepareError, match="three fractions"):
        build_gan_faces(
            sources["real"], {"a": sources["gan_a"]}, tmp_path / "out", split=(0.5, 0.2), detector=detector
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="holds no images"):
        build_gan_faces(sources["real"], {"a": tmp_path / "empty"}, tmp_path / "out", detector=detector)


def run_cli(*argv) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="mesofcn")
    add_prepare_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prepare", *map(str, argv)])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = args.handler(args)
    return code, printed.getvalue()


def test_cli_errors(tmp_path):
    with pytest.raises(CommandError, match="image folder not found"):
        run_cli("gan-faces", "--real", tmp_path / "no", "--fake", f"x={tmp_path}", "--out", tmp_path / "out")
    with pytest.raises(SystemExit):
        run_cli("gan-faces", "--real", tmp_path, "--fake", "no-equals-sign", "--out", tmp_path / "out")


# --- real data -------------------------------------------------------------------------------------------


def test_real_gan_faces_build_feeds_the_model(shared_data, tmp_path):
    gan = shared_data / "gan"
    out = tmp_path / "gan"
    folders = {"real": gan / "ffhq", "stylegan3": gan / "stylegan3", "stylegan1": gan / "stylegan1_tiles"}
    folders["pgan"] = gan / "pgan_tiles"
    fakes = [f"{name}={folder}" for name, folder in folders.items() if name != "real"]
    code, printed = run_cli("gan-faces", "--real", folders["real"], "--fake", *fakes, "--out", out, "--quiet")
    assert code == 0 and "images/s" in printed
    data = load_from_disk(str(out))
    counts = {name: len(list_images(folder)) for name, folder in folders.items()}
    rows = [row for split in data for row in data[split]]
    names = data["train"].features["method"].names
    assert names == ["real", "stylegan3", "stylegan1", "pgan"]
    for method, name in enumerate(names):
        found = sum(row["method"] == method for row in rows)
        assert counts[name] - 2 <= found <= counts[name], (name, found)  # at most a couple without a face
    assert len(data["train"]) > len(data["validation"]) > 0 and len(data["test"]) > 0
    batch = [data["train"][index] for index in range(0, len(data["train"]), len(data["train"]) // 6)]
    assert {row["label"] for row in batch} == {0, 1}
    assert_rows_feed_the_model(batch)


def test_real_face_photos_as_the_real_source(shared_data, tmp_path):
    """Photos of all sizes (deep3dfacerecon: 245-1354 px, with landmark .txt files beside them) go through too."""
    real = shared_data / "faces" / "deep3dfacerecon"
    out = tmp_path / "faces"
    report = build_gan_faces(real, {"pgan": shared_data / "gan" / "pgan_tiles"}, out, progress=False)
    total = len(list_images(real)) + len(list_images(shared_data / "gan" / "pgan_tiles"))
    assert report.sampled == total and report.rows == total - report.no_face
    assert report.no_face <= 2
    assert sum(report.split_rows.values()) == report.rows
