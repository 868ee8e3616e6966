"""Tests for the FaceForensics++ builder: official splits, masks, resumability, shards, and the real ffpp_mini.

Most tests run on a tiny FF++-layout tree encoded here with FF++'s own H.264 settings, with a deterministic face
detector double (a fixed box, no face where a frame's marker block is dark). The kill-and-resume test kills a
real builder process with SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_from_disk

from mesofcn import MesoFCNImageProcessor
from mesofcn.cli import CommandError
from mesofcn.cli.prepare import add_prepare_parser
from mesofcn.data.assembly import merge_prepared
from mesofcn.data.faceforensics import (
    FFPP_FEATURES,
    build_faceforensics,
    load_official_splits,
    official_split,
)
from mesofcn.data.faceforensics_masks import difference_mask
from mesofcn.data.rows import MASK_SOURCES
from mesofcn.data.settings import FFPP_METHOD_NAMES, parse_shard
from mesofcn.data.work import PrepareError
from mesofcn.detection.compression import encode_video
from mesofcn.detection.face_detection import DetectedFace
from mesofcn.detection.image_processing_mesofcn import crop_face, face_crop_window
from mesofcn.detection.video import FrameSampling, iter_video_frames, probe_video
from tests.face_datasets import assert_rows_feed_the_model

REPO = Path(__file__).resolve().parents[1]

# --- the synthetic FF++ tree --------------------------------------------------------------------------------

HEIGHT, WIDTH, NUM_FRAMES, EVERY = 120, 160, 12, 3
SAMPLED = list(range(0, NUM_FRAMES, EVERY))  # 0, 3, 6, 9
BOX = (40.0, 20.0, 80.0, 80.0)
LANDMARKS = np.array([[65, 50], [95, 50], [80, 65], [68, 82], [92, 82]], dtype=np.float32)
MARKER = (slice(0, 8), slice(0, 8))  # top-left block: white = a face, black = no face in this frame
SQUARE_SIDE, SQUARE_STEP = 32, 4
DISK_CENTER, DISK_RADIUS = (80, 60), 22


class FixedFaceDetector:
    """Test double: one face at BOX with LANDMARKS unless the frame's marker block is dark; ``delay`` seconds per
    call make a build slow enough to be killed part-way."""

    name = "fixed-box-test"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        if self.delay:
            time.sleep(self.delay)
        if image[MARKER].mean() < 128:
            return []
        return [DetectedFace(box=BOX, landmarks=LANDMARKS, score=0.97)]


def scene(seed: int) -> np.ndarray:
    """A smooth random background with the marker block white."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (9, 9), 0)
    image[MARKER] = 255
    return image


