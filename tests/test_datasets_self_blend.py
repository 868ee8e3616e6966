"""Tests for the self-blend builder: real / pseudo-fake pairs that differ only by the blend, masks, splits by
source and identity, resume, the CLI, and a real-data smoke build."""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk
from PIL import Image

from mesofcn.cli.prepare import add_prepare_parser
from mesofcn.data.self_blend import FAKE_MASK_SOURCE, REAL_MASK_SOURCE, blend_seed, build_self_blend
from mesofcn.data.self_blend_sources import list_sources, split_sources
from mesofcn.data.work import PrepareError
from tests.face_datasets import assert_rows_feed_the_model

SPLIT = (0.5, 0.25, 0.25)


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory, face_photo, face_video) -> Path:
    """A video (20 frames: 4 sampled at every 5), two identity folders of photos and one loose photo."""
    root = tmp_path_factory.mktemp("self_blend_sources") / "real"
    (root / "clips").mkdir(parents=True)
    shutil.copy(face_video, root / "clips" / "face.mp4")
    photo = Image.open(face_photo).convert("RGB")
    for name, image in {
        "people/Alice/a.jpg": photo,
        "people/Alice/b.png": photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "people/Bob/c.png": photo.resize((200, 200)),
        "loose.png": photo.crop((10, 10, 240, 240)),
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_folder) -> Path:
    out = tmp_path_factory.mktemp("self_blend_out") / "dataset"
    build_self_blend([real_folder], out, compressions=["c23"], every=5, split=SPLIT, seed=3, progress=False)
    return out


def rows_of(path: Path) -> list[dict]:
    dataset = load_from_disk(str(path))
    return [dict(row, split=split) for split in ("train", "validation", "test") for row in dataset[split]]


def test_list_and_split_sources_keep_identities_together(real_folder: Path) -> None:
    sources = list_sources([real_folder])
    assert [source.name for source in sources] == [
        "clips/face.mp4",
        "loose.png",
        "people/Alice/a.jpg",
        "people/Alice/b.png",
        "people/Bob/c.png",
    ]
    assert {source.kind for source in sources if source.name.endswith(".mp4")} == {"video"}
    for seed in range(6):
        splits = split_sources(sources, SPLIT, seed)
        assert sorted(source.name for members in splits.values() for source in members) == sorted(
            source.name for source in sources
        )
        alice = {split for split, members in splits.items() for source in members if "Alice" in source.name}
        assert len(alice) == 1
    assert split_sources(sources, SPLIT, 1) == split_sources(sources, SPLIT, 1)


