"""Download a MovieLens zip from GroupLens into a cache, atomically and checksum-verified.

Checksums: the md5 values are the ones GroupLens publishes beside each zip
(``<name>.zip.md5``); the sha256 values and sizes are those recorded by TensorFlow Datasets
(``tensorflow_datasets/url_checksums/movielens.txt``) for the same URLs. A release with
both is checked against both. ml-latest is rebuilt by GroupLens from time to time, so it
has no fixed checksum and is only downloaded when the caller passes one.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Checksum:
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


KNOWN_CHECKSUMS: dict[str, Checksum] = {
    "ml-100k": Checksum(
        md5="0e33842e24a9c977be4e0107933c0723",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        size=4924029,
    ),
    "ml-1m": Checksum(
        md5="c4d9eecfca2ab87c1945afe126590906",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        size=5917549,
    ),
    "ml-10m": Checksum(md5="ce571fd55effeba0271552578f2648bd"),
    "ml-20m": Checksum(
        md5="cd245b17a1ae2cc31bb14903e1204af3",
        sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        size=198702078,
    ),
    "ml-25m": Checksum(
        md5="6b51fb2759a8657d3bfcbfc42b592ada",
        sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        size=261978986,
    ),
    "ml-latest-small": Checksum(
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        size=978202,
    ),
}


class DownloadError(OSError):
    """The release could not be fetched (after retries) or is unknown."""


class OfflineError(DownloadError):
    """No network: the host name did not resolve or no route exists. Final at once (retrying an
    offline machine only makes a run look hung); the caller says where to put the files instead."""


#: errno values that mean "no network here" rather than "the server is slow or down"
OFFLINE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}


def is_offline(exc: BaseException) -> bool:
    """A failure that no retry within seconds will fix: DNS resolution failed, or no route to any network."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, socket.gaierror) or (isinstance(reason, OSError) and reason.errno in OFFLINE_ERRNOS)


class ChecksumMismatchError(ValueError):
    """Downloaded or cached bytes differ from the expected checksum; the file was deleted."""


def download_release(
    name: str,
    cache_dir: Path,
    *,
    base_url: str = DEFAULT_BASE_URL,
    retries: int = 3,
    backoff: float = 1.0,
    expected_sha256: str | None = None,
    expected_md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """``cache_dir/<name>.zip``, downloaded from ``<base_url><name>.zip`` unless already cached and valid.

    Network errors and HTTP 5xx are retried ``retries`` times (so ``retries + 1`` attempts)
    after ``backoff * 2**attempt`` seconds; HTTP 4xx fails at once, and so does having no network
    (``OfflineError``: the name does not resolve, no route). A checksum mismatch
    deletes the file and raises ``ChecksumMismatchError``. ``expected_sha256`` /
    ``expected_md5`` override the built-in table (tests, mirrors, new releases).
    """
    cache_dir = Path(cache_dir)
    expected = _expected(name, expected_sha256, expected_md5)
    target = cache_dir / f"{name}.zip"
    if target.is_file():
        if _matches(target, expected) is None:
            return target
        target.unlink()  # a corrupt or stale cache entry: fetch again
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = base_url if base_url.endswith(".zip") else base_url.rstrip("/") + f"/{name}.zip"
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            tmp = _fetch(url, cache_dir, name, timeout)
        except urllib.error.HTTPError as exc:
            last = exc
            if 400 <= exc.code < 500:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            continue
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, short reads
            if is_offline(exc):
                raise OfflineError(f"{url}: no network ({getattr(exc, 'reason', exc)})") from None
            last = exc
            continue
        problem = _matches(tmp, expected)
        if problem is not None:
            tmp.unlink(missing_ok=True)
            raise ChecksumMismatchError(f"{url}: {problem}; the download was deleted")
        os.replace(tmp, target)
        return target
    raise DownloadError(f"{url}: failed after {retries + 1} attempts: {last}")


def _expected(name: str, sha256: str | None, md5: str | None) -> Checksum:
    if sha256 or md5:
        return Checksum(md5=md5, sha256=sha256)
    if name not in KNOWN_CHECKSUMS:
        raise DownloadError(
            f"no known checksum for {name!r} (known: {', '.join(sorted(KNOWN_CHECKSUMS))}); pass expected_sha256= or expected_md5= to download it"
        )
    return KNOWN_CHECKSUMS[name]


def _fetch(url: str, cache_dir: Path, name: str, timeout: float) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def file_digests(path: Path) -> tuple[str, str]:
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def _matches(path: Path, expected: Checksum) -> str | None:
    """None when ``path`` has the expected size and digests, else what differs."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        return f"size {size} bytes, expected {expected.size}"
    md5, sha = file_digests(path)
    if expected.sha256 and sha != expected.sha256.lower():
        return f"sha256 {sha}, expected {expected.sha256}"
    if expected.md5 and md5 != expected.md5.lower():
        return f"md5 {md5}, expected {expected.md5}"
    return None
