"""Hostile-input suite: `mesofcn detect` on a corpus of broken, odd and adversarial inputs, with a time limit each.

    python scripts/hostile_inputs.py            # the full corpus: 79 kinds, about 20 minutes on 2 CPU cores
    python scripts/hostile_inputs.py --quick    # 17 of them, for CI: about 4 minutes

The corpus is generated in a temporary folder (nothing is downloaded or committed): truncated and corrupted files,
containers without video, zero frames, variable frame rate, rotation metadata, EXIF orientations, tiny, huge and 8K
frames, other pixel formats and codecs, still-image formats, decompression bombs, lying headers, odd paths (symlink
loop, FIFO, unreadable file, directory, spaces, unicode, newline) and odd content (black, noise, 50 faces, faces cut
by the frame edge). Each input runs in its own `mesofcn detect INPUT --json --overlay` process (a randomly
initialised checkpoint: verdicts mean nothing here, the machinery is what is tested), and the table gives per input
the outcome (report / no_face / error), the exit code and the seconds taken.

Counted as failures: a crash (a traceback, or death by a signal), a hang (the time limit reached), a half-written
output (a temporary file left behind, or an output under its final name that does not read back completely) and a
bad error message (not exactly one `error:` line naming the input). The exit code is 1 when any of them occurs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from mesofcn.cli.demo import demo_photo
from mesofcn.detection.media_files import printable

__all__ = ["Case", "Corpus", "Outcome", "build_checkpoint", "case_list", "main", "mesofcn", "run_case"]

#: Detect's exit codes (see mesofcn.cli.commands): inputs analysed, some failed.
EXIT_OK, EXIT_SOME_FAILED = 0, 1
#: Names of temporary files the package writes before renaming them into place.
TEMPORARY_MARKERS = (".partial", ".tmp")
FPS = 10
#: Presentation times of the variable-frame-rate video: gaps of 30 ms and 200 ms in turn.
VFR_TIMES = [round(0.115 * index - (0.085 if index % 2 else 0.0), 3) for index in range(20)]
SIDE = 256  # frame side of the generated videos: the face is about 100 px wide
#: The MP4 muxer option that puts the index (moov) before the frames.
FASTSTART = {"movflags": "faststart"}
#: x265 prints its settings on stderr unless told otherwise.
X265 = {"options": {"x265-params": "log-level=error"}}


# ----------------------------------------------------------------------------------------------- media makers


def resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def face_frames(count: int = 20, side: int = SIDE) -> list[np.ndarray]:
    """`count` frames of the face drifting right by a pixel per frame."""
    face = resized(demo_photo(), side, side)
    return [np.roll(face, index, axis=1) for index in range(count)]


def write_video(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    container_format: str | None = None,
    times: list[float] | None = None,
    rotation: int | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB frames with PyAV; `times` (seconds) gives a variable frame rate, `rotation` display metadata,
    `options` go to the encoder and `container_options` to the muxer."""
    with av.open(str(path), "w", format=container_format, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=FPS, options=options or {})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if times is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[index] * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def grainy(frames: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """`frames` with fresh film grain each: every frame then takes real bytes, so a cut or damage at a fraction of
    the file falls after some whole frames."""
    rng = np.random.default_rng(seed)
    return [np.clip(frame + rng.normal(0.0, 12.0, frame.shape), 0, 255).astype(np.uint8) for frame in frames]


def write_audio_only(path: Path) -> Path:
    """An MP4 holding one second of an AAC tone and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="mono")
        tone = (0.2 * np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100)).astype(np.float32)
        for start in range(0, len(tone) - 1024, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def mp4_box_field(data: bytearray, box: bytes, offset: int) -> int:
    """Position of the 32-bit big-endian field `offset` bytes into the body of the first MP4 `box`."""
    return data.index(box) + 4 + offset


def mp4_without_frames(source: Path, target: Path) -> Path:
    """A copy of an MP4 whose sample size table (stsz) lists zero frames: a video stream with nothing to decode."""
    data = bytearray(source.read_bytes())
    start = mp4_box_field(data, b"stsz", 8)  # after version/flags and the common sample size
    data[start : start + 4] = struct.pack(">I", 0)
    target.write_bytes(bytes(data))
    return target


def save_image(path: Path, image: np.ndarray | Image.Image, **kwargs) -> Path:
    (Image.fromarray(image) if isinstance(image, np.ndarray) else image).save(path, **kwargs)
    return path


def exif_jpeg(path: Path, orientation: int) -> Path:
    """The face photo stored so that EXIF `orientation` (1-8) turns it upright."""
    upright = Image.fromarray(resized(demo_photo(), 320, 240))
    # The stored pixels are the upright image transformed by the inverse of what the orientation tag undoes.
    inverse = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = upright if inverse is None else upright.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif.tobytes(), quality=92)
    return path


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(path: Path, side: int = 15000) -> Path:
    """A real decompression bomb: a `side` x `side` grey PNG of zeros, a few hundred KB on disk."""
    compressor, parts = zlib.compressobj(9), []
    row = b"\x00" * (side + 1)
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(parts))
    path.write_bytes(data + png_chunk(b"IEND", b""))
    return path


def copied(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    return target


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def truncated(source: Path, target: Path, fraction: float | None = None, size: int | None = None) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: size if size is not None else int(len(data) * fraction)])
    return target


def corrupted(source: Path, target: Path, start: float = 0.4, end: float = 0.7, seed: int = 0) -> Path:
    """A copy with random bytes written over one in eight bytes between `start` and `end` of the file."""
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    positions = np.arange(int(len(data) * start), int(len(data) * end), 8)
    data_array = np.frombuffer(bytes(data), dtype=np.uint8).copy()
    data_array[positions] = rng.integers(0, 256, len(positions), dtype=np.uint8)
    target.write_bytes(data_array.tobytes())
    return target


def patch_riff_field(data: bytearray, chunk: bytes, offset: int, value: int) -> None:
    """Overwrite the 32-bit little-endian field at `offset` into the body of the first RIFF `chunk`."""
    start = data.index(chunk) + 8 + offset
    data[start : start + 4] = struct.pack("<I", value)


def avi_claiming(path: Path, frames: int | None = None, size: tuple[int, int] | None = None) -> Path:
    """A small MJPEG AVI whose headers claim `frames` frames and/or a frame `size` (width, height)."""
    write_video(path, face_frames(10, 64), codec="mjpeg", pix_fmt="yuvj420p")
    data = bytearray(path.read_bytes())
    if frames is not None:
        patch_riff_field(data, b"avih", 16, frames)  # dwTotalFrames
        patch_riff_field(data, b"strh", 32, frames)  # dwLength
    if size is not None:
        patch_riff_field(data, b"avih", 32, size[0])  # dwWidth
        patch_riff_field(data, b"avih", 36, size[1])  # dwHeight
        patch_riff_field(data, b"strf", 4, size[0])  # biWidth
        patch_riff_field(data, b"strf", 8, size[1])  # biHeight
    path.write_bytes(bytes(data))
    return path


def huge_frame_video(path: Path, side: int = 12000) -> Path:
    """A one-frame MOV of a black `side` x `side` grey frame (PNG codec: a few hundred KB on disk)."""
    with av.open(str(path), "w", format="mov") as container:
        stream = container.add_stream("png", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = side, side, "gray"
        frame = av.VideoFrame.from_ndarray(np.zeros((side, side), dtype=np.uint8), format="gray")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def many_faces(count: int = 50) -> np.ndarray:
    """`count` copies of the face in a grid (10 per row, 96 px each)."""
    face = resized(demo_photo()[30:200, 150:300], 96, 96)  # the astronaut's face and some margin
    rows = -(-count // 10)
    canvas = np.zeros((rows * 96, 10 * 96, 3), dtype=np.uint8)
    for index in range(count):
        row, column = divmod(index, 10)
        canvas[row * 96 : (row + 1) * 96, column * 96 : (column + 1) * 96] = face
    return canvas


def face_cut_by_edges() -> np.ndarray:
    """Four copies of the face, each half outside one edge of the frame."""
    face = resized(demo_photo(), 200, 200)
    canvas = np.zeros((400, 600, 3), dtype=np.uint8)
    canvas[:100, 200:400] = face[100:]  # top edge
    canvas[300:, 200:400] = face[:100]  # bottom edge
    canvas[100:300, :100] = face[:, 100:]  # left edge
    canvas[100:300, 500:] = face[:, :100]  # right edge
    return canvas


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    """One kind of input: `make(folder)` writes it into `folder` and returns the path to pass to detect."""

    kind: str
    make: Callable[[Path], Path]
    quick: bool = False
    honours_permissions: bool = False  # run without root's power to read any file


class Corpus:
    """Shared source files (a face video, an image ...) made once and reused by the cases that derive from them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, Path] = {}

    def source(self, name: str) -> Path:
        if name not in self._cache:
            path = self.folder / "sources" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            makers = {
                "face.mp4": lambda p: write_video(p, grainy(face_frames())),
                "face_faststart.mp4": lambda p: write_video(p, grainy(face_frames()), container_options=FASTSTART),
                "face.mkv": lambda p: write_video(p, grainy(face_frames()), container_format="matroska"),
                "face.png": lambda p: save_image(p, resized(demo_photo(), 320, 320)),
                "face.jpg": lambda p: save_image(p, resized(demo_photo(), 320, 320), quality=92),
            }
            self._cache[name] = makers[name](path)
        return self._cache[name]


