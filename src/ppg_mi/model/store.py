"""The model store: checkpoints side by side in one directory and a ``current`` pointer.

``<models_dir>/<version>/`` holds one checkpoint each; ``<models_dir>/current`` is a small
text file naming the served version.  It is replaced with an atomic rename, so a reader
sees the old name or the new one, never half of either.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .checkpoint import CARD_FILE, ModelError

CURRENT = "current"


class ModelStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CARD_FILE).is_file())

    def current_version(self) -> str | None:
        try:
            name = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

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
        if not (self.root / version / CARD_FILE).is_file():
            raise ModelError(f"{version!r} is not a checkpoint in {self.root}")
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".current.")
        with os.fdopen(fd, "w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / CURRENT)

    def import_checkpoint(self, checkpoint_dir: str | Path, version: str) -> Path:
        """Copy a checkpoint into the store under ``version`` (not made current)."""
        target = self.root / version
        if target.exists():
            raise ModelError(f"{target} already exists")
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".import."))
        shutil.copytree(checkpoint_dir, tmp, dirs_exist_ok=True)
        tmp.rename(target)
        return target
