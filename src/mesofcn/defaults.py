"""
The default checkpoint: what `mesofcn detect`, `mesofcn demo`, `mesofcn evaluate --media` and
`pipeline("deepfake-detection")` use when no model is given. It is looked up, without any network access, in this
order:

1. the folder named by the environment variable ``MESOFCN_DEFAULT_MODEL`` (a site-wide or personal default);
2. ``weights/mesofcn-blends-c23-c40/`` inside the installed package, where the trained default ships.

The shipped weights were trained on research-only data (see model_cards/mesofcn-blends-c23-c40.md): they carry a
non-commercial research licence, unlike the package's code. `python scripts/train_default.py` reproduces them.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: Name of the default checkpoint's recipe: self- and donor-blended pseudo-fakes of real faces plus the fakes of ten
#: manipulation tools, at c23 and c40. It is not an FF++-trained model.
DEFAULT_MODEL_NAME = "mesofcn-blends-c23-c40"
#: Environment variable naming a checkpoint folder to use as the default instead of the package's.
DEFAULT_MODEL_ENV = "MESOFCN_DEFAULT_MODEL"
#: Files a default checkpoint folder must hold.
DEFAULT_MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


def packaged_model_path() -> Path:
    """Where a default checkpoint installed into the package lives."""
    return Path(str(resources.files("mesofcn") / "weights" / DEFAULT_MODEL_NAME))


def default_model_path() -> Path:
    """The default checkpoint's folder: $MESOFCN_DEFAULT_MODEL when set, else the package's (it may not exist)."""
    chosen = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    return Path(chosen).expanduser() if chosen else packaged_model_path()


def missing_default_files(folder: Path) -> list[str]:
    return [name for name in DEFAULT_MODEL_FILES if not (folder / name).is_file()]


def default_model_available() -> bool:
    """Whether a complete default checkpoint is installed (or named by $MESOFCN_DEFAULT_MODEL)."""
    return not missing_default_files(default_model_path())


def require_default_model() -> Path:
    """The default checkpoint's folder; FileNotFoundError saying what is missing and how to get one."""
    folder = default_model_path()
    missing = missing_default_files(folder)
    if not missing:
        return folder
    if os.environ.get(DEFAULT_MODEL_ENV, "").strip():
        raise FileNotFoundError(f"${DEFAULT_MODEL_ENV} names {folder}, which lacks {', '.join(missing)}")
    if len(missing) < len(DEFAULT_MODEL_FILES):
        raise FileNotFoundError(f"the default model in {folder} is incomplete (missing {', '.join(missing)})")
    raise FileNotFoundError(
        "no default model is installed: pass --model with a checkpoint folder or Hub id, set "
        f"${DEFAULT_MODEL_ENV}, or reinstall mesofcn (its default ships in mesofcn/weights/{DEFAULT_MODEL_NAME})"
    )


__all__ = [
    "DEFAULT_MODEL_ENV",
    "DEFAULT_MODEL_FILES",
    "DEFAULT_MODEL_NAME",
    "default_model_available",
    "default_model_path",
    "missing_default_files",
    "packaged_model_path",
    "require_default_model",
]
