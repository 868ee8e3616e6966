"""Tests for mesofcn.detection.media: safe image loading and image/video sniffing, on small files written here."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mesofcn.detection.media import _check_size, check_media_file, load_image, media_kind
from mesofcn.detection.media_files import DEFAULT_MAX_PIXELS, MediaError


def noise(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A valid 1x1 grey PNG whose IHDR (with a correct CRC) is rewritten to claim ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    body = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + body))
    path.write_bytes(bytes(data))
    return path


def encode_mp4(path: Path, num_frames: int = 3) -> Path:
    """A tiny H.264 MP4 (named as given, whatever the extension)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), index * 60, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def assert_media_error(path: Path, phrase: str, call=load_image, **kwargs) -> MediaError:
    with pytest.raises(MediaError) as info:
        call(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and phrase in message, message
    assert "\n" not in message
    return info.value


# --- load_image: errors -----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert_media_error(tmp_path / "nope.png", "file not found")


def test_directory(tmp_path):
    assert_media_error(tmp_path, "is a directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    assert_media_error(path, "file is empty (0 bytes)")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("this is not a picture\n")
    assert media_kind(path) == "image"  # by extension; the loader then refuses it cleanly
    assert_media_error(path, "not an image file")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path, fmt):
    data = io.BytesIO()
    Image.fromarray(noise(64, 64)).save(data, format=fmt)
    path = tmp_path / f"half.{fmt.lower()}"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    assert_media_error(path, "truncated or corrupt")


def test_oversized_header_refused_before_decoding(tmp_path):
    path = png_claiming_size(tmp_path / "bomb.png", 30000, 30000)
    assert path.stat().st_size < 100
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not escape either
        error = assert_media_error(path, "image too large")
    assert time.perf_counter() - start < 0.5
    assert "900,000,000 pixels" in error.problem and f"{DEFAULT_MAX_PIXELS:,}" in error.problem


def test_header_between_pil_warning_and_our_limit_is_refused_without_warning(tmp_path):
    path = png_claiming_size(tmp_path / "big.png", 10000, 10000)  # 1e8 pixels: PIL would only warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = assert_media_error(path, "image too large", max_pixels=50_000_000)
    assert "10000x10000 = 100,000,000 pixels" in error.problem and "50,000,000" in error.problem


def test_raised_limit_lets_a_claimed_huge_image_reach_decoding(tmp_path):
    # 300 Mpx is more than twice PIL's default bomb limit; with max_pixels raised, the header is accepted and
    # the (absent) pixel data is what fails.
    path = png_claiming_size(tmp_path / "huge.png", 20000, 15000)
    pil_limit = Image.MAX_IMAGE_PIXELS
    assert_media_error(path, "truncated or corrupt", max_pixels=400_000_000)
    assert pil_limit == Image.MAX_IMAGE_PIXELS  # PIL's global limit is restored


def test_max_pixels_is_configurable(tmp_path):
    path = save(tmp_path / "a.png", Image.fromarray(noise(300, 400)))
    assert_media_error(path, "120,000 pixels, limit is 100,000", max_pixels=100_000)
    assert load_image(path, max_pixels=120_000).shape == (300, 400, 3)
    assert load_image(path, max_pixels=None).shape == (300, 400, 3)  # no limit
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(path, max_pixels=0)


def test_zero_sized_image(tmp_path):
    # PIL itself refuses zero-sized headers at identification; the loader's own size check backs that up.
    assert_media_error(png_claiming_size(tmp_path / "zero.png", 0, 5), "not an image file")
    with pytest.raises(MediaError, match=r"x.png: image has no pixels \(size 0x5\)"):
        _check_size(Image.new("RGB", (0, 5)), "x.png", DEFAULT_MAX_PIXELS)


def test_check_media_file_returns_path(tmp_path):
    path = save(tmp_path / "a.png", Image.new("RGB", (2, 2)))
    assert check_media_file(str(path)) == path


# --- load_image: modes and values -------------------------------------------------------------------------


def test_rgb_png_round_trips(tmp_path):
    image = noise()
    loaded = load_image(save(tmp_path / "a.png", Image.fromarray(image)))
    assert loaded.dtype == np.uint8 and loaded.shape == (24, 32, 3)
    np.testing.assert_array_equal(loaded, image)


def test_one_pixel_image(tmp_path):
    loaded = load_image(save(tmp_path / "one.png", Image.new("RGB", (1, 1), (10, 20, 30))))
    np.testing.assert_array_equal(loaded, [[[10, 20, 30]]])


def test_grey_image(tmp_path):
    grey = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    loaded = load_image(save(tmp_path / "g.png", Image.fromarray(grey)))
    np.testing.assert_array_equal(loaded, np.repeat(grey[:, :, None], 3, axis=2))


def test_rgba_and_la_drop_alpha(tmp_path):
    rgba = Image.new("RGBA", (3, 2), (10, 20, 30, 0))
    np.testing.assert_array_equal(load_image(save(tmp_path / "a.png", rgba)), np.full((2, 3, 3), [10, 20, 30]))
    la = Image.new("LA", (3, 2), (77, 128))
    np.testing.assert_array_equal(load_image(save(tmp_path / "la.png", la)), np.full((2, 3, 3), 77))


def test_palette_image(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    np.testing.assert_array_equal(load_image(save(tmp_path / "p.png", image)), [[[255, 0, 0], [0, 0, 255]]])


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[65535, 32896, 0, 257]], dtype=np.uint16)
    loaded = load_image(save(tmp_path / "g16.png", Image.fromarray(values)))
    np.testing.assert_array_equal(loaded[..., 0], [[255, 128, 0, 1]])
    assert (loaded == loaded[..., :1]).all()


