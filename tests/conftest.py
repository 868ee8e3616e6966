"""Shared fixtures: a small random checkpoint saved the way users save one, and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

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
