"""
Export a MesoFCN checkpoint to one self-contained ONNX file, fp32 or int8.

fp32: the network with BatchNorm folded (`mesofcn.detection.modeling_mesofcn_onnx.export_onnx_bytes`). int8: that graph
statically quantized by ONNX Runtime (`quantize_static`, QDQ format, int8 per-channel weights in a 7-bit range, uint8
activations, the two heads in float32),
its activation ranges calibrated on real face crops made exactly as inference makes them (RetinaFace, then the
checkpoint's own image processor). Metadata (see `METADATA_KEYS`) makes the file usable on its own. The file is
written to a temporary name in the destination folder and renamed into place.

Heavy and optional imports (`onnx`, `onnxruntime.quantization`) happen inside the functions: importing mesofcn
never imports them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic_files import write_bytes_atomic
from ..detection.modeling_mesofcn_onnx import METADATA_KEYS, ONNX_INPUT_NAME, export_onnx_bytes

#: Face crops the int8 calibration uses unless told otherwise.
DEFAULT_CALIBRATION_CROPS = 256
#: Evenly spaced frames taken from each calibration video.
CALIBRATION_FRAMES_PER_VIDEO = 8
#: Faces taken from one calibration image or frame (the largest first, as the detector orders them).
CALIBRATION_FACES_PER_FRAME = 4
#: How activation ranges are found: the observed min/max ("minmax"), or a histogram-based choice.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_METHOD = "minmax"
#: Crops per calibration batch (and per batch of intermediate outputs the min/max calibrator reduces at once).
CALIBRATION_BATCH = 16
#: Which convolutions stay in float32 in an int8 export by default (see `quantize_int8`): the first (on raw pixels,
#: 3 input channels: the cheapest layer) and the two 1x1 heads (~0.1% of the compute). The heads halve the error of
#: the segmentation map on the trained development checkpoint (mean |ΔP| per patch 0.0029 -> 0.0015); the first
#: convolution cut the largest |ΔP(fake)| on 96 held-out real faces from 0.011-0.063 to 0.006-0.017 over five
#: checkpoints of a trained run (2026-12-08), at no measurable cost in speed.
DEFAULT_KEEP_FLOAT = ("first", "heads")
KEEP_FLOAT_CHOICES = ("first", "heads")


class ExportError(Exception):
    """A checkpoint, calibration source or output that cannot be used; the message is one line naming it."""


@dataclass
class CalibrationSet:
    """Normalized face crops `(N, 3, S, S)` float32 for int8 calibration, and where they came from."""

    pixel_values: np.ndarray
    sources: list[str]
    files_used: int
    files_without_faces: int = 0
    errors: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "crops": int(len(self.pixel_values)),
            "sources": self.sources,
            "files_used": self.files_used,
            "files_without_faces": self.files_without_faces,
            "unreadable_files": len(self.errors),
        }


def load_checkpoint(path: str | os.PathLike):
    """
    (model, image processor) of a `save_pretrained` folder of this package, in eval mode. ExportError (one line
    naming the path) for a missing path, a file, a folder without a MesoFCN config, pickle-only weights, or weights
    that do not load.
    """
    from ..detection.image_processing_mesofcn import MesoFCNImageProcessor
    from ..detection.modeling_mesofcn import MesoFCNForDeepfakeDetection, PickleFileError, refuse_pickle_weights

    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such checkpoint folder")
    try:
        refuse_pickle_weights(path)
    except PickleFileError as error:
        raise ExportError(str(error)) from None
    if not path.is_dir():
        raise ExportError(f"{path}: not a checkpoint folder")
    config_file = path / "config.json"
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except FileNotFoundError:
        raise ExportError(f"{path}: not a MesoFCN checkpoint (no config.json)") from None
    except (OSError, ValueError, AttributeError) as error:
        raise ExportError(f"{path}: unreadable config.json ({str(error).splitlines()[0]})") from None
    if model_type != "mesofcn":
        raise ExportError(f"{path}: not a MesoFCN checkpoint (model_type {model_type!r})")
    try:
        model = MesoFCNForDeepfakeDetection.from_pretrained(path).eval()
        processor = MesoFCNImageProcessor.from_pretrained(path)
    except PickleFileError as error:
        raise ExportError(str(error)) from None
    except Exception as error:  # transformers raises OSError, ValueError, KeyError... for broken checkpoints
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{path}: cannot load this checkpoint ({reason})") from None
    return model, processor


def export_metadata(model, processor, precision: str, calibration: dict | None = None) -> dict[str, str]:
    """The metadata_props of an exported file (all values are strings; configs as JSON)."""
    from ..detection.pipeline_mesofcn import model_name

    metadata = {
        METADATA_KEYS["config"]: model.config.to_json_string(use_diff=False),
        METADATA_KEYS["image_processor"]: processor.to_json_string(),
        METADATA_KEYS["precision"]: precision,
        METADATA_KEYS["version"]: __version__,
        METADATA_KEYS["source"]: model_name(model),
    }
    if calibration is not None:
        metadata[METADATA_KEYS["calibration"]] = json.dumps(calibration)
    return metadata


def with_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """`model_bytes` with `metadata` set in its metadata_props (existing keys replaced)."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    kept = [prop for prop in proto.metadata_props if prop.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "mesofcn"
    proto.producer_version = __version__
    return proto.SerializeToString()


