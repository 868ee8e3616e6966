"""What every `mesofcn prepare` build shares: the output folder lock (one build or merge writes a folder at a time)
and the one options object (BuildOptions) that the CLI assembles and every builder takes."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesofcn.cli import CommandError
from mesofcn.cli.prepare import add_prepare_parser, build_options
from mesofcn.data.labelled_media import build_media
from mesofcn.data.settings import MIN_FACE_SCORE, BuildOptions
from mesofcn.data.work import PrepareError, output_lock
from mesofcn.detection.image_processing_mesofcn import DEFAULT_CROP_SCALE, DEFAULT_CROP_SIZE, MesoFCNImageProcessor


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(tmp_path):
    out = tmp_path / "data"
    with output_lock(out), pytest.raises(PrepareError) as raised, output_lock(out):
        pass
    message = str(raised.value)
    assert message.startswith(f"{out}: another mesofcn prepare is writing there (process ")
    assert "\n" not in message
    with output_lock(out):  # released when the first block ended
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    """The lock is an flock: it dies with the process that held it, even by SIGKILL."""
    out = tmp_path / "data"
    script = (
        "import sys, time; from mesofcn.data.work import output_lock\n"
        "with output_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(PrepareError, match=f"process {holder.pid}"), output_lock(out):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    deadline = time.monotonic() + 10
    while True:
        try:
            with output_lock(out):
                break
        except PrepareError:
            assert time.monotonic() < deadline, "the lock outlived its killed holder"
            time.sleep(0.1)


def test_a_folder_holding_only_a_lock_is_still_a_fresh_output(tmp_path):
    """A build killed before it wrote anything but its lock file can be rerun into the same folder; a folder of
    someone else's files is still refused, and no lock file is left in it."""
    out = tmp_path / "data"
    with output_lock(out):
        pass
    assert [path.name for path in out.iterdir()] == [".lock"]
    with output_lock(out):
        pass
    other = tmp_path / "photos"
    other.mkdir()
    (other / "me.jpg").write_bytes(b"...")
    with pytest.raises(PrepareError, match="not empty and not a mesofcn prepare output"), output_lock(other):
        pass
    assert sorted(path.name for path in Path(other).iterdir()) == ["me.jpg"]


# --- BuildOptions ---------------------------------------------------------------------------------------------

#: Each builder's subcommand with only its required arguments: every shared flag is left at its default.
PREPARE_COMMANDS = {
    "faceforensics": ["--root", "r"],
    "gan-faces": ["--real", "r", "--fake", "x=f"],
    "self-blend": ["--real", "r"],
    "media": ["--labels", "l.csv"],
}


def parse_prepare(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mesofcn")
    add_prepare_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["prepare", *argv])


@pytest.mark.parametrize("kind", sorted(PREPARE_COMMANDS))
def test_the_cli_options_are_the_builders_defaults(kind):
    """With no shared flag given, the CLI builds the options a builder uses when called with none; their crop is
    the processor's."""
    args = parse_prepare(kind, *PREPARE_COMMANDS[kind], "--out", "o")
    assert build_options(args, "the command") == BuildOptions(command="the command")
    defaults = BuildOptions()
    processor = MesoFCNImageProcessor()
    assert (defaults.crop_scale, defaults.size) == (DEFAULT_CROP_SCALE, DEFAULT_CROP_SIZE)
    assert (processor.crop_scale, processor.size["height"]) == (defaults.crop_scale, defaults.size)
    assert (defaults.compressions, defaults.num_proc, defaults.min_score) == (("c23",), 1, MIN_FACE_SCORE)


def test_the_cli_passes_every_shared_flag_into_the_options():
    argv = ["--out", "o", "--num-proc", "3", "--shard", "1/4", "--min-score", "0.7", "--crop-scale", "1.3"]
    args = parse_prepare("media", "--labels", "l.csv", "--compression", "c40", "c0", *argv, "--remove-work", "--quiet")
    options = build_options(args, "cmd")
    assert options == BuildOptions(
        compressions=("c40", "raw"), num_proc=3, shard=(1, 4), min_score=0.7, crop_scale=1.3,
        progress=False, command="cmd", remove_work=True,
    )  # fmt: skip
    assert options.crop_settings() == {"detector": "retinaface-mobilenet0.25", "min_score": 0.7, "crop_scale": 1.3,
                                       "size": DEFAULT_CROP_SIZE}  # fmt: skip


def test_options_are_normalised_once_and_set_on_top_of_others():
    options = BuildOptions(compressions=["C23", "c0", "c23"], shard=[0, 2])
    assert (options.compressions, options.shard) == (("c23", "raw"), (0, 2))
    assert BuildOptions.of(options, progress=False) == BuildOptions(compressions=("c23", "raw"), shard=(0, 2),
                                                                    progress=False)  # fmt: skip
    assert BuildOptions.of(None) == BuildOptions()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"crop_scale": 0}, "crop_scale must be a positive finite number, got 0"),
        ({"crop_scale": float("nan")}, "crop_scale must be a positive finite number"),
        ({"size": 0}, "size must be an integer >= 1, got 0"),
        ({"num_proc": True}, "num_proc must be an integer >= 1, got True"),
        ({"min_score": 1.5}, r"min_score must lie in \[0, 1\], got 1.5"),
        ({"shard": (2, 2)}, "shard 2/2: need 0 <= i < n"),
        ({"shard": "0/2"}, "shard must be a pair"),
        ({"compressions": ("c30",)}, "unknown compression level 'c30'"),
        ({"compressions": ()}, "give at least one level"),
    ],
)
def test_a_bad_option_is_refused_naming_it(values, message):
    with pytest.raises(ValueError, match=message):
        BuildOptions(**values)


def test_bad_options_stop_a_build_before_it_writes_anything(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n")
    with pytest.raises(TypeError, match="unknown build option 'crop_size'; known: compressions, num_proc"):
        build_media(labels, tmp_path / "out", crop_size=96)
    with pytest.raises(ValueError, match="crop_scale must be a positive finite number"):
        build_media(labels, tmp_path / "out", options=BuildOptions(), crop_scale=-1.0)
    args = parse_prepare("media", "--labels", str(labels), "--out", str(tmp_path / "out"), "--crop-scale", "0")
    with pytest.raises(CommandError, match="crop_scale must be a positive finite number, got 0.0"):
        args.handler(args)
    assert not (tmp_path / "out").exists()
