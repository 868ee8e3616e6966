"""Detection metrics against values worked out by hand, through the functions and the local evaluate module."""

from __future__ import annotations

import pytest
import torch

from mesofcn.training.evaluation import segmentation_counts
from mesofcn.training.metrics import (
    DETECTION_METRIC_PATH,
    equal_error_rate,
    frame_level_metrics,
    load_detection_metric,
    segmentation_level_metrics,
    video_level_metrics,
)

LABELS = [0, 0, 1, 1]
SCORES = [0.1, 0.4, 0.35, 0.8]


def test_frame_metrics_by_hand():
    metrics = frame_level_metrics(LABELS, SCORES)
    # threshold 0.5: predicted [0, 0, 0, 1] -> 3 of 4 right; fakes 1 of 2, reals 2 of 2
    assert metrics["accuracy"] == 0.75
    assert metrics["real_accuracy"] == 1.0 and metrics["fake_accuracy"] == 0.5
    assert metrics["balanced_accuracy"] == 0.75
    # AUC: of the 4 (fake, real) pairs, only (0.35, 0.4) is ordered wrongly
    assert metrics["auc"] == pytest.approx(0.75)
    # AP: ranked 0.8 (fake), 0.4 (real), 0.35 (fake): 0.5 * 1 + 0.5 * 2/3
    assert metrics["ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert metrics["eer"] == pytest.approx(0.5)
    assert (metrics["num_frames"], metrics["num_real"], metrics["num_fake"]) == (4, 2, 2)


def test_threshold_is_inclusive_and_single_class_metrics_are_undefined():
    assert frame_level_metrics([1, 0], [0.5, 0.49])["accuracy"] == 1.0
    only_real = frame_level_metrics([0, 0], [0.2, 0.7])
    assert only_real["accuracy"] == 0.5
    assert only_real["auc"] is None and only_real["eer"] is None and only_real["ap"] is None


def test_equal_error_rate_interpolates_between_roc_points():
    # ROC points (fpr, fnr): (0, 1), (0, .5), (1/3, .5), (1/3, 0), ... FNR falls from .5 to 0 at FPR 1/3: EER 1/3
    assert equal_error_rate([0, 0, 0, 1, 1], [0.1, 0.2, 0.6, 0.5, 0.9]) == pytest.approx(1 / 3)
    # FPR rises from 0 to 0.5 while FNR stays 0.5: they meet at 0.5
    assert equal_error_rate([0, 1, 0, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.5)
    assert equal_error_rate([0, 1], [0.2, 0.7]) == 0.0
    assert equal_error_rate([1, 0], [0.2, 0.7]) == 1.0


def test_video_metrics_average_frame_scores_per_video():
    videos = ["a", "a", "b", "b", "c"]
    metrics = video_level_metrics(videos, [0, 0, 1, 1, 1], [0.2, 0.6, 0.7, 0.5, 0.4])
    # means: a 0.4 (real, right), b 0.6 (fake, right), c 0.4 (fake, wrong)
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    # fakes b 0.6 > a 0.4 (1), c 0.4 = a 0.4 (1/2)
    assert metrics["auc"] == pytest.approx(0.75)
    assert (metrics["num_videos"], metrics["num_real"], metrics["num_fake"]) == (3, 1, 2)


def test_segmentation_counts_and_pixel_accuracy_by_hand():
    # predicted classes [[1, 0], [1, 1]]; targets [[1, 0], [0, ignored]]
    logits = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]]]])
    targets = torch.tensor([[[1, 0], [0, -100]]])
    counts = segmentation_counts(logits, targets, ignore_index=-100)
    assert counts.tolist() == [[3, 2, 1, 1, 0]]  # labelled, correct, tp, fp, fn
    metrics = segmentation_level_metrics(counts.numpy())
    assert metrics["pixel_accuracy"] == pytest.approx(2 / 3)
    assert metrics["fake_iou"] == pytest.approx(1 / 2)
    summed = segmentation_level_metrics([[3, 2, 1, 1, 0], [4, 4, 0, 0, 0], [0, 0, 0, 0, 0]])
    assert summed["pixel_accuracy"] == pytest.approx(6 / 7) and summed["images_with_labels"] == 2
    assert segmentation_level_metrics([[0, 0, 0, 0, 0]])["pixel_accuracy"] is None


def test_local_evaluate_module_loads_offline_and_agrees(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = load_detection_metric()
    assert (DETECTION_METRIC_PATH / "mesofcn_detection.py").is_file()
    results = metric.compute(
        predictions=SCORES,
        references=LABELS,
        video_ids=["a", "a", "b", "c"],
        segmentation_counts=[[3, 2, 1, 1, 0]] * 4,
    )
    assert results["frame"] == frame_level_metrics(LABELS, SCORES)
    assert results["video"] == video_level_metrics(["a", "a", "b", "c"], LABELS, SCORES)
    assert results["segmentation"]["pixel_accuracy"] == pytest.approx(2 / 3)


def test_frame_metrics_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="equally long"):
        frame_level_metrics([0, 1, 1], [0.2, 0.3])
