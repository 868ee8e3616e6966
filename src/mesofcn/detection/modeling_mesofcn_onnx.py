"""
MesoFCN run by ONNX Runtime on the CPU: the network graph exported from PyTorch, and a model object that returns the
same `MesoFCNDetectionOutput` (logits, segmentation_logits as torch tensors) as `MesoFCNForDeepfakeDetection`, so
the deepfake-detection pipeline runs it unchanged.

An exported `.onnx` file is self-contained: its metadata carries the model config, the image processor config (crop
scale, size, normalization), the precision (`fp32` or `int8`) and the mesofcn version (see `METADATA_KEYS`).
Reading it needs onnxruntime only; exporting needs the `onnx` package too (`pip install "mesofcn[onnx]"`).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .configuration_mesofcn import MesoFCNConfig
from .image_processing_mesofcn import MesoFCNImageProcessor
from .inference import prepare_for_inference
from .modeling_mesofcn import MesoFCNDetectionOutput, MesoFCNForDeepfakeDetection

if TYPE_CHECKING:
    import onnxruntime as ort

# onnxruntime is imported where a session is made, not with this module: the CLI's parser (export's defaults in
# mesofcn.training.onnx_export) and the pipeline's torch backend (which asks whether its model is a MesoFCNOnnxModel)
# import this module without running ONNX.

#: Name of the graph's input, and of its two outputs (the two heads), in the exported file.
ONNX_INPUT_NAME = "pixel_values"
ONNX_OUTPUT_NAMES = ("logits", "segmentation_logits")
#: ONNX opset of the export (QDQ quantization with per-channel weights needs >= 13).
ONNX_OPSET = 17
#: metadata_props keys of an exported file: JSON of the model config, JSON of the image processor config,
#: "fp32" or "int8", the mesofcn version that wrote it, where the weights came from, and (int8) how it was calibrated.
METADATA_KEYS = {
    "config": "mesofcn.config",
    "image_processor": "mesofcn.image_processor",
    "precision": "mesofcn.precision",
    "version": "mesofcn.version",
    "source": "mesofcn.source",
    "calibration": "mesofcn.calibration",
}


class OnnxModelError(ValueError):
    """An ONNX file that is not a usable MesoFCN export; the message is one line (the caller names the file)."""


class _BothHeads(torch.nn.Module):
    """The detector as a plain function of `pixel_values` returning (logits, segmentation_logits): what ONNX sees."""

    def __init__(self, model: MesoFCNForDeepfakeDetection):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values, return_dict=True)
        return outputs.logits, outputs.segmentation_logits


def export_onnx_bytes(model: MesoFCNForDeepfakeDetection) -> bytes:
    """
    The fp32 ONNX graph of `model` (BatchNorm folded by `prepare_for_inference` first) as bytes: input
    `pixel_values` (batch, 3, S, S) with a dynamic batch axis, outputs `logits` and `segmentation_logits`.
    Needs the `onnx` package (torch's exporter writes through it).
    """
    prepared = prepare_for_inference(model, "fp32")  # a float32 copy; `model` is left as it is
    size = int(model.config.image_size)
    example = torch.zeros(2, model.config.num_channels, size, size)
    batch_axis = {0: "batch"}
    buffer = io.BytesIO()
    # The TorchScript exporter (dynamo=False), not torch 2.9+'s default dynamo exporter: this network is a fixed
    # chain of convolutions without data-dependent control flow, so tracing records it exactly (tests check parity
    # to 1e-4 on both heads). It takes ~2 s instead of ~10 s (`--backend onnx` exports at start-up), prints nothing,
    # needs no onnxscript, and accepts the same call on every torch >= 2.4 this package supports. It is deprecated
    # in torch 2.13 (hence the silenced warning) but not removed; the tests fail first if it ever goes.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # DeprecationWarning, and TracerWarnings of the shape checks
        torch.onnx.export(
            _BothHeads(prepared).eval(),
            (example,),
            buffer,
            dynamo=False,
            input_names=[ONNX_INPUT_NAME],
            output_names=list(ONNX_OUTPUT_NAMES),
            dynamic_axes={name: batch_axis for name in (ONNX_INPUT_NAME, *ONNX_OUTPUT_NAMES)},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def session_options(num_threads: int | None = None) -> ort.SessionOptions:
    """CPU session settings: `num_threads` intra-op threads (default: torch's thread count, so `--threads`,
    `OMP_NUM_THREADS` and `torch.set_num_threads` apply to both backends alike), one inter-op thread."""
    import onnxruntime as ort  # lazy: see the note at the module's imports

    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def cpu_session(model: str | bytes, num_threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU provider for `model` (a file path or the bytes of a model)."""
    import onnxruntime as ort  # lazy: see the note at the module's imports

    return ort.InferenceSession(model, sess_options=session_options(num_threads), providers=["CPUExecutionProvider"])


def check_onnx_device(device: str | torch.device | None) -> None:
    """ValueError unless `device` is the CPU (or unset): the ONNX backend runs on ONNX Runtime's CPU provider."""
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"the onnx backend runs on the CPU only, not on {device}; use device 'cpu'")


