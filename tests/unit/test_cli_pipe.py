"""`ppg-mi config | head`: a reader that goes away ends the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_closed_pipe_ends_the_command_without_a_traceback() -> None:
    # The reader is gone before the command writes: every write then fails, whatever the timing.
    # (Reading the first line and then closing, as `head -1` does, raced: the whole output fits in
    # the pipe, and the command could finish writing before the close and exit 0.)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "ppg_mi", "config"], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
