"""
Evaluation on raw, labelled media (`mesofcn evaluate --media LABELS.csv`): each image or video is analysed the way
`mesofcn detect` analyses it, and its verdict score is compared with its label.

    items = read_media_list("labels.csv")                # path,label[,group]; paths relative to the CSV's folder
    evaluation = evaluate_media(items, analyse, threshold=0.5, n_bootstrap=1000, seed=0)
    evaluation.results["overall"]["auc"], evaluation.results["overall"]["auc_ci"]

`analyse(path)` returns a detection report (`label`, `score`, `tracks`, `frames_analysed`) or an error report
(`{"error": message}`). Scoring rules:

- an item's score is its report's verdict `score` (P(fake) of the most suspicious face track); it is called fake
  when its verdict is `fake` (the pipeline's rule at the threshold);
- an item where no face was found (verdict `no_face`) is scored 0.0 and counts as called real: a detector that
  finds no face cannot flag the item. Such items are counted per class (`no_face`);
- an item that could not be analysed is left out of every metric and listed under `errors`;
- frame level: every analysed face of the tracks that may decide an item's verdict (the verdict rule's eligible
  tracks; bystanders left out) gets the item's label and its own score;
- per group: the group's fakes against ALL real items (reals are rarely tied to a tool); the group's own reals
  (e.g. a tool's real inputs) give their flagged share and `auc_within`, the fakes against those reals only.

This module does not import the command line; `mesofcn.cli.evaluate_media` wires it to the pipeline and files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .. import __version__
from ..data.media_lists import MediaListItem
from .metrics import equal_error_rate

#: Score given to an item in which no face was found (it is then called real).
NO_FACE_SCORE = 0.0
LABEL_NAMES = ("real", "fake")
#: Confidence level of the bootstrap interval of the AUC.
CI_LEVEL = 0.95


@dataclass
class MediaItemResult:
    """What the analysis of one item gave: verdict and score, its face frames, or an error."""

    item: MediaListItem
    verdict: str | None = None  # "real", "fake", "no_face"; None when the item errored
    score: float | None = None  # the score used by the metrics (NO_FACE_SCORE for no_face)
    frames_analysed: int | None = None
    frames: list[tuple[int, int, float]] = field(default_factory=list)  # (frame index, track id, score)
    error: str | None = None
    eligible_tracks: frozenset[int] = frozenset()  # tracks the verdict rule lets decide (bystanders are not)
    verdict_track: int | None = None  # the track that decided (None without a face)

    def eligible_scores(self) -> list[float]:
        """Face scores of the tracks that may decide the verdict: a bystander's face is not the item's label."""
        return [score for _, track, score in self.frames if track in self.eligible_tracks]

    @property
    def flagged(self) -> bool:
        return self.verdict == "fake"


@dataclass
class MediaEvaluation:
    results: dict
    items: list[MediaItemResult]


def item_result(item: MediaListItem, report: dict) -> MediaItemResult:
    """An item's result from its detection report (or error report)."""
    if "error" in report:
        return MediaItemResult(item, error=str(report["error"]))
    verdict = report["label"]
    score = NO_FACE_SCORE if verdict == "no_face" or report["score"] is None else float(report["score"])
    frames = [
        (int(frame["index"]), int(track["id"]), float(frame["score"]))
        for track in report["tracks"]
        for frame in track["frames"]
    ]
    frames.sort()
    eligible = frozenset(int(track["id"]) for track in report["tracks"] if track.get("eligible", True))
    verdict_track = report.get("verdict_track")
    return MediaItemResult(
        item,
        verdict,
        score,
        int(report.get("frames_analysed") or 0),
        frames,
        eligible_tracks=eligible,
        verdict_track=None if verdict_track is None else int(verdict_track),
    )


