"""Threshold calibration: the crossing shift of each item, the shift that leaves at most the allowed share of reals
flagged, folding it into the classifier, and `mesofcn calibrate` end to end on synthetic media."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mesofcn.cli import EXIT_OK, EXIT_USAGE, main
from mesofcn.data.media_lists import MediaListItem
from mesofcn.detection.modeling_mesofcn import MesoFCNForDeepfakeDetection
from mesofcn.training.calibration import (
    calibration_shift,
    flagged_share,
    fold_shift_into_classifier,
    item_crossing,
    shifted_score,
)
from mesofcn.training.media_evaluation import MediaItemResult
from tests.conftest import make_model, save_biased_checkpoint
from tests.test_evaluate_media import write_labels


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def item(name: str, label: int, tracks: dict[int, list[float]], eligible=None, verdict_track=None, error=None):
    """A result with one frame per listed score in each track (eligible: all tracks unless given)."""
    frames = [(index, track, score) for track, scores in tracks.items() for index, score in enumerate(scores)]
    return MediaItemResult(
        MediaListItem(Path(name), name, label, ""),
        verdict=None if error else ("no_face" if not tracks else "real"),
        score=None,
        frames=frames,
        error=error,
        eligible_tracks=frozenset(tracks if eligible is None else eligible),
        verdict_track=verdict_track,
    )


def test_one_frame_item_crosses_at_its_log_odds_and_a_track_mean_at_half():
    assert item_crossing(item("a", 0, {1: [0.8]})) == pytest.approx(logit(0.8), abs=1e-6)
    two = item("b", 0, {1: [0.9, 0.3]})
    crossing = item_crossing(two)
    assert shifted_score(two, crossing) == pytest.approx(0.5, abs=1e-6)
    assert shifted_score(two, crossing + 1e-3) < 0.5 <= shifted_score(two, crossing - 1e-3)
    # the most suspicious of two eligible tracks decides; a bystander (not eligible) never does
    assert item_crossing(item("c", 0, {1: [0.2], 2: [0.7]})) == pytest.approx(logit(0.7), abs=1e-6)
    assert item_crossing(item("d", 0, {1: [0.2], 2: [0.95]}, eligible={1})) == pytest.approx(logit(0.2), abs=1e-6)
    # a fallback verdict (no eligible track) keeps the track that decided; no face: no crossing
    assert item_crossing(item("e", 0, {1: [0.2], 2: [0.6]}, eligible=set(), verdict_track=2)) == pytest.approx(
        logit(0.6), abs=1e-6
    )
    assert item_crossing(item("f", 0, {})) is None


def test_shift_leaves_exactly_the_allowed_share_of_reals_flagged():
    scores = [0.1, 0.2, 0.3, 0.4, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95]
    results = [item(f"r{i}", 0, {1: [s]}) for i, s in enumerate(scores)]
    results += [item("nf", 0, {}), item("broken", 0, {}, error="broken: not media"), item("f", 1, {1: [0.97]})]
    # 11 analysed reals (the error is left out, the no-face item counts and is never flagged)
    assert flagged_share(results, 0, 0.0) == (6, 11)
    shift = calibration_shift(results, max_flagged=0.2)  # floor(2.2) = 2 may stay flagged
    assert shift == pytest.approx(logit(0.8) + 1e-4, abs=1e-6)
    assert flagged_share(results, 0, shift) == (2, 11)
    assert flagged_share(results, 1, shift) == (1, 1)
    assert flagged_share(results, 0, calibration_shift(results, 0.0)) == (0, 11)


def test_shift_is_negative_when_fewer_reals_are_flagged_than_allowed():
    results = [item(f"r{i}", 0, {1: [s]}) for i, s in enumerate([0.05, 0.1, 0.2, 0.3])]
    shift = calibration_shift(results, max_flagged=0.5)  # two may be flagged: the third highest sets the point
    assert shift == pytest.approx(logit(0.1) + 1e-4, abs=1e-6) and shift < 0
    assert flagged_share(results, 0, shift) == (2, 4)


def test_bad_targets_and_no_reals_are_refused():
    results = [item("f", 1, {1: [0.9]})]
    with pytest.raises(ValueError, match="at least one real item"):
        calibration_shift(results, 0.05)
    with pytest.raises(ValueError, match="max_flagged"):
        calibration_shift([item("r", 0, {1: [0.4]})], 1.0)


def test_folding_moves_every_face_log_odds_by_the_shift():
    model = make_model(seed=3).eval()
    pixels = torch.randn(4, 3, 128, 128)
    with torch.no_grad():
        before = model(pixels).logits.softmax(-1)[:, 1].double()
        fold_shift_into_classifier(model, 1.25)
        after = model(pixels).logits.softmax(-1)[:, 1].double()
    expected = torch.sigmoid(torch.logit(before) - 1.25)
    assert torch.allclose(after, expected, atol=1e-5)


def synthetic_media(folder):
    """Two photos and a clip of the astronaut's head on a plain background (one face each)."""
    skimage_data = pytest.importorskip("skimage.data")
    from tests.conftest import write_video

    folder.mkdir()
    head = np.asarray(Image.fromarray(skimage_data.astronaut()[17:227, 130:320]).resize((114, 126)))
    canvas = np.full((240, 320, 3), (40, 90, 140), dtype=np.uint8)
    for index, left in enumerate((100, 150)):
        photo = canvas.copy()
        photo[60:186, left : left + 114] = head
        Image.fromarray(photo).save(folder / f"photo{index}.png")
    frames = []
    for i in range(10):
        frame = canvas.copy()
        frame[50:176, 60 + 3 * i : 174 + 3 * i] = head
        frames.append(frame)
    write_video(folder / "clip.mp4", frames)
    rows = [("photo0.png", "real"), ("photo1.png", "real"), ("clip.mp4", "fake")]
    return write_labels(folder / "labels.csv", rows)


