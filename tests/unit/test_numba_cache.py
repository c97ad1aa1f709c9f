"""The numba cache setting: applied when writable, refused with the setting's name when not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ppg_mi.config import ConfigError
from ppg_mi.model.numba_cache import use_numba_cache


def test_a_writable_directory_becomes_numbas_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    use_numba_cache(str(tmp_path / "numba"))
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "numba")
    assert (tmp_path / "numba").is_dir()


def test_an_unwritable_directory_is_a_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=f"PPG_MI_NUMBA_CACHE_DIR={blocker}/numba is not writable"):
        use_numba_cache(str(blocker / "numba"))
    assert "NUMBA_CACHE_DIR" not in os.environ


def test_empty_leaves_numba_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    use_numba_cache("")
    assert "NUMBA_CACHE_DIR" not in os.environ
