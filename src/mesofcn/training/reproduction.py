"""
The paper's λ sweep and its tables: for every task the dataset(s) can train and validate, train with
λ in {0, 0.2, ..., 0.7} (classification, Table II) and λ = 1 (segmentation, Table III), evaluate each best
checkpoint, and write Markdown tables laid out like Tables II, III and IV with the paper's numbers beside ours.

Each training run is a separate process (`python -m mesofcn.cli train`: `mesofcn train`, or under `--launcher`, e.g.
`accelerate launch --multi_gpu --num_processes 8`), so runs cannot disturb each other; each evaluation runs here.
Runs whose best/ already exists are kept (delete a run folder to redo it).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .data import DatasetError, column_as_strings, get_split, load_dataset_dict, select_task_rows
from .evaluation import evaluate_checkpoint
from .tasks import (
    CLASSIFICATION_LAMBDAS,
    PAPER_ACCURACY,
    PAPER_SEGMENTATION_PIXEL_ACCURACY,
    SEGMENTATION_LAMBDA,
    XCEPTIONNET_ACCURACY,
    parse_task,
    planned_tasks,
    tasks_for_methods,
)

logger = logging.getLogger(__name__)
MISSING = "—"


@dataclass
class SweepRun:
    """One (task, λ) training run and what became of it."""

    task: str
    seg_loss_weight: float
    run_dir: Path
    status: str = "planned"  # planned | trained | kept | failed | skipped
    reason: str = ""
    validation_accuracy: float | None = None
    results: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "seg_loss_weight": self.seg_loss_weight,
            "run_dir": str(self.run_dir),
            "status": self.status,
            "reason": self.reason,
            "validation_accuracy": self.validation_accuracy,
            "results": self.results,
        }


def candidate_tasks(dataset_dir: str | Path, split: str = "train") -> list[str]:
    """Method-specific and `-all` tasks for every family/compression/method present in a dataset's split."""
    data = load_dataset_dict(dataset_dir)
    dataset = get_split(data, split, dataset_dir)
    methods = column_as_strings(dataset, "method")
    labels = dataset.with_format("numpy")["label"]
    compressions = sorted(set(column_as_strings(dataset, "compression")) & {"c23", "c40"})
    fake_methods = sorted({m for m, label in zip(methods, labels, strict=True) if int(label) == 1})
    family = "gan" if any(("gan" in m.lower()) for m in fake_methods) else "ff"
    tasks = []
    for compression in compressions:
        specific = tasks_for_methods(family, compression, fake_methods)
        tasks += specific + [f"{family}-{compression}-all"]
    return tasks


def task_problem(dataset_dir: str | Path, task: str, splits: Sequence[str]) -> str | None:
    """Why `task` cannot be trained/evaluated on these splits (no real or no fake rows), or None if it can."""
    data = load_dataset_dict(dataset_dir)
    for split in splits:
        try:
            select_task_rows(get_split(data, split, dataset_dir), parse_task(task), f"split {split!r}")
        except DatasetError as error:
            return str(error)
    return None


def lambda_label(value: float) -> str:
    return f"{value:g}"


