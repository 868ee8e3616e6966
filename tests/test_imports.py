"""What importing mesofcn and starting its CLI load: the heavy optional dependencies stay out until they are used.

Each check runs in a fresh interpreter, since this test session has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: Loaded only by what needs them: PyAV to read or write a video, ONNX Runtime to detect faces or run an .onnx
#: model, `datasets`/pyarrow to build or read face-crop datasets.
HEAVY_MODULES = ("av", "onnxruntime", "datasets", "pyarrow")


def loaded_modules(script: str) -> dict:
    """Run `script` in a fresh interpreter and return the dict `result` it may fill, plus `heavy`: those of
    HEAVY_MODULES in sys.modules when it is done."""
    heavy = f"result['heavy'] = [name for name in {HEAVY_MODULES!r} if name in sys.modules]\n"
    code = "import json, sys\nresult = {}\n" + script + heavy + "print(json.dumps(result))\n"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_import_mesofcn_loads_no_heavy_module_and_registers_the_pipeline():
    result = loaded_modules(
        "import mesofcn\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "result['task'] = 'deepfake-detection' in PIPELINE_REGISTRY.supported_tasks\n"
        "result['names'] = [name for name in mesofcn.__all__ if not hasattr(mesofcn, name)]\n"
    )
    assert result["heavy"] == []
    assert result["task"] is True
    assert result["names"] == []


def test_cli_parser_loads_no_heavy_module():
    """Every `mesofcn` command builds the whole parser first: its start-up must not load them either."""
    result = loaded_modules("import mesofcn.cli.commands\nmesofcn.cli.build_parser()\n")
    assert result["heavy"] == []


def test_detect_on_an_image_loads_neither_datasets_nor_pyav(tmp_path, checkpoint_dir, face_photo):
    """`mesofcn detect IMAGE` end to end: faces found (ONNX Runtime runs RetinaFace), scored and reported, with
    neither `datasets`/pyarrow nor PyAV (no video to read) loaded."""
    report_path = tmp_path / "report.json"
    argv = [str(face_photo), "--model", str(checkpoint_dir), "--json", str(report_path), "--quiet"]
    argv += ["--overlay", str(tmp_path / "overlay.png")]
    result = loaded_modules(f"from mesofcn.cli import main\nresult['exit'] = main(['detect', *{argv!r}])\n")
    assert result["exit"] == 0
    report = json.loads(Path(report_path).read_text())[0]
    assert report["label"] in {"real", "fake"} and report["tracks"]
    assert Path(report["overlay"]).is_file()
    assert result["heavy"] == ["onnxruntime"]
