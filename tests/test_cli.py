"""`mesofcn detect`: summaries, JSON reports, overlays, and one-line errors for every kind of bad input."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import av
import numpy as np
import pytest
from PIL import Image

from mesofcn import __version__
from mesofcn.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from tests.conftest import write_video


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_unloadable_model_says_so_clearly(capsys, tmp_path):
    code, out, err = run(capsys, "detect", tmp_path / "x.png", "--model", tmp_path / "nowhere")
    assert code == EXIT_USAGE and str(tmp_path / "nowhere") in err and "Traceback" not in err
    empty = tmp_path / "empty_ckpt"
    empty.mkdir()
    code, out, err = run(capsys, "detect", tmp_path / "x.png", "--model", empty)
    assert code == EXIT_USAGE and "cannot load this model" in err and len(err.strip().splitlines()) == 1


def test_detect_image_and_video_with_json_report(capsys, tmp_path, fake_checkpoint, face_photo, face_video):
    report_path = tmp_path / "out" / "reports.json"
    code, out, err = run(
        capsys,
        "detect",
        face_photo,
        face_video,
        "--model",
        fake_checkpoint,
        "--every",
        5,
        "--json",
        report_path,
        "--quiet",
    )
    assert code == EXIT_OK, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and "FAKE" in lines[0] and "P(fake)=0.98" in lines[0]
    assert str(face_video) in lines[1] and "4 frames analysed" in lines[1]
    reports = json.loads(report_path.read_text())
    assert [r["path"] for r in reports] == [str(face_photo), str(face_video)]
    video = reports[1]
    for key in (
        "path",
        "label",
        "score",
        "tracks",
        "frames_analysed",
        "model",
        "detector",
        "sampling",
        "mesofcn_version",
    ):
        assert key in video, key
    assert video["mesofcn_version"] == __version__ and video["detector"] == "retinaface-mobilenet0.25"
    assert video["sampling"] == {"mode": "every", "every": 5} and video["model"] == str(fake_checkpoint)
    track = video["tracks"][0]
    assert {"score", "max_score", "frames"} <= set(track)
    assert [f["index"] for f in track["frames"]] == [0, 5, 10, 15]
    assert set(track["frames"][0]) == {"index", "time", "box", "score"}
    assert not list(report_path.parent.glob(".*partial*"))


def test_overlays_for_image_and_video(capsys, tmp_path, fake_checkpoint, face_photo, face_video):
    out_dir = tmp_path / "overlays"
    code, out, err = run(
        capsys,
        "detect",
        face_photo,
        face_video,
        "--model",
        fake_checkpoint,
        "--frames",
        3,
        "--overlay",
        out_dir,
        "--quiet",
    )
    assert code == EXIT_OK, err
    png = out_dir / (face_photo.stem + ".png")
    mp4 = out_dir / (face_video.stem + ".mp4")
    overlay = np.asarray(Image.open(png).convert("RGB"))
    original = np.asarray(Image.open(face_photo).convert("RGB"))
    assert overlay.shape == original.shape
    assert (overlay != original).any(axis=2).mean() > 0.05  # heatmap and box drawn on the face
    with av.open(str(mp4)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 20 and frames[0].shape == (256, 320, 3)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([png.name, mp4.name])


def craft_png_header(path, width, height):
    """A PNG whose IHDR claims width x height pixels, followed by a tiny (wrong-sized) image body."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" + b"\x00" * 3)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def bad_inputs(tmp_path, face_video):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "notes.mp4").write_text("this is not a video\n")
    (folder / "empty.png").write_bytes(b"")
    half = folder / "half.mp4"
    data = face_video.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    huge = craft_png_header(folder / "huge.png", 30000, 30000)
    return {
        "missing": (folder / "missing.mp4", "file not found"),
        "directory": (folder, "directory"),
        "text": (folder / "notes.mp4", "notes.mp4"),
        "empty": (folder / "empty.png", "empty"),
        "truncated": (half, "half.mp4"),
        "huge": (huge, "900,000,000"),
    }


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "empty", "truncated", "huge"])
def test_bad_input_gives_one_line_error_and_nonzero_exit(capsys, bad_inputs, checkpoint_dir, kind):
    path, phrase = bad_inputs[kind]
    code, out, err = run(capsys, "detect", path, "--model", checkpoint_dir, "--quiet")
    assert code == EXIT_SOME_FAILED
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0] and phrase in errors[0], err
    assert "Traceback" not in err


