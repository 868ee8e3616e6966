"""`mesofcn evaluate --media LABELS.csv`: metrics checked by hand with a stand-in detector (no model, no face
detector), bad rows and bad label files, groups, output files, path resolution, and one run through the real
pipeline on synthetic media compared with `mesofcn detect`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

import mesofcn.cli.commands
import mesofcn.cli.common
import mesofcn.cli.detect
from mesofcn import __version__
from mesofcn.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from mesofcn.detection.media_files import MediaError
from mesofcn.training.media_evaluation import bootstrap_auc_interval, mann_whitney_auc
from tests.conftest import write_video

OUTPUT_FILES = {"results.json", "predictions.csv", "roc.png", "scores.png"}
#: The brief's example: reals 0.1, 0.2, 0.6 and fakes 0.4, 0.8, 0.9 at threshold 0.5.
EXAMPLE = {"r1.jpg": 0.1, "r2.jpg": 0.2, "r3.jpg": 0.6, "f1.mp4": 0.4, "f2.mp4": 0.8, "f3.mp4": 0.9}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


class StandInDetector:
    """
    Called like the deepfake-detection pipeline: a report per path from `scores` (file name -> verdict score, or
    None for no face). Each face-bearing item has one track of two analysed frames scored `s` and `s / 2`; the
    verdict is the pipeline's default rule on that track (its score at or above the threshold). Missing files raise
    the pipeline's MediaError.
    """

    def __init__(self, scores: dict[str, float | None]):
        self.scores = scores
        self.calls: list[tuple[str, dict]] = []
        self.model = SimpleNamespace(name_or_path="stand-in-model")

    def __call__(self, path: str, **options) -> dict:
        self.calls.append((path, options))
        if not Path(path).is_file():
            raise MediaError(path, "file not found")
        score = self.scores[Path(path).name]
        if score is None:
            return {"path": path, "label": "no_face", "score": None, "tracks": [], "frames_analysed": 3}
        frames = [{"index": 0, "score": score}, {"index": 5, "score": score / 2}]
        label = "fake" if score >= options["threshold"] else "real"
        return {
            "path": path,
            "label": label,
            "score": score,
            "tracks": [{"id": 7, "frames": frames}],
            "frames_analysed": 2,
        }


@pytest.fixture
def stand_in(monkeypatch):
    """Install a stand-in detector for `scores` in place of the model loader that detect and evaluate share."""

    def install(scores: dict[str, float | None]) -> StandInDetector:
        detector = StandInDetector(scores)

        def load(model, device, dtype, batch_size, backend=None, threads=None):
            detector.loaded_with = (model, device, dtype, batch_size)
            return detector

        for module in (mesofcn.cli.common, mesofcn.cli.detect):  # evaluate --media's loader, and detect's
            monkeypatch.setattr(module, "load_detection_pipeline", load)
        return detector

    return install


def write_labels(path: Path, rows: list[tuple], header=("path", "label"), touch: Path | None = None) -> Path:
    """A labels CSV; with `touch`, an (empty) file for each listed path under that folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    if touch is not None:
        for row in rows:
            (touch / row[0]).parent.mkdir(parents=True, exist_ok=True)
            (touch / row[0]).touch()
    return path


def example_labels(folder: Path) -> Path:
    rows = [(name, "real" if name.startswith("r") else "fake") for name in EXAMPLE]
    return write_labels(folder / "labels.csv", rows, touch=folder)


def read_outputs(out: Path) -> tuple[dict, list[dict]]:
    return json.loads((out / "results.json").read_text()), list(csv.DictReader((out / "predictions.csv").open()))


