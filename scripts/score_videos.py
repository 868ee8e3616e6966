"""
Frame- and video-level scores of a checkpoint (default: the bundled one) on videos, as a Markdown table:

    python scripts/score_videos.py ../shared/data/ffpp_mini --every 1 [--model CKPT] [--json scores.json]

Per video: frames analysed, faces, the speaker's track (the longest), the mean and median P(fake) of its frames,
the share of its frames at or above the threshold, and the video verdict with its score (the pipeline's rule: the
most suspicious track of at least 3 sampled frames).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mesofcn.cli import load_detection_pipeline, write_json_atomic
from mesofcn.detection.media_files import is_video_path


def video_paths(inputs: list[Path]) -> list[Path]:
    found = []
    for path in inputs:
        found += sorted(p for p in path.rglob("*") if is_video_path(p)) if path.is_dir() else [path]
    return found


def summarize(report: dict, threshold: float) -> dict:
    speaker = max(report["tracks"], key=lambda track: track["num_frames"]) if report["tracks"] else None
    scores = np.array([frame["score"] for frame in speaker["frames"]]) if speaker else np.array([])
    return {
        "video": Path(report["path"]).name,
        "frames_analysed": report["frames_analysed"],
        "faces": sum(track["num_frames"] for track in report["tracks"]),
        "tracks": len(report["tracks"]),
        "speaker_frames": int(scores.size),
        "speaker_mean": float(scores.mean()) if scores.size else None,
        "speaker_median": float(np.median(scores)) if scores.size else None,
        "speaker_fake_share": float((scores >= threshold).mean()) if scores.size else None,
        "video_score": report["score"],
        "video_label": report["label"],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| video | frames analysed | faces (tracks) | speaker P(fake) mean / median | speaker frames ≥ threshold "
        "| video P(fake) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['video']} | {row['frames_analysed']} | {row['faces']} ({row['tracks']}) "
            f"| {row['speaker_mean']:.3f} / {row['speaker_median']:.3f} | {100 * row['speaker_fake_share']:.1f} % "
            f"| {row['video_score']:.3f} | {row['video_label']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="videos or folders searched for them")
    parser.add_argument("--model", help="checkpoint folder (default: the bundled checkpoint)")
    parser.add_argument("--every", type=int, default=1, help="analyse every K-th frame")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    detector = load_detection_pipeline(args.model, "cpu", "fp32", 16)
    rows = []
    for path in video_paths(args.inputs):
        report = detector(str(path), every=args.every, threshold=args.threshold, progress=False, return_heatmaps=False)
        rows.append(summarize(report, args.threshold))
        print(f"{rows[-1]['video']}: video P(fake) {rows[-1]['video_score']:.4f}", file=sys.stderr, flush=True)
    print(markdown(rows))
    if args.json:
        write_json_atomic(args.json, rows)


if __name__ == "__main__":
    main()