def test_one_bad_input_does_not_stop_the_others(capsys, tmp_path, bad_inputs, checkpoint_dir, face_photo):
    report_path = tmp_path / "r.json"
    missing = bad_inputs["missing"][0]
    code, out, err = run(
        capsys, "detect", missing, face_photo, "--model", checkpoint_dir, "--json", report_path, "--quiet"
    )
    assert code == EXIT_SOME_FAILED and "1 of 2 inputs failed" in err
    reports = json.loads(report_path.read_text())
    assert "error" in reports[0] and reports[1]["label"] in {"real", "fake"}


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (64, 48), 90),
        Image.new("RGBA", (64, 48), (10, 20, 30, 128)),
        Image.fromarray(np.full((48, 64), 40000, dtype=np.uint16)),
        Image.new("RGB", (1, 1), (1, 2, 3)),
    ],
    ids=["grey", "rgba", "16bit", "1x1"],
)
def test_unusual_images_without_faces_get_valid_no_face_reports(capsys, tmp_path, checkpoint_dir, image):
    path = tmp_path / "image.png"
    image.save(path)
    report_path = tmp_path / "r.json"
    code, out, err = run(capsys, "detect", path, "--model", checkpoint_dir, "--json", report_path, "--quiet")
    assert code == EXIT_OK, err
    report = json.loads(report_path.read_text())[0]
    assert report["label"] == "no_face" and report["tracks"] == [] and report["score"] is None
    assert "NO FACE" in out


def test_video_without_a_face_gets_a_no_face_report(capsys, tmp_path, checkpoint_dir):
    frames = [np.full((64, 96, 3), 30 + 5 * i, dtype=np.uint8) for i in range(12)]
    video = write_video(tmp_path / "blank.mp4", frames)
    report_path = tmp_path / "r.json"
    code, out, err = run(capsys, "detect", video, "--model", checkpoint_dir, "--json", report_path, "--quiet")
    assert code == EXIT_OK, err
    report = json.loads(report_path.read_text())[0]
    assert report["label"] == "no_face" and report["frames_analysed"] == 3 and report["tracks"] == []


def test_max_image_pixels_option(capsys, tmp_path, checkpoint_dir):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    code, out, err = run(capsys, "detect", path, "--model", checkpoint_dir, "--max-image-pixels", 50000, "--quiet")
    assert code == EXIT_SOME_FAILED and "60,000" in err


def test_limits_refuse_long_or_large_videos_before_decoding_and_are_recorded(capsys, tmp_path, checkpoint_dir):
    """--max-duration and --max-pixels (a server's limits) refuse a video from its header, in one line naming it;
    the report records the limits in force (defaults: 100 megapixels, 4 hours; 0 lifts a limit)."""
    video = write_video(tmp_path / "clip.mp4", [np.full((64, 96, 3), 40, dtype=np.uint8)] * 12, fps=10)  # 1.2 s
    code, out, err = run(capsys, "detect", video, "--model", checkpoint_dir, "--max-duration", 1, "--quiet")
    assert code == EXIT_SOME_FAILED and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {video}: video too long: header claims 1.2 s, limit is 1 s"]
    code, out, err = run(capsys, "detect", video, "--model", checkpoint_dir, "--max-pixels", 6000, "--quiet")
    assert code == EXIT_SOME_FAILED
    assert f"error: {video}: video frame too large: header claims 96x64 = 6,144 pixels, limit is 6,000" in err
    report_path = tmp_path / "r.json"
    code, out, err = run(capsys, "detect", video, "--model", checkpoint_dir, "--json", report_path, "--quiet")
    assert code == EXIT_OK, err
    assert json.loads(report_path.read_text())[0]["limits"] == {"max_pixels": 100_000_000, "max_duration": 14400.0}
    argv = ["--max-duration", 0, "--max-pixels", 6144, "--json", report_path, "--quiet"]
    code, out, err = run(capsys, "detect", video, "--model", checkpoint_dir, *argv)
    assert code == EXIT_OK, err
    assert json.loads(report_path.read_text())[0]["limits"] == {"max_pixels": 6144, "max_duration": None}
    with pytest.raises(SystemExit) as raised:
        run(capsys, "detect", video, "--model", checkpoint_dir, "--max-duration", -1)
    assert raised.value.code == EXIT_USAGE and "--max-duration: must be >= 0, got -1" in capsys.readouterr().err


