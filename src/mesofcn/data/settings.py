"""Settings of the dataset builders that `mesofcn prepare`'s parser shows, in a module that imports nothing heavy.

The builders (`mesofcn.data.common` and the builder modules beside it) import `datasets` and pyarrow; the
CLI builds every subcommand's parser at start-up, so `mesofcn detect` would load them for these few values.
The builder modules re-export them, so `from mesofcn.data.common import MIN_FACE_SCORE` and the like still work.
"""

from __future__ import annotations

__all__ = ["DEFAULT_METHODS", "FFPP_METHODS", "FFPP_METHOD_NAMES", "MIN_FACE_SCORE", "parse_shard"]

#: Faces scoring below this are not used (one face per frame: the most confident one above it).
MIN_FACE_SCORE = 0.5

#: Manipulation methods of FF++ (folder names under manipulated_sequences/).
FFPP_METHODS: tuple[str, ...] = (
    "Deepfakes",
    "Face2Face",
    "FaceSwap",
    "NeuralTextures",
    "FaceShifter",
    "DeepFakeDetection",
)
#: The ``method`` ClassLabel of the FF++ builder: fixed, so datasets built with different --methods stay compatible.
FFPP_METHOD_NAMES: tuple[str, ...] = ("pristine", *FFPP_METHODS)
#: The paper's three methods.
DEFAULT_METHODS: tuple[str, ...] = ("Deepfakes", "Face2Face", "FaceSwap")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"a shard is written i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return index, count