def default_calibration_source() -> Path | None:
    """The real face photos of the shared research data (`faces/` of `$MESOFCN_SHARED_DATA`, else of the
    `shared/data` folder beside a source checkout), when present; None otherwise."""
    candidates = []
    if os.environ.get("MESOFCN_SHARED_DATA"):
        candidates.append(Path(os.environ["MESOFCN_SHARED_DATA"]) / "faces")
    candidates.append(Path(__file__).resolve().parents[4] / "shared" / "data" / "faces")
    return next((path for path in candidates if path.is_dir()), None)


def calibration_files(sources: Sequence[str | os.PathLike]) -> list[Path]:
    """
    Media files of the calibration sources, in a fixed order: a folder gives its images and videos (recursively,
    sorted by path); a CSV media list (`path,label[,group]`, as for `mesofcn evaluate --media`) gives its real rows.
    """
    from ..data.media_lists import MediaListError, read_media_list
    from ..detection.media_files import is_image_path, is_video_path

    files: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            found = sorted(
                path for path in source.rglob("*") if path.is_file() and (is_image_path(path) or is_video_path(path))
            )
            if not found:
                raise ExportError(f"--calibration {source}: no images or videos in this folder")
            files.extend(found)
        elif source.is_file() and source.suffix.lower() == ".csv":
            try:
                items = read_media_list(source)
            except MediaListError as error:
                raise ExportError(f"--calibration {error}") from None
            reals = [item.path for item in items if item.label == 0]
            if not reals:
                raise ExportError(f"--calibration {source}: no real rows (only real faces calibrate)")
            files.extend(reals)
        elif source.exists():
            raise ExportError(f"--calibration {source}: neither a folder nor a .csv media list")
        else:
            raise ExportError(f"--calibration {source}: no such file or folder")
    return files


