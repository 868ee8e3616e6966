"""Settings of the dataset builders that `mesofcn prepare`'s parser shows, in a module that imports nothing heavy.

The builders (the modules beside this one) import `datasets` and pyarrow; the CLI builds every subcommand's parser
at start-up, so `mesofcn detect` would load them for these few values. :class:`BuildOptions` is here for the same
reason: the CLI assembles it before it imports a builder. `mesofcn.data.common` re-exports the shard and score
settings, so `from mesofcn.data.common import MIN_FACE_SCORE` and the like still work.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from ..detection.compression import normalize_compression
from ..detection.face_detection import RetinaFaceDetector
from ..detection.image_processing_mesofcn import DEFAULT_CROP_SCALE, DEFAULT_CROP_SIZE

if TYPE_CHECKING:
    from ..detection.face_detection import FaceDetector

__all__ = [
    "DEFAULT_METHODS",
    "FFPP_METHODS",
    "FFPP_METHOD_NAMES",
    "MIN_FACE_SCORE",
    "BuildOptions",
    "check_positive_int",
    "check_probability",
    "parse_shard",
]

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


def check_positive_int(name: str, value: Any) -> int:
    """``value`` when it is an integer >= 1 (a bool is not); ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float when it is a number in [0, 1]; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


def _check_shard(shard: Any) -> tuple[int, int] | None:
    """``shard`` as (i, n) with 0 <= i < n, or None; ValueError otherwise."""
    if shard is None:
        return None
    pair = tuple(shard) if isinstance(shard, (tuple, list)) else ()
    if len(pair) != 2 or any(isinstance(value, bool) or not isinstance(value, int) for value in pair):
        raise ValueError(f"shard must be a pair (i, n) of integers, got {shard!r}")
    index, count = pair
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
    return index, count


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"a shard is written i/n (e.g. 0/4), got {text!r}") from None
    return _check_shard((index, count))  # type: ignore[return-value]


@dataclass(frozen=True)
class BuildOptions:
    """What every dataset builder takes besides its sources (`mesofcn prepare`'s shared flags), checked once here.

    Attributes:
        compressions: FF++ levels to build ("c23", "c40", "raw"/"c0"); each is a ``compression`` value. Stored
            normalised, each once, in the order given.
        num_proc: worker processes (each runs its own single-threaded detector).
        shard: (i, n) builds only every n-th work item from the i-th, leaving ``.work`` for ``merge_prepared``.
        detector: face detector to use instead of RetinaFace (its ``name`` is recorded).
        min_score: faces scoring below this are not used.
        crop_scale, size: the crop, as the processor makes it (its defaults unless a dataset needs others).
        progress: show progress bars.
        command: the command recorded in the dataset card; None: the builder's Python call.
        remove_work: delete ``.work`` after the dataset is written (a rerun then starts over).
    """

    compressions: tuple[str, ...] = ("c23",)
    num_proc: int = 1
    shard: tuple[int, int] | None = None
    detector: FaceDetector | None = None
    min_score: float = MIN_FACE_SCORE
    crop_scale: float = DEFAULT_CROP_SCALE
    size: int = DEFAULT_CROP_SIZE
    progress: bool = True
    command: str | None = None
    remove_work: bool = False

    def __post_init__(self) -> None:
        levels = (self.compressions,) if isinstance(self.compressions, str) else tuple(self.compressions)
        if not levels:
            raise ValueError("compressions: give at least one level")
        object.__setattr__(self, "compressions", tuple(dict.fromkeys(normalize_compression(lv) for lv in levels)))
        object.__setattr__(self, "shard", _check_shard(self.shard))
        check_positive_int("num_proc", self.num_proc)
        check_positive_int("size", self.size)
        check_probability("min_score", self.min_score)
        scale = self.crop_scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"crop_scale must be a positive finite number, got {scale!r}")

    @classmethod
    def of(cls, options: BuildOptions | None = None, **values: Any) -> BuildOptions:
        """``options`` (None: the defaults) with ``values`` set on top, e.g. ``BuildOptions.of(None, progress=False)``;
        TypeError naming an unknown option, ValueError for a bad value."""
        known = [item.name for item in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise TypeError(f"unknown build option {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        return replace(options or cls(), **values)

    @property
    def detector_name(self) -> str:
        """The name recorded for the face detector (RetinaFace's when none is given)."""
        return self.detector.name if self.detector is not None else RetinaFaceDetector.name

    def crop_settings(self) -> dict[str, Any]:
        """How faces are found and cut, as a plan records it (training reads ``crop_scale`` back)."""
        return {
            "detector": self.detector_name,
            "min_score": self.min_score,
            "crop_scale": self.crop_scale,
            "size": self.size,
        }

    def cropper_fields(self) -> dict[str, Any]:
        """The same settings as keyword arguments of a builder's worker (a ``FaceCropper``)."""
        return {**self.crop_settings(), "detector": self.detector}
