"""PyTorch MesoFCN: the compact fully convolutional deepfake detector of Tarasiou & Zafeiriou (arXiv 1911.13269)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndNoAttention
from transformers.utils import ModelOutput

try:  # relative import when loaded as remote code from a checkpoint folder
    from .configuration_mesofcn import MesoFCNConfig, mask_label_positions
except ImportError:  # pragma: no cover - plain module import
    from configuration_mesofcn import MesoFCNConfig, mask_label_positions


#: Auto classes besides `AutoModel` that a checkpoint's `auto_map` sends to the detector for remote-code users.
EXTRA_REMOTE_AUTO_CLASSES = ("AutoModelForImageClassification", "AutoModelForSemanticSegmentation")

#: Suffixes of pickle files (`pytorch_model.bin`, `*.pt`, Accelerate's `*.pkl` states...): never loaded, since
#: unpickling a file can run any code it carries.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: Weight files of a checkpoint folder that are read instead (safetensors, plain or sharded).
SAFE_WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json")


class PickleFileError(Exception):
    """
    A pickle file was refused; the message is one line naming it. Deliberately not an OSError or ValueError:
    transformers' `pipeline()` swallows those while it tries other model classes, and this must reach the user.
    """


def pickle_files(folder: str | os.PathLike) -> list[Path]:
    """The pickle files (by suffix, see PICKLE_SUFFIXES) directly inside `folder`, sorted ([] when none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in PICKLE_SUFFIXES and path.is_file())


def refuse_pickle_weights(path: str | os.PathLike) -> None:
    """
    PickleFileError naming the file when `path` is a pickle file, or a folder whose only weights are pickles
    (no model.safetensors). Anything else (a safetensors checkpoint, a Hub id, a missing path) passes.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        found = [path]
    elif path.is_dir() and not any((path / name).is_file() for name in SAFE_WEIGHTS_FILES):
        found = pickle_files(path)
    else:
        return
    if found:
        raise PickleFileError(
            f"{found[0]}: pickle weights are refused (loading them can run code); use a model.safetensors checkpoint"
        )


@dataclass
class MesoFCNDetectionOutput(ModelOutput):
    """
    Output of [`MesoFCNForDeepfakeDetection`].

    Args:
        loss: the joint loss `λ·seg_loss + (1-λ)·cls_loss` when targets are given.
        logits: `(batch, 2)` image logits, class 0 real, class 1 fake.
        segmentation_logits: `(batch, 2, H', W')` per-patch logits (49x49 for a 128x128 face); position (i, j)
            sees the 31x31 input window with top-left corner (2i, 2j).
        cls_loss: image cross-entropy.
        seg_loss: cross-entropy averaged over the labelled positions of the segmentation grid.
        hidden_states: outputs of the nine layers of Table I (eight convolution blocks and the max-pool).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    segmentation_logits: torch.FloatTensor | None = None
    cls_loss: torch.FloatTensor | None = None
    seg_loss: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def sample_mask_labels(masks, config: MesoFCNConfig | None = None):
    """
    Sample full-resolution masks `(..., S, S)` (torch tensor or numpy array) at the receptive-field centres,
    giving the `(..., S', S')` segmentation targets of Fig. 3 (128 -> 49x49). Values are kept as they are, so
    an ignore value in the mask stays ignored. Dataset builders and the model's loss both use this function.
    """
    config = config if config is not None else MesoFCNConfig()
    height, width = masks.shape[-2:]
    if height != width:
        raise ValueError(f"masks must be square, got {height}x{width}")
    positions = mask_label_positions(config, height)
    section = slice(positions.start, positions.stop, positions.step)
    return masks[..., section, section]


class MesoFCNConvLayer(nn.Module):
    """Unpadded convolution, stride 1, followed by BatchNorm and ReLU (no bias: BatchNorm supplies it)."""

    def __init__(self, config: MesoFCNConfig, in_channels: int, out_channels: int):
        super().__init__()
        self.convolution = nn.Conv2d(in_channels, out_channels, kernel_size=config.kernel_size, bias=False)
        self.normalization = nn.BatchNorm2d(
            out_channels, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum
        )
        self.activation = nn.ReLU()

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        return self.activation(self.normalization(self.convolution(hidden_state)))