def spread(files: list[Path]) -> list[Path]:
    """`files` reordered so that any prefix samples the whole list evenly (sources and people mixed): index 0, then
    n/2, then n/4 and 3n/4, and so on by halving strides, until every index is taken."""
    order, seen = [], set()
    step = max(len(files), 1)
    while len(order) < len(files):
        for index in range(0, len(files), step):
            if index not in seen:
                seen.add(index)
                order.append(index)
        step = max(step // 2, 1)
    return [files[index] for index in order]


def file_crops(path: Path, processor, detector) -> np.ndarray | None:
    """Normalized crops (K, 3, S, S) float32 of the faces in one image, or in evenly spaced frames of one video;
    None when no face is found. Unreadable files raise the loaders' MediaError."""
    from ..detection.media import load_image, media_kind
    from ..detection.video import FrameSampling, iter_video_frames

    if media_kind(path) == "video":
        sampling = FrameSampling(num_frames=CALIBRATION_FRAMES_PER_VIDEO)
        frames = (frame.image for frame in iter_video_frames(path, sampling))
    else:
        frames = iter([load_image(path)])
    crops = []
    for image in frames:
        faces = detector.detect(image)[:CALIBRATION_FACES_PER_FRAME]
        if faces:
            pixels = processor(
                [image] * len(faces),
                boxes=[face.box for face in faces],
                landmarks=[face.landmarks for face in faces],
                return_tensors="np",
            )["pixel_values"]
            crops.append(np.asarray(pixels, dtype=np.float32))
    return np.concatenate(crops) if crops else None


def collect_calibration_crops(
    sources: Sequence[str | os.PathLike],
    processor,
    max_crops: int = DEFAULT_CALIBRATION_CROPS,
    detector=None,
    progress: bool = False,
) -> CalibrationSet:
    """
    Up to `max_crops` face crops from the sources (see `calibration_files`), made as inference makes them: faces
    found by RetinaFace (or `detector`), cut and normalized by `processor` (the checkpoint's). Files are visited in
    an order that mixes the whole list (`spread`), so a small `max_crops` still covers every source folder.
    Unreadable files are skipped and counted.
    """
    from ..detection.face_detection import load_face_detector
    from ..detection.media_files import MediaError

    files = spread(calibration_files(sources))
    detector = detector or load_face_detector("retinaface")
    crops, total, used, empty, errors = [], 0, 0, 0, []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_crops, desc="calibration crops", unit="crop", leave=False)
    for path in files:
        if total >= max_crops:
            break
        try:
            pixels = file_crops(path, processor, detector)
        except (MediaError, OSError, ValueError) as error:
            errors.append(str(error).splitlines()[0])
            continue
        if pixels is None:
            empty += 1
            continue
        pixels = pixels[: max_crops - total]
        used += 1
        total += len(pixels)
        crops.append(pixels)
        if bar is not None:
            bar.update(len(pixels))
    if bar is not None:
        bar.close()
    if not crops:
        names = ", ".join(str(source) for source in sources)
        raise ExportError(f"--calibration {names}: no face found in {empty + len(errors)} files")
    return CalibrationSet(
        pixel_values=np.concatenate(crops),
        sources=[str(source) for source in sources],
        files_used=used,
        files_without_faces=empty,
        errors=errors,
    )


def keep_float_nodes(model_path: str | os.PathLike, keep_float: Sequence[str]) -> list[str]:
    """Names of the Conv nodes left in float32: "first" (the first convolution, on raw pixels) and/or "heads"
    (the two 1x1 head convolutions, whose outputs are the logits)."""
    import onnx

    unknown = sorted(set(keep_float) - set(KEEP_FLOAT_CHOICES))
    if unknown:
        raise ValueError(f"unknown keep_float entries {unknown}; use {list(KEEP_FLOAT_CHOICES)}")
    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    names = []
    if "first" in keep_float and convs:
        names.append(convs[0].name)
    if "heads" in keep_float:
        names += [node.name for node in convs if weights.get(node.input[1], ())[-2:] == (1, 1)]
    return names


class _CropReader:
    """onnxruntime.quantization's CalibrationDataReader over a (N, 3, S, S) array, in batches, with the `__len__` and
    `set_range` that quantize_static's "CalibStridedMinMax" option needs to calibrate one batch at a time."""

    def __init__(self, pixel_values: np.ndarray, batch: int = CALIBRATION_BATCH):
        self.batches = [pixel_values[start : start + batch] for start in range(0, len(pixel_values), batch)]
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.position, self.end = start_index, min(end_index, len(self.batches))

    def get_next(self) -> dict | None:
        if self.position >= self.end:
            return None
        self.position += 1
        return {ONNX_INPUT_NAME: np.ascontiguousarray(self.batches[self.position - 1], dtype=np.float32)}