def test_calibrate_command_end_to_end(capsys, tmp_path):
    """A checkpoint that calls every face fake (P = sigmoid(4)) calibrated on two real photos with no flag allowed:
    the new checkpoint calls them real, and its record says what happened to the listed reals and fake."""
    labels = synthetic_media(tmp_path / "media")
    source = save_biased_checkpoint(tmp_path / "biased", 4.0)
    out = tmp_path / "calibrated"
    argv = ["calibrate", "--media", labels, "--model", source, "--out", out, "--max-flagged", "0", "--quiet"]
    code = main([str(a) for a in argv])
    stdout, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert "real items called fake: 2/2 -> 0/2" in stdout and "fake items caught: 1/1 -> 0" in stdout
    record = json.loads((out / "calibration.json").read_text())
    assert record["log_odds_shift"] == pytest.approx(4.0 + 1e-4, abs=1e-5)
    assert record["real"] == {"items": 2, "called_fake_before": 2, "called_fake_after": 0}
    model = MesoFCNForDeepfakeDetection.from_pretrained(out)
    assert model.classifier.bias.tolist() == pytest.approx([0.0, -1e-4], abs=1e-5)
    report_path = tmp_path / "after.json"
    code = main(["detect", str(labels.parent / "photo0.png"), "--model", str(out), "--json", str(report_path)])
    assert code == EXIT_OK
    report = json.loads(report_path.read_text())[0]
    assert report["label"] == "real" and report["score"] == pytest.approx(0.5, abs=1e-4)
    # an existing folder is never overwritten, and a list without reals is refused, each in one line
    assert main([str(a) for a in argv]) == EXIT_USAGE
    assert "already exists" in capsys.readouterr().err
    only_fakes = write_labels(tmp_path / "media" / "fakes.csv", [("clip.mp4", "fake")])
    code = main(["calibrate", "--media", str(only_fakes), "--model", str(source), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "no real items" in err and not (tmp_path / "x").exists()
