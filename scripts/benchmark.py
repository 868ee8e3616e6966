#!/usr/bin/env python
"""
Network speed of MesoFCN on this machine: faces per second at several batch sizes, fp32 and bf16, as loaded
(channels-last input) and prepared for inference (BatchNorm folded, channels-last weights), beside the
machine's own GEMM GFLOP/s, and how far bf16's P(fake) strays from fp32's.

    python scripts/benchmark.py                 # batches 1, 8, 32
    python scripts/benchmark.py --batch-sizes 32 --repeats 5 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection
from mesofcn.inference import bf16_supported, prepare_for_inference


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
    model: torch.nn.Module, batch: int, dtype: torch.dtype, repeats: int, min_seconds: float
) -> float:
    """Median-free best throughput over `repeats` timed runs of at least `min_seconds` each (after warm-up)."""
    pixels = torch.randn(batch, 3, 128, 128, dtype=dtype).contiguous(memory_format=torch.channels_last)
    best = 0.0
    with torch.inference_mode():
        model(pixels)
        for _ in range(repeats):
            count, start = 0, time.perf_counter()
            while True:
                model(pixels)
                count += batch
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            best = max(best, count / elapsed)
    return best


def bf16_probability_gap(model: MesoFCNForDeepfakeDetection, faces: int = 64) -> float:
    """Largest |P(fake, bf16) - P(fake, fp32)| over random faces (as prepared for inference)."""
    torch.manual_seed(0)
    pixels = torch.rand(faces, 3, 128, 128) * 2 - 1
    fp32 = prepare_for_inference(model, "fp32")
    bf16 = prepare_for_inference(model, "bf16")
    with torch.inference_mode():
        p32 = fp32(pixels).logits.softmax(-1)[:, 1]
        p16 = bf16(pixels.bfloat16()).logits.float().softmax(-1)[:, 1]
    return (p32 - p16).abs().max().item()


def load_model(path: str | None) -> MesoFCNForDeepfakeDetection:
    """A checkpoint when given (realistic P(fake) spread), else the Table I network with random weights."""
    if path:
        return MesoFCNForDeepfakeDetection.from_pretrained(path).eval()
    torch.manual_seed(0)
    return MesoFCNForDeepfakeDetection(MesoFCNConfig()).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: random Table I weights; speed is the same)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the best is reported")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="minimum length of one timed run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model)
    gflop = network_gflop(model.config, 128)
    dtypes = [torch.float32] + ([torch.bfloat16] if bf16_supported() else [])
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "bf16_native": bf16_supported(),
        },
        "network_gflop_per_face": round(gflop, 3),
        "gemm_gflops": {str(d).removeprefix("torch."): round(gemm_gflops(d), 1) for d in dtypes},
        "results": [],
    }
    print(
        f"MesoFCN network: {gflop:.2f} GFLOP per 128x128 face; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, bf16 native: {bf16_supported()}"
    )
    for name, value in report["gemm_gflops"].items():
        print(f"GEMM {name}: {value:.0f} GFLOP/s (ceiling: {value / gflop:.1f} faces/s at full GEMM efficiency)")
    print(f"{'variant':<22}{'dtype':<10}{'batch':>6}{'faces/s':>10}{'GFLOP/s':>10}")
    for dtype in dtypes:
        variants = {"as loaded": model.to(dtype), "prepared (BN folded)": prepare_for_inference(model, dtype)}
        for variant, net in variants.items():
            for batch in args.batch_sizes:
                speed = faces_per_second(net, batch, dtype, args.repeats, args.min_seconds)
                row = {
                    "variant": variant,
                    "dtype": str(dtype).removeprefix("torch."),
                    "batch": batch,
                    "faces_per_second": round(speed, 1),
                    "gflops": round(speed * gflop, 1),
                }
                report["results"].append(row)
                print(f"{variant:<22}{row['dtype']:<10}{batch:>6}{speed:>10.1f}{speed * gflop:>10.1f}")
        model = model.float()
    if torch.bfloat16 in dtypes:
        gap = bf16_probability_gap(model)
        report["bf16_max_abs_p_fake_difference"] = round(gap, 5)
        print(f"bf16 vs fp32: largest |P(fake) difference| over 64 faces = {gap:.4f}")
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
