"""`pipeline("deepfake-detection")` on real faces: reports, tracks, heatmaps, batching, no-face inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from mesofcn import MesoFCNImageProcessor, mask_label_positions
from mesofcn.detection.image_processing_mesofcn import heatmap_on_frame
from mesofcn.detection.pipeline_mesofcn import DeepfakeDetectionPipeline
from mesofcn.reporting.reports import overlay_faces, report_to_json
from tests.conftest import make_model, run_python_without_mesofcn


def test_task_is_registered(detect):
    assert isinstance(detect, DeepfakeDetectionPipeline)
    assert detect.face_detector.name == "retinaface-mobilenet0.25"


def test_image_report_has_faces_maps_and_heatmaps(detect, face_photo):
    report = detect(str(face_photo))
    assert report["media"] == "image" and report["frames_analysed"] == 1
    assert report["frame_size"] == [250, 250]
    assert report["label"] in {"real", "fake"} and 0.0 <= report["score"] <= 1.0
    face = max(report["faces"], key=lambda f: f["detector_score"])
    x, y, w, h = face["box"]
    assert 40 < x < 110 and 40 < y < 110 and 60 < w < 150 and 60 < h < 170
    assert face["patch_map"].shape == (49, 49) and face["heatmap"].shape == (250, 250)
    assert ((face["patch_map"] >= 0) & (face["patch_map"] <= 1)).all()
    # The heatmap is the patch map placed on the crop window and zero elsewhere.
    window = face["window"]
    inside = face["heatmap"][
        max(window.top, 0) : window.top + window.side, max(window.left, 0) : window.left + window.side
    ]
    assert inside.min() >= face["patch_map"].min() - 1e-5 and inside.max() <= face["patch_map"].max() + 1e-5
    outside = face["heatmap"].copy()
    outside[max(window.top, 0) : window.top + window.side, max(window.left, 0) : window.left + window.side] = 0
    assert not outside.any()
    # The score is the checkpoint's P(fake) on the processor's crop of this face.
    pixels = MesoFCNImageProcessor()(
        np.asarray(Image.open(face_photo).convert("RGB")),
        boxes=face["box"],
        landmarks=face["landmarks"],
        return_tensors="pt",
    )["pixel_values"]
    with torch.no_grad():
        expected = make_model(seed=1)(pixels).logits.softmax(-1)[0, 1].item()
    assert abs(face["score"] - expected) < 1e-4


def test_overlays_place_maps_by_the_checkpoint_s_crop_size_and_grid(tmp_path, face_photo):
    """A checkpoint with a 96 px processor and a network pooling after conv 3 (a 34x34 map, not Table I's 49x49 of
    128 px): the report keeps where its maps sit, and overlays drawn from the report later place them exactly as
    the pipeline's own heatmaps; the 128 px Table I placement would refuse such a map."""
    model = make_model(seed=2, pool_after=3)
    model.save_pretrained(tmp_path)
    MesoFCNImageProcessor(size={"height": 96, "width": 96}).save_pretrained(tmp_path)
    report = pipeline("deepfake-detection", model=str(tmp_path), trust_remote_code=False)(str(face_photo))
    grid = report["map_grid"]
    assert grid["crop_size"] == 96 and grid["positions"] == mask_label_positions(model.config, 96)
    assert len(grid["positions"]) == 34 and "map_grid" not in report_to_json(report)
    face = report["faces"][0]
    assert face["patch_map"].shape == (34, 34)
    drawn = overlay_faces(report["faces"], 250, 250, grid)
    np.testing.assert_array_equal(drawn[0].heatmap, face["heatmap"])
    assert drawn[0].heatmap.max() > 0
    with pytest.raises(ValueError, match="34x34 map is not this network's map of a 128-pixel crop"):
        heatmap_on_frame(face["patch_map"], face["window"], 250, 250)


def test_fake_checkpoint_gives_fake_verdicts_and_threshold_applies(detect_fake, face_photo):
    report = detect_fake(str(face_photo))
    assert report["label"] == "fake" and abs(report["score"] - 0.98201) < 1e-4
    assert all(track["label"] == "fake" and track["fraction_fake"] == 1.0 for track in report["tracks"])
    strict = detect_fake(str(face_photo), threshold=0.99)
    assert strict["label"] == "real" and strict["threshold"] == 0.99


