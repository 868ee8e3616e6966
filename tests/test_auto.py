"""Checkpoints: Auto* round trips, stock pipelines, and loading without the package (trust_remote_code)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    pipeline,
)

from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection, MesoFCNImageProcessor
from tests.conftest import make_model, run_python_without_mesofcn


@pytest.fixture(scope="module")
def face() -> Image.Image:
    return Image.fromarray(np.random.default_rng(5).integers(0, 256, (150, 140, 3), dtype=np.uint8))


def test_checkpoint_holds_only_safetensors_weights_and_the_code(checkpoint_dir):
    names = sorted(p.name for p in checkpoint_dir.iterdir())
    assert "model.safetensors" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    assert {"configuration_mesofcn.py", "modeling_mesofcn.py", "image_processing_mesofcn.py"} <= set(names)
    config = json.loads((checkpoint_dir / "config.json").read_text())
    assert config["model_type"] == "mesofcn"
    assert config["id2label"] == {"0": "real", "1": "fake"}
    assert set(config["auto_map"]) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForImageClassification",
        "AutoModelForSemanticSegmentation",
    }
    processor = json.loads((checkpoint_dir / "preprocessor_config.json").read_text())
    assert processor["auto_map"]["AutoImageProcessor"] == "image_processing_mesofcn.MesoFCNImageProcessor"
    assert processor["crop_scale"] == 1.1


@pytest.mark.parametrize("auto_class", [AutoModel, AutoModelForImageClassification, AutoModelForSemanticSegmentation])
def test_auto_classes_load_the_detector_bit_exactly(checkpoint_dir, auto_class):
    original = make_model(seed=1)
    loaded = auto_class.from_pretrained(checkpoint_dir)
    assert isinstance(loaded, MesoFCNForDeepfakeDetection) and not loaded.training
    saved = load_file(checkpoint_dir / "model.safetensors")
    for name, tensor in original.state_dict().items():
        assert torch.equal(saved[name], tensor), name
        assert torch.equal(loaded.state_dict()[name], tensor), name
    pixels = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(original(pixels).logits, loaded(pixels).logits)
        assert torch.equal(original(pixels).segmentation_logits, loaded(pixels).segmentation_logits)


def test_auto_config_and_processor_round_trip(checkpoint_dir):
    config = AutoConfig.from_pretrained(checkpoint_dir)
    assert isinstance(config, MesoFCNConfig)
    fresh = MesoFCNConfig().to_dict()
    loaded = config.to_dict()
    for key in ("hidden_sizes", "seg_loss_weight", "id2label", "label2id", "pool_after", "image_size"):
        assert loaded[key] == fresh[key], key
    processor = AutoImageProcessor.from_pretrained(checkpoint_dir)
    assert isinstance(processor, MesoFCNImageProcessor)
    settings = {k: v for k, v in processor.to_dict().items() if k != "auto_map"}
    assert settings == MesoFCNImageProcessor().to_dict()


def test_image_classification_pipeline_returns_real_and_fake(checkpoint_dir, face):
    classify = pipeline("image-classification", model=str(checkpoint_dir), trust_remote_code=False)
    result = classify(face)
    assert {r["label"] for r in result} == {"real", "fake"}
    assert abs(sum(r["score"] for r in result) - 1.0) < 1e-5
    model = make_model(seed=1)
    pixels = MesoFCNImageProcessor()(face, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        p_fake = model(pixels).logits.softmax(-1)[0, 1].item()
    assert abs(next(r["score"] for r in result if r["label"] == "fake") - p_fake) < 1e-5


def test_image_segmentation_pipeline_returns_masks_at_image_size(checkpoint_dir, face):
    segment = pipeline("image-segmentation", model=str(checkpoint_dir), trust_remote_code=False)
    result = segment(face)
    assert result and {r["label"] for r in result} <= {"real", "fake"}
    assert all(r["mask"].size == face.size for r in result)
    coverage = sum(np.asarray(r["mask"]) > 0 for r in result)
    assert (coverage == 1).all()  # every pixel is either real or fake


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["mesofcn"] = None  # make `import mesofcn` fail, as on a machine without the package
    import torch
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
    try:
        import mesofcn  # noqa: F401
        raise SystemExit("mesofcn must not be importable here")
    except ImportError:
        pass
    path = sys.argv[1]
    model = AutoModel.from_pretrained(path, trust_remote_code=True)
    classifier = AutoModelForImageClassification.from_pretrained(path, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=True)
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        out = model(pixels)
    print(json.dumps({
        "model": type(model).__module__ + "." + type(model).__name__,
        "classifier": type(classifier).__name__,
        "processor": type(processor).__name__,
        "logits": out.logits.tolist(),
        "segmentation_sum": out.segmentation_logits.sum().item(),
    }))
    """
)


def test_checkpoint_loads_with_trust_remote_code_without_the_package(checkpoint_dir, tmp_path):
    result = run_python_without_mesofcn(REMOTE_SCRIPT, checkpoint_dir, workdir=tmp_path)
    assert result["model"].startswith("transformers_modules.")
    assert result["classifier"] == "MesoFCNForDeepfakeDetection"
    assert result["processor"] == "MesoFCNImageProcessor"
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        out = make_model(seed=1)(pixels)
    # Same weights, same input, another process: equal up to the last bits oneDNN may order differently.
    torch.testing.assert_close(torch.tensor(result["logits"]), out.logits, rtol=0, atol=1e-6)
    assert abs(result["segmentation_sum"] - out.segmentation_logits.sum().item()) < 1e-3
