"""
Evaluation figures drawn with OpenCV (no plotting library needed): the precision-recall curve of the fake class
(the paper's Fig. 4) and a grid of faces with their true and predicted manipulation masks (Figs. 5-6).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLACK, _GREY, _LIGHT, _WHITE = (0, 0, 0), (110, 110, 110), (225, 225, 225), (255, 255, 255)
_CURVE = (200, 40, 40)
#: Pixel of the face crop where grid position 0 of a 49x49 label grid is centred (Table I's receptive field).
GRID_OFFSET = 15
GRID_STRIDE = 2


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5, color=_BLACK) -> None:
    cv2.putText(canvas, text, origin, _FONT, scale, color, 1, cv2.LINE_AA)


def precision_recall_figure(
    recall: np.ndarray, precision: np.ndarray, title: str, size: tuple[int, int] = (640, 520)
) -> np.ndarray:
    """An RGB image of the precision-recall curve (recall on x, precision on y, both 0..1) with a grid."""
    width, height = size
    left, right, top, bottom = 70, 20, 40, 60
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_pixel(x: float, y: float) -> tuple[int, int]:
        return int(round(left + x * plot_w)), int(round(top + (1 - y) * plot_h))

    for tick in np.linspace(0, 1, 6):
        cv2.line(canvas, to_pixel(tick, 0), to_pixel(tick, 1), _LIGHT, 1)
        cv2.line(canvas, to_pixel(0, tick), to_pixel(1, tick), _LIGHT, 1)
        x, y = to_pixel(tick, 0)
        _text(canvas, f"{tick:.1f}", (x - 12, y + 20), 0.45, _GREY)
        x, y = to_pixel(0, tick)
        _text(canvas, f"{tick:.1f}", (x - 40, y + 5), 0.45, _GREY)
    cv2.rectangle(canvas, to_pixel(0, 1), to_pixel(1, 0), _BLACK, 1)
    points = np.array([to_pixel(float(r), float(p)) for r, p in zip(recall, precision, strict=True)], np.int32)
    if len(points) > 1:
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, _CURVE, 2, cv2.LINE_AA)
    _text(canvas, title, (left, 25), 0.55)
    _text(canvas, "recall (fake)", (left + plot_w // 2 - 50, height - 15), 0.5)
    _text(canvas, "precision", (5, top - 10), 0.5)
    return canvas


def grid_to_crop(grid: np.ndarray, crop_size: int = 128) -> np.ndarray:
    """A 49x49 label or score grid drawn on the crop: each position covers the 2x2 pixels at its receptive-field
    centre (15 + 2i), the border outside the grid is NaN."""
    grid = np.asarray(grid, dtype=np.float32)
    placed = np.full((crop_size, crop_size), np.nan, dtype=np.float32)
    block = np.kron(grid, np.ones((GRID_STRIDE, GRID_STRIDE), dtype=np.float32))
    start = GRID_OFFSET - 1
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
) -> np.ndarray:
    """
    One row per face: the crop, its true label grid (blue 0, red 1, grey unknown), the predicted P(fake) grid, and
    the prediction blended over the face; the row's caption gives the true label and the image-level P(fake).
    """
    rows = []
    for face, truth, predicted, label, score in zip(faces, true_grids, predicted_grids, labels, scores, strict=True):
        size = face.shape[0]
        truth = np.asarray(truth, dtype=np.float32)
        truth[truth == ignore_index] = np.nan
        true_rgb = _colorize(grid_to_crop(truth, size))
        predicted_rgb = _colorize(grid_to_crop(predicted, size))
        heat = np.nan_to_num(grid_to_crop(predicted, size), nan=0.0)[..., None]
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


__all__ = ["GRID_OFFSET", "GRID_STRIDE", "grid_to_crop", "mask_grid_figure", "precision_recall_figure"]