def square_mask(index: int) -> np.ndarray:
    """The 0/1 region Deepfakes "manipulates" in frame ``index``: a square moving right 4 px per frame."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    left = 44 + SQUARE_STEP * index
    mask[40 : 40 + SQUARE_SIDE, left : left + SQUARE_SIDE] = 1
    return mask


def disk_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    cv2.circle(mask, DISK_CENTER, DISK_RADIUS, 1, thickness=-1)
    return mask


def original_frames(seed: int, no_face: tuple[int, ...] = ()) -> list[np.ndarray]:
    frames = []
    for index in range(NUM_FRAMES):
        frame = np.roll(scene(seed), index, axis=1)  # a slow pan, so frames differ
        frame[MARKER] = 0 if index in no_face else 255
        frames.append(frame)
    return frames


def square_fake(originals: list[np.ndarray]) -> list[np.ndarray]:
    fakes = []
    for index, frame in enumerate(originals):
        fake = frame.copy()
        fake[square_mask(index) == 1] = (250, 20, 240)
        fake[MARKER] = 255
        fakes.append(fake)
    return fakes


def disk_fake(originals: list[np.ndarray]) -> list[np.ndarray]:
    fakes = []
    for frame in originals:
        fake = frame.astype(np.int16)
        fake[disk_mask() == 1] += 70
        fake = np.clip(fake, 0, 255).astype(np.uint8)
        fake[MARKER] = 255
        fakes.append(fake)
    return fakes


def pick_ids() -> dict[str, tuple[str, str]]:
    """One official pair per split."""
    return {split: pairs[0] for split, pairs in load_official_splits().items()}


def write_tree(root: Path, level: str = "c23") -> dict[str, str]:
    """An FF++ layout: originals a (train; frame 6 has no face), c (validation), e (test); Deepfakes a_b with a
    mask video, c_d without one (difference mask); Face2Face b_a (its original b is absent: no mask), e_f
    (difference), and a_c, whose ids are in different splits (skipped). Returns the names used."""
    (a, b), (c, d), (e, f) = pick_ids().values()
    originals = root / "original_sequences/youtube" / level / "videos"
    deepfakes = root / "manipulated_sequences/Deepfakes" / level / "videos"
    face2face = root / "manipulated_sequences/Face2Face" / level / "videos"
    masks = root / "manipulated_sequences/Deepfakes/masks/videos"
    for folder in (originals, deepfakes, face2face, masks):
        folder.mkdir(parents=True, exist_ok=True)
    frames = {a: original_frames(1, no_face=(6,)), c: original_frames(2), e: original_frames(3)}
    for video_id, clip in frames.items():
        encode_video(clip, originals / f"{video_id}.mp4", level, fps=25)
    encode_video(square_fake(frames[a]), deepfakes / f"{a}_{b}.mp4", level, fps=25)
    mask_clip = [np.repeat(square_mask(index)[:, :, None] * 255, 3, axis=2) for index in range(NUM_FRAMES)]
    encode_video(mask_clip, masks / f"{a}_{b}.mp4", "c23", fps=25)
    encode_video(disk_fake(frames[c]), deepfakes / f"{c}_{d}.mp4", level, fps=25)
    encode_video(disk_fake(original_frames(4)), face2face / f"{b}_{a}.mp4", level, fps=25)
    encode_video(disk_fake(frames[e]), face2face / f"{e}_{f}.mp4", level, fps=25)
    encode_video(disk_fake(frames[c]), face2face / f"{a}_{c}.mp4", level, fps=25)
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("ffpp")
    return root, write_tree(root)


def build(root: Path, out: Path, **kwargs):
    options = {"methods": ["Deepfakes", "Face2Face"], "every": EVERY, "detector": FixedFaceDetector()}
    return build_faceforensics(root, out, progress=False, **{**options, **kwargs})


@pytest.fixture(scope="module")
def clean_build(tree, tmp_path_factory) -> Path:
    root, _ = tree
    out = tmp_path_factory.mktemp("clean") / "dataset"
    build(root, out)
    return out


def rows_of(out: Path) -> dict[str, list[dict]]:
    """Every split's rows in Arrow storage form (PNG bytes, class ids), for exact comparisons."""
    data = load_from_disk(str(out))
    return {split: data[split].data.table.to_pylist() for split in data}


def png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


# --- official splits ---------------------------------------------------------------------------------------


def test_official_split_lists():
    splits = load_official_splits()
    ids = {split: [video_id for pair in pairs for video_id in pair] for split, pairs in splits.items()}
    assert {split: len(values) for split, values in ids.items()} == {"train": 720, "validation": 140, "test": 140}
    assert all(len(set(values)) == len(values) for values in ids.values())
    assert set(ids["train"]).isdisjoint(ids["validation"]) and set(ids["validation"]).isdisjoint(ids["test"])
    assert set(ids["train"]).isdisjoint(ids["test"])
    assert set().union(*ids.values()) == {f"{number:03d}" for number in range(1000)}
    assert (REPO / "src/mesofcn/data/splits/LICENSE").read_text().count("MIT") >= 1


def test_official_split_of_video_names():
    (a, b), (c, _), _ = pick_ids().values()
    assert official_split(a) == official_split(f"{a}_{b}") == official_split(f"{b}_{a}") == "train"
    assert official_split(c) == "validation"
    assert official_split(f"{a}_{c}") is None
    assert official_split("12_34") is None and official_split("abc") is None


# --- difference masks ----------------------------------------------------------------------------------------


def test_difference_mask_covers_the_change_inside_the_face_only():
    rng = np.random.default_rng(0)
    original = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (9, 9), 0)
    noise = rng.integers(-4, 5, original.shape)  # compression-like noise everywhere
    fake = np.clip(original.astype(np.int16) + noise, 0, 255)
    fake[disk_mask() == 1] += 60
    fake[5:25, 130:155] += 80  # a change far outside the face box: must not be in the mask
    fake = np.clip(fake, 0, 255).astype(np.uint8)
    mask = difference_mask(fake, original, BOX)
    disk = disk_mask() == 1
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert mask[disk].mean() > 0.95
    assert mask[~disk].mean() < 0.02
    assert mask[5:25, 130:155].sum() == 0