def case_list(corpus: Corpus) -> list[Case]:
    """Every kind of input; `quick=True` marks the smaller CI corpus."""
    src = corpus.source
    frames = face_frames
    cases = [
        Case("baseline face image (PNG)", lambda d: copied(src("face.png"), d / "face.png")),
        Case("baseline face video (H.264 MP4)", lambda d: copied(src("face.mp4"), d / "v.mp4")),
        Case("MP4 cut to its first 1 KB", lambda d: truncated(src("face.mp4"), d / "cut.mp4", size=1024)),
        Case("MP4 cut at 25 % (index at the end)", lambda d: truncated(src("face.mp4"), d / "c25.mp4", 0.25)),
        Case("MP4 cut at 50 % (index at the end)", lambda d: truncated(src("face.mp4"), d / "c50.mp4", 0.5)),
        Case("MP4 cut at 99 % (index cut)", lambda d: truncated(src("face.mp4"), d / "c99.mp4", 0.99), True),
        Case("faststart MP4 cut at 50 %", lambda d: truncated(src("face_faststart.mp4"), d / "f.mp4", 0.5)),
        Case("MKV cut at 50 %", lambda d: truncated(src("face.mkv"), d / "c50.mkv", 0.5)),
        Case("PNG cut at 50 %", lambda d: truncated(src("face.png"), d / "c50.png", 0.5)),
        Case("JPEG cut at 50 %", lambda d: truncated(src("face.jpg"), d / "c50.jpg", 0.5)),
        Case("MP4 bytes corrupted mid-stream", lambda d: corrupted(src("face_faststart.mp4"), d / "bad.mp4"), True),
        Case("MKV bytes corrupted mid-stream", lambda d: corrupted(src("face.mkv"), d / "bad.mkv")),
        Case("JPEG bytes corrupted", lambda d: corrupted(src("face.jpg"), d / "bad.jpg", 0.3, 0.6)),
        Case("PNG bytes corrupted (CRC mismatch)", lambda d: corrupted(src("face.png"), d / "bad.png", 0.3, 0.6)),
        Case("audio-only MP4 (no video stream)", lambda d: write_audio_only(d / "audio.mp4"), True),
        Case("MP4 listing zero frames", lambda d: mp4_without_frames(src("face_faststart.mp4"), d / "z.mp4"), True),
        Case("empty file (0 bytes)", lambda d: written(d / "empty.mp4", b"")),
        Case("variable frame rate (MKV)", lambda d: write_video(d / "vfr.mkv", frames(), times=VFR_TIMES), True),
        *[
            Case(
                f"rotation metadata {angle}", lambda d, a=angle: write_video(d / f"rot{a}.mp4", stored(a), rotation=a)
            )
            for angle in (90, 180, 270)
        ],
        *[
            Case(f"EXIF orientation {tag}", lambda d, t=tag: exif_jpeg(d / f"exif{t}.jpg", t), tag == 6)
            for tag in range(1, 9)
        ],
        Case("1x1 image", lambda d: save_image(d / "1x1.png", noise(1, 1)), True),
        Case("2x3 image", lambda d: save_image(d / "2x3.png", noise(3, 2))),
        Case("8000x100 image", lambda d: save_image(d / "wide.png", noise(100, 8000))),
        Case("8K single-frame image (JPEG)", lambda d: save_image(d / "8k.jpg", resized(demo_photo(), 7680, 4320))),
        Case(
            "8K single-frame video (H.264)",
            lambda d: write_video(d / "8k.mp4", [resized(demo_photo(), 7680, 4320)], options={"preset": "ultrafast"}),
        ),
        Case("2x2 video (yuv444p)", lambda d: write_video(d / "2x2.mp4", [noise(2, 2)] * 3, pix_fmt="yuv444p")),
        Case("10-bit H.264 (yuv420p10le)", lambda d: write_video(d / "10bit.mp4", frames(), pix_fmt="yuv420p10le")),
        Case(
            "10-bit HEVC (yuv420p10le)",
            lambda d: write_video(d / "h10.mp4", frames(), "libx265", "yuv420p10le", **X265),
        ),
        Case("H.264 yuv422p", lambda d: write_video(d / "422.mp4", frames(), pix_fmt="yuv422p")),
        Case("H.264 yuv444p", lambda d: write_video(d / "444.mp4", frames(), pix_fmt="yuv444p")),
        Case("HEVC (x265)", lambda d: write_video(d / "hevc.mp4", frames(), "libx265", **X265)),
        Case("VP9 (WebM)", lambda d: write_video(d / "vp9.webm", frames(), "libvpx-vp9")),
        Case("AV1 (SVT-AV1, MKV)", lambda d: write_video(d / "av1.mkv", frames(), "libsvtav1", "yuv420p")),
        Case("MPEG-4 Part 2 (AVI)", lambda d: write_video(d / "mpeg4.avi", frames(), "mpeg4")),
        Case("MJPEG (AVI)", lambda d: write_video(d / "mjpeg.avi", frames(), "mjpeg", "yuvj420p")),
        Case(
            "MPEG-TS (.ts: extension unknown)", lambda d: write_video(d / "t.ts", frames(), container_format="mpegts")
        ),
        Case("animated GIF", lambda d: save_gif(d / "anim.gif")),
        Case("animated PNG (APNG)", lambda d: save_animation(d / "anim.png", "PNG")),
        Case("WebP", lambda d: save_image(d / "face.webp", resized(demo_photo(), 320, 320), quality=80)),
        Case("animated WebP", lambda d: save_animation(d / "anim.webp", "WEBP")),
        Case("TIFF", lambda d: save_image(d / "face.tiff", resized(demo_photo(), 320, 320))),
        Case("BMP", lambda d: save_image(d / "face.bmp", resized(demo_photo(), 320, 320))),
        Case("CMYK JPEG", lambda d: save_image(d / "cmyk.jpg", Image.open(src("face.png")).convert("CMYK"))),
        Case("progressive JPEG", lambda d: save_image(d / "prog.jpg", Image.open(src("face.png")), progressive=True)),
        Case("16-bit PNG", lambda d: save_image(d / "16bit.png", sixteen_bit_grey())),
        Case("palette PNG with transparency", lambda d: save_image(d / "pal.png", palette_with_transparency())),
        Case("RGBA PNG", lambda d: save_image(d / "rgba.png", Image.open(src("face.png")).convert("RGBA"))),
        Case("decompression bomb (PNG, 15000x15000)", lambda d: png_bomb(d / "bomb.png"), True),
        Case("header claiming a billion frames (AVI)", lambda d: avi_claiming(d / "billion.avi", frames=10**9), True),
        Case("MKV of two frames 11 days apart", lambda d: write_video(d / "l.mkv", frames(2), times=[0, 10**6]), True),
        Case("12000x12000 video frame (PNG in MOV)", lambda d: huge_frame_video(d / "huge.mov"), True),
        Case("AVI header lying: 12000x12000 frames", lambda d: avi_claiming(d / "lying.avi", size=(12000, 12000))),
        Case("PNG named .mp4", lambda d: copied(src("face.png"), d / "image.mp4")),
        Case("MP4 named .jpg", lambda d: copied(src("face.mp4"), d / "video.jpg")),
        Case("text file named .png", lambda d: written(d / "text.png", b"hello\n")),
        Case("text file named .nfo", lambda d: written(d / "notes.nfo", b"hello\n" * 50)),
        Case("missing file", lambda d: d / "missing.mp4"),
        Case("symlink loop", lambda d: symlink_loop(d), True),
        Case("dangling symlink", lambda d: special(d / "dangling.mp4", "dangling")),
        Case("FIFO (named pipe)", lambda d: special(d / "pipe.mp4", "fifo"), True),
        Case("unreadable file (mode 000)", lambda d: unreadable(src("face.png"), d / "secret.png"), True, True),
        Case("directory", lambda d: special(d / "folder.mp4", "directory"), True),
        Case("path with spaces", lambda d: copied(src("face.png"), d / "a b c.png")),
        Case("unicode path", lambda d: copied(src("face.png"), d / "visage-é顔.png")),
        Case("newline in path", lambda d: copied(src("face.png"), d / "new\nline.png"), True),
        Case("black frames (video)", lambda d: write_video(d / "black.mp4", [np.zeros((128, 128, 3), np.uint8)] * 20)),
        Case("pure noise (video)", lambda d: write_video(d / "noise.mp4", [noise(128, 128, s) for s in range(20)])),
        Case("pure noise (image)", lambda d: save_image(d / "noise.png", noise(480, 640))),
        Case("50 faces in one frame", lambda d: save_image(d / "crowd.png", many_faces()), True),
        Case("faces cut by the frame edges", lambda d: save_image(d / "edges.png", face_cut_by_edges())),
    ]
    return cases


