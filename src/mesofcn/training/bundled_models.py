"""
Installing a trained checkpoint as a bundled model (mesofcn.detection.defaults): the chosen checkpoint folder of a
run (best/ or final/) is copied, with its model card, into `detection/weights/<name>/`, where `mesofcn detect`,
`mesofcn demo` and `pipeline("deepfake-detection")` find it without a model argument.

Only what the installed package needs ships: weights (safetensors), config and processor config without their
`auto_map` (the code is the installed package, so no remote-code prompt), the validation results, the training
arguments without the trainer's local folders, and the card. The folder is written beside the target and renamed
into place, so an interrupted install leaves the previous one as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..atomic_files import atomic_directory

#: Files of the chosen checkpoint copied as they are.
SHIPPED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "eval_results.json")
#: Files whose `auto_map` is dropped: the installed package is the code, not files in the folder.
CODE_MAPPED_FILES = ("config.json", "preprocessor_config.json")


def install_bundled_model(checkpoint: Path, card: Path, target: Path) -> Path:
    """Copy the trained `checkpoint` folder and its model `card` (a Markdown file) to `target` atomically (the
    package's folder is `mesofcn.detection.defaults.packaged_model_path(name)`); returns `target`."""
    with atomic_directory(target) as partial:
        partial.mkdir(parents=True)
        for name in SHIPPED_FILES:
            shutil.copy2(checkpoint / name, partial / name)
        for name in CODE_MAPPED_FILES:
            settings = json.loads((partial / name).read_text())
            settings.pop("auto_map", None)
            (partial / name).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        arguments = shipped_training_arguments(json.loads((checkpoint / "training_args.json").read_text()))
        (partial / "training_args.json").write_text(json.dumps(arguments, indent=2) + "\n")
        shutil.copy2(card, partial / "README.md")
    return target


def shipped_training_arguments(arguments: dict) -> dict:
    """A run's training arguments with its dataset and output folders cut to their names (the trainer's machine
    and paths are nobody's business, and the names still say which datasets trained it)."""
    shipped = dict(arguments)
    folders = arguments["dataset_dir"]
    shipped["dataset_dir"] = [Path(folder).name for folder in ([folders] if isinstance(folders, str) else folders)]
    shipped["output_dir"] = Path(arguments["output_dir"]).name
    return shipped


__all__ = ["CODE_MAPPED_FILES", "SHIPPED_FILES", "install_bundled_model", "shipped_training_arguments"]
