"""
The trained checkpoint that ships inside the package: the default of `mesofcn detect`, `mesofcn demo` and
`pipeline("deepfake-detection")` when no model is given. It is loaded from the installed package folder, so it
needs no network. See its model card (README.md beside the weights) for what it was trained on and its limits.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Name of the bundled checkpoint: trained on self-blended pseudo-fakes of real faces (plus two FF++ train
#: fakes) at c23 and c40; it is not an FF++-trained model.
DEFAULT_MODEL_NAME = "mesofcn-selfblend-c23-c40"
#: Files a bundled checkpoint folder must hold.
DEFAULT_MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


def default_model_path() -> Path:
    """Folder of the bundled checkpoint inside the installed package (it may be missing in a broken install)."""
    return Path(str(resources.files("mesofcn") / "weights" / DEFAULT_MODEL_NAME))


def default_model_available() -> bool:
    """Whether the bundled checkpoint is complete in this installation."""
    folder = default_model_path()
    return all((folder / name).is_file() for name in DEFAULT_MODEL_FILES)


def require_default_model() -> Path:
    """The bundled checkpoint's folder; FileNotFoundError naming the missing files when the install lacks them."""
    folder = default_model_path()
    missing = [name for name in DEFAULT_MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the bundled default model is incomplete in {folder} (missing {', '.join(missing)}); "
            "reinstall mesofcn or pass a checkpoint with --model"
        )
    return folder


__all__ = [
    "DEFAULT_MODEL_FILES",
    "DEFAULT_MODEL_NAME",
    "default_model_available",
    "default_model_path",
    "require_default_model",
]