def build_feature_layers(config: MesoFCNConfig) -> nn.ModuleList:
    """The layers of Table I in order: convolution blocks with the max-pool after `config.pool_after`."""
    layers = []
    in_channels = config.num_channels
    for index, width in enumerate(config.hidden_sizes, start=1):
        layers.append(MesoFCNConvLayer(config, in_channels, width))
        in_channels = width
        if index == config.pool_after:
            layers.append(nn.MaxPool2d(kernel_size=config.pool_kernel_size, stride=config.pool_stride))
    return nn.ModuleList(layers)


class MesoFCNPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading glue shared by the MesoFCN models."""

    config: MesoFCNConfig
    config_class = MesoFCNConfig
    base_model_prefix = "mesofcn"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["MesoFCNConvLayer"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """As transformers' `from_pretrained`, but from safetensors only: pickle weights raise PickleFileError."""
        if kwargs.get("use_safetensors") is False:
            raise PickleFileError(
                f"{pretrained_model_name_or_path}: use_safetensors=False is refused (pickle weights)"
            )
        if pretrained_model_name_or_path is not None:
            refuse_pickle_weights(Path(pretrained_model_name_or_path, kwargs.get("subfolder") or ""))
        kwargs["use_safetensors"] = True
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1):
            # The two heads (the only 1x1 convolutions): small weights so training starts near P = 0.5 and a
            # loss of ln 2, instead of the large logits that fan-out scaling gives a 2-channel output.
            init.normal_(module.weight, std=0.01)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            if getattr(module, "num_batches_tracked", None) is not None:
                init.zeros_(module.num_batches_tracked)


class MesoFCNModel(MesoFCNPreTrainedModel):
    """The feature extractor of Table I (layers 1-9): `last_hidden_state` is the 49x49x256 map."""

    def __init__(self, config: MesoFCNConfig):
        super().__init__(config)
        self.layers = build_feature_layers(config)
        self.pooler = nn.AdaptiveAvgPool2d((1, 1))
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPoolingAndNoAttention | tuple:
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        check_pixel_values(pixel_values, self.config)
        hidden_state = pixel_values.contiguous(memory_format=torch.channels_last)
        hidden_states = []
        for layer in self.layers:
            hidden_state = layer(hidden_state)
            if output_hidden_states:
                hidden_states.append(hidden_state)
        pooled = self.pooler(hidden_state)
        all_hidden = tuple(hidden_states) if output_hidden_states else None
        if not return_dict:
            return tuple(value for value in (hidden_state, pooled, all_hidden) if value is not None)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=hidden_state, pooler_output=pooled, hidden_states=all_hidden
        )


def check_pixel_values(pixel_values: torch.Tensor, config: MesoFCNConfig) -> None:
    """Fail with a clear message before the convolutions would fail with an obscure one."""
    if pixel_values.dim() != 4 or pixel_values.shape[1] != config.num_channels:
        raise ValueError(
            f"pixel_values must have shape (batch, {config.num_channels}, height, width), "
            f"got {tuple(pixel_values.shape)}"
        )
    smallest = min(pixel_values.shape[-2:])
    if config.feature_map_size(smallest) < 1:
        raise ValueError(f"pixel_values of {tuple(pixel_values.shape[-2:])} pixels are too small for MesoFCN")


