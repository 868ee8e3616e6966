"""Image processor for MesoFCN: the paper's landmark-centred face crop, then rescale and normalize."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    ChannelDimension,
    PILImageResampling,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType

from .compression import compress_frames, compression_crf
from .configuration_mesofcn import MesoFCNConfig, mask_label_positions

#: The paper's network (Table I), whose geometry places a map on its crop when no checkpoint's config is given.
#: Made once (a config takes ~0.2 ms to build, and maps are placed per face and frame); never changed.
TABLE_I_CONFIG = MesoFCNConfig()

#: The paper's crop (Sec. IV-A): side = CROP_SCALE x max(box side), centred on the landmarks, resized to CROP_SIZE px.
#: Every other module reads these (or a checkpoint's processor / a dataset's build settings), never the numbers.
#: The crop's side is the side the network of Table I takes (its config's `image_size`).
DEFAULT_CROP_SCALE = 1.1
DEFAULT_CROP_SIZE = TABLE_I_CONFIG.image_size


@dataclass(frozen=True)
class FaceCropWindow:
    """
    The square frame region a face crop is cut from, in pixel-index coordinates of the frame.

    `left`/`top` may be negative and `left + side`/`top + side` may pass the frame's edge: those pixels are
    zero in the crop. `center_x`/`center_y` are the landmark mean the window was built around.
    """

    left: int
    top: int
    side: int
    center_x: float
    center_y: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "left": self.left,
            "top": self.top,
            "side": self.side,
            "center_x": self.center_x,
            "center_y": self.center_y,
        }


def face_crop_window(
    box: Sequence[float], landmarks: np.ndarray | Sequence, crop_scale: float = DEFAULT_CROP_SCALE
) -> FaceCropWindow:
    """
    The paper's crop (Sec. IV-A): a square of side `crop_scale * max(box width, box height)` centred at the mean
    of the five landmarks (not the box centre). `box` is (x, y, width, height).
    """
    if len(box) != 4:
        raise ValueError(f"a face box must be (x, y, width, height), got {box!r}")
    width, height = float(box[2]), float(box[3])
    if not (width > 0 and height > 0):
        raise ValueError(f"a face box must have a positive width and height, got {box!r}")
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(points) == 0 or not np.isfinite(points).all():
        raise ValueError(f"face landmarks must be finite (x, y) points, got {landmarks!r}")
    if crop_scale <= 0:
        raise ValueError(f"crop_scale must be positive, got {crop_scale}")
    center_x, center_y = points.mean(axis=0)
    side = max(1, int(round(crop_scale * max(width, height))))
    # The crop covers indices left .. left + side - 1, whose centre is left + (side - 1) / 2.
    left = int(round(center_x - (side - 1) / 2))
    top = int(round(center_y - (side - 1) / 2))
    return FaceCropWindow(left=left, top=top, side=side, center_x=float(center_x), center_y=float(center_y))


def cut_window(image: np.ndarray, window: FaceCropWindow) -> np.ndarray:
    """The window's pixels of an (H, W) or (H, W, C) array; regions outside the frame are zeros."""
    height, width = image.shape[:2]
    region = np.zeros((window.side, window.side) + image.shape[2:], dtype=image.dtype)
    top, left = max(window.top, 0), max(window.left, 0)
    bottom, right = min(window.top + window.side, height), min(window.left + window.side, width)
    if bottom > top and right > left:
        region[top - window.top : bottom - window.top, left - window.left : right - window.left] = image[
            top:bottom, left:right
        ]
    return region


def heatmap_on_frame(
    patch_map: np.ndarray | torch.Tensor,
    window: FaceCropWindow,
    frame_height: int,
    frame_width: int,
    crop_size: int = DEFAULT_CROP_SIZE,
    config: MesoFCNConfig | None = None,
    positions: range | None = None,
) -> np.ndarray:
    """
    A face's per-patch map (e.g. 49x49 P(fake)) placed back where its crop came from: a float32
    (frame_height, frame_width) array, zero outside the crop window. The inverse of the crop geometry; `config` is
    the network's (Table I when None), whose geometry places the map on the crop, or `positions` its grid as
    `mask_label_positions` gives it (what a report keeps of the network).
    """
    grid = torch.as_tensor(np.asarray(patch_map, dtype=np.float32))
    on_crop = upsample_segmentation_map(grid, crop_size, config, positions).numpy()
    on_window = np.asarray(
        Image.fromarray(on_crop, mode="F").resize((window.side, window.side), resample=Image.BILINEAR),
        dtype=np.float32,
    )
    heatmap = np.zeros((frame_height, frame_width), dtype=np.float32)
    top, left = max(window.top, 0), max(window.left, 0)
    bottom, right = min(window.top + window.side, frame_height), min(window.left + window.side, frame_width)
    if bottom > top and right > left:
        heatmap[top:bottom, left:right] = on_window[
            top - window.top : bottom - window.top, left - window.left : right - window.left
        ]
    return heatmap


