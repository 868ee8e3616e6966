#!/usr/bin/env python
"""
End-to-end speed of `mesofcn detect` on one video, the full path beside the fast path in the same run, and how
closely the fast path follows the full one.

Speed (each run in its own process, so that peak memories do not mix):
- `stages`: decode, detect at full resolution, crop and score each analysed frame one after the other, with the
  time of each stage;
- `full`: the pipeline as it was before the fast path: the detector on every analysed frame at full resolution,
  all in one thread (`detect_every=1, detect_size=None, prefetch=0`);
- `fast`: the pipeline with its defaults (the detector every few frames on a shrunk copy, optical flow between,
  decoding, detection and cropping in a background thread).
The ratio fast / full is the speed-up; all at `--every` (default 1, every frame).

Accuracy (`--accuracy`, with a trained `--model`): the first seconds of several real videos analysed both ways
(default: the shared real videos), with each fast-path face matched to the full path's face of the same frame:
median box IoU, the longest run of frames where a full-path face has no fast-path match (IoU >= 0.5), the
difference of each track's mean P(fake), and each clip's verdict both ways. `--reference-model` runs the full path
with another model: give the fast path an int8 export and the full path the fp32 checkpoint it came from, and the
check covers the whole fast configuration against the old one.

Memory (`--memory-minutes M`): peak memory of the fast path on an M-minute video made by looping the clip, and
its resident memory sampled every few seconds: the curve at each tenth of the run and the growth over its middle
half (MiB a minute) tell a slow climb (something kept per frame) from a rise at the end (the report being built).

    python scripts/benchmark_detection.py ../shared/data/ffpp_mini/original_sequences/youtube/c23/videos/004.mp4
    python scripts/benchmark_detection.py VIDEO --model CKPT --accuracy --json bench.json
    python scripts/benchmark_detection.py VIDEO --no-speed --accuracy --model int8.onnx --reference-model CKPT
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

SHARED_DATA = Path(os.environ.get("MESOFCN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
#: Real videos of the accuracy check (relative to the shared data folder); those present are used.
ACCURACY_VIDEOS = (
    "ffpp_mini/original_sequences/youtube/c23/videos/004.mp4",
    "ffpp_mini/original_sequences/youtube/c23/videos/519.mp4",
    "real_videos",
    "real_videos_extra",
)
FULL = {"detect_every": 1, "detect_size": None, "prefetch": 0}


def random_checkpoint(folder: Path) -> str:
    """A Table I network with random weights: its speed is that of any trained checkpoint."""
    import torch

    from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection, MesoFCNImageProcessor

    torch.manual_seed(0)
    MesoFCNForDeepfakeDetection(MesoFCNConfig()).save_pretrained(folder)
    MesoFCNImageProcessor().save_pretrained(folder)
    return str(folder)


def load_pipeline(model: str, batch_size: int):
    """The pipeline on a checkpoint folder (torch) or on an `.onnx` file from `mesofcn export onnx` (ONNX Runtime)."""
    from transformers import pipeline

    import mesofcn  # noqa: F401  (registers the task)
    from mesofcn.detection.pipeline_mesofcn import DeepfakeDetectionPipeline

    if model.endswith(".onnx"):
        return DeepfakeDetectionPipeline.from_onnx(model, batch_size=batch_size)
    return pipeline("deepfake-detection", model=model, batch_size=batch_size, trust_remote_code=False)


def stage_times(model: str, video: str, every: int, batch_size: int) -> dict:
    """The full path one stage after another, timed per stage (seconds per analysed frame)."""
    import torch

    from mesofcn.detection.video import FrameSampling, iter_video_frames

    pipe = load_pipeline(model, batch_size)
    totals = dict.fromkeys(("decode", "detect", "crop", "network"), 0.0)
    frames = faces = 0
    iterator = iter(iter_video_frames(video, FrameSampling(every=every)))
    begin = time.perf_counter()
    while True:
        start = time.perf_counter()
        frame = next(iterator, None)
        totals["decode"] += time.perf_counter() - start
        if frame is None:
            break
        frames += 1
        start = time.perf_counter()
        found = pipe.face_detector.detect(frame.image)
        totals["detect"] += time.perf_counter() - start
        if not found:
            continue
        faces += len(found)
        start = time.perf_counter()
        pixels = pipe._crop_faces(frame.image, found)
        totals["crop"] += time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            pipe.inference_model(pixels)
        totals["network"] += time.perf_counter() - start
    seconds = time.perf_counter() - begin
    return {
        "frames_analysed": frames,
        "faces": faces,
        "seconds": round(seconds, 2),
        "frames_per_second": round(frames / seconds, 2),
        "ms_per_frame": {stage: round(1000 * value / max(frames, 1), 2) for stage, value in totals.items()},
    }


def pipeline_run(model: str, video: str, every: int, batch_size: int, options: dict) -> dict:
    """Frames analysed per second through `pipeline(...)` (what `mesofcn detect` runs) with `options`."""
    pipe = load_pipeline(model, batch_size)
    start = time.perf_counter()
    report = pipe(video, every=every, **options)
    seconds = time.perf_counter() - start
    return {
        "frames_analysed": report["frames_analysed"],
        "faces": len(report["faces"]),
        "detections": report["detection"]["frames"],
        "seconds": round(seconds, 2),
        "frames_per_second": round(report["frames_analysed"] / seconds, 2),
    }


def resident_mib() -> float:
    """This process's resident memory now (Linux /proc/self/statm), MiB."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class ResidentMemorySampler:
    """Samples this process's resident memory every `interval` seconds in a daemon thread: (seconds, MiB) pairs."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.samples.append((round(time.perf_counter() - self._start, 1), round(resident_mib(), 1)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> ResidentMemorySampler:
        self._start = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def growth_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of resident memory over the middle half of the run, MiB a minute."""
    end = samples[-1][0]
    middle = [(t, mib) for t, mib in samples if 0.25 * end <= t <= 0.75 * end]
    if len(middle) < 3:
        return float("nan")
    times, mibs = np.array(middle).T
    return round(float(np.polyfit(times / 60, mibs, 1)[0]), 2)


