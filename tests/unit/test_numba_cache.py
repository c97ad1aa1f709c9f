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


def _tree(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}


def test_an_empty_cache_starts_from_the_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    seed = tmp_path / "seed"
    (seed / "aeon_abc").mkdir(parents=True)
    (seed / "aeon_abc" / "kernel.nbi").write_bytes(b"index")
    (seed / "aeon_abc" / "kernel.0.nbc").write_bytes(b"\x00code")
    assert use_numba_cache(str(tmp_path / "numba"), str(seed)) == 2
    assert _tree(tmp_path / "numba") == _tree(seed)
    for f in seed.rglob("*.nb*"):  # a file numba writes later is told apart by its time
        assert (tmp_path / "numba" / f.relative_to(seed)).stat().st_mtime_ns == f.stat().st_mtime_ns
    assert not [f for f in (tmp_path / "numba").rglob(".*.partial")]


def test_a_cache_in_use_is_not_overwritten_by_the_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "kernel.nbi").write_bytes(b"seeded")
    cache = tmp_path / "numba"
    cache.mkdir()
    (cache / "kernel.nbi").write_bytes(b"compiled here")
    assert use_numba_cache(str(cache), str(seed)) == 0
    assert (cache / "kernel.nbi").read_bytes() == b"compiled here"


def test_a_missing_seed_leaves_numba_to_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert use_numba_cache(str(tmp_path / "numba"), str(tmp_path / "no-seed")) == 0
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "numba")
    assert list((tmp_path / "numba").iterdir()) == []