# --- the synthetic build ---------------------------------------------------------------------------------


def test_rows_labels_splits_and_card(tree, clean_build):
    _, ids = tree
    a, b, c, d, e, f = (ids[key] for key in "abcdef")
    data = load_from_disk(str(clean_build))
    assert list(data) == ["train", "validation", "test"]
    assert all(data[split].features == FFPP_FEATURES for split in data)
    videos = {split: sorted({(row["method"], row["video"]) for row in data[split]}) for split in data}
    names = FFPP_METHOD_NAMES
    assert videos["train"] == sorted([(0, a), (names.index("Deepfakes"), f"{a}_{b}"), (2, f"{b}_{a}")])
    assert videos["validation"] == sorted([(0, c), (1, f"{c}_{d}")])
    assert videos["test"] == sorted([(0, e), (2, f"{e}_{f}")])
    assert (len(data["train"]), len(data["validation"]), len(data["test"])) == (11, 8, 8)
    train = data["train"]
    assert [row["frame"] for row in train if row["video"] == a] == [0, 3, 9]  # frame 6 has no face
    assert all(row["frame"] in SAMPLED for split in data for row in data[split])
    for split in data:
        for row in data[split]:
            assert row["label"] == (0 if row["method"] == 0 else 1)
            assert row["compression"] == "c23" and row["detector"] == "fixed-box-test"
            assert row["box"] == list(BOX) and row["landmarks"] == LANDMARKS.reshape(-1).tolist()
            assert row["detector_score"] == pytest.approx(0.97)
            assert row["image"].size == (128, 128) and row["image"].mode == "RGB"
    card = (clean_build / "README.md").read_text()
    assert "| train | c23 | pristine | real | 1 | 4 | 3 | 1 |" in card
    assert "| test | c23 | Face2Face | fake | 1 | 4 | 4 | 0 |" in card
    assert f"{a}_{c}.mp4: skipped" in card
    assert "build_faceforensics(" in card


def test_crops_are_the_processor_crops_of_the_decoded_frames(tree, clean_build):
    root, ids = tree
    path = root / f"manipulated_sequences/Deepfakes/c23/videos/{ids['a']}_{ids['b']}.mp4"
    frames = {frame.index: frame.image for frame in iter_video_frames(path, FrameSampling(every=EVERY))}
    rows = [row for row in rows_of(clean_build)["train"] if row["video"] == f"{ids['a']}_{ids['b']}"]
    assert [row["frame"] for row in rows] == SAMPLED
    for row in rows:
        expected, _, _ = crop_face(frames[row["frame"]], BOX, LANDMARKS)
        assert np.array_equal(png(row["image"]["bytes"])[:, :, ::-1], expected)


def test_masks_ffpp_aligned_difference_pristine_and_none(tree, clean_build):
    _, ids = tree
    rows = [row for split in rows_of(clean_build).values() for row in split]
    by_video = {}
    for row in rows:
        by_video.setdefault(row["video"], []).append(row)
    for row in by_video[f"{ids['a']}_{ids['b']}"]:  # FF++ mask video, frame-aligned
        assert row["mask_source"] == "ffpp"
        stored = png(row["mask"]["bytes"])
        assert stored.ndim == 2 and set(np.unique(stored)) <= {0, 255}
        expected = crop_face(np.zeros((HEIGHT, WIDTH, 3), np.uint8), BOX, LANDMARKS, square_mask(row["frame"]))[1]
        neighbour = crop_face(np.zeros((HEIGHT, WIDTH, 3), np.uint8), BOX, LANDMARKS, square_mask(row["frame"] + 1))[1]
        assert iou(stored > 0, expected == 1) > 0.9 > iou(stored > 0, neighbour == 1)
    disk_crop = crop_face(np.zeros((HEIGHT, WIDTH, 3), np.uint8), BOX, LANDMARKS, disk_mask())[1] == 1
    for video in (f"{ids['c']}_{ids['d']}", f"{ids['e']}_{ids['f']}"):  # no mask video: difference
        for row in by_video[video]:
            assert row["mask_source"] == "difference"
            assert iou(png(row["mask"]["bytes"]) > 0, disk_crop) > 0.8
    for row in by_video[f"{ids['b']}_{ids['a']}"]:  # neither mask video nor original
        assert row["mask_source"] == "none" and row["mask"] is None
    for video in (ids["a"], ids["c"], ids["e"]):
        for row in by_video[video]:
            assert row["mask_source"] == "ffpp" and not png(row["mask"]["bytes"]).any()
    assert {row["mask_source"] for row in rows} <= set(MASK_SOURCES)


