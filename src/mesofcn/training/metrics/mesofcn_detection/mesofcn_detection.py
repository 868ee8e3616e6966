"""
MesoFCN detection metrics as a local `evaluate` module (scikit-learn inside, no Hub access needed).

    >>> import evaluate
    >>> metric = evaluate.load("path/to/mesofcn/training/metrics/mesofcn_detection")
    >>> metric.compute(predictions=[0.1, 0.9, 0.4], references=[0, 1, 1], video_ids=["a", "b", "b"])

`predictions` are frame-level P(fake), `references` the labels (0 real, 1 fake). Optional keyword inputs add the
video level (`video_ids`: frames with the same id and label form one video, scored by their mean P(fake)) and the
segmentation level (`segmentation_counts`: per image `[labelled, correct, true_pos, false_pos, false_neg]` counts
over the 49x49 label grid). This file only imports numpy, scikit-learn, datasets and evaluate, so it also works
when copied elsewhere (evaluate copies it into its module cache); the mesofcn package re-exports its functions.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

_DESCRIPTION = """
Deepfake detection metrics of MesoFCN (Tarasiou & Zafeiriou, arXiv 1911.13269): frame-level accuracy (the
paper's metric), balanced accuracy, ROC AUC, average precision and equal error rate; video-level accuracy and
AUC from the mean frame P(fake) per video; segmentation pixel accuracy over the label grid (Table III) and the
fake-class IoU.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): P(fake) per frame.
    references (`list[int]`): 0 for real, 1 for fake.
    threshold (`float`, defaults to 0.5): P(fake) from which a frame or video is called fake.
    video_ids (`list[str]`, optional): the video of each frame; adds the `video` group.
    segmentation_counts (array `(n, 5)`, optional): per image [labelled, correct, true_pos, false_pos, false_neg]
        positions of the segmentation grid; adds the `segmentation` group.
Returns:
    `{"frame": {...}, "video": {...}, "segmentation": {...}}`; undefined values (an AUC with one class) are None.
"""

#: Column order of the per-image segmentation counts.
SEGMENTATION_COUNT_FIELDS = ("labelled", "correct", "true_positive", "false_positive", "false_negative")


def _both_classes(references: np.ndarray) -> bool:
    return bool((references == 0).any() and (references == 1).any())


def equal_error_rate(references, scores) -> float | None:
    """
    The rate at which false positives and false negatives are equally frequent, found where the ROC's
    false-negative rate crosses its false-positive rate (linear interpolation between ROC points).
    """
    references = np.asarray(references, dtype=np.int64)
    if not _both_classes(references):
        return None
    fpr, tpr, _ = roc_curve(references, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # +1 at the strictest threshold, -1 at the loosest
    crossing = int(np.flatnonzero(gap <= 0)[0])
    if gap[crossing] == 0 or crossing == 0:
        return float(fpr[crossing])
    fraction = gap[crossing - 1] / (gap[crossing - 1] - gap[crossing])
    return float(fpr[crossing - 1] + fraction * (fpr[crossing] - fpr[crossing - 1]))


def frame_level_metrics(references, scores, threshold: float = 0.5) -> dict:
    """Accuracy (P(fake) >= threshold is fake), balanced accuracy, per-class recall, AUC, AP and EER."""
    references = np.asarray(references, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if references.shape != scores.shape or references.ndim != 1:
        raise ValueError(f"references {references.shape} and scores {scores.shape} must be equally long 1-D arrays")
    predicted = (scores >= threshold).astype(np.int64)
    correct = predicted == references
    real, fake = references == 0, references == 1
    recall_real = float(correct[real].mean()) if real.any() else None
    recall_fake = float(correct[fake].mean()) if fake.any() else None
    both = _both_classes(references)
    return {
        "accuracy": float(correct.mean()) if len(references) else None,
        "balanced_accuracy": (recall_real + recall_fake) / 2 if both else None,
        "real_accuracy": recall_real,
        "fake_accuracy": recall_fake,
        "auc": float(roc_auc_score(references, scores)) if both else None,
        "ap": float(average_precision_score(references, scores)) if fake.any() else None,
        "eer": equal_error_rate(references, scores),
        "num_frames": int(len(references)),
        "num_real": int(real.sum()),
        "num_fake": int(fake.sum()),
        "threshold": float(threshold),
    }


def video_scores(video_ids, references, scores) -> tuple[list[tuple[str, int]], np.ndarray, np.ndarray]:
    """Mean P(fake) per video: frames with the same (video id, label) form one video."""
    sums: dict[tuple[str, int], list[float]] = {}
    for video, label, score in zip(video_ids, references, scores, strict=True):
        entry = sums.setdefault((str(video), int(label)), [0.0, 0])
        entry[0] += float(score)
        entry[1] += 1
    keys = list(sums)
    mean = np.array([sums[key][0] / sums[key][1] for key in keys], dtype=np.float64)
    labels = np.array([key[1] for key in keys], dtype=np.int64)
    return keys, labels, mean


def video_level_metrics(video_ids, references, scores, threshold: float = 0.5) -> dict:
    """Accuracy and AUC over videos, each scored by the mean P(fake) of its frames."""
    _, labels, mean = video_scores(video_ids, references, scores)
    both = _both_classes(labels)
    return {
        "accuracy": float(((mean >= threshold) == labels).mean()) if len(labels) else None,
        "auc": float(roc_auc_score(labels, mean)) if both else None,
        "num_videos": int(len(labels)),
        "num_real": int((labels == 0).sum()),
        "num_fake": int((labels == 1).sum()),
    }


def segmentation_level_metrics(counts) -> dict:
    """
    Pixel accuracy over the labelled positions of the segmentation grid (Table III's metric) and the fake-class
    IoU, from per-image (or summed) counts in SEGMENTATION_COUNT_FIELDS order.
    """
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, len(SEGMENTATION_COUNT_FIELDS))
    labelled, correct, true_pos, false_pos, false_neg = counts.sum(axis=0)
    union = true_pos + false_pos + false_neg
    return {
        "pixel_accuracy": float(correct / labelled) if labelled else None,
        "fake_iou": float(true_pos / union) if union else None,
        "labelled_positions": int(labelled),
        "images_with_labels": int((counts[:, 0] > 0).sum()),
    }


def precision_recall_points(references, scores) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of the fake class at every threshold, for the precision-recall curve."""
    precision, recall, _ = precision_recall_curve(np.asarray(references), np.asarray(scores, dtype=np.float64))
    return recall, precision


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MesofcnDetection(evaluate.Metric):
    """Frame-, video- and segmentation-level deepfake detection metrics (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Tarasiou & Zafeiriou, Using Fully Convolutional Neural Networks to detect manipulated images "
            "in videos, arXiv:1911.13269",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://arxiv.org/abs/1911.13269"],
        )

    def _compute(self, predictions, references, threshold=0.5, video_ids=None, segmentation_counts=None) -> dict:
        results = {"frame": frame_level_metrics(references, predictions, threshold)}
        if video_ids is not None:
            results["video"] = video_level_metrics(video_ids, references, predictions, threshold)
        if segmentation_counts is not None:
            results["segmentation"] = segmentation_level_metrics(segmentation_counts)
        return results