def stored(rotation: int) -> list[np.ndarray]:
    """Face frames turned clockwise by `rotation` degrees: a player (and mesofcn) shows them upright again."""
    return [np.ascontiguousarray(np.rot90(frame, k=-(rotation // 90))) for frame in face_frames()]


def save_gif(path: Path) -> Path:
    images = [Image.fromarray(frame).convert("P") for frame in face_frames(6, 128)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def save_animation(path: Path, fmt: str) -> Path:
    images = [Image.fromarray(frame) for frame in face_frames(6, 128)]
    images[0].save(path, format=fmt, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def sixteen_bit_grey() -> Image.Image:
    grey = np.asarray(Image.fromarray(resized(demo_photo(), 320, 320)).convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(grey)


def palette_with_transparency() -> Image.Image:
    image = Image.fromarray(resized(demo_photo(), 320, 320)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    image.info["transparency"] = 0
    return image


def symlink_loop(folder: Path) -> Path:
    (folder / "loop_a.mp4").symlink_to(folder / "loop_b.mp4")
    (folder / "loop_b.mp4").symlink_to(folder / "loop_a.mp4")
    return folder / "loop_a.mp4"


def special(path: Path, kind: str) -> Path:
    """A path that is no regular file: a dangling symlink, a FIFO or a directory."""
    if kind == "dangling":
        path.symlink_to(path.with_name("gone.mp4"))
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    return path


def unreadable(source: Path, target: Path) -> Path:
    """A copy of `source` nobody may read (mode 000; see `without_read_override` for root)."""
    copied(source, target).chmod(0)
    return target


# ----------------------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What one detect run did."""

    kind: str
    outcome: str  # report label (fake/real/no_face), "error", "crash" or "hang"
    exit_code: int | None
    seconds: float
    crash: bool = False
    hang: bool = False
    half_written: list[str] | None = None
    bad_message: str | None = None
    message: str = ""


def build_checkpoint(folder: Path) -> Path:
    """A randomly initialised (seeded) checkpoint, as `mesofcn demo` uses when no trained model is installed."""
    from mesofcn.cli.demo import untrained_checkpoint

    return Path(untrained_checkpoint(folder))


def mesofcn(*args: str | Path) -> list[str]:
    """The `mesofcn` command line with `args`: this environment's console script (else `python -m mesofcn.cli`)."""
    script = Path(sys.executable).with_name("mesofcn")
    prefix = [str(script)] if script.is_file() else [sys.executable, "-m", "mesofcn.cli"]
    return [*prefix, *map(str, args)]


def without_read_override(command: list[str]) -> list[str] | None:
    """`command` run so that file permissions apply: as root, without the capabilities to read or search any file
    (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so a mode-000 file is unreadable there too; None as
    root without setpriv (util-linux)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]


def run_case(case: Case, path: Path, model: Path, out: Path, timeout: float) -> Outcome:
    """Run `mesofcn detect` on `path` (outputs in `out`) and judge what it did."""
    out.mkdir(parents=True, exist_ok=True)
    command = mesofcn(
        "detect", path, "--model", model, "--quiet", "--json", out / "report.json", "--overlay", out / "overlay"
    )
    if case.honours_permissions:
        command = without_read_override(command)
        if command is None:
            return Outcome(case.kind, "skipped", None, 0.0, message="root without setpriv reads any file")
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        hang = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        hang = True
    seconds = time.perf_counter() - start
    text = stderr.decode(errors="replace")
    code = process.returncode
    result = Outcome(case.kind, "hang" if hang else "", None if hang else code, seconds, hang=hang)
    result.crash = not hang and (code < 0 or "Traceback (most recent call last)" in text)
    result.half_written = half_written_outputs(out)
    if hang:
        return result
    if result.crash:
        result.outcome = "crash"
        result.message = signal_or_last_line(code, text)
        return result
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    if code == EXIT_OK:
        report = json.loads((out / "report.json").read_text())[0]
        result.outcome = report["label"]
        result.message = stdout.decode(errors="replace").strip()
    elif code == EXIT_SOME_FAILED:
        result.outcome = "error"
        result.message = errors[0] if errors else text.strip()
        if len(errors) != 1 or printable(path) not in errors[0]:
            result.bad_message = f"{len(errors)} error lines; expected one naming {printable(path)}"
    else:
        result.outcome = "error"
        result.message = errors[0] if errors else text.strip()
        result.bad_message = f"exit code {code}: a problem with an input must exit with {EXIT_SOME_FAILED}"
    return result


def signal_or_last_line(code: int, text: str) -> str:
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def half_written_outputs(out: Path) -> list[str]:
    """Temporary files left in `out`, and outputs under their final names that do not read back completely."""
    problems = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = path.name
        if any(marker in name for marker in TEMPORARY_MARKERS):
            problems.append(f"{name} (temporary file left behind)")
        elif not reads_back(path):
            problems.append(f"{name} (does not read back completely)")
    return problems


def reads_back(path: Path) -> bool:
    """True when an output file is complete: JSON parses, a PNG decodes, an MP4 decodes to its last frame."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        elif path.suffix == ".mp4":
            with av.open(str(path)) as container:
                decoded = sum(1 for _ in container.decode(video=0))
            return decoded > 0
        return True
    except Exception:  # anything that fails to read back counts as half-written
        return False


# ----------------------------------------------------------------------------------------------- report


def print_table(outcomes: list[Outcome], root: Path, stream=sys.stdout) -> None:
    """One row per input; paths in the messages are shown relative to the corpus folder `root`."""
    width = max(len(outcome.kind) for outcome in outcomes)
    print(
        f"| {'input kind':<{width}} | outcome | exit | seconds | message (paths relative to the corpus)", file=stream
    )
    print(f"|{'-' * (width + 2)}|---------|------|---------|---------", file=stream)
    for outcome in outcomes:
        code = "-" if outcome.exit_code is None else str(outcome.exit_code)
        message = outcome.message.replace("\n", "\\n").replace(f"{root}/", "")
        flags = [f"HALF-WRITTEN {outcome.half_written}"] if outcome.half_written else []
        flags += [f"BAD MESSAGE ({outcome.bad_message})"] if outcome.bad_message else []
        if flags:
            message = "; ".join(flags) + " -- " + message
        print(
            f"| {outcome.kind:<{width}} | {outcome.outcome:<7} | {code:>4} | {outcome.seconds:7.1f} | {message[:150]}",
            file=stream,
        )


def summarize(outcomes: list[Outcome]) -> dict[str, int]:
    return {
        "inputs": len(outcomes),
        "reports": sum(outcome.outcome in ("fake", "real") for outcome in outcomes),
        "no_face": sum(outcome.outcome == "no_face" for outcome in outcomes),
        "clear errors": sum(outcome.outcome == "error" and not outcome.bad_message for outcome in outcomes),
        "crashes": sum(outcome.crash for outcome in outcomes),
        "hangs": sum(outcome.hang for outcome in outcomes),
        "half-written outputs": sum(bool(outcome.half_written) for outcome in outcomes),
        "bad error messages": sum(bool(outcome.bad_message) for outcome in outcomes),
        "skipped": sum(outcome.outcome == "skipped" for outcome in outcomes),
    }


def selected_cases(cases: list[Case], quick: bool, only: str | None) -> Iterator[Case]:
    for case in cases:
        if (not quick or case.quick) and (only is None or only.lower() in case.kind.lower()):
            yield case


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smaller CI corpus")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per input (a hang beyond)")
    parser.add_argument("--only", help="run only the kinds whose name contains this text")
    parser.add_argument("--keep", type=Path, help="build the corpus and outputs in this folder and keep them")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mesofcn-hostile-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        model = build_checkpoint(root / "checkpoint")
        corpus = Corpus(root)
        outcomes = []
        for number, case in enumerate(selected_cases(case_list(corpus), args.quick, args.only)):
            folder = root / "inputs" / f"{number:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            path = case.make(folder)
            outcome = run_case(case, Path(path), model, root / "outputs" / f"{number:02d}", args.timeout)
            outcomes.append(outcome)
            print(f"[{number + 1}] {outcome.kind}: {outcome.outcome} ({outcome.seconds:.1f} s)", file=sys.stderr)
    print_table(outcomes, root)
    counts = summarize(outcomes)
    print()
    print(", ".join(f"{name}: {value}" for name, value in counts.items()))
    print(f"total {time.perf_counter() - started:.0f} s ({'quick' if args.quick else 'full'} corpus)")
    failed = counts["crashes"] + counts["hangs"] + counts["half-written outputs"] + counts["bad error messages"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
