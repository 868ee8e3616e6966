"""The paper's face crop, applied identically to images and masks, and the processor around it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mesofcn import (
    MesoFCNConfig,
    MesoFCNImageProcessor,
    crop_face,
    face_crop_window,
    mask_label_positions,
    sample_mask_labels,
    to_rgb_uint8,
    upsample_segmentation_map,
)

# A face box (x, y, w, h) and five landmarks whose mean is (200, 150).
BOX = (150.0, 90.0, 100.0, 120.0)
LANDMARKS = np.array([[180, 130], [220, 130], [200, 150], [185, 170], [215, 170]], dtype=np.float32)


def frame_with_marker(height=300, width=400, at=(200, 150)) -> np.ndarray:
    """Black frame, a white 1-pixel marker at (x, y) and a grey border region to find the crop's extent."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[at[1], at[0]] = 255
    return frame


def test_window_centre_is_the_landmark_mean_and_side_is_1_1_max_box_side():
    window = face_crop_window(BOX, LANDMARKS)
    assert window.side == 132  # 1.1 * max(100, 120)
    assert (window.center_x, window.center_y) == (200.0, 150.0)
    assert abs(window.left + (window.side - 1) / 2 - 200) <= 0.5
    assert abs(window.top + (window.side - 1) / 2 - 150) <= 0.5
    assert face_crop_window(BOX, LANDMARKS, crop_scale=2.2).side == 264


def test_crop_is_centred_on_the_landmark_mean_not_the_box_centre():
    # Landmarks shifted right of the box centre: the marker at their mean must land in the crop's centre.
    frame = frame_with_marker(at=(230, 150))
    crop, _, window = crop_face(frame, BOX, LANDMARKS + [30, 0], size=window_side(), resample=Image.NEAREST)
    ys, xs = np.nonzero(crop[..., 0])
    assert window.side == 132
    assert abs(xs.mean() - 65.5) <= 0.5 and abs(ys.mean() - 65.5) <= 0.5


def window_side() -> int:
    return face_crop_window(BOX, LANDMARKS).side


def test_crop_side_covers_exactly_1_1_max_box_side():
    # A frame whose pixel values encode their column: the crop at native size shows 132 consecutive columns.
    columns = np.tile(np.arange(400, dtype=np.uint16)[None, :], (300, 1))
    frame = np.stack([columns % 256, columns // 256, np.full_like(columns, 7)], axis=-1).astype(np.uint8)
    crop, _, window = crop_face(frame, BOX, LANDMARKS, size=132)
    seen = crop[0, :, 0].astype(int) + 256 * crop[0, :, 1].astype(int)
    assert list(seen) == list(range(window.left, window.left + 132))


def test_regions_outside_the_frame_are_zero():
    frame = np.full((100, 100, 3), 200, dtype=np.uint8)
    box = (-30.0, -30.0, 60.0, 60.0)  # a face cut by the top-left corner
    landmarks = np.full((5, 2), 0.0)
    crop, _, window = crop_face(frame, box, landmarks, size=66, resample=Image.NEAREST)
    assert window.side == 66 and window.left == -32 and window.top == -32
    assert (crop[:32] == 0).all() and (crop[:, :32] == 0).all()
    assert (crop[32:, 32:] == 200).all()


def test_masks_follow_the_same_geometry_with_nearest_neighbour():
    frame = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), dtype=np.uint8)
    mask[120:180, 170:230] = 255
    bright = frame.copy()
    bright[mask > 0] = 255
    crop, mask_crop, _ = crop_face(bright, BOX, LANDMARKS, mask=mask, size=128, resample=Image.NEAREST)
    assert set(np.unique(mask_crop)) == {0, 1}
    # Where the mask crop is 1 the image crop shows the brightened (255) pixels.
    assert (crop[mask_crop == 1] == 255).all()
    ys, xs = np.nonzero(mask_crop)
    scale = 128 / 132
    assert abs(xs.min() - (170 - 134) * scale) <= 1.5 and abs(ys.min() - (120 - 84) * scale) <= 1.5


