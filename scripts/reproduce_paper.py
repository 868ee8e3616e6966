#!/usr/bin/env python
"""
The paper's λ sweep: train every task present in the dataset(s) with λ in {0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}
(classification) and λ = 1 (segmentation), evaluate each best checkpoint, and write tables.md (laid out like
Tables II, III and IV, with the paper's numbers beside ours) and sweep.json into --output_dir.

    python scripts/reproduce_paper.py --dataset_dir FFPP_C23_C40 GAN_FACES --output_dir paper \\
        --launcher "accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16" \\
        -- --per_device_train_batch_size 32 --dataloader_num_workers 8

Arguments after `--` go to every training run (see scripts/train.py --help).
"""

import argparse
import logging
import shlex
import sys
from pathlib import Path

from mesofcn.training.data import DatasetError
from mesofcn.training.reproduction import sweep
from mesofcn.training.tasks import CLASSIFICATION_LAMBDAS, parse_task


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, train_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dataset_dir", nargs="+", required=True, help="one or more face-crop DatasetDicts")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--lambdas", nargs="+", type=float, default=list(CLASSIFICATION_LAMBDAS))
    parser.add_argument("--no_segmentation", action="store_true", help="skip the λ = 1 runs (Table III)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (default: every task the data allows)")
    parser.add_argument("--eval_split", default="test")
    parser.add_argument("--validation_split", default="validation")
    parser.add_argument("--launcher", default=sys.executable, help="command that runs `-m mesofcn.cli train ...`")
    parser.add_argument("--eval_batch_size", type=int, default=64)
    return parser.parse_args(own), train_args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    args, train_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        for task in args.tasks or []:
            parse_task(task)
        if any(not 0 <= value <= 1 for value in args.lambdas):
            raise ValueError(f"λ values must be between 0 and 1, got {args.lambdas}")
        runs = sweep(
            args.dataset_dir,
            args.output_dir,
            lambdas=args.lambdas,
            segmentation=not args.no_segmentation,
            tasks=args.tasks,
            eval_split=args.eval_split,
            validation_split=args.validation_split,
            launcher=shlex.split(args.launcher),
            train_args=train_args,
            eval_batch_size=args.eval_batch_size,
        )
    except (DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((Path(args.output_dir) / "tables.md").read_text())
    failed = [run for run in runs if run.status == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
