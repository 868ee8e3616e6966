"""The evaluation figure of label grids on face crops: each grid position is drawn at its place on the crop, which the
network's config decides (`mask_label_positions`, the one definition of the map grid)."""

from __future__ import annotations

import numpy as np

from mesofcn import MesoFCNConfig, mask_label_positions
from mesofcn.reporting.figures import grid_to_crop, mask_grid_figure


def test_grid_positions_are_drawn_at_their_crop_pixels():
    positions = mask_label_positions(MesoFCNConfig(), 128)
    grid = np.zeros((len(positions), len(positions)), dtype=np.float32)
    grid[0, 0], grid[-1, -1], grid[3, 5] = 1.0, 0.5, 0.25
    placed = grid_to_crop(grid, 128)
    assert placed.shape == (128, 128)
    assert placed[positions[0], positions[0]] == 1.0
    assert placed[positions[-1], positions[-1]] == 0.5
    assert placed[positions[3], positions[5]] == 0.25
    left_out = positions[0] - positions.step // 2 - 1  # the border outside the grid has no value
    assert np.isnan(placed[left_out, left_out]) and np.isnan(placed[-1, -1])
    assert np.isfinite(placed[positions[0] : positions[-1] + 1, positions[0] : positions[-1] + 1]).all()


def test_another_networks_grid_is_placed_by_its_config():
    config = MesoFCNConfig(hidden_sizes=[4, 4, 4], pool_after=1, pool_stride=3)
    positions = mask_label_positions(config, 40)
    grid = np.zeros((len(positions), len(positions)), dtype=np.float32)
    grid[1, 2] = 1.0
    placed = grid_to_crop(grid, 40, config)
    assert placed[positions[1], positions[2]] == 1.0 and np.nansum(placed) == positions.step**2


def test_mask_grid_figure_draws_one_row_per_face():
    face = np.full((128, 128, 3), 120, dtype=np.uint8)
    grid = np.zeros((49, 49), dtype=np.float32)
    figure = mask_grid_figure([face, face], [grid, grid - 100], [grid, grid + 1], [0, 1], [0.1, 0.9])
    assert figure.dtype == np.uint8 and figure.shape[1] == 4 * 128 + 6
    assert figure.shape[0] == 24 + 2 * (22 + 128)
