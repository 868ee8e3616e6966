"""The bundled generated-face checkpoint (mesofcn-generated): shipped in the package with its card, loaded offline,
asked beside the manipulated-face default on images; the astronaut photo stays real with it; its score barely moves
with the file's format and size (one pipeline for every source); and on the shared data it stays above the card's
floor on a subset of the unseen-generator list."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mesofcn.cli import EXIT_OK, main
from mesofcn.detection.defaults import (
    DEFAULT_MODEL_ENV,
    DEFAULT_MODEL_FILES,
    GENERATED_MODEL_ENV,
    GENERATED_MODEL_NAME,
    packaged_model_path,
)
from tests.conftest import REPO_ROOT

#: Budget of a bundled checkpoint (safetensors, at most 5 MB).
MAX_WEIGHT_BYTES = 5_000_000
#: Largest spread of the generated-face P(fake) of one photo saved four ways (PNG and JPEG q95, at 512 and 256 px).
#: No checkpoint ships yet, so this is the bound set before measuring; the shipping run measures the spread, states
#: it in the card and tightens this to it (plus a margin).
MAX_FORMAT_SPREAD = 0.1


def bundled_generated_or_skip() -> Path:
    folder = packaged_model_path(GENERATED_MODEL_NAME)
    if os.environ.get(GENERATED_MODEL_ENV) is not None:
        pytest.skip(f"${GENERATED_MODEL_ENV} overrides the bundled generated-face model")
    missing = [name for name in (*DEFAULT_MODEL_FILES, "training_args.json") if not (folder / name).is_file()]
    if missing:
        pytest.skip(f"{GENERATED_MODEL_NAME} is not installed in {folder} (missing {', '.join(missing)})")
    return folder


def load_script(name: str):
    scripts = str(REPO_ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)  # train_generated imports train_default beside it
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.astronaut())


def test_it_ships_with_its_card_the_recipe_and_the_processor_of_its_training_data():
    folder = bundled_generated_or_skip()
    assert (folder / "model.safetensors").stat().st_size <= MAX_WEIGHT_BYTES
    card = REPO_ROOT / "model_cards" / f"{GENERATED_MODEL_NAME}.md"
    assert (folder / "README.md").read_text() == card.read_text()
    assert not [path.name for path in folder.iterdir() if path.suffix in (".py", ".bin", ".pt", ".pkl", ".ckpt")]
    assert json.loads((folder / "config.json").read_text())["detects"] == "generated"
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["crop_crf"] == 23 and processor["crop_scale"] == 1.1  # inference crops encoded like training's
    arguments = json.loads((folder / "training_args.json").read_text())
    script = load_script("train_generated")
    assert arguments["task"] == "gan-c23-all" and " ".join(script.TRAIN_RECIPE) in card.read_text()


def test_detect_on_a_photo_without_arguments_reports_both_opinions_offline(astronaut, tmp_path):
    folder = bundled_generated_or_skip()
    photo = tmp_path / "astronaut.png"
    astronaut.save(photo)
    code = f"""
import json, sys
from transformers import AutoModel
from mesofcn.cli import main
from mesofcn.detection.defaults import GENERATED_MODEL_NAME, default_model_path
model = AutoModel.from_pretrained(str(default_model_path(GENERATED_MODEL_NAME)), local_files_only=True)
code = main(["detect", {str(photo)!r}, "--json", "report.json", "--quiet"])
print(json.dumps({{"class": type(model).__name__, "code": code}}))
"""
    env = {key: value for key, value in os.environ.items() if key not in (DEFAULT_MODEL_ENV, GENERATED_MODEL_ENV)}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    finished = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                              cwd=tmp_path, stdin=subprocess.DEVNULL)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout.strip().splitlines()[-1]) == {"class": "MesoFCNForDeepfakeDetection", "code": 0}
    (report,) = json.loads((tmp_path / "report.json").read_text())
    generated = report["opinions"]["generated"]
    assert generated["model"] == str(folder) and len(generated["face_scores"]) == 1
    # The demo's real astronaut stays real with the generated-face model.
    assert generated["label"] == "real" and generated["score"] < 0.5


def test_the_score_barely_moves_with_format_and_size(astronaut, tmp_path):
    folder = bundled_generated_or_skip()
    paths = []
    for side in (512, 256):
        image = astronaut.resize((side, side), Image.LANCZOS) if side != 512 else astronaut
        for suffix, options in ((".png", {}), (".jpg", {"quality": 95})):
            paths.append(tmp_path / f"astronaut_{side}{suffix}")
            image.save(paths[-1], **options)
    out = tmp_path / "reports.json"
    assert main(["detect", *map(str, paths), "--model", str(folder), "--json", str(out), "--quiet"]) == EXIT_OK
    scores = {Path(report["path"]).name: report["score"] for report in json.loads(out.read_text())}
    print(f"generated-face P(fake) by format: {scores}")
    assert max(scores.values()) - min(scores.values()) < MAX_FORMAT_SPREAD


#: The floor the unseen-generator subset below must stay above (item AUC), and that subset: every third row of the
#: StyleGAN2 group (its fakes and their pipeline-matched Unsplash reals, both 300x300 JPEG from one dataset). The
#: same network untrained scores 0.84 on the whole group (model_cards/mesofcn-generated.md): a shipped checkpoint
#: must do better than random weights.
SUBSET_FLOOR = 0.86
SUBSET_GROUP = "gan:StyleGAN2"


def test_it_stays_above_its_floor_on_an_unseen_generator(shared_data, tmp_path):
    bundled_generated_or_skip()
    with (REPO_ROOT / "benchmarks" / "validation_generated.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["group"] == SUBSET_GROUP][::3]
    labels = tmp_path / "subset.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "label", "group"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "eval"
    argv = ["evaluate", "--media", str(labels), "--root", str(shared_data), "--model", GENERATED_MODEL_NAME]
    assert main([*argv, "--out", str(out), "--quiet", "--bootstrap", "0"]) == EXIT_OK
    overall = json.loads((out / "results.json").read_text())["overall"]
    print(f"{SUBSET_GROUP} subset: {overall['n_real']} real, {overall['n_fake']} fake, item AUC {overall['auc']:.3f}")
    assert overall["n_real"] + overall["n_fake"] == len(rows) and overall["auc"] >= SUBSET_FLOOR
