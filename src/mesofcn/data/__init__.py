"""Data: raw videos, images and media lists become `datasets` tables of face crops, masks and labels.

One builder per source (FaceForensics++, GAN/diffusion faces, labelled media, self-blended reals), sharing the
plan -> process -> publish machinery of `common` and the processor's crop, so training sees what detection sees.
"""
