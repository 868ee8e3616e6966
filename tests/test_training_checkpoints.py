"""Pickle-free training state: the tensors + JSON codec, random states, optimizer round trips, legacy refusal."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mesofcn.training.checkpoints import (
    CheckpointError,
    read_tree,
    refuse_pickled_checkpoint,
    restore_rng_states,
    rng_states,
    write_tree,
)
from tests.conftest import make_model, write_tripwire_pickle


def test_nested_state_round_trips_with_its_types(tmp_path):
    tree = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3)}, 1: {}},
        "groups": [{"betas": (0.9, 0.999), "lr": 1e-3 / 3, "params": [0, 1], "name": None, "fused": False}],
        "numpy": ("MT19937", np.arange(5, dtype=np.uint32), 2, 0, 0.0),
        "big": 2**40,
        "nan": float("nan"),
    }
    write_tree(tmp_path, "state", tree)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.safetensors"]
    back = read_tree(tmp_path, "state")
    assert set(back["state"]) == {0, 1}  # int keys stay ints
    assert torch.equal(back["state"][0]["exp_avg"], tree["state"][0]["exp_avg"])
    assert back["state"][0]["step"].shape == () and back["state"][0]["step"].item() == 3.0
    assert back["groups"][0]["betas"] == (0.9, 0.999) and isinstance(back["groups"][0]["betas"], tuple)
    assert back["groups"][0]["lr"] == 1e-3 / 3  # floats are exact
    assert back["numpy"][1].dtype == np.uint32 and back["numpy"][1].tolist() == [0, 1, 2, 3, 4]
    assert back["big"] == 2**40 and np.isnan(back["nan"])
    write_tree(tmp_path, "plain", {"a": 1})  # no tensors: JSON only
    assert not (tmp_path / "plain.safetensors").exists() and read_tree(tmp_path, "plain") == {"a": 1}


def test_what_json_cannot_hold_is_refused_never_pickled(tmp_path):
    with pytest.raises(TypeError, match="without pickle"):
        write_tree(tmp_path, "bad", {"x": object()})
    with pytest.raises(TypeError, match="dict key"):
        write_tree(tmp_path, "bad", {(1, 2): 0})
    (tmp_path / "odd.json").write_text(json.dumps({"pickle": "x"}))
    with pytest.raises(CheckpointError, match="unexpected entry"):
        read_tree(tmp_path, "odd")
    with pytest.raises(CheckpointError, match="missing.json is missing"):
        read_tree(tmp_path, "missing")


def test_random_states_restore_every_generator(tmp_path):
    write_tree(tmp_path, "rng", rng_states())
    # torch generators as uint8 tensors; Python's and NumPy's states as JSON
    assert {t.dtype for t in load_file(tmp_path / "rng.safetensors").values()} == {torch.uint8}
    assert json.loads((tmp_path / "rng.json").read_text())["dict"][0][0] == "python"
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), np.random.randn())
    restore_rng_states(read_tree(tmp_path, "rng"))
    again = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), np.random.randn())
    assert first == again


def test_adam_and_its_schedule_continue_bit_identically_after_a_round_trip(tmp_path):
    def setup():
        model = make_model(seed=3).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
        return model, optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)

    def step(model, optimizer, seed):
        torch.manual_seed(seed)
        loss = model(torch.randn(2, 3, 128, 128), labels=torch.tensor([0, 1])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    model, optimizer, scheduler = setup()
    for seed in range(2):
        step(model, optimizer, seed)
    scheduler.step()
    write_tree(tmp_path, "optimizer", optimizer.state_dict())
    write_tree(tmp_path, "scheduler", scheduler.state_dict())
    copy, copy_optimizer, copy_scheduler = setup()
    copy.load_state_dict(model.state_dict())
    copy_optimizer.load_state_dict(read_tree(tmp_path, "optimizer"))
    copy_scheduler.load_state_dict(read_tree(tmp_path, "scheduler"))
    assert copy_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == pytest.approx(0.9e-3)
    for net, opt in ((model, optimizer), (copy, copy_optimizer)):
        step(net, opt, 7)
    for (name, tensor), other in zip(model.state_dict().items(), copy.state_dict().values(), strict=True):
        assert torch.equal(tensor, other), name


def test_an_accelerate_pickle_state_is_refused_unread(tmp_path):
    marker = tmp_path / "unpickled"
    for name in ("random_states_0.pkl", "custom_checkpoint_0.pkl", "optimizer.bin"):
        write_tripwire_pickle(tmp_path / name, marker)
    with pytest.raises(CheckpointError, match=r"custom_checkpoint_0\.pkl: a pickle; this checkpoint predates") as e:
        refuse_pickled_checkpoint(tmp_path)
    assert "\n" not in str(e.value) and not marker.exists()
