"""
Two questions about a face, one verdict. A manipulated face (swapped, reenacted) and a generated one (a GAN or
diffusion portrait) leave different traces, so mesofcn ships a checkpoint for each (see mesofcn.detection.defaults).
With no model named, an image is put to both and its verdict is fake if either says so; the report keeps each opinion
and names the `reason` ("manipulated", "generated" or both, joined by "+"). Videos get the manipulated-face opinion
only, unless the generated one is asked for (`generated_on_videos`): it was trained on still photos.
"""

from __future__ import annotations

from collections.abc import Mapping

from .configuration_mesofcn import DETECTS

#: Why an opinion is missing from a report, by cause.
NOT_INSTALLED = "not installed"
NOT_RUN_ON_VIDEOS = "not run on videos (ask with --generated-on-videos)"


def opinion_of(report: Mapping, detects: str) -> dict:
    """One model's opinion as a report keeps it: label, P(fake), threshold, model and each face's P(fake)."""
    return {
        "detects": detects,
        "label": report["label"],
        "score": report["score"],
        "threshold": report["threshold"],
        "model": report["model"],
        "face_scores": [face["score"] for face in report["faces"]],
    }


def missing_opinion(detects: str, why: str) -> dict:
    return {"detects": detects, "label": None, "score": None, "missing": why}


def combine_opinions(primary: dict, detects: str, second: Mapping | None, second_missing: str | None = None) -> dict:
    """
    `primary`'s report (tracks, faces and maps stay its own) with `opinions` ({"manipulated": ..., "generated": ...})
    and the joint verdict: `label` fake if any opinion says fake, else real if any says real, else no_face; `score`
    the highest P(fake) among the opinions that decided it; `reason` the questions answered fake ("manipulated",
    "generated", "generated+manipulated"), None for a real or faceless input. `second` is the other model's report
    on the same input, or None with `second_missing` saying why.
    """
    if detects not in DETECTS:
        raise ValueError(f"detects must be one of {DETECTS}, got {detects!r}")
    other = next(kind for kind in DETECTS if kind != detects)
    opinions = {detects: opinion_of(primary, detects)}
    if second is not None:
        opinions[other] = opinion_of(second, other)
    else:
        opinions[other] = missing_opinion(other, second_missing or NOT_INSTALLED)
    fakes = sorted(kind for kind, opinion in opinions.items() if opinion["label"] == "fake")
    reals = [kind for kind, opinion in opinions.items() if opinion["label"] == "real"]
    deciding = fakes or reals
    report = dict(primary)
    report["label"] = "fake" if fakes else "real" if reals else "no_face"
    report["score"] = max(opinions[kind]["score"] for kind in deciding) if deciding else None
    report["reason"] = "+".join(fakes) if fakes else None
    report["opinions"] = {kind: opinions[kind] for kind in DETECTS}
    return report


__all__ = ["NOT_INSTALLED", "NOT_RUN_ON_VIDEOS", "combine_opinions", "missing_opinion", "opinion_of"]