def test_an_input_named_with_a_newline_gets_one_error_line(capsys, tmp_path, checkpoint_dir):
    path = tmp_path / "two\nlines.png"
    path.write_bytes(b"not an image")
    code, out, err = run(capsys, "detect", path, "--model", checkpoint_dir, "--quiet")
    assert code == EXIT_SOME_FAILED
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("Loading weights")]
    problem = "not an image file (unrecognised or unsupported format)"
    assert lines == [f"error: {tmp_path}/two\\nlines.png: {problem}", "1 of 1 inputs failed"]


def test_console_script_reports_version():
    exe = shutil.which("mesofcn")
    command = [exe] if exe else [sys.executable, "-m", "mesofcn.cli"]
    completed = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and completed.stdout.strip() == f"mesofcn {__version__}"


def test_python_dash_m_reports_command_errors_in_one_line(tmp_path):
    """`python -m mesofcn.cli` runs cli.py as __main__, a second copy of the module: a subcommand's CommandError
    (here a locked prepare output) must still be the one-line error and exit code 2, not a traceback."""
    from mesofcn.data.work import output_lock

    Image.new("RGB", (32, 32)).save(tmp_path / "grey.png")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\ngrey.png,real\n")
    out = tmp_path / "data"
    command = [sys.executable, "-m", "mesofcn.cli", "prepare", "media", "--labels", labels, "--out", out, "--quiet"]
    with output_lock(out):
        completed = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=300)
    assert completed.returncode == EXIT_USAGE and "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{out}: another mesofcn prepare is writing there" in errors[0]


def test_hub_id_resolves_from_the_offline_cache(tmp_path, checkpoint_dir, face_photo):
    """`--model org/name` loads from the Hugging Face cache layout with HF_HUB_OFFLINE=1 (no network)."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--testorg--mesofcn-test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    shutil.copytree(checkpoint_dir, repo / "snapshots" / sha)
    report_path = tmp_path / "r.json"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mesofcn.cli",
            "detect",
            str(face_photo),
            "--model",
            "testorg/mesofcn-test",
            "--json",
            str(report_path),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(report_path.read_text())[0]
    assert report["model"] == "testorg/mesofcn-test" and report["label"] in {"real", "fake"}
    missing = subprocess.run(
        [sys.executable, "-m", "mesofcn.cli", "detect", str(face_photo), "--model", "testorg/absent", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert (
        missing.returncode == EXIT_USAGE and "testorg/absent" in missing.stderr and "Traceback" not in missing.stderr
    )


def test_detect_accepts_checkpoints_that_carry_the_pipeline_code(capsys, tmp_path, face_photo):
    """transformers wants trust_remote_code for a checkpoint's own custom pipeline; the CLI uses the installed one."""
    from mesofcn import MesoFCNImageProcessor
    from mesofcn.detection.registration import save_detector
    from tests.conftest import make_model

    folder = tmp_path / "with_pipeline"
    save_detector(make_model(seed=1), MesoFCNImageProcessor(), folder, with_pipeline=True)
    assert json.loads((folder / "config.json").read_text())["custom_pipelines"]
    code, out, err = run(capsys, "detect", face_photo, "--model", folder, "--quiet")
    assert code == EXIT_OK, err
    assert str(face_photo) in out
