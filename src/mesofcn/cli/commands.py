"""
The `mesofcn` command line: `mesofcn detect INPUT...` and friends. The top of the CLI only: it builds the parser
from the commands' modules (`detect`, `prepare`, `training`, `calibrate`, `export`, `demo`,
`app`) and runs `main`; what the commands share lives in `common`. The names tests and scripts use are
re-exported here, but nothing inside the package imports this module.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..atomic_files import write_json_atomic, write_text_atomic
from .app import add_serve_parser
from .calibrate import add_calibrate_parser
from .common import (
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
from .demo import add_demo_parser
from .detect import add_detect_parser, detect_defaults, detect_one, plan_outputs
from .export import add_export_parser
from .prepare import add_prepare_parser
from .training import add_evaluate_parser, add_train_parser


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
    """The `mesofcn` command: run the command `argv` names (see common.run_command for errors and exit codes)."""
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
