#!/usr/bin/env python
"""
Train MesoFCN with the paper's recipe (Adam 1e-3, x0.9 per epoch, L2 1e-5, 50 epochs, best validation accuracy):

    accelerate launch scripts/train.py --dataset_dir DATA --task ff-c23-df --seg_loss_weight 0.3 --output_dir O

`python scripts/train.py --help` lists every option. This is `mesofcn train` under another name (the thin entry
that `accelerate launch` needs): the same arguments, code, messages and exit codes.
"""

import sys

from mesofcn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