def test_list_sources_rejects_bad_inputs(tmp_path: Path, real_folder: Path) -> None:
    with pytest.raises(PrepareError, match="not found"):
        list_sources([tmp_path / "missing"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PrepareError, match="neither a video nor an image"):
        list_sources([tmp_path / "notes.txt"])
    with pytest.raises(PrepareError, match="holds no videos or images"):
        list_sources([tmp_path])
    (tmp_path / "other").mkdir()
    shutil.copy(real_folder / "loose.png", tmp_path / "other" / "loose.png")
    with pytest.raises(PrepareError, match="both named"):
        list_sources([real_folder / "loose.png", tmp_path / "other"])
    assert len(list_sources([real_folder / "loose.png", real_folder / "loose.png"])) == 1
    direct = list_sources([real_folder / "people" / "Alice"])
    assert [source.group for source in direct] == ["image/a.jpg", "image/b.png"]


def test_blend_seed_depends_on_seed_source_and_frame() -> None:
    seeds = {blend_seed(0, "a.mp4", 0), blend_seed(0, "a.mp4", 5), blend_seed(1, "a.mp4", 0), blend_seed(0, "b", 0)}
    assert len(seeds) == 4
    assert blend_seed(0, "a.mp4", 5) == blend_seed(0, "a.mp4", 5)


def test_rows_pair_reals_with_their_blends(built: Path) -> None:
    rows = rows_of(built)
    assert len(rows) == 2 * (4 + 4)  # 4 sampled video frames + 4 images, a real and a fake row each
    pairs: dict[tuple[str, int], dict[int, dict]] = {}
    for row in rows:
        pairs.setdefault((row["video"], row["frame"]), {})[row["label"]] = row
    assert sorted(frame for video, frame in pairs if video == "clips/face.mp4") == [0, 5, 10, 15]
    for pair in pairs.values():
        real, fake = pair[0], pair[1]
        assert (real["method"], fake["method"]) == (0, 1)
        assert (real["mask_source"], fake["mask_source"]) == (REAL_MASK_SOURCE, FAKE_MASK_SOURCE)
        assert real["split"] == fake["split"] and real["box"] == fake["box"] and real["compression"] == "c23"
        assert real["detector"].startswith("retinaface") and real["detector_score"] > 0.5
        real_mask, fake_mask = np.asarray(real["mask"]), np.asarray(fake["mask"]) > 0
        assert real_mask.max() == 0 and 0.05 < fake_mask.mean() < 0.95
        difference = np.abs(np.asarray(real["image"], dtype=np.float32) - np.asarray(fake["image"], np.float32))
        outside, inside = difference[~fake_mask].mean(), difference[fake_mask].mean()
        assert outside < 4.0, "outside the blend mask the two compressed versions should nearly agree"
        assert inside > 1.5 * outside


def test_lossless_pair_differs_only_inside_the_mask(tmp_path: Path, face_photo: Path) -> None:
    """With "raw" (lossless H.264) only the crop's bilinear resampling at the mask edge can leak the blend."""
    build_self_blend([face_photo], tmp_path / "out", compressions=["raw"], split=(1, 0, 0), progress=False)
    real, fake = load_from_disk(str(tmp_path / "out"))["train"]
    mask = np.asarray(fake["mask"]) > 0
    difference = np.abs(np.asarray(real["image"], dtype=np.float32) - np.asarray(fake["image"], np.float32))
    assert difference[~mask].mean() < 0.5 and difference[mask].mean() > 2.0


def test_split_by_source(built: Path) -> None:
    splits: dict[str, set[str]] = {}
    for row in rows_of(built):
        splits.setdefault(row["video"], set()).add(row["split"])
    assert all(len(found) == 1 for found in splits.values())
    assert splits["people/Alice/a.jpg"] == splits["people/Alice/b.png"]


def test_resume_redoes_only_the_missing_source(built: Path, real_folder: Path) -> None:
    """Deleting the video's finished work file (as if killed before it) redoes that item alone, identically."""
    before = rows_of(built)
    [video_item] = (built / ".work").rglob("face.mp4.parquet")
    video_item.unlink()
    report = build_self_blend([real_folder], built, compressions=["c23"], every=5, split=SPLIT, seed=3, progress=False)
    assert (report.items, report.done_before, report.videos, report.sampled) == (5, 4, 1, 4)
    after = rows_of(built)
    assert [(r["video"], r["frame"], r["label"], r["split"]) for r in after] == [
        (r["video"], r["frame"], r["label"], r["split"]) for r in before
    ]
    for new, old in zip(after, before, strict=True):
        assert np.array_equal(np.asarray(new["image"]), np.asarray(old["image"]))
        assert np.array_equal(np.asarray(new["mask"]), np.asarray(old["mask"]))


def test_dataset_feeds_the_model(built: Path) -> None:
    """Reals (all-zero masks) and blends (masks of the pasted region) reach the model as they are stored."""
    rows = rows_of(built)[:6]
    assert sorted(row["label"] for row in rows) == [0, 0, 0, 1, 1, 1]
    assert_rows_feed_the_model(rows)
    for row in rows:
        mask = np.asarray(row["mask"])
        assert mask.any() == bool(row["label"]) and not mask.all()


def test_cli_self_blend(tmp_path: Path, face_photo: Path) -> None:
    parser = argparse.ArgumentParser(prog="mesofcn")
    add_prepare_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["prepare", "self-blend", "--real", str(face_photo), "--compression", "c40", "--seed", "2"]
        + ["--split", "1,0,0", "--out", str(tmp_path / "out"), "--quiet"]
    )
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert args.handler(args) == 0
    assert "self-blend: 0 videos, 1 sampled frames" in printed.getvalue()
    dataset = load_from_disk(str(tmp_path / "out"))
    assert dataset["train"]["compression"] == ["c40", "c40"]
    assert dataset["train"]["video"] == [face_photo.name] * 2
    assert "mesofcn prepare self-blend --real" in (tmp_path / "out" / "README.md").read_text()


def test_real_identity_folder_smoke(tmp_path: Path, shared_data: Path) -> None:
    folder = shared_data / "faces" / "krasserm_lfw" / "Tony_Blair"
    report = build_self_blend([folder], tmp_path / "out", progress=False)
    assert report.sampled == 10 and report.rows == 2 * (10 - report.no_face) and report.no_face <= 1
    dataset = load_from_disk(str(tmp_path / "out"))
    assert sum(report.split_rows.values()) == report.rows
    assert sorted(set(dataset["train"]["label"])) == [0, 1]