def test_metrics_by_hand_on_the_example(capsys, tmp_path, stand_in):
    detector = stand_in(EXAMPLE)
    labels, out = example_labels(tmp_path / "media"), tmp_path / "eval"
    code, stdout, err = run(capsys, "evaluate", "--media", labels, "--out", out, "--quiet", "--model", "m")
    assert code == EXIT_OK, err
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES  # and no temporary files left behind
    results, rows = read_outputs(out)
    overall = results["overall"]
    assert (overall["n_real"], overall["n_fake"]) == (3, 3)
    # fake 0.4 beats 2 reals, 0.8 and 0.9 beat all 3: 8 of 9 pairs
    assert overall["auc"] == pytest.approx(8 / 9)
    # ranked 0.9 F, 0.8 F, 0.6 R, 0.4 F: precision 1, 1, 3/4 at the three fakes
    assert overall["ap"] == pytest.approx((1 + 1 + 3 / 4) / 3)
    # the ROC reaches FPR 1/3 exactly where TPR reaches 2/3: FNR = FPR = 1/3
    assert overall["eer"] == pytest.approx(1 / 3)
    assert overall["accuracy"] == pytest.approx(4 / 6)  # 0.6 real flagged, 0.4 fake missed
    assert overall["flagged_real_share"] == pytest.approx(1 / 3)
    assert overall["caught_fake_share"] == pytest.approx(2 / 3)
    low, high = overall["auc_ci"]
    assert 0.0 <= low <= 8 / 9 <= high <= 1.0 and low < high
    # frame level: two faces per item (s and s/2), each with its item's label
    real_frames = [s for name, s in EXAMPLE.items() if name.startswith("r") for s in (s, s / 2)]
    fake_frames = [s for name, s in EXAMPLE.items() if name.startswith("f") for s in (s, s / 2)]
    expected = roc_auc_score([0] * 6 + [1] * 6, real_frames + fake_frames)
    assert overall["frame"] == {"n_real": 6, "n_fake": 6, "auc": pytest.approx(expected)}
    assert results["groups"] == {} and results["n_errors"] == 0 and results["errors"] == []
    assert results["n_no_face"] == {"real": 0, "fake": 0}
    assert results["model"] == "stand-in-model" and results["mesofcn_version"] == __version__
    assert results["threshold"] == 0.5 and results["sampling"] == {"mode": "every", "every": 5}
    assert results["bootstrap"]["samples"] == 1000 and results["bootstrap"]["seed"] == 0
    # predictions.csv: per item its row, then a row per analysed face
    items = [row for row in rows if row["kind"] == "item"]
    frames = [row for row in rows if row["kind"] == "frame"]
    assert [row["path"] for row in items] == list(EXAMPLE) and len(frames) == 12
    assert items[2] == {
        "kind": "item",
        "path": "r3.jpg",
        "label": "real",
        "group": "",
        "score": "0.600000",
        "verdict": "fake",
        "frames_analysed": "2",
        "frame": "",
        "track": "",
        "error": "",
    }
    assert [(row["frame"], row["track"], row["score"]) for row in rows[1:3]] == [
        ("0", "7", "0.100000"),
        ("5", "7", "0.050000"),
    ]
    # the summary table
    assert "0.889 [" in stdout and "1/3 (33%)" in stdout and "2/3 (67%)" in stdout
    # detect's pipeline options and loader defaults, the paths resolved against the CSV's folder
    assert detector.loaded_with == ("m", "cpu", "fp32", 16)
    path, options = detector.calls[0]
    assert path == str(tmp_path / "media" / "r1.jpg")
    assert options == {"threshold": 0.5, "progress": False, "return_heatmaps": False, **verdict_rule_options()}


def verdict_rule_options() -> dict:
    """Whatever verdict-rule options `mesofcn detect` passes by default (none in older versions)."""
    detect_args = mesofcn.cli.commands.build_parser().parse_args(["detect", "x.png"])
    options = mesofcn.cli.commands.detect_call_options(detect_args)
    return {key: value for key, value in options.items() if key not in {"threshold", "progress", "return_heatmaps"}}


def test_same_pipeline_options_as_detect(capsys, tmp_path, stand_in):
    detector = stand_in(EXAMPLE)
    labels = example_labels(tmp_path)
    argv = ["--every", 3, "--threshold", 0.7, "--batch-size", 4, "--max-image-pixels", 10**6, "--quiet"]
    argv += ["--min-face-fraction", 0.25, "--min-track-share", 0.1]
    code, _, err = run(capsys, "evaluate", "--media", labels, "--out", tmp_path / "o", *argv, "--bootstrap", 10)
    assert code == EXIT_OK, err
    evaluate_options = detector.calls[0][1]
    assert detector.loaded_with[3] == 4
    run(capsys, "detect", tmp_path / "absent.jpg", *argv)  # the stand-in records the call, then fails
    assert detector.calls[-1] == (str(tmp_path / "absent.jpg"), evaluate_options)
    assert evaluate_options["every"] == 3 and evaluate_options["num_frames"] is None
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["sampling"] == {"mode": "every", "every": 3} and results["threshold"] == 0.7
    assert results["verdict_rule"] == {"min_face_fraction": 0.25, "min_track_share": 0.1}
    assert results["overall"]["flagged_real_share"] == 0 and results["overall"]["caught_fake_share"] == pytest.approx(
        2 / 3
    )


