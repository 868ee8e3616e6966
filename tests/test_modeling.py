"""The network of Table I: shapes, parameter counts, receptive field and the joint loss."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection, mask_label_positions, sample_mask_labels
from tests.conftest import make_model

TABLE_I_SIZES = [126, 124, 61, 59, 57, 55, 53, 51, 49]
TABLE_I_CHANNELS = [32, 32, 32, 64, 64, 128, 128, 256, 256]


def test_layer_output_shapes_match_table_one():
    model = make_model()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 128), output_hidden_states=True)
    shapes = [tuple(h.shape[1:]) for h in out.hidden_states]
    assert shapes == [(c, s, s) for c, s in zip(TABLE_I_CHANNELS, TABLE_I_SIZES, strict=True)]
    assert out.logits.shape == (2, 2)
    assert out.segmentation_logits.shape == (2, 2, 49, 49)
    assert out.loss is None and out.cls_loss is None and out.seg_loss is None


@pytest.mark.parametrize(("size", "grid"), [(256, 113), (129, 50), (100, 35)])
def test_other_input_sizes_give_matching_maps_and_still_classify(size, grid):
    model = make_model()
    assert model.config.feature_map_size(size) == grid
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size), labels=torch.tensor([1]))
    assert out.segmentation_logits.shape == (1, 2, grid, grid)
    assert out.logits.shape == (1, 2)
    assert torch.isfinite(out.loss)


def test_too_small_or_misshaped_inputs_raise_clear_errors():
    model = make_model()
    with pytest.raises(ValueError, match="too small"):
        model(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        model(torch.randn(3, 128, 128))


def test_parameter_counts():
    model = make_model()
    assert sum(p.numel() for p in model.mesofcn.parameters()) == 1_173_216
    assert sum(p.numel() for p in model.parameters()) == 1_174_244
    conv_weights = sum(m.weight.numel() for m in model.mesofcn.modules() if isinstance(m, nn.Conv2d))
    assert conv_weights == 1_171_296


def linearised_copy(model: MesoFCNForDeepfakeDetection) -> MesoFCNForDeepfakeDetection:
    """Max-pool -> average pool of the same window, ReLU -> identity, positive weights (no cancellations)."""
    linear = copy.deepcopy(model).double().eval()
    layers = linear.mesofcn.layers
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.MaxPool2d):
            layers[index] = nn.AvgPool2d(layer.kernel_size, layer.stride)
        else:
            layer.activation = nn.Identity()
            layer.convolution.weight.data.abs_()
    return linear


@pytest.mark.parametrize(("row", "col"), [(0, 0), (24, 24), (48, 0), (10, 37)])
def test_receptive_field_is_31_pixels_at_stride_2(row, col):
    model = linearised_copy(make_model())
    pixels = torch.zeros(1, 3, 128, 128, dtype=torch.float64, requires_grad=True)
    features = model.mesofcn(pixels).last_hidden_state
    features[0, :, row, col].sum().backward()
    support = (pixels.grad[0].abs().sum(dim=0) > 0).nonzero()
    assert support[:, 0].min() == 2 * row and support[:, 0].max() == 2 * row + 30
    assert support[:, 1].min() == 2 * col and support[:, 1].max() == 2 * col + 30
    assert len(support) == 31 * 31
    assert model.config.receptive_field == 31


def test_mask_label_positions_are_the_receptive_field_centres():
    """The map grid rule, pinned once: position i of the 49x49 map sits at crop pixel 15 + 2i of a 128 px crop.
    Everything else (targets, maps on crops and frames, figures) reads it from `mask_label_positions`."""
    config = MesoFCNConfig()
    assert list(mask_label_positions(config, 128)) == list(range(15, 112, 2))
    assert mask_label_positions(config) == mask_label_positions(config, config.image_size)
    mask = torch.zeros(128, 128, dtype=torch.long)
    mask[15, 17] = 1
    mask[111, 111] = 1
    mask[16, 16] = 1  # between centres: never sampled
    grid = sample_mask_labels(mask)
    assert grid.shape == (49, 49)
    assert grid.sum() == 2 and grid[0, 1] == 1 and grid[48, 48] == 1


@pytest.mark.parametrize(
    ("config_kwargs", "size"),
    [({}, 128), ({"image_size": 64}, 64), ({"hidden_sizes": [4, 4, 4], "pool_after": 1, "pool_stride": 3}, 40)],
)
def test_the_map_grid_follows_the_networks_geometry(config_kwargs, size):
    """For any config, each map position's grid pixel is the centre of the input window that position sees."""
    model = linearised_copy(make_model(**config_kwargs))
    positions = mask_label_positions(model.config, size)
    for index in (0, len(positions) // 2, len(positions) - 1):
        pixels = torch.zeros(1, 3, size, size, dtype=torch.float64, requires_grad=True)
        model.mesofcn(pixels).last_hidden_state[0, :, index, index].sum().backward()
        rows = (pixels.grad[0].abs().sum(dim=(0, 2)) > 0).nonzero().flatten()
        assert positions[index] == (rows.min() + rows.max()) // 2
    assert len(positions) == model.config.feature_map_size(size)


def hand_computed_losses(out, labels, grid, weight, ignore=-100):
    cls = F.cross_entropy(out.logits, labels)
    per_position = F.cross_entropy(out.segmentation_logits, grid.clamp(min=0), reduction="none")
    valid = grid != ignore
    seg = (per_position * valid).sum() / valid.sum()
    return cls, seg, weight * seg + (1 - weight) * cls


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_joint_loss_equals_the_formula(weight):
    model = make_model(seg_loss_weight=weight).train()
    torch.manual_seed(3)
    pixels = torch.randn(4, 3, 128, 128)
    labels = torch.tensor([0, 1, 1, 0])
    masks = torch.randint(0, 2, (4, 128, 128))
    masks[0] = 0
    masks[2] = -100  # a fake without a mask
    out = model(pixels, labels=labels, mask_labels=masks)
    cls, seg, total = hand_computed_losses(out, labels, sample_mask_labels(masks), weight)
    torch.testing.assert_close(out.cls_loss, cls)
    torch.testing.assert_close(out.seg_loss, seg)
    torch.testing.assert_close(out.loss, total)


def test_full_masks_and_sampled_grids_give_the_same_loss():
    model = make_model()
    pixels = torch.randn(2, 3, 128, 128)
    labels = torch.tensor([1, 1])
    masks = torch.randint(0, 2, (2, 128, 128))
    full = model(pixels, labels=labels, mask_labels=masks)
    grid = model(pixels, labels=labels, mask_labels=sample_mask_labels(masks))
    torch.testing.assert_close(full.loss, grid.loss)


def head_gradients(weight: float) -> tuple[float, float]:
    model = make_model(seg_loss_weight=weight).train()
    pixels = torch.randn(2, 3, 128, 128)
    out = model(pixels, labels=torch.tensor([0, 1]), mask_labels=torch.randint(0, 2, (2, 49, 49)))
    out.loss.backward()
    seg = model.segmentation_head.weight.grad
    cls = model.classifier.weight.grad
    return (0.0 if seg is None else seg.abs().sum().item()), (0.0 if cls is None else cls.abs().sum().item())


def test_lambda_zero_leaves_the_segmentation_head_without_gradient():
    seg, cls = head_gradients(0.0)
    assert seg == 0.0 and cls > 0.0


def test_lambda_one_leaves_the_classification_head_without_gradient():
    seg, cls = head_gradients(1.0)
    assert cls == 0.0 and seg > 0.0


def test_ignored_positions_contribute_nothing():
    model = make_model()
    pixels = torch.randn(2, 3, 128, 128)
    labels = torch.tensor([1, 1])
    grid = torch.randint(0, 2, (2, 49, 49))
    ignored = grid.clone()
    ignored[:, :20] = -100
    loss = model(pixels, labels=labels, mask_labels=ignored).seg_loss
    # Only the labelled rows enter the mean: the loss is that of rows 20.. alone.
    logits = model(pixels).segmentation_logits
    torch.testing.assert_close(loss, F.cross_entropy(logits[:, :, 20:], grid[:, 20:]))


def test_without_masks_real_faces_get_zero_targets_and_fakes_are_ignored():
    model = make_model()
    pixels = torch.randn(2, 3, 128, 128)
    out = model(pixels, labels=torch.tensor([0, 1]))
    expected = F.cross_entropy(out.segmentation_logits[:1], torch.zeros(1, 49, 49, dtype=torch.long))
    torch.testing.assert_close(out.seg_loss, expected)


def test_all_ignored_masks_give_zero_segmentation_loss():
    model = make_model()
    out = model(torch.randn(1, 3, 128, 128), labels=torch.tensor([1]), mask_labels=torch.full((1, 49, 49), -100))
    assert out.seg_loss.item() == 0.0
    torch.testing.assert_close(out.loss, (1 - 0.3) * out.cls_loss)


def test_bad_mask_labels_raise():
    model = make_model()
    pixels = torch.randn(1, 3, 128, 128)
    with pytest.raises(ValueError, match="binarise"):
        model(pixels, mask_labels=torch.full((1, 128, 128), 255))
    with pytest.raises(ValueError, match="match neither"):
        model(pixels, mask_labels=torch.zeros(1, 60, 60, dtype=torch.long))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seg_loss_weight": 1.5}, "between 0 and 1"),
        ({"seg_loss_weight": -0.1}, "between 0 and 1"),
        ({"hidden_sizes": []}, "hidden_sizes"),
        ({"pool_after": 9}, "pool_after"),
        ({"image_size": 20}, "too small"),
        ({"id2label": {0: "fake", 1: "real"}}, "0 = real"),
        ({"kernel_size": 0}, "kernel_size"),
    ],
)
def test_invalid_configs_raise_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MesoFCNConfig(**kwargs)


def test_config_defaults_are_the_papers():
    config = MesoFCNConfig()
    assert config.hidden_sizes == [32, 32, 64, 64, 128, 128, 256, 256]
    assert config.pool_after == 2 and config.pool_kernel_size == 3 and config.pool_stride == 2
    assert config.seg_loss_weight == 0.3 and config.image_size == 128
    assert config.id2label == {0: "real", 1: "fake"} and config.label2id == {"real": 0, "fake": 1}
    assert MesoFCNConfig(seg_loss_weight=1).seg_loss_weight == 1


def test_fresh_heads_start_near_chance():
    torch.manual_seed(0)
    model = MesoFCNForDeepfakeDetection(MesoFCNConfig()).train()
    out = model(torch.randn(8, 3, 128, 128), labels=torch.tensor([0, 1] * 4))
    # ln 2 = 0.693 is chance; fan-out-scaled heads started at 3-4.
    assert 0.55 < out.cls_loss.item() < 0.85
    assert 0.55 < out.seg_loss.item() < 0.85
