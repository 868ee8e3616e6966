"""Fault injection: SIGKILL `mesofcn prepare`, `mesofcn train` and `mesofcn detect` at random moments, then check.

    python scripts/fault_injection.py            # at least 5 kills of each (about 15 minutes on 2 CPU cores)
    python scripts/fault_injection.py --quick    # at least 2 kills of each, smaller inputs, for CI (about 5 minutes)

Everything runs on media made on the spot in a temporary folder (scikit-image's public-domain astronaut photo,
moved, scaled and mirrored into short videos), with a randomly initialised checkpoint:

- prepare: `mesofcn prepare self-blend` is killed and rerun into the same folder until a run finishes (then a fresh
  folder, until enough kills landed); each finished build must hold exactly the rows of an uninterrupted build, the
  PNG bytes of every crop and mask included.
- lock: two `mesofcn prepare` into one folder, the second started a second after the first: the one that comes
  second to the folder must be refused with a one-line error, and the other must finish an uninterrupted build.
- training: `mesofcn train` on that dataset (--augment, --online_self_blend, a checkpoint every step) is killed and
  resumed with `--resume_from_checkpoint latest` (from scratch while no checkpoint exists); the final weights must
  equal an uninterrupted run's bit for bit, and the run folder must hold no pickle.
- detect: `mesofcn detect VIDEO --json --overlay` is killed; a file under a final name must read back completely
  (temporary files, which a killed process cannot remove, are counted apart).

Kill moments are drawn uniformly between the moment an uninterrupted run starts writing its outputs (imports and
model loading come first) and its end. The figures are printed; the exit code is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_inputs import face_frames, mesofcn, resized, write_video  # noqa: E402  (the sibling script's)

__all__ = ["Run", "Target", "kill_and_resume", "main", "run_killed", "supervise"]

#: Prepare's exit code for a refused command (see mesofcn.cli.commands).
EXIT_USAGE = 2
#: Suffixes of pickle files, which no training run folder may hold.
PICKLE_SUFFIXES = (".pkl", ".bin", ".pt", ".pth", ".ckpt")


#: What tells that a run has begun its work (imports and model loading done): called with the run's process and log.
Working = Callable[[subprocess.Popen, Path], bool]


@dataclass(frozen=True)
class Run:
    """One supervised run: when it began working and when it ended (seconds from its start), and whether a SIGKILL
    ended it."""

    working_at: float | None
    ended_at: float
    killed: bool

    @property
    def working_seconds(self) -> float:
        return self.ended_at - (self.working_at or 0.0)


@dataclass
class Target:
    """The figures of one command under fault injection."""

    name: str
    clean: Run | None = None  # the uninterrupted run
    kills: list[tuple[Run, str]] = field(default_factory=list)  # each killed run, and how far it had got
    runs: int = 0
    trials: int = 0
    checks: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, text: str, ok: bool) -> None:
        self.checks.append((text, ok))

    @property
    def passed(self) -> bool:
        return all(ok for _, ok in self.checks)


# ----------------------------------------------------------------------------------------------- processes


def log_of(out: Path, run: int) -> Path:
    """Where the stderr of the `run`-th command writing into `out` goes (beside `out`)."""
    return out.with_name(f"{out.name}.run{run}.log")


def start(command: list[str], log: Path) -> subprocess.Popen:
    """Start `command` in its own process group (a kill reaches its workers too), its stderr into `log`."""
    with log.open("w") as stderr:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def failed(command: list[str], process: subprocess.Popen, log: Path) -> RuntimeError:
    print(log.read_text()[-3000:], file=sys.stderr)
    return RuntimeError(f"exit code {process.returncode}: {' '.join(command)}")


def supervise(command: list[str], log: Path, working: Working, kill_after: float | None = None) -> Run:
    """Run `command` to its end, noting when `working` first holds; with `kill_after`, SIGKILL its process group that
    many seconds after it began working (a run that ends earlier just ends). A failed run raises."""
    clock, working_at = time.perf_counter(), None
    process = start(command, log)
    while process.poll() is None:
        now = time.perf_counter() - clock
        if working_at is None and working(process, log):
            working_at = now
        if working_at is not None and kill_after is not None and now >= working_at + kill_after:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return Run(working_at, now, killed=True)
        time.sleep(0.02)
    if process.returncode != 0:
        raise failed(command, process, log)
    return Run(working_at, time.perf_counter() - clock, killed=False)


def run_killed(
    command: list[str], log: Path, working: Working, target: Target, rng: random.Random, progress: Callable[[], str]
) -> bool:
    """Run `command`, SIGKILLed at a uniformly random moment of the working time of `target`'s uninterrupted run
    (counted from when this run begins working); True when the kill landed (recorded with `progress()`)."""
    run = supervise(command, log, working, kill_after=rng.uniform(0.0, target.clean.working_seconds))
    target.runs += 1
    if run.killed:
        target.kills.append((run, progress()))
    return run.killed


def kill_and_resume(
    command: Callable[[Path], list[str]],
    out: Path,
    working: Callable[[Path], Working],
    target: Target,
    rng: random.Random,
    progress: Callable[[Path], str],
) -> None:
    """Run `command(out)` again and again, each run killed at a random moment of its work, until one finishes;
    `working(out)` tells when a run has begun working, `progress(out)` how far a killed run got."""
    while run_killed(command(out), log_of(out, target.runs), working(out), target, rng, lambda: progress(out)):
        pass


# ----------------------------------------------------------------------------------------------- media


def real_sources(folder: Path, count: int, frames: int) -> Path:
    """`count` short videos of the face, each moved, scaled and mirrored its own way."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        side = 160 + 16 * index
        clip = [resized(frame, side, side) for frame in face_frames(frames, 256)]
        if index % 2:
            clip = [np.ascontiguousarray(frame[:, ::-1]) for frame in clip]
        padded = [np.pad(frame, ((8 * index, side % 2), (0, 8 * index + side % 2), (0, 0))) for frame in clip]
        write_video(folder / f"person_{index:02d}.mp4", padded)
    return folder


