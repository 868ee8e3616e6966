"""The flat module paths of mesofcn 0.1 (`mesofcn.video`, `mesofcn.inference`, ...) still import, as the very module
at the new path, with a DeprecationWarning naming it (mesofcn.moved_modules).

Warnings are checked in fresh interpreters: this test session has long imported every module, and a module path
warns only the first time it is imported.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mesofcn.moved_modules import MOVED_MODULES, MovedModuleFinder, install_moved_module_finder

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "mesofcn"
WARNING = "DeprecationWarning: mesofcn.{old} moved to mesofcn.{new}; the old path goes in mesofcn 0.3"


def run_fresh(script: str) -> tuple[dict, list[str]]:
    """Run `script` in a fresh interpreter with Python's default warning filters; return the JSON object it prints
    last and its stderr lines."""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr.splitlines()


USER_SCRIPT = """\
import json, sys
import mesofcn.detection.inference as new_inference
import mesofcn.video as old_video
from mesofcn.inference import prepare_for_inference
from mesofcn.video import MediaError
import mesofcn.video
import mesofcn.detection.video as new_video
print(json.dumps({
    "same_video": old_video is new_video and sys.modules["mesofcn.video"] is new_video,
    "attribute": sys.modules["mesofcn"].video is new_video,
    "same_inference": sys.modules["mesofcn.inference"] is new_inference,
    "prepare_for_inference": prepare_for_inference is new_inference.prepare_for_inference,
    "media_error": MediaError is new_video.MediaError,
    "names": [old_video.__name__, old_video.__spec__.name, old_video.__spec__.parent, old_video.__package__],
}))
"""


def test_an_old_path_is_the_new_module_and_warns_the_user_once_by_default():
    """Python shows the warning without any -W flag (it is attributed to the user's import line, not to
    importlib), once per old path however often it is imported, also when the new path was imported first."""
    result, stderr = run_fresh(USER_SCRIPT)
    assert result == {
        "same_video": True,
        "attribute": True,
        "same_inference": True,
        "prepare_for_inference": True,
        "media_error": True,
        # The import system gives the module the old path's spec; the loader puts its own back (else each
        # relative import inside a function of the module warns that __package__ != __spec__.parent).
        "names": ["mesofcn.detection.video", "mesofcn.detection.video", "mesofcn.detection", "mesofcn.detection"],
    }
    warnings = [line for line in stderr if "DeprecationWarning" in line]
    assert warnings == [
        "<string>:3: " + WARNING.format(old="video", new="detection.video"),
        "<string>:4: " + WARNING.format(old="inference", new="detection.inference"),
    ]


EVERY_ENTRY_SCRIPT = """\
import importlib, json, sys, warnings
from mesofcn.moved_modules import MOVED_MODULES
result = {}
for old, new in MOVED_MODULES.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"mesofcn.{old}")
    result[old] = {
        "names": [module.__name__, module.__spec__.name],
        "same": module is sys.modules[f"mesofcn.{new}"],
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught if w.category is DeprecationWarning],
    }
print(json.dumps(result))
"""


def test_every_entry_of_the_table_imports_its_new_module_with_one_warning():
    result, _ = run_fresh(EVERY_ENTRY_SCRIPT)
    assert sorted(result) == sorted(MOVED_MODULES)
    for old, new in MOVED_MODULES.items():
        assert result[old] == {
            "names": [f"mesofcn.{new}"] * 2,
            "same": True,
            "warnings": [WARNING.format(old=old, new=new)],
        }


def test_old_names_are_free_and_new_paths_exist_in_the_source_tree():
    """A flat module or folder under an old name would shadow the redirect (real modules win); a new path must be
    a module file or a package."""
    for old, new in MOVED_MODULES.items():
        assert not (PACKAGE_DIR / f"{old}.py").exists() and not (PACKAGE_DIR / old).exists(), old
        target = PACKAGE_DIR.joinpath(*new.split("."))
        assert target.with_suffix(".py").is_file() or (target / "__init__.py").is_file(), new


def test_a_name_not_in_the_table_is_still_not_found():
    with pytest.raises(ModuleNotFoundError) as error:
        importlib.import_module("mesofcn.not_a_moved_module")
    assert error.value.name == "mesofcn.not_a_moved_module"
    finder = MovedModuleFinder()
    assert finder.find_spec("mesofcn.video").name == "mesofcn.video"
    for name in ("mesofcn.not_a_moved_module", "other.video", "mesofcn.detection.video", "mesofcn.video.extra"):
        assert finder.find_spec(name) is None, name
    install_moved_module_finder()  # again: still one finder
    assert sum(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path) == 1
