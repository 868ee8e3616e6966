"""
`mesofcn serve`: the web app. A Gradio page analyses one uploaded image or video exactly as `mesofcn detect` does
(same model loader, same call options and defaults, same report) and shows the verdict, the face tracks, the
P(fake)-over-time plot of a video and the annotated overlay, with the JSON report to download. The API endpoint
`/detect` returns that report to `gradio_client` scripts. `python -m mesofcn.cli.app` is `mesofcn serve`, and a Space's
`app.py` only imports and runs `main` (see the README).

Gradio is the optional extra `mesofcn[app]`, imported only when the app is built: `import mesofcn` and
`mesofcn detect` never load it. Safe defaults: the app binds to 127.0.0.1 unless told otherwise, refuses uploads over
`--max-upload-mb`, runs one analysis at a time (the others wait in the queue), serves no path of the machine but its
own folder (a fresh temporary folder, removed when the app stops; uploads and results in it are deleted after
`--keep-minutes`), and writes each analysis's files in a per-request folder removed when the request ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arguments import MODEL_HELP, add_backend_arguments, add_device_arguments, positive_int

#: What `mesofcn serve` says, in one line, when Gradio is not installed.
INSTALL_HINT = 'the web app needs Gradio: pip install "mesofcn[app]"'
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_KEEP_MINUTES = 60
#: The page's two ways of sampling a video, as `mesofcn detect --every K` and `--frames N`.
EVERY, EVENLY = "every K-th frame", "N evenly spaced frames"
SAMPLING_CHOICES = (EVERY, EVENLY)
#: Columns of the page's track table.
TRACK_COLUMNS = ("track", "frames", "mean P(fake)", "max P(fake)", "decides")
#: Name of the API endpoint that returns the JSON report.
API_NAME = "detect"


class UploadError(ValueError):
    """An upload the app cannot analyse (none, not media, truncated, bad option): one line naming the file."""


@dataclass
class UploadResult:
    """One analysed upload: the report in its JSON form (`path` is the upload's file name) and, when a work folder
    was given, the files written there (overlay, plot for videos, the JSON report as `mesofcn detect --json` writes
    it)."""

    report: dict
    overlay: Path | None = None
    plot: Path | None = None
    json: Path | None = None


def add_serve_parser(commands) -> None:
    """`mesofcn serve`: argparse wiring only (Gradio is imported when the command runs)."""
    serve = commands.add_parser(
        "serve",
        help="web app: analyse an uploaded image or video in the browser (needs mesofcn[app])",
        description="Serve a web page (Gradio) that analyses an uploaded image or video as `mesofcn detect` does, "
        'and the API endpoint /detect that returns its JSON report. Needs the extra: pip install "mesofcn[app]".',
    )
    serve.add_argument("--model", help=MODEL_HELP)
    serve.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}, or $GRADIO_SERVER_NAME as set on a Space); "
        "0.0.0.0 opens the app to every machine that can reach this one",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT),
        help=f"port (default {DEFAULT_PORT}, or $GRADIO_SERVER_PORT)",
    )
    serve.add_argument(
        "--max-upload-mb",
        type=positive_int,
        default=DEFAULT_MAX_UPLOAD_MB,
        metavar="MB",
        help=f"refuse larger uploads (default {DEFAULT_MAX_UPLOAD_MB})",
    )
    serve.add_argument(
        "--keep-minutes",
        type=positive_int,
        default=DEFAULT_KEEP_MINUTES,
        metavar="M",
        help=f"delete uploads and results this long after they were made (default {DEFAULT_KEEP_MINUTES}); "
        "all are deleted when the app stops",
    )
    add_device_arguments(serve)
    add_backend_arguments(serve)
    serve.set_defaults(handler=run_serve)


def import_gradio():
    """The gradio module, or a one-line CommandError saying how to install it."""
    from .common import CommandError

    try:
        import gradio
    except ImportError as error:
        raise CommandError(INSTALL_HINT) from error
    return gradio


def run_serve(args: argparse.Namespace) -> int:
    """Load the model as `mesofcn detect` does, build the page, serve it until interrupted, remove its folder."""
    from ..detection.pipeline_mesofcn import model_name
    from .common import EXIT_OK, CommandError, first_line, load_detection_pipeline
    from .detect import detect_defaults

    import_gradio()
    defaults = detect_defaults()
    detector = load_detection_pipeline(
        args.model, args.device, args.dtype, defaults.batch_size, args.backend, args.threads
    )
    work_root = Path(tempfile.mkdtemp(prefix="mesofcn-app-"))
    try:
        demo = build_app(detector, work_root, 60 * args.keep_minutes, args.max_upload_mb)
        stop_on_sigterm()
        try:
            demo.launch(**launch_options(args, work_root), prevent_thread_lock=True)
        except OSError as error:  # the port is taken, the address is not this machine's...
            raise CommandError(f"--host {args.host} --port {args.port}: cannot serve ({first_line(error)})") from error
        print(
            f"mesofcn app: http://{args.host}:{args.port} (model {model_name(detector.model)}, uploads up to "
            f"{args.max_upload_mb} MB, one analysis at a time, files in {work_root}); Ctrl-C stops it",
            flush=True,
        )
        demo.block_thread()  # until Ctrl-C or SIGTERM
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    return EXIT_OK


def stop_on_sigterm() -> None:
    """SIGTERM stops the app as Ctrl-C does (so its folder is removed), when called from the main thread."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread: leave the default
        signal.signal(signal.SIGTERM, interrupt)


def launch_options(args: argparse.Namespace, work_root: Path) -> dict:
    """Keyword arguments of `Blocks.launch`: address, upload limit, and no path served beyond the app's folder."""
    return {
        "server_name": args.host,
        "server_port": args.port,
        "max_file_size": f"{args.max_upload_mb}mb",
        "allowed_paths": [],
        "blocked_paths": blocked_paths(work_root, args.model),
        "share": False,
        "ssr_mode": False,
        "mcp_server": False,
        "enable_monitoring": False,
        "show_error": True,
        "quiet": True,
    }


def blocked_paths(work_root: Path, model: str | None) -> list[str]:
    """Folders never served even if something asked: the working folder, the home folder and a local model's folder
    (any of them that holds the app's own folder is left out, or nothing could be served)."""
    candidates = [Path.cwd(), Path.home()] + ([Path(model)] if model and Path(model).is_dir() else [])
    root = work_root.resolve()
    return [str(path.resolve()) for path in candidates if not root.is_relative_to(path.resolve())]


def page_call_options(
    sampling: str, count: float | None, threshold: float, min_face_fraction: float, min_track_share: float
) -> dict:
    """
    The pipeline options of `mesofcn detect` for the page's settings: its parsed defaults with the page's values put
    in, checked by the same argument types, then `detect_call_options`. UploadError for a bad value.
    """
    from .arguments import probability
    from .common import detect_call_options
    from .detect import detect_defaults

    if sampling not in SAMPLING_CHOICES:
        raise UploadError(f"sampling must be one of {', '.join(SAMPLING_CHOICES)}, got {sampling!r}")
    if isinstance(count, bool) or not isinstance(count, (int, float)) or not float(count).is_integer():
        raise UploadError(f"bad option: K or N must be a whole number >= 1, got {count!r}")
    args = detect_defaults()
    try:
        number = positive_int(str(int(count)))
        args.every, args.frames = (number, None) if sampling == EVERY else (None, number)
        args.threshold = probability(str(threshold))
        args.min_face_fraction = probability(str(min_face_fraction))
        args.min_track_share = probability(str(min_track_share))
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise UploadError(f"bad option: {error}") from error
    args.quiet = False  # the pipeline's progress bars feed the page's
    return detect_call_options(args)


def page_defaults() -> dict:
    """The page's initial settings: `mesofcn detect`'s defaults (every K-th frame with the pipeline's K)."""
    from ..detection.video import FrameSampling
    from .detect import detect_defaults

    args = detect_defaults()
    return {
        "sampling": EVERY,
        "count": FrameSampling().every,
        "threshold": args.threshold,
        "min_face_fraction": args.min_face_fraction,
        "min_track_share": args.min_track_share,
    }


def analyse_upload(detector, upload: str | None, call_options: dict, work: Path | None = None) -> UploadResult:
    """
    `mesofcn detect` on one uploaded file (cli.analyse_input): the report in its JSON form, with `path` set to the
    upload's file name (the server's temporary path stays private). With `work`, also the overlay, the plot (videos)
    and the JSON report written there. UploadError, naming the file only, when it cannot be analysed.
    """
    from ..atomic_files import write_json_atomic
    from ..reporting.reports import report_to_json, write_timeline_plot
    from .common import analyse_input

    if not upload:
        raise UploadError("choose an image or video file first")
    path = Path(upload)
    overlay = None if work is None else work / f"{path.stem}-annotated"
    report = analyse_input(detector, str(path), call_options, overlay, quiet=False)
    if "error" in report:
        raise UploadError(report["error"].replace(str(path), path.name))
    result = UploadResult({**report_to_json(report), "path": path.name})
    result.report.pop("overlay", None)  # a server path; the page shows the file
    if work is not None:
        result.overlay = Path(report["overlay"])
        result.plot = write_timeline_plot(report, work / f"{path.stem}-timeline.png")  # None for an image
        result.json = work / f"{path.stem}.mesofcn.json"
        write_json_atomic(result.json, [result.report])  # a list, as `mesofcn detect --json` writes
    return result


def verdict_markdown(report: dict) -> str:
    """The page's verdict: a heading (`FAKE  P(fake)=0.98`, `REAL ...`, `NO FACE`) and `mesofcn detect`'s line."""
    from ..reporting.reports import summary_line, verdict_text

    summary = summary_line(report).replace("`", "'")
    note = "\n\nNo face was found in the analysed frames." if report["label"] == "no_face" else ""
    return f"## {verdict_text(report)}\n\n`{summary}`{note}"


def error_markdown(message: str) -> str:
    """The page's message for an upload it cannot analyse."""
    return f"## Cannot analyse this file\n\n`{message.replace('`', chr(39))}`"


def track_rows(report: dict) -> list[list]:
    """The track table: id, analysed frames, mean and max P(fake), and whether the track decides the verdict."""
    return [
        [
            track["id"],
            track["num_frames"],
            track["score"],
            track["max_score"],
            "yes" if track["id"] == report.get("verdict_track") else "",
        ]
        for track in report["tracks"]
    ]


def build_app(
    detector, work_root: Path, keep_seconds: int = 60 * DEFAULT_KEEP_MINUTES, max_upload_mb: int | None = None
):
    """
    The Gradio Blocks of the app around a loaded deepfake-detection pipeline. Uploads and served files live in
    `work_root/gradio` (deleted after `keep_seconds`); each analysis writes in its own folder under `work_root`,
    removed when the request ends. One analysis runs at a time, page and API alike. `max_upload_mb` is only shown
    (the limit is a launch option, see launch_options).
    """
    gr = import_gradio()
    from ..detection.pipeline_mesofcn import model_name

    os.environ["GRADIO_TEMP_DIR"] = str(work_root / "gradio")  # read by Gradio when the Blocks are made
    initial = page_defaults()
    with gr.Blocks(
        title="mesofcn: is this face manipulated?",
        analytics_enabled=False,
        delete_cache=(max(60, keep_seconds // 4), keep_seconds),
    ) as demo:
        gr.Markdown(
            f"# mesofcn: is this face manipulated?\n\nUpload an image or a video: each face is found, scored and "
            f"followed across frames, as `mesofcn detect` does. Model: `{model_name(detector.model)}`."
        )
        with gr.Row():
            with gr.Column(scale=1):
                limit = f" (up to {max_upload_mb} MB)" if max_upload_mb else ""
                upload = gr.File(
                    label=f"Image or video{limit}", file_count="single", type="filepath", elem_id="upload"
                )
                with gr.Accordion("Options (those of mesofcn detect)", open=False):
                    sampling = gr.Radio(list(SAMPLING_CHOICES), value=initial["sampling"], label="Video frames")
                    count = gr.Number(value=initial["count"], precision=0, minimum=1, label="K or N")
                    threshold = gr.Slider(
                        0,
                        1,
                        value=initial["threshold"],
                        step=0.01,
                        label="threshold: a face is fake from this P(fake)",
                    )
                    min_face_fraction = gr.Slider(
                        0, 1, value=initial["min_face_fraction"], step=0.05, label="min face fraction (verdict rule)"
                    )
                    min_track_share = gr.Slider(
                        0, 1, value=initial["min_track_share"], step=0.05, label="min track share (verdict rule)"
                    )
                button = gr.Button("Analyse", variant="primary", elem_id="analyse")
            with gr.Column(scale=2):
                verdict = gr.Markdown("Upload a file and press **Analyse**.", elem_id="verdict")
                tracks = gr.Dataframe(
                    headers=list(TRACK_COLUMNS), label="Face tracks", interactive=False, elem_id="tracks"
                )
                plot = gr.Image(
                    label="P(fake) over time", show_label=False, type="filepath", visible=False, elem_id="plot"
                )
                overlay_video = gr.Video(label="Annotated video", visible=False, height=420, elem_id="overlay-video")
                overlay_image = gr.Image(
                    label="Annotated image", type="filepath", visible=False, height=420, elem_id="overlay-image"
                )
                report_file = gr.DownloadButton("Download the JSON report", visible=False, elem_id="report-file")
                with gr.Accordion("Report (JSON)", open=False):
                    report_json = gr.JSON(elem_id="report")
        inputs = [upload, sampling, count, threshold, min_face_fraction, min_track_share]

        def analyse_page(
            upload: str | None,
            sampling: str,
            count: float | None,
            threshold: float,
            min_face_fraction: float,
            min_track_share: float,
            progress: Any = gr.Progress(track_tqdm=True),  # noqa: B008  (Gradio's way of asking for a bar)
        ):
            # A generator: Gradio copies the yielded files into its cache before resuming it, so the request's
            # folder can be removed as soon as the page has its results.
            with tempfile.TemporaryDirectory(prefix="request-", dir=work_root) as work:
                try:
                    options = page_call_options(sampling, count, threshold, min_face_fraction, min_track_share)
                    result = analyse_upload(detector, upload, options, Path(work))
                except UploadError as error:
                    yield page_outputs(gr, None, str(error))
                    return
                yield page_outputs(gr, result)

        def detect(
            upload: str | None,
            sampling: str,
            count: float | None,
            threshold: float,
            min_face_fraction: float,
            min_track_share: float,
        ) -> str:
            """The report of `mesofcn detect` on the uploaded file, as JSON text (an error names the file)."""
            try:
                options = page_call_options(sampling, count, threshold, min_face_fraction, min_track_share)
                return json.dumps(analyse_upload(detector, upload, options).report)
            except UploadError as error:
                raise gr.Error(str(error)) from error

        outputs = [verdict, tracks, plot, overlay_video, overlay_image, report_file, report_json]
        button.click(analyse_page, inputs, outputs, api_visibility="private", concurrency_id="analysis")
        # Text, not a JSON component: gradio_client takes any dict with a "path" key (as the report has) for a file
        # to download.
        api_trigger, api_report = gr.Button(visible=False), gr.Textbox(visible=False)
        api_trigger.click(detect, inputs, api_report, api_name=API_NAME, concurrency_id="analysis")
    demo.queue(default_concurrency_limit=1)
    return demo


def page_outputs(gr, result: UploadResult | None, error: str | None = None) -> tuple:
    """Values of the page's outputs (verdict, tracks, plot, overlay video, overlay image, JSON file, JSON) for a
    result, or for an error message (everything else cleared and hidden)."""
    if result is None:
        hidden = gr.update(value=None, visible=False)
        return error_markdown(error or ""), [], hidden, hidden, hidden, hidden, None
    report = result.report
    is_video = report["media"] == "video"
    return (
        verdict_markdown(report),
        track_rows(report),
        gr.update(value=str(result.plot) if result.plot else None, visible=result.plot is not None),
        gr.update(value=str(result.overlay) if is_video else None, visible=is_video),
        gr.update(value=None if is_video else str(result.overlay), visible=not is_video),
        gr.update(value=str(result.json) if result.json else None, visible=result.json is not None),
        report,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mesofcn.cli.app [OPTIONS]` = `mesofcn serve [OPTIONS]`."""
    from .common import command_parser, run_command

    return run_command(command_parser(add_serve_parser), ["serve", *(sys.argv[1:] if argv is None else argv)])


__all__ = [
    "API_NAME",
    "DEFAULT_HOST",
    "DEFAULT_KEEP_MINUTES",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_PORT",
    "EVENLY",
    "EVERY",
    "INSTALL_HINT",
    "SAMPLING_CHOICES",
    "TRACK_COLUMNS",
    "UploadError",
    "UploadResult",
    "add_serve_parser",
    "analyse_upload",
    "blocked_paths",
    "build_app",
    "error_markdown",
    "import_gradio",
    "launch_options",
    "main",
    "page_call_options",
    "page_defaults",
    "page_outputs",
    "run_serve",
    "track_rows",
    "verdict_markdown",
]


if __name__ == "__main__":
    sys.exit(main())
