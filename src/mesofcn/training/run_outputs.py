"""
What a training run leaves in its output folder, and the one place that knows that layout:

    O/best/          the checkpoint of the best validation (save_pretrained weights, processor, code files, model card
                     README.md, training_args.json, eval_results.json)
    O/final/         the same for the model at the end of the schedule
    O/checkpoints/   step_N/ folders to resume from (mesofcn.training.checkpoints)
    O/logs/          TensorBoard
    O/eval_log.jsonl one line per validation

The trainer (mesofcn.training.trainer) decides when to write; this module decides what is written. Scripts that
pick a run's checkpoint (`scripts/train_default.py`) read the folder names from here.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard

from .. import __version__
from ..atomic_files import atomic_directory
from ..detection.image_processing_mesofcn import MesoFCNImageProcessor
from ..detection.modeling_mesofcn import MesoFCNForDeepfakeDetection
from ..detection.registration import save_detector
from .model_card import render_model_card
from .tasks import TaskSpec

BEST_DIR, FINAL_DIR, CHECKPOINTS_DIR, LOGS_DIR = "best", "final", "checkpoints", "logs"
EVAL_LOG = "eval_log.jsonl"


@dataclass
class TrainingResult:
    """What a finished run produced."""

    output_dir: Path
    best_dir: Path
    final_dir: Path
    best_step: int | None
    best_metric: float | None
    global_step: int
    images_per_second: float
    final_metrics: dict


def public_args(args: argparse.Namespace) -> dict:
    """The arguments as saved in checkpoints and cards (plain JSON values; nothing secret is among them)."""
    return {key: value for key, value in sorted(vars(args).items()) if key != "handler"}


def is_improvement(value: float | None, best: float | None) -> bool:
    """A strictly higher validation value than the best so far (the first of equal values is kept)."""
    return value is not None and (best is None or value > best)


def flatten_metrics(metrics: dict) -> dict:
    """{"frame": {"accuracy": ...}} -> {"frame_accuracy": ...}, numbers only."""
    flat = {}
    for group, values in metrics.items():
        for key, value in values.items():
            if isinstance(value, (int, float)) or value is None:
                flat[f"{group}_{key}"] = value
    return flat


def append_eval_log(output_dir: Path, record: dict) -> None:
    """One validation as a line of O/eval_log.jsonl."""
    with (output_dir / EVAL_LOG).open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def run_card(
    args: argparse.Namespace,
    spec: TaskSpec,
    dataset_dirs: list[str],
    metrics: dict,
    best_step: int | None,
    hub_id: str | None,
    class_counts: dict,
) -> ModelCard:
    """The model card of a run's checkpoint: its task, λ, validation results and the rows it trained on."""
    return render_model_card(
        spec.name,
        seg_loss_weight=args.seg_loss_weight,
        results=metrics,
        split=args.validation_split,
        dataset_name=" + ".join(Path(folder).name for folder in dataset_dirs),
        model_id=hub_id,
        best_step=best_step,
        training_args=public_args(args),
        data_note=f"Rows used: {class_counts}.",
    )


def export_checkpoint(
    folder: Path,
    model: MesoFCNForDeepfakeDetection,
    processor: MesoFCNImageProcessor,
    args: argparse.Namespace,
    results: dict,
    card: ModelCard,
) -> None:
    """Weights, processor, card, arguments and validation `results` into `folder` (best/ or final/), written under a
    temporary name and then swapped in, so a reader never sees half a checkpoint."""
    with atomic_directory(folder) as partial:
        save_detector(model, processor, partial)
        arguments = {**public_args(args), "mesofcn_version": __version__}
        (partial / "training_args.json").write_text(json.dumps(arguments, indent=2) + "\n")
        (partial / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        card.save(partial / "README.md")


def summary_line(result: TrainingResult, args: argparse.Namespace) -> str:
    """The one line `mesofcn train` prints at the end: where the best checkpoint is and how good it was."""
    metric = f"{args.metric_for_best_model} {result.best_metric}"
    return f"best checkpoint: {result.best_dir} (step {result.best_step}, validation {metric})"


__all__ = [
    "BEST_DIR",
    "CHECKPOINTS_DIR",
    "EVAL_LOG",
    "FINAL_DIR",
    "LOGS_DIR",
    "TrainingResult",
    "append_eval_log",
    "export_checkpoint",
    "flatten_metrics",
    "is_improvement",
    "public_args",
    "run_card",
    "summary_line",
]