class MesoFCNOnnxModel:
    """
    A MesoFCN network run by an `onnxruntime.InferenceSession` on the CPU, called like the torch model:
    `model(pixel_values)` returns a `MesoFCNDetectionOutput` with `logits` (N, 2) and `segmentation_logits`
    (N, 2, 49, 49) as float32 torch tensors. `config` and `image_processor` come from the file's metadata (or from
    the torch model it was exported from). Load with `from_file` (an exported `.onnx` file) or `from_model`
    (a torch model, exported to fp32 in memory).
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(
        self,
        session: ort.InferenceSession,
        config: MesoFCNConfig,
        image_processor: MesoFCNImageProcessor | None = None,
        precision: str = "fp32",
        name_or_path: str = "",
    ):
        self.session = session
        self.config = config
        self.image_processor = image_processor
        self.precision = precision
        self.name_or_path = name_or_path

    @classmethod
    def from_model(
        cls,
        model: MesoFCNForDeepfakeDetection,
        image_processor: MesoFCNImageProcessor | None = None,
        num_threads: int | None = None,
    ) -> MesoFCNOnnxModel:
        """Export `model` to fp32 ONNX in memory and open it (a couple of seconds for the Table I network)."""
        session = cpu_session(export_onnx_bytes(model), num_threads)
        name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
        return cls(session, model.config, image_processor, "fp32", str(name))

    @classmethod
    def from_file(cls, path: str | os.PathLike, num_threads: int | None = None) -> MesoFCNOnnxModel:
        """
        Open an exported file: config, image processor and precision from its metadata. OnnxModelError (one line,
        the caller names the file) when it is not an ONNX file, lacks the metadata, or has other inputs/outputs.
        """
        path = Path(path)
        if not path.is_file():
            raise OnnxModelError("no such file" if not path.exists() else "not a file")
        try:
            session = cpu_session(str(path), num_threads)
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise OnnxModelError(f"not a readable ONNX model ({reason})") from None
        metadata = session.get_modelmeta().custom_metadata_map
        missing = [METADATA_KEYS[key] for key in ("config", "image_processor") if METADATA_KEYS[key] not in metadata]
        if missing:
            raise OnnxModelError(f"not a mesofcn export (metadata {', '.join(missing)} missing)")
        inputs = [item.name for item in session.get_inputs()]
        outputs = [item.name for item in session.get_outputs()]
        if inputs != [ONNX_INPUT_NAME] or not set(ONNX_OUTPUT_NAMES) <= set(outputs):
            raise OnnxModelError(f"unexpected graph inputs {inputs} / outputs {outputs}")
        try:
            config = MesoFCNConfig.from_dict(json.loads(metadata[METADATA_KEYS["config"]]))
            processor = MesoFCNImageProcessor.from_dict(json.loads(metadata[METADATA_KEYS["image_processor"]]))
        except (ValueError, TypeError) as error:
            raise OnnxModelError(f"unreadable mesofcn metadata ({str(error).splitlines()[0]})") from None
        config._name_or_path = str(path)  # this file, not the checkpoint it was exported from (see mesofcn.source)
        precision = metadata.get(METADATA_KEYS["precision"], "fp32")
        return cls(session, config, processor, precision, str(path))

    @property
    def metadata(self) -> dict[str, str]:
        """The file's metadata_props (empty for a model exported in memory)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of inputs and outputs (an int8 model quantizes inside the graph; it still takes float32)."""
        return torch.float32

    def to(self, *args, **kwargs) -> MesoFCNOnnxModel:
        """Accepts only the CPU and float32 (as `Pipeline` calls it); anything else is a ValueError."""
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.dtype):
                if value != torch.float32:
                    raise ValueError(f"an ONNX model takes float32 inputs, not {value}")
            elif value is not None:
                check_onnx_device(value)
        return self

    def eval(self) -> MesoFCNOnnxModel:
        return self

    def can_generate(self) -> bool:
        return False

    def __call__(self, pixel_values: torch.Tensor | np.ndarray, **kwargs) -> MesoFCNDetectionOutput:
        """Both heads for a (N, 3, S, S) batch; extra keyword arguments (as the pipeline may pass) are ignored."""
        if isinstance(pixel_values, torch.Tensor):
            pixel_values = pixel_values.detach().to("cpu", torch.float32).contiguous().numpy()
        pixels = np.ascontiguousarray(pixel_values, dtype=np.float32)
        if pixels.ndim != 4 or pixels.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values must have shape (batch, {self.config.num_channels}, height, width), got {pixels.shape}"
            )
        logits, segmentation_logits = self.session.run(list(ONNX_OUTPUT_NAMES), {ONNX_INPUT_NAME: pixels})
        return MesoFCNDetectionOutput(
            logits=torch.from_numpy(logits), segmentation_logits=torch.from_numpy(segmentation_logits)
        )

    forward = __call__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(precision={self.precision!r}, name_or_path={self.name_or_path!r})"


__all__ = [
    "METADATA_KEYS",
    "ONNX_INPUT_NAME",
    "ONNX_OPSET",
    "ONNX_OUTPUT_NAMES",
    "MesoFCNOnnxModel",
    "OnnxModelError",
    "check_onnx_device",
    "cpu_session",
    "export_onnx_bytes",
    "session_options",
]
