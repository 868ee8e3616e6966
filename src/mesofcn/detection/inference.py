"""Inference speed-ups that leave the maths unchanged: BatchNorm folding, channels-last, bfloat16."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .modeling_mesofcn import MesoFCNConvLayer, MesoFCNPreTrainedModel

#: Attribute set on models prepared for inference; `save_pretrained` refuses them (their weights are fused).
INFERENCE_ONLY_FLAG = "_mesofcn_inference_only"


def bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(checker()) if checker is not None else False


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'fp32'/'float32'/'bf16'/'bfloat16'/'fp16'/'float16' or a torch dtype -> torch dtype (default float32)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype or torch.float32
    names = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)}")
    return names[dtype]


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm of the convolution blocks into its convolution, in place."""
    for module in model.modules():
        if isinstance(module, MesoFCNConvLayer) and isinstance(module.normalization, nn.BatchNorm2d):
            module.convolution = fuse_conv_bn_eval(module.convolution.eval(), module.normalization.eval())
            module.normalization = nn.Identity()
    return model


def prepare_for_inference(
    model: MesoFCNPreTrainedModel,
    dtype: str | torch.dtype | None = None,
    fold: bool = True,
) -> MesoFCNPreTrainedModel:
    """
    A copy of `model` for fast inference: eval mode, BatchNorm folded into the convolutions (same outputs up to
    float rounding, fewer passes over memory), channels-last weights, and optionally bfloat16. The copy cannot
    be saved (its weights no longer match the checkpoint layout); keep the original for that.
    """
    prepared = copy.deepcopy(model).eval()
    if fold:
        fold_batch_norm(prepared)
    prepared = prepared.to(dtype=resolve_dtype(dtype), memory_format=torch.channels_last)
    setattr(prepared, INFERENCE_ONLY_FLAG, True)
    return prepared


__all__ = ["INFERENCE_ONLY_FLAG", "bf16_supported", "fold_batch_norm", "prepare_for_inference", "resolve_dtype"]
