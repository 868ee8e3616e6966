"""Detection: an image or video becomes per-face scores, 49x49 maps and a verdict.

The network (configuration, modeling, ONNX backend), the landmark-centred crop (image processing), face detection
and tracking, media decoding and the `deepfake-detection` pipeline. Kept flat, with single-dot relative imports
only: a checkpoint saved with its pipeline code carries exactly these files as remote code.
"""
