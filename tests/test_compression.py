"""Tests for mesofcn.detection.compression: FF++'s H.264 settings (c23 / c40 / raw) through PyAV, and the one H.264
writer that the overlay videos share."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from mesofcn.detection.compression import (
    COMPRESSION_CRF,
    H264Writer,
    compress_frames,
    compression_crf,
    encode_video,
    h264_settings,
    normalize_compression,
    read_x264_options,
    video_rate,
)
from mesofcn.reporting.overlay import VideoOverlayWriter

#: x264 settings string of FF++'s c23 519.mp4 (ffpp_mini), minus the machine-dependent thread counts and crf.
_FFPP_X264_SETTINGS = (
    "cabac=1 ref=3 deblock=1:0:0 analyse=0x3:0x113 me=hex subme=7 psy=1 psy_rd=1.00:0.00 mixed_ref=1 "
    "me_range=16 chroma_me=1 trellis=1 8x8dct=1 cqm=0 deadzone=21,11 fast_pskip=1 chroma_qp_offset=4 "
    "sliced_threads=0 nr=0 decimate=1 interlaced=0 bluray_compat=0 constrained_intra=0 bframes=3 b_pyramid=2 "
    "b_adapt=1 b_bias=0 direct=1 weightb=1 open_gop=0 weightp=2 keyint=250 keyint_min=25 scenecut=40 "
    "intra_refresh=0 rc_lookahead=40 rc=crf mbtree=1 qcomp=0.60 qpmin=0 qpmax=69 qpstep=4 ip_ratio=1.40 aq=1:1.00"
)
FFPP_X264_OPTIONS = dict(item.split("=", 1) for item in _FFPP_X264_SETTINGS.split(" "))
MACHINE_DEPENDENT = {"threads", "lookahead_threads"}


def textured_clip(num_frames: int = 6, height: int = 72, width: int = 96, seed: int = 0) -> list[np.ndarray]:
    """A smooth random scene with fine texture, panning 2 px per frame (something for inter prediction)."""
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (height, width + 2 * num_frames, 3), dtype=np.uint8), (7, 7), 0)
    texture = rng.integers(-25, 26, scene.shape)
    scene = np.clip(scene.astype(np.int16) + texture, 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(scene[:, 2 * k : 2 * k + width]) for k in range(num_frames)]


def psnr(reference: list[np.ndarray], decoded: list[np.ndarray]) -> float:
    error = np.mean([(a.astype(np.float64) - b) ** 2 for a, b in zip(reference, decoded, strict=True)])
    return float(10 * np.log10(255**2 / error))


def test_levels_and_crf_values():
    assert COMPRESSION_CRF == {"raw": 0, "c23": 23, "c40": 40}
    assert normalize_compression("C23") == "c23"
    assert normalize_compression("c0") == "raw"
    assert compression_crf("c40") == 40
    assert compression_crf(17) == 17
    with pytest.raises(ValueError, match="unknown compression level 'c30'"):
        normalize_compression("c30")
    with pytest.raises(ValueError, match="0..51"):
        compression_crf(52)
    assert (h264_settings("c23").codec, h264_settings("c23").pix_fmt) == ("libx264", "yuv444p")
    assert (h264_settings("raw").codec, h264_settings("raw").pix_fmt) == ("libx264rgb", "rgb24")


def test_crf40_is_worse_than_crf23_and_both_decode():
    frames = textured_clip()
    c23 = compress_frames(frames, "c23")
    c40 = compress_frames(frames, 40)
    assert len(c23) == len(c40) == len(frames)
    assert all(frame.shape == frames[0].shape and frame.dtype == np.uint8 for frame in c23 + c40)
    quality23, quality40 = psnr(frames, c23), psnr(frames, c40)
    assert quality40 < quality23 - 3, (quality23, quality40)
    assert quality23 > 25


def test_written_video_is_yuv444p_h264_with_ffpp_settings(tmp_path):
    frames = textured_clip(num_frames=8, height=65, width=97)  # odd sizes: fine without chroma subsampling
    path = tmp_path / "clip.mp4"
    assert encode_video(iter(frames), path, "c23", fps=25) == 8
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv444p"
        assert (stream.codec_context.width, stream.codec_context.height) == (97, 65)
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 8
    options = read_x264_options(path)
    assert float(options["crf"]) == 23
    assert options["threads"] == "1"
    assert {key: value for key, value in options.items() if key in FFPP_X264_OPTIONS} == FFPP_X264_OPTIONS


def test_raw_is_lossless_rgb():
    frames = textured_clip(num_frames=3, height=33, width=41)
    decoded = compress_frames(frames, "raw")
    assert all(np.array_equal(a, b) for a, b in zip(frames, decoded, strict=True))


def test_one_frame_image_round_trip():
    image = textured_clip(num_frames=1, height=101, width=77)[0]
    (c23,) = compress_frames([image], "c23")
    assert c23.shape == image.shape and not np.array_equal(c23, image)
    assert psnr([image], [c23]) > 20


def test_bad_frames_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        compress_frames([], 23)
    with pytest.raises(ValueError, match="one size"):
        compress_frames([np.zeros((16, 16, 3), np.uint8), np.zeros((16, 18, 3), np.uint8)], 23)
    with pytest.raises(ValueError, match="RGB uint8"):
        compress_frames([np.zeros((16, 16, 3), np.float32)], 23)
    (tmp_path / "not_x264.bin").write_bytes(b"\x00" * 100)
    assert read_x264_options(tmp_path / "not_x264.bin") is None


def test_matches_the_settings_of_real_ffpp_files(shared_data, tmp_path):
    ffpp = read_x264_options(shared_data / "ffpp_mini/original_sequences/youtube/c23/videos/519.mp4")
    encode_video(textured_clip(num_frames=3), tmp_path / "clip.mp4", "c23")
    ours = read_x264_options(tmp_path / "clip.mp4")
    differing = {key for key in ffpp.keys() | ours.keys() if ffpp.get(key) != ours.get(key)}
    assert differing <= MACHINE_DEPENDENT, differing


def test_ffpp_videos_and_overlays_are_written_by_the_one_h264_writer(tmp_path, monkeypatch):
    """encode_video, compress_frames and the overlay writer all encode through H264Writer, each with its own
    settings: the files it finishes have the codec, pixel format, size and frame count those settings say."""
    finished = []
    close = H264Writer.close

    def recording_close(writer: H264Writer) -> int:
        finished.append((writer.settings.codec, writer.settings.pix_fmt, writer.settings.options.get("preset")))
        return close(writer)

    monkeypatch.setattr(H264Writer, "close", recording_close)
    frames = textured_clip(num_frames=5, height=17, width=33)
    assert encode_video(frames, tmp_path / "ffpp.mp4", "c23", fps=25) == 5
    assert len(compress_frames(frames, "raw")) == 5
    with VideoOverlayWriter(tmp_path / "overlay.mkv", fps=Fraction(30000, 1001), crf=30, preset="ultrafast") as writer:
        for frame in frames[:3]:
            writer.write(frame)
    assert finished == [
        ("libx264", "yuv444p", None),
        ("libx264rgb", "rgb24", None),
        ("libx264", "yuv420p", "ultrafast"),
    ]
    for name, pix_fmt, size, count, rate in (
        ("ffpp.mp4", "yuv444p", (33, 17), 5, 25),
        ("overlay.mkv", "yuv420p", (34, 18), 3, Fraction(30000, 1001)),  # yuv420p: padded to even sizes
    ):
        with av.open(str(tmp_path / name)) as container:
            stream = container.streams.video[0]
            context = stream.codec_context
            assert (context.name, context.pix_fmt, (context.width, context.height)) == ("h264", pix_fmt, size)
            assert stream.average_rate == rate
            assert sum(1 for _ in container.decode(stream)) == count
    assert read_x264_options(tmp_path / "overlay.mkv")["crf"] == "30.0"


def test_video_rate_and_writer_refusals(tmp_path):
    assert video_rate(29.97) == Fraction(2997, 100) and video_rate(Fraction(24000, 1001)) == Fraction(24000, 1001)
    with pytest.raises(ValueError, match="fps"):
        H264Writer(tmp_path / "a.mp4", h264_settings("c23"), fps=0)
    with pytest.raises(ValueError, match="no frames"), H264Writer(tmp_path / "b.mp4", h264_settings("c23"), 25):
        pass
