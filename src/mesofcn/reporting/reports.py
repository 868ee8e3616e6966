"""Detection reports: the JSON form, the one-line human summary, the annotated overlay file and the plot of
P(fake) over time."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from .. import __version__
from ..detection.image_processing_mesofcn import heatmap_on_frame
from ..detection.media import load_image
from ..detection.media_files import printable
from ..detection.tracking import verdict_text
from ..detection.video import FrameSampling, iter_video_frames
from .figures import track_timeline_figure
from .overlay import OverlayFace, VideoOverlayWriter, draw_detections, write_png

#: Keys of a pipeline report that hold arrays or objects and stay out of the JSON form.
IN_MEMORY_ONLY = ("faces", "analysed_frames", "map_grid")


def report_to_json(report: dict) -> dict:
    """The JSON-ready report: everything but the per-face arrays, plus the package version."""
    data = {key: value for key, value in report.items() if key not in IN_MEMORY_ONLY}
    data["score"] = None if report["score"] is None else round(report["score"], 4)
    data["tracks"] = [
        {
            **{key: value for key, value in track.items() if key != "frames"},
            "score": round(track["score"], 4),
            "max_score": round(track["max_score"], 4),
            "share": round(track["share"], 4),
            "frames": [{**frame, "score": round(frame["score"], 4)} for frame in track["frames"]],
        }
        for track in report["tracks"]
    ]
    if "opinions" in report:
        data["opinions"] = {kind: rounded_opinion(opinion) for kind, opinion in report["opinions"].items()}
    data["mesofcn_version"] = __version__
    return data


def rounded_opinion(opinion: dict) -> dict:
    """One opinion of a two-opinion report (mesofcn.detection.opinions) with its P(fake) values to 4 decimals."""
    rounded = dict(opinion)
    if opinion.get("score") is not None:
        rounded["score"] = round(opinion["score"], 4)
    if "face_scores" in opinion:
        rounded["face_scores"] = [round(score, 4) for score in opinion["face_scores"]]
    return rounded


def summary_line(report: dict) -> str:
    """`path: FAKE  P(fake)=0.93  2 faces in 1 track, 13 frames analysed, 2.1 s`."""
    faces = sum(track["num_frames"] for track in report["tracks"])
    tracks = len(report["tracks"])
    elapsed = f", {report['elapsed_seconds']:.1f} s" if "elapsed_seconds" in report else ""
    return (
        f"{printable(report['path'])}: {verdict_text(report)}  {faces} face{'s' * (faces != 1)} in {tracks} "
        f"track{'s' * (tracks != 1)}, {report['frames_analysed']} frame{'s' * (report['frames_analysed'] != 1)} "
        f"analysed{elapsed}"
    )


def overlay_faces(faces: list[dict], frame_height: int, frame_width: int, grid: dict) -> list[OverlayFace]:
    """Drawable faces (box, score, label, heatmap at frame resolution) from a report's faces; `grid` is the report's
    `map_grid` (crop side and map positions of the model that analysed them)."""
    return [
        OverlayFace(
            box=tuple(face["box"]),
            score=face["score"],
            label=face["label"],
            heatmap=heatmap_on_frame(
                face["patch_map"],
                face["window"],
                frame_height,
                frame_width,
                grid["crop_size"],
                positions=grid["positions"],
            ),
            track_id=face["track_id"],
        )
        for face in faces
    ]


def write_overlay(report: dict, path: Path, quiet: bool = False) -> Path:
    """An annotated PNG (image) or H.264 MP4 (video) of a report; `path` gets the right extension."""
    if report["media"] == "image":
        image = load_image(report["path"], max_pixels=report["limits"]["max_pixels"])  # as analysed
        faces = overlay_faces(report["faces"], image.shape[0], image.shape[1], report["map_grid"])
        return write_png(path.with_suffix(".png"), draw_detections(image, faces))
    return write_video_overlay(report, path.with_suffix(".mp4"), quiet)


def write_timeline_plot(report: dict, path: Path) -> Path | None:
    """The P(fake)-over-time PNG of a video report at `path` (extension set to .png); None for an image, which has
    no time axis."""
    if report["media"] != "video":
        return None
    return write_png(path.with_suffix(".png"), track_timeline_figure(report))


def write_video_overlay(report: dict, path: Path, quiet: bool) -> Path:
    """Re-decode the video and draw on every frame the faces of the latest analysed frame (none if it had none)."""
    by_frame: dict[int, list[dict]] = {index: [] for index in report["analysed_frames"]}
    for face in report["faces"]:
        by_frame[face["frame_index"]].append(face)
    width, height = report["frame_size"]
    current: list[OverlayFace] = []
    frames = iter_video_frames(report["path"], FrameSampling(every=1))
    progress = tqdm(frames, desc=f"overlay {Path(report['path']).name}", unit="frame", disable=quiet, leave=False)
    with VideoOverlayWriter(path, fps=report["fps"] or 25.0) as writer:
        for frame in progress:
            if frame.index in by_frame:
                current = overlay_faces(by_frame[frame.index], height, width, report["map_grid"])
            writer.write(draw_detections(frame.image, current))
    return path


__all__ = [
    "overlay_faces",
    "report_to_json",
    "summary_line",
    "verdict_text",
    "write_overlay",
    "write_timeline_plot",
]
