"""Shared fixtures: a small random checkpoint saved the way users save one, and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection, MesoFCNImageProcessor

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`$MESOFCN_SHARED_DATA`, else `../shared/data` beside the repository."""
    return Path(os.environ.get("MESOFCN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "MANIFEST.csv").is_file():
        pytest.skip(f"shared research data not found at {path} (set MESOFCN_SHARED_DATA)")
    return path


def make_model(seed: int = 0, **config_kwargs) -> MesoFCNForDeepfakeDetection:
    """A randomly initialised detector with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = MesoFCNForDeepfakeDetection(MesoFCNConfig(**config_kwargs))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    """A saved random checkpoint with its processor (code files and auto_map included)."""
    path = tmp_path_factory.mktemp("checkpoint")
    make_model(seed=1).save_pretrained(path)
    MesoFCNImageProcessor().save_pretrained(path)
    return path


def write_video(path: Path, frames, fps: int = 25, codec: str = "libx264") -> Path:
    """Encode RGB uint8 frames (even sizes) as a small video file."""
    import av

    frames = list(frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def save_biased_checkpoint(path: Path, fake_logit: float, detects: str = "manipulated") -> Path:
    """A checkpoint whose classifier says fake (positive `fake_logit`) or real (negative) for every face; `detects`
    is its config's kind of fake."""
    model = make_model(seed=2, detects=detects)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, fake_logit]))
        model.segmentation_head.weight.zero_()
        model.segmentation_head.bias.copy_(torch.tensor([0.0, fake_logit]))
    model.save_pretrained(path)
    MesoFCNImageProcessor().save_pretrained(path)
    return path


class _Tripwire:
    """Unpickling this object creates the file `marker` (via `open`): proof that something was unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_tripwire_pickle(path: Path, marker: Path) -> Path:
    """A pickle at `path` that creates `marker` if anything ever unpickles it."""
    import pickle

    path.write_bytes(pickle.dumps(_Tripwire(marker)))
    return path


@pytest.fixture(scope="session")
def fake_checkpoint(tmp_path_factory) -> Path:
    """Every face scores P(fake) = sigmoid(4) ~ 0.982."""
    return save_biased_checkpoint(tmp_path_factory.mktemp("fake_checkpoint"), 4.0)


#: Where RetinaFace (mobilenet0.25) finds the face of `astronaut_face()`: box (x, y, width, height), the five
#: landmarks (image-left eye, image-right eye, nose, image-left and image-right mouth corner) and the score.
ASTRONAUT_BOX = (79.66, 39.84, 92.18, 122.7)
ASTRONAUT_LANDMARKS = ((104.7, 85.26), (147.23, 88.44), (122.65, 114.83), (100.86, 120.83), (145.24, 123.71))
ASTRONAUT_SCORE = 0.9995

#: The copies of the astronaut in `astronaut_group()`, left to right: (scale, mirrored).
GROUP_COPIES = ((1.0, False), (0.8, True), (0.65, False), (0.5, True), (0.4, False))


def astronaut_face() -> np.ndarray:
    """A real one-face photo that needs no shared data: scikit-image's astronaut (NASA, public domain) cut to
    250x250 around her face, framed like an LFW photo (RGB uint8)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[16:266, 100:350])


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` resized by `scale` (PIL bilinear, sides rounded)."""
    from PIL import Image

    height, width = image.shape[:2]
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def astronaut_group() -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A 300x1000 black canvas with the astronaut pasted five times (GROUP_COPIES: smaller to the right, every
    other one mirrored) at y = 20, 10 px apart; and where each face's box should be (ASTRONAUT_BOX moved)."""
    canvas = np.zeros((300, 1000, 3), dtype=np.uint8)
    boxes = []
    left, top = 10, 20
    x, y, w, h = ASTRONAUT_BOX
    for scale, mirrored in GROUP_COPIES:
        copy = resize_image(astronaut_face(), scale)
        side = copy.shape[1]
        canvas[top : top + side, left : left + side] = copy[:, ::-1] if mirrored else copy
        box_x = side - (x + w) * scale if mirrored else x * scale
        boxes.append((left + box_x, top + y * scale, w * scale, h * scale))
        left += side + 10
    return canvas, boxes


@pytest.fixture(scope="session")
def face_photo(tmp_path_factory) -> Path:
    """`astronaut_face()` saved as JPEG (quality 95)."""
    from PIL import Image

    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(astronaut_face()).save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def group_photo(tmp_path_factory) -> Path:
    """`astronaut_group()`'s canvas saved as PNG: five faces of known boxes, 37 to 92 px wide."""
    from PIL import Image

    path = tmp_path_factory.mktemp("group") / "astronauts.png"
    Image.fromarray(astronaut_group()[0]).save(path)
    return path


@pytest.fixture(scope="session")
def face_video(tmp_path_factory, face_photo) -> Path:
    """20 frames at 25 fps of a real photo drifting right by 2 px per frame (one face, one track)."""
    from PIL import Image

    photo = np.asarray(Image.open(face_photo).convert("RGB").resize((256, 256)))
    canvas = np.zeros((256, 320, 3), dtype=np.uint8)
    frames = []
    for i in range(20):
        frame = canvas.copy()
        frame[:, 2 * i : 2 * i + 256] = photo
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("video") / "face.mp4", frames)


def run_python_without_mesofcn(script: str, *args, workdir: Path) -> dict:
    """Run `script` in a fresh offline interpreter (the caller's script blocks `import mesofcn` itself) and
    return the JSON object it prints last."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "HF_HOME": str(workdir / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    completed = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def detect(checkpoint_dir):
    """The deepfake-detection pipeline on the random checkpoint."""
    from transformers import pipeline

    return pipeline("deepfake-detection", model=str(checkpoint_dir), trust_remote_code=False)


@pytest.fixture(scope="session")
def detect_fake(fake_checkpoint):
    """The deepfake-detection pipeline on the all-fake checkpoint, batching faces by 4."""
    from transformers import pipeline

    return pipeline("deepfake-detection", model=str(fake_checkpoint), trust_remote_code=False, batch_size=4)


@pytest.fixture
def fresh_accelerate_state():
    """Each in-process run gets its own Accelerate state and leaves determinism switched off."""
    import torch
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    torch.use_deterministic_algorithms(False)