def iou(first: np.ndarray, second: np.ndarray) -> float:
    return float((first & second).sum() / max((first | second).sum(), 1))


def test_dataset_feeds_the_model(clean_build):
    data = load_from_disk(str(clean_build))["train"]
    batch = [data[index] for index in range(len(data))]
    encoded = MesoFCNImageProcessor()(
        [row["image"] for row in batch], masks=[row["mask"] for row in batch], return_tensors="pt"
    )
    assert encoded["mask_labels"].shape == (len(batch), 128, 128)
    none_rows = [index for index, row in enumerate(batch) if row["mask"] is None]
    assert none_rows and all((encoded["mask_labels"][index] == -100).all() for index in none_rows)
    assert_rows_feed_the_model(batch)


# --- resumability, processes, shards -------------------------------------------------------------------------

KILLED_BUILD = """
import sys
from tests.test_datasets_faceforensics import FixedFaceDetector
from mesofcn.data.faceforensics import build_faceforensics
build_faceforensics(sys.argv[1], sys.argv[2], methods=["Deepfakes", "Face2Face"], every=3,
                    detector=FixedFaceDetector(delay=0.25), progress=False)
"""


def test_killed_build_resumes_to_the_same_rows(tree, clean_build, tmp_path):
    root, _ = tree
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(root), str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".work/*/*/*/*.parquet")):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no work item finished in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = list(out.glob(".work/*/*/*/*.parquet"))
    assert 1 <= len(finished) < 7 and not (out / "dataset_dict.json").exists()
    (out / ".work/train/c23/Deepfakes/leftover.parquet.123.tmp").parent.mkdir(parents=True, exist_ok=True)
    (out / ".work/train/c23/Deepfakes/leftover.parquet.123.tmp").write_bytes(b"half a file")
    (out / ".staging").mkdir()
    report = build(root, out)
    assert report.done_before == len(finished)
    assert rows_of(out) == rows_of(clean_build)
    assert not list(out.rglob("*.tmp")) and not (out / ".staging").exists()
    again = build(root, out)  # a finished build reruns nothing
    assert (again.done_before, again.sampled) == (7, 0)
    assert rows_of(out) == rows_of(clean_build)


def test_num_proc_and_shards_give_the_same_rows(tree, clean_build, tmp_path):
    root, _ = tree
    parallel = tmp_path / "parallel"
    build(root, parallel, num_proc=2)
    assert rows_of(parallel) == rows_of(clean_build)
    shards = [tmp_path / f"shard{index}" for index in range(2)]
    for index, shard in enumerate(shards):
        report = build(root, shard, shard=(index, 2))
        assert report.dataset is None and not (shard / "dataset_dict.json").exists()
    with pytest.raises(PrepareError, match="0/n .. n-1/n"):
        merge_prepared(shards[:1], tmp_path / "partial", progress=False)
    merged = merge_prepared(shards, tmp_path / "merged", command="merge-test", progress=False)
    assert rows_of(tmp_path / "merged") == rows_of(clean_build)
    assert merged.split_rows == {"train": 11, "validation": 8, "test": 8}
    card = (tmp_path / "merged" / "README.md").read_text()
    assert "merge-test" in card and "| train | c23 | pristine | real | 1 | 4 | 3 | 1 |" in card


