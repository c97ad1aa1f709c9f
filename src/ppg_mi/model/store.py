"""The model store: checkpoints side by side in one directory and a ``current`` pointer.

``<models_dir>/<version>/`` holds one checkpoint each; ``<models_dir>/current`` is a small
text file naming the served version.  It is replaced with an atomic rename, so a reader
sees the old name or the new one, never half of either.  ``<models_dir>/previous`` names
the version ``current`` named before the last move: the classifier falls back to it when
it starts and ``current`` cannot be loaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .checkpoint import CARD_FILE, ModelError

CURRENT = "current"
PREVIOUS = "previous"


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CARD_FILE).is_file())

    def current_version(self) -> str | None:
        return self._pointer(CURRENT)

    def previous_version(self) -> str | None:
        """The version ``current`` named before the last :meth:`set_current` moved it, if any."""
        return self._pointer(PREVIOUS)

    def _pointer(self, name: str) -> str | None:
        try:
            version = (self.root / name).read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def current_path(self) -> Path:
        version = self.current_version()
        if version is None:
            raise ModelError(
                f"no model in {self.root}: train one with `ppg-mi train --out {self.root}` "
                "(it sets `current`) or point PPG_MI_MODELS_DIR at a model store"
            )
        path = self.root / version
        if not (path / CARD_FILE).is_file():
            raise ModelError(f"{self.root}/current names {version!r}, which is not a checkpoint")
        return path

    def set_current(self, version: str) -> None:
        """Make ``version`` current; the version it replaces becomes ``previous``."""
        if not (self.root / version / CARD_FILE).is_file():
            raise ModelError(f"{version!r} is not a checkpoint in {self.root}")
        replaced = self.current_version()
        if replaced is not None and replaced != version:
            # written first: a crash in between leaves previous = current, which is harmless
            self._write_pointer(PREVIOUS, replaced)
        self._write_pointer(CURRENT, version)

    def _write_pointer(self, name: str, version: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
        with os.fdopen(fd, "w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / name)

    def import_checkpoint(self, checkpoint_dir: str | Path, version: str) -> Path:
        """Copy a checkpoint into the store under ``version`` (not made current)."""
        target = self.root / version
        if target.exists():
            raise ModelError(f"{target} already exists")
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".import."))
        shutil.copytree(checkpoint_dir, tmp, dirs_exist_ok=True)
        tmp.rename(target)
        return target
