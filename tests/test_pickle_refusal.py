"""Model loading refuses pickle weights everywhere, naming the file and never unpickling it."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
from transformers import AutoModel, pipeline

import mesofcn  # noqa: F401  (registers the Auto classes and the pipeline)
from mesofcn.cli import EXIT_USAGE, CommandError, main
from mesofcn.cli.training import add_evaluate_parser
from mesofcn.detection.modeling_mesofcn import MesoFCNForDeepfakeDetection, PickleFileError, refuse_pickle_weights
from tests.conftest import write_tripwire_pickle


@pytest.fixture
def pickled_checkpoint(tmp_path, checkpoint_dir) -> tuple[Path, Path]:
    """A checkpoint folder whose weights are a pytorch_model.bin (a tripwire pickle), and the tripwire's marker."""
    folder = tmp_path / "pickled"
    shutil.copytree(checkpoint_dir, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    write_tripwire_pickle(folder / "pytorch_model.bin", marker)
    return folder, marker


def test_helper_names_the_pickle_and_lets_safetensors_checkpoints_pass(tmp_path, checkpoint_dir, pickled_checkpoint):
    folder, marker = pickled_checkpoint
    with pytest.raises(PickleFileError, match=r"pytorch_model\.bin: pickle weights are refused"):
        refuse_pickle_weights(folder)
    for suffix in (".pt", ".pth", ".ckpt", ".pkl", ".bin"):
        path = write_tripwire_pickle(tmp_path / f"weights{suffix}", marker)
        with pytest.raises(PickleFileError, match=f"weights\\{suffix}: pickle weights are refused"):
            refuse_pickle_weights(path)
    refuse_pickle_weights(checkpoint_dir)  # safetensors: fine
    refuse_pickle_weights("org/name")  # a Hub id: from_pretrained then insists on safetensors
    assert not marker.exists()


def test_from_pretrained_and_pipeline_refuse_pickle_weights(pickled_checkpoint, checkpoint_dir):
    folder, marker = pickled_checkpoint
    for load in (
        lambda: AutoModel.from_pretrained(folder),
        lambda: MesoFCNForDeepfakeDetection.from_pretrained(folder),
        lambda: pipeline("deepfake-detection", model=str(folder), trust_remote_code=False),
    ):
        with pytest.raises(PickleFileError, match=r"pytorch_model\.bin: pickle weights are refused") as caught:
            load()
        assert "\n" not in str(caught.value)
    with pytest.raises(PickleFileError, match="use_safetensors=False is refused"):
        AutoModel.from_pretrained(checkpoint_dir, use_safetensors=False)
    # A folder with model.safetensors loads from it; a pickle beside it is never read.
    both = folder.with_name("both")
    shutil.copytree(checkpoint_dir, both)
    write_tripwire_pickle(both / "pytorch_model.bin", marker)
    assert type(AutoModel.from_pretrained(both)).__name__ == "MesoFCNForDeepfakeDetection"
    assert not marker.exists()


def test_detect_and_evaluate_commands_refuse_pickles_in_one_line(capsys, tmp_path, pickled_checkpoint):
    folder, marker = pickled_checkpoint
    single = write_tripwire_pickle(tmp_path / "model.pt", marker)
    for model, name in ((folder, "pytorch_model.bin"), (single, "model.pt")):
        code = main(["detect", str(tmp_path / "x.png"), "--model", str(model)])
        err = capsys.readouterr().err
        assert code == EXIT_USAGE and len(err.strip().splitlines()) == 1
        assert f"{name}: pickle weights are refused" in err and "Traceback" not in err
        parser = argparse.ArgumentParser(prog="mesofcn")
        add_evaluate_parser(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["evaluate", "--model", str(model), "--dataset", str(tmp_path), "--out", "o"])
        with pytest.raises(CommandError, match=f"{name}: pickle weights are refused") as caught:
            args.handler(args)
        assert "\n" not in str(caught.value)
    assert not marker.exists()