def detect_video(path: Path, frames: int) -> Path:
    """A 640x360 clip of the face drifting across the frame."""
    face = resized(face_frames(1, 256)[0], 200, 200)
    clip = []
    for index in range(frames):
        canvas = np.zeros((360, 640, 3), dtype=np.uint8)
        left = int(index * (640 - 200) / max(frames - 1, 1))
        canvas[80:280, left : left + 200] = face
        clip.append(canvas)
    return write_video(path, clip)


# ----------------------------------------------------------------------------------------------- checks


def dataset_tables(folder: Path) -> dict:
    """Each split's Arrow table (rows with their PNG bytes) of a finished prepare output."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(folder))
    return {split: dataset[split].data.table for split in dataset}


def same_rows(folder: Path, reference: dict) -> bool:
    tables = dataset_tables(folder)
    return tables.keys() == reference.keys() and all(tables[split].equals(reference[split]) for split in tables)


def prepare_working(out: Path) -> Working:
    """A prepare run has begun working once it holds the folder's lock (the lock file names its process)."""

    def working(process: subprocess.Popen, log: Path) -> bool:
        try:
            return (out / ".lock").read_text().strip() == str(process.pid)
        except OSError:
            return False

    return working


def prepare_progress(out: Path) -> str:
    done = len(list((out / ".work").rglob("*.parquet"))) if (out / ".work").is_dir() else 0
    return f"{done} work items done, {'dataset published' if (out / 'dataset_dict.json').is_file() else 'no dataset'}"


def same_weights(first: Path, second: Path) -> bool:
    from safetensors.torch import load_file

    a, b = load_file(str(first)), load_file(str(second))
    return a.keys() == b.keys() and all(bool((a[key] == b[key]).all()) for key in a)


def checkpoints_in(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("step_*"))


def training_working(run_dir: Path) -> Working:
    """A training run has begun working once it logs its plan (data loaded, model built, checkpoint resumed)."""
    return lambda process, log: "training rows" in log.read_text()


def training_progress(run_dir: Path) -> str:
    found = checkpoints_in(run_dir)
    return f"latest checkpoint {found[-1].name if found else 'none'}"


def pickles_in(run_dir: Path) -> list[Path]:
    return [path for path in run_dir.rglob("*") if path.suffix in PICKLE_SUFFIXES]


