"""Two opinions on an image: the manipulated-face and the generated-face checkpoints both asked when no model is
named, the verdict fake if either says so, the reason named; videos get the generated-face opinion only on request;
a named model answers alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesofcn.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from mesofcn.detection.defaults import DEFAULT_MODEL_ENV, GENERATED_MODEL_ENV
from mesofcn.detection.opinions import NOT_INSTALLED, NOT_RUN_ON_VIDEOS, combine_opinions
from mesofcn.detection.tracking import verdict_text
from tests.conftest import save_biased_checkpoint

SIGMOID_3 = 0.9525741268224334  # P(fake) of a checkpoint biased by +3
SIGMOID_MINUS_2 = 0.11920292202211755  # ... by -2


def report(label: str | None, score: float | None, faces: int = 1) -> dict:
    return {
        "label": label or "no_face",
        "score": score,
        "threshold": 0.5,
        "model": "m",
        "faces": [{"score": score}] * faces,
        "tracks": [],
        "media": "image",
    }


@pytest.mark.parametrize(
    "manipulated, generated, label, score, reason",
    [
        (("real", 0.2), ("fake", 0.9), "fake", 0.9, "generated"),
        (("fake", 0.7), ("real", 0.1), "fake", 0.7, "manipulated"),
        (("fake", 0.6), ("fake", 0.8), "fake", 0.8, "generated+manipulated"),
        (("real", 0.3), ("real", 0.1), "real", 0.3, None),
        ((None, None), (None, None), "no_face", None, None),
    ],
)
def test_verdict_is_fake_if_either_says_so(manipulated, generated, label, score, reason):
    joined = combine_opinions(report(*manipulated), "manipulated", report(*generated))
    assert (joined["label"], joined["score"], joined["reason"]) == (label, score, reason)
    assert list(joined["opinions"]) == ["manipulated", "generated"]
    assert joined["opinions"]["generated"]["score"] == generated[1]
    assert joined["opinions"]["manipulated"]["face_scores"] == [manipulated[1]]


def test_a_missing_opinion_says_why_and_does_not_decide():
    joined = combine_opinions(report("real", 0.2), "generated", None, NOT_INSTALLED)
    assert joined["label"] == "real" and joined["score"] == 0.2 and joined["reason"] is None
    assert joined["opinions"]["manipulated"] == {
        "detects": "manipulated",
        "label": None,
        "score": None,
        "missing": NOT_INSTALLED,
    }
    assert verdict_text(joined) == "REAL  P(fake)=0.20  [manipulated not installed, generated 0.20]"
    with pytest.raises(ValueError, match="detects must be one of"):
        combine_opinions(report("real", 0.2), "swapped", None)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> dict[str, Path]:
    """A manipulated-face checkpoint that says real (P 0.12) and a generated-face one that says fake (P 0.95)."""
    root = tmp_path_factory.mktemp("bundled")
    folders = {
        "manipulated": save_biased_checkpoint(root / "manipulated", -2.0),
        "generated": save_biased_checkpoint(root / "generated", 3.0, detects="generated"),
    }
    for folder in folders.values():
        (folder / "README.md").write_text("test card\n")
    return folders


def detect_json(tmp_path: Path, *argv) -> tuple[int, list[dict]]:
    out = tmp_path / "reports.json"
    code = main(["detect", *map(str, argv), "--json", str(out), "--quiet"])
    return code, json.loads(out.read_text()) if out.exists() else []


def test_an_image_without_model_gets_both_opinions(bundled, face_photo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(bundled["manipulated"]))
    monkeypatch.setenv(GENERATED_MODEL_ENV, str(bundled["generated"]))
    code, [result] = detect_json(tmp_path, face_photo)
    assert code == EXIT_OK
    assert result["label"] == "fake" and result["reason"] == "generated"
    assert result["score"] == pytest.approx(SIGMOID_3, abs=1e-4)
    assert result["opinions"]["manipulated"]["score"] == pytest.approx(SIGMOID_MINUS_2, abs=1e-4)
    assert result["opinions"]["manipulated"]["label"] == "real"
    assert result["opinions"]["generated"]["model"] == str(bundled["generated"])
    # The tracks (and overlay maps) are the manipulated-face model's; the generated one scored the same faces.
    [track] = result["tracks"]
    assert result["opinions"]["generated"]["face_scores"] == [round(SIGMOID_3, 4)]
    assert track["score"] == pytest.approx(SIGMOID_MINUS_2, abs=1e-4)
    printed = capsys.readouterr().out
    assert "FAKE (generated)  P(fake)=0.95  [manipulated 0.12, generated 0.95]" in printed


def test_a_named_model_answers_alone(bundled, face_photo, tmp_path, monkeypatch):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(bundled["manipulated"]))
    monkeypatch.setenv(GENERATED_MODEL_ENV, str(bundled["generated"]))
    code, [result] = detect_json(tmp_path, face_photo, "--model", "mesofcn-blends-c23-c40")
    assert code == EXIT_OK and "opinions" not in result and "reason" not in result
    assert result["label"] == "real" and result["score"] == pytest.approx(SIGMOID_MINUS_2, abs=1e-4)
    assert main(["detect", str(face_photo), "--model", str(bundled["generated"]), "--generated-on-videos"]) == (
        EXIT_USAGE
    )


def test_videos_get_the_generated_opinion_only_on_request(bundled, face_video, tmp_path, monkeypatch):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(bundled["manipulated"]))
    monkeypatch.setenv(GENERATED_MODEL_ENV, str(bundled["generated"]))
    code, [result] = detect_json(tmp_path, face_video, "--every", "10")
    assert code == EXIT_OK and result["label"] == "real" and result["reason"] is None
    assert result["opinions"]["generated"]["missing"] == NOT_RUN_ON_VIDEOS
    code, [result] = detect_json(tmp_path, face_video, "--every", "10", "--generated-on-videos")
    assert code == EXIT_OK and result["label"] == "fake" and result["reason"] == "generated"
    analysed = sum(len(track["frames"]) for track in result["tracks"])
    assert result["opinions"]["generated"]["face_scores"] == [round(SIGMOID_3, 4)] * analysed == [0.9526] * 2


def test_only_the_generated_model_installed(bundled, face_photo, face_video, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "")  # turned off: as on an install without the manipulated-face default
    monkeypatch.setenv(GENERATED_MODEL_ENV, str(bundled["generated"]))
    code, [image, video] = detect_json(tmp_path, face_photo, face_video)
    assert code == EXIT_SOME_FAILED
    assert image["label"] == "fake" and image["opinions"]["manipulated"]["missing"] == NOT_INSTALLED
    assert "no manipulated-face model is installed" in video["error"] and str(face_video) in video["error"]
    assert "--generated-on-videos" in capsys.readouterr().err


def test_no_bundled_model_names_both(tmp_path, face_photo, monkeypatch, capsys):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "")
    monkeypatch.setenv(GENERATED_MODEL_ENV, str(tmp_path / "missing"))
    assert main(["detect", str(face_photo)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no bundled model is installed" in err and "turns mesofcn-blends-c23-c40 off" in err
    assert f"{tmp_path / 'missing'}, which lacks config.json" in err


def test_the_python_pipeline_on_a_bundled_model_asks_both(bundled, face_photo, monkeypatch):
    from transformers import pipeline

    from mesofcn.detection.pipeline_mesofcn import DeepfakeDetectionPipeline

    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(bundled["manipulated"]))
    monkeypatch.setenv(GENERATED_MODEL_ENV, str(bundled["generated"]))
    load = {"pipeline_class": DeepfakeDetectionPipeline, "model": str(bundled["manipulated"])}
    both = pipeline("deepfake-detection", **load)
    assert both.opinions and both.second_opinion.detects == "generated" and both.detects == "manipulated"
    assert both.second_opinion.face_detector is both.face_detector  # one detector, loaded once
    first, second = both([str(face_photo), str(face_photo)])
    assert first["reason"] == second["reason"] == "generated"
    assert first["opinions"]["generated"]["score"] == pytest.approx(SIGMOID_3, abs=1e-5)
    alone = pipeline("deepfake-detection", opinions=False, **load)
    report = alone(str(face_photo), generated_on_videos=True)  # accepted and moot without a second opinion
    assert "opinions" not in report and report["score"] == pytest.approx(SIGMOID_MINUS_2, abs=1e-5)
