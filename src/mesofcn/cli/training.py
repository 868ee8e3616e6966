"""
Argument parsers of `mesofcn train` / `scripts/train.py` and `mesofcn evaluate` / `scripts/evaluate_checkpoint.py`,
and the CLI glue. Kept free of heavy imports (datasets, evaluate, accelerate) so that wiring them into the `mesofcn`
command costs nothing until one of them runs.
"""

from __future__ import annotations

import argparse
import logging

from ..training.tasks import TASK_NAMES_HELP
from .arguments import positive_float
from .arguments import positive_int as _positive

#: How the training rows' classes are balanced (see mesofcn.training.data.balance_classes).
CLASS_BALANCE_CHOICES = ("oversample", "none")
#: Validation metrics that can pick the best checkpoint (the paper: accuracy).
BEST_METRIC_CHOICES = ("accuracy", "balanced_accuracy", "auc")
#: --help shows every default (the paper's values, and ours where the paper leaves a setting open).
DEFAULTS_FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _checkpointing(text: str) -> str | int:
    if text in ("epoch", "eval"):
        return text
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, 'epoch' or 'eval', got {text}")
    return value


def build_train_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The training arguments (names follow the transformers/accelerate example scripts)."""
    parser = parser or argparse.ArgumentParser(
        description="Train MesoFCN with the paper's recipe (Accelerate).", formatter_class=DEFAULTS_FORMATTER
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset_dir",
        required=True,
        nargs="+",
        help="DatasetDict(s) of face crops saved with save_to_disk; several are concatenated split by split. A folder "
        "written by 'mesofcn prepare pack' (found by its mesofcn_pack.json) gives the same batches without decoding "
        "PNGs (one packed with --jpeg-quality: lossy crops, decoded per batch); pack all the folders of a run "
        "together",
    )
    data.add_argument("--task", required=True, help=TASK_NAMES_HELP)
    data.add_argument("--train_split", default="train", help="split to train on")
    data.add_argument("--validation_split", default="validation", help="split that picks the best checkpoint")
    data.add_argument(
        "--class_balance",
        choices=CLASS_BALANCE_CHOICES,
        default="oversample",
        help="oversample the minority class of the training rows to 1:1, or use the rows as they are",
    )
    data.add_argument("--max_train_samples", type=_positive, help="use N training rows spread over the split")
    data.add_argument("--max_eval_samples", type=_positive, help="use N validation rows spread over the split")
    data.add_argument("--dataloader_num_workers", type=int, default=0, help="worker processes per data loader")
    data.add_argument(
        "--online_self_blend",
        action="store_true",
        help="add a copy of each real training face that becomes a new self-blended pseudo-fake each time it is drawn",
    )
    data.add_argument(
        "--augment",
        action="store_true",
        help="flip, lower resolution, blur, noise and JPEG re-compression, drawn alike for real and fake faces",
    )

    model = parser.add_argument_group("model and optimisation")
    model.add_argument("--seg_loss_weight", type=float, default=0.3, help="λ of λ·L_seg + (1-λ)·L_cls")
    model.add_argument(
        "--init_model", help="start from this checkpoint folder's weights (model.safetensors) instead of random ones"
    )
    model.add_argument("--num_train_epochs", type=_positive, default=50, help="the paper: 50")
    model.add_argument("--max_train_steps", type=_positive, help="total optimizer steps; overrides --num_train_epochs")
    model.add_argument(
        "--max_train_minutes",
        type=positive_float,
        help="stop after this many minutes of training in this process, validating and saving final/ and a checkpoint "
        "as at the last step (a time-boxed run on a lent GPU, or in a session that may be stopped); rerun with "
        "--resume_from_checkpoint latest to continue",
    )
    model.add_argument("--per_device_train_batch_size", type=_positive, default=32, help="not given by the paper")
    model.add_argument("--per_device_eval_batch_size", type=_positive, default=64, help="validation batch")
    model.add_argument("--gradient_accumulation_steps", type=_positive, default=1, help="batches per optimizer step")
    model.add_argument("--learning_rate", type=float, default=1e-3, help="Adam learning rate (the paper: 1e-3)")
    model.add_argument("--lr_decay", type=float, default=0.9, help="learning rate factor applied at each epoch end")
    model.add_argument("--weight_decay", type=float, default=1e-5, help="L2 regularisation (Adam weight decay)")
    model.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], help="default: Accelerate's setting")
    model.add_argument("--seed", type=int, default=42, help="seeds weights, shuffling and every RNG")
    model.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (slower)")

    run = parser.add_argument_group("evaluation, checkpoints and logging")
    run.add_argument("--output_dir", required=True, help="best/, checkpoints/, logs/ and eval_log.jsonl go here")
    run.add_argument("--eval_steps", type=_positive, default=1000, help="validate every N steps (and at epoch ends)")
    run.add_argument(
        "--metric_for_best_model", choices=BEST_METRIC_CHOICES, default="accuracy", help="validation metric of best/"
    )
    run.add_argument(
        "--checkpointing_steps",
        type=_checkpointing,
        default="eval",
        help="save Accelerate state every N steps, at each 'epoch' end, or at each validation ('eval', default)",
    )
    run.add_argument("--checkpoints_total_limit", type=_positive, default=2, help="newest states kept in checkpoints/")
    run.add_argument("--resume_from_checkpoint", help="checkpoints/step_N folder, or 'latest' (in --output_dir)")
    run.add_argument("--logging_steps", type=_positive, default=50, help="log the training loss every N steps")
    run.add_argument(
        "--report_to",
        choices=["tensorboard", "none"],
        default=None,
        help="tracker (default: tensorboard when installed, else none)",
    )
    run.add_argument("--push_to_hub", action="store_true", help="upload best/ to the Hub at each improvement and end")
    run.add_argument(
        "--hub_model_id", help="org/name of the Hub repository (default: mesofcn-<task> in your namespace)"
    )
    run.add_argument("--hub_private_repo", action="store_true", help="create the Hub repository as private")
    run.add_argument("--disable_tqdm", action="store_true", help="no progress bar (the loss is logged instead)")
    return parser


def build_evaluate_parser(
    parser: argparse.ArgumentParser | None = None, with_media: bool = False
) -> argparse.ArgumentParser:
    """
    The arguments of scripts/evaluate_checkpoint.py (a face-crop dataset split); `with_media` (the `mesofcn evaluate`
    command) adds the choice of `--media LABELS.csv` instead of `--dataset` (see mesofcn.cli.evaluate_media).
    """
    parser = parser or argparse.ArgumentParser(
        description="Evaluate a MesoFCN checkpoint on a face-crop dataset.", formatter_class=DEFAULTS_FORMATTER
    )
    source = parser.add_mutually_exclusive_group(required=True) if with_media else parser
    parser.add_argument(
        "--model",
        required=not with_media,
        help="checkpoint folder or Hub id (from the HF cache offline)"
        + ("; required with --dataset, with --media the default model as for detect" if with_media else ""),
    )
    dataset_help = "dataset folder (DatasetDict saved with save_to_disk)"
    if with_media:
        source.add_argument("--dataset", help=dataset_help)
    else:
        parser.add_argument("--dataset", required=True, help=dataset_help)
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--out", required=True, help="output folder for results.json and the figures")
    parser.add_argument(
        "--task", help="restrict to a task's rows (default: the checkpoint's training task when known, else all rows)"
    )
    batch_names = ["--batch_size", "--per_device_eval_batch_size"] + (["--batch-size"] if with_media else [])
    parser.add_argument(
        *batch_names,
        type=int,
        default=None if with_media else 64,
        dest="batch_size",
        help="faces per batch" + ("; None: 64 with --dataset, 16 (as detect) with --media" if with_media else ""),
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="P(fake) from which a face is fake")
    parser.add_argument("--num_examples", type=int, default=8, help="faces in the mask grid figure")
    parser.add_argument("--dataloader_num_workers", type=int, default=0, help="data loading processes")
    parser.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], help="default: Accelerate's setting")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    if with_media:
        from .evaluate_media import add_media_arguments

        add_media_arguments(parser, source)
    return parser


def configure_logging() -> None:
    """mesofcn's INFO messages (run summary, validations) on stderr, whatever the root logger's level."""
    logging.getLogger("mesofcn").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def run_train_command(args: argparse.Namespace) -> int:
    """`mesofcn train`: train, print where the best checkpoint is; bad arguments or data are one-line errors."""
    from ..training.run_outputs import summary_line
    from ..training.run_setup import TrainingError
    from ..training.trainer import train
    from .common import CommandError, first_line

    configure_logging()
    try:
        result = train(args)
    except TrainingError as error:
        raise CommandError(first_line(error)) from error
    print(summary_line(result, args))
    return 0


def run_evaluate_command(args: argparse.Namespace) -> int:
    """`mesofcn evaluate`: evaluate and print a summary; bad arguments or data are one-line errors."""
    from .common import CommandError, first_line

    if getattr(args, "media", None) is not None:
        from .evaluate_media import run_media_evaluation

        return run_media_evaluation(args)
    from ..training.evaluation import EVALUATION_ERRORS, run_evaluation
    from .evaluate_media import check_dataset_mode_arguments

    check_dataset_mode_arguments(args)
    try:
        run_evaluation(args)
    except EVALUATION_ERRORS as error:
        raise CommandError(first_line(error)) from error
    return 0


def add_train_parser(commands) -> None:
    """Add `mesofcn train` (the arguments of scripts/train.py) to the CLI's subparsers."""
    parser = commands.add_parser(
        "train",
        help="train MesoFCN on a face-crop dataset with the paper's recipe (Accelerate)",
        description="Train MesoFCN with the paper's recipe: Adam, lr 1e-3 x0.9 per epoch, L2 1e-5, 50 epochs, "
        "best validation accuracy. Run under `accelerate launch` for several GPUs, mixed precision, etc.",
        formatter_class=DEFAULTS_FORMATTER,
    )
    build_train_parser(parser)
    parser.set_defaults(handler=run_train_command)


def add_evaluate_parser(commands) -> None:
    """Add `mesofcn evaluate` to the CLI's subparsers."""
    parser = commands.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a face-crop dataset (Tables II-IV, Figs. 4-6) or on labelled media files",
        description="--dataset: frame/video/segmentation metrics, a precision-recall curve and a mask grid for one "
        "split. --media LABELS.csv: each listed image or video analysed as `mesofcn detect` does; item- and "
        "frame-level AUC (bootstrap interval), AP, EER, accuracy, flagged reals and caught fakes, overall and per "
        "group; results.json, predictions.csv, roc.png and scores.png.",
        formatter_class=DEFAULTS_FORMATTER,
    )
    build_evaluate_parser(parser, with_media=True)
    parser.set_defaults(handler=run_evaluate_command)


__all__ = [
    "BEST_METRIC_CHOICES",
    "CLASS_BALANCE_CHOICES",
    "add_evaluate_parser",
    "add_train_parser",
    "build_evaluate_parser",
    "build_train_parser",
    "configure_logging",
    "run_evaluate_command",
    "run_train_command",
]
