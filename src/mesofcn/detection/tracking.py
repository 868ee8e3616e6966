"""Linking faces across sampled video frames into tracks, turning tracks into a verdict, and the verdict into words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]  # x, y, width, height


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Box, b: Box) -> float:
    """Distance between box centres, in units of the larger box side (scale-free)."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return float(np.hypot(dx, dy)) / max(a[2], a[3], b[2], b[3], 1e-6)


@dataclass
class _ActiveTrack:
    track_id: int
    box: Box
    missed: int = 0


@dataclass
class FaceTracker:
    """
    Greedy frame-to-frame association of face boxes. A face joins the active track whose last box overlaps it
    most (IoU >= `min_iou`), or failing that whose centre is within `max_centre_distance` box sides (fast
    motion between sparsely sampled frames); otherwise it starts a new track. A track not seen for more than
    `max_missed` sampled frames is closed.
    """

    min_iou: float = 0.3
    max_centre_distance: float = 0.5
    max_missed: int = 3
    _active: list[_ActiveTrack] = field(default_factory=list, init=False, repr=False)
    _next_id: int = field(default=0, init=False, repr=False)

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Track ids for the faces of the next sampled frame, in the order given."""
        pairs = sorted(
            (
                (self._affinity(track.box, box), t, f)
                for t, track in enumerate(self._active)
                for f, box in enumerate(boxes)
            ),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        used_tracks: set[int] = set()
        for affinity, t, f in pairs:
            if affinity <= 0 or t in used_tracks or f in assigned:
                continue
            assigned[f] = t
            used_tracks.add(t)
        ids = []
        for f, box in enumerate(boxes):
            if f in assigned:
                track = self._active[assigned[f]]
                track.box, track.missed = tuple(box), 0
            else:
                track = _ActiveTrack(self._next_id, tuple(box))
                self._next_id += 1
                self._active.append(track)
                used_tracks.add(len(self._active) - 1)
            ids.append(track.track_id)
        for t, track in enumerate(self._active):
            if t not in used_tracks:
                track.missed += 1
        self._active = [track for track in self._active if track.missed <= self.max_missed]
        return ids

    def _affinity(self, previous: Box, current: Box) -> float:
        """> 1 for overlapping boxes (IoU + 1), in (0, 1] for nearby ones, 0 for no match."""
        iou = box_iou(previous, current)
        if iou >= self.min_iou:
            return 1.0 + iou
        distance = centre_distance(previous, current)
        return 1.0 - distance / self.max_centre_distance if distance < self.max_centre_distance else 0.0


#: Default verdict rule (see `most_suspicious_track`): a track may decide only if its median face is at least
#: this fraction of the largest track's...
DEFAULT_MIN_FACE_FRACTION = 0.5
#: ...and it is seen in at least this share of the analysed frames.
DEFAULT_MIN_TRACK_SHARE = 0.35


def face_size(box: Sequence[float]) -> float:
    """A face's size in pixels: the longer side of its (x, y, w, h) box."""
    return float(max(box[2], box[3]))


def summarize_track(track_id: int, frames: list[dict], threshold: float, frames_analysed: int) -> dict:
    """
    Per-track scores and extent: mean P(fake) over its frames, the maximum, the fraction at or above `threshold`,
    its `face_size` (median over its frames of the longer box side, in pixels) and its `share` of the
    `frames_analysed` sampled frames (a track has at most one face per frame).
    """
    scores = np.array([frame["score"] for frame in frames], dtype=np.float64)
    mean = float(scores.mean())
    return {
        "id": track_id,
        "score": mean,
        "max_score": float(scores.max()),
        "fraction_fake": float((scores >= threshold).mean()),
        "label": "fake" if mean >= threshold else "real",
        "num_frames": len(frames),
        "face_size": round(float(np.median([face_size(frame["box"]) for frame in frames])), 1),
        "share": len(frames) / max(frames_analysed, len(frames)),
        "frames": frames,
    }


def check_verdict_rule(min_face_fraction: float, min_track_share: float) -> None:
    """Both settings of the verdict rule are fractions in [0, 1]."""
    for name, value in (("min_face_fraction", min_face_fraction), ("min_track_share", min_track_share)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


def most_suspicious_track(
    tracks: list[dict],
    min_face_fraction: float = DEFAULT_MIN_FACE_FRACTION,
    min_track_share: float = DEFAULT_MIN_TRACK_SHARE,
) -> dict | None:
    """
    The track that decides a video's verdict, from tracks made by `summarize_track`; sets each track's
    `eligible` flag.

    A track is eligible when it covers at least `min_track_share` of the analysed frames and its `face_size` is
    at least `min_face_fraction` of the largest `face_size` among the tracks that cover that share (so a big
    one-frame false detection cannot set the scale). The most suspicious eligible track (highest mean P(fake))
    decides: taking the worst track, not an average over faces, keeps one swapped face among real ones from
    being averaged away, while the two floors keep bystanders (a small face in the background or on a screen)
    and brief false detections from deciding.

    Fallback when no track covers the share (e.g. a face lost and found again too often, or many short shots):
    the largest face then sets the scale over all tracks, and among the tracks big enough the one(s) seen in
    the most frames decide (the most suspicious of them); none of them is marked eligible. An image is one
    analysed frame, so every face covers it and only the size floor applies.
    """
    check_verdict_rule(min_face_fraction, min_track_share)
    if not tracks:
        return None
    covers = [track["share"] >= min_track_share for track in tracks]
    scale = max(track["face_size"] for track, ok in zip(tracks, covers, strict=True) if ok or not any(covers))
    large = [track for track in tracks if track["face_size"] >= min_face_fraction * scale]
    for track, ok in zip(tracks, covers, strict=True):
        track["eligible"] = ok and track["face_size"] >= min_face_fraction * scale
    candidates = [track for track in tracks if track["eligible"]]
    if not candidates:  # fallback: the big faces seen longest
        longest = max(track["num_frames"] for track in large)
        candidates = [track for track in large if track["num_frames"] == longest]
    return max(candidates, key=lambda track: track["score"])


def verdict_text(report: Mapping) -> str:
    """`FAKE  P(fake)=0.93`, `REAL  P(fake)=0.12` or `NO FACE`: the verdict as the CLI, plot and app show it; with
    two opinions (mesofcn.detection.opinions) the reason and each one's P(fake): `FAKE (generated)  P(fake)=0.93
    [manipulated 0.12, generated 0.93]`."""
    verdict = report["label"].upper().replace("_", " ")
    if report.get("reason"):
        verdict += f" ({report['reason'].replace('+', ' + ')})"
    text = verdict if report.get("score") is None else f"{verdict}  P(fake)={report['score']:.2f}"
    if "opinions" in report:
        parts = [f"{kind} {opinion_text(opinion)}" for kind, opinion in report["opinions"].items()]
        text += f"  [{', '.join(parts)}]"
    return text


def opinion_text(opinion: Mapping) -> str:
    """`0.93`, `no face` or why the opinion is missing (`not installed`)."""
    if opinion.get("missing"):
        return opinion["missing"].split(" (")[0]
    return "no face" if opinion["score"] is None else f"{opinion['score']:.2f}"


__all__ = [
    "DEFAULT_MIN_FACE_FRACTION",
    "DEFAULT_MIN_TRACK_SHARE",
    "FaceTracker",
    "box_iou",
    "centre_distance",
    "check_verdict_rule",
    "face_size",
    "most_suspicious_track",
    "summarize_track",
    "verdict_text",
]