def test_bootstrap_interval_is_seeded_and_the_fast_auc_matches_sklearn(capsys, tmp_path, stand_in):
    reals, fakes = np.array([0.1, 0.2, 0.6]), np.array([0.4, 0.8, 0.9])
    first = bootstrap_auc_interval(reals, fakes, 1000, seed=0)
    assert first == bootstrap_auc_interval(reals, fakes, 1000, seed=0) and first[0] <= 8 / 9 <= first[1]
    rng = np.random.default_rng(0)
    many_reals, many_fakes = rng.normal(0.4, 0.2, 40), rng.normal(0.6, 0.2, 30)
    assert bootstrap_auc_interval(many_reals, many_fakes, 300, seed=0) != bootstrap_auc_interval(
        many_reals, many_fakes, 300, seed=1
    )
    for _ in range(20):
        r, f = rng.integers(0, 5, rng.integers(1, 9)) / 4, rng.integers(0, 5, rng.integers(1, 9)) / 4  # many ties
        assert mann_whitney_auc(r, f) == pytest.approx(roc_auc_score([0] * len(r) + [1] * len(f), [*r, *f]))
    # through the command: --bootstrap and --seed reach the interval, which repeats exactly
    stand_in(EXAMPLE)
    labels = example_labels(tmp_path)
    for seed, out in ((3, "a"), (3, "b")):
        run(
            capsys,
            "evaluate",
            "--media",
            labels,
            "--out",
            tmp_path / out,
            "--quiet",
            "--seed",
            seed,
            "--bootstrap",
            400,
        )
        overall = json.loads((tmp_path / out / "results.json").read_text())["overall"]
        assert overall["auc_ci"] == bootstrap_auc_interval(reals, fakes, 400, seed=3)


