"""
What a training run starts from, decided before its loop (mesofcn.training.trainer) runs: the arguments checked into
one-line errors, the processor and config the datasets call for, the rows and batches it trains and validates on,
and the network it starts with (fresh, or --init_model's weights).
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from safetensors.torch import load_file as load_safetensors

from ..detection.configuration_mesofcn import MesoFCNConfig
from ..detection.image_processing_mesofcn import MesoFCNImageProcessor
from ..detection.modeling_mesofcn import MesoFCNForDeepfakeDetection, PickleFileError, refuse_pickle_weights
from .augmentation import FaceAugmentation
from .batches import FaceBatchTransform, with_face_transform
from .checkpoints import list_checkpoints
from .data import (
    DatasetError,
    add_online_blend_rows,
    balance_classes,
    class_counts,
    crop_crf_of_datasets,
    crop_scale_of_datasets,
    load_splits_of_datasets,
    select_task_rows,
    spread_subset,
)
from .run_outputs import CHECKPOINTS_DIR
from .tasks import TaskSpec, parse_task


class TrainingError(ValueError):
    """Bad training arguments or data; the message is one line."""


def tensorboard_available() -> bool:
    """Whether --report_to tensorboard can work (and is the default)."""
    return importlib.util.find_spec("tensorboard") is not None


def dataset_dirs(args: argparse.Namespace) -> list[str]:
    """--dataset_dir as a list (one folder or several; a single string from Python callers is accepted)."""
    value = args.dataset_dir
    return [str(value)] if isinstance(value, (str, Path)) else [str(folder) for folder in value]


def check_args(args: argparse.Namespace) -> TaskSpec:
    """One-line TrainingErrors for arguments that cannot work, before any process group or model is made."""
    try:
        spec = parse_task(args.task)
    except ValueError as error:
        raise TrainingError(str(error)) from error
    for folder in dataset_dirs(args):
        if not Path(folder).is_dir():
            raise TrainingError(f"dataset folder {folder} does not exist")
    if not 0.0 <= args.seg_loss_weight <= 1.0:
        raise TrainingError(f"--seg_loss_weight must be between 0 and 1, got {args.seg_loss_weight}")
    if args.learning_rate <= 0 or not 0 < args.lr_decay <= 1 or args.weight_decay < 0:
        raise TrainingError("--learning_rate must be > 0, --lr_decay in (0, 1] and --weight_decay >= 0")
    if args.report_to == "tensorboard" and not tensorboard_available():
        raise TrainingError("--report_to tensorboard needs the tensorboard package: pip install tensorboard")
    resume = args.resume_from_checkpoint
    if resume and resume != "latest" and not Path(resume).is_dir():
        raise TrainingError(f"--resume_from_checkpoint {resume}: no such checkpoint folder")
    if args.hub_model_id and args.hub_model_id.count("/") > 1:
        raise TrainingError(f"--hub_model_id must be name or org/name, got {args.hub_model_id}")
    return spec


def resolve_checkpoint(value: str, output_dir: Path) -> Path:
    """The folder --resume_from_checkpoint names ("latest": the newest in output_dir/checkpoints)."""
    if value != "latest":
        return Path(value)
    checkpoints = list_checkpoints(output_dir / CHECKPOINTS_DIR)
    if not checkpoints:
        raise TrainingError(f"--resume_from_checkpoint latest: no checkpoint in {output_dir / CHECKPOINTS_DIR}")
    return checkpoints[-1]


def run_processor(folders: list[str], spec: TaskSpec) -> MesoFCNImageProcessor:
    """The processor the checkpoint saves: it crops (and encodes) faces the way the datasets' faces were."""
    try:
        return MesoFCNImageProcessor(
            crop_scale=crop_scale_of_datasets(folders), crop_crf=crop_crf_of_datasets(folders, spec.compression)
        )
    except DatasetError as error:
        raise TrainingError(str(error)) from error