def resize_square(image: np.ndarray, size: int, resample: PILImageResampling | int) -> np.ndarray:
    """Resize an (H, W) or (H, W, 3) uint8 array to size x size with PIL's (antialiased) filter."""
    if image.shape[0] == size and image.shape[1] == size:
        return image.copy()
    return np.array(Image.fromarray(image).resize((size, size), resample=PILImageResampling(resample)))


def crop_face(
    image: np.ndarray,
    box: Sequence[float],
    landmarks: np.ndarray | Sequence,
    mask: np.ndarray | None = None,
    crop_scale: float = DEFAULT_CROP_SCALE,
    size: int = DEFAULT_CROP_SIZE,
    resample: PILImageResampling | int = PILImageResampling.BILINEAR,
) -> tuple[np.ndarray, np.ndarray | None, FaceCropWindow]:
    """
    The uint8 `size` x `size` face crop of an RGB frame, the identically cropped binary mask (nearest
    neighbour, values 0/1) when a mask is given, and the window they were cut from. Dataset builders and the
    processor share this function, so training sees exactly what inference sees.
    """
    image = to_rgb_uint8(image)
    window = face_crop_window(box, landmarks, crop_scale)
    crop = resize_square(cut_window(image, window), size, resample)
    mask_crop = None
    if mask is not None:
        binary = binarize_mask(mask)
        if binary.shape != image.shape[:2]:
            raise ValueError(f"mask of shape {binary.shape} does not match the frame's {image.shape[:2]}")
        mask_crop = resize_square(cut_window(binary, window), size, PILImageResampling.NEAREST)
    return crop, mask_crop, window


def binarize_mask(mask: np.ndarray | Image.Image) -> np.ndarray:
    """An (H, W) uint8 mask with 1 where any channel is non-zero (FF++ masks are 0/255 or shaded renders)."""
    array = np.asarray(mask)
    if array.ndim == 3:
        array = array.max(axis=2)
    if array.ndim != 2:
        raise ValueError(f"a mask must be (H, W) or (H, W, C), got shape {array.shape}")
    return (array > 0).astype(np.uint8)