def test_resume_with_other_settings_is_refused(tree, clean_build, tmp_path):
    root, _ = tree
    with pytest.raises(PrepareError, match="every 3 vs 2"):
        build(root, clean_build, every=2)
    with pytest.raises(PrepareError, match="holds shard none"):
        build(root, clean_build, shard=(0, 2))
    (tmp_path / "user_file.txt").write_text("keep me")
    with pytest.raises(PrepareError, match="not a mesofcn prepare output"):
        build(root, tmp_path)
    unfinished = tmp_path / "unfinished"
    (unfinished / ".work").mkdir(parents=True)
    (unfinished / ".work" / "plan.json").write_text(
        json.dumps({**json.loads((clean_build / ".work/plan.json").read_text()), "shard": [0, 1]})
    )
    with pytest.raises(PrepareError, match="unfinished, 7 of 7 work items missing"):
        merge_prepared([unfinished], tmp_path / "merged", progress=False)


def test_derives_levels_from_raw_videos(tmp_path):
    root = tmp_path / "ffpp"
    ids = write_tree(root, level="raw")
    out = tmp_path / "dataset"
    build(root, out, compressions=["raw", "c40"], methods=["Deepfakes"])
    data = load_from_disk(str(out))["train"]
    assert {row["compression"] for row in data} == {"raw", "c40"}
    raw = {(row["video"], row["frame"]): np.asarray(row["image"]) for row in data if row["compression"] == "raw"}
    c40 = {(row["video"], row["frame"]): np.asarray(row["image"]) for row in data if row["compression"] == "c40"}
    assert raw.keys() == c40.keys() and len(raw) == 3 + 4
    frames = original_frames(1, no_face=(6,))
    for frame in (0, 3, 9):  # raw is lossless: the crop of the very frame that was encoded
        assert np.array_equal(raw[(ids["a"], frame)], crop_face(frames[frame], BOX, LANDMARKS)[0])
    errors = [np.abs(raw[key].astype(int) - c40[key]).mean() for key in raw]
    assert min(errors) > 1
    card = (out / "README.md").read_text()
    assert "c40: originals derived from raw/" in card and "c40: Deepfakes derived from raw/" in card
    assert not list((out / ".work").rglob("*.tmp"))


def test_shorter_original_is_matched_by_index_and_noted(tmp_path):
    (a, b), _, _ = pick_ids().values()
    root = tmp_path / "ffpp"
    originals = root / "original_sequences/youtube/c23/videos"
    fakes = root / "manipulated_sequences/Face2Face/c23/videos"
    originals.mkdir(parents=True)
    fakes.mkdir(parents=True)
    frames = original_frames(5)
    encode_video(frames[:8], originals / f"{a}.mp4", "c23")
    encode_video(disk_fake(frames), fakes / f"{a}_{b}.mp4", "c23")
    out = tmp_path / "dataset"
    build(root, out, methods=["Face2Face"])
    rows = [row for row in load_from_disk(str(out))["train"] if row["video"] == f"{a}_{b}"]
    assert [(row["frame"], row["mask_source"]) for row in rows] == [
        (0, "difference"),
        (3, "difference"),
        (6, "difference"),
        (9, "none"),
    ]
    card = (out / "README.md").read_text()
    assert f"c23/Face2Face/{a}_{b}: the video has 12 frames, its original 8" in card
    assert "frames from 9 on have no mask" in card


