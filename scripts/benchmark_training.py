#!/usr/bin/env python
"""
Does the accelerator wait for the data? Training speed in faces per second, side by side:

1. the pure forward/backward/Adam step of the network on synthetic tensors already on the device (the ceiling);
2. `mesofcn train` (the real Trainer: data loader, augmentation, device transfer, step) on the DatasetDict folders
   (PNG crops decoded every batch);
3. the same Trainer on the same rows packed by `mesofcn prepare pack` (uint8 arrays read from memory maps);

4. the Trainer's data loader alone (read, decode, augment, collate, to the device, normalize) for both formats: how
   fast the data path could feed the network;

each with its ratio to (1), plus the packed size on disk and of its compressed copy (--compress).

    python scripts/benchmark_training.py --work /tmp/bench            # the default's datasets, CPU settings
    python scripts/benchmark_training.py --packed_dir PACKED --steps 60 --json bench.json
    python scripts/benchmark_training.py --mixed_precision bf16 --batch_size 256 --num_workers 8   # a GPU

Defaults follow the default checkpoint's recipe (task sbi-any-all, --augment, batch 16, fp32: on an AVX2-only CPU
bf16 is emulated and about 10x slower). The datasets default to /work/runs/default/{blends,tools,ffpp_c23} where
present; they are packed once into --work/packed (reused while its sources are the same folders) unless --packed_dir
names a packed copy of them. Timing starts after --warmup steps and ends before the final validation; validation is
limited to --eval_samples rows. The machine's load average is printed: figures from a busy machine mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection
from mesofcn.cli.training import build_train_parser
from mesofcn.training.pack import PACK_ARCHIVE, pack_datasets
from mesofcn.training.packed_data import PACK_INDEX, is_packed

DEFAULT_RUNS = Path("/work/runs/default")
DEFAULT_DATASETS = [DEFAULT_RUNS / name for name in ("blends", "tools", "ffpp_c23")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset_dir", nargs="+", type=Path, help="face-crop DatasetDicts (default: the default's training sets)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mesofcn-benchmark-training",
        help="folder for the packed copy and the runs (default: under the system's temporary folder)",
    )
    parser.add_argument(
        "--packed_dir", type=Path, help="an existing packed copy of the --dataset_dir folders (else one in --work)"
    )
    parser.add_argument("--task", default="sbi-any-all", help="training task (default: the default's)")
    parser.add_argument("--batch_size", type=int, default=16, help="faces per step (default: the default's 16)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--num_workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--no_augment", action="store_true", help="train without --augment")
    parser.add_argument("--eval_samples", type=int, default=16, help="validation rows (validation is not timed)")
    parser.add_argument("--skip_png", action="store_true", help="measure only the packed format")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pure_step_rate(batch_size: int, steps: int, warmup: int, mixed_precision: str) -> float:
    """Faces/s of forward + backward + Adam on random tensors already on the device (the Trainer's model settings:
    channels-last, the joint loss, autocast as Accelerate applies it)."""
    torch.manual_seed(0)
    target = device()
    model = MesoFCNForDeepfakeDetection(MesoFCNConfig(seg_loss_weight=0.3)).to(
        target, memory_format=torch.channels_last
    )
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    side = model.config.image_size
    grid = model.config.feature_map_size(side)
    pixels = torch.randn(batch_size, 3, side, side, device=target)
    labels = torch.randint(0, 2, (batch_size,), device=target)
    masks = torch.randint(0, 2, (batch_size, grid, grid), device=target)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    scaler = torch.amp.GradScaler(target.type) if mixed_precision == "fp16" else None

    def step() -> None:
        with torch.autocast(target.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(pixel_values=pixels, labels=labels, mask_labels=masks).loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad()

    for _ in range(warmup):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_argv(datasets: list[Path], output: Path, args: argparse.Namespace) -> list[str]:
    argv = ["--dataset_dir", *map(str, datasets), "--task", args.task, "--output_dir", str(output)]
    argv += ["--per_device_train_batch_size", str(args.batch_size), "--mixed_precision", args.mixed_precision]
    argv += ["--max_train_steps", str(args.warmup + args.steps), "--eval_steps", str(10**9), "--report_to", "none"]
    argv += ["--disable_tqdm", "--max_eval_samples", str(args.eval_samples), "--seed", "42"]
    argv += ["--dataloader_num_workers", str(args.num_workers), "--checkpointing_steps", str(10**9)]
    return argv + ([] if args.no_augment else ["--augment"])


def trainer_rate(datasets: list[Path], output: Path, args: argparse.Namespace) -> float:
    """Faces/s of the Trainer's steps warmup+1 .. warmup+steps (timed from the end of step `warmup` to the end of
    the last step, so data loading and transfers count, the final validation and checkpoint do not)."""
    from mesofcn.training.trainer import train

    marks: dict[int, float] = {}

    def mark(trainer) -> None:
        synchronize()
        marks[trainer.state.global_step] = time.perf_counter()

    train(build_train_parser().parse_args(train_argv(datasets, output, args)), step_callback=mark)
    reset_accelerate()
    first, last = args.warmup, args.warmup + args.steps
    return args.steps * args.batch_size / (marks[last] - marks[first])


def loader_rate(datasets: list[Path], output: Path, args: argparse.Namespace) -> float:
    """Faces/s of the Trainer's training data loader alone (read, decode, augment, collate, move to the device,
    normalize), without the network: how fast the data path could feed it."""
    from mesofcn.training.batches import normalize_pixels
    from mesofcn.training.trainer import Trainer

    trainer = Trainer(build_train_parser().parse_args(train_argv(datasets, output, args)))
    batches = epochs_of(trainer.train_loader)
    for _ in range(args.warmup):
        next(batches)
    synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        normalize_pixels(next(batches)["pixel_values"], trainer.pixel_table)
    synchronize()
    rate = args.steps * args.batch_size / (time.perf_counter() - start)
    del batches, trainer
    reset_accelerate()
    return rate


def epochs_of(loader) -> Iterator[dict]:
    """The loader's batches, epoch after epoch: a small dataset still gives --warmup + --steps batches."""
    while True:
        yield from loader


def reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def packed_copy(datasets: list[Path], work: Path, given: Path | None) -> tuple[Path, int, int | None]:
    """The packed copy of `datasets` (`given`, or under `work`, packed again with --compress unless it holds exactly
    these sources) and its raw and compressed sizes in bytes (None without a compressed copy)."""
    out = given or work / "packed"
    sources = [str(path.resolve()) for path in datasets]
    archive = out / PACK_ARCHIVE
    current = is_packed(out) and json.loads((out / PACK_INDEX).read_text())["sources"] == sources
    if given is not None and not current:
        raise SystemExit(f"error: {given} is not a packed copy of {' '.join(map(str, datasets))}")
    if not current or (given is None and not archive.is_file()):
        pack_datasets(datasets, out, compress=True, progress=True)
    index = json.loads((out / PACK_INDEX).read_text())
    raw = sum(entry["bytes"] for entry in index["files"].values()) + (out / PACK_INDEX).stat().st_size
    return out, raw, archive.stat().st_size if archive.is_file() else None


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datasets = args.dataset_dir or [path for path in DEFAULT_DATASETS if path.is_dir()]
    if not datasets:
        print("error: no dataset folders (pass --dataset_dir)", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    packed, raw_bytes, compressed_bytes = packed_copy(datasets, args.work, args.packed_dir)
    loads = {"start": load_average()}
    results = {"pure": pure_step_rate(args.batch_size, args.steps, args.warmup, args.mixed_precision)}
    with tempfile.TemporaryDirectory(dir=args.work) as runs:
        if not args.skip_png:
            results["png"] = trainer_rate(datasets, Path(runs) / "png", args)
        results["packed"] = trainer_rate([packed], Path(runs) / "packed", args)
        if not args.skip_png:
            results["png_loader"] = loader_rate(datasets, Path(runs) / "png_loader", args)
        results["packed_loader"] = loader_rate([packed], Path(runs) / "packed_loader", args)
    loads["end"] = load_average()
    names = {
        "pure": "pure forward/backward (synthetic tensors on the device)",
        "png": "trainer, DatasetDict folders (PNG)",
        "packed": "trainer, packed folder (uint8 arrays)",
        "png_loader": "data loader alone, DatasetDict folders (PNG)",
        "packed_loader": "data loader alone, packed folder",
    }
    print(
        f"device {device()}, {torch.get_num_threads()} threads, batch {args.batch_size}, mixed precision "
        f"{args.mixed_precision}, {'no augmentation' if args.no_augment else '--augment'}, {args.num_workers} "
        f"workers, {args.steps} timed steps after {args.warmup}; load average {loads['start']} -> {loads['end']}"
    )
    for key, rate in results.items():
        print(f"  {names[key]:<58} {rate:10.2f} faces/s   {rate / results['pure']:6.1%} of pure")
    print(f"packed copy of {' '.join(map(str, datasets))}: {packed}")
    compressed = "none" if compressed_bytes is None else f"{compressed_bytes / 1e6:.1f} MB"
    print(f"  on disk {raw_bytes / 1e6:.1f} MB, compressed ({PACK_ARCHIVE}) {compressed}")
    if args.json:
        report = {
            "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
            "datasets": [str(path) for path in datasets],
            "device": str(device()),
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "load_average": loads,
            "faces_per_second": results,
            "ratio_to_pure": {key: rate / results["pure"] for key, rate in results.items()},
            "packed_bytes": raw_bytes,
            "compressed_bytes": compressed_bytes,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
