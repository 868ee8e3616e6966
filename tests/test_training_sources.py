"""Tests for the training data of the default recipe: labelled media lists, the media builder, donor blends,
down-sampled blends, exclusion lists, the crop scale carried from the datasets into training, and the committed
validation/train lists (split by tool and by person)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk
from PIL import Image

from mesofcn.cli import main as mesofcn
from mesofcn.data.assembly import BUILD_SETTINGS_FILE
from mesofcn.data.blending import aligned_donor, self_blend
from mesofcn.data.donors import Donor, DonorPool, landmark_shape
from mesofcn.data.labelled_media import build_media
from mesofcn.data.media_lists import MediaListError, read_media_list
from mesofcn.data.self_blend import build_self_blend
from mesofcn.data.self_blend_sources import exclude_sources, list_sources
from mesofcn.data.work import PrepareError
from mesofcn.detection.face_detection import RetinaFaceDetector
from mesofcn.detection.image_processing_mesofcn import DEFAULT_CROP_SIZE
from mesofcn.training.data import DatasetError, crop_scale_of_datasets, crop_size_of_datasets
from mesofcn.training.tasks import parse_task
from tests.conftest import astronaut_face, resize_image

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_list(path: Path, rows: list[tuple[str, ...]], header: str = "path,label,group") -> Path:
    path.write_text(header + "\n" + "".join(",".join(row) + "\n" for row in rows))
    return path


# --- labelled media lists -------------------------------------------------------------------------------------


def test_media_list_reads_labels_groups_and_relative_paths(tmp_path):
    labels = write_list(
        tmp_path / "l.csv", [("a.png", "real", ""), ("sub/b.mp4", "FAKE", "swap:x"), ("c.png", "1", "")]
    )
    items = read_media_list(labels)
    assert [(item.name, item.label, item.group) for item in items] == [
        ("a.png", 0, ""),
        ("sub/b.mp4", 1, "swap:x"),
        ("c.png", 1, ""),
    ]
    assert items[1].path == tmp_path / "sub" / "b.mp4"
    assert read_media_list(labels, root="/data")[0].path == Path("/data/a.png")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("path,group\na.png,x\n", "missing column(s) label"),
        ("path,label\n", "no rows"),
        ("path,label\na.png,maybe\n", "line 2: label must be real or fake"),
        ("path,label\n,real\n", "line 2: empty path"),
    ],
)
def test_media_list_errors_name_the_file_and_problem(tmp_path, content, problem):
    labels = tmp_path / "bad.csv"
    labels.write_text(content)
    with pytest.raises(MediaListError, match=re.escape(problem)) as error:
        read_media_list(labels)
    assert str(labels) in str(error.value)
    with pytest.raises(MediaListError, match="cannot read"):
        read_media_list(tmp_path / "absent.csv")


def test_media_list_refuses_a_file_listed_twice(tmp_path):
    labels = write_list(tmp_path / "l.csv", [("a.png", "real", ""), ("./a.png", "fake", "")])
    with pytest.raises(MediaListError, match=re.escape("'./a.png' is listed more than once")):
        read_media_list(labels)


def test_work_keys_stay_inside_the_work_folder():
    from mesofcn.data.labelled_media import work_key

    assert work_key("fakes/a b/c.mp4") == "fakes/a b/c.mp4"
    outside = work_key("../../etc/c.mp4")
    assert outside.startswith("outside/") and outside.endswith("_c.mp4") and ".." not in outside
    assert work_key("/abs/c.mp4") != outside


# --- the committed lists: by tool and by person ---------------------------------------------------------------


def committed(name: str) -> list[dict]:
    with (REPO_ROOT / "benchmarks" / name).open() as handle:
        return list(csv.DictReader(handle))


def test_validation_list_holds_unseen_tools_and_enough_reals():
    validation, train = committed("validation.csv"), committed("train_media.csv")
    groups = {row["group"] for row in validation if row["label"] == "fake"}
    assert {group for group in groups if group.startswith("swap:")} >= {"swap:DFDC", "swap:E4S", "swap:part-swap"}
    assert any(group.startswith("reenact:") for group in groups)
    reals = [row for row in validation if row["label"] == "real"]
    assert sum(row["path"].endswith(".mp4") for row in reals) >= 15
    assert sum(not row["path"].endswith(".mp4") for row in reals) >= 30
    train_groups = {row["group"] for row in train}
    assert not groups & train_groups, "a validation tool is also a training tool"
    assert not {row["path"] for row in validation} & {row["path"] for row in train}


def test_validation_people_appear_in_no_file_that_may_train(shared_data):
    """Every identity the MANIFEST labels in validation.csv appears only in validation.csv or held_out.csv."""
    with (shared_data / "MANIFEST.csv").open() as handle:
        manifest = {row["path"]: row for row in csv.DictReader(handle)}
    never_trained = {row["path"] for row in committed("validation.csv") + committed("held_out.csv")}

    def identities(path: str) -> set[str]:
        return {name.strip().lower() for name in manifest[path]["identity_or_video_id"].split(";") if name.strip()}

    validation_people = set().union(*(identities(row["path"]) for row in committed("validation.csv")))
    trainable = [path for path, row in manifest.items() if path not in never_trained and row["kind"] == "real"]
    shared = {path: identities(path) & validation_people for path in trainable if identities(path) & validation_people}
    assert not shared, f"validation people in files that may train: {shared}"
    assert "obama" in set().union(*(identities(row["path"]) for row in committed("held_out.csv")))


def test_committed_lists_are_what_make_splits_writes(tmp_path, shared_data):
    script = REPO_ROOT / "benchmarks" / "make_splits.py"
    copy = tmp_path / "benchmarks"
    copy.mkdir()
    shutil.copy(script, copy / "make_splits.py")
    import subprocess
    import sys

    subprocess.run([sys.executable, str(copy / "make_splits.py"), "--shared-data", str(shared_data)], check=True)
    for name in ("validation.csv", "held_out.csv", "train_media.csv"):
        assert (copy / name).read_text() == (REPO_ROOT / "benchmarks" / name).read_text(), name


# --- donor blends ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_faces():
    """The astronaut (target) and a donor whose face must be moved, scaled and turned to fit hers: the astronaut
    mirrored (her face is not symmetric), shrunk to 0.7, pasted at (90, 60) of a 300x300 canvas and rotated 20
    degrees; each with the face RetinaFace finds."""
    small = resize_image(np.ascontiguousarray(astronaut_face()[:, ::-1]), 0.7)
    canvas = np.zeros((300, 300, 3), np.uint8)
    canvas[60 : 60 + small.shape[0], 90 : 90 + small.shape[1]] = small
    donor = np.asarray(Image.fromarray(canvas).rotate(20, resample=Image.Resampling.BILINEAR))
    detector = RetinaFaceDetector()
    return [(image, *detector.detect(image)) for image in (astronaut_face(), donor)]


def test_aligned_donor_lands_on_the_target_landmarks_with_its_colours(two_faces):
    (target, target_face), (donor, donor_face) = two_faces
    landmarks = np.asarray(target_face.landmarks, dtype=np.float64).reshape(5, 2)
    region = np.zeros(target.shape[:2], dtype=np.float32)
    x, y, w, h = (int(v) for v in target_face.box)
    region[y : y + h, x : x + w] = 1
    moved = aligned_donor(target, landmarks, donor, donor_face.landmarks, region)
    assert moved.shape == target.shape and moved.dtype == np.float32
    inside = region > 0
    np.testing.assert_allclose(moved[inside].mean(axis=0), target[inside].mean(axis=0), atol=2.0)
    # The donor's face landed on the target's landmarks: the detector finds its landmarks there.
    detector = RetinaFaceDetector()
    found = max(detector.detect(np.clip(moved, 0, 255).astype(np.uint8)), key=lambda face: face.score)
    error = np.abs(np.asarray(found.landmarks).reshape(5, 2) - landmarks).max()
    assert error < 0.15 * w


def test_donor_blend_changes_only_the_masked_pixels_and_is_seeded(two_faces):
    (target, face), (donor, donor_face) = two_faces
    first = self_blend(target, face.landmarks, face.box, seed=5, donor=(donor, donor_face.landmarks))
    again = self_blend(target, face.landmarks, face.box, seed=5, donor=(donor, donor_face.landmarks))
    own = self_blend(target, face.landmarks, face.box, seed=5)
    np.testing.assert_array_equal(first.image, again.image)
    changed = np.any(first.image != target, axis=-1)
    assert changed.any() and not changed[first.mask == 0].any()
    # Another face (the mirrored one) differs from the target far more than a transformed copy of the target.
    inside = first.mask > 0
    donor_change = np.abs(first.image.astype(int) - target)[inside].mean()
    own_change = np.abs(own.image.astype(int) - target)[own.mask > 0].mean()
    assert donor_change > own_change


def test_donor_pool_picks_the_nearest_shape_of_another_source():
    frontal = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], dtype=float)
    turned = np.array([[20, 40], [50, 42], [30, 60], [25, 80], [50, 82]], dtype=float)
    donors = [Donor(np.zeros((8, 8, 3), np.uint8), shape * 2 + 7, source) for shape, source in
              [(frontal, "same.png"), (turned, "b.png"), (frontal, "c.png")]]  # fmt: skip
    pool = DonorPool(donors)
    chosen = pool.choose(frontal, "same.png", np.random.default_rng(0))
    assert chosen.source == "c.png"  # nearest shape, never the target's own source
    np.testing.assert_allclose(landmark_shape(frontal * 3 + 11), landmark_shape(frontal))
    assert DonorPool([]).choose(frontal, "x", np.random.default_rng(0)) is None


def test_downsampled_blends_paste_a_softer_face(two_faces):
    from mesofcn.data.blending import SelfBlendSettings

    image, face = two_faces[0]
    plain = SelfBlendSettings(sharpness_probability=0, full_blend_probability=1.0)
    sharp = self_blend(image, face.landmarks, face.box, seed=1, settings=plain)
    soft = self_blend(
        image, face.landmarks, face.box, seed=1,
        settings=replace(plain, downsample_probability=1.0, downsample_range=(0.3, 0.3)),
    )  # fmt: skip
    np.testing.assert_array_equal(sharp.mask, soft.mask)  # same draws for the mask

    def detail(blend):
        grey = blend.image.astype(np.float32).mean(axis=-1)
        return np.abs(np.diff(grey, axis=1))[blend.weights[:, 1:] > 0.99].mean()  # where the paste is whole

    assert detail(soft) < 0.8 * detail(sharp)


# --- builders ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_folder(tmp_path_factory, face_photo, face_video) -> Path:
    root = tmp_path_factory.mktemp("media")
    shutil.copy(face_video, root / "clip.mp4")
    shutil.copy(face_photo, root / "photo.jpg")
    Image.open(face_photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "mirror.png")
    Image.new("RGB", (64, 64), (30, 30, 30)).save(root / "blank.png")
    return root


def test_media_builder_labels_groups_masks_and_settings(tmp_path, media_folder):
    labels = write_list(tmp_path / "l.csv", [("clip.mp4", "fake", "swap:x"), ("photo.jpg", "real", ""),
                                              ("mirror.png", "fake", ""), ("blank.png", "real", "")])  # fmt: skip
    out = tmp_path / "out"
    report = build_media(labels, out, root=media_folder, every=5, max_frames=3, crop_scale=1.3, progress=False)
    assert report.split_rows == {"train": 5, "validation": 0, "test": 0}  # 3 frames + 2 photos; blank: no face
    train = load_from_disk(str(out))["train"]
    names = train.features["method"].names
    assert names == ["real", "fake", "swap:x"]
    rows = {(row["video"], row["frame"]): row for row in train}
    assert sorted(rows) == [("clip.mp4", 0), ("clip.mp4", 5), ("clip.mp4", 10), ("mirror.png", 0), ("photo.jpg", 0)]
    clip, photo, mirror = rows["clip.mp4", 5], rows["photo.jpg", 0], rows["mirror.png", 0]
    assert (clip["label"], names[clip["method"]], clip["mask"], clip["mask_source"]) == (1, "swap:x", None, "none")
    assert (names[mirror["method"]], mirror["label"]) == ("fake", 1)
    assert photo["label"] == 0 and photo["mask_source"] == "zeros" and not np.asarray(photo["mask"]).any()
    assert photo["image"].size == (128, 128)
    settings = json.loads((out / BUILD_SETTINGS_FILE).read_text())
    assert (settings["builder"], settings["crop_scale"], settings["max_frames"]) == ("media", 1.3, 3)


def test_media_builder_refuses_missing_and_non_media_files(tmp_path, media_folder):
    (media_folder / "notes.txt").write_text("x")
    with pytest.raises(PrepareError, match="gone.mp4: not found"):
        build_media(write_list(tmp_path / "a.csv", [("gone.mp4", "fake", "")]), tmp_path / "o1", root=media_folder)
    with pytest.raises(PrepareError, match="neither a video nor an image"):
        build_media(write_list(tmp_path / "b.csv", [("notes.txt", "real", "")]), tmp_path / "o2", root=media_folder)


def test_prepare_media_cli_and_one_line_errors(tmp_path, media_folder, capsys):
    labels = write_list(tmp_path / "l.csv", [("photo.jpg", "real", ""), ("mirror.png", "fake", "t")])
    out = tmp_path / "cli"
    argv = ["prepare", "media", "--labels", str(labels), "--root", str(media_folder), "--out", str(out), "--quiet"]
    assert mesofcn([*argv, "--split-name", "validation"]) == 0
    assert len(load_from_disk(str(out))["validation"]) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("path\nx\n")
    assert mesofcn(["prepare", "media", "--labels", str(bad), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert f"{bad}: missing column(s) label" in capsys.readouterr().err


def test_self_blend_excludes_listed_files_and_makes_donor_blends(tmp_path, media_folder, face_photo, capsys):
    exclude = write_list(tmp_path / "validation.csv", [("mirror.png", "real", "")])
    sources = exclude_sources(list_sources([media_folder]), [media_folder / "mirror.png"])
    assert sorted(source.name for source in sources) == ["blank.png", "clip.mp4", "photo.jpg"]
    donors = tmp_path / "donors"
    donors.mkdir()
    Image.open(face_photo).resize((180, 180)).save(donors / "other.png")
    out = tmp_path / "blends"
    argv = ["prepare", "self-blend", "--real", str(media_folder), "--out", str(out), "--split", "1,0,0"]
    argv += ["--donors", str(donors), "--donor-probability", "1", "--max-frames", "2", "--every", "5", "--quiet"]
    argv += ["--exclude", str(exclude), "--exclude-root", str(media_folder), "--crop-scale", "1.3"]
    assert mesofcn(argv) == 0
    train = load_from_disk(str(out))["train"]
    names = train.features["method"].names
    assert {row["video"] for row in train} == {"clip.mp4", "photo.jpg"}  # mirror excluded, blank has no face
    assert sorted(names[row["method"]] for row in train if row["label"] == 1) == ["donor-blend"] * 3
    settings = json.loads((out / BUILD_SETTINGS_FILE).read_text())
    assert (settings["donor_probability"], settings["donor_images"], settings["excluded_files"]) == (1.0, 1, 1)
    assert parse_task("sbi-c23-self").matches_fake_method("donor-blend")
    wrong_root = [*argv, "--exclude-root", str(tmp_path), "--out", str(tmp_path / "wrong")]  # the last one counts
    assert mesofcn(wrong_root) == 2
    assert "mirror.png: listed to exclude but not found" in capsys.readouterr().err
    with pytest.raises(PrepareError, match="give --donors"):
        build_self_blend([media_folder], tmp_path / "none", donor_probability=0.5, progress=False)


def test_training_crops_as_its_datasets_were_cropped(tmp_path):
    folders = []
    for index, scale in enumerate((1.3, 1.3, 1.1)):
        folder = tmp_path / f"d{index}"
        folder.mkdir()
        (folder / BUILD_SETTINGS_FILE).write_text(json.dumps({"crop_scale": scale}))
        folders.append(folder)
    assert crop_scale_of_datasets(folders[:2]) == 1.3
    assert crop_scale_of_datasets([tmp_path / "old"]) == 1.1  # built before settings were saved
    with pytest.raises(DatasetError, match="different crop_scale values"):
        crop_scale_of_datasets(folders)
    assert crop_size_of_datasets(folders) == DEFAULT_CROP_SIZE  # no size saved: the processor's
    (folders[0] / BUILD_SETTINGS_FILE).write_text(json.dumps({"crop_scale": 1.3, "size": 96}))
    with pytest.raises(DatasetError, match=r"different size values \(.*d0: 96, .*d1: 128"):
        crop_size_of_datasets(folders)
