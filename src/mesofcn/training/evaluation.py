"""
Evaluation of a MesoFCN checkpoint on a face-crop dataset split, as in the paper's Tables II-IV and Figs. 4-6:
frame-level accuracy (the paper's metric), AUC, AP and EER; video-level accuracy and AUC from the mean frame
P(fake) per video; segmentation pixel accuracy over the 49x49 label grid and fake-class IoU; per-method
numbers; a precision-recall curve and a grid of true vs predicted masks.

    mesofcn evaluate --model runs/mesofcn-ff-c23-df/best --dataset DATA --split test --out runs/eval
    accelerate launch scripts/evaluate_checkpoint.py --model ... (several processes: predictions are gathered)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import __version__
from ..atomic_files import write_json_atomic
from ..detection.image_processing_mesofcn import resize_square, to_rgb_uint8
from ..detection.modeling_mesofcn import PickleFileError, refuse_pickle_weights
from ..reporting.figures import mask_grid_figure, precision_recall_figure
from ..reporting.overlay import write_png
from .batches import make_dataloader, with_face_transform
from .data import (
    ROW_COLUMN,
    DatasetError,
    add_row_index,
    column_as_strings,
    get_split,
    load_dataset_dict,
    row_image,
    select_task_rows,
)
from .metrics import SEGMENTATION_COUNT_FIELDS, frame_level_metrics, load_detection_metric, precision_recall_points
from .tasks import parse_task

logger = logging.getLogger(__name__)

RESULTS_FILE, PREDICTIONS_FILE = "results.json", "predictions.csv"
PR_CURVE_FILE, MASK_GRID_FILE = "pr_curve.png", "masks_grid.png"


@dataclass
class Predictions:
    """Per-row model outputs over a split, in dataset row order when `rows` is known."""

    p_fake: np.ndarray
    labels: np.ndarray
    segmentation_counts: np.ndarray  # (n, 5) in SEGMENTATION_COUNT_FIELDS order
    rows: np.ndarray | None = None

    def sorted_by_row(self) -> Predictions:
        if self.rows is None:
            return self
        order = np.argsort(self.rows, kind="stable")
        return Predictions(self.p_fake[order], self.labels[order], self.segmentation_counts[order], self.rows[order])


def segmentation_counts(
    segmentation_logits: torch.Tensor, mask_labels: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    """Per image: labelled, correctly classified, true-positive, false-positive and false-negative grid positions."""
    predicted = segmentation_logits.argmax(dim=1)
    target = mask_labels.to(predicted.device)
    valid = target != ignore_index
    fake_pred, fake_true = (predicted == 1) & valid, target == 1
    counts = [
        valid,
        (predicted == target) & valid,
        fake_pred & fake_true,
        fake_pred & (target == 0),
        (predicted == 0) & fake_true,
    ]
    return torch.stack([c.flatten(1).sum(dim=1) for c in counts], dim=1)


def collect_predictions(model, dataloader, accelerator, progress: bool = False) -> Predictions:
    """Run `model` over a (prepared) dataloader; outputs of all processes are gathered, padding dropped."""
    from tqdm.auto import tqdm

    ignore = accelerator.unwrap_model(model).config.mask_ignore_index
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"p_fake": [], "labels": [], "counts": [], "rows": []}
    bar = tqdm(dataloader, desc="evaluating", disable=not (progress and accelerator.is_local_main_process))
    with torch.inference_mode():
        for batch in bar:
            outputs = model(pixel_values=batch["pixel_values"])
            p_fake = outputs.logits.float().softmax(dim=-1)[:, 1]
            counts = segmentation_counts(outputs.segmentation_logits, batch["mask_labels"], ignore)
            values = [p_fake, batch["labels"], counts]
            if ROW_COLUMN in batch:
                values.append(batch[ROW_COLUMN])
            gathered = accelerator.gather_for_metrics(values)
            for name, value in zip(("p_fake", "labels", "counts", "rows"), gathered, strict=False):
                parts[name].append(value.cpu().numpy())
    model.train(was_training)
    rows = np.concatenate(parts["rows"]).astype(np.int64) if parts["rows"] else None
    return Predictions(
        p_fake=np.concatenate(parts["p_fake"]).astype(np.float64),
        labels=np.concatenate(parts["labels"]).astype(np.int64),
        segmentation_counts=np.concatenate(parts["counts"])
        .astype(np.int64)
        .reshape(-1, len(SEGMENTATION_COUNT_FIELDS)),
        rows=rows,
    )


@lru_cache(maxsize=1)
def detection_metric():
    """The local evaluate module, loaded once per process."""
    return load_detection_metric()


def compute_metrics(predictions: Predictions, video_ids: list[str] | None = None, threshold: float = 0.5) -> dict:
    """Frame, segmentation and (with `video_ids`) video metrics through the local evaluate module."""
    return detection_metric().compute(
        predictions=predictions.p_fake.tolist(),
        references=predictions.labels.tolist(),
        threshold=threshold,
        video_ids=video_ids,
        segmentation_counts=predictions.segmentation_counts,
    )


def per_method_metrics(predictions: Predictions, methods: list[str], threshold: float) -> dict[str, dict]:
    """
    For each method: its frames, the fraction classified correctly, and (for fake methods) the AUC of its fakes
    against all real frames, i.e. how well this one method is separated from pristine faces.
    """
    methods_array = np.asarray(methods)
    real = predictions.labels == 0
    results = {}
    for method in sorted(set(methods)):
        rows = methods_array == method
        label = int(predictions.labels[rows][0])
        correct = (predictions.p_fake[rows] >= threshold) == (predictions.labels[rows] == 1)
        entry = {
            "label": "fake" if label else "real",
            "num_frames": int(rows.sum()),
            "accuracy": float(correct.mean()),
        }
        if label == 1 and real.any():
            subset = rows | real
            versus_real = frame_level_metrics(predictions.labels[subset], predictions.p_fake[subset], threshold)
            entry.update(auc_vs_real=versus_real["auc"], accuracy_with_real=versus_real["accuracy"])
        results[method] = entry
    return results


def pick_grid_rows(labels: np.ndarray, counts: np.ndarray, num_examples: int) -> list[int]:
    """Rows for the mask figure: fakes with labelled masks and real faces, about half each, spread over the split."""
    fakes = np.flatnonzero((labels == 1) & (counts[:, 0] > 0))
    if len(fakes) == 0:
        fakes = np.flatnonzero(labels == 1)
    reals = np.flatnonzero(labels == 0)
    want_fake = min(len(fakes), max(num_examples - min(len(reals), num_examples // 2), 0))
    want_real = min(len(reals), num_examples - want_fake)

    def spread(indices: np.ndarray, count: int) -> list[int]:
        if count == 0:
            return []
        return [int(indices[i]) for i in np.linspace(0, len(indices) - 1, count).round().astype(int)]

    return spread(fakes, want_fake) + spread(reals, want_real)


def grid_examples(model, dataset, transformed, rows: list[int], accelerator) -> dict:
    """Faces, true label grids, predicted P(fake) grids and scores of the chosen rows (one small batch)."""
    model = accelerator.unwrap_model(model)
    batch = transformed[rows]
    pixel_values = torch.as_tensor(np.stack(batch["pixel_values"])).to(accelerator.device)
    with torch.inference_mode(), accelerator.autocast():
        outputs = model(pixel_values=pixel_values)
    size = pixel_values.shape[-1]
    return {
        "faces": [resize_square(to_rgb_uint8(row_image(dataset, row)), size, Image.BILINEAR) for row in rows],
        "true_grids": [np.asarray(grid) for grid in batch["mask_labels"]],
        "predicted_grids": list(outputs.segmentation_logits.float().softmax(dim=1)[:, 1].cpu().numpy()),
        "labels": [int(label) for label in batch["labels"]],
        "scores": outputs.logits.float().softmax(dim=-1)[:, 1].cpu().tolist(),
    }


def write_predictions_csv(path: Path, dataset, predictions: Predictions, methods: list[str]) -> None:
    """One line per frame: row, video, frame, method, label, P(fake)."""
    videos = column_as_strings(dataset, "video") if "video" in dataset.column_names else [""] * len(methods)
    frames = dataset["frame"] if "frame" in dataset.column_names else [""] * len(methods)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "video", "frame", "method", "label", "p_fake"])
        for row in range(len(methods)):
            writer.writerow(
                [
                    row,
                    videos[row],
                    frames[row],
                    methods[row],
                    predictions.labels[row],
                    f"{predictions.p_fake[row]:.6f}",
                ]
            )


def training_task_of(model_path: str) -> str | None:
    """The task a checkpoint was trained on, from the `training_args.json` that training writes beside it."""
    path = Path(model_path) / "training_args.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("task")


def evaluate_checkpoint(
    model: str,
    dataset_dir: str | Path,
    out_dir: str | Path,
    split: str = "test",
    task: str | None = None,
    batch_size: int = 64,
    threshold: float = 0.5,
    num_examples: int = 8,
    num_workers: int = 0,
    mixed_precision: str | None = None,
    progress: bool = True,
) -> dict:
    """
    Evaluate checkpoint `model` (folder or cached Hub id) on `split` of the dataset in `dataset_dir`, restricted to
    `task`'s rows (default: the task the checkpoint was trained on, when recorded; else every row). Writes
    results.json, predictions.csv, pr_curve.png and masks_grid.png into `out_dir` and returns the results.
    """
    from accelerate import Accelerator
    from transformers import AutoImageProcessor, AutoModel

    task = task or training_task_of(model)
    data = load_dataset_dict(dataset_dir)
    dataset = get_split(data, split, dataset_dir)
    if task is not None:
        dataset = select_task_rows(dataset, parse_task(task), f"split {split!r} of {dataset_dir}")
    if len(dataset) == 0:
        raise DatasetError(f"split {split!r} of {dataset_dir} has no rows")
    accelerator = Accelerator(mixed_precision=mixed_precision)
    detector = AutoModel.from_pretrained(model, trust_remote_code=False)
    processor = AutoImageProcessor.from_pretrained(model, trust_remote_code=False)
    transformed = with_face_transform(add_row_index(dataset), processor, detector.config, passthrough=[ROW_COLUMN])
    loader = make_dataloader(transformed, batch_size, shuffle=False, num_workers=num_workers)
    detector = detector.to(memory_format=torch.channels_last)
    detector, loader = accelerator.prepare(detector, loader)

    start = time.perf_counter()
    predictions = collect_predictions(detector, loader, accelerator, progress=progress).sorted_by_row()
    elapsed = time.perf_counter() - start
    methods = column_as_strings(dataset, "method")
    videos = column_as_strings(dataset, "video") if "video" in dataset.column_names else None
    results = {
        "model": str(model),
        "dataset": str(dataset_dir),
        "split": split,
        "task": task,
        **compute_metrics(predictions, videos, threshold),
        "per_method": per_method_metrics(predictions, methods, threshold),
        "images_per_second": round(len(predictions.labels) / elapsed, 2),
        "num_processes": accelerator.num_processes,
        "mesofcn_version": __version__,
    }
    if accelerator.is_main_process:
        write_outputs(
            Path(out_dir), results, predictions, dataset, transformed, methods, detector, accelerator, num_examples
        )
    accelerator.wait_for_everyone()
    return results


def write_outputs(
    out: Path, results: dict, predictions: Predictions, dataset, transformed, methods, model, accelerator, num_examples
) -> None:
    """results.json, predictions.csv, the precision-recall curve and the mask grid."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RESULTS_FILE, results)
    write_predictions_csv(out / PREDICTIONS_FILE, dataset, predictions, methods)
    recall, precision = precision_recall_points(predictions.labels, predictions.p_fake)
    ap = results["frame"]["ap"]
    title = f"{results['task'] or 'all rows'} / {results['split']}: AP {ap:.4f}" if ap is not None else "no fakes"
    write_png(out / PR_CURVE_FILE, precision_recall_figure(recall, precision, title))
    rows = pick_grid_rows(predictions.labels, predictions.segmentation_counts, num_examples)
    examples = grid_examples(model, dataset, transformed, rows, accelerator)
    config = accelerator.unwrap_model(model).config
    write_png(out / MASK_GRID_FILE, mask_grid_figure(**examples, config=config))