def test_input_errors_name_the_path(tree, tmp_path):
    root, _ = tree
    with pytest.raises(PrepareError, match=f"{tmp_path / 'nowhere'}: FF\\+\\+ root not found"):
        build(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="not an FF\\+\\+ download"):
        build(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(PrepareError, match="FaceSwap/c23/videos: not found"):
        build(root, tmp_path / "out", methods=["FaceSwap"])
    with pytest.raises(PrepareError, match="unknown methods"):
        build(root, tmp_path / "out", methods=["Morphing"])
    with pytest.raises(ValueError, match="i/n"):
        parse_shard("2")
    with pytest.raises(ValueError, match="0 <= i < n"):
        parse_shard("2/2")


# --- the command line ---------------------------------------------------------------------------------------


def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesofcn")
    add_prepare_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def run_cli(*argv: str) -> int:
    args = prepare_parser().parse_args(["prepare", *map(str, argv)])
    return args.handler(args)


def test_cli_reports_a_missing_root_in_one_line(tmp_path):
    with pytest.raises(CommandError, match=f"{tmp_path / 'missing'}: FF\\+\\+ root not found"):
        run_cli("faceforensics", "--root", tmp_path / "missing", "--out", tmp_path / "out")
    with pytest.raises(SystemExit):
        prepare_parser().parse_args(["prepare", "faceforensics", "--root", "r", "--out", "o", "--methods", "Morph"])
    args = prepare_parser().parse_args(
        ["prepare", "faceforensics", "--root", "r", "--out", "o", "--compression", "c0"]
    )
    assert args.compression == ["raw"] and args.every == 5 and args.methods == ["Deepfakes", "Face2Face", "FaceSwap"]


# --- real data: ffpp_mini --------------------------------------------------------------------------------------

REAL_EVERY = 25


@pytest.fixture(scope="module")
def ffpp_mini_build(shared_data, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ffpp_mini") / "dataset"
    root = shared_data / "ffpp_mini"
    methods = ["Deepfakes", "Face2Face", "NeuralTextures"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = run_cli(
            *("faceforensics", "--root", root, "--compression", "c23", "--methods", *methods),
            *("--every", REAL_EVERY, "--out", out, "--quiet"),
        )
    assert code == 0
    return out, printed.getvalue()


def test_ffpp_mini_rows_splits_and_masks(ffpp_mini_build, shared_data):
    out, printed = ffpp_mini_build
    assert "5 videos" in printed and "frames/s" in printed
    data = load_from_disk(str(out))
    videos = {split: {row["video"] for row in data[split]} for split in data}
    assert videos["train"] == {"519", "519_515", "750_743"}
    assert videos["validation"] == {"004", "004_982"}
    assert len(data["test"]) == 0
    stats = {}
    for item in json.loads((out / ".work/plan.json").read_text())["items"]:
        metadata = pq.read_schema(out / ".work" / item["split"] / f"{item['key']}.parquet").metadata
        stats[item["key"].split("/")[-1]] = json.loads(metadata[b"mesofcn"])["stats"]
    paths = {path.stem: path for path in (shared_data / "ffpp_mini").rglob("*.mp4")}
    for split in data:
        for video in videos[split]:
            rows = [row for row in data[split] if row["video"] == video]
            sampled = len(range(0, probe_video(paths[video]).num_frames, REAL_EVERY))
            assert stats[video]["sampled"] == sampled
            assert len(rows) == sampled - stats[video]["no_face"]
            assert [row["frame"] for row in rows] == sorted(row["frame"] for row in rows)
    rows_750 = [row for row in data["train"] if row["video"] == "750_743"]
    assert rows_750 and all(row["mask"] is None and row["mask_source"] == "none" for row in rows_750)
    card = (out / "README.md").read_text()
    assert "750_743: no mask video and no original" in card
    assert "004 (pristine) in c23/ was encoded at CRF 40" in card


def test_ffpp_mini_difference_masks_cover_the_face_not_the_background(ffpp_mini_build):
    out, _ = ffpp_mini_build
    rows = [row for row in load_from_disk(str(out))["train"] if row["video"] == "519_515"]
    assert rows and all(row["mask_source"] == "difference" for row in rows)
    for row in rows:
        mask = np.asarray(row["mask"]) > 0
        face = face_box_in_crop(row["box"], row["landmarks"])
        assert mask[face].mean() > 0.2, "the face region is covered"
        assert mask[~face].mean() < 0.02, "the background is not"


def face_box_in_crop(box, landmarks) -> np.ndarray:
    """Boolean 128x128 array: where the detector's face box lies in the crop (same geometry as crop_face)."""
    window = face_crop_window(box, np.asarray(landmarks).reshape(5, 2))
    scale = 128 / window.side
    x, y, width, height = box
    rows = slice(max(0, int((y - window.top) * scale)), max(0, int((y + height - window.top) * scale) + 1))
    columns = slice(max(0, int((x - window.left) * scale)), max(0, int((x + width - window.left) * scale) + 1))
    face = np.zeros((128, 128), dtype=bool)
    face[rows, columns] = True
    return face


def test_ffpp_mini_feeds_the_model(ffpp_mini_build):
    out, _ = ffpp_mini_build
    train = load_from_disk(str(out))["train"]
    batch = [train[index] for index in range(0, len(train), max(1, len(train) // 6))]
    assert {row["label"] for row in batch} == {0, 1}
    assert_rows_feed_the_model(batch)