def evaluate_media(
    items: Sequence[MediaListItem],
    analyse_fn: Callable[[Path], dict],
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = False,
) -> MediaEvaluation:
    """Analyse every item with `analyse_fn` (a failing item is recorded, the rest continue), then compute metrics."""
    results = analyse_items(items, analyse_fn, progress)
    return MediaEvaluation(compute_results(results, threshold, n_bootstrap, seed), results)


def analyse_items(
    items: Sequence[MediaListItem],
    analyse_fn: Callable[[Path], dict],
    progress: bool = False,
    desc: str = "evaluating",
) -> list[MediaItemResult]:
    """Each item's result from `analyse_fn` (a failing item is recorded as an error, the rest continue)."""
    from tqdm.auto import tqdm

    return [
        item_result(item, analyse_fn(item.path)) for item in tqdm(items, desc=desc, unit="item", disable=not progress)
    ]


def compute_results(results: Sequence[MediaItemResult], threshold: float, n_bootstrap: int, seed: int) -> dict:
    """Overall and per-group metrics of analysed items (see the module docstring), with error and no-face counts."""
    scored = [result for result in results if result.error is None]
    reals = [result for result in scored if result.item.label == 0]
    groups = sorted({result.item.group for result in results if result.item.group})
    per_group = {}
    for group in groups:
        members = [result for result in scored if result.item.group == group]
        fakes = [result for result in members if result.item.label == 1]
        own_reals = [result for result in members if result.item.label == 0]
        entry = group_metrics(fakes, reals, own_reals, n_bootstrap, seed)
        entry["n_errors"] = sum(result.item.group == group and result.error is not None for result in results)
        per_group[group] = entry
    overall = metrics(reals, [result for result in scored if result.item.label == 1], n_bootstrap, seed)
    overall["n_errors"] = len(results) - len(scored)
    return {
        "n_items": len(results),
        "n_errors": len(results) - len(scored),
        "n_no_face": no_face_counts(scored),
        "threshold": float(threshold),
        "no_face_score": NO_FACE_SCORE,
        "bootstrap": {"samples": int(n_bootstrap), "seed": int(seed), "level": CI_LEVEL, "stratified": True},
        "overall": overall,
        "groups": per_group,
        "errors": [{"path": result.item.name, "error": result.error} for result in results if result.error],
        "mesofcn_version": __version__,
    }


def no_face_counts(results: Iterable[MediaItemResult]) -> dict[str, int]:
    counts = dict.fromkeys(LABEL_NAMES, 0)
    for result in results:
        if result.verdict == "no_face":
            counts[LABEL_NAMES[result.item.label]] += 1
    return counts


