"""mesofcn: detect and localize manipulated faces with the fully convolutional network of arXiv 1911.13269."""

from __future__ import annotations

__version__ = "0.1.0"

from .detection.configuration_mesofcn import MESOFCN_ID2LABEL, MesoFCNConfig, mask_label_positions
from .detection.image_processing_mesofcn import (
    FaceCropWindow,
    MesoFCNImageProcessor,
    binarize_mask,
    crop_face,
    face_crop_window,
    to_rgb_uint8,
    upsample_segmentation_map,
)
from .detection.modeling_mesofcn import (
    MesoFCNDetectionOutput,
    MesoFCNForDeepfakeDetection,
    MesoFCNModel,
    MesoFCNPreTrainedModel,
    sample_mask_labels,
)
from .detection.registration import register_auto_classes
from .moved_modules import install_moved_module_finder

register_auto_classes()
install_moved_module_finder()

__all__ = [
    "MESOFCN_ID2LABEL",
    "FaceCropWindow",
    "MesoFCNConfig",
    "MesoFCNDetectionOutput",
    "MesoFCNForDeepfakeDetection",
    "MesoFCNImageProcessor",
    "MesoFCNModel",
    "MesoFCNPreTrainedModel",
    "__version__",
    "binarize_mask",
    "crop_face",
    "face_crop_window",
    "mask_label_positions",
    "sample_mask_labels",
    "to_rgb_uint8",
    "upsample_segmentation_map",
]
