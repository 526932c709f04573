"""Find a dataset by name: explicit path, $RECFLOW_DATA_DIR, the bundled copy, the cache, a download."""

from __future__ import annotations

import os
from pathlib import Path

from .download import KNOWN_CHECKSUMS, download_release

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
DATA_DIR_ENV = "RECFLOW_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """No copy of the dataset was found; the message lists every place tried."""


def locate_dataset(name: str, explicit_path: Path | None, cache_dir: Path, download: bool = True) -> Path:
    """A folder or zip holding dataset ``name``.

    Search order: ``explicit_path`` (which must exist) -> ``$RECFLOW_DATA_DIR/<name>/`` (or
    ``<name>.zip`` there) -> the bundled copy (``recflow/data/bundled/<name>/``; only
    ml-latest-small) -> ``cache_dir/<name>/`` or ``cache_dir/<name>.zip`` -> a download into
    ``cache_dir`` (when ``download`` and the name is a known GroupLens release).
    """
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if not path.exists():
            raise DatasetNotFoundError(f"dataset path {path} does not exist (given explicitly for {name!r})")
        return path
    tried: list[str] = []
    env = os.environ.get(DATA_DIR_ENV)
    candidates: list[tuple[str, Path]] = []
    if env:
        base = Path(env).expanduser()
        if not base.is_dir() or not any(base.iterdir()):  # an unmounted volume: never train on another copy unannounced
            state = "is empty" if base.is_dir() else "does not exist"
            raise DatasetNotFoundError(
                f"${DATA_DIR_ENV}={base} {state} (an unmounted volume?); refused rather than using another copy of {name!r}: mount it, or unset {DATA_DIR_ENV}"
            )
        candidates += [(f"${DATA_DIR_ENV}", base / name), (f"${DATA_DIR_ENV}", base / f"{name}.zip")]
    else:
        tried.append(f"${DATA_DIR_ENV} (not set)")
    candidates.append(("bundled copy", BUNDLED_DIR / name))
    cache_dir = Path(cache_dir)
    candidates += [("cache", cache_dir / name), ("cache", cache_dir / f"{name}.zip")]
    for what, path in candidates:
        if (path.is_dir() and any(path.iterdir())) or path.is_file():
            return path
        tried.append(f"{what}: {path}")
    if download and name in KNOWN_CHECKSUMS:
        return download_release(name, cache_dir)
    if not download:
        tried.append("download: disabled")
    else:
        tried.append(f"download: {name!r} is not a known GroupLens release ({', '.join(sorted(KNOWN_CHECKSUMS))})")
    raise DatasetNotFoundError(f"dataset {name!r} not found; tried:\n  " + "\n  ".join(tried))
