"""Where numba keeps what it compiles: aeon compiles its kernels with ``cache=True`` on first use.

A pod's cache is an empty volume, so every new classifier or training pod would compile the
model's kernels again (most of its start-up: docs/performance.md).  The image compiles them once,
when it is built (``python -m ppg_mi.model.numba_cache DIR``), and a process copies that *seed*
into its empty cache before numba looks there.  numba checks each entry against the source file
it was compiled from and the CPU it was compiled for, and compiles again on any mismatch: a seed
built on another CPU costs the compilation it would have cost anyway, never a wrong kernel.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..config import ConfigError


def use_numba_cache(directory: str, seed: str = "") -> int:
    """Point numba at ``directory`` (before aeon is imported); refuse one that cannot be written.

    On a read-only root filesystem numba needs a writable cache for aeon's kernels, or importing
    them fails with "no locator available". Without this check a cache directory mounted at the
    wrong path would go unnoticed while numba fell back to ``~/.cache``, and fail only where HOME
    is not writable either: a configured directory that cannot be written is reported at start.
    An empty ``directory`` leaves numba's own choice.  When ``directory`` holds nothing yet, the
    files of ``seed`` (a cache compiled ahead) are copied into it; returns how many.
    """
    if not directory:
        return 0
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"PPG_MI_NUMBA_CACHE_DIR={directory} is not writable ({exc.strerror}): "
                          "mount a writable volume there or unset it") from exc
    copied = seed_numba_cache(path, Path(seed)) if seed else 0
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    return copied


def seed_numba_cache(directory: Path, seed: Path) -> int:
    """Copy the files of ``seed`` into ``directory`` if it holds none; returns how many were copied.

    A seed that is missing or unreadable copies nothing: numba then compiles, as without one.  Each
    file lands under a temporary name and is renamed, as numba writes its own, so a process reading
    the cache meanwhile sees a whole file or none; it keeps the seed's modification time, so a file
    numba wrote since (a kernel compiled anew) is told apart even when its bytes came out the same.
    """
    if not seed.is_dir() or any(directory.iterdir()):
        return 0
    copied = 0
    for source in sorted(seed.rglob("*")):
        if not source.is_file():
            continue
        target = directory / source.relative_to(seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            shutil.copy2(source, partial)
            os.replace(partial, target)
        except OSError:
            partial.unlink(missing_ok=True)
            continue
        copied += 1
    return copied


def compile_ahead(directory: str, kind: str = "", records: int = 40) -> int:
    """Compile into ``directory`` every kernel training and serving a model of ``kind`` use (the
    configured kind when empty): a small synthetic model is trained, loaded and warmed up as the
    classifier loads one.  Returns the number of files the cache then holds."""
    use_numba_cache(directory)
    from training.train import TrainConfig, train

    from ..config import Settings
    from ..data import SyntheticConfig, generate
    from ..signal import BandPass
    from .checkpoint import load_checkpoint
    from .store import ModelStore
    from .threads import set_transform_threads, usable_cpus

    settings = Settings.from_env()
    band = BandPass.from_settings(settings)
    data = generate(SyntheticConfig(records=records, samples=settings.samples_per_record,
                                    sampling_rate_hz=settings.sampling_rate_hz, seed=1, id_prefix="compile-ahead"))
    with tempfile.TemporaryDirectory() as models:
        train(data, band, TrainConfig(kind=kind or settings.model_kind, folds=0), models)
        checkpoint = load_checkpoint(ModelStore(models).current_path(), band, settings.samples_per_record)
        set_transform_threads(checkpoint.estimator, max(2, usable_cpus()))
        checkpoint.warm_up(settings.samples_per_record)
    return sum(1 for f in Path(directory).rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppg_mi.model.numba_cache",
        description="Compile the kernels of training and serving a model into a numba cache directory, as the "
                    "image does when it is built; point PPG_MI_NUMBA_CACHE_SEED_DIR at it and a process with an "
                    "empty PPG_MI_NUMBA_CACHE_DIR starts from a copy of it instead of compiling.")
    parser.add_argument("directory", help="the cache to compile into (created)")
    parser.add_argument("--kind", default="", help="model kind (default: PPG_MI_MODEL_KIND or its default)")
    args = parser.parse_args(argv)
    files = compile_ahead(args.directory, args.kind)
    print(f"{files} files in the numba cache {args.directory}")
    return 0 if files else 1


if __name__ == "__main__":
    sys.exit(main())