def test_video_report_tracks_one_face_over_sampled_frames(detect_fake, face_video):
    report = detect_fake(str(face_video), every=4)
    assert report["media"] == "video" and report["sampling"] == {"mode": "every", "every": 4}
    assert report["analysed_frames"] == [0, 4, 8, 12, 16]
    assert report["fps"] == 25.0 and report["frame_size"] == [320, 256]
    assert len(report["tracks"]) == 1
    track = report["tracks"][0]
    assert [frame["index"] for frame in track["frames"]] == [0, 4, 8, 12, 16]
    assert [frame["time"] for frame in track["frames"]] == [0.0, 0.16, 0.32, 0.48, 0.64]
    xs = [frame["box"][0] for frame in track["frames"]]
    assert abs((xs[-1] - xs[0]) - 32) <= 4, xs  # the face drifts 2 px per frame
    assert report["label"] == "fake" and "heatmap" not in report["faces"][0]
    assert "patch_map" not in report["faces"][0]  # maps are dropped as they come: memory bounded for long videos
    with_maps = detect_fake(str(face_video), every=4, return_patch_maps=True)
    assert all(face["patch_map"].shape == (49, 49) for face in with_maps["faces"])
    assert with_maps["faces"][0]["patch_map"].dtype == np.float16  # half precision where they are kept
    assert [face["score"] for face in with_maps["faces"]] == [face["score"] for face in report["faces"]]
    evenly = detect_fake(str(face_video), num_frames=3)
    assert evenly["analysed_frames"] == [0, 10, 19]


def test_videos_return_freed_memory_every_few_frames(detect_fake, face_video, face_photo, monkeypatch):
    """A video's loop trims the heap every TRIM_EVERY_FRAMES analysed frames (resident memory flat on long videos);
    an image never does; the trim itself is available on glibc."""
    import platform

    import mesofcn.detection.pipeline_mesofcn as module
    from mesofcn.detection.memory import release_freed_memory

    assert release_freed_memory() is (platform.libc_ver()[0] == "glibc")
    calls = []
    monkeypatch.setattr(module, "TRIM_EVERY_FRAMES", 6)
    monkeypatch.setattr(module, "release_freed_memory", lambda: calls.append(1))
    assert detect_fake(str(face_video), every=1)["frames_analysed"] == 20
    assert len(calls) == 3  # after frames 6, 12 and 18
    detect_fake(str(face_photo))
    assert len(calls) == 3


def test_lists_and_arrays_batch_across_inputs(detect_fake, face_photo, face_video):
    photo = np.asarray(Image.open(face_photo).convert("RGB"))
    reports = detect_fake([photo, str(face_video), Image.fromarray(photo)], every=5)
    assert [r["media"] for r in reports] == ["image", "video", "image"]
    assert reports[0]["path"] is None and reports[1]["frames_analysed"] == 4
    assert reports[0]["score"] == pytest.approx(reports[2]["score"], abs=1e-6)


def test_input_without_a_face_gets_a_no_face_report(detect):
    report = detect(np.zeros((120, 160, 3), dtype=np.uint8))
    assert report["label"] == "no_face" and report["score"] is None
    assert report["tracks"] == [] and report["faces"] == [] and report["frames_analysed"] == 1


def test_bf16_pipeline_scores_close_to_fp32(checkpoint_dir, face_photo, detect):
    fast = pipeline("deepfake-detection", model=str(checkpoint_dir), dtype=torch.bfloat16, trust_remote_code=False)
    a, b = detect(str(face_photo)), fast(str(face_photo))
    assert len(a["faces"]) == len(b["faces"])
    for fa, fb in zip(a["faces"], b["faces"], strict=True):
        assert abs(fa["score"] - fb["score"]) < 0.02


def test_bad_threshold_is_refused(detect):
    with pytest.raises(ValueError, match="threshold"):
        detect(np.zeros((8, 8, 3), np.uint8), threshold=1.5)


def test_misspelt_options_are_refused(detect):
    with pytest.raises(TypeError, match="evry"):
        detect(np.zeros((8, 8, 3), np.uint8), evry=5)


