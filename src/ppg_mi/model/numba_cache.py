"""Where numba keeps what it compiles: aeon compiles its kernels with ``cache=True`` on import."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..config import ConfigError


def use_numba_cache(directory: str) -> None:
    """Point numba at ``directory`` (before aeon is imported); refuse one that cannot be written.

    On a read-only root filesystem numba needs a writable cache for aeon's kernels, or importing
    them fails with "no locator available". Without this check a cache directory mounted at the
    wrong path would go unnoticed while numba fell back to ``~/.cache``, and fail only where HOME
    is not writable either: a configured directory that cannot be written is reported at start.
    An empty ``directory`` leaves numba's own choice.
    """
    if not directory:
        return
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"PPG_MI_NUMBA_CACHE_DIR={directory} is not writable ({exc.strerror}): "
                          "mount a writable volume there or unset it") from exc
    os.environ["NUMBA_CACHE_DIR"] = str(path)
