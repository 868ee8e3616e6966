#!/usr/bin/env python
"""
End-to-end speed of `mesofcn detect` on one video: time per analysed frame split into decode / detect / crop /
network, frames analysed per second through the pipeline with `--every 1` and with the default sampling, and the
peak memory of each run (each run in its own process, so the peaks do not mix).

    python scripts/benchmark_detection.py ../shared/data/ffpp_mini/original_sequences/youtube/c23/videos/004.mp4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path


def random_checkpoint(folder: Path) -> str:
    """A Table I network with random weights: its speed is that of any trained checkpoint."""
    import torch

    from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection, MesoFCNImageProcessor

    torch.manual_seed(0)
    MesoFCNForDeepfakeDetection(MesoFCNConfig()).save_pretrained(folder)
    MesoFCNImageProcessor().save_pretrained(folder)
    return str(folder)


def load_pipeline(model: str, batch_size: int):
    from transformers import pipeline

    import mesofcn  # noqa: F401  (registers the task)

    return pipeline("deepfake-detection", model=model, batch_size=batch_size, trust_remote_code=False)


def stage_times(model: str, video: str, every: int, batch_size: int) -> dict:
    """Seconds per analysed frame for each stage, using the pipeline's own detector, processor and network."""
    import torch

    from mesofcn.video import FrameSampling, iter_video_frames

    pipe = load_pipeline(model, batch_size)
    totals = dict.fromkeys(("decode", "detect", "crop", "network"), 0.0)
    frames = faces = 0
    iterator = iter(iter_video_frames(video, FrameSampling(every=every)))
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
    per_frame = {stage: round(1000 * seconds / max(frames, 1), 2) for stage, seconds in totals.items()}
    return {"frames": frames, "faces": faces, "ms_per_frame": per_frame}


def end_to_end(model: str, video: str, every: int | None, batch_size: int) -> dict:
    """Frames analysed per second through `pipeline(...)` (what `mesofcn detect` runs)."""
    pipe = load_pipeline(model, batch_size)
    options = {"every": every} if every else {}
    start = time.perf_counter()
    report = pipe(video, **options)
    seconds = time.perf_counter() - start
    return {
        "sampling": report["sampling"],
        "frames_analysed": report["frames_analysed"],
        "faces": len(report["faces"]),
        "seconds": round(seconds, 2),
        "frames_per_second": round(report["frames_analysed"] / seconds, 2),
    }


def run_isolated(function, *args) -> dict:
    """Run `function(*args)` in a fresh process; add that process's peak resident memory (MiB)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure, (function, *args))


def _measure(function, *args) -> dict:
    result = function(*args)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help="a video file")
    parser.add_argument("--model", help="checkpoint folder (default: random Table I weights; same speed)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or random_checkpoint(Path(folder))
        results = {
            "video": args.video,
            "stages_every_1": run_isolated(stage_times, model, args.video, 1, args.batch_size),
            "end_to_end_every_1": run_isolated(end_to_end, model, args.video, 1, args.batch_size),
            "end_to_end_default": run_isolated(end_to_end, model, args.video, None, args.batch_size),
        }
    stages = results["stages_every_1"]
    print(f"{args.video}: {stages['frames']} frames, {stages['faces']} faces")
    print("ms per analysed frame: " + ", ".join(f"{k} {v}" for k, v in stages["ms_per_frame"].items()))
    for key in ("end_to_end_every_1", "end_to_end_default"):
        run = results[key]
        print(
            f"{key}: {run['frames_analysed']} frames in {run['seconds']} s = {run['frames_per_second']} frames/s "
            f"({run['sampling']}), peak memory {run['peak_rss_mib']} MiB"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
