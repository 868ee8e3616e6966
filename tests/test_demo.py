"""`mesofcn demo`: two clips made on the spot, detection on both, overlays and reports written."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from mesofcn.cli import main
from mesofcn.defaults import DEFAULT_MODEL_NAME, default_model_path

pytest.importorskip("skimage")


def test_demo_without_a_model_runs_the_bundled_checkpoint_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "10", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"model: {DEFAULT_MODEL_NAME} (bundled)" in printed and printed.count("P(fake)=") == 2
    reports = json.loads((out / "reports.json").read_text())
    assert [r["path"] for r in reports] == [str(out / "demo_real.mp4"), str(out / "demo_manipulated.mp4")]
    for report in reports:
        assert report["weights"] == f"{DEFAULT_MODEL_NAME} (bundled)" and report["model"] == str(default_model_path())
        assert len(report["tracks"]) == 1 and report["frames_analysed"] == 2
    real, manipulated = reports
    assert manipulated["score"] > real["score"]
    with av.open(str(out / "demo_manipulated_overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_demo_clips_differ_only_around_the_face(tmp_path):
    from mesofcn.demo import make_demo_clips

    real, fake = make_demo_clips(tmp_path, frames=3)
    with av.open(str(real)) as a, av.open(str(fake)) as b:
        first_real = next(a.decode(video=0)).to_ndarray(format="rgb24").astype(int)
        first_fake = next(b.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    difference = np.abs(first_real - first_fake).max(axis=2)
    # The astronaut's face box is about x 178-273, y 57-177 of the photo (the first frame is not shifted). The two
    # clips are encoded separately, so H.264 noise (a few grey levels) differs everywhere; the blend is on the face.
    face = difference[60:175, 180:270].mean()
    elsewhere = np.concatenate([difference[300:, :].ravel(), difference[:, 350:].ravel()]).mean()
    assert face > 2.5 * elsewhere and face > 8


def test_demo_with_a_checkpoint_gives_its_verdicts(tmp_path, capsys, fake_checkpoint):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "6", "--model", str(fake_checkpoint), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"model: {fake_checkpoint}" in printed and printed.count("FAKE") == 2