def test_mask_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        crop_face(np.zeros((300, 400, 3), np.uint8), BOX, LANDMARKS, mask=np.zeros((10, 10), np.uint8))


def test_processor_crops_frames_with_boxes_and_returns_mask_labels():
    processor = MesoFCNImageProcessor()
    frame = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), dtype=np.uint8)
    mask[150:, :] = 1
    out = processor(
        [frame, frame], masks=[mask, None], boxes=[BOX, BOX], landmarks=[LANDMARKS, LANDMARKS], return_tensors="pt"
    )
    assert out["pixel_values"].shape == (2, 3, 128, 128)
    assert out["pixel_values"].dtype == torch.float32
    assert out["mask_labels"].shape == (2, 128, 128)
    assert (out["mask_labels"][1] == -100).all()
    assert set(out["mask_labels"][0].unique().tolist()) == {0, 1}
    # The uint8 crop function and the processor agree exactly (up to rescale/normalize).
    crop, _, _ = crop_face(frame, BOX, LANDMARKS)
    expected = (torch.from_numpy(crop).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(out["pixel_values"][0], expected)
    grid = sample_mask_labels(out["mask_labels"][:1])
    assert grid.shape == (1, 49, 49)


def test_processor_without_boxes_resizes_a_face_crop():
    processor = MesoFCNImageProcessor()
    face = Image.new("RGB", (256, 200), (255, 0, 0))
    out = processor(face, return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 128, 128)
    torch.testing.assert_close(out["pixel_values"][0, 0], torch.ones(128, 128))
    torch.testing.assert_close(out["pixel_values"][0, 1], -torch.ones(128, 128))


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (64, 64), 128),
        Image.new("RGBA", (64, 64), (128, 128, 128, 10)),
        Image.fromarray(np.full((64, 64), 128 * 257, dtype=np.uint16)),
        np.full((64, 64), 128, dtype=np.uint8),
        np.full((3, 64, 64), 128, dtype=np.uint8),
        np.full((64, 64, 4), 128, dtype=np.uint8),
        np.full((64, 64, 3), 128 / 255, dtype=np.float32),
        Image.new("RGB", (1, 1), (128, 128, 128)),
    ],
    ids=["grey", "rgba", "16bit", "np-grey", "np-chw", "np-rgba", "np-float", "1x1"],
)
def test_all_image_kinds_become_the_same_grey_face(image):
    rgb = to_rgb_uint8(image)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert (np.abs(rgb.astype(int) - 128) <= 1).all()
    out = MesoFCNImageProcessor()(image, return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 128, 128)
    assert out["pixel_values"].abs().max() < 0.01


