"""
The web app, `mesofcn serve`: without Gradio it says how to install it; `import mesofcn` and `mesofcn detect` never
load Gradio; the page's options are `mesofcn detect`'s; uploads are analysed as `mesofcn detect` analyses them, with a
one-line message naming the file when they can't be. Then a real server on 127.0.0.1 (random free port, the all-fake
random checkpoint): the `/detect` endpoint through gradio_client returns `mesofcn detect`'s report, no other path of
the machine is served, a real browser (Debian's Chromium driven by Playwright, no browser download) analyses a video
and shows the messages for bad uploads (screenshots: $MESOFCN_SCREENSHOTS, else pytest's tmp), and stopping the server
removes its folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mesofcn.cli import EXIT_OK, EXIT_USAGE, detect_call_options, detect_defaults, main
from mesofcn.cli.app import (
    EVENLY,
    EVERY,
    INSTALL_HINT,
    UploadError,
    analyse_upload,
    page_call_options,
    page_defaults,
    track_rows,
    verdict_markdown,
)
from mesofcn.detection.video import FrameSampling

SERVER_START_SECONDS = 240
UPLOAD_LIMIT_MB = 1
GRADIO_MISSING = "the app's tests need Gradio: pip install -e '.[app]'"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- without a server -------------------------------------------------------------------------------------------


def test_import_and_detect_do_not_load_gradio():
    script = (
        "import sys, contextlib, mesofcn, mesofcn.cli.app, mesofcn.cli.commands\n"
        "with contextlib.suppress(SystemExit):\n"
        "    mesofcn.cli.commands.main(['detect', '--help'])\n"
        "print('gradio' in sys.modules)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().splitlines()[-1] == "False"


def test_serve_without_gradio_says_how_to_install_it(capsys, monkeypatch, fake_checkpoint):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    code, out, err = run(capsys, "serve", "--model", fake_checkpoint)
    assert code == EXIT_USAGE and out == ""
    assert err.strip() == f"error: {INSTALL_HINT}"
    assert 'pip install "mesofcn[app]"' in err


def test_serve_without_a_model_fails_like_detect(capsys, monkeypatch, tmp_path):
    pytest.importorskip("gradio", reason=GRADIO_MISSING)
    monkeypatch.setenv("MESOFCN_DEFAULT_MODEL", str(tmp_path / "no-model"))
    detect_code, _, detect_err = run(capsys, "detect", tmp_path / "clip.mp4")
    serve_code, _, serve_err = run(capsys, "serve")
    assert detect_code == serve_code == EXIT_USAGE
    assert serve_err == detect_err and len(serve_err.strip().splitlines()) == 1
    assert "no-model" in serve_err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--backend", "onnx", "--device", "cuda"], "runs on the CPU only"),
        (["--backend", "onnx", "--dtype", "bf16"], "runs fp32"),
    ],
)
def test_serve_takes_the_network_options_of_detect(capsys, fake_checkpoint, tmp_path, options, message):
    """--device/--dtype/--backend/--threads reach the model loader: the same refusals, word for word, as detect."""
    pytest.importorskip("gradio", reason=GRADIO_MISSING)
    detect_code, _, detect_err = run(capsys, "detect", tmp_path / "clip.mp4", "--model", fake_checkpoint, *options)
    serve_code, _, serve_err = run(capsys, "serve", "--model", fake_checkpoint, "--threads", "1", *options)
    assert detect_code == serve_code == EXIT_USAGE
    assert serve_err == detect_err and message in serve_err


def test_python_m_mesofcn_app_is_mesofcn_serve():
    completed = subprocess.run(
        [sys.executable, "-m", "mesofcn.cli.app", "--help"], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "usage: mesofcn serve" in completed.stdout and "--max-upload-mb" in completed.stdout


def test_page_defaults_are_the_options_of_detect():
    options = page_call_options(**page_defaults())
    cli_options = detect_call_options(detect_defaults())
    sampling = FrameSampling(every=options.pop("every"), num_frames=options.pop("num_frames"))
    assert sampling == FrameSampling()  # `mesofcn detect` without --every / --frames
    assert options == {**cli_options, "progress": True}  # the page feeds its progress bar from the pipeline's


def test_page_options_map_to_detect_options():
    options = page_call_options(EVENLY, 12, 0.7, 0.25, 0.5)
    assert (options["every"], options["num_frames"]) == (None, 12)
    assert (options["threshold"], options["min_face_fraction"], options["min_track_share"]) == (0.7, 0.25, 0.5)
    assert page_call_options(EVERY, 3.0, 0.5, 0.5, 0.35)["every"] == 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ((EVERY, 0, 0.5, 0.5, 0.35), "must be >= 1"),
        ((EVERY, 2.5, 0.5, 0.5, 0.35), "whole number"),
        ((EVERY, None, 0.5, 0.5, 0.35), "whole number"),
        ((EVERY, 5, 1.5, 0.5, 0.35), "between 0 and 1"),
        (("every frame", 5, 0.5, 0.5, 0.35), "sampling must be one of"),
    ],
)
def test_bad_page_options_are_one_line_messages(settings, message):
    with pytest.raises(UploadError, match=message) as caught:
        page_call_options(*settings)
    assert "\n" not in str(caught.value)


@pytest.fixture
def upload_dir(tmp_path) -> Path:
    """Stands for Gradio's upload folder: the app must never show this path."""
    folder = tmp_path / "gradio-upload-0123abcd"
    folder.mkdir()
    return folder