def share(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def metrics(reals: Sequence[MediaItemResult], fakes: Sequence[MediaItemResult], n_bootstrap: int, seed: int) -> dict:
    """
    Item-level AUC (with its bootstrap interval), AP and EER from the scores; accuracy, flagged and caught shares
    from the verdicts (at the threshold the items were analysed with); frame-level AUC.
    """
    real_scores = np.array([result.score for result in reals], dtype=np.float64)
    fake_scores = np.array([result.score for result in fakes], dtype=np.float64)
    labels = np.concatenate([np.zeros(len(reals), np.int64), np.ones(len(fakes), np.int64)])
    scores = np.concatenate([real_scores, fake_scores])
    both = bool(len(reals) and len(fakes))
    correct = [not result.flagged for result in reals] + [result.flagged for result in fakes]
    entry = {
        "n_real": len(reals),
        "n_fake": len(fakes),
        "no_face": no_face_counts([*reals, *fakes]),
        "auc": float(roc_auc_score(labels, scores)) if both else None,
        "auc_ci": bootstrap_auc_interval(real_scores, fake_scores, n_bootstrap, seed) if both else None,
        "ap": float(average_precision_score(labels, scores)) if len(fakes) else None,
        "eer": equal_error_rate(labels, scores),
        "accuracy": share(correct),
        "flagged_real_share": share([result.flagged for result in reals]),
        "caught_fake_share": share([result.flagged for result in fakes]),
        "frame": frame_metrics(reals, fakes),
    }
    if not both:
        entry["note"] = f"AUC, EER and the interval need real and fake items: {len(reals)} real, {len(fakes)} fake"
    return entry


def group_metrics(
    fakes: Sequence[MediaItemResult],
    all_reals: Sequence[MediaItemResult],
    own_reals: Sequence[MediaItemResult],
    n_bootstrap: int,
    seed: int,
) -> dict:
    """
    A group: its fakes against all reals; its own reals (if any) give the group's flagged share and, with its fakes,
    `auc_within`: the fakes against the reals of the same source only (e.g. a tool's real inputs), where a cue of
    the source (face size, camera, compression) cannot separate the classes.
    """
    if not fakes:
        return {
            "n_real": len(own_reals),
            "n_fake": 0,
            "no_face": no_face_counts(own_reals),
            "flagged_real_share": share([result.flagged for result in own_reals]),
            "note": "only real items: AUC needs fakes (a group's fakes are compared with all reals)",
        }
    entry = metrics(all_reals, fakes, n_bootstrap, seed)
    entry["versus"] = "all reals"
    entry["group_n_real"] = len(own_reals)
    entry["no_face"] = no_face_counts([*own_reals, *fakes])
    entry["flagged_real_share"] = share([result.flagged for result in own_reals])
    if own_reals:
        real_scores = np.array([result.score for result in own_reals], dtype=np.float64)
        fake_scores = np.array([result.score for result in fakes], dtype=np.float64)
        entry["auc_within"] = mann_whitney_auc(real_scores, fake_scores)
        entry["auc_within_ci"] = bootstrap_auc_interval(real_scores, fake_scores, n_bootstrap, seed)
    return entry


def frame_metrics(reals: Sequence[MediaItemResult], fakes: Sequence[MediaItemResult]) -> dict:
    """AUC over the analysed faces of the items' eligible tracks (those the verdict rule lets decide), each face
    carrying its item's label: a real bystander in a fake video is not counted as a fake face."""
    real_scores = [score for result in reals for score in result.eligible_scores()]
    fake_scores = [score for result in fakes for score in result.eligible_scores()]
    both = bool(real_scores and fake_scores)
    labels = [0] * len(real_scores) + [1] * len(fake_scores)
    return {
        "n_real": len(real_scores),
        "n_fake": len(fake_scores),
        "auc": float(roc_auc_score(labels, real_scores + fake_scores)) if both else None,
    }


def mann_whitney_auc(real_scores: np.ndarray, fake_scores: np.ndarray) -> float:
    """P(fake score > real score) + P(tie)/2: the ROC AUC, computed without building the curve."""
    reals = np.sort(real_scores)
    below = np.searchsorted(reals, fake_scores, side="left")
    not_above = np.searchsorted(reals, fake_scores, side="right")
    return float((below + not_above).sum() / (2 * len(reals) * len(fake_scores)))


def bootstrap_auc_interval(
    real_scores: np.ndarray, fake_scores: np.ndarray, n_bootstrap: int, seed: int, level: float = CI_LEVEL
) -> list[float] | None:
    """
    Percentile interval of the AUC over `n_bootstrap` stratified resamples: reals and fakes are each drawn with
    replacement (as many as there are), so every resample has both classes. Deterministic for a `seed`.
    """
    if n_bootstrap < 1 or not len(real_scores) or not len(fake_scores):
        return None
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_bootstrap, dtype=np.float64)
    for index in range(n_bootstrap):
        reals = real_scores[rng.integers(0, len(real_scores), len(real_scores))]
        fakes = fake_scores[rng.integers(0, len(fake_scores), len(fake_scores))]
        aucs[index] = mann_whitney_auc(reals, fakes)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return [float(low), float(high)]


