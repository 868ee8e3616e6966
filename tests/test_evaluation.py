"""Evaluation end to end on tiny datasets the tests make, the sweep's tables, and (when present) ffpp_mini."""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mesofcn.cli import CommandError
from mesofcn.cli.training import add_evaluate_parser
from mesofcn.training.evaluation import evaluate_checkpoint, pick_grid_rows
from mesofcn.training.reproduction import SweepRun, render_tables
from tests.conftest import REPO_ROOT, save_biased_checkpoint, shared_data_dir
from tests.face_datasets import build_face_dataset

OUTPUT_FILES = {"results.json", "predictions.csv", "pr_curve.png", "masks_grid.png"}

# Each in-process run gets its own Accelerate state (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return build_face_dataset(tmp_path_factory.mktemp("eval") / "data", missing_fake_mask_every=4)


def test_evaluation_writes_every_file_with_consistent_numbers(checkpoint_dir, tiny_dataset, tmp_path):
    out = tmp_path / "eval"
    results = evaluate_checkpoint(str(checkpoint_dir), tiny_dataset, out, split="test", progress=False)
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    frame = results["frame"]
    # no task recorded with this checkpoint: every row (pristine, Deepfakes, Face2Face) is evaluated
    assert frame["num_frames"] == 24 and frame["num_real"] == 8 and frame["num_fake"] == 16
    assert set(results["per_method"]) == {"pristine", "Deepfakes", "Face2Face"}
    assert results["video"]["num_videos"] == 6
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 24 and [int(r["row"]) for r in rows] == list(range(24))
    labels = np.array([int(r["label"]) for r in rows])
    p_fake = np.array([float(r["p_fake"]) for r in rows])
    assert frame["accuracy"] == pytest.approx(((p_fake >= 0.5) == labels).mean())
    seg = results["segmentation"]
    assert seg["labelled_positions"] == seg["images_with_labels"] * 49 * 49
    assert seg["images_with_labels"] == 24 - 4  # 16 fakes, every 4th without a mask
    assert 0.0 <= seg["pixel_accuracy"] <= 1.0
    grid = Image.open(out / "masks_grid.png")
    assert grid.width == 4 * 128 + 6 and grid.height > 8 * 128
    assert Image.open(out / "pr_curve.png").size == (640, 520)


def test_a_checkpoint_that_always_says_fake(tmp_path, tiny_dataset):
    model = save_biased_checkpoint(tmp_path / "fake_ckpt", fake_logit=8.0)
    results = evaluate_checkpoint(str(model), tiny_dataset, tmp_path / "out", split="validation", task="ff-c23-df")
    frame = results["frame"]
    assert frame["num_frames"] == 16 and frame["accuracy"] == 0.5  # half the ff-c23-df rows are fake
    assert frame["fake_accuracy"] == 1.0 and frame["real_accuracy"] == 0.0
    assert frame["auc"] == pytest.approx(0.5) and frame["eer"] == pytest.approx(0.5)
    assert results["per_method"]["Deepfakes"]["accuracy"] == 1.0 and results["per_method"]["pristine"]["accuracy"] == 0
    # every grid position predicted fake: correct exactly on the mask's fake positions
    seg = results["segmentation"]
    assert seg["fake_iou"] == pytest.approx(seg["pixel_accuracy"])


def test_evaluate_command_one_line_errors(tmp_path, tiny_dataset, checkpoint_dir):
    parser = argparse.ArgumentParser(prog="mesofcn")
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    model, data = ["--model", str(checkpoint_dir)], ["--dataset", str(tiny_dataset)]
    cases = {
        "does not exist": [*model, "--dataset", str(tmp_path / "none")],
        "split 'dev' not found": [*model, *data, "--split", "dev"],
        "unknown task": [*model, *data, "--task", "ff-c23-zz"],
        "selects 8 real and 0 fake rows": [*model, *data, "--task", "ff-c23-nt"],
        "not a checkpoint folder": ["--model", str(tmp_path / "nowhere"), *data],
    }
    for message, argv in cases.items():
        args = parser.parse_args(["evaluate", *argv, "--out", str(tmp_path / "o")])
        with pytest.raises(CommandError, match=message) as caught:
            args.handler(args)
        assert "\n" not in str(caught.value)


def test_grid_rows_mix_masked_fakes_and_reals():
    labels = np.array([0, 1, 1, 0, 1, 0])
    counts = np.zeros((6, 5), dtype=int)
    counts[[1, 4], 0] = 10
    counts[[0, 3, 5], 0] = 10
    assert pick_grid_rows(labels, counts, 4) == [1, 4, 0, 5]
    assert pick_grid_rows(labels[:1], counts[:1], 4) == [0]