def assert_upload_error(detect_fake, path: Path | None, expected: str) -> None:
    with pytest.raises(UploadError) as caught:
        analyse_upload(detect_fake, None if path is None else str(path), page_call_options(**page_defaults()))
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert path is None or (message.startswith(f"{path.name}: ") and str(path.parent) not in message)


def test_bad_uploads_give_a_message_naming_only_the_file(detect_fake, face_video, upload_dir):
    (upload_dir / "notes.txt").write_text("not a video\n")
    (upload_dir / "cut.mp4").write_bytes(face_video.read_bytes()[:3000])
    (upload_dir / "empty.png").write_bytes(b"")
    assert_upload_error(detect_fake, upload_dir / "notes.txt", "not an image or video file")
    assert_upload_error(detect_fake, upload_dir / "cut.mp4", "video")
    assert_upload_error(detect_fake, upload_dir / "empty.png", "empty")
    assert_upload_error(detect_fake, None, "choose an image or video")


def test_an_image_without_a_face_is_a_no_face_verdict(detect_fake, upload_dir):
    path = upload_dir / "wall.png"
    Image.fromarray(np.full((96, 128, 3), 200, dtype=np.uint8)).save(path)
    result = analyse_upload(detect_fake, str(path), page_call_options(**page_defaults()), upload_dir / "work")
    assert result.report["label"] == "no_face" and result.report["path"] == "wall.png"
    assert verdict_markdown(result.report).startswith("## NO FACE\n") and "No face was found" in verdict_markdown(
        result.report
    )
    assert track_rows(result.report) == [] and result.plot is None and result.overlay.suffix == ".png"


def test_a_video_upload_writes_overlay_plot_and_the_detect_json(detect_fake, face_video, upload_dir):
    upload = upload_dir / face_video.name
    shutil.copy(face_video, upload)
    work = upload_dir / "work"
    result = analyse_upload(detect_fake, str(upload), page_call_options(**page_defaults()), work)
    report = result.report
    assert report["label"] == "fake" and report["path"] == "face.mp4" and "overlay" not in report
    assert result.overlay == work / "face-annotated.mp4" and result.overlay.stat().st_size > 0
    assert result.plot == work / "face-timeline.png" and Image.open(result.plot).size == (800, 400)
    assert json.loads(result.json.read_text()) == [report]  # the list `mesofcn detect --json` writes
    assert verdict_markdown(report).startswith("## FAKE  P(fake)=0.98\n")
    [row] = track_rows(report)
    assert row == [0, report["tracks"][0]["num_frames"], 0.982, 0.982, "yes"]


# --- a real server ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command() -> list[str]:
    """`mesofcn serve` as installed beside this interpreter, else through `python -m mesofcn.cli`."""
    script = Path(sys.executable).with_name("mesofcn")
    return [str(script), "serve"] if script.is_file() else [sys.executable, "-m", "mesofcn.cli", "serve"]