def sampled_pipeline_run(model: str, video: str, every: int, batch_size: int, interval: float) -> dict:
    """`pipeline_run` with the fast path's defaults, its resident memory sampled every `interval` seconds."""
    with ResidentMemorySampler(interval) as sampler:
        result = pipeline_run(model, video, every, batch_size, {})
    result["rss_samples"] = sampler.samples
    result["rss_growth_mib_per_minute"] = growth_per_minute(sampler.samples)
    return result


def memory_curve_text(samples: list[tuple[float, float]]) -> str:
    """Resident memory at each tenth of the run (the sample nearest to it)."""
    end = samples[-1][0]
    picks = [min(samples, key=lambda sample, at=tenth * end / 10: abs(sample[0] - at)) for tenth in range(11)]
    return ", ".join(f"{tenth * 10}% {mib:.0f}" for tenth, (_, mib) in enumerate(picks))


def run_isolated(function, *args) -> dict:
    """Run `function(*args)` in a fresh process; add that process's peak resident memory (MiB)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure, (function, *args))


def _measure(function, *args) -> dict:
    result = function(*args)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def speed(model: str, video: str, every: int, batch_size: int) -> dict:
    results = {
        "stages": run_isolated(stage_times, model, video, every, batch_size),
        "full": run_isolated(pipeline_run, model, video, every, batch_size, FULL),
        "fast": run_isolated(pipeline_run, model, video, every, batch_size, {}),
    }
    results["speedup"] = round(results["fast"]["frames_per_second"] / results["full"]["frames_per_second"], 2)
    return results


def accuracy_videos(limit: int) -> list[Path]:
    """Up to `limit` real videos of the shared data: the listed files, then the listed folders' videos."""
    found: list[Path] = []
    for entry in ACCURACY_VIDEOS:
        path = SHARED_DATA / entry
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in {".mp4", ".avi", ".mov", ".webm"}))
    return found[:limit]


