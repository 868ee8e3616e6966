"""
Training checkpoints without pickles, for `--resume_from_checkpoint`. Accelerate's `save_state` pickles the RNG
states and custom objects (and `torch.save`s the optimizer and scheduler), and its `load_state` unpickles them: a
code-execution risk for anyone resuming a downloaded folder. This module writes the same state as safetensors and
JSON only, and reads it back without unpickling anything:

    checkpoints/step_N/
        model.safetensors              the unwrapped model's weights (main process)
        optimizer.safetensors/.json    the optimizer's tensors (Adam moments, step counts) and the rest of its
                                       state dict (parameter groups, ...) as JSON that refers to them by name
        trainer_state.json             format, loop counters, learning-rate scheduler, gradient scaler, Accelerate's
                                       micro-step counter (main process)
        rng_state_R.safetensors/.json  process R's random states: torch CPU and CUDA generators as uint8 tensors,
                                       Python's `random` and NumPy's global generator as JSON

The random augmentation of the training crops (--augment, --online_self_blend) draws from a generator numbered by
batch (mesofcn.training.batches.FaceBatchTransform); the loop counters' `train_batches` (in trainer_state.json) restore
that numbering, so a resumed run trains on the crops an uninterrupted one would have seen.

A folder is written under a temporary name and renamed when every process is done, so a killed run never leaves a
half-written `step_N`. Resuming a folder that holds pickles (a checkpoint from before this format) is refused.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..atomic_files import replace_directory
from ..detection.modeling_mesofcn import pickle_files

if TYPE_CHECKING:
    from accelerate import Accelerator

#: Version of the layout above, saved in trainer_state.json.
CHECKPOINT_FORMAT = 1
#: The weights file, and the names (without .json/.safetensors) of the states saved with write_tree.
MODEL_FILE, TRAINER_STATE, OPTIMIZER_STATE = "model.safetensors", "trainer_state", "optimizer"
_CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed (pickles, missing files, another format); one-line message."""


@dataclass
class TrainingObjects:
    """The live objects a checkpoint saves and restores (the model unwrapped from DDP; the others are anything with
    `state_dict()` and `load_state_dict()`: Accelerate's optimizer and scheduler wrappers, the loop counters)."""

    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    loop_state: Any
    scaler: Any = None


# ----------------------------------------------------------------------------------------------- tensors + JSON