class MesoFCNForDeepfakeDetection(MesoFCNPreTrainedModel):
    """
    MesoFCN with both heads of the paper: a 1x1 convolution on the 49x49 feature map (segmentation: which
    patches are manipulated) and a 1x1 convolution on its global average (classification: is the face fake),
    trained jointly with `λ·L_seg + (1-λ)·L_cls`. Class 0 is real, class 1 fake. Serves `AutoModel`,
    `AutoModelForImageClassification` (via `logits`) and `AutoModelForSemanticSegmentation` (via
    `segmentation_logits`).
    """

    def __init__(self, config: MesoFCNConfig):
        super().__init__(config)
        self.mesofcn = MesoFCNModel(config)
        width = config.hidden_sizes[-1]
        self.segmentation_head = nn.Conv2d(width, config.num_labels, kernel_size=1)
        self.classifier = nn.Conv2d(width, config.num_labels, kernel_size=1)
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual; when the code travels with the checkpoint, map every detector auto class to it."""
        if getattr(self, "_mesofcn_inference_only", False):
            raise ValueError("this model was prepared for inference (BatchNorm folded); save the original model")
        if self._auto_class is not None:
            class_path = f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}"
            extra = dict.fromkeys(EXTRA_REMOTE_AUTO_CLASSES, class_path)
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **extra}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.LongTensor | None = None,
        mask_labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MesoFCNDetectionOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch,)`, *optional*): 0 for real faces, 1 for fakes.
        mask_labels (`torch.LongTensor`, *optional*): manipulation masks, either full `(batch, H, W)` masks of
            the input's size (sampled at the receptive-field centres by [`sample_mask_labels`]) or the sampled
            `(batch, H', W')` grid. Values 0 (untouched), 1 (manipulated) or `config.mask_ignore_index` (no label).
            When omitted but `labels` are given, real faces get an all-zero target and fakes are ignored.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        features = self.mesofcn(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        segmentation_logits = self.segmentation_head(features.last_hidden_state)
        logits = self.classifier(features.pooler_output).flatten(1)

        seg_targets = self._segmentation_targets(labels, mask_labels, segmentation_logits)
        cls_loss = F.cross_entropy(logits, labels) if labels is not None else None
        seg_loss = self._segmentation_loss(segmentation_logits, seg_targets) if seg_targets is not None else None
        loss = self._joint_loss(cls_loss, seg_loss)

        output = MesoFCNDetectionOutput(
            loss=loss,
            logits=logits,
            segmentation_logits=segmentation_logits,
            cls_loss=cls_loss,
            seg_loss=seg_loss,
            hidden_states=features.hidden_states,
        )
        return output if return_dict else output.to_tuple()

    def _segmentation_targets(
        self,
        labels: torch.Tensor | None,
        mask_labels: torch.Tensor | None,
        segmentation_logits: torch.Tensor,
    ) -> torch.Tensor | None:
        """Per-position targets on the output grid, from masks or, failing those, from the image labels."""
        grid = segmentation_logits.shape[-2:]
        ignore = self.config.mask_ignore_index
        if mask_labels is None:
            if labels is None:
                return None
            fill = torch.where(labels == 0, 0, ignore).to(torch.long)
            return fill[:, None, None].expand(-1, *grid).contiguous()
        mask_labels = mask_labels.to(device=segmentation_logits.device, dtype=torch.long)
        if mask_labels.dim() == 4 and mask_labels.shape[1] == 1:
            mask_labels = mask_labels[:, 0]
        if mask_labels.dim() != 3 or mask_labels.shape[0] != segmentation_logits.shape[0]:
            raise ValueError(f"mask_labels must have shape (batch, height, width), got {tuple(mask_labels.shape)}")
        if mask_labels.shape[-2:] != grid:
            if mask_labels.shape[-1] == mask_labels.shape[-2] and mask_labels.shape[-1] >= grid[-1]:
                mask_labels = sample_mask_labels(mask_labels, self.config)
            if mask_labels.shape[-2:] != grid:
                raise ValueError(
                    f"mask_labels of size {tuple(mask_labels.shape[-2:])} match neither the input nor the "
                    f"{tuple(grid)} segmentation grid"
                )
        valid = (mask_labels == 0) | (mask_labels == 1) | (mask_labels == ignore)
        if not bool(valid.all()):
            raise ValueError(f"mask_labels values must be 0, 1 or {ignore} (ignored); binarise masks first")
        return mask_labels

    def _segmentation_loss(self, segmentation_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy averaged over the labelled positions; zero (still differentiable) when none are. Computed
        without reading values back to the host, so a training step on a GPU does not wait here."""
        ignore = self.config.mask_ignore_index
        per_position = F.cross_entropy(segmentation_logits.float(), targets, ignore_index=ignore, reduction="none")
        labelled = (targets != ignore).sum()
        return per_position.sum() / labelled.clamp(min=1)

    def _joint_loss(self, cls_loss: torch.Tensor | None, seg_loss: torch.Tensor | None) -> torch.Tensor | None:
        """`λ·L_seg + (1-λ)·L_cls`; a term whose weight is zero is left out so its head gets no gradient."""
        if cls_loss is None:
            return seg_loss
        if seg_loss is None:
            return cls_loss
        weight = float(self.config.seg_loss_weight)
        terms = [(weight, seg_loss), (1.0 - weight, cls_loss)]
        return sum(w * term for w, term in terms if w > 0)


__all__ = [
    "MesoFCNDetectionOutput",
    "MesoFCNForDeepfakeDetection",
    "MesoFCNModel",
    "MesoFCNPreTrainedModel",
    "PICKLE_SUFFIXES",
    "PickleFileError",
    "pickle_files",
    "refuse_pickle_weights",
    "sample_mask_labels",
]