def run_training(
    run: SweepRun, dataset_dir: str | Path, launcher: Sequence[str], train_args: Sequence[str], validation_split: str
) -> None:
    """Train one (task, λ) in its own process; the run's log goes to run_dir/train.log."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    command = [
        *launcher,
        "-m",
        "mesofcn.cli",
        "train",
        "--dataset_dir",
        str(dataset_dir),
        "--task",
        run.task,
        "--seg_loss_weight",
        lambda_label(run.seg_loss_weight),
        "--output_dir",
        str(run.run_dir),
        "--validation_split",
        validation_split,
        "--disable_tqdm",
        *train_args,
    ]
    logger.info("training %s λ=%s: %s", run.task, lambda_label(run.seg_loss_weight), shlex.join(command))
    with (run.run_dir / "train.log").open("w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if finished.returncode != 0:
        tail = (run.run_dir / "train.log").read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"training {run.task} λ={lambda_label(run.seg_loss_weight)} failed: {tail[0]}")


def sweep(
    dataset_dirs: Sequence[str | Path],
    output_dir: str | Path,
    lambdas: Sequence[float] = CLASSIFICATION_LAMBDAS,
    segmentation: bool = True,
    tasks: Sequence[str] | None = None,
    eval_split: str = "test",
    validation_split: str = "validation",
    launcher: Sequence[str] = (sys.executable,),
    train_args: Sequence[str] = (),
    eval_batch_size: int = 64,
) -> list[SweepRun]:
    """Train and evaluate every (task, λ) of the sweep; write tables.md and sweep.json into `output_dir`."""
    output_dir = Path(output_dir)
    runs: list[SweepRun] = []
    values = list(dict.fromkeys(float(v) for v in [*lambdas, *([SEGMENTATION_LAMBDA] if segmentation else [])]))
    planned = {dataset_dir: candidate_tasks(dataset_dir) for dataset_dir in dataset_dirs}
    for task in tasks or []:
        if not any(task in present for present in planned.values()):
            parse_task(task)
            runs += [SweepRun(task, v, output_dir / "runs" / task, "skipped", "not in the dataset(s)") for v in values]
    for dataset_dir, present in planned.items():
        for task in [t for t in present if not tasks or t in tasks]:
            problem = task_problem(dataset_dir, task, ["train", validation_split, eval_split])
            for value in values:
                run = SweepRun(task, value, output_dir / "runs" / task / f"lambda_{lambda_label(value)}")
                runs.append(run)
                if problem:
                    run.status, run.reason = "skipped", problem
                    continue
                execute(run, dataset_dir, launcher, train_args, validation_split, eval_split, eval_batch_size)
    write_outputs(output_dir, runs, eval_split, lambdas)
    return runs


def execute(
    run: SweepRun,
    dataset_dir: str | Path,
    launcher: Sequence[str],
    train_args: Sequence[str],
    validation_split: str,
    eval_split: str,
    eval_batch_size: int,
) -> None:
    """Train (unless best/ exists) and evaluate one run, recording failures instead of stopping the sweep."""
    best = run.run_dir / "best"
    try:
        if best.is_dir():
            run.status = "kept"
        else:
            run_training(run, dataset_dir, launcher, train_args, validation_split)
            run.status = "trained"
        validation = json.loads((best / "eval_results.json").read_text())
        run.validation_accuracy = validation["frame"]["accuracy"]
        run.results = evaluate_checkpoint(
            str(best),
            dataset_dir,
            run.run_dir / f"eval_{eval_split}",
            split=eval_split,
            task=run.task,
            batch_size=eval_batch_size,
            progress=False,
        )
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        run.status, run.reason = "failed", str(error).splitlines()[0]
        logger.error("%s λ=%s: %s", run.task, lambda_label(run.seg_loss_weight), run.reason)


# ----------------------------------------------------------------------------------------------- tables


def _cell(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.2f}"


def _ref(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _metric(run: SweepRun | None, group: str, key: str) -> float | None:
    if run is None or run.status not in ("trained", "kept"):
        return None
    return (run.results.get(group) or {}).get(key)


def _column_title(task: str) -> str:
    spec = parse_task(task)
    return f"{spec.compression} {spec.target.upper() if spec.target != 'all' else 'all'}"


def accuracy_table(runs: Sequence[SweepRun], family: str, lambdas: Sequence[float], title: str) -> str:
    """Rows λ (+ ours at the λ chosen on validation, + the paper's), columns task; frame accuracy (%)."""
    order = {task: index for index, task in enumerate(planned_tasks())}
    tasks = sorted({run.task for run in runs if parse_task(run.task).family == family}, key=order.__getitem__)
    if not tasks:
        return f"### {title}\n\nNo {family} task in the dataset(s).\n"
    by_key = {(run.task, run.seg_loss_weight): run for run in runs}
    lines = [f"### {title}", "", "| λ | " + " | ".join(_column_title(t) for t in tasks) + " |"]
    lines.append("|---" * (len(tasks) + 1) + "|")
    for value in lambdas:
        cells = [_cell(_metric(by_key.get((t, float(value))), "frame", "accuracy")) for t in tasks]
        lines.append(f"| {lambda_label(value)} | " + " | ".join(cells) + " |")
    chosen = []
    for task in tasks:
        candidates = [by_key.get((task, float(v))) for v in lambdas]
        scored = [r for r in candidates if r is not None and r.validation_accuracy is not None and r.results]
        best = max(scored, key=lambda r: r.validation_accuracy, default=None)
        label = f" (λ={lambda_label(best.seg_loss_weight)})" if best else ""
        chosen.append(_cell(_metric(best, "frame", "accuracy")) + label)
    lines.append("| ours, λ chosen on validation | " + " | ".join(chosen) + " |")
    lines.append("| paper, best λ | " + " | ".join(_ref(PAPER_ACCURACY.get(t)) for t in tasks) + " |")
    if family == "ff":
        lines.append("| XceptionNet (paper) | " + " | ".join(_ref(XCEPTIONNET_ACCURACY.get(t)) for t in tasks) + " |")
    lines.append("")
    return "\n".join(lines)


def segmentation_table(runs: Sequence[SweepRun]) -> str:
    """Table III: segmentation pixel accuracy over the 49x49 grid (%) with λ = 1, ours beside the paper's."""
    seg_runs = [r for r in runs if r.seg_loss_weight == SEGMENTATION_LAMBDA and parse_task(r.task).family == "ff"]
    title = "Table III: segmentation pixel accuracy, 49x49 label grid (%), λ = 1"
    if not seg_runs:
        return f"### {title}\n\nNo segmentation run.\n"
    lines = [f"### {title}", "", "| task | ours | ours, fake-class IoU | paper |", "|---|---|---|---|"]
    for run in seg_runs:
        ours = _metric(run, "segmentation", "pixel_accuracy")
        iou = _metric(run, "segmentation", "fake_iou")
        lines.append(
            f"| {_column_title(run.task)} | {_cell(ours)} | {_cell(iou)} | "
            f"{_ref(PAPER_SEGMENTATION_PIXEL_ACCURACY.get(run.task))} |"
        )
    lines.append("")
    return "\n".join(lines)


def status_table(runs: Sequence[SweepRun]) -> str:
    lines = ["### Runs", "", "| task | λ | status | validation accuracy | note |", "|---|---|---|---|---|"]
    for run in runs:
        lines.append(
            f"| {run.task} | {lambda_label(run.seg_loss_weight)} | {run.status} | "
            f"{_cell(run.validation_accuracy)} | {run.reason} |"
        )
    return "\n".join(lines) + "\n"


def render_tables(runs: Sequence[SweepRun], eval_split: str, lambdas: Sequence[float] = CLASSIFICATION_LAMBDAS) -> str:
    header = (
        f"# MesoFCN: the paper's tables reproduced\n\nOurs: frame-level accuracy on the **{eval_split}** split of the "
        "datasets given, one training run per cell. Paper: Tarasiou & Zafeiriou (arXiv 1911.13269), test split of "
        "FaceForensics++ / FFHQ-GAN; `—` where the paper gives no number or no run was possible.\n"
    )
    return "\n".join(
        [
            header,
            accuracy_table(runs, "ff", lambdas, "Table II: FaceForensics++ frame accuracy (%) by λ"),
            segmentation_table(runs),
            accuracy_table(runs, "gan", lambdas, "Table IV: real vs GAN faces, frame accuracy (%) by λ"),
            status_table(runs),
        ]
    )


def write_outputs(output_dir: Path, runs: Sequence[SweepRun], eval_split: str, lambdas: Sequence[float]) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "sweep.json").write_text(json.dumps([run.to_json() for run in runs], indent=2) + "\n")
    (output_dir / "tables.md").write_text(render_tables(runs, eval_split, lambdas))


__all__ = [
    "SweepRun",
    "accuracy_table",
    "candidate_tasks",
    "render_tables",
    "segmentation_table",
    "sweep",
    "task_problem",
]