def to_rgb_uint8(image) -> np.ndarray:
    """
    Any supported image as an (H, W, 3) uint8 RGB array: PIL images of any mode (grey, palette, RGBA, 16-bit),
    numpy/torch arrays (H, W), (H, W, 1|3|4) or channels-first, uint8, uint16 (scaled down) or float in [0, 1].
    Alpha is dropped (not composited): the face pixels are what matter.
    """
    if isinstance(image, (str, Path)):
        raise TypeError(f"{image}: pass a loaded image (use mesofcn's image loader for files)")
    if isinstance(image, Image.Image):
        return pil_to_rgb_uint8(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"unsupported image type {type(image).__name__}; expected a PIL image or an array")
    array = channels_last(image)
    array = to_uint8_values(array)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[..., :3]
    elif array.shape[2] != 3:
        raise ValueError(f"an image must have 1, 3 or 4 channels, got shape {image.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"an image must have at least one pixel, got shape {image.shape}")
    return np.ascontiguousarray(array)


def pil_to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """PIL image of any mode as RGB uint8; 16/32-bit grey modes are scaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return to_rgb_uint8(np.asarray(image))
    return np.asarray(image.convert("RGB"))


def channels_last(array: np.ndarray) -> np.ndarray:
    """(H, W) -> (H, W, 1); (H, W, C) kept; channels-first (C, H, W) -> (H, W, C). C is 1, 3 or 4, and a
    trailing channel axis wins when both ends could be one (a 3x3 RGB image stays as it is)."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"an image must have 2 or 3 dimensions, got shape {array.shape}")
    if array.shape[2] in (1, 3, 4):
        return array
    if array.shape[0] in (1, 3, 4):
        return np.moveaxis(array, 0, -1)
    raise ValueError(f"an image must have 1, 3 or 4 channels, got shape {array.shape}")


def to_uint8_values(array: np.ndarray) -> np.ndarray:
    """Map an array's values to 0..255 by dtype: uint16 and int32 images are 16-bit, floats are in [0, 1]."""
    if array.dtype.byteorder == ">":  # big-endian 16-bit TIFFs
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype in (np.uint16, np.int32, np.int64, np.uint32):
        return (np.clip(array, 0, 65535) // 257).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("an image must not contain NaN or infinite values")
        return np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {array.dtype}")


def upsample_segmentation_map(
    grid: torch.Tensor, crop_size: int, config: MesoFCNConfig | None = None, positions: range | None = None
) -> torch.Tensor:
    """
    Place a `(..., m, m)` per-patch map on the `crop_size` x `crop_size` face crop it came from: position i sits
    at the centre of its receptive field (`positions`, or `mask_label_positions` of the network's `config`, Table I
    when both are None), values between centres are interpolated linearly and the thin border outside the
    first/last centre repeats the edge value.
    """
    size = grid.shape[-1]
    if positions is None:
        positions = mask_label_positions(config if config is not None else TABLE_I_CONFIG, crop_size)
    if len(positions) != size:
        raise ValueError(f"a {size}x{size} map is not this network's map of a {crop_size}-pixel crop")
    span = positions[-1] - positions[0] + 1
    before = positions[0]
    after = crop_size - span - before
    leading = grid.shape[:-2]
    flat = grid.reshape(-1, 1, size, size).float()
    placed = (
        F.interpolate(flat, size=(span, span), mode="bilinear", align_corners=True)
        if size > 1
        else flat.expand(-1, -1, span, span)
    )
    placed = F.pad(placed, (before, after, before, after), mode="replicate")
    return placed.reshape(*leading, crop_size, crop_size)


class MesoFCNImageProcessorKwargs(ImagesKwargs, total=False):
    """
    crop_scale (`float`, defaults to 1.1):
        Side of the face crop as a multiple of max(box width, box height). The paper's Sec. IV-A states 1.1 (and
        elsewhere "a side of 2·d_crop", i.e. 2.2); 1.1 is the default because only the tight crop explains the
        paper's remark that predicted masks miss the chin.
    crop_crf (`int`, *optional*):
        When set, each face cut from a frame is H.264-encoded as a one-frame video at this CRF after the resize
        (mesofcn.detection.compression.compress_frames): what a checkpoint trained on encoded crops (`mesofcn prepare
        gan-faces --encode-crops`) saw in training, so inference crops go through the identical pipeline.
    """

    crop_scale: float
    crop_crf: int | None


class MesoFCNImageProcessor(PilBackend):
    r"""
    Turns full frames (with a face box and five landmarks) or already cropped faces into MesoFCN inputs.

    With `boxes` and `landmarks`, each image is a frame with one face: the processor cuts the paper's crop (a
    square of side `crop_scale·max(w, h)` centred at the landmark mean, zeros outside the frame), resizes it to
    `size` (128x128) and, with `crop_crf`, encodes it as a one-frame H.264 video at that CRF. Without them each
    image is taken as a face crop already and only resized; this is what the stock `image-classification` /
    `image-segmentation` pipelines send. Then pixels are rescaled to [0, 1]
    and normalized with `image_mean`/`image_std`. `masks` go through the identical geometry with nearest
    neighbour resizing and come back as 0/1 `mask_labels` (a missing mask becomes all `-100`, i.e. ignored).
    """

    valid_kwargs = MesoFCNImageProcessorKwargs

    model_input_names = ["pixel_values"]
    size = {"height": DEFAULT_CROP_SIZE, "width": DEFAULT_CROP_SIZE}
    resample = PILImageResampling.BILINEAR
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    do_convert_rgb = True
    crop_scale = DEFAULT_CROP_SCALE
    crop_crf = None
    mask_ignore_index = -100

    def __init__(self, **kwargs: Unpack[MesoFCNImageProcessorKwargs]):
        super().__init__(**kwargs)
        if not self.crop_scale > 0:
            raise ValueError(f"crop_scale must be positive, got {self.crop_scale}")
        if self.crop_crf is not None:
            self.crop_crf = compression_crf(self.crop_crf)
        if self.size.height != self.size.width:
            raise ValueError(f"MesoFCN works on square crops; got size {dict(self.size)}")

    def preprocess(
        self,
        images,
        masks=None,
        boxes: Sequence[Sequence[float]] | None = None,
        landmarks: Sequence | None = None,
        **kwargs: Unpack[MesoFCNImageProcessorKwargs],
    ) -> BatchFeature:
        r"""
        images: one image or a list (PIL, numpy or torch; any channel layout, grey/RGBA/16-bit accepted).
        masks: optional manipulation masks, one per image (or None for an image without a mask).
        boxes: optional face box (x, y, width, height) per image, in the image's pixels.
        landmarks: optional five (x, y) landmarks per image; required together with `boxes`.
        """
        return super().preprocess(images, masks, boxes, landmarks, **kwargs)

    def _preprocess_image_like_inputs(
        self,
        images,
        masks,
        boxes,
        landmarks,
        do_convert_rgb: bool,
        input_data_format: ChannelDimension,
        return_tensors: str | TensorType | None,
        device: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        images, batched = as_image_list(images)
        masks = expand_per_image(masks, len(images), batched, "masks")
        boxes = expand_per_image(boxes, len(images), batched, "boxes")
        landmarks = expand_per_image(landmarks, len(images), batched, "landmarks")
        if any((box is None) != (points is None) for box, points in zip(boxes, landmarks, strict=True)):
            raise ValueError("pass boxes and landmarks together (the crop is centred at the landmark mean)")
        size = kwargs["size"].height
        crops, mask_crops = [], []
        for image, mask, box, points in zip(images, masks, boxes, landmarks, strict=True):
            crop, mask_crop = self._crop_one(image, mask, box, points, size, kwargs)
            crops.append(crop)
            mask_crops.append(mask_crop)
        data = {"pixel_values": [self._to_model_input(crop, **kwargs) for crop in crops]}
        if any(mask is not None for mask in masks):
            ignored = np.full((size, size), self.mask_ignore_index, dtype=np.int64)
            data["mask_labels"] = [m.astype(np.int64) if m is not None else ignored for m in mask_crops]
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _crop_one(self, image, mask, box, points, size: int, kwargs: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """Uint8 face crop (and 0/1 mask crop) of one input, by the paper's geometry or a plain resize."""
        rgb = to_rgb_uint8(image)
        resample = kwargs["resample"]
        if box is not None:
            crop, mask_crop, _ = crop_face(rgb, box, points, mask, kwargs["crop_scale"], size, resample)
            if kwargs.get("crop_crf") is not None:
                crop = compress_frames([crop], kwargs["crop_crf"])[0]
            return crop, mask_crop
        if not kwargs.get("do_resize", True) and rgb.shape[:2] != (size, size):
            raise ValueError(f"with do_resize=False images must already be {size}x{size}, got {rgb.shape[:2]}")
        crop = resize_square(rgb, size, resample)
        if mask is None:
            return crop, None
        binary = binarize_mask(mask)
        if binary.shape != rgb.shape[:2]:
            raise ValueError(f"mask of shape {binary.shape} does not match the image's {rgb.shape[:2]}")
        return crop, resize_square(binary, size, PILImageResampling.NEAREST)

    def _to_model_input(
        self,
        crop: np.ndarray,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        **kwargs,
    ) -> np.ndarray:
        """(H, W, 3) uint8 -> (3, H, W) float32, rescaled and normalized."""
        pixels = np.moveaxis(crop, -1, 0).astype(np.float32)
        if do_rescale:
            pixels = self.rescale(pixels, rescale_factor)
        if do_normalize:
            pixels = self.normalize(pixels, image_mean, image_std)
        return pixels.astype(np.float32)

    def post_process_semantic_segmentation(self, outputs, target_sizes: Sequence[tuple[int, int]] | None = None):
        """
        Per-pixel class ids (0 real, 1 fake) from MesoFCN outputs: the per-patch probabilities are placed on the
        crop at their receptive-field centres, resized to each `target_sizes` entry, and arg-maxed.
        """
        probabilities = self.segmentation_probabilities(outputs, target_sizes)
        return [probability.argmax(dim=0) for probability in probabilities]

    def segmentation_probabilities(self, outputs, target_sizes: Sequence[tuple[int, int]] | None = None):
        """Per-pixel class probabilities `(2, H, W)` per image, at crop size or at each target size."""
        logits = outputs["segmentation_logits"]
        crop_size = self.size.height
        probabilities = upsample_segmentation_map(logits.float().softmax(dim=1), crop_size)
        if target_sizes is None:
            return list(probabilities)
        if isinstance(target_sizes, torch.Tensor):
            target_sizes = target_sizes.tolist()
        if len(target_sizes) != len(probabilities):
            raise ValueError(f"got {len(target_sizes)} target sizes for a batch of {len(probabilities)}")
        return [
            F.interpolate(prob[None], size=tuple(target), mode="bilinear", align_corners=False)[0]
            for prob, target in zip(probabilities, target_sizes, strict=True)
        ]


def as_image_list(images) -> tuple[list, bool]:
    """One image or a list/tuple/4-D batch of images as a flat list, and whether a batch was given."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images were given")
        return list(images), True
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images), True
    return [images], False


def expand_per_image(values, count: int, batched: bool, name: str) -> list:
    """`None` -> [None] * count; a single image's entry -> [entry]; a batch's entries are counted."""
    if values is None:
        return [None] * count
    if not batched:
        return [values]
    values = list(values)
    if len(values) != count:
        raise ValueError(f"got {len(values)} {name} for {count} images")
    return values


__all__ = [
    "DEFAULT_CROP_SCALE",
    "DEFAULT_CROP_SIZE",
    "FaceCropWindow",
    "MesoFCNImageProcessor",
    "TABLE_I_CONFIG",
    "binarize_mask",
    "crop_face",
    "face_crop_window",
    "heatmap_on_frame",
    "to_rgb_uint8",
    "upsample_segmentation_map",
]
