"""Find a dataset by name: explicit path, $RECFLOW_DATA_DIR, the bundled copy, the cache, a download."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .download import DEFAULT_BASE_URL, KNOWN_CHECKSUMS, OfflineError, download_release

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
DATA_DIR_ENV = "RECFLOW_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """No copy of the dataset was found; the message lists every place tried and how to provide one.

    A ``FileNotFoundError``, not a ``DownloadError``: final, never retried (nothing changes by waiting).
    """


def locate_dataset(name: str, explicit_path: Path | None, cache_dir: Path, download: bool = True) -> Path:
    """A folder or zip holding dataset ``name``.

    Search order: ``explicit_path`` (which must exist) -> ``$RECFLOW_DATA_DIR/<name>/`` (or
    ``<name>.zip`` there) -> the bundled copy (``recflow/data/bundled/<name>/``; only
    ml-latest-small) -> ``cache_dir/<name>/`` or ``cache_dir/<name>.zip`` -> a download into
    ``cache_dir`` (when ``download`` and the name is a known GroupLens release). With no network
    the download fails at once and the error lists every place tried and how to provide the files.
    """
    path, tried = find_local(name, explicit_path, cache_dir)
    if path is not None:
        return path
    if download and name in KNOWN_CHECKSUMS:
        try:
            return download_release(name, cache_dir)
        except OfflineError as exc:
            tried.append(f"download: {exc}")
    else:
        tried.append(no_download(name, download))
    raise not_found(name, tried, cache_dir)


def check_available(name: str, explicit_path: Path | None, cache_dir: Path, download: bool = True) -> None:
    """Before a run starts any server: ``DatasetNotFoundError`` at once when no copy is on disk and none can be
    downloaded (no network: the download host does not resolve), so a missing dataset fails in seconds, not after
    the orchestration has started. A copy on disk, or a download that may work, passes (``locate_dataset`` fetches it)."""
    path, tried = find_local(name, explicit_path, cache_dir)
    if path is not None:
        return
    if not (download and name in KNOWN_CHECKSUMS):
        raise not_found(name, [*tried, no_download(name, download)], cache_dir)
    host = urlparse(DEFAULT_BASE_URL).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        raise not_found(name, [*tried, f"download: {DEFAULT_BASE_URL}{name}.zip: no network ({exc})"], cache_dir) from None


def find_local(name: str, explicit_path: Path | None, cache_dir: Path) -> tuple[Path | None, list[str]]:
    """The first copy on disk in the search order, and the places tried (an explicit path that is missing is final)."""
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if not path.exists():
            raise DatasetNotFoundError(f"dataset path {path} does not exist (given explicitly for {name!r})")
        return path, []
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
            return path, tried
        tried.append(f"{what}: {path}")
    return None, tried


def no_download(name: str, download: bool) -> str:
    if not download:
        return "download: disabled"
    return f"download: {name!r} is not a known GroupLens release ({', '.join(sorted(KNOWN_CHECKSUMS))})"


def not_found(name: str, tried: list[str], cache_dir: Path) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"dataset {name!r} not found; tried:\n  " + "\n  ".join(tried) + "\n" + how_to_provide(name, cache_dir))


def how_to_provide(name: str, cache_dir: Path) -> str:
    """The fix, in the words a user types: where to put the release so the next run finds it."""
    return (
        f"to fix: put the GroupLens release ({name}/ or {name}.zip) in a folder and export {DATA_DIR_ENV}=<that folder>, "
        f"or copy {name}.zip to {Path(cache_dir) / f'{name}.zip'}, "
        f"or point the config at it (dataset.path, or --set dataset.path=<folder or zip>)"
    )