def detect_outputs(out: Path, expected_frames: int) -> tuple[list[str], list[str]]:
    """(files under a final name that do not read back completely, temporary files) in a detect output folder."""
    broken, temporary = [], []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if ".partial" in path.name:
            temporary.append(path.name)
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except ValueError:
                broken.append(path.name)
        elif path.suffix == ".mp4":
            try:
                with av.open(str(path)) as container:
                    decoded = sum(1 for _ in container.decode(video=0))
            except av.error.FFmpegError:
                decoded = -1
            if decoded != expected_frames:
                broken.append(f"{path.name} ({decoded} of {expected_frames} frames)")
    return broken, temporary


# ----------------------------------------------------------------------------------------------- the targets


def prepare_command(sources: Path, out: Path, frames: int) -> list[str]:
    return mesofcn(
        "prepare", "self-blend", "--real", sources, "--compression", "c23", "--every", "2", "--max-frames",
        str(frames), "--split", "0.5,0.25,0.25", "--seed", "0", "--out", out, "--quiet",
    )  # fmt: skip


def check_prepare(root: Path, sources: Path, frames: int, kills: int, rng: random.Random) -> tuple[Target, Path]:
    """Kill and resume `prepare self-blend`; returns the figures and the uninterrupted build's folder."""
    target = Target("mesofcn prepare self-blend")
    clean = root / "prepare_clean"
    command = functools.partial(prepare_command, sources, frames=frames)
    target.clean = supervise(command(clean), log_of(clean, 0), prepare_working(clean))
    reference = dataset_tables(clean)
    rows = sum(table.num_rows for table in reference.values())
    while len(target.kills) < kills:
        out = root / f"prepare_trial_{target.trials}"
        target.trials += 1
        kill_and_resume(command, out, prepare_working, target, rng, prepare_progress)
        target.check(
            f"trial {target.trials}: the finished build holds the clean build's {rows} rows", same_rows(out, reference)
        )
    return target, clean


def check_lock(root: Path, sources: Path, frames: int, clean: Path) -> Target:
    """Two builds into one folder, one second apart: the later one to the folder is refused."""
    target = Target("two mesofcn prepare into one folder")
    out = root / "prepare_locked"
    command = prepare_command(sources, out, frames)
    logs = [log_of(out, 0), log_of(out, 1)]
    first = start(command, logs[0])
    time.sleep(1.0)
    second = start(command, logs[1])
    results = []
    for process, log in zip((first, second), logs, strict=True):
        process.wait()
        errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
        results.append((process.returncode, errors))
    target.runs = 2
    refused = [errors for code, errors in results if code == EXIT_USAGE]
    finished = [code for code, _ in results if code == 0]
    target.check("one run refused (exit code 2), the other finished (exit code 0)", len(refused) == len(finished) == 1)
    lines = refused[0] if refused else []
    lock_line = len(lines) == 1 and str(out) in lines[0] and "another mesofcn prepare is writing there" in lines[0]
    target.check("the refused run printed one error line naming the folder and the lock", lock_line)
    target.check(
        "the finished run holds the rows of an uninterrupted build",
        bool(finished) and same_rows(out, dataset_tables(clean)),
    )
    which = "second" if results[1][0] == EXIT_USAGE else "first"
    target.notes.append(f"the {which} run was refused: {lines[0] if lines else results}")
    return target


def train_command(dataset: Path, out: Path, steps: int) -> list[str]:
    command = mesofcn(
        "train", "--dataset_dir", dataset, "--task", "sbi-c23-self", "--output_dir", out, "--max_train_steps",
        str(steps), "--per_device_train_batch_size", "4", "--eval_steps", "4", "--checkpointing_steps", "1",
        "--augment", "--online_self_blend", "--seed", "1", "--deterministic", "--report_to", "none",
        "--disable_tqdm", "--mixed_precision", "no",
    )  # fmt: skip
    return command + (["--resume_from_checkpoint", "latest"] if checkpoints_in(out) else [])


