"""`pipeline("deepfake-detection")`: faces found, cropped, scored and localized in images and videos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers.pipelines.base import ChunkPipeline

from .configuration_mesofcn import mask_label_positions
from .face_detection import DetectedFace, FaceDetector, load_face_detector
from .image_processing_mesofcn import face_crop_window, heatmap_on_frame, to_rgb_uint8
from .inference import prepare_for_inference
from .media import load_image, media_kind
from .media_files import MediaError, MediaLimits
from .memory import TRIM_EVERY_FRAMES, release_freed_memory
from .opinions import NOT_INSTALLED, NOT_RUN_ON_VIDEOS, combine_opinions
from .prefetch import prefetch as run_ahead
from .tracking import (
    DEFAULT_MIN_FACE_FRACTION,
    DEFAULT_MIN_TRACK_SHARE,
    FaceTracker,
    check_verdict_rule,
    most_suspicious_track,
    summarize_track,
)
from .video import FrameSampling, iter_video_frames, probe_video
from .video_faces import DEFAULT_DETECT_EVERY, DEFAULT_DETECT_SIZE, VideoFaceFinder, check_detection_settings

#: Options transformers' Pipeline itself may hand to `_sanitize_parameters`; they need nothing from us.
PIPELINE_PASSTHROUGH_KWARGS = frozenset({"timeout"})

#: Analysed frames decoded, searched and cropped ahead of the network, in a background thread.
DEFAULT_PREFETCH = 4

#: P(fake) at or above which a face, a track or a video is called fake.
DEFAULT_THRESHOLD = 0.5


class DeepfakeDetectionPipeline(ChunkPipeline):
    """
    Is this image or video manipulated, and where? For each input (a path to an image or a video, a PIL image or
    an RGB array, or a list of them) the pipeline finds the faces (RetinaFace by default), makes the paper's
    landmark-centred crop of each, scores it with MesoFCN and returns one report:

    - `label` (`"fake"`, `"real"` or `"no_face"`) and `score` (P(fake) of the most suspicious eligible track),
    - `tracks`: faces linked across sampled frames, each with its mean / max P(fake), its median face size, its
      share of the analysed frames, whether it was `eligible` to decide, and its frames,
    - `verdict_rule`: the settings that made a track eligible, and whether the fallback decided,
    - `faces`: every face with `box` (x, y, w, h), `landmarks` (5 points), `score` (P(fake)), `label`,
      `patch_map` (49x49 P(fake) per 31x31 patch) and, for images, `heatmap` (P(fake) at frame resolution).

    Videos are streamed (a few decoded frames in memory: the `prefetch` queue below) and sampled every `every`-th
    frame (default 5, the paper's protocol) or at `num_frames` evenly spaced frames (DeepfakeBench uses 32). In a
    video the face detector runs at least every `detect_every` video frames (default 5), on a copy shrunk to
    `detect_size` pixels (longer side; default None, full resolution) if asked, and faces are followed by optical
    flow in between (see `mesofcn.detection.video_faces`); `detect_every=1` detects every analysed frame.
    Decoding, detection and cropping run in a background thread, up to `prefetch` frames (default 4; 0: in the
    caller's thread) ahead of the network.
    Faces from several frames and inputs share batches of `batch_size`. Per-face 49x49 maps (`patch_map`) are
    kept for images, and for videos only with `return_patch_maps=True` or `return_heatmaps=True` (an overlay
    needs them), so that memory does not grow with a video's length.

    Files over `max_pixels` per image or video frame (default
    100,000,000) or `max_duration` seconds of video (default 4 hours; 0 lifts a limit) are refused with a
    `MediaError`, from the header before decoding where it tells (see `mesofcn.detection.media_files.MediaLimits`); the
    report's `limits` records them.

    Bystanders do not decide: only tracks seen in at least `min_track_share` (default 0.35) of the analysed
    frames whose median face is at least `min_face_fraction` (default 0.5) of the largest such track's may
    decide the verdict (see `mesofcn.detection.tracking.most_suspicious_track`, which also describes the fallback when
    no track qualifies). In an image every face covers its one frame, so only the size floor applies.

    Two opinions: a bundled checkpoint (see mesofcn.detection.defaults; `opinions=None` detects it, `True`/`False`
    force it) brings the other bundled one when installed, so that an image is asked both "is this face manipulated?"
    and "is it generated?", sharing the face detector. The report then carries `opinions` and `reason`, and `label` is
    fake if either says so (see mesofcn.detection.opinions). Videos get the manipulated-face opinion only unless called
    with `generated_on_videos=True`.

    Example:
    ```python
    >>> import mesofcn
    >>> from transformers import pipeline
    >>> detect = pipeline("deepfake-detection", model="path/to/checkpoint")
    >>> report = detect("video.mp4", every=5)
    >>> report["label"], report["score"]
    ```
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False
    # Never look for a video processor: the lookup reads the `AutoImageProcessor` entry of the checkpoint's
    # `auto_map`, guesses a remote `...VideoProcessor` class from it and, with no such class installed, asks
    # "Do you wish to run the custom code?" although the installed package serves every other component.
    _load_video_processor = False

    def __init__(
        self,
        *args,
        face_detector: FaceDetector | str | None = None,
        min_face_score: float = 0.5,
        min_face_size: int = 20,
        backend: str | None = None,
        num_threads: int | None = None,
        opinions: bool | None = None,
        **kwargs,
    ):
        if backend not in (None, "torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        super().__init__(*args, **kwargs)
        if face_detector is None or isinstance(face_detector, str):
            face_detector = load_face_detector(
                face_detector or "retinaface", min_score=min_face_score, min_face_size=min_face_size
            )
        self.face_detector = face_detector
        self.inference_model = self._inference_model(backend, num_threads)
        #: What this checkpoint's "fake" means: "manipulated" or "generated" (its config's `detects`).
        self.detects = getattr(getattr(self.model, "config", None), "detects", "manipulated")
        if opinions is None:
            from .defaults import is_bundled_model

            opinions = is_bundled_model(model_name(self.model))
        self.opinions = bool(opinions)
        #: The other bundled checkpoint's pipeline, when asking both (None: not asked, or not installed).
        self.second_opinion = self._second_opinion(backend, num_threads) if self.opinions else None

    def _second_opinion(self, backend: str | None, num_threads: int | None) -> DeepfakeDetectionPipeline | None:
        """A pipeline of the other bundled checkpoint on the same device, dtype, batch size and face detector."""
        from .defaults import installed_bundled_models
        from .image_processing_mesofcn import MesoFCNImageProcessor
        from .modeling_mesofcn import MesoFCNForDeepfakeDetection

        other = next((path for kind, path in installed_bundled_models().items() if kind != self.detects), None)
        if other is None:
            return None
        model = MesoFCNForDeepfakeDetection.from_pretrained(other, dtype=self.model.dtype).to(self.device)
        return type(self)(
            model=model,
            image_processor=MesoFCNImageProcessor.from_pretrained(other),
            task="deepfake-detection",
            device=self.device,
            batch_size=self._batch_size,
            face_detector=self.face_detector,
            backend=backend,
            num_threads=num_threads,
            opinions=False,
        )

    def __call__(self, inputs, *args, generated_on_videos: bool = False, **kwargs):
        """Reports on `inputs` (see the class docstring); with two opinions, each input is asked both questions
        (videos: the generated-face one only with `generated_on_videos=True`)."""
        if not self.opinions:
            return super().__call__(inputs, *args, **kwargs)
        single = not isinstance(inputs, (list, tuple))
        reports = [
            self._both_opinions(item, generated_on_videos, args, kwargs) for item in ([inputs] if single else inputs)
        ]
        return reports[0] if single else reports

    def _both_opinions(self, item, generated_on_videos: bool, args: tuple, kwargs: dict) -> dict:
        video = isinstance(item, (str, os.PathLike)) and media_kind(item) == "video"
        other = "generated" if self.detects == "manipulated" else "manipulated"
        asked = {self.detects: self, other: self.second_opinion}
        skipped_on_video = video and not generated_on_videos
        if skipped_on_video:
            if asked["manipulated"] is None:
                raise MediaError(
                    item,
                    "no manipulated-face model is installed, and the generated-face model checks images (pass a "
                    "model, or ask it on videos with generated_on_videos=True / --generated-on-videos)",
                )
            asked["generated"] = None
        # ChunkPipeline's own call: each pipeline answers its one question.
        reports = {
            kind: ChunkPipeline.__call__(pipe, item, *args, **kwargs)
            for kind, pipe in asked.items()
            if pipe is not None
        }
        # The manipulated-face report leads when there is one (its tracks and maps); a video without the generated
        # opinion only reaches here with the manipulated model (see above).
        primary = "manipulated" if "manipulated" in reports else "generated"
        second = "generated" if primary == "manipulated" else "manipulated"
        missing = NOT_RUN_ON_VIDEOS if skipped_on_video else NOT_INSTALLED
        return combine_opinions(reports[primary], primary, reports.get(second), missing)

    def _inference_model(self, backend: str | None, num_threads: int | None):
        """What `_forward` calls: the torch model prepared for inference (BatchNorm folded), or, for the onnx backend,
        an ONNX Runtime session of it (see mesofcn.detection.modeling_mesofcn_onnx; the model may be one already)."""
        from .modeling_mesofcn_onnx import MesoFCNOnnxModel, check_onnx_device

        if isinstance(self.model, MesoFCNOnnxModel):
            if backend == "torch":
                raise ValueError("an ONNX model runs with backend='onnx'")
            return self.model
        if backend != "onnx":
            return prepare_for_inference(self.model, dtype=self.model.dtype)
        check_onnx_device(self.device)
        if self.model.dtype != torch.float32:
            raise ValueError(f"the onnx backend runs float32 models, not {self.model.dtype}")
        return MesoFCNOnnxModel.from_model(self.model, self.image_processor, num_threads=num_threads)

    @property
    def backend(self) -> str:
        """ "onnx" when ONNX Runtime runs the network, else "torch"."""
        from .modeling_mesofcn_onnx import MesoFCNOnnxModel

        return "onnx" if isinstance(self.inference_model, MesoFCNOnnxModel) else "torch"

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, num_threads: int | None = None, **kwargs) -> DeepfakeDetectionPipeline:
        """
        The pipeline on an `.onnx` file written by `mesofcn export onnx` (fp32 or int8): model config and image
        processor come from the file's metadata, ONNX Runtime runs it on the CPU. `kwargs` are the pipeline's
        (`batch_size`, `face_detector`...). Raises mesofcn.detection.modeling_mesofcn_onnx.OnnxModelError for a file
        that is not a mesofcn export.
        """
        from .modeling_mesofcn_onnx import MesoFCNOnnxModel

        model = MesoFCNOnnxModel.from_file(path, num_threads=num_threads)
        kwargs.setdefault("device", "cpu")
        return cls(model=model, image_processor=model.image_processor, task="deepfake-detection", **kwargs)

    def _sanitize_parameters(
        self,
        every: int | None = None,
        num_frames: int | None = None,
        max_faces: int | None = None,
        max_pixels: int | None = None,
        max_duration: float | None = None,
        progress: bool | None = None,
        threshold: float | None = None,
        return_heatmaps: bool | None = None,
        min_face_fraction: float | None = None,
        min_track_share: float | None = None,
        detect_every: int | None = None,
        detect_size: int | None | str = "default",
        return_patch_maps: bool | None = None,
        prefetch: int | None = None,
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - PIPELINE_PASSTHROUGH_KWARGS)
        if unknown:  # a misspelt option must not silently fall back to a default
            raise TypeError(f"deepfake-detection pipeline got unknown options: {', '.join(unknown)}")
        preprocess = {}
        if every is not None or num_frames is not None:
            preprocess["sampling"] = FrameSampling(every=every, num_frames=num_frames)
        if max_faces is not None:
            preprocess["max_faces"] = max_faces
        if max_pixels is not None or max_duration is not None:
            preprocess["limits"] = MediaLimits.from_options(max_pixels, max_duration)
        if progress is not None:
            preprocess["progress"] = progress
        if detect_every is not None:
            preprocess["detect_every"] = detect_every
        if detect_size != "default":
            preprocess["detect_size"] = detect_size
        if prefetch is not None:
            if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
                raise ValueError(f"prefetch must be an integer >= 0 (frames), got {prefetch!r}")
            preprocess["prefetch"] = prefetch
        if return_patch_maps is not None or return_heatmaps:
            preprocess["keep_maps"] = bool(return_patch_maps) or bool(return_heatmaps)
        # Bad detection settings fail now, not in the middle of a video.
        check_detection_settings(
            preprocess.get("detect_every", DEFAULT_DETECT_EVERY), preprocess.get("detect_size", DEFAULT_DETECT_SIZE)
        )
        postprocess = {}
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
            postprocess["threshold"] = threshold
        if return_heatmaps is not None:
            postprocess["return_heatmaps"] = return_heatmaps
        if min_face_fraction is not None:
            postprocess["min_face_fraction"] = min_face_fraction
        if min_track_share is not None:
            postprocess["min_track_share"] = min_track_share
        check_verdict_rule(
            postprocess.get("min_face_fraction", DEFAULT_MIN_FACE_FRACTION),
            postprocess.get("min_track_share", DEFAULT_MIN_TRACK_SHARE),
        )
        return preprocess, {}, postprocess

    def preprocess(
        self,
        inputs,
        sampling: FrameSampling | None = None,
        max_faces: int | None = None,
        limits: MediaLimits | None = None,
        progress: bool = False,
        detect_every: int = DEFAULT_DETECT_EVERY,
        detect_size: int | None = DEFAULT_DETECT_SIZE,
        keep_maps: bool | None = None,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> Iterator[dict]:
        limits = limits or MediaLimits()
        source, frames = open_source(inputs, sampling or FrameSampling(), limits, progress)
        video = source["media"] == "video"
        finder = VideoFaceFinder(self.face_detector, detect_every if video else 1, detect_size if video else None)
        source["limits"] = limits.describe()
        source["detection"] = {"every": finder.detect_every, "size": finder.detect_size} if video else None
        keep_map = (not video) if keep_maps is None else keep_maps
        tracker = FaceTracker()
        pending = None
        analysed_frames = []
        work = self._faces_and_crops(frames, finder, max_faces)
        for index, time, faces, pixel_values in run_ahead(work, prefetch) if prefetch else work:
            analysed_frames.append(index)
            if video and len(analysed_frames) % TRIM_EVERY_FRAMES == 0:
                release_freed_memory()  # keeps a long video's resident memory flat (see mesofcn.detection.memory)
            if not faces:
                tracker.update([])
                continue
            track_ids = tracker.update([face.box for face in faces])
            for face, track_id, pixels in zip(faces, track_ids, pixel_values, strict=True):
                if pending is not None:
                    yield pending
                meta = face_meta(face, track_id, index, time, self.image_processor.crop_scale)
                pending = {"pixel_values": pixels[None], "face": meta, "keep_map": keep_map}
                pending.update(source=None, is_last=False)
        source.update(frames_analysed=len(analysed_frames), analysed_frames=analysed_frames)
        if video:
            source["detection"]["frames"] = finder.detections
        if pending is None:  # no face anywhere: one placeholder so the input still gets a report
            size = self.image_processor.size.height
            pending = {"pixel_values": torch.zeros(1, 3, size, size), "face": None, "keep_map": False}
        pending.update(source=source, is_last=True)
        yield pending

    def _faces_and_crops(
        self, frames: Iterator[tuple[int, float, np.ndarray]], finder: VideoFaceFinder, max_faces: int | None
    ) -> Iterator[tuple[int, float, list[DetectedFace], torch.Tensor | None]]:
        """(index, time, faces, crops) per analysed frame: the work that runs ahead of the network."""
        for index, time, image in frames:
            faces = finder.faces(index, image)[:max_faces]
            yield index, time, faces, self._crop_faces(image, faces) if faces else None

    def _crop_faces(self, image: np.ndarray, faces: list[DetectedFace]) -> torch.Tensor:
        """Normalized (N, 3, 128, 128) crops of one frame's faces, made by the checkpoint's processor."""
        return self.image_processor(
            [image] * len(faces),
            boxes=[face.box for face in faces],
            landmarks=[face.landmarks for face in faces],
            return_tensors="pt",
        )["pixel_values"]

    def _forward(self, model_inputs: dict) -> dict:
        pixel_values = model_inputs["pixel_values"].to(device=self.device, dtype=self.model.dtype)
        outputs = self.inference_model(pixel_values)
        keep = model_inputs["keep_map"]
        keep = keep if isinstance(keep, list) else [keep]
        maps = outputs.segmentation_logits.float().softmax(1)[:, 1]
        return {
            "p_fake": outputs.logits.float().softmax(-1)[:, 1],
            # A map per face only where it is kept (a list, so that a batch may mix kept and dropped maps).
            "patch_map": [m if k else None for m, k in zip(maps, keep, strict=True)],
            # Per-face values pass through as given: lists when collated (batch_size > 1), bare otherwise.
            "face": model_inputs["face"],
            "source": model_inputs["source"],
            "is_last": model_inputs["is_last"],
        }

    def postprocess(
        self,
        all_outputs: list[dict],
        threshold: float = DEFAULT_THRESHOLD,
        return_heatmaps: bool | None = None,
        min_face_fraction: float = DEFAULT_MIN_FACE_FRACTION,
        min_track_share: float = DEFAULT_MIN_TRACK_SHARE,
    ) -> dict:
        source = next(unwrap(output["source"]) for output in all_outputs if unwrap(output["source"]) is not None)
        faces = []
        for output in all_outputs:
            if unwrap(output["face"]) is None:
                continue
            face = dict(unwrap(output["face"]))
            face["score"] = float(output["p_fake"].reshape(-1)[0])
            face["label"] = "fake" if face["score"] >= threshold else "real"
            patch_map = unwrap(output["patch_map"])
            if patch_map is not None:
                patch_map = patch_map.reshape(patch_map.shape[-2:]).numpy()
                # Videos keep one map per analysed face until the report is built: half precision halves that.
                face["patch_map"] = patch_map if source["media"] == "image" else patch_map.astype(np.float16)
            faces.append(face)
        rule = {"min_face_fraction": min_face_fraction, "min_track_share": min_track_share}
        report = build_report(source, faces, threshold, rule, self)
        if return_heatmaps if return_heatmaps is not None else source["media"] == "image":
            height, width = source["frame_size"][1], source["frame_size"][0]
            grid = report["map_grid"]
            for face in faces:
                face["heatmap"] = heatmap_on_frame(
                    face["patch_map"], face["window"], height, width, grid["crop_size"], positions=grid["positions"]
                )
        return report


def open_source(inputs, sampling: FrameSampling, limits: MediaLimits, progress: bool):
    """Describe one input and iterate over its (frame index, time, RGB frame) triples; `limits` are checked on the
    file's header before decoding (images: pixels; videos: pixels per frame and duration)."""
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if media_kind(path) == "video":
            return open_video(path, sampling, progress, limits)
        image = load_image(path, max_pixels=limits.max_pixels)
        return image_source(image, str(path)), iter([(0, 0.0, image)])
    if isinstance(inputs, (Image.Image, np.ndarray, torch.Tensor)):
        image = to_rgb_uint8(inputs)
        return image_source(image, None), iter([(0, 0.0, image)])
    raise TypeError(f"unsupported input {type(inputs).__name__}: pass a file path, a PIL image or an RGB array")


def image_source(image: np.ndarray, path: str | None) -> dict:
    return {
        "path": path,
        "media": "image",
        "frame_size": [image.shape[1], image.shape[0]],
        "fps": None,
        "duration": None,
        "sampling": None,
    }


def open_video(path: Path, sampling: FrameSampling, progress: bool, limits: MediaLimits | None = None):
    """Video description and a streaming iterator over its sampled frames (with a progress bar if asked); `limits`
    are checked on the header before decoding and on every decoded frame."""
    info = probe_video(path, limits)
    source = {
        "path": str(path),
        "media": "video",
        "frame_size": [info.width, info.height],
        "fps": info.fps,
        "duration": info.duration,
        "sampling": sampling.describe(),
    }
    expected = expected_samples(info.num_frames, sampling)
    frames = ((frame.index, frame.time, frame.image) for frame in iter_video_frames(path, sampling, limits))
    if progress:
        frames = tqdm(frames, total=expected, desc=path.name, unit="frame", leave=False)
    return source, frames


def expected_samples(num_frames: int, sampling: FrameSampling) -> int | None:
    """How many frames the sampling will yield (for the progress bar), if the frame count is known."""
    if not num_frames:
        return None
    if sampling.num_frames is not None:
        return min(sampling.num_frames, num_frames)
    return -(-num_frames // sampling.every)


def face_meta(face: DetectedFace, track_id: int, index: int, time: float, crop_scale: float) -> dict:
    return {
        "track_id": track_id,
        "frame_index": int(index),
        "time": float(time),
        "box": [float(v) for v in face.box],
        "landmarks": face.landmarks.tolist(),
        "detector_score": float(face.score),
        "window": face_crop_window(face.box, face.landmarks, crop_scale),
    }


def unwrap(value):
    """One face's value from an unbatched output (a one-element list when batch_size=1)."""
    return value[0] if isinstance(value, list) else value


def build_report(
    source: dict, faces: list[dict], threshold: float, rule: dict, pipe: DeepfakeDetectionPipeline
) -> dict:
    """
    One input's report: tracks with their scores, the verdict from the most suspicious eligible track under
    `rule` (`min_face_fraction`, `min_track_share`), and the faces.
    """
    by_track: dict[int, list[dict]] = {}
    for face in faces:
        by_track.setdefault(face["track_id"], []).append(
            {
                "index": face["frame_index"],
                "time": round(face["time"], 3),
                "box": [round(v, 1) for v in face["box"]],
                "score": face["score"],
            }
        )
    analysed = source["frames_analysed"]
    tracks = [summarize_track(track_id, frames, threshold, analysed) for track_id, frames in sorted(by_track.items())]
    verdict = most_suspicious_track(tracks, **rule)
    return {
        **source,
        "label": "no_face" if verdict is None else verdict["label"],
        "score": None if verdict is None else verdict["score"],
        "threshold": threshold,
        "verdict_track": None if verdict is None else verdict["id"],
        "verdict_rule": {**rule, "fallback": verdict is not None and not verdict["eligible"]},
        "tracks": tracks,
        "faces": faces,
        "model": model_name(pipe.model),
        "detector": pipe.face_detector.name,
        "map_grid": map_grid(pipe),
    }


def map_grid(pipe: DeepfakeDetectionPipeline) -> dict:
    """Where the faces' patch maps sit on their crops: the crop side and the grid of the network's map on it, kept
    in the report so that overlays drawn from it later place the maps as this model and processor do."""
    crop_size = pipe.image_processor.size.height
    return {"crop_size": crop_size, "positions": mask_label_positions(pipe.model.config, crop_size)}


def model_name(model) -> str:
    """The checkpoint a model came from (its folder or Hub id), or its class name."""
    return getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "") or type(model).__name__


__all__ = ["DEFAULT_THRESHOLD", "DeepfakeDetectionPipeline"]
