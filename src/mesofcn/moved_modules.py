"""The flat module paths of mesofcn 0.1 (`mesofcn.video`, `mesofcn.inference`, ...) kept importable for one release.

The modules now live in folders that follow the two flows (see ARCHITECTURE.md). An old path imports the module at
its new place, under both names, with a DeprecationWarning that names the new path. `mesofcn.training` and
`mesofcn.cli` are packages now: the trainer is `mesofcn.training.trainer`; `from mesofcn.cli import main` still works.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: Old module name (under `mesofcn.`) -> where it lives now.
MOVED_MODULES = {
    "configuration_mesofcn": "detection.configuration_mesofcn",
    "modeling_mesofcn": "detection.modeling_mesofcn",
    "modeling_mesofcn_onnx": "detection.modeling_mesofcn_onnx",
    "image_processing_mesofcn": "detection.image_processing_mesofcn",
    "pipeline_mesofcn": "detection.pipeline_mesofcn",
    "compression": "detection.compression",
    "face_detection": "detection.face_detection",
    "video": "detection.video",
    "video_faces": "detection.video_faces",
    "media": "detection.media",
    "prefetch": "detection.prefetch",
    "memory": "detection.memory",
    "tracking": "detection.tracking",
    "opinions": "detection.opinions",
    "inference": "detection.inference",
    "defaults": "detection.defaults",
    "registration": "detection.registration",
    "reports": "reporting.reports",
    "overlay": "reporting.overlay",
    "figures": "reporting.figures",
    "datasets_common": "data.common",
    "datasets_faceforensics": "data.faceforensics",
    "datasets_gan_faces": "data.gan_faces",
    "datasets_media": "data.labelled_media",
    "datasets_self_blend": "data.self_blend",
    "datasets_settings": "data.settings",
    "self_blending": "data.blending",
    "media_lists": "data.media_lists",
    "training_checkpoints": "training.checkpoints",
    "training_data": "training.data",
    "augmentation": "training.augmentation",
    "tasks": "training.tasks",
    "evaluation": "training.evaluation",
    "reproduction": "training.reproduction",
    "model_card": "training.model_card",
    "hub": "training.hub",
    "calibration": "training.calibration",
    "media_evaluation": "training.media_evaluation",
    "metrics": "training.metrics",
    "onnx_export": "training.onnx_export",
    "datasets_pack": "training.pack",
    "packed_data": "training.packed_data",
    "cli_arguments": "cli.arguments",
    "cli_calibrate": "cli.calibrate",
    "cli_common": "cli.common",
    "cli_detect": "cli.detect",
    "cli_evaluate_media": "cli.evaluate_media",
    "cli_export": "cli.export",
    "cli_prepare": "cli.prepare",
    "cli_training": "cli.training",
    "demo": "cli.demo",
    "app": "cli.app",
}


class _MovedModuleLoader(importlib.abc.Loader):
    """Hands out the module at its new path instead of executing a second copy."""

    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self.new_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec):
        warnings.warn(f"{spec.name} moved to {self.new_name}; the old path goes in mesofcn 0.3", DeprecationWarning, 2)
        module = importlib.import_module(self.new_name)
        self.new_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        """Nothing to run: the module was executed at its new path. Only its `__spec__`, which the import system
        has just replaced with the old path's, is put back (else its relative imports warn that `__package__ !=
        __spec__.parent`)."""
        module.__spec__ = self.new_spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds `mesofcn.<old name>` for the names in `MOVED_MODULES`."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != "mesofcn" or name not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(f"mesofcn.{MOVED_MODULES[name]}"))


def install_moved_module_finder() -> None:
    """Put the finder on `sys.meta_path` once (after the regular finders: a real module always wins)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())


__all__ = ["MOVED_MODULES", "MovedModuleFinder", "install_moved_module_finder"]