def quantize_int8(
    fp32_bytes: bytes,
    calibration_pixels: np.ndarray,
    method: str = DEFAULT_CALIBRATION_METHOD,
    per_channel: bool = True,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    reduce_range: bool = True,
) -> bytes:
    """
    Static int8 quantization of an fp32 export (ONNX Runtime's `quantize_static`, QDQ format): int8 weights
    (per output channel with `per_channel`; 7-bit range with `reduce_range`), uint8 activations whose ranges
    `method` sets from the calibration crops; the Conv nodes named by `keep_float` (see `keep_float_nodes`) stay
    float32.

    `reduce_range` matters on CPUs without AVX512-VNNI (e.g. AVX2 only): there ONNX Runtime's uint8 x int8 kernels
    add pairs of products in saturating int16, and full-range weights overflow it. Measured on the trained
    development checkpoint (224 held-out real faces): P(fake) moved by up to 0.24 (mean 0.026, 8.5% of labels
    flipped) with full-range weights, int8 activations alike; with 7-bit weights by at most 0.004 (mean 0.001).
    Where VNNI exists the kernels do not saturate and 7-bit weights cost little.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ValueError(f"unknown calibration method {method!r}; use one of {list(methods)}")
    with tempfile.TemporaryDirectory(prefix="mesofcn-int8-") as work:
        fp32_path, prepared_path, int8_path = (Path(work) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32_path.write_bytes(fp32_bytes)
        # Shape inference and graph clean-up that quantize_static's documentation asks for before quantizing.
        quant_pre_process(str(fp32_path), str(prepared_path), skip_symbolic_shape=True)
        # One batch per calibration step: the calibrator keeps every intermediate tensor of what it has run (~30 MB
        # per crop), and "CalibStridedMinMax" makes it reduce them to ranges / histograms after each step (for every
        # method, despite the name). Its "CalibMaxIntermediateOutputs" would be the obvious choice, but in
        # onnxruntime 1.32 it drops the collected outputs without reducing them ("No data is collected.").
        extra_options = {"CalibStridedMinMax": 1}
        quantize_static(
            str(prepared_path),
            str(int8_path),
            _CropReader(calibration_pixels),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            reduce_range=reduce_range,
            calibrate_method=methods[method],
            nodes_to_exclude=keep_float_nodes(prepared_path, keep_float),
            extra_options=extra_options,
        )
        return int8_path.read_bytes()


def export_checkpoint(
    model,
    processor,
    out: str | os.PathLike,
    int8: bool = False,
    calibration: CalibrationSet | None = None,
    method: str = DEFAULT_CALIBRATION_METHOD,
    per_channel: bool = True,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
) -> dict[str, str]:
    """
    Write `model` (with `processor`'s settings in the metadata) to the ONNX file `out`, atomically: fp32, or with
    `int8` quantized on `calibration`'s crops. Returns the metadata written.
    """
    out = Path(out)
    model_bytes = export_onnx_bytes(model)
    record = None
    if int8:
        if calibration is None:
            raise ValueError("an int8 export needs calibration crops")
        model_bytes = quantize_int8(model_bytes, calibration.pixel_values, method, per_channel, keep_float)
        record = {
            **calibration.describe(),
            "method": method,
            "per_channel": per_channel,
            "weights": "int8, 7-bit range (reduce_range)",
            "activations": "uint8",
            "float32_convolutions": list(keep_float),
        }
    metadata = export_metadata(model, processor, "int8" if int8 else "fp32", record)
    write_bytes_atomic(out, with_metadata(model_bytes, metadata))
    return metadata


__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_CROPS",
    "DEFAULT_CALIBRATION_METHOD",
    "DEFAULT_KEEP_FLOAT",
    "KEEP_FLOAT_CHOICES",
    "CalibrationSet",
    "ExportError",
    "calibration_files",
    "collect_calibration_crops",
    "default_calibration_source",
    "export_checkpoint",
    "export_metadata",
    "keep_float_nodes",
    "load_checkpoint",
    "quantize_int8",
    "with_metadata",
]