def test_groups_no_face_and_a_missing_file(capsys, tmp_path, stand_in):
    scores = {"a.jpg": 0.1, "b.jpg": 0.2, "c.jpg": 0.6, "d.mp4": 0.4, "e.mp4": 0.8, "f.mp4": 0.9, "g.mp4": None}
    stand_in(scores)
    rows = [
        ("a.jpg", "real", ""),
        ("b.jpg", "0", "camera"),
        ("c.jpg", "REAL", "camera"),
        ("d.mp4", "fake", "tool-a"),
        ("e.mp4", "1", "tool-a"),
        ("f.mp4", "fake", "tool-b"),
        ("g.mp4", "fake", "tool-b"),
    ]
    labels = write_labels(tmp_path / "labels.csv", rows, header=("path", "label", "group"), touch=tmp_path)
    with labels.open("a") as handle:
        handle.write("missing.mp4,fake,tool-b\n")
    out = tmp_path / "eval"
    code, stdout, err = run(capsys, "evaluate", "--media", labels, "--out", out, "--quiet", "--bootstrap", 200)
    assert code == EXIT_SOME_FAILED
    assert f"error: {tmp_path / 'missing.mp4'}" in err and "file not found" in err and "Traceback" not in err
    results, predictions = read_outputs(out)
    assert results["n_items"] == 8 and results["n_errors"] == 1
    assert results["errors"] == [{"path": "missing.mp4", "error": f"{tmp_path / 'missing.mp4'}: file not found"}]
    assert results["n_no_face"] == {"real": 0, "fake": 1}
    overall = results["overall"]
    # the no-face fake scores 0.0 and is called real; the missing file is in no metric
    assert (overall["n_real"], overall["n_fake"]) == (3, 4)
    assert overall["auc"] == pytest.approx((2 + 3 + 3 + 0) / 12)
    assert overall["accuracy"] == pytest.approx(4 / 7) and overall["caught_fake_share"] == pytest.approx(2 / 4)
    assert overall["no_face"] == {"real": 0, "fake": 1} and overall["n_errors"] == 1
    groups = results["groups"]
    assert set(groups) == {"camera", "tool-a", "tool-b"}
    # a group's fakes against ALL reals (0.1, 0.2, 0.6)
    tool_a = groups["tool-a"]
    assert tool_a["versus"] == "all reals" and (tool_a["n_real"], tool_a["n_fake"]) == (3, 2)
    assert tool_a["auc"] == pytest.approx(5 / 6) and tool_a["caught_fake_share"] == 0.5
    assert tool_a["ap"] == pytest.approx((1 + 2 / 3) / 2)  # 0.8 F, 0.6 R, 0.4 F
    assert tool_a["flagged_real_share"] is None and tool_a["group_n_real"] == 0
    tool_b = groups["tool-b"]
    assert tool_b["auc"] == pytest.approx(3 / 6) and tool_b["no_face"] == {"real": 0, "fake": 1}
    assert tool_b["n_errors"] == 1 and tool_b["caught_fake_share"] == 0.5
    # a group of reals only: just its flagged share
    assert groups["camera"]["flagged_real_share"] == 0.5 and groups["camera"]["n_real"] == 2
    assert "auc" not in groups["camera"] and "only real items" in groups["camera"]["note"]
    items = {row["path"]: row for row in predictions if row["kind"] == "item"}
    assert items["missing.mp4"]["verdict"] == "error" and "file not found" in items["missing.mp4"]["error"]
    assert items["missing.mp4"]["score"] == "" and items["g.mp4"]["verdict"] == "no_face"
    assert items["g.mp4"]["score"] == "0.000000" and items["g.mp4"]["frames_analysed"] == "3"
    assert items["d.mp4"]["group"] == "tool-a"
    assert not [row for row in predictions if row["kind"] == "frame" and row["path"] in {"g.mp4", "missing.mp4"}]
    table = stdout.splitlines()
    assert any(line.startswith("tool-a") and "0.833 [" in line and "1/2 (50%)" in line for line in table)
    assert any(line.startswith("camera") and "1/2 (50%)" in line and "n/a" in line for line in table)
    assert "8 items, 1 not analysed" in stdout and "no face found in 0 real and 1 fake" in stdout
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES


def test_only_one_class_gives_null_auc_and_says_so(capsys, tmp_path, stand_in):
    stand_in({"r1.jpg": 0.1, "r2.jpg": 0.7})
    labels = write_labels(tmp_path / "labels.csv", [("r1.jpg", "real"), ("r2.jpg", "real")], touch=tmp_path)
    code, stdout, err = run(capsys, "evaluate", "--media", labels, "--out", tmp_path / "o", "--quiet")
    assert code == EXIT_OK, err
    overall = json.loads((tmp_path / "o" / "results.json").read_text())["overall"]
    assert overall["auc"] is None and overall["auc_ci"] is None and overall["ap"] is None and overall["eer"] is None
    assert "need real and fake items: 2 real, 0 fake" in overall["note"]
    assert overall["flagged_real_share"] == 0.5 and overall["caught_fake_share"] is None
    assert {p.name for p in (tmp_path / "o").iterdir()} == OUTPUT_FILES


