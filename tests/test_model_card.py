"""Model cards: model-index metadata that ModelCard.load reads back, the paper's numbers, the planned cards."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from mesofcn.training.model_card import CARD_TEMPLATE, model_name_for, render_model_card, write_planned_cards
from mesofcn.training.tasks import PAPER_ACCURACY, planned_tasks
from tests.conftest import REPO_ROOT

RESULTS = {
    "frame": {"accuracy": 0.9312, "auc": 0.97, "ap": 0.96, "eer": 0.08, "num_frames": 400},
    "video": {"accuracy": 0.95, "auc": None, "num_videos": 20},
    "segmentation": {"pixel_accuracy": 0.8811, "fake_iou": 0.6},
}


def test_trained_card_metadata_round_trips(tmp_path):
    card = render_model_card(
        "ff-c40-f2f",
        seg_loss_weight=1,
        results=RESULTS,
        split="test",
        dataset_name="ffpp-c40",
        model_id="org/mesofcn-ff-c40-f2f",
        best_step=3000,
        training_args={"learning_rate": 0.001, "seed": 42},
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    results = {(r.task_type, r.metric_type): r for r in loaded.data.eval_results}
    assert set(results) == {
        ("image-classification", "accuracy"),
        ("image-classification", "roc_auc"),
        ("image-classification", "average_precision"),
        ("image-classification", "eer"),
        ("image-classification", "video_accuracy"),
        ("image-segmentation", "pixel_accuracy"),
        ("image-segmentation", "iou"),
    }  # the video AUC was undefined, so it is left out
    accuracy = results[("image-classification", "accuracy")]
    assert (accuracy.metric_value, accuracy.dataset_split, accuracy.dataset_config) == (0.9312, "test", "c40")
    assert accuracy.dataset_name == "ffpp-c40"
    assert loaded.data.model_name == "mesofcn-ff-c40-f2f" and loaded.data.library_name == "transformers"
    text = loaded.text
    assert "| frame accuracy (%) | 93.12 | 87.11 | 91.56 |" in text
    assert "| segmentation pixel accuracy, 49x49 grid (%) | 88.11 | — | — |" in text  # Table III has no F2F c40
    assert "best checkpoint at step 3000" in text and "| `learning_rate` | 0.001 |" in text
    assert "--hub_model_id org/mesofcn-ff-c40-f2f" in text


def test_segmentation_reference_only_beside_lambda_one():
    with_seg = render_model_card("ff-c23-df", seg_loss_weight=1.0, results=RESULTS)
    without = render_model_card("ff-c23-df", seg_loss_weight=0.3, results=RESULTS)
    assert "| 88.11 | 89.62 |" in with_seg.text and "| 88.11 | — |" in without.text


def test_planned_cards_are_current_and_carry_no_results(tmp_path):
    written = write_planned_cards(tmp_path)
    assert [p.name for p in written] == [f"{model_name_for(t)}.md" for t in planned_tasks()]
    for path in written:
        committed = REPO_ROOT / "model_cards" / path.name
        assert committed.is_file(), (
            f"model_cards/{path.name} is missing: run python -m mesofcn.training.model_card model_cards"
        )
        assert committed.read_text() == path.read_text(), f"model_cards/{path.name} is stale"
        card = ModelCard.load(committed)
        assert card.data.eval_results is None and "Status: planned" in card.text
    df = ModelCard.load(REPO_ROOT / "model_cards" / "mesofcn-ff-c23-df.md").text
    assert "| paper (MesoFCN, best λ, test split) | 97.90 |" in df and "89.62" in df and "98.85" in df
    gan = ModelCard.load(REPO_ROOT / "model_cards" / "mesofcn-gan-c40-stylegan.md").text
    assert f"| {PAPER_ACCURACY['gan-c40-stylegan']:.2f} |" in gan
    assert (REPO_ROOT / "model_cards" / "template.md").resolve() == CARD_TEMPLATE


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task"):
        render_model_card("ff-c23-deepfakes")
