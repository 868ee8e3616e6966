"""The output folder lock of `mesofcn prepare`: one build or merge writes a folder at a time."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesofcn.data.work import PrepareError, output_lock


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
