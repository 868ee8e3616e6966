#!/usr/bin/env python
"""
Evaluate a MesoFCN checkpoint on one split of a face-crop dataset (frame/video/segmentation metrics, Figs. 4-6):

    python scripts/evaluate_checkpoint.py --model O/best --dataset DATA --split test --out O/eval

This is `mesofcn evaluate` under another name (the same arguments, code, messages and exit codes);
`accelerate launch` spreads it over several devices.
"""

import sys

from mesofcn.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