class Server:
    """A running `mesofcn serve` process, its URL, log and temporary folder."""

    def __init__(self, process: subprocess.Popen, url: str, log: Path, tmp: Path):
        self.process, self.url, self.log, self.tmp = process, url, log, tmp

    def work_roots(self) -> list[Path]:
        return sorted(self.tmp.glob("mesofcn-app-*"))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_checkpoint):
    pytest.importorskip("gradio", reason=GRADIO_MISSING)
    base = tmp_path_factory.mktemp("app")
    tmp, log = base / "tmp", base / "server.log"
    tmp.mkdir()
    port = free_port()
    command = [*serve_command(), "--model", str(fake_checkpoint), "--port", str(port)]
    command += ["--max-upload-mb", str(UPLOAD_LIMIT_MB)]
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    env.pop("GRADIO_SERVER_NAME", None)
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    running = Server(process, f"http://127.0.0.1:{port}/", log, tmp)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"mesofcn serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(running.url, timeout=5) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            running.stop()
            pytest.fail(f"mesofcn serve did not answer in {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield running
    running.stop()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_server_listens_on_localhost_only_and_serves_no_other_path(server, fake_checkpoint):
    assert wait_until(lambda: "mesofcn app: http://127.0.0.1:" in server.log.read_text())
    [work_root] = server.work_roots()
    for path in ("/etc/passwd", Path(__file__).resolve(), fake_checkpoint / "config.json", work_root):
        assert http_status(f"{server.url}gradio_api/file={path}") in (403, 404), path


def test_detect_endpoint_returns_the_report_of_mesofcn_detect(server, capsys, tmp_path, fake_checkpoint, face_video):
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    assert "/detect" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    defaults = page_defaults()
    text = client.predict(handle_file(str(face_video)), *defaults.values(), api_name="/detect")
    report = json.loads(text)
    code, _, _ = run(capsys, "detect", face_video, "--model", fake_checkpoint, "--json", tmp_path / "cli.json")
    [cli_report] = json.loads((tmp_path / "cli.json").read_text())
    assert code == EXIT_OK
    assert (report["label"], report["score"]) == (cli_report["label"], cli_report["score"]) == ("fake", 0.982)
    assert report["tracks"] == cli_report["tracks"] and len(report["tracks"]) == 1
    assert report["path"] == face_video.name
    unequal = {key for key in cli_report if report.get(key) != cli_report[key]}
    assert unequal == {"path", "elapsed_seconds"}  # everything else is the same report


def test_detect_endpoint_names_the_file_of_a_bad_upload(server, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "notes.txt"
    bad.write_text("not a video\n")
    with pytest.raises(Exception, match=r"notes\.txt: not an image or video file") as caught:
        Client(server.url, verbose=False).predict(handle_file(str(bad)), *page_defaults().values(), api_name="/detect")
    assert str(server.tmp) not in str(caught.value)


def chromium_path() -> str:
    """Debian's Chromium ($MESOFCN_CHROMIUM overrides), or a skip saying how to get it."""
    for candidate in (os.environ.get("MESOFCN_CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    pytest.skip("Chromium not found: apt-get install chromium (or set MESOFCN_CHROMIUM to its executable)")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("MESOFCN_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser_page(server):
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


def analyse_in_page(page, url: str, path: Path) -> None:
    """Open the page, upload `path`, press Analyse and wait for the verdict or a message to replace the prompt."""
    page.goto(url)
    page.locator("#upload input[type=file]").set_input_files(str(path))
    # The upload is done when the file's name is listed (Gradio splits it into stem and extension).
    page.wait_for_function(
        "name => document.querySelector('#upload').innerText.replace(/\\s/g, '').includes(name)", arg=path.name
    )
    page.click("#analyse")
    page.wait_for_function(
        "() => /FAKE|REAL|NO FACE|Cannot analyse/.test(document.querySelector('#verdict')?.innerText || '')"
    )


def test_browser_shows_the_message_for_a_file_that_is_not_media(server, browser_page, screenshots, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video\n")
    analyse_in_page(browser_page, server.url, bad)
    verdict = browser_page.inner_text("#verdict")
    browser_page.screenshot(path=screenshots / "app-not-media.png", full_page=True)
    assert "Cannot analyse this file" in verdict and "notes.txt: not an image or video file" in verdict
    assert str(server.tmp) not in verdict
    assert not browser_page.locator("#plot").is_visible() and not browser_page.locator("#report-file").is_visible()


def test_browser_analyses_a_video_end_to_end(server, browser_page, screenshots, face_video):
    page = browser_page
    analyse_in_page(page, server.url, face_video)
    page.locator("#plot img").wait_for(state="visible")
    page.locator("#overlay-video video").wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#plot img').naturalWidth > 0")
    page.screenshot(path=screenshots / "app-video.png", full_page=True)
    verdict = page.inner_text("#verdict")
    assert verdict.startswith("FAKE") and "P(fake)=0.98" in verdict and "face.mp4" in verdict
    table = page.inner_text("#tracks")
    for cell in ("track", "frames", "mean P(fake)", "max P(fake)", "0.982", "yes"):
        assert cell in table
    plot_size = page.eval_on_selector("#plot img", "img => [img.naturalWidth, img.naturalHeight]")
    assert plot_size == [800, 400]
    overlay = page.eval_on_selector("#overlay-video video", "video => video.currentSrc || video.src")
    assert overlay and urllib.request.urlopen(overlay, timeout=30).read()[4:8] == b"ftyp"  # an MP4 file
    assert page.locator("#report-file").is_visible()
    assert wait_until(lambda: not [path for root in server.work_roots() for path in root.glob("request-*")])


def wait_until(condition, seconds: float = 20.0) -> bool:
    """Whether `condition()` holds within `seconds` (the server removes a request's folder once it has answered)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_browser_refuses_an_upload_over_the_limit(server, browser_page, screenshots, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(UPLOAD_LIMIT_MB * 1024 * 1024 + 100_000))
    browser_page.goto(server.url)
    browser_page.locator("#upload input[type=file]").set_input_files(str(big))
    message = browser_page.get_by_text("exceed the maximum allowed size")
    message.first.wait_for()
    browser_page.wait_for_timeout(1000)  # the message slides in
    browser_page.screenshot(path=screenshots / "app-too-large.png", full_page=True)
    assert "big.mp4" in message.first.inner_text()


def test_stopping_the_server_removes_its_folder(server):
    assert len(server.work_roots()) == 1
    assert server.stop() == EXIT_OK
    assert server.work_roots() == []
