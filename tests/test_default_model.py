"""The bundled default checkpoint: loads offline through AutoModel, the pipelines and the CLI with no --model, and
on the FF++ mini validation pair scores the NeuralTextures fake above its original (real data, when present)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

from mesofcn import MesoFCNForDeepfakeDetection, MesoFCNImageProcessor
from mesofcn.cli import EXIT_OK, EXIT_USAGE, main
from mesofcn.defaults import DEFAULT_MODEL_FILES, DEFAULT_MODEL_NAME, default_model_path, require_default_model
from mesofcn.pipeline_mesofcn import DeepfakeDetectionPipeline
from tests.conftest import REPO_ROOT

FFPP_VIDEOS = "ffpp_mini/{kind}/{method}/c23/videos/{name}.mp4"
#: Budget of the bundled weights (the issue: safetensors, at most 5 MB).
MAX_WEIGHT_BYTES = 5_000_000


def test_bundled_checkpoint_is_complete_small_and_safetensors_only():
    folder = require_default_model()
    assert folder == default_model_path() and folder.name == DEFAULT_MODEL_NAME
    assert all((folder / name).is_file() for name in DEFAULT_MODEL_FILES)
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= MAX_WEIGHT_BYTES
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt")) and not list(folder.glob("*.py"))
    with safe_open(str(weights), framework="pt") as handle:
        assert handle.get_tensor("classifier.weight").shape == (2, 256, 1, 1)
    card = (folder / "README.md").read_text()
    assert DEFAULT_MODEL_NAME in card and "Known limits" in card and "Intended use" in card


def test_bundled_checkpoint_loads_offline_through_auto_classes():
    folder = str(require_default_model())
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    assert isinstance(model, MesoFCNForDeepfakeDetection) and not model.training
    assert isinstance(AutoImageProcessor.from_pretrained(folder, local_files_only=True), MesoFCNImageProcessor)
    classifier = AutoModelForImageClassification.from_pretrained(folder, local_files_only=True)
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, second = model(pixels), classifier(pixels)
    assert first.logits.shape == (2, 2) and torch.equal(first.logits, second.logits)
    assert first.segmentation_logits.shape == (2, 2, 49, 49)
    # Trained weights: the classifier is not at its near-zero initialisation any more.
    assert model.classifier.weight.abs().max() > 0.05


def test_pipeline_without_a_model_uses_the_bundled_checkpoint(face_photo):
    detect = pipeline("deepfake-detection")
    assert isinstance(detect, DeepfakeDetectionPipeline)
    assert Path(detect.model.name_or_path) == default_model_path()
    report = detect(str(face_photo))
    assert report["media"] == "image" and len(report["faces"]) == 1
    assert 0.0 <= report["score"] <= 1.0 and report["label"] in ("real", "fake")


def test_cli_detect_without_model_in_a_process_with_no_network(tmp_path, face_photo):
    """`mesofcn detect IMAGE` alone, in a fresh process with the Hub switched off."""
    out = tmp_path / "report.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-m", "mesofcn.cli", "detect", str(face_photo), "--json", str(out), "--quiet"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert finished.returncode == EXIT_OK, finished.stderr
    (report,) = json.loads(out.read_text())
    assert report["model"] == str(default_model_path())
    assert report["media"] == "image" and sum(track["num_frames"] for track in report["tracks"]) == 1
    assert 0.0 <= report["score"] <= 1.0


def test_incomplete_installation_gives_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("mesofcn.defaults.default_model_path", lambda: tmp_path / "gone")
    code = main(["detect", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "bundled default model is incomplete" in err and "--model" in err
    assert len(err.strip().splitlines()) == 1


def test_reproduction_script_ships_what_the_package_holds():
    """scripts/train_default.py names the same checkpoint and the card it copies is the one in model_cards/."""
    card = REPO_ROOT / "model_cards" / f"{DEFAULT_MODEL_NAME}.md"
    assert card.read_text() == (default_model_path() / "README.md").read_text()
    script = (REPO_ROOT / "scripts" / "train_default.py").read_text()
    arguments = json.loads((default_model_path() / "training_args.json").read_text())
    assert arguments["task"] == "sbi-any-all" and arguments["augment"]
    assert [Path(folder).name for folder in arguments["dataset_dir"]] == ["ffpp_c23", "sbi_c23", "sbi_c40"]
    assert f'"--seg_loss_weight", "{arguments["seg_loss_weight"]}"' in script


# ----------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def validation_reports(shared_data, tmp_path_factory) -> dict[str, dict]:
    """The default checkpoint on the FF++ mini validation pair (never trained on), every 5th frame."""
    videos = [
        shared_data / FFPP_VIDEOS.format(kind="original_sequences", method="youtube", name="004"),
        shared_data / FFPP_VIDEOS.format(kind="manipulated_sequences", method="NeuralTextures", name="004_982"),
    ]
    out = tmp_path_factory.mktemp("default_validation") / "reports.json"
    argv = ["detect", *map(str, videos), "--every", "5", "--json", str(out), "--quiet"]
    assert main(argv) == EXIT_OK
    return {Path(report["path"]).stem: report for report in json.loads(out.read_text())}


def test_neuraltextures_fake_scores_above_its_original(validation_reports):
    real, fake = validation_reports["004"], validation_reports["004_982"]
    print(f"video-level P(fake): 004 {real['score']:.4f}, 004_982 {fake['score']:.4f}")
    assert fake["score"] > real["score"]
    speaker_scores = [
        np.mean([frame["score"] for frame in max(report["tracks"], key=lambda t: t["num_frames"])["frames"]])
        for report in (real, fake)
    ]
    assert speaker_scores[1] > speaker_scores[0]
