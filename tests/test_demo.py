"""`mesofcn demo`: two clips made on the spot, detection on both, overlays and reports written."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import pytest

from mesofcn.cli import main
from mesofcn.detection.defaults import DEFAULT_MODEL_ENV

pytest.importorskip("skimage")


@pytest.fixture
def no_default_model(monkeypatch, tmp_path):
    """An installation without a default model (whatever this checkout has installed)."""
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    monkeypatch.setattr(
        "mesofcn.detection.defaults.packaged_model_path", lambda name="": tmp_path / "no-default" / name
    )


def test_demo_without_any_model_runs_end_to_end_and_says_the_weights_are_random(tmp_path, capsys, no_default_model):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "10", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "randomly initialised" in printed and "mean nothing" in printed
    reports = json.loads((out / "reports.json").read_text())
    assert [r["path"] for r in reports] == [str(out / "demo_real.mp4"), str(out / "demo_manipulated.mp4")]
    for report in reports:
        assert report["weights"].startswith("random") and report["model"] == "random-init"
        assert len(report["tracks"]) == 1 and report["frames_analysed"] == 2
    with av.open(str(out / "demo_manipulated_overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_demo_uses_the_installed_default_model(tmp_path, capsys, monkeypatch, fake_checkpoint):
    default = tmp_path / "default"
    shutil.copytree(fake_checkpoint, default)
    (default / "README.md").write_text("# a default model\n")
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(default))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "6", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "randomly initialised" not in printed and printed.count("FAKE") == 2
    assert f"model: default ({default})" in printed
    assert all(report["model"] == str(default) for report in json.loads((out / "reports.json").read_text()))


def test_demo_clips_differ_only_around_the_face(tmp_path):
    from mesofcn.cli.demo import make_demo_clips

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
    assert f"model: {fake_checkpoint}" in printed and printed.count("FAKE") == 2 and "randomly" not in printed