def roc_curves(evaluation: MediaEvaluation) -> dict[str, tuple[np.ndarray, np.ndarray, float | None]]:
    """`{"all": (fpr, tpr, auc), group: ...}` for every set with both classes (groups: their fakes vs all reals)."""
    scored = [result for result in evaluation.items if result.error is None]
    reals = [result.score for result in scored if result.item.label == 0]
    sets = {"all": [result.score for result in scored if result.item.label == 1]}
    for group in evaluation.results["groups"]:
        sets[group] = [result.score for result in scored if result.item.label == 1 and result.item.group == group]
    curves = {}
    for name, fakes in sets.items():
        if reals and fakes:
            fpr, tpr, _ = roc_curve([0] * len(reals) + [1] * len(fakes), reals + fakes)
            entry = evaluation.results["overall"] if name == "all" else evaluation.results["groups"][name]
            curves[name] = (fpr, tpr, entry["auc"])
    return curves


PREDICTION_COLUMNS = (
    "kind",
    "path",
    "label",
    "group",
    "score",
    "verdict",
    "frames_analysed",
    "frame",
    "track",
    "error",
)


def prediction_rows(results: Iterable[MediaItemResult]) -> list[dict]:
    """predictions.csv: per item a `kind=item` row, followed by a `kind=frame` row per analysed face."""
    rows = []
    for result in results:
        common = {"path": result.item.name, "label": LABEL_NAMES[result.item.label], "group": result.item.group}
        rows.append(
            {
                "kind": "item",
                **common,
                "score": "" if result.score is None else f"{result.score:.6f}",
                "verdict": result.verdict or "error",
                "frames_analysed": "" if result.frames_analysed is None else result.frames_analysed,
                "error": result.error or "",
            }
        )
        for frame, track, score in result.frames:
            rows.append({"kind": "frame", **common, "score": f"{score:.6f}", "frame": frame, "track": track})
    return [{column: row.get(column, "") for column in PREDICTION_COLUMNS} for row in rows]


def summary_table(results: dict) -> str:
    """Overall and per group: items, AUC [95% CI], flagged reals and caught fakes, as aligned text."""

    def number(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    def auc(entry: dict, key: str = "auc") -> str:
        if entry.get(key) is None:
            return "n/a" if key == "auc" else "-"
        low, high = entry[f"{key}_ci"] or (None, None)
        return f"{entry[key]:.3f} [{number(low)}, {number(high)}]"

    def fraction(value, count: int) -> str:
        return "-" if value is None else f"{round(value * count)}/{count} ({100 * value:.0f}%)"

    rows = [("", "real", "fake", "AUC [95% CI]", "vs own reals", "flagged reals", "caught fakes")]
    entries = [("all", results["overall"])] + list(results["groups"].items())
    for name, entry in entries:
        own_reals = entry.get("group_n_real", entry["n_real"])
        rows.append(
            (
                name,
                str(entry["n_real"])
                if name == "all" or "versus" not in entry
                else f"{own_reals} (all {entry['n_real']})",
                str(entry["n_fake"]),
                auc(entry),
                auc(entry, "auc_within"),
                fraction(entry.get("flagged_real_share"), own_reals),
                fraction(entry.get("caught_fake_share"), entry["n_fake"]),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    no_face = results["n_no_face"]
    lines.append(
        f"{results['n_items']} items, {results['n_errors']} not analysed (errors); no face found in "
        f"{no_face['real']} real and {no_face['fake']} fake (scored {NO_FACE_SCORE}, called real)"
    )
    return "\n".join(lines)


__all__ = [
    "NO_FACE_SCORE",
    "PREDICTION_COLUMNS",
    "MediaItemResult",
    "MediaEvaluation",
    "analyse_items",
    "bootstrap_auc_interval",
    "compute_results",
    "evaluate_media",
    "item_result",
    "mann_whitney_auc",
    "prediction_rows",
    "roc_curves",
    "summary_table",
]