def test_paths_relative_to_the_csv_folder_or_to_root(capsys, tmp_path, stand_in):
    detector = stand_in(EXAMPLE)
    data = tmp_path / "data"
    rows = [(f"media/{name}", "real" if name.startswith("r") else "fake") for name in EXAMPLE]
    write_labels(data / "unused.csv", rows, touch=data)
    labels = write_labels(tmp_path / "lists" / "labels.csv", rows)
    code, _, err = run(capsys, "evaluate", "--media", labels, "--out", tmp_path / "a", "--quiet", "--bootstrap", 0)
    assert code == EXIT_SOME_FAILED and err.count("file not found") == 6
    assert detector.calls[0][0] == str(tmp_path / "lists" / "media" / "r1.jpg")
    code, _, err = run(
        capsys, "evaluate", "--media", labels, "--root", data, "--out", tmp_path / "b", "--quiet", "--bootstrap", 0
    )
    assert code == EXIT_OK, err
    assert detector.calls[-1][0] == str(data / "media" / "f3.mp4")
    results, predictions = read_outputs(tmp_path / "b")
    assert results["overall"]["auc"] == pytest.approx(8 / 9) and results["overall"]["auc_ci"] is None
    assert results["root"] == str(data) and predictions[0]["path"] == "media/r1.jpg"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("file,label\nx.jpg,real\n", "missing column(s) path"),
        ("path,label\nx.jpg,maybe\n", "line 2: label must be real or fake"),
        ("", "missing column(s) label, path"),
        ("path,label\n", "no rows"),
        (None, "cannot read"),
    ],
    ids=["missing-column", "unknown-label", "empty", "header-only", "absent"],
)
def test_bad_labels_file_is_a_one_line_error(capsys, tmp_path, monkeypatch, content, problem):
    def never(*args):
        raise AssertionError("the model must not load for a bad labels file")

    monkeypatch.setattr(mesofcn.cli.common, "load_detection_pipeline", never)
    labels = tmp_path / "labels.csv"
    if content is not None:
        labels.write_text(content)
    code, out, err = run(capsys, "evaluate", "--media", labels, "--out", tmp_path / "o")
    assert code == EXIT_USAGE
    assert err.startswith(f"error: {labels}") and problem in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_mode_options_and_the_default_model_error(capsys, tmp_path, monkeypatch):
    labels = write_labels(tmp_path / "labels.csv", [("x.png", "real")], touch=tmp_path)
    out = ["--out", tmp_path / "o"]
    cases = {
        "--model is required with --dataset": ["--dataset", tmp_path],
        "--every: only with --media": ["--dataset", tmp_path, "--model", "m", "--every", 2],
        "--task: only with --dataset": ["--media", labels, "--task", "ff-c23-df"],
        "--threshold must be between 0 and 1": ["--media", labels, "--threshold", 2],
        "not a folder": ["--media", labels, "--root", tmp_path / "nowhere"],
    }
    for message, argv in cases.items():
        code, _, err = run(capsys, "evaluate", *argv, *out)
        assert code == EXIT_USAGE and message in err and len(err.strip().splitlines()) == 1, (message, err)
    with pytest.raises(SystemExit):  # argparse: one of --dataset/--media, not both
        main(["evaluate", "--dataset", str(tmp_path), "--media", str(labels), *map(str, out)])
    capsys.readouterr()
    # no --model and no default installed: the very error detect gives
    monkeypatch.setenv("MESOFCN_DEFAULT_MODEL", str(tmp_path / "no-default"))
    code, _, detect_err = run(capsys, "detect", tmp_path / "x.png")
    assert code == EXIT_USAGE
    code, _, evaluate_err = run(capsys, "evaluate", "--media", labels, *out)
    assert code == EXIT_USAGE and evaluate_err == detect_err and "MESOFCN_DEFAULT_MODEL" in evaluate_err


# --- the real pipeline ----------------------------------------------------------------------------------------


