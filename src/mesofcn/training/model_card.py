"""
Model cards of MesoFCN checkpoints: the Hub README with `model-index` metadata (task, dataset, split, metrics),
the training arguments, and the paper's numbers beside ours. Trained cards are written by training from real
measurements only; planned cards (`model_cards/` in the repository) state how to reproduce a task and the
paper's reference numbers, with no result of ours.

    python -m mesofcn.training.model_card model_cards/    # (re)write the planned cards
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .tasks import (
    PAPER_ACCURACY,
    PAPER_SEGMENTATION_PIXEL_ACCURACY,
    SEGMENTATION_LAMBDA,
    XCEPTIONNET_ACCURACY,
    TaskSpec,
    parse_task,
    planned_tasks,
)

#: The card template (Jinja2); `model_cards/template.md` in the repository points here.
CARD_TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card.md"
MISSING = "—"

#: (results group, key, row name, model-index task type, model-index metric type) of the results table.
_METRIC_ROWS = (
    ("frame", "accuracy", "frame accuracy (%)", "image-classification", "accuracy"),
    ("frame", "auc", "frame AUC (%)", "image-classification", "roc_auc"),
    ("frame", "ap", "frame AP (%)", "image-classification", "average_precision"),
    ("frame", "eer", "frame EER (%)", "image-classification", "eer"),
    ("video", "accuracy", "video accuracy (%)", "image-classification", "video_accuracy"),
    ("video", "auc", "video AUC (%)", "image-classification", "video_roc_auc"),
    (
        "segmentation",
        "pixel_accuracy",
        "segmentation pixel accuracy, 49x49 grid (%)",
        "image-segmentation",
        "pixel_accuracy",
    ),
    ("segmentation", "fake_iou", "segmentation fake-class IoU (%)", "image-segmentation", "iou"),
)


def model_name_for(task: str) -> str:
    """Repository / folder name of a task's checkpoint, e.g. `mesofcn-ff-c23-df`."""
    return f"mesofcn-{parse_task(task).name}"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.2f}"


def _reference(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _metric(results: Mapping, group: str, key: str) -> float | None:
    value = (results.get(group) or {}).get(key)
    return None if value is None else float(value)


def result_rows(spec: TaskSpec, results: Mapping, seg_loss_weight: float) -> list[dict[str, str]]:
    """Rows of the results table: our value beside the paper's (only where the paper reports that metric)."""
    rows = []
    for group, key, name, _, _ in _METRIC_ROWS:
        ours = _metric(results, group, key)
        if ours is None:
            continue
        paper = xception = None
        if (group, key) == ("frame", "accuracy"):
            paper, xception = PAPER_ACCURACY.get(spec.name), XCEPTIONNET_ACCURACY.get(spec.name)
        elif (group, key) == ("segmentation", "pixel_accuracy") and float(seg_loss_weight) == SEGMENTATION_LAMBDA:
            paper = PAPER_SEGMENTATION_PIXEL_ACCURACY.get(spec.name)
        rows.append(
            {"name": name, "ours": _percent(ours), "paper": _reference(paper), "xception": _reference(xception)}
        )
    return rows


def eval_results(spec: TaskSpec, results: Mapping, split: str, dataset_name: str) -> list[EvalResult]:
    """`model-index` entries for every measured metric (fractions, rounded to 4 decimals)."""
    entries = []
    for group, key, name, task_type, metric_type in _METRIC_ROWS:
        value = _metric(results, group, key)
        if value is None:
            continue
        entries.append(
            EvalResult(
                task_type=task_type,
                task_name="Deepfake detection" if task_type == "image-classification" else "Manipulation localization",
                dataset_type=f"mesofcn-{spec.family}",
                dataset_name=dataset_name,
                dataset_config=spec.compression,
                dataset_split=split,
                metric_type=metric_type,
                metric_name=name.replace(" (%)", ""),
                metric_value=round(value, 4),
            )
        )
    return entries


def render_model_card(
    task: str,
    *,
    seg_loss_weight: float = 0.3,
    results: Mapping | None = None,
    split: str = "validation",
    dataset_name: str | None = None,
    model_id: str | None = None,
    best_step: int | None = None,
    training_args: Mapping | None = None,
    data_note: str | None = None,
    template_path: str | Path | None = None,
) -> ModelCard:
    """
    The card of a task's checkpoint. With `results` (the metric groups `frame`/`video`/`segmentation` of the
    mesofcn_detection metric, as fractions) it is a trained card with `model-index` metadata; without, a planned
    card with the paper's reference numbers only.
    """
    spec = parse_task(task)
    model_name = model_name_for(spec.name)
    dataset_name = dataset_name or spec.dataset_title
    trained = bool(results)
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="image-classification",
        license="other",
        tags=["deepfake-detection", "mesofcn", "image-segmentation", f"mesofcn-{spec.family}", spec.compression],
        eval_results=eval_results(spec, results, split, dataset_name) if trained else None,
    )
    frame = (results or {}).get("frame") or {}
    video = (results or {}).get("video") or {}
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path or CARD_TEMPLATE),
        model_name=model_name,
        model_id=model_id or f"runs/{model_name}/best",
        push_hint=model_id is not None and model_id.count("/") == 1,
        task=spec.name,
        real_description=spec.real_description,
        fake_description=spec.fake_description,
        dataset_title=spec.dataset_title,
        dataset_name=dataset_name,
        seg_loss_weight=seg_loss_weight,
        trained=trained,
        split=split,
        num_frames=frame.get("num_frames"),
        num_videos=video.get("num_videos"),
        best_step=best_step,
        result_rows=result_rows(spec, results, seg_loss_weight) if trained else [],
        data_note=data_note,
        paper_accuracy=_reference(PAPER_ACCURACY.get(spec.name)),
        xception_accuracy=_reference(XCEPTIONNET_ACCURACY.get(spec.name)),
        paper_pixel_accuracy=PAPER_SEGMENTATION_PIXEL_ACCURACY.get(spec.name),
        training_args=sorted((str(k), str(v)) for k, v in (training_args or {}).items()),
    )
    return ModelCard(re.sub(r"\n{3,}", "\n\n", str(card)))


def write_planned_cards(directory: str | Path) -> list[Path]:
    """Write `<directory>/mesofcn-<task>.md` for every planned task (no results: none have been measured)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in planned_tasks():
        path = directory / f"{model_name_for(task)}.md"
        path.write_text(str(render_model_card(task)) + "\n")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m mesofcn.training.model_card OUTPUT_DIR", file=sys.stderr)
        return 2
    for path in write_planned_cards(argv[0]):
        print(path)
    return 0


__all__ = [
    "CARD_TEMPLATE",
    "eval_results",
    "model_name_for",
    "render_model_card",
    "result_rows",
    "write_planned_cards",
]


if __name__ == "__main__":
    sys.exit(main())