def cut_clip(source: Path, target: Path, seconds: float) -> Path:
    """The first `seconds` of `source` as a near-lossless H.264 MP4 (CRF 12) at its frame rate."""
    import av

    from mesofcn.detection.video import FrameSampling, iter_video_frames, probe_video

    fps = probe_video(source).fps or 25.0
    with av.open(str(target), "w") as output:
        stream = None
        for frame in iter_video_frames(source, FrameSampling(every=1)):
            if frame.time >= seconds:
                break
            if stream is None:
                stream = output.add_stream("libx264", rate=round(fps))
                stream.width, stream.height = frame.image.shape[1] // 2 * 2, frame.image.shape[0] // 2 * 2
                stream.pix_fmt, stream.options = "yuv420p", {"crf": "12", "preset": "veryfast"}
            image = frame.image[: stream.height, : stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                output.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                output.mux(packet)
    return target


def compare_paths(model: str, clip: str, batch_size: int, reference: str | None = None) -> dict:
    """
    Full path vs fast path on one clip at every frame: box IoU, lost-face runs, track P(fake) differences. The fast
    path runs `model`; the full path runs `reference` where given (e.g. the fp32 checkpoint behind an int8 export),
    else the same model.
    """
    from mesofcn.detection.tracking import box_iou

    fast_pipe = load_pipeline(model, batch_size)
    full_pipe = load_pipeline(reference, batch_size) if reference else fast_pipe
    full = full_pipe(clip, every=1, **FULL)
    fast = fast_pipe(clip, every=1)
    fast_by_frame: dict[int, list[dict]] = {}
    for face in fast["faces"]:
        fast_by_frame.setdefault(face["frame_index"], []).append(face)
    ious, differences, track_scores = [], [], {}
    missing_run, longest_missing = {}, 0
    for face in full["faces"]:
        candidates = fast_by_frame.get(face["frame_index"], [])
        best = max(candidates, key=lambda other: box_iou(face["box"], other["box"]), default=None)
        iou = box_iou(face["box"], best["box"]) if best is not None else 0.0
        track = face["track_id"]
        if iou >= 0.5:
            ious.append(iou)
            differences.append(abs(face["score"] - best["score"]))
            track_scores.setdefault(track, ([], []))
            track_scores[track][0].append(face["score"])
            track_scores[track][1].append(best["score"])
            missing_run[track] = 0
        else:
            missing_run[track] = missing_run.get(track, 0) + 1
            longest_missing = max(longest_missing, missing_run[track])
    track_differences = [abs(np.mean(a) - np.mean(b)) for a, b in track_scores.values() if len(a) >= 5]
    return {
        "clip": Path(clip).name,
        "frames": full["frames_analysed"],
        "faces_full": len(full["faces"]),
        "faces_fast": len(fast["faces"]),
        "detections_fast": fast["detection"]["frames"],
        "median_iou": round(float(np.median(ious)), 4) if ious else None,
        "longest_lost_run": longest_missing,
        "max_face_dp": round(float(max(differences)), 4) if differences else None,
        "max_track_dp": round(float(max(track_differences)), 4) if track_differences else None,
        "mean_track_dp": round(float(np.mean(track_differences)), 4) if track_differences else None,
        "verdicts": [full["label"], fast["label"]],
        "scores": [None if run["score"] is None else round(run["score"], 4) for run in (full, fast)],
    }


def accuracy(
    model: str, videos: list[Path], seconds: float, batch_size: int, folder: Path, reference: str | None = None
) -> dict:
    rows = []
    for number, video in enumerate(videos):
        clip = cut_clip(video, folder / f"clip{number}.mp4", seconds)
        row = compare_paths(model, str(clip), batch_size, reference)
        row["video"] = str(video.relative_to(SHARED_DATA) if video.is_relative_to(SHARED_DATA) else video)
        print(json.dumps(row), flush=True)
        rows.append(row)
    measured = [row for row in rows if row["median_iou"] is not None]
    track_dps = [row for row in measured if row["mean_track_dp"] is not None]
    return {
        "videos": rows,
        "median_iou": round(float(np.median([row["median_iou"] for row in measured])), 4),
        "worst_median_iou": min(row["median_iou"] for row in measured),
        "longest_lost_run": max(row["longest_lost_run"] for row in rows),
        "mean_track_dp": round(float(np.mean([row["mean_track_dp"] for row in track_dps])), 4),
        "max_track_dp": max(row["max_track_dp"] for row in track_dps),
        "verdicts_agree": sum(row["verdicts"][0] == row["verdicts"][1] for row in rows),
        "max_item_dp": max(
            (round(abs(row["scores"][0] - row["scores"][1]), 4) for row in rows if None not in row["scores"]),
            default=None,
        ),
    }


def looped_video(source: Path, target: Path, minutes: float, height: int = 1080) -> Path:
    """An H.264 video of `minutes` made from `source`'s first 10 seconds scaled to `height` rows, encoded once and
    then repeated packet by packet (no re-encoding), so that a long test video costs seconds to make."""
    import av

    clip = target.with_name("loop-unit.mp4")
    with av.open(str(source)) as src, av.open(str(clip), "w") as output:
        stream_in = src.streams.video[0]
        fps = round(float(stream_in.average_rate or 25))
        stream = output.add_stream("libx264", rate=fps)
        stream.height = height
        stream.width = round(stream_in.codec_context.width * height / stream_in.codec_context.height / 2) * 2
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "23", "preset": "veryfast", "g": str(fps * 10)}
        for count, frame in enumerate(src.decode(stream_in)):
            if count >= fps * 10:
                break
            scaled = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
            scaled.pts, scaled.time_base = count, Fraction(1, fps)
            for packet in stream.encode(scaled):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    with av.open(str(clip)) as unit, av.open(str(target), "w") as output:
        stream_in = unit.streams.video[0]
        stream = output.add_stream_from_template(stream_in)
        packets = [packet for packet in unit.demux(stream_in) if packet.size]
        span = len(packets) * round(1 / (fps * stream_in.time_base))  # one unit's length, in time-base ticks
        repeats = max(1, round(minutes * 60 / float(span * stream_in.time_base)))
        for repeat in range(repeats):
            for packet in packets:
                packet.pts, packet.dts = packet.pts + (span if repeat else 0), packet.dts + (span if repeat else 0)
                packet.stream = stream
                output.mux(packet)
    clip.unlink()
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help="a video file (the speed runs)")
    parser.add_argument(
        "--model",
        help="checkpoint folder, or an .onnx file from `mesofcn export onnx` (e.g. --int8) run by ONNX Runtime "
        "(default: random Table I weights; same speed)",
    )
    parser.add_argument("--every", type=int, default=1, help="analyse every K-th frame (default 1)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-speed", action="store_true", help="skip the speed runs")
    parser.add_argument("--accuracy", action="store_true", help="fast vs full on real clips (needs a trained --model)")
    parser.add_argument(
        "--reference-model",
        help="with --accuracy: run the full path with this model instead of --model (e.g. the fp32 checkpoint "
        "behind an int8 --model), so that the check covers the fast path and the faster network together",
    )
    parser.add_argument("--accuracy-videos", type=int, default=12, help="how many real videos (default 12)")
    parser.add_argument("--accuracy-seconds", type=float, default=4.0, help="seconds of each (default 4)")
    parser.add_argument("--memory-minutes", type=float, help="also: fast-path peak memory on a looped 1080p video")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.reference_model and not args.accuracy:
        parser.error("--reference-model only applies to --accuracy")
    if args.accuracy and not args.model:
        parser.error("--accuracy needs a trained --model (random weights give near-constant scores)")
    results: dict = {"video": args.video, "every": args.every, "load": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or random_checkpoint(Path(folder))
        if not args.no_speed:
            results["speed"] = speed(model, args.video, args.every, args.batch_size)
            print_speed(args.video, results["speed"])
        if args.accuracy:
            videos = accuracy_videos(args.accuracy_videos)
            if not videos:
                print(f"accuracy skipped: no real videos under {SHARED_DATA}")
            else:
                results["accuracy"] = accuracy(
                    model, videos, args.accuracy_seconds, args.batch_size, Path(folder), args.reference_model
                )
                print_accuracy(results["accuracy"])
        if args.memory_minutes:
            long_video = looped_video(Path(args.video), Path(folder) / "long.mp4", args.memory_minutes)
            results["memory"] = run_isolated(sampled_pipeline_run, model, str(long_video), 1, args.batch_size, 5.0)
            results["memory"]["minutes"] = args.memory_minutes
            memory = results["memory"]
            print(
                f"memory: {args.memory_minutes:g}-minute 1080p video at --every 1: {memory['frames_analysed']} frames "
                f"in {memory['seconds']} s, peak {memory['peak_rss_mib']} MiB"
            )
            print(
                f"resident MiB at each tenth of the run: {memory_curve_text(memory['rss_samples'])}; growth over "
                f"the middle half {memory['rss_growth_mib_per_minute']} MiB a minute"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_speed(video: str, speed_results: dict) -> None:
    stages = speed_results["stages"]
    print(f"{video}: {stages['frames_analysed']} analysed frames, {stages['faces']} faces")
    print("stages, ms per analysed frame: " + ", ".join(f"{k} {v}" for k, v in stages["ms_per_frame"].items()))
    for key in ("stages", "full", "fast"):
        run = speed_results[key]
        detections = f", detector on {run['detections']} frames" if "detections" in run else ""
        print(
            f"{key:16s} {run['frames_per_second']:7.2f} frames/s ({run['seconds']} s{detections}), "
            f"peak memory {run['peak_rss_mib']} MiB"
        )
    print(f"fast / full: {speed_results['speedup']}x")


def print_accuracy(summary: dict) -> None:
    print(
        f"accuracy on {len(summary['videos'])} real clips: median box IoU {summary['median_iou']} (worst clip "
        f"{summary['worst_median_iou']}), longest run of frames with a face lost {summary['longest_lost_run']}, "
        f"track mean P(fake) difference mean {summary['mean_track_dp']} / max {summary['max_track_dp']}, "
        f"verdicts agree on {summary['verdicts_agree']} of {len(summary['videos'])} (video P(fake) differs by at most "
        f"{summary['max_item_dp']})"
    )


if __name__ == "__main__":
    sys.exit(main())
