"""The default checkpoint: shipped in the package (safetensors, at most 5 MB, its card beside it), found offline
($MESOFCN_DEFAULT_MODEL, else the package's weights/ folder), used by `AutoModel`, `pipeline("deepfake-detection")`
and `mesofcn detect` with no model, installed by `install_bundled_model` (scripts/train_default.py --ship); clear
errors when none is found.
On the shared data, the bundled default calls the FF++ mini Deepfakes fake 519_515 fake and its original 519 real,
and stays above measured floors on a subset of the unseen-tool validation list."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mesofcn import MesoFCNImageProcessor
from mesofcn.cli import EXIT_OK, EXIT_USAGE, main
from mesofcn.detection.defaults import (
    DEFAULT_MODEL_ENV,
    DEFAULT_MODEL_FILES,
    DEFAULT_MODEL_NAME,
    default_model_available,
    default_model_path,
    packaged_model_path,
    require_default_model,
)
from mesofcn.detection.registration import save_detector
from mesofcn.training.bundled_models import install_bundled_model
from mesofcn.training.run_outputs import BEST_DIR
from tests.conftest import REPO_ROOT, make_model

FFPP_VIDEOS = "ffpp_mini/{kind}/{method}/c23/videos/{name}.mp4"
#: The default checkpoint's model card, shipped beside its weights.
DEFAULT_CARD = REPO_ROOT / "model_cards" / f"{DEFAULT_MODEL_NAME}.md"
#: Budget of a bundled checkpoint (safetensors, at most 5 MB).
MAX_WEIGHT_BYTES = 5_000_000


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A training output folder as `mesofcn train` leaves it: best/ with code files, arguments and results."""
    run = tmp_path_factory.mktemp("run")
    best = run / BEST_DIR
    save_detector(make_model(seed=4), MesoFCNImageProcessor(), best)
    arguments = {"task": "sbi-any-all", "dataset_dir": ["/data/ffpp_c23", "/data/sbi_c23"], "output_dir": str(run)}
    (best / "training_args.json").write_text(json.dumps(arguments))
    (best / "eval_results.json").write_text(json.dumps({"frame": {"auc": 0.75}}))
    return run


@pytest.fixture(scope="module")
def installed_default(finished_run, tmp_path_factory) -> Path:
    """`finished_run`'s best checkpoint installed into a folder that stands for the package's."""
    target = tmp_path_factory.mktemp("site") / DEFAULT_MODEL_NAME
    return install_bundled_model(finished_run / BEST_DIR, DEFAULT_CARD, target)


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
    assert (installed_default / "README.md").read_text() == DEFAULT_CARD.read_text()
    arguments = json.loads((installed_default / "training_args.json").read_text())
    assert arguments["dataset_dir"] == ["ffpp_c23", "sbi_c23"] and arguments["output_dir"] == finished_run.name


