#!/usr/bin/env python
"""
Network speed of MesoFCN on this machine, every back end side by side in one run: faces per second at several batch
sizes for the plain torch network as loaded (the Table I network, channels-last input), torch prepared for inference
(BatchNorm folded, channels-last weights) in fp32 and bf16, and ONNX Runtime fp32 and int8 (static QDQ, as
`mesofcn export onnx --int8` makes it); the int8 / bf16 and int8 / fp32 speed ratios; the machine's own GEMM GFLOP/s;
and how far P(fake) strays from torch fp32 (bf16 on random inputs; ONNX fp32 and int8 on real face crops from the
shared data, when present). bf16 is measured even where the CPU has no native bf16 (then it is emulated and slow).

    python scripts/benchmark.py --model CKPT        # batches 1, 8, 32; a trained checkpoint gives meaningful P(fake)
    python scripts/benchmark.py --batch-sizes 32 --repeats 5 --json bench.json
    python scripts/benchmark.py --repeats 1 --min-seconds 0.5 --calibration-crops 32   # a quick smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection, MesoFCNImageProcessor
from mesofcn.atomic_files import write_text_atomic
from mesofcn.detection.inference import bf16_supported, prepare_for_inference


def network_gflop(config: MesoFCNConfig, size: int) -> float:
    """Floating-point operations (2 per multiply-add) of one forward pass on a size x size face, in GFLOP."""
    macs, channels, side = 0, config.num_channels, size
    for index, width in enumerate(config.hidden_sizes, start=1):
        side -= config.kernel_size - 1
        macs += channels * width * config.kernel_size**2 * side * side
        channels = width
        if index == config.pool_after:
            side = (side - config.pool_kernel_size) // config.pool_stride + 1
    macs += 2 * channels * config.num_labels * side * side  # segmentation head (+ the tiny classifier)
    return 2 * macs / 1e9


def gemm_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` square matrix product speed: the machine's practical arithmetic ceiling."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def faces_per_second(
    model: torch.nn.Module, batch: int, dtype: torch.dtype, repeats: int, min_seconds: float, side: int
) -> float:
    """Median-free best throughput over `repeats` timed runs of at least `min_seconds` each (after warm-up), on
    `side` x `side` crops."""
    pixels = torch.randn(batch, 3, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return best_throughput(lambda: model(pixels), batch, repeats, min_seconds)


def onnx_faces_per_second(session, batch: int, repeats: int, min_seconds: float, side: int) -> float:
    """The same measure for an onnxruntime session fed float32 numpy input (what MesoFCNOnnxModel feeds it)."""
    pixels = {"pixel_values": np.random.default_rng(0).standard_normal((batch, 3, side, side), dtype=np.float32)}
    return best_throughput(lambda: session.run(None, pixels), batch, repeats, min_seconds)


def best_throughput(step, batch: int, repeats: int, min_seconds: float) -> float:
    step()  # warm-up
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while True:
            step()
            count += batch
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, count / elapsed)
    return best


def bf16_probability_gap(model: MesoFCNForDeepfakeDetection, faces: int = 64) -> float:
    """Largest |P(fake, bf16) - P(fake, fp32)| over random faces (as prepared for inference)."""
    torch.manual_seed(0)
    side = model.config.image_size
    pixels = torch.rand(faces, 3, side, side) * 2 - 1
    fp32 = prepare_for_inference(model, "fp32")
    bf16 = prepare_for_inference(model, "bf16")
    with torch.inference_mode():
        p32 = fp32(pixels).logits.softmax(-1)[:, 1]
        p16 = bf16(pixels.bfloat16()).logits.float().softmax(-1)[:, 1]
    return (p32 - p16).abs().max().item()


def load_model(path: str | None) -> tuple[MesoFCNForDeepfakeDetection, MesoFCNImageProcessor]:
    """A checkpoint when given (realistic P(fake) spread), else the Table I network with random weights."""
    if path:
        return MesoFCNForDeepfakeDetection.from_pretrained(path).eval(), MesoFCNImageProcessor.from_pretrained(path)
    torch.manual_seed(0)
    return MesoFCNForDeepfakeDetection(MesoFCNConfig()).eval(), MesoFCNImageProcessor()


def shared_data_dir() -> Path:
    """`$MESOFCN_SHARED_DATA`, else `../shared/data` beside the repository (as the tests find it)."""
    return Path(os.environ.get("MESOFCN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def real_face_crops(sources: list[Path], processor, count: int) -> np.ndarray | None:
    """Up to `count` real face crops made as detection makes them, or None when no source folder exists."""
    from mesofcn.training.onnx_export import collect_calibration_crops

    present = [source for source in sources if source.is_dir()]
    if not present:
        return None
    return collect_calibration_crops(present, processor, max_crops=count).pixel_values


def onnx_sessions(model, calibration: np.ndarray, threads: int) -> dict:
    """ONNX Runtime sessions of the fp32 export and of its int8 quantization (the export command's settings)."""
    from mesofcn.detection.modeling_mesofcn_onnx import cpu_session, export_onnx_bytes
    from mesofcn.training.onnx_export import quantize_int8

    fp32 = export_onnx_bytes(model)
    int8 = quantize_int8(fp32, calibration)
    return {name: cpu_session(data, threads) for name, data in (("fp32", fp32), ("int8", int8))}


def p_fake_differences(model, sessions: dict, crops: np.ndarray) -> dict:
    """max and mean |P(fake) - P(fake) of torch fp32| of each ONNX session on `crops`."""
    with torch.inference_mode():
        reference = prepare_for_inference(model, "fp32")(torch.from_numpy(crops)).logits.softmax(-1)[:, 1].numpy()
    differences = {"faces": len(crops), "p_fake_torch_fp32_std": round(float(reference.std()), 4)}
    for name, session in sessions.items():
        logits = np.concatenate(
            [session.run(["logits"], {"pixel_values": crops[i : i + 32]})[0] for i in range(0, len(crops), 32)]
        )
        gap = np.abs(torch.from_numpy(logits).softmax(-1)[:, 1].numpy() - reference)
        differences[f"onnx_{name}"] = {"max": round(float(gap.max()), 5), "mean": round(float(gap.mean()), 5)}
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: random Table I weights; speed is the same)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the best is reported")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="minimum length of one timed run")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    parser.add_argument(
        "--calibration-crops", type=int, default=None, help="int8 calibration crops (default: the export command's)"
    )
    parser.add_argument("--compare-crops", type=int, default=200, help="real face crops for the P(fake) comparison")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    from mesofcn.training.onnx_export import DEFAULT_CALIBRATION_CROPS

    model, processor = load_model(args.model)
    side = processor.size.height  # the crop the checkpoint's processor makes
    gflop = network_gflop(model.config, side)
    dtypes = [torch.float32, torch.bfloat16]
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": threads,
            "torch": torch.__version__,
            "bf16_native": bf16_supported(),
        },
        "network_gflop_per_face": round(gflop, 3),
        "gemm_gflops": {str(d).removeprefix("torch."): round(gemm_gflops(d), 1) for d in dtypes},
        "results": [],
    }
    print(
        f"MesoFCN network: {gflop:.2f} GFLOP per {side}x{side} face; torch {torch.__version__}, "
        f"{threads} threads, bf16 native: {bf16_supported()}"
    )
    if not bf16_supported():
        print("note: this CPU has no native bf16 (no AVX512-BF16/AMX): torch bf16 below is emulated, hence slow")
    for name, value in report["gemm_gflops"].items():
        print(f"GEMM {name}: {value:.0f} GFLOP/s (ceiling: {value / gflop:.1f} faces/s at full GEMM efficiency)")

    # int8 calibration: real faces (the export command's default source) when the shared data is here.
    data = shared_data_dir()
    calibration_count = args.calibration_crops or DEFAULT_CALIBRATION_CROPS
    calibration = real_face_crops([data / "faces"], processor, calibration_count)
    if calibration is None:
        print(
            f"note: no shared data at {data}: int8 is calibrated on random inputs (its speed holds, not its accuracy)"
        )
        calibration = np.random.default_rng(0).uniform(-1, 1, (32, 3, side, side)).astype(np.float32)
    sessions = onnx_sessions(model, calibration, threads)
    report["int8_calibration_crops"] = len(calibration)

    def record(variant: str, dtype: str, batch: int, speed: float) -> None:
        row = {
            "variant": variant,
            "dtype": dtype,
            "batch": batch,
            "faces_per_second": round(speed, 1),
            "gflops": round(speed * gflop, 1),
        }
        report["results"].append(row)
        print(f"{variant:<22}{dtype:<10}{batch:>6}{speed:>10.1f}{speed * gflop:>10.1f}", flush=True)

    print(f"{'variant':<22}{'dtype':<10}{'batch':>6}{'faces/s':>10}{'GFLOP/s':>10}")
    for dtype in dtypes:
        label = str(dtype).removeprefix("torch.")
        # A copy: Module.to() casts in place, and bf16-rounded weights would skew every later fp32 comparison.
        variants = {
            "torch as loaded": copy.deepcopy(model).to(dtype),
            "torch prepared": prepare_for_inference(model, dtype),
        }
        for variant, net in variants.items():
            for batch in args.batch_sizes:
                speed = faces_per_second(net, batch, dtype, args.repeats, args.min_seconds, side)
                record(variant, label, batch, speed)
    for name, session in sessions.items():
        for batch in args.batch_sizes:
            speed = onnx_faces_per_second(session, batch, args.repeats, args.min_seconds, side)
            record("onnxruntime", name, batch, speed)

    speeds = {(row["variant"], row["dtype"], row["batch"]): row["faces_per_second"] for row in report["results"]}
    report["int8_speed_ratios"] = []
    print("int8 (onnxruntime) speed relative to:")
    for batch in args.batch_sizes:
        int8 = speeds[("onnxruntime", "int8", batch)]
        ratios = {
            "batch": batch,
            "vs_torch_bf16": round(int8 / speeds[("torch prepared", "bfloat16", batch)], 2),
            "vs_torch_fp32": round(int8 / speeds[("torch prepared", "float32", batch)], 2),
            "vs_onnx_fp32": round(int8 / speeds[("onnxruntime", "fp32", batch)], 2),
        }
        report["int8_speed_ratios"].append(ratios)
        print(
            f"  batch {batch:>3}: {ratios['vs_torch_bf16']:.2f}x torch bf16, {ratios['vs_torch_fp32']:.2f}x torch "
            f"fp32 (prepared), {ratios['vs_onnx_fp32']:.2f}x onnxruntime fp32"
        )

    gap = bf16_probability_gap(model)
    report["bf16_max_abs_p_fake_difference"] = round(gap, 5)
    print(f"bf16 vs fp32: largest |P(fake) difference| over 64 faces = {gap:.4f}")
    crops = real_face_crops([data / "faces_extra", data / "real_videos"], processor, args.compare_crops)
    if crops is None:
        print(f"ONNX vs torch fp32 on real faces: skipped (no shared data at {data}; set MESOFCN_SHARED_DATA)")
    else:
        differences = p_fake_differences(model, sessions, crops)
        report["onnx_p_fake_differences"] = differences
        note = "" if args.model else " (random weights: P(fake) barely varies; pass --model for telling figures)"
        print(
            f"|P(fake) - torch fp32| on {differences['faces']} real face crops (faces_extra/, real_videos/; "
            f"int8 calibrated on faces/){note}:"
        )
        for name in sessions:
            figures = differences[f"onnx_{name}"]
            print(f"  onnxruntime {name}: max {figures['max']:.5f}, mean {figures['mean']:.5f}")
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
