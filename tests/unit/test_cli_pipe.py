"""`ppg-mi config | head`: a reader that goes away ends the command quietly."""

from __future__ import annotations

import subprocess
import sys


def test_a_closed_pipe_ends_the_command_without_a_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ppg_mi", "config"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does once it has its line
    _, err = proc.communicate(timeout=60)
    assert first.startswith(b"PPG_MI_")
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
