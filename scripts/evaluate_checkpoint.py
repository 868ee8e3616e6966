#!/usr/bin/env python
"""
Evaluate a MesoFCN checkpoint on one split of a face-crop dataset (frame/video/segmentation metrics, Figs. 4-6):

    python scripts/evaluate_checkpoint.py --model O/best --dataset DATA --split test --out O/eval

`mesofcn evaluate` runs the same code (mesofcn.evaluation); `accelerate launch` spreads it over several devices.
"""

import sys

from mesofcn.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
