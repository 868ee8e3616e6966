"""
The bundled checkpoints: what `mesofcn detect`, `mesofcn demo`, `mesofcn evaluate --media` and
`pipeline("deepfake-detection")` use when no model is given. Two may ship:

- the default detector (`mesofcn-blends-c23-c40`): is a face manipulated (swapped, reenacted)?
- the generated-face detector (`mesofcn-generated`): was a face generated whole by a GAN or diffusion model?

On an image both are asked and the verdict is fake if either says so (see mesofcn.detection.opinions); videos get the
default detector only, unless asked. Each is looked up, without any network access, in this order:

1. the folder named by its environment variable (``MESOFCN_DEFAULT_MODEL``, ``MESOFCN_GENERATED_MODEL``; a
   site-wide or personal choice; an empty folder name there turns the bundled one off);
2. ``weights/<name>/`` inside the installed package, where the trained checkpoints ship.

Their names also work as `--model` values (``--model mesofcn-generated``). The shipped weights were trained on
research-only data (see their cards in model_cards/): they carry a non-commercial research licence, unlike the
package's code. `python scripts/train_default.py` and `python scripts/train_generated.py` reproduce them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Name of the default checkpoint's recipe: self- and donor-blended pseudo-fakes of real faces plus the fakes of ten
#: manipulation tools, at c23 and c40. It is not an FF++-trained model.
DEFAULT_MODEL_NAME = "mesofcn-blends-c23-c40"
#: Environment variable naming a checkpoint folder to use as the default instead of the package's.
DEFAULT_MODEL_ENV = "MESOFCN_DEFAULT_MODEL"
#: Name of the generated-face checkpoint (real photos vs GAN-generated faces, crops encoded alike).
GENERATED_MODEL_NAME = "mesofcn-generated"
#: Environment variable naming a checkpoint folder to use as the generated-face detector instead of the package's.
GENERATED_MODEL_ENV = "MESOFCN_GENERATED_MODEL"
#: Bundled checkpoints by name, with the environment variable that overrides each and the question it answers.
BUNDLED_MODELS = {
    DEFAULT_MODEL_NAME: (DEFAULT_MODEL_ENV, "manipulated"),
    GENERATED_MODEL_NAME: (GENERATED_MODEL_ENV, "generated"),
}
#: Files a bundled checkpoint folder must hold.
DEFAULT_MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


def packaged_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """Where a bundled checkpoint installed into the package lives (beside this module: also where a checkpoint's
    copy of the code runs as remote code, in which case nothing is bundled there)."""
    return Path(__file__).resolve().parent / "weights" / name


def _environment_choice(name: str) -> str | None:
    """The folder the checkpoint's environment variable names ("" when set empty: turned off), None when unset."""
    value = os.environ.get(BUNDLED_MODELS[name][0])
    return None if value is None else value.strip()


def default_model_path(name: str = DEFAULT_MODEL_NAME) -> Path:
    """A bundled checkpoint's folder: its environment variable when set, else the package's (it may not exist)."""
    chosen = _environment_choice(name)
    return Path(chosen).expanduser() if chosen else packaged_model_path(name)


def missing_default_files(folder: Path) -> list[str]:
    return [name for name in DEFAULT_MODEL_FILES if not (folder / name).is_file()]


def default_model_available(name: str = DEFAULT_MODEL_NAME) -> bool:
    """Whether a complete bundled checkpoint is installed (or named by its environment variable)."""
    if _environment_choice(name) == "":
        return False
    return not missing_default_files(default_model_path(name))


def require_default_model(name: str = DEFAULT_MODEL_NAME) -> Path:
    """A bundled checkpoint's folder; FileNotFoundError saying what is missing and how to get one."""
    variable = BUNDLED_MODELS[name][0]
    if _environment_choice(name) == "":
        raise FileNotFoundError(f"${variable} is set empty, which turns {name} off")
    folder = default_model_path(name)
    missing = missing_default_files(folder)
    if not missing:
        return folder
    if _environment_choice(name):
        raise FileNotFoundError(f"${variable} names {folder}, which lacks {', '.join(missing)}")
    if len(missing) < len(DEFAULT_MODEL_FILES):
        raise FileNotFoundError(f"the bundled model {name} in {folder} is incomplete (missing {', '.join(missing)})")
    raise FileNotFoundError(
        f"{name} is not installed: pass --model with a checkpoint folder or Hub id, set ${variable}, or reinstall "
        f"mesofcn (it ships in mesofcn/detection/weights/{name})"
    )


def installed_bundled_models() -> dict[str, Path]:
    """The bundled checkpoints available now, by the question they answer ("manipulated", "generated")."""
    return {
        detects: default_model_path(name)
        for name, (_, detects) in BUNDLED_MODELS.items()
        if default_model_available(name)
    }


def default_detector_path() -> Path:
    """The bundled checkpoint a run without a model starts from: the manipulated-face default when installed, else
    the generated-face one (the pipeline brings the other along), else the default's folder (loading it then fails
    naming that folder)."""
    installed = installed_bundled_models()
    return installed.get("manipulated") or installed.get("generated") or default_model_path(DEFAULT_MODEL_NAME)


def resolve_model_name(model: str) -> str:
    """A `--model` value: a bundled checkpoint's name becomes its folder (FileNotFoundError when not installed);
    anything else comes back unchanged."""
    return str(require_default_model(model)) if model in BUNDLED_MODELS else model


def is_bundled_model(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is the folder of a bundled checkpoint (as installed or named by its variable)."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return False
    return any(resolved == default_model_path(name).resolve() for name in BUNDLED_MODELS)


__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL_ENV",
    "DEFAULT_MODEL_FILES",
    "DEFAULT_MODEL_NAME",
    "GENERATED_MODEL_ENV",
    "GENERATED_MODEL_NAME",
    "default_detector_path",
    "default_model_available",
    "default_model_path",
    "installed_bundled_models",
    "is_bundled_model",
    "missing_default_files",
    "packaged_model_path",
    "require_default_model",
    "resolve_model_name",
]
