"""Training: datasets become a checkpoint, and a checkpoint becomes figures.

The trainer and its data feed (tasks, augmentation, packed data), evaluation and metrics, calibration, model cards,
ONNX export and the paper's reproduction tables.
"""