def encode_tree(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """
    A nested state (dicts, lists, tuples, tensors, NumPy arrays, plain scalars) as JSON: tensors move into `tensors`
    and are referred to as {"tensor": name}; dicts become {"dict": [[key, value], ...]} (keys keep their int or str
    type), tuples {"tuple": [...]} and arrays {"ndarray": [...], "dtype": ...}. Anything else is a TypeError:
    nothing is ever pickled.
    """
    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        tensors[name] = value.detach().cpu().contiguous()
        return {"tensor": name}
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, (str, int)):
                raise TypeError(f"cannot store a dict key of type {type(key).__name__} in a checkpoint")
        return {"dict": [[key, encode_tree(item, tensors)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [encode_tree(item, tensors) for item in value]}
    if isinstance(value, list):
        return [encode_tree(item, tensors) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint without pickle")


def decode_tree(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of encode_tree; CheckpointError for JSON it did not write."""
    if isinstance(value, list):
        return [decode_tree(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if value.keys() == {"tensor"} and value["tensor"] in tensors:
        return tensors[value["tensor"]]
    if value.keys() == {"ndarray", "dtype"}:
        return np.array(value["ndarray"], dtype=np.dtype(value["dtype"]))
    if value.keys() == {"dict"}:
        return {key: decode_tree(item, tensors) for key, item in value["dict"]}
    if value.keys() == {"tuple"}:
        return tuple(decode_tree(item, tensors) for item in value["tuple"])
    raise CheckpointError(f"unexpected entry {sorted(value)} in a checkpoint state")


def write_tree(folder: Path, name: str, tree: Any) -> None:
    """`tree` as folder/name.json, plus folder/name.safetensors when it holds tensors."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = encode_tree(tree, tensors)
    if tensors:
        save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(encoded) + "\n")


def read_tree(folder: Path, name: str) -> Any:
    """The tree that write_tree(folder, name, ...) saved; CheckpointError when its JSON is missing."""
    path = folder / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: {path.name} is missing; not a complete mesofcn training checkpoint")
    tensor_file = folder / f"{name}.safetensors"
    tensors = load_file(str(tensor_file)) if tensor_file.is_file() else {}
    return decode_tree(json.loads(path.read_text()), tensors)


# ----------------------------------------------------------------------------------------------- random states


def rng_states() -> dict:
    """This process's random states: Python, NumPy, torch CPU and (when present) every CUDA device."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    """Set the random states that rng_states() returned (CUDA ones for the devices present)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available() and states.get("cuda"):
        for device, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)


def rng_state_name(process_index: int) -> str:
    """Name of process `process_index`'s random states in a checkpoint."""
    return f"rng_state_{process_index}"


# ----------------------------------------------------------------------------------------------- save and load


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoint folders `step_N` in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def checkpoint_folder(folder: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives in `folder`."""
    return folder / f"step_{step:08d}"


def save_checkpoint(accelerator: Accelerator, objects: TrainingObjects, folder: Path, step: int, keep: int) -> Path:
    """
    Every process's state into folder/step_N (written as .step_N.partial, renamed when all are done); only the
    `keep` newest checkpoints are kept.
    """
    final = checkpoint_folder(folder, step)
    partial = final.with_name(f".{final.name}.partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        weights = {name: tensor.detach().cpu().contiguous() for name, tensor in objects.model.state_dict().items()}
        save_file(weights, str(partial / MODEL_FILE))
        write_tree(partial, OPTIMIZER_STATE, objects.optimizer.state_dict())
        trainer_state = {
            "format": CHECKPOINT_FORMAT,
            "loop": objects.loop_state.state_dict(),
            "scheduler": objects.scheduler.state_dict(),
            "scaler": objects.scaler.state_dict() if objects.scaler is not None else None,
            "accelerator_step": accelerator.step,
        }
        write_tree(partial, TRAINER_STATE, trainer_state)
    write_tree(partial, rng_state_name(accelerator.process_index), rng_states())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_directory(partial, final)
        for old in list_checkpoints(folder)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def refuse_pickled_checkpoint(checkpoint: Path) -> None:
    """CheckpointError naming the first pickle in `checkpoint` (an Accelerate state from before this format)."""
    found = pickle_files(checkpoint)
    if found:
        raise CheckpointError(
            f"{found[0]}: a pickle; this checkpoint predates mesofcn's safe (safetensors/JSON) format and is not "
            "loaded, since unpickling can run code: train anew, or resume from a checkpoint this version wrote"
        )


def load_checkpoint(accelerator: Accelerator, objects: TrainingObjects, checkpoint: Path) -> None:
    """Restore what save_checkpoint wrote into `objects`, Accelerate's step counter and this process's RNG states."""
    refuse_pickled_checkpoint(checkpoint)
    trainer_state = read_tree(checkpoint, TRAINER_STATE)
    if not isinstance(trainer_state, dict) or trainer_state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{checkpoint / TRAINER_STATE}.json: not a format-{CHECKPOINT_FORMAT} mesofcn checkpoint"
        )
    if not (checkpoint / MODEL_FILE).is_file():
        raise CheckpointError(f"{checkpoint}: {MODEL_FILE} is missing; not a complete mesofcn training checkpoint")
    rng = read_tree(checkpoint, rng_state_name(accelerator.process_index))
    objects.model.load_state_dict(load_file(str(checkpoint / MODEL_FILE)))
    objects.optimizer.load_state_dict(read_tree(checkpoint, OPTIMIZER_STATE))
    objects.scheduler.load_state_dict(trainer_state["scheduler"])
    if objects.scaler is not None and trainer_state["scaler"] is not None:
        objects.scaler.load_state_dict(trainer_state["scaler"])
    objects.loop_state.load_state_dict(trainer_state["loop"])
    accelerator.step = trainer_state["accelerator_step"]
    restore_rng_states(rng)


__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "TrainingObjects",
    "checkpoint_folder",
    "decode_tree",
    "encode_tree",
    "list_checkpoints",
    "load_checkpoint",
    "read_tree",
    "refuse_pickled_checkpoint",
    "restore_rng_states",
    "rng_states",
    "save_checkpoint",
    "write_tree",
]