def test_unsupported_images_raise_clear_errors():
    with pytest.raises(ValueError, match="channels"):
        to_rgb_uint8(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        to_rgb_uint8(np.full((10, 10, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="boxes and landmarks together"):
        MesoFCNImageProcessor()(np.zeros((10, 10, 3), np.uint8), boxes=BOX)
    with pytest.raises(ValueError, match="positive width"):
        face_crop_window((0, 0, 0, 10), LANDMARKS)


def test_settings_round_trip_through_preprocessor_config(tmp_path):
    processor = MesoFCNImageProcessor(crop_scale=2.2, size={"height": 96, "width": 96})
    processor.save_pretrained(tmp_path)
    saved = (tmp_path / "preprocessor_config.json").read_text()
    assert '"crop_scale": 2.2' in saved
    loaded = MesoFCNImageProcessor.from_pretrained(tmp_path)
    assert loaded.crop_scale == 2.2 and loaded.size.height == 96
    frame = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    out = loaded(frame, boxes=BOX, landmarks=LANDMARKS, return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 96, 96)


def test_crop_crf_encodes_each_cut_face_like_the_encoded_training_crops(tmp_path):
    from mesofcn.detection.compression import compress_frames

    frame = cv2_smooth_frame()
    MesoFCNImageProcessor(crop_crf="c40").save_pretrained(tmp_path)
    assert '"crop_crf": 40' in (tmp_path / "preprocessor_config.json").read_text()
    processor = MesoFCNImageProcessor.from_pretrained(tmp_path)
    out = processor(frame, boxes=BOX, landmarks=LANDMARKS, return_tensors="pt")["pixel_values"][0]
    crop, _, _ = crop_face(frame, BOX, LANDMARKS)
    encoded = compress_frames([crop], 40)[0]
    assert not np.array_equal(encoded, crop)
    torch.testing.assert_close(out, (torch.from_numpy(encoded).permute(2, 0, 1).float() / 255 - 0.5) / 0.5)
    # An already-cropped face is only resized: it is not a cut from a frame.
    plain = processor(crop, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(plain, (torch.from_numpy(crop).permute(2, 0, 1).float() / 255 - 0.5) / 0.5)
    with pytest.raises(ValueError, match="crf must be an integer in 0..51 or a level name, got 60"):
        MesoFCNImageProcessor(crop_crf=60)
    assert MesoFCNImageProcessor(crop_crf="c40").crop_crf == 40  # a level name is stored as its CRF


def cv2_smooth_frame() -> np.ndarray:
    """A 300x400 frame of smooth random texture (H.264 at CRF 40 visibly changes it)."""
    noise = np.random.default_rng(3).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(noise).resize((400, 300), Image.BILINEAR))


def test_segmentation_map_is_placed_at_receptive_field_centres():
    first, second, *_, last = mask_label_positions(MesoFCNConfig(), 128)
    grid = torch.zeros(1, 49, 49)
    grid[0, 0, 0] = 1.0
    grid[0, 48, 48] = 1.0
    placed = upsample_segmentation_map(grid, 128)
    assert placed.shape == (1, 128, 128)
    assert placed[0, first, first] == 1.0 and placed[0, 0, 0] == 1.0  # the border repeats the first centre
    assert placed[0, (first + second) // 2, first] == 0.5  # half-way to the next centre
    assert placed[0, second, first] == 0.0
    assert placed[0, last, last] == 1.0 and placed[0, 127, 127] == 1.0
    with pytest.raises(ValueError, match="not this network's map"):
        upsample_segmentation_map(torch.zeros(1, 48, 48), 128)


def test_a_map_is_placed_by_the_geometry_of_its_networks_config():
    config = MesoFCNConfig(hidden_sizes=[4, 4, 4], pool_after=1, pool_stride=3)
    positions = mask_label_positions(config, 40)
    grid = torch.zeros(len(positions), len(positions))
    grid[1, 1] = 1.0
    placed = upsample_segmentation_map(grid, 40, config)
    assert placed[positions[1], positions[1]] == 1.0 and placed[positions[0], positions[0]] == 0.0


def test_post_process_semantic_segmentation_sizes_and_labels():
    processor = MesoFCNImageProcessor()
    logits = torch.zeros(2, 2, 49, 49)
    logits[0, 1, :, 25:] = 5.0  # right half fake
    maps = processor.post_process_semantic_segmentation(
        {"segmentation_logits": logits}, target_sizes=[(60, 80), (10, 10)]
    )
    assert maps[0].shape == (60, 80) and maps[1].shape == (10, 10)
    assert maps[0][:, :30].sum() == 0 and maps[0][:, 50:].all()
    assert maps[1].sum() == 0


@pytest.mark.parametrize(
    ("array", "expected_shape"),
    [
        (np.zeros((1, 1, 3), np.uint8), (1, 1, 3)),
        (np.zeros((3, 3, 3), np.uint8), (3, 3, 3)),
        (np.zeros((4, 7, 3), np.uint8), (4, 7, 3)),
        (np.zeros((3, 5, 7), np.uint8), (5, 7, 3)),
        (np.zeros((1, 5, 7), np.uint8), (5, 7, 3)),
    ],
)
def test_a_trailing_channel_axis_wins_over_a_leading_one(array, expected_shape):
    assert to_rgb_uint8(array).shape == expected_shape


def test_big_endian_16_bit_arrays_are_scaled():
    array = np.full((4, 4), 65535, dtype=">u2")
    assert (to_rgb_uint8(array) == 255).all()
