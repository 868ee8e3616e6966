"""
The `mesofcn` command line: `mesofcn detect INPUT...` and friends. The top of the CLI only: it builds the parser
from the commands' modules (`cli_detect`, `cli_prepare`, `cli_training`, `cli_calibrate`, `cli_export`, `demo`,
`app`) and runs `main`; what the commands share lives in `cli_common`. The names tests and scripts use are
re-exported here, but nothing inside the package imports this module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .app import add_serve_parser
from .atomic_files import write_json_atomic, write_text_atomic
from .cli_calibrate import add_calibrate_parser
from .cli_common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    INPUT_ERRORS,
    CommandError,
    analyse_input,
    check_writable_folder,
    command_parser,
    detect_call_options,
    first_line,
    is_onnx_file,
    load_detection_pipeline,
    run_command,
)
from .cli_detect import add_detect_parser, detect_defaults, detect_one, plan_outputs
from .cli_export import add_export_parser
from .cli_prepare import add_prepare_parser
from .cli_training import add_evaluate_parser, add_train_parser
from .demo import add_demo_parser


def build_parser() -> argparse.ArgumentParser:
    """The `mesofcn` parser: one subcommand per action, each with its handler as the `handler` default."""
    return command_parser(
        add_detect_parser,
        add_prepare_parser,
        add_train_parser,
        add_evaluate_parser,
        add_calibrate_parser,
        add_export_parser,
        add_demo_parser,
        add_serve_parser,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The `mesofcn` command: run the command `argv` names (see cli_common.run_command for errors and exit codes)."""
    return run_command(build_parser(), argv)


__all__ = [
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "INPUT_ERRORS",
    "CommandError",
    "analyse_input",
    "build_parser",
    "check_writable_folder",
    "detect_call_options",
    "detect_defaults",
    "detect_one",
    "first_line",
    "is_onnx_file",
    "load_detection_pipeline",
    "main",
    "plan_outputs",
    "write_json_atomic",
    "write_text_atomic",
]


if __name__ == "__main__":
    sys.exit(main())