def test_end_to_end_through_the_real_pipeline_matches_detect(capsys, tmp_path, checkpoint_dir):
    """A random-weights checkpoint, RetinaFace, and synthetic media built from scikit-image's astronaut photo."""
    skimage_data = pytest.importorskip("skimage.data")
    media = tmp_path / "media"
    media.mkdir()
    head = np.asarray(Image.fromarray(skimage_data.astronaut()[17:227, 130:320]).resize((114, 126)))
    canvas = np.full((240, 320, 3), (40, 90, 140), dtype=np.uint8)
    photo = canvas.copy()
    photo[60:186, 100:214] = head
    Image.fromarray(photo).save(media / "photo.png")
    frames = []
    for i in range(10):
        frame = canvas.copy()
        frame[50:176, 60 + 3 * i : 174 + 3 * i] = head
        frames.append(frame)
    write_video(media / "clip.mp4", frames)
    Image.new("RGB", (64, 48), (90, 90, 90)).save(media / "blank.png")
    rows = [("photo.png", "real", "stills"), ("clip.mp4", "fake", "tool"), ("blank.png", "fake", "tool")]
    labels = write_labels(media / "labels.csv", rows, header=("path", "label", "group"))
    out = tmp_path / "eval"
    sampling = ["--every", 5, "--model", checkpoint_dir, "--quiet"]
    code, stdout, err = run(capsys, "evaluate", "--media", labels, "--out", out, "--bootstrap", 50, *sampling)
    assert code == EXIT_OK, err
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES
    results, predictions = read_outputs(out)
    assert results["model"] == str(checkpoint_dir) and results["n_no_face"] == {"real": 0, "fake": 1}
    items = {row["path"]: row for row in predictions if row["kind"] == "item"}
    assert items["blank.png"]["verdict"] == "no_face" and items["blank.png"]["score"] == "0.000000"
    assert items["clip.mp4"]["frames_analysed"] == "2"
    assert sum(row["kind"] == "frame" and row["path"] == "clip.mp4" for row in predictions) >= 2
    assert 0.0 <= results["overall"]["auc"] <= 0.5  # the blank fake (no face, 0.0) ranks below the photo
    assert results["overall"]["frame"]["n_fake"] >= 2 and results["overall"]["frame"]["n_real"] == 1
    assert results["groups"]["tool"]["n_real"] == 1 and results["groups"]["stills"]["flagged_real_share"] in (0, 1)
    # the same verdicts and scores as `mesofcn detect` on the same files
    report_path = tmp_path / "detect.json"
    paths = [media / name for name, _, _ in rows]
    code, _, err = run(capsys, "detect", *paths, "--json", report_path, *sampling)
    assert code == EXIT_OK, err
    for report, (name, _, _) in zip(json.loads(report_path.read_text()), rows, strict=True):
        assert items[name]["verdict"] == report["label"]
        if report["score"] is not None:
            assert float(items[name]["score"]) == pytest.approx(report["score"], abs=1e-4)
    assert Image.open(out / "roc.png").size == (640, 520) and Image.open(out / "scores.png").size == (640, 520)


def test_frame_auc_counts_only_the_tracks_that_may_decide():
    from mesofcn.data.media_lists import MediaListItem
    from mesofcn.training.media_evaluation import frame_metrics, item_result

    def report(tracks):
        return {"label": "fake", "score": 0.9, "frames_analysed": 2, "tracks": tracks}

    speaker = {"id": 0, "eligible": True, "frames": [{"index": 0, "score": 0.9}, {"index": 5, "score": 0.8}]}
    bystander = {"id": 1, "eligible": False, "frames": [{"index": 0, "score": 0.1}]}
    fake = item_result(MediaListItem(Path("f.mp4"), "f.mp4", 1, ""), report([speaker, bystander]))
    real = item_result(MediaListItem(Path("r.mp4"), "r.mp4", 0, ""), report([{**speaker, "id": 3} | {"frames": [
        {"index": 0, "score": 0.2}]}]))  # fmt: skip
    assert len(fake.frames) == 3 and fake.eligible_scores() == [0.9, 0.8]
    assert frame_metrics([real], [fake]) == {"n_real": 1, "n_fake": 2, "auc": 1.0}


def test_a_group_with_its_own_reals_also_gets_the_within_source_auc(capsys, tmp_path, stand_in):
    """A tool's fakes (0.8, 0.9) against the tool's own real inputs (0.85, 0.2) only: 3 of 4 pairs ranked right,
    while against all reals (with an unrelated 0.1) it is 5 of 6."""
    stand_in({"r.jpg": 0.1, "t_real1.jpg": 0.85, "t_real2.jpg": 0.2, "t_fake1.mp4": 0.8, "t_fake2.mp4": 0.9})
    rows = [
        ("r.jpg", "real", "real:photo"),
        ("t_real1.jpg", "real", "tool"),
        ("t_real2.jpg", "real", "tool"),
        ("t_fake1.mp4", "fake", "tool"),
        ("t_fake2.mp4", "fake", "tool"),
    ]
    labels = write_labels(tmp_path / "labels.csv", rows, header=("path", "label", "group"), touch=tmp_path)
    code, stdout, err = run(capsys, "evaluate", "--media", labels, "--out", tmp_path / "o", "--quiet")
    assert code == EXIT_OK, err
    tool = json.loads((tmp_path / "o" / "results.json").read_text())["groups"]["tool"]
    assert tool["auc"] == pytest.approx(5 / 6) and tool["auc_within"] == pytest.approx(3 / 4)
    low, high = tool["auc_within_ci"]
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    assert tool["group_n_real"] == 2 and tool["flagged_real_share"] == 0.5
    assert any(line.startswith("tool") and "0.833 [" in line and "0.750 [" in line for line in stdout.splitlines())
