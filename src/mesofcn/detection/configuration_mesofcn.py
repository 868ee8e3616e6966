"""MesoFCN model configuration."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

#: Class 0 is a real (pristine) face, class 1 a manipulated one, in every head, dataset and report.
MESOFCN_ID2LABEL = {0: "real", 1: "fake"}
#: What a checkpoint's "fake" means: a manipulated face (swap, reenactment: FF++, blends) or a generated one
#: (GAN / diffusion portraits). Reports name it, and `mesofcn detect` asks both bundled checkpoints on images.
DETECTS = ("manipulated", "generated")


@strict
class MesoFCNConfig(PreTrainedConfig):
    r"""
    Configuration of the compact fully convolutional deepfake detector of Tarasiou & Zafeiriou
    (arXiv 1911.13269, Table I). The defaults reproduce the paper's network: eight unpadded 3x3 convolutions
    (each followed by BatchNorm and ReLU) with widths 32, 32, 64, 64, 128, 128, 256, 256, a 3x3 stride-2
    max-pool after the second convolution, a 1x1 segmentation head on the 49x49 feature map and a global
    average pool + 1x1 classification head.

    Args:
        num_channels (`int`, defaults to 3): input channels (RGB).
        image_size (`int`, defaults to 128): side of the square face crop the network is trained on.
        hidden_sizes (`list[int]`): output channels of the convolutions, in order.
        kernel_size (`int`, defaults to 3): side of every convolution kernel (stride 1, no padding).
        pool_after (`int`, defaults to 2): the max-pool follows this (1-based) convolution.
        pool_kernel_size (`int`, defaults to 3): side of the max-pool window.
        pool_stride (`int`, defaults to 2): stride of the max-pool.
        batch_norm_eps (`float`, defaults to 1e-5): BatchNorm epsilon.
        batch_norm_momentum (`float`, defaults to 0.1): BatchNorm running-statistics momentum (PyTorch sense).
        seg_loss_weight (`float`, defaults to 0.3): λ of the joint loss `λ·L_seg + (1-λ)·L_cls`; 0 trains
            classification only, 1 segmentation only. The paper finds 0.2-0.7 always beats 0 (Table II).
        mask_ignore_index (`int`, defaults to -100): value of segmentation targets that carry no label
            (fakes without a mask); such positions add nothing to the loss.
        id2label (`dict[int, str]`): must be `{0: "real", 1: "fake"}`; fixed so no checkpoint can flip it.
        detects (`str`, defaults to "manipulated"): what class 1 means for this checkpoint, "manipulated" (a face
            swapped, reenacted or edited) or "generated" (a face made whole by a GAN or diffusion model; the
            paper's second experiment). Set by the trainer from the task (`gan-*` tasks: "generated").

    Example:
    ```python
    >>> from mesofcn import MesoFCNConfig, MesoFCNForDeepfakeDetection
    >>> config = MesoFCNConfig(seg_loss_weight=0.5)
    >>> model = MesoFCNForDeepfakeDetection(config)
    ```
    """

    model_type = "mesofcn"

    num_channels: int = 3
    image_size: int = 128
    hidden_sizes: list[int] | tuple[int, ...] = (32, 32, 64, 64, 128, 128, 256, 256)
    kernel_size: int = 3
    pool_after: int = 2
    pool_kernel_size: int = 3
    pool_stride: int = 2
    batch_norm_eps: float = 1e-5
    batch_norm_momentum: float = 0.1
    seg_loss_weight: float | int = 0.3
    mask_ignore_index: int = -100
    detects: str = "manipulated"

    def __post_init__(self, **kwargs):
        self.hidden_sizes = list(self.hidden_sizes)
        if self.id2label is None and kwargs.get("num_labels") in (None, 2):
            self.id2label = dict(MESOFCN_ID2LABEL)
            self.label2id = {name: idx for idx, name in MESOFCN_ID2LABEL.items()}
        # Checked here (not as strict-dataclass validators) so that users get a plain ValueError.
        self.check_architecture()
        self.check_loss()
        self.check_labels()
        super().__post_init__(**kwargs)

    def check_architecture(self) -> None:
        """Reject settings that cannot build the network."""
        for name in ("num_channels", "image_size", "kernel_size", "pool_kernel_size", "pool_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"MesoFCNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.hidden_sizes or any(width < 1 for width in self.hidden_sizes):
            raise ValueError(
                f"MesoFCNConfig.hidden_sizes must be a non-empty list of positive ints, got {self.hidden_sizes}"
            )
        if not 0 <= self.pool_after <= len(self.hidden_sizes):
            raise ValueError(
                f"MesoFCNConfig.pool_after must be between 0 (no pool) and {len(self.hidden_sizes)}, "
                f"got {self.pool_after}"
            )
        if self.feature_map_size(self.image_size) < 1:
            raise ValueError(f"MesoFCNConfig.image_size={self.image_size} is too small for this network")

    def check_loss(self) -> None:
        """λ must weigh the two losses as a convex combination."""
        if isinstance(self.seg_loss_weight, bool) or not 0.0 <= float(self.seg_loss_weight) <= 1.0:
            raise ValueError(f"MesoFCNConfig.seg_loss_weight (λ) must be between 0 and 1, got {self.seg_loss_weight}")

    def check_labels(self) -> None:
        """Class 0 is real and class 1 is fake, always; `detects` says which kind of fake."""
        if self.detects not in DETECTS:
            raise ValueError(f"MesoFCNConfig.detects must be one of {DETECTS}, got {self.detects!r}")
        if self.id2label is not None and {int(k): v for k, v in self.id2label.items()} != MESOFCN_ID2LABEL:
            raise ValueError(
                f"MesoFCNConfig.id2label must be {MESOFCN_ID2LABEL} (0 = real, 1 = fake), got {self.id2label}"
            )

    def feature_map_size(self, input_size: int) -> int:
        """Side of the final feature map (and segmentation map) for a square input of `input_size` pixels."""
        size = input_size
        for index in range(1, len(self.hidden_sizes) + 1):
            size -= self.kernel_size - 1
            if index == self.pool_after:
                size = (size - self.pool_kernel_size) // self.pool_stride + 1
        return size

    @property
    def receptive_field(self) -> int:
        """Side of the input window that one output position sees (31 for Table I: not the paper's 33)."""
        field, jump = 1, 1
        for index in range(1, len(self.hidden_sizes) + 1):
            field += (self.kernel_size - 1) * jump
            if index == self.pool_after:
                field += (self.pool_kernel_size - 1) * jump
                jump *= self.pool_stride
        return field

    @property
    def output_stride(self) -> int:
        """Input pixels between neighbouring output positions."""
        return self.pool_stride if self.pool_after else 1


def mask_label_positions(config: MesoFCNConfig, input_size: int | None = None) -> range:
    """
    The map grid, defined here once from the network's geometry: the crop pixels (rows, and the same columns) on
    which the positions of the segmentation map are centred, the centres of their receptive fields. Position i sits
    at pixel `start + step * i`: for Table I and a 128 px crop 15, 17, ..., 111 (49 values). Segmentation targets are
    the mask sampled there, and maps are drawn back onto the crop from there. `input_size`: the crop's side (the
    config's `image_size` when None).
    """
    size = config.image_size if input_size is None else input_size
    first = (config.receptive_field - 1) // 2
    count = config.feature_map_size(size)
    if count < 1:
        raise ValueError(f"input size {size} is too small for this network")
    return range(first, first + config.output_stride * count, config.output_stride)


__all__ = ["DETECTS", "MESOFCN_ID2LABEL", "MesoFCNConfig", "mask_label_positions"]