def test_results_do_not_depend_on_batch_size(checkpoint_dir, group_photo):
    """Ten faces (five per image) scored one at a time and four at a time."""
    reports = [
        pipeline("deepfake-detection", model=str(checkpoint_dir), batch_size=size, trust_remote_code=False)(
            [str(group_photo), str(group_photo)]
        )
        for size in (1, 4)
    ]
    for one, four in zip(reports[0], reports[1], strict=True):
        assert len(one["faces"]) == len(four["faces"]) == 5
        for a, b in zip(one["faces"], four["faces"], strict=True):
            assert a["box"] == b["box"] and abs(a["score"] - b["score"]) < 1e-5
            np.testing.assert_allclose(a["patch_map"], b["patch_map"], atol=1e-5)


REMOTE_PIPELINE_SCRIPT = """
import json, sys
sys.modules["mesofcn"] = None  # as on a machine without the package
from transformers import pipeline
detect = pipeline("deepfake-detection", model=sys.argv[1], trust_remote_code=True)
report = detect(sys.argv[2])
print(json.dumps({"module": type(detect).__module__, "label": report["label"],
                  "scores": [face["score"] for face in report["faces"]]}))
"""


@pytest.mark.parametrize("saver", ["pipeline.save_pretrained", "save_detector"])
def test_pipeline_saved_with_the_checkpoint_runs_as_remote_code(detect, tmp_path, face_photo, saver):
    import json

    from mesofcn.detection.registration import save_detector

    saved = tmp_path / "with_pipeline"
    if saver == "save_detector":
        save_detector(make_model(seed=1), MesoFCNImageProcessor(), saved, with_pipeline=True)
    else:
        detect.save_pretrained(saved)
    assert (saved / "pipeline_mesofcn.py").is_file() and (saved / "model.safetensors").is_file()
    config = json.loads((saved / "config.json").read_text())
    assert config["custom_pipelines"]["deepfake-detection"]["impl"] == "pipeline_mesofcn.DeepfakeDetectionPipeline"
    remote = run_python_without_mesofcn(REMOTE_PIPELINE_SCRIPT, saved, face_photo, workdir=tmp_path)
    local = detect(str(face_photo))
    assert remote["module"].startswith("transformers_modules.")
    assert remote["label"] == local["label"]
    np.testing.assert_allclose(remote["scores"], [face["score"] for face in local["faces"]], atol=1e-6)


INSTALLED_PIPELINE_SCRIPT = """
import json, sys
import mesofcn
from transformers import pipeline
detect = pipeline("deepfake-detection", model=sys.argv[1])  # no trust_remote_code
report = detect(sys.argv[2])
print(json.dumps({"module": type(detect).__module__, "label": report["label"], "score": report["score"],
                  "scores": [face["score"] for face in report["faces"]],
                  "remote_code": sorted(name for name in sys.modules if name.startswith("transformers_modules"))}))
"""


def test_installed_package_loads_a_training_checkpoint_without_a_prompt(capsys, tmp_path, face_photo):
    """A checkpoint as training writes it carries auto_map and code files; with mesofcn installed, pipeline() uses
    the installed classes: no trust_remote_code, no "Do you wish to run the custom code?" on a closed stdin."""
    import json
    import os
    import subprocess
    import sys

    from mesofcn.cli import main
    from mesofcn.detection.registration import save_detector

    folder = tmp_path / "trained"
    save_detector(make_model(seed=1), MesoFCNImageProcessor(), folder)
    assert "auto_map" in json.loads((folder / "config.json").read_text())
    completed = subprocess.run(
        [sys.executable, "-c", INSTALLED_PIPELINE_SCRIPT, str(folder), str(face_photo)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "custom code" not in completed.stdout + completed.stderr
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert loaded["module"] == "mesofcn.detection.pipeline_mesofcn" and loaded["remote_code"] == []

    report_path = tmp_path / "cli.json"
    assert main(["detect", str(face_photo), "--model", str(folder), "--json", str(report_path), "--quiet"]) == 0
    capsys.readouterr()
    cli = json.loads(report_path.read_text())[0]
    assert loaded["label"] == cli["label"] and loaded["score"] == pytest.approx(cli["score"], abs=1e-4)
    cli_scores = [frame["score"] for track in cli["tracks"] for frame in track["frames"]]
    assert loaded["scores"] == pytest.approx(cli_scores, abs=1e-4) and cli_scores
