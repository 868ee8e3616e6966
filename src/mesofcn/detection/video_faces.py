"""Faces of consecutive video frames at a fraction of the detector's cost.

The face detector is the most expensive step after the network. Faces move little between neighbouring frames,
so :class:`VideoFaceFinder` runs the detector only every few video frames (on a shrunk copy of the frame when
asked) and carries each face to the frames in between by sparse optical flow (pyramidal Lucas-Kanade on a grey
thumbnail): points on the face are followed forward and back, and the face's box and landmarks move with the
similarity transform (shift, scale, rotation) those points agree on. The detector runs again at once on a scene
change, when a face's points are lost, and on every frame when the frames are far apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .face_detection import DetectedFace, FaceDetector, accepts_max_side

__all__ = [
    "DEFAULT_DETECT_EVERY",
    "DEFAULT_DETECT_SIZE",
    "VideoFaceFinder",
    "check_detection_settings",
    "follow_face",
]

#: Run the face detector at least every this many video frames (0.2 s at 25 fps); frames sampled this far apart
#: or more are all detected.
DEFAULT_DETECT_EVERY = 5
#: Longer side, in pixels, of the copy the face detector sees (larger frames are shrunk; None: full resolution).
#: Full resolution by default: on FF++ 004 (720p) a copy shrunk to 960 lost a borderline face on a screen behind
#: the presenter in half the frames, and that face decided the verdict; detecting every 5th frame did not.
DEFAULT_DETECT_SIZE: int | None = None

#: Longer side of the grey thumbnail optical flow and the scene-change test work on.
_FLOW_SIDE = 640
#: Mean absolute grey-level change (0-255) between consecutive thumbnails that counts as a cut.
_SCENE_CHANGE = 30.0
#: Points followed per face: a grid over the face box plus its five landmarks.
_GRID = 5
#: A followed point is kept if tracking it back lands within this many thumbnail pixels of where it started.
_MAX_ROUND_TRIP = 1.0
#: A face is lost when fewer than this share of its points survive the round trip.
_MIN_KEPT = 0.5


@dataclass
class VideoFaceFinder:
    """
    The faces of each analysed frame of one video, in order: detected, or followed from the previous analysed frame.

    Args:
        detector: the face detector.
        detect_every: detect when at least this many video frames passed since the last detection (1: every
            analysed frame); faces are followed in between.
        detect_size: the detector sees frames shrunk to this longer side (None: full resolution); used only with a
            detector whose `detect` takes `max_side`.

    Call :meth:`faces` with each analysed frame's index (in video frames) and RGB image, in increasing order;
    :meth:`reset` before another video. `detections` counts the frames the detector ran on.
    """

    detector: FaceDetector
    detect_every: int = DEFAULT_DETECT_EVERY
    detect_size: int | None = DEFAULT_DETECT_SIZE
    detections: int = field(default=0, init=False)
    _previous: np.ndarray | None = field(default=None, init=False, repr=False)
    _scale: float = field(default=1.0, init=False, repr=False)
    _faces: list[DetectedFace] = field(default_factory=list, init=False, repr=False)
    _last_detection: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_detection_settings(self.detect_every, self.detect_size)
        self._max_side = self.detect_size if accepts_max_side(self.detector) else None

    def reset(self) -> None:
        """Forget the previous video."""
        self._previous, self._faces, self._last_detection, self.detections = None, [], None, 0

    def faces(self, index: int, image: np.ndarray) -> list[DetectedFace]:
        """The faces of frame `index` (sorted by descending detector score when detected)."""
        grey, scale = _grey_thumbnail(image)
        followed = None
        if not self._detection_due(index, grey, scale):
            followed = [follow_face(face, self._previous, grey, scale) for face in self._faces]
            if any(face is None for face in followed):
                followed = None  # a face was lost: look again
        if followed is None:
            followed = self._detect(image)
            self._last_detection = index
        self._previous, self._scale, self._faces = grey, scale, followed
        return list(followed)

    def _detection_due(self, index: int, grey: np.ndarray, scale: float) -> bool:
        if self._last_detection is None or self._previous is None or scale != self._scale:
            return True
        if index - self._last_detection >= self.detect_every:
            return True
        return float(cv2.absdiff(grey, self._previous).mean()) > _SCENE_CHANGE

    def _detect(self, image: np.ndarray) -> list[DetectedFace]:
        self.detections += 1
        if self._max_side is None:
            return self.detector.detect(image)
        return self.detector.detect(image, max_side=self._max_side)  # type: ignore[call-arg]


def check_detection_settings(detect_every: int, detect_size: int | None) -> None:
    """ValueError naming the setting when `detect_every` or `detect_size` is out of range."""
    if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
        raise ValueError(f"detect_every must be an integer >= 1 (video frames), got {detect_every!r}")
    if detect_size is not None and (
        isinstance(detect_size, bool) or not isinstance(detect_size, int) or detect_size < 32
    ):
        raise ValueError(f"detect_size must be None or an integer >= 32 (pixels), got {detect_size!r}")


def _grey_thumbnail(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Grey copy of an RGB frame with its longer side at most `_FLOW_SIDE`, and the thumbnail's size / the frame's."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    longer = max(grey.shape)
    if longer <= _FLOW_SIDE:
        return grey, 1.0
    scale = _FLOW_SIDE / longer
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA), scale


def follow_face(face: DetectedFace, before: np.ndarray, after: np.ndarray, scale: float) -> DetectedFace | None:
    """
    `face` (frame coordinates) moved from grey thumbnail `before` to `after` (`scale` = thumbnail / frame size):
    its points followed by Lucas-Kanade forward and back, the box and landmarks carried by the similarity
    transform the surviving points agree on. None when the face is lost (too few points survive).
    """
    start = _face_points(face) * scale
    window = (15, 15)
    ahead, found, _ = cv2.calcOpticalFlowPyrLK(before, after, start, None, winSize=window, maxLevel=3)
    if ahead is None:
        return None
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(after, before, ahead, None, winSize=window, maxLevel=3)
    round_trip = np.linalg.norm(back - start, axis=-1).reshape(-1)
    kept = (found.reshape(-1) == 1) & (found_back.reshape(-1) == 1) & (round_trip < _MAX_ROUND_TRIP)
    if kept.sum() < max(3, _MIN_KEPT * len(start)):
        return None
    matrix, _ = cv2.estimateAffinePartial2D(start[kept] / scale, ahead[kept] / scale, method=cv2.LMEDS)
    if matrix is None:
        return None
    return _moved(face, matrix)


def _face_points(face: DetectedFace) -> np.ndarray:
    """(N, 1, 2) float32 points to follow: a grid over the inner part of the box, then the five landmarks."""
    x, y, w, h = face.box
    steps = np.linspace(0.2, 0.8, _GRID, dtype=np.float32)
    grid = np.stack(np.meshgrid(x + w * steps, y + h * steps), axis=-1).reshape(-1, 2)
    return np.concatenate([grid, face.landmarks]).astype(np.float32).reshape(-1, 1, 2)


def _moved(face: DetectedFace, matrix: np.ndarray) -> DetectedFace:
    """`face` with its landmarks and box centre mapped by the 2x3 similarity `matrix`, the box scaled alike."""
    landmarks = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    x, y, w, h = face.box
    centre = np.array([x + w / 2, y + h / 2]) @ matrix[:, :2].T + matrix[:, 2]
    zoom = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    box = (centre[0] - w * zoom / 2, centre[1] - h * zoom / 2, w * zoom, h * zoom)
    return DetectedFace(box=box, landmarks=landmarks, score=face.score)
