"""The `mesofcn` command: one module per command, on top of everything else.

`commands` builds the parser of every command and dispatches; `from mesofcn.cli import main` (the console script's
entry point) and the other names of `commands` resolve on first use, so that importing one command's module does not
import them all.
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    """Resolve `main`, `build_parser`, the exit codes... from `commands` when first asked for."""
    return getattr(importlib.import_module(f"{__name__}.commands"), name)