def check_training(root: Path, dataset: Path, steps: int, kills: int, rng: random.Random) -> Target:
    target = Target("mesofcn train --augment --online_self_blend")
    clean = root / "train_clean"
    command = functools.partial(train_command, dataset, steps=steps)
    target.clean = supervise(command(clean), log_of(clean, 0), training_working(clean))
    while len(target.kills) < kills:
        out = root / f"train_trial_{target.trials}"
        target.trials += 1
        kill_and_resume(command, out, training_working, target, rng, training_progress)
        identical = same_weights(clean / "final" / "model.safetensors", out / "final" / "model.safetensors")
        target.check(f"trial {target.trials}: final weights bit-identical to the uninterrupted run's", identical)
        target.check(f"trial {target.trials}: no pickle (.pkl, .bin, .pt ...) in the run folder", not pickles_in(out))
    return target


def check_detect(root: Path, model: Path, frames: int, kills: int, rng: random.Random) -> Target:
    target = Target("mesofcn detect --json --overlay")
    video = detect_video(root / "detect_input.mp4", frames)

    def command(out: Path) -> list[str]:
        return mesofcn(
            "detect", video, "--model", model, "--json", out / "report.json", "--overlay", out / "overlay.mp4"
        )

    def working(out: Path) -> Working:
        """A detect run has begun working once the analysis progress bar is out (the model and detector loaded)."""
        return lambda process, log: f"{video.name}:" in log.read_text()

    def written(out: Path) -> str:
        return ", ".join(sorted(path.name for path in out.iterdir())) or "nothing written"

    clean = root / "detect_clean"
    clean.mkdir()
    target.clean = supervise(command(clean), log_of(clean, 0), working(clean))
    temporary_left = 0
    while len(target.kills) < kills:
        out = root / f"detect_trial_{target.trials}"
        out.mkdir()
        target.trials += 1
        killed = run_killed(command(out), log_of(out, 0), working(out), target, rng, lambda out=out: written(out))
        broken, temporary = detect_outputs(out, frames)
        temporary_left += len(temporary)
        how = "killed" if killed else "finished before its kill"
        target.check(
            f"trial {target.trials} ({how}): no half-written file under a final name {broken or ''}", not broken
        )
    target.notes.append(f"temporary files left by killed runs (hidden, never under a final name): {temporary_left}")
    return target


# ----------------------------------------------------------------------------------------------- report


def print_target(target: Target) -> None:
    print(f"\n## {target.name}")
    if target.clean is not None:
        clean = target.clean
        print(
            f"uninterrupted run: {clean.ended_at:.1f} s, working from {clean.working_at or 0:.1f} s (after start-up)"
        )
    print(f"{target.runs} runs in {target.trials or 1} trial(s), {len(target.kills)} killed")
    for number, (run, progress) in enumerate(target.kills, 1):
        moment = f"{run.ended_at - (run.working_at or 0):4.1f} s into its work ({run.ended_at:5.1f} s after its start)"
        print(f"  kill {number}: SIGKILL {moment}: {progress}")
    for text, ok in target.checks:
        print(f"  [{'ok' if ok else 'FAILED'}] {text}")
    for note in target.notes:
        print(f"  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="at least 2 kills of each and smaller inputs (CI)")
    parser.add_argument("--kills", type=int, help="kills of each command, at least (default 5; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--keep", type=Path, help="work in this (new) folder and keep it")
    args = parser.parse_args(argv)
    kills = args.kills or (2 if args.quick else 5)
    sources_count, frames, train_steps, detect_frames = (12, 6, 6, 150) if args.quick else (24, 8, 12, 300)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mesofcn-faults-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        from mesofcn.cli.demo import untrained_checkpoint

        model = Path(untrained_checkpoint(root / "checkpoint"))
        sources = real_sources(root / "real", sources_count, frames * 2)
        prepare, clean = check_prepare(root, sources, frames, kills, rng)
        targets = [
            prepare,
            check_lock(root, sources, frames, clean),
            check_training(root, clean, train_steps, kills, rng),
            check_detect(root, model, detect_frames, kills, rng),
        ]
    for target in targets:
        print_target(target)
    print()
    for target in targets:
        passed = sum(ok for _, ok in target.checks)
        verdict = "pass" if target.passed else "FAIL"
        print(f"{target.name}: {len(target.kills)} kills, {passed}/{len(target.checks)} checks passed ({verdict})")
    print(f"total {time.perf_counter() - started:.0f} s ({'quick' if args.quick else 'full'} run, seed {args.seed})")
    return 0 if all(target.passed for target in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