def test_the_scripts_ship_command_installs_the_runs_best_checkpoint(finished_run, installed_default, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "train").symlink_to(finished_run, target_is_directory=True)  # the script's run folder is WORK/train
    target = tmp_path / "site" / DEFAULT_MODEL_NAME
    command = [sys.executable, str(REPO_ROOT / "scripts" / "train_default.py"), "--work", str(work), "--ship"]
    finished = subprocess.run([*command, "--ship-to", str(target)], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == f"installed {target}"
    for path in installed_default.iterdir():
        assert (target / path.name).read_bytes() == path.read_bytes()


def test_the_recipe_in_the_script_is_the_one_the_card_states():
    script = load_train_default_script()
    card = DEFAULT_CARD.read_text()
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
    assert packaged_model_path().parts[-4:] == ("mesofcn", "detection", "weights", DEFAULT_MODEL_NAME)


def test_missing_or_incomplete_defaults_give_one_line_errors(monkeypatch, capsys, tmp_path, installed_default):
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    monkeypatch.setattr(
        "mesofcn.detection.defaults.packaged_model_path", lambda name="": tmp_path / "not-installed" / name
    )
    assert not default_model_available()
    code = main(["detect", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "no bundled model is installed" in err and "--model" in err
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
from mesofcn.detection.defaults import default_model_path
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


# ----------------------------------------------------------------------------------------------- bundled


def test_the_bundled_default_ships_in_the_package_with_its_card():
    folder = bundled_default_or_skip()
    assert (folder / "model.safetensors").stat().st_size <= MAX_WEIGHT_BYTES
    assert (folder / "README.md").read_text() == DEFAULT_CARD.read_text()
    assert not [path.name for path in folder.iterdir() if path.suffix in (".py", ".bin", ".pt", ".pkl", ".ckpt")]
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["crop_scale"] == 1.3  # the recipe's crop, which inference must repeat
    arguments = json.loads((folder / "training_args.json").read_text())
    assert arguments["task"] == "sbi-any-all" and arguments["max_train_steps"] == 900


def test_the_bundled_default_loads_offline_through_auto_model_and_the_cli(astronaut_png, tmp_path):
    bundled_default_or_skip()
    code = f"""
import json, sys
import mesofcn
from transformers import AutoModel
from mesofcn.cli import main
from mesofcn.detection.defaults import default_model_path
model = AutoModel.from_pretrained(str(default_model_path()), local_files_only=True)
code = main(["detect", {str(astronaut_png)!r}, "--json", "report.json", "--quiet"])
print(json.dumps({{"class": type(model).__name__, "code": code, "path": str(default_model_path())}}))
"""
    env = {key: value for key, value in os.environ.items() if key != DEFAULT_MODEL_ENV}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    finished = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                              cwd=tmp_path, stdin=subprocess.DEVNULL)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert result == {"class": "MesoFCNForDeepfakeDetection", "code": EXIT_OK, "path": str(packaged_model_path())}
    (report,) = json.loads((tmp_path / "report.json").read_text())
    assert report["model"] == str(packaged_model_path()) and report["label"] in ("real", "fake")


def missing_default_files_of(folder: Path) -> list[str]:
    return [name for name in (*DEFAULT_MODEL_FILES, "training_args.json") if not (folder / name).is_file()]


# ----------------------------------------------------------------------------------------------- real data


def bundled_default_or_skip() -> Path:
    """The package's default checkpoint folder; skips while none ships (a recipe ships only once it clears the
    floor of its card on benchmarks/validation.csv) or while $MESOFCN_DEFAULT_MODEL overrides it."""
    if os.environ.get(DEFAULT_MODEL_ENV):
        pytest.skip(f"${DEFAULT_MODEL_ENV} overrides the bundled default")
    if missing_default_files_of(packaged_model_path()):
        pytest.skip(f"no default ships in {packaged_model_path()} yet (see model_cards/{DEFAULT_MODEL_NAME}.md)")
    return packaged_model_path()


@pytest.fixture(scope="module")
def ffpp_pair_reports(shared_data, tmp_path_factory) -> dict[str, dict]:
    """The bundled default on the FF++ mini Deepfakes pair at the default sampling (every 5th frame)."""
    bundled_default_or_skip()
    videos = [
        shared_data / FFPP_VIDEOS.format(kind="original_sequences", method="youtube", name="519"),
        shared_data / FFPP_VIDEOS.format(kind="manipulated_sequences", method="Deepfakes", name="519_515"),
    ]
    out = tmp_path_factory.mktemp("default_pair") / "reports.json"
    assert main(["detect", *map(str, videos), "--json", str(out), "--quiet"]) == EXIT_OK
    return {Path(report["path"]).stem: report for report in json.loads(out.read_text())}


def test_bundled_default_fits_the_ffpp_deepfakes_pair_it_trained_on(ffpp_pair_reports):
    real, fake = ffpp_pair_reports["519"], ffpp_pair_reports["519_515"]
    print(f"video P(fake): 519 {real['score']:.4f}, 519_515 {fake['score']:.4f}")
    assert real["label"] == "real" and fake["label"] == "fake"


#: A short subset of benchmarks/validation.csv (still images of tools and people never trained on: DFDC, E4S and
#: OpenCV swaps, and real photos) and the floor its item AUC must stay above: the card's ship floor for face swaps
#: (0.75), which a bundled default must clear on the whole list.
VALIDATION_SUBSET_FLOOR = 0.75
VALIDATION_SUBSET_PATTERNS = (
    "aaronchong888+DeepFake-Detect/prepared_dataset/",
    "e4s2022+e4s/",
    "ipraveenkmr+Python-Face-Swap/",
    "iperov+DeepFaceLive/build/samples/photos/0000",
)


def test_bundled_default_stays_above_its_floor_on_unseen_tools(shared_data, tmp_path):
    bundled_default_or_skip()
    rows = [row for row in (REPO_ROOT / "benchmarks" / "validation.csv").read_text().splitlines()[1:]
            if any(pattern in row.split(",")[0] for pattern in VALIDATION_SUBSET_PATTERNS)]  # fmt: skip
    labels = tmp_path / "subset.csv"
    labels.write_text("path,label,group\n" + "\n".join(rows) + "\n")
    out = tmp_path / "eval"
    code = main(["evaluate", "--media", str(labels), "--root", str(shared_data), "--out", str(out), "--quiet"])
    assert code == EXIT_OK
    results = json.loads((out / "results.json").read_text())
    print(json.dumps(results["overall"], indent=1))
    assert results["overall"]["auc"] >= VALIDATION_SUBSET_FLOOR