def test_big_endian_sixteen_bit_tiff(tmp_path):
    image = Image.new("I;16B", (2, 1))
    image.putpixel((0, 0), 65535)
    image.putpixel((1, 0), 32896)
    path = save(tmp_path / "be.tif", image)
    assert Image.open(path).mode == "I;16B"
    np.testing.assert_array_equal(load_image(path)[..., 0], [[255, 128]])


def test_thirty_two_bit_images(tmp_path):
    integers = np.array([[70000, 32896, 0]], dtype=np.int32)  # mode "I": 16-bit scale, clipped at 65535
    loaded = load_image(save(tmp_path / "i.tif", Image.fromarray(integers)))
    np.testing.assert_array_equal(loaded[..., 0], [[255, 128, 0]])
    floats = Image.new("F", (2, 1), 0.5)  # mode "F": values in [0, 1]
    np.testing.assert_array_equal(load_image(save(tmp_path / "f.tif", floats)), np.full((1, 2, 3), 128))


def test_cmyk_jpeg(tmp_path):
    path = save(tmp_path / "c.jpg", Image.new("CMYK", (8, 8), (0, 255, 0, 0)), quality=100)
    loaded = load_image(path)
    assert np.abs(loaded.astype(int) - [255, 0, 255]).max() <= 2


def test_exif_orientation_is_applied(tmp_path):
    image = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape, red on the left half
    image[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; display after turning 90 degrees clockwise
    path = save(tmp_path / "rot.jpg", Image.fromarray(image), exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.shape == (40, 20, 3)
    assert loaded[:18, :, 0].mean() > 200 and loaded[22:, :, 0].mean() < 50  # left half is now on top


# --- media_kind --------------------------------------------------------------------------------------------


def test_media_kind_by_extension(tmp_path):
    assert media_kind(save(tmp_path / "a.png", Image.new("RGB", (4, 4)))) == "image"
    assert media_kind(save(tmp_path / "a.JPG", Image.new("RGB", (4, 4)), format="JPEG")) == "image"
    assert media_kind(encode_mp4(tmp_path / "a.mp4")) == "video"


def test_media_kind_sniffs_content_without_extension(tmp_path):
    assert media_kind(encode_mp4(tmp_path / "clip")) == "video"
    assert media_kind(save(tmp_path / "picture", Image.new("RGB", (4, 4)), format="PNG")) == "image"
    assert media_kind(save(tmp_path / "photo.data", Image.new("RGB", (4, 4)), format="JPEG")) == "image"


def test_media_kind_refuses_other_content(tmp_path):
    random_bytes = tmp_path / "blob"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_media_error(random_bytes, "not an image or video file", call=media_kind)
    text = tmp_path / "readme.nfo"  # FFmpeg's tty demuxer would "play" this as ANSI art
    text.write_text("just some text\n" * 10)
    assert_media_error(text, "not an image or video file", call=media_kind)


def test_media_kind_file_checks(tmp_path):
    assert_media_error(tmp_path / "gone.mp4", "file not found", call=media_kind)
    assert_media_error(tmp_path, "is a directory", call=media_kind)
    (tmp_path / "empty.mp4").touch()
    assert_media_error(tmp_path / "empty.mp4", "file is empty (0 bytes)", call=media_kind)


def test_media_kind_of_a_claimed_huge_image_is_image(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert media_kind(png_claiming_size(tmp_path / "bomb", 30000, 30000)) == "image"
