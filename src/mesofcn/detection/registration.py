"""Registration of the MesoFCN classes with transformers' Auto* factories, for installed and remote-code use."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)
from transformers.dynamic_module_utils import custom_object_save
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_mesofcn import MesoFCNConfig
from .defaults import default_detector_path
from .image_processing_mesofcn import MesoFCNImageProcessor
from .modeling_mesofcn import MesoFCNForDeepfakeDetection
from .pipeline_mesofcn import DeepfakeDetectionPipeline

#: The task name of `pipeline("deepfake-detection", ...)`.
DETECTION_TASK = "deepfake-detection"

#: Auto classes that load the dual-head detector. `AutoModel` is among them on purpose: users of this package
#: mean the detector when they say `AutoModel.from_pretrained(...)`.
DETECTOR_AUTO_CLASSES = (AutoModel, AutoModelForImageClassification, AutoModelForSemanticSegmentation)


def register_auto_classes() -> None:
    """Make `Auto*.from_pretrained` resolve `model_type="mesofcn"`, and make checkpoints carry their code."""
    AutoConfig.register(MesoFCNConfig.model_type, MesoFCNConfig, exist_ok=True)
    for auto_class in DETECTOR_AUTO_CLASSES:
        auto_class.register(MesoFCNConfig, MesoFCNForDeepfakeDetection, exist_ok=True)
    AutoImageProcessor.register(MesoFCNConfig, image_processor_classes={"pil": MesoFCNImageProcessor}, exist_ok=True)
    if DETECTION_TASK not in PIPELINE_REGISTRY.supported_tasks:
        # A bundled checkpoint (a local folder: no Hub access, see mesofcn.detection.defaults) is the model of
        # `pipeline("deepfake-detection")`, bringing the other one along; when none is installed, loading fails
        # naming the folder it looked in.
        default = {"model": (str(default_detector_path()), None)}
        PIPELINE_REGISTRY.register_pipeline(
            DETECTION_TASK, pipeline_class=DeepfakeDetectionPipeline, pt_model=AutoModel, default=default, type="image"
        )
    # Saved checkpoints then include the code files and an `auto_map`, for `trust_remote_code=True` users.
    MesoFCNConfig.register_for_auto_class("AutoConfig")
    MesoFCNForDeepfakeDetection.register_for_auto_class("AutoModel")
    MesoFCNImageProcessor.register_for_auto_class("AutoImageProcessor")


def save_detector(
    model: MesoFCNForDeepfakeDetection, processor: MesoFCNImageProcessor, folder, with_pipeline: bool = False
) -> None:
    """
    Save a checkpoint: weights (safetensors), config, processor and their code for `trust_remote_code=True` users.
    With `with_pipeline`, also the deepfake-detection pipeline (`custom_pipelines` + its code), so that
    `pipeline("deepfake-detection", model=folder, trust_remote_code=True)` works without this package. Off by
    default: transformers then insists on `trust_remote_code=True` (or `pipeline_class=`) even where mesofcn is
    installed.
    """
    if with_pipeline:
        module = DeepfakeDetectionPipeline.__module__.rsplit(".", 1)[-1]
        implementation = f"{module}.{DeepfakeDetectionPipeline.__name__}"
        entry = {"impl": implementation, "pt": ["AutoModel"], "type": "image"}
        model.config.custom_pipelines = {DETECTION_TASK: entry}
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if with_pipeline:
        custom_object_save(DeepfakeDetectionPipeline, folder)


__all__ = ["DETECTION_TASK", "DETECTOR_AUTO_CLASSES", "register_auto_classes", "save_detector"]
