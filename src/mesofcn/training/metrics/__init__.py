"""
Detection metrics, computed offline: a local `evaluate` module (`mesofcn_detection/`, scikit-learn inside) and
its functions re-exported for direct use. `evaluate.load("accuracy")` would need the Hub; this does not.
"""

from __future__ import annotations

from pathlib import Path

from .mesofcn_detection.mesofcn_detection import (
    SEGMENTATION_COUNT_FIELDS,
    equal_error_rate,
    frame_level_metrics,
    precision_recall_points,
    segmentation_level_metrics,
    video_level_metrics,
    video_scores,
)

#: Folder of the local evaluate module; pass it to `evaluate.load`.
DETECTION_METRIC_PATH = Path(__file__).resolve().parent / "mesofcn_detection"


def load_detection_metric():
    """`evaluate.load` of the local detection metric module (kept in memory: no cache files are written)."""
    import evaluate

    return evaluate.load(str(DETECTION_METRIC_PATH), keep_in_memory=True)


__all__ = [
    "DETECTION_METRIC_PATH",
    "SEGMENTATION_COUNT_FIELDS",
    "equal_error_rate",
    "frame_level_metrics",
    "load_detection_metric",
    "precision_recall_points",
    "segmentation_level_metrics",
    "video_level_metrics",
    "video_scores",
]
