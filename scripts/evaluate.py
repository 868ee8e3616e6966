#!/usr/bin/env python
"""
Evaluate a MesoFCN checkpoint on one split of a face-crop dataset (frame/video/segmentation metrics, Figs. 4-6):

    python scripts/evaluate.py --model O/best --dataset DATA --split test --out O/eval

`mesofcn evaluate` runs the same code (mesofcn.evaluation); `accelerate launch` spreads it over several devices.
"""

import sys
from pathlib import Path

# This folder holds evaluate.py, which would shadow the `evaluate` package that mesofcn's metrics import.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mesofcn.evaluation import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