def summary_lines(results: dict) -> list[str]:
    """A short human summary of the results."""
    frame, video, seg = results["frame"], results.get("video") or {}, results.get("segmentation") or {}

    def pct(value) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    lines = [
        f"frames {frame['num_frames']} ({frame['num_real']} real, {frame['num_fake']} fake): accuracy "
        f"{pct(frame['accuracy'])}, AUC {pct(frame['auc'])}, AP {pct(frame['ap'])}, EER {pct(frame['eer'])}"
    ]
    if video:
        lines.append(f"videos {video['num_videos']}: accuracy {pct(video['accuracy'])}, AUC {pct(video['auc'])}")
    if seg:
        lines.append(
            f"segmentation ({seg['images_with_labels']} images with labels): pixel accuracy "
            f"{pct(seg['pixel_accuracy'])}, fake IoU {pct(seg['fake_iou'])}"
        )
    return lines


#: What run_evaluation raises for bad arguments, data or checkpoints, each with a one-line message.
EVALUATION_ERRORS = (DatasetError, ValueError, OSError, PickleFileError)


def run_evaluation(args: argparse.Namespace) -> dict:
    """Check the arguments, evaluate, print a summary; errors (EVALUATION_ERRORS) carry one-line messages."""
    if not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.batch_size < 1 or args.num_examples < 1:
        raise ValueError("--batch_size and --num_examples must be >= 1")
    refuse_pickle_weights(args.model)
    if not Path(args.model).is_dir() and args.model.count("/") != 1:
        raise ValueError(f"{args.model}: not a checkpoint folder or a Hub id of the form org/name")
    if args.task:
        parse_task(args.task)
    results = evaluate_checkpoint(
        args.model,
        args.dataset,
        args.out,
        split=args.split,
        task=args.task,
        batch_size=args.batch_size,
        threshold=args.threshold,
        num_examples=args.num_examples,
        num_workers=args.dataloader_num_workers,
        mixed_precision=args.mixed_precision,
        progress=not args.quiet,
    )
    for line in summary_lines(results):
        print(line)
    print(f"wrote {Path(args.out) / RESULTS_FILE}")
    return results


__all__ = [
    "Predictions",
    "collect_predictions",
    "compute_metrics",
    "evaluate_checkpoint",
    "per_method_metrics",
    "pick_grid_rows",
    "run_evaluation",
    "segmentation_counts",
    "summary_lines",
]