def test_tables_put_the_papers_numbers_beside_ours(tmp_path):
    def run(task, value, accuracy, pixel=None, validation=0.9):
        results = {"frame": {"accuracy": accuracy}, "segmentation": {"pixel_accuracy": pixel, "fake_iou": None}}
        return SweepRun(task, value, tmp_path, "trained", "", validation, results)

    runs = [
        run("ff-c23-df", 0.0, 0.90, validation=0.80),
        run("ff-c23-df", 0.2, 0.95, validation=0.85),
        run("ff-c23-df", 1.0, 0.40, pixel=0.875),
        SweepRun("ff-c40-fs", 0.0, tmp_path, "skipped", "selects 0 fake rows"),
    ]
    tables = render_tables(runs, "test", lambdas=[0.0, 0.2])
    assert "| 0 | 90.00 | — |" in tables and "| 0.2 | 95.00 | — |" in tables
    assert "| ours, λ chosen on validation | 95.00 (λ=0.2) | — |" in tables
    assert "| paper, best λ | 97.90 | 91.26 |" in tables
    assert "| XceptionNet (paper) | 98.85 | 93.70 |" in tables
    assert "| c23 DF | 87.50 | — | 89.62 |" in tables
    assert "selects 0 fake rows" in tables and "No gan task" in tables


def test_reproduce_paper_script_runs_a_small_sweep(tiny_dataset, tmp_path):
    out = tmp_path / "paper"
    command = [
        sys.executable, str(REPO_ROOT / "scripts" / "reproduce_paper.py"), "--dataset_dir", str(tiny_dataset),
        "--output_dir", str(out), "--tasks", "ff-c23-df", "ff-c40-df", "--lambdas", "0", "--no_segmentation",
        "--", "--max_train_steps", "2", "--per_device_train_batch_size", "8", "--report_to", "none",
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    sweep = json.loads((out / "sweep.json").read_text())
    assert [(r["task"], r["seg_loss_weight"], r["status"]) for r in sweep] == [
        ("ff-c40-df", 0.0, "skipped"),  # the dataset has c23 rows only
        ("ff-c23-df", 0.0, "trained"),
    ]
    sweep = sweep[1:]
    for entry in sweep:
        run_dir = Path(entry["run_dir"])
        assert (run_dir / "best" / "README.md").is_file()
        assert {p.name for p in (run_dir / "eval_test").iterdir()} == OUTPUT_FILES
    tables = (out / "tables.md").read_text()
    accuracy = sweep[0]["results"]["frame"]["accuracy"]
    assert f"| 0 | {100 * accuracy:.2f} |" in tables and "| paper, best λ | 97.90 |" in tables
    assert "| ff-c40-df | 0 | skipped |" in tables


def test_ffpp_mini_train_and_evaluate_end_to_end(tmp_path):
    """Real data: build ffpp_mini face crops with the dataset builder, train briefly, evaluate on validation."""
    data_root = shared_data_dir() / "ffpp_mini"
    if not data_root.is_dir():
        pytest.skip(f"shared data not found at {data_root}")
    try:
        builders = importlib.import_module("mesofcn.data.faceforensics")
    except ImportError:
        pytest.skip("the FF++ dataset builder (mesofcn.data.faceforensics) is not in this tree yet")
    build = getattr(builders, "build_faceforensics", None)
    if build is None:
        pytest.skip("mesofcn.data.faceforensics has no build_faceforensics(root, out, ...) yet")
    dataset = tmp_path / "ffpp_mini"
    # ffpp_mini: 519 + Deepfakes 519_515 + Face2Face 750_743 (train), 004 + NeuralTextures 004_982 (validation)
    build(data_root, dataset, methods=("Deepfakes", "Face2Face", "NeuralTextures"), every=25, progress=False)
    run = tmp_path / "run"
    train = [
        sys.executable, str(REPO_ROOT / "scripts" / "train.py"), "--dataset_dir", str(dataset), "--task", "ff-c23-all",
        "--output_dir", str(run), "--max_train_steps", "2", "--eval_steps", "1", "--report_to", "none",
        "--disable_tqdm", "--per_device_train_batch_size", "8",
    ]  # fmt: skip
    finished = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = evaluate_checkpoint(str(run / "best"), dataset, tmp_path / "eval", split="validation", progress=False)
    assert results["task"] == "ff-c23-all" and results["frame"]["num_real"] > 0 and results["frame"]["num_fake"] > 0
    assert {p.name for p in (tmp_path / "eval").iterdir()} == OUTPUT_FILES