def run_config(args: argparse.Namespace, spec: TaskSpec) -> MesoFCNConfig:
    """The network config of the run: Table I, this run's λ and the kind of fake its task's rows are."""
    detects = "generated" if spec.family == "gan" else "manipulated"
    return MesoFCNConfig(seg_loss_weight=args.seg_loss_weight, detects=detects)


@dataclass
class RunData:
    """The transformed training and validation datasets of a run, and the rows they hold by class."""

    train: Dataset
    validation: Dataset
    #: The training transform: its random draws are numbered by batch, and a resumed run restarts the numbering.
    train_transform: FaceBatchTransform
    class_counts: dict


def task_splits(args: argparse.Namespace, spec: TaskSpec, folders: list[str]) -> tuple[Dataset, Dataset, dict]:
    """The training and validation rows of the task (subsets, online blends and class balance applied), with their
    class counts at each stage; TrainingError for unusable datasets."""
    try:
        splits = load_splits_of_datasets(folders, [args.train_split, args.validation_split])
        where = " + ".join(str(path) for path in folders)
        train = select_task_rows(splits[args.train_split], spec, f"split {args.train_split!r} of {where}")
        validation = select_task_rows(
            splits[args.validation_split], spec, f"split {args.validation_split!r} of {where}"
        )
        if args.max_train_samples:
            train = spread_subset(train, args.max_train_samples)
        if args.max_eval_samples:
            validation = spread_subset(validation, args.max_eval_samples)
        counts = {"train": class_counts(train), "validation": class_counts(validation)}
        if args.online_self_blend:
            train = add_online_blend_rows(train)
            counts["train_with_online_blends"] = class_counts(train)
    except DatasetError as error:
        raise TrainingError(str(error)) from error
    if args.class_balance == "oversample":
        train = balance_classes(train, args.seed)
    counts["train_balanced"] = class_counts(train)
    return train, validation, counts


def load_run_data(
    args: argparse.Namespace,
    spec: TaskSpec,
    folders: list[str],
    processor: MesoFCNImageProcessor,
    config: MesoFCNConfig,
) -> RunData:
    """The task's rows as batches: training ones augmented (with --augment) and left as uint8 pixels, which the loop
    normalizes on the device by the processor's table (bit-identical); validation ones as the processor makes them."""
    train, validation, counts = task_splits(args, spec, folders)
    augmentation = FaceAugmentation() if args.augment else None
    train_dataset = with_face_transform(
        train, processor, config, augmentation=augmentation, seed=args.seed, uint8_pixels=True
    )
    return RunData(
        train=train_dataset,
        validation=with_face_transform(validation, processor, config),
        train_transform=train_dataset.format["format_kwargs"]["transform"],
        class_counts=counts,
    )


def initial_model(init_model: str | None, config: MesoFCNConfig) -> MesoFCNForDeepfakeDetection:
    """A fresh network, or --init_model's weights (safetensors only) to continue a finished run's training with a
    new schedule or new data; this run's config (and so its λ) is kept."""
    if not init_model:
        return MesoFCNForDeepfakeDetection(config)
    try:
        refuse_pickle_weights(init_model)
    except PickleFileError as error:
        raise TrainingError(f"--init_model: {error}") from error
    weights = Path(init_model) / "model.safetensors"
    if not weights.is_file():
        raise TrainingError(f"--init_model {init_model}: no model.safetensors there (pickles are refused)")
    model = MesoFCNForDeepfakeDetection(config)
    try:
        model.load_state_dict(load_safetensors(str(weights)))
    except RuntimeError as error:
        raise TrainingError(
            f"--init_model {weights}: not a MesoFCN checkpoint ({str(error).splitlines()[0]})"
        ) from None
    return model


__all__ = [
    "RunData",
    "TrainingError",
    "check_args",
    "dataset_dirs",
    "initial_model",
    "load_run_data",
    "resolve_checkpoint",
    "run_config",
    "run_processor",
    "task_splits",
    "tensorboard_available",
]
