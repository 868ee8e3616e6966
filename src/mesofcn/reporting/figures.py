"""
Evaluation figures drawn with OpenCV (no plotting library needed): the precision-recall curve of the fake class
(the paper's Fig. 4), a grid of faces with their true and predicted manipulation masks (Figs. 5-6), and for
`mesofcn evaluate --media` ROC curves and a histogram of item scores, and for `mesofcn detect --plot` the
P(fake) of each face track of a video over time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..detection.configuration_mesofcn import MesoFCNConfig, mask_label_positions
from ..detection.image_processing_mesofcn import DEFAULT_CROP_SIZE, TABLE_I_CONFIG
from ..detection.tracking import verdict_text

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK, _GREY, _LIGHT, _WHITE = (0, 0, 0), (110, 110, 110), (225, 225, 225), (255, 255, 255)
_CURVE = (200, 40, 40)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5, color=_BLACK) -> None:
    cv2.putText(canvas, text, origin, _FONT, scale, color, 1, cv2.LINE_AA)


#: Line colours of several curves on one plot (RGB), the first being the PR curve's.
PALETTE = (_CURVE, (40, 90, 200), (30, 150, 60), (220, 140, 20), (140, 60, 180), (20, 160, 170), (120, 120, 40))
_REAL_BARS, _FAKE_BARS = (40, 90, 200), _CURVE


class _Axes:
    """
    A white canvas with a framed, gridded plot area: x in 0..`x_max`, y in 0..`y_max`, and pixel mapping. `right`
    is the margin beside the plot (room for a legend placed "beside").
    """

    left, bottom = 70, 60

    def __init__(
        self,
        size: tuple[int, int],
        title: str,
        x_label: str,
        y_label: str,
        y_max: float = 1.0,
        y_ticks=None,
        top: int = 40,
        x_max: float = 1.0,
        x_ticks=None,
        right: int = 20,
    ):
        width, height = size
        self.top, self.right = top, right
        self.canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        self.plot_w, self.plot_h = width - self.left - self.right, height - self.top - self.bottom
        self.x_max, self.y_max = x_max, y_max
        x_format = "{:.1f}" if x_ticks is None else "{:g}"
        x_ticks = np.linspace(0, 1, 6) if x_ticks is None else x_ticks
        y_ticks = np.linspace(0, 1, 6) if y_ticks is None else y_ticks
        for tick in x_ticks:
            cv2.line(self.canvas, self.to_pixel(tick, 0), self.to_pixel(tick, y_max), _LIGHT, 1)
            x, y = self.to_pixel(tick, 0)
            _text(self.canvas, x_format.format(tick), (x - 12, y + 20), 0.45, _GREY)
        for tick in y_ticks:
            cv2.line(self.canvas, self.to_pixel(0, tick), self.to_pixel(x_max, tick), _LIGHT, 1)
            x, y = self.to_pixel(0, tick)
            _text(self.canvas, f"{tick:.1f}" if y_max == 1.0 else f"{tick:g}", (x - 40, y + 5), 0.45, _GREY)
        cv2.rectangle(self.canvas, self.to_pixel(0, y_max), self.to_pixel(x_max, 0), _BLACK, 1)
        _text(self.canvas, title, (self.left, 25 if top == 40 else 22), 0.55)
        _text(self.canvas, x_label, (self.left + self.plot_w // 2 - 50, height - 15), 0.5)
        _text(self.canvas, y_label, (5, self.top - 10), 0.5)

    def to_pixel(self, x: float, y: float) -> tuple[int, int]:
        return (
            int(round(self.left + x / self.x_max * self.plot_w)),
            int(round(self.top + (1 - y / self.y_max) * self.plot_h)),
        )

    def curve(self, xs, ys, color, thickness: int = 2) -> None:
        points = np.array([self.to_pixel(float(x), float(y)) for x, y in zip(xs, ys, strict=True)], np.int32)
        if len(points) > 1:
            cv2.polylines(self.canvas, [points.reshape(-1, 1, 2)], False, color, thickness, cv2.LINE_AA)

    def dashed_hline(self, y: float, color, thickness: int = 1, dash: int = 8, gap: int = 6) -> None:
        """A dashed horizontal line across the plot at height `y` (OpenCV draws no dashed lines itself)."""
        (x_start, row), (x_end, _) = self.to_pixel(0, y), self.to_pixel(self.x_max, y)
        for x in range(x_start, x_end, dash + gap):
            cv2.line(self.canvas, (x, row), (min(x + dash, x_end), row), color, thickness, cv2.LINE_AA)

    def legend(self, entries: Sequence[tuple[str, tuple[int, int, int]]], placement: str = "corner") -> None:
        """
        Colour swatches with labels: stacked in the plot's bottom-right `"corner"`, in one row `"above"` the plot,
        or stacked `"beside"` it in the right margin (as many as fit, then a "+N more" line).
        """
        widths = [30 + cv2.getTextSize(label, _FONT, 0.45, 1)[0][0] for label, _ in entries]
        line_h = 20
        if placement == "above":
            x, row = self.left + self.plot_w - sum(widths) - 10 * (len(widths) - 1), self.top - 10
            positions = []
            for width in widths:
                positions.append((x, row))
                x += width + 10
        elif placement == "beside":
            fit = max(1, self.plot_h // line_h)
            if len(entries) > fit:
                entries = [*entries[: fit - 1], (f"+{len(entries) - fit + 1} more", _WHITE)]
            x = self.left + self.plot_w + 12
            positions = [(x, self.top + 14 + index * line_h) for index in range(len(entries))]
        else:
            x = self.left + self.plot_w - max(widths, default=0) - 10
            y = self.top + self.plot_h - 10 - line_h * len(entries)
            positions = [(x, y + index * line_h + 14) for index in range(len(entries))]
        for (x, row), (label, color) in zip(positions, entries, strict=True):
            cv2.line(self.canvas, (x, row - 5), (x + 18, row - 5), color, 3)
            _text(self.canvas, label, (x + 24, row), 0.45)


def nice_ticks(maximum: float, target: int = 6) -> tuple[float, list[float]]:
    """A round axis end >= `maximum` and ticks from 0 at a 1, 2 or 5 x 10^k step, about `target` of them."""
    maximum = maximum if maximum > 0 else 1.0
    raw = maximum / max(target - 1, 1)
    magnitude = 10 ** np.floor(np.log10(raw))
    step = next(float(m * magnitude) for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    count = int(np.ceil(maximum / step - 1e-9))
    return round(count * step, 10), [round(index * step, 10) for index in range(count + 1)]


def precision_recall_figure(
    recall: np.ndarray, precision: np.ndarray, title: str, size: tuple[int, int] = (640, 520)
) -> np.ndarray:
    """An RGB image of the precision-recall curve (recall on x, precision on y, both 0..1) with a grid."""
    axes = _Axes(size, title, "recall (fake)", "precision")
    axes.curve(recall, precision, _CURVE)
    return axes.canvas


def roc_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], title: str, size: tuple[int, int] = (640, 520)
) -> np.ndarray:
    """ROC curves (false-positive rate on x, true-positive rate on y): `{name: (fpr, tpr, auc)}`, with a legend."""
    axes = _Axes(size, title, "false positive rate (reals flagged)", "true positive rate (fakes caught)", top=60)
    axes.curve([0, 1], [0, 1], _LIGHT, 1)
    entries = []
    for index, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        color = PALETTE[index % len(PALETTE)]
        axes.curve(fpr, tpr, color, 3 if index == 0 else 2)
        entries.append((f"{name} (AUC {auc:.3f})" if auc is not None else name, color))
    axes.legend(entries)
    return axes.canvas


def score_histogram_figure(
    real_scores: Sequence[float],
    fake_scores: Sequence[float],
    threshold: float,
    title: str,
    bins: int = 20,
    size: tuple[int, int] = (640, 520),
) -> np.ndarray:
    """Histograms of scores in 0..1 (real items blue, fake red, side by side per bin) with the threshold line."""
    edges = np.linspace(0, 1, bins + 1)
    real_counts = np.histogram(np.clip(real_scores, 0, 1), edges)[0]
    fake_counts = np.histogram(np.clip(fake_scores, 0, 1), edges)[0]
    top = max(int(real_counts.max(initial=0)), int(fake_counts.max(initial=0)), 1)
    step = max(1, int(np.ceil(top / 5)))
    y_max = step * int(np.ceil(top / step))
    axes = _Axes(size, title, "score (P(fake))", "items", y_max=y_max, y_ticks=range(0, y_max + 1, step), top=60)
    half = (edges[1] - edges[0]) / 2
    for start, real, fake in zip(edges[:-1], real_counts, fake_counts, strict=True):
        for offset, count, color in ((0.0, real, _REAL_BARS), (half, fake, _FAKE_BARS)):
            if count:
                corner_a = axes.to_pixel(start + offset + 0.1 * half, count)
                corner_b = axes.to_pixel(start + offset + 0.9 * half, 0)
                cv2.rectangle(axes.canvas, corner_a, corner_b, color, -1)
    line_top, line_bottom = axes.to_pixel(threshold, y_max), axes.to_pixel(threshold, 0)
    cv2.line(axes.canvas, line_top, line_bottom, _BLACK, 2, cv2.LINE_AA)
    _text(axes.canvas, f"threshold {threshold:g}", (line_top[0] + 4, line_top[1] + 15), 0.45)
    axes.legend(
        [(f"real ({len(real_scores)})", _REAL_BARS), (f"fake ({len(fake_scores)})", _FAKE_BARS)], placement="above"
    )
    return axes.canvas


#: Default size (width, height) of the P(fake)-over-time plot of a video.
TIMELINE_SIZE = (800, 400)


def track_timeline_figure(report: Mapping, size: tuple[int, int] = TIMELINE_SIZE) -> np.ndarray:
    """
    P(fake) over time of a video report (the pipeline's or its JSON form): one line per face track with at least
    two analysed frames (time in seconds on x, P(fake) 0..1 on y, a dot per analysed frame), the threshold as a
    dashed line, the track that decides the verdict drawn thicker, and a legend of track ids beside the plot.
    """
    tracks = report.get("tracks") or []
    drawn = [track for track in tracks if len(track["frames"]) >= 2]
    times = [frame["time"] for track in tracks for frame in track["frames"]]
    x_max, x_ticks = nice_ticks(max(report.get("duration") or 0.0, *times, 0.0))
    title = f"{Path(report['path'] or 'video').name}: {verdict_text(report)}"
    axes = _Axes(size, title, "time (s)", "P(fake)", x_max=x_max, x_ticks=x_ticks, right=170)
    threshold = report["threshold"]
    axes.dashed_hline(threshold, _BLACK)
    _text(axes.canvas, f"threshold {threshold:g}", (axes.left + 6, axes.to_pixel(0, threshold)[1] - 6), 0.45)
    entries = []
    for index, track in enumerate(drawn):
        color = PALETTE[index % len(PALETTE)]
        decides = track["id"] == report.get("verdict_track")
        xs, ys = [frame["time"] for frame in track["frames"]], [frame["score"] for frame in track["frames"]]
        axes.curve(xs, ys, color, 4 if decides else 2)
        for x, y in zip(xs, ys, strict=True):
            cv2.circle(axes.canvas, axes.to_pixel(x, y), 4 if decides else 3, color, -1, cv2.LINE_AA)
        entries.append((f"track #{track['id']}{' (decides)' if decides else ''}", color))
    axes.legend(entries, placement="beside")
    if len(drawn) < len(tracks):
        left_out = len(tracks) - len(drawn)
        note = f"+{left_out} track{'s' * (left_out != 1)} in 1 frame"
        _text(axes.canvas, note, (axes.left + axes.plot_w + 12, axes.top + axes.plot_h), 0.45, _GREY)
    if not drawn:
        message = "no face track spans 2 or more analysed frames"
        _text(axes.canvas, message, (axes.left + 20, axes.to_pixel(0, 0.75)[1]), 0.55, _GREY)
    return axes.canvas


def grid_to_crop(
    grid: np.ndarray, crop_size: int = DEFAULT_CROP_SIZE, config: MesoFCNConfig | None = None
) -> np.ndarray:
    """A label or score grid (49x49 for a 128 px crop) drawn on the crop: each position covers the step x step pixels
    at its receptive-field centre (`mask_label_positions` of the network's `config`, Table I when None: 2x2 pixels
    at 15 + 2i), the border outside the grid is NaN."""
    positions = mask_label_positions(config if config is not None else TABLE_I_CONFIG, crop_size)
    grid = np.asarray(grid, dtype=np.float32)
    placed = np.full((crop_size, crop_size), np.nan, dtype=np.float32)
    block = np.kron(grid, np.ones((positions.step, positions.step), dtype=np.float32))
    start = positions[0] - positions.step // 2
    end = min(crop_size, start + block.shape[0])
    placed[start:end, start:end] = block[: end - start, : end - start]
    return placed


def _colorize(values: np.ndarray) -> np.ndarray:
    """0..1 values (NaN = no label) -> RGB: JET colour map, grey where there is no value."""
    clean = np.nan_to_num(values, nan=0.0).clip(0, 1)
    rgb = cv2.applyColorMap(np.round(clean * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1].copy()
    rgb[np.isnan(values)] = _GREY
    return rgb


def mask_grid_figure(
    faces: Sequence[np.ndarray],
    true_grids: Sequence[np.ndarray],
    predicted_grids: Sequence[np.ndarray],
    labels: Sequence[int],
    scores: Sequence[float],
    ignore_index: int = -100,
    config: MesoFCNConfig | None = None,
) -> np.ndarray:
    """
    One row per face: the crop, its true label grid (blue 0, red 1, grey unknown), the predicted P(fake) grid, and
    the prediction blended over the face; the row's caption gives the true label and the image-level P(fake).
    `config`: the network's, whose geometry places the grids on the crops (Table I when None).
    """
    rows = []
    for face, truth, predicted, label, score in zip(faces, true_grids, predicted_grids, labels, scores, strict=True):
        size = face.shape[0]
        truth = np.asarray(truth, dtype=np.float32)
        truth[truth == ignore_index] = np.nan
        predicted_on_crop = grid_to_crop(predicted, size, config)
        true_rgb = _colorize(grid_to_crop(truth, size, config))
        predicted_rgb = _colorize(predicted_on_crop)
        heat = np.nan_to_num(predicted_on_crop, nan=0.0)[..., None]
        blended = np.round(face * (1 - 0.5 * heat) + predicted_rgb * (0.5 * heat)).astype(np.uint8)
        caption = np.full((22, size * 4 + 6, 3), 255, dtype=np.uint8)
        _text(caption, f"true {'fake' if label == 1 else 'real'}   P(fake) {score:.2f}", (4, 16), 0.45)
        gap = np.full((size, 2, 3), 255, dtype=np.uint8)
        tiles = np.concatenate([face, gap, true_rgb, gap, predicted_rgb, gap, blended], axis=1)
        rows.append(np.concatenate([caption, tiles], axis=0))
    header = np.full((24, rows[0].shape[1], 3), 255, dtype=np.uint8)
    for index, name in enumerate(("face", "true mask", "predicted", "overlay")):
        _text(header, name, (index * (rows[0].shape[1] // 4) + 4, 17), 0.5)
    return np.concatenate([header, *rows], axis=0)


__all__ = [
    "PALETTE",
    "TIMELINE_SIZE",
    "grid_to_crop",
    "mask_grid_figure",
    "nice_ticks",
    "precision_recall_figure",
    "roc_figure",
    "score_histogram_figure",
    "track_timeline_figure",
]
