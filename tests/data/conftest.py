"""Tiny hand-written MovieLens releases, written by each test into its tmp_path.

``RELEASES[name]`` maps file name -> exact bytes. ``make_release(name, ...)`` writes one as a
folder (optionally under a top folder) or as a zip, with files replaced or removed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest


def _flags(*on: int) -> str:
    return "|".join("1" if k in on else "0" for k in range(19))


ML100K = {
    "u.data": b"1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t10\t5\t881250951\n",
    "u.item": (f"10|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?x|{_flags(8, 12)}\n20|unknown||||{_flags(0)}\n").encode("latin-1"),
    "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n",
}

ML1M = {
    "ratings.dat": b"1::10::4::978300760\n1::20::3::978302109\n2::10::5::978301968\n",
    "movies.dat": "10::Misérables, Les (1995)::Drama|Musical\n20::Heat (1995)::Action|Crime|Thriller\n".encode("latin-1"),
    "users.dat": b"1::F::1::10::48067\n2::M::56::16::70072\n",
}

ML10M = {
    "ratings.dat": b"1::10::4.5::978300760\n1::20::0.5::978302109\n2::10::5::978301968\n",
    "movies.dat": "10::Amélie (2001)::Comedy|Romance\n20::Nothing Here (2009)::(no genres listed)\n".encode(),
    "tags.dat": b"1::10::whimsical::1138537770\n2::20::dull::1138537771\n",
}

MLLATEST = {
    "ratings.csv": b"userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,20,3.5,964981247\n2,10,0.5,964982224\n",
    "movies.csv": (b'movieId,title,genres\n10,"American President, The (1995)",Comedy|Drama|Romance\n20,Babylon 5,(no genres listed)\n'),
    "tags.csv": b'userId,movieId,tag,timestamp\n1,10,"funny, sad",1445714994\n2,20,"two\nlines",1445714996\n',
    "links.csv": b"movieId,imdbId,tmdbId\n10,0112346,9087\n20,0105946,\n",
}

RELEASES = {"ml-100k": ML100K, "ml-1m": ML1M, "ml-10m": ML10M, "ml-latest": MLLATEST}


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


@pytest.fixture
def make_release(tmp_path: Path) -> Callable[..., Path]:
    """Write a release: ``make_release("ml-1m", zip=True, top="ml-1m", replace={...}, drop=[...])``."""
    counter = iter(range(1000))

    def make(
        name: str,
        *,
        zip: bool = False,
        top: str | None = None,
        replace: dict[str, bytes] | None = None,
        drop: tuple[str, ...] | list[str] = (),
    ) -> Path:
        files = {**RELEASES[name], **(replace or {})}
        files = {k: v for k, v in files.items() if k not in drop}
        base = tmp_path / f"src{next(counter)}"
        if zip:
            base.mkdir()
            path = base / f"{name}.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                for fname, data in files.items():
                    zf.writestr(f"{top}/{fname}" if top else fname, data)
            return path
        folder = base / top if top else base
        folder.mkdir(parents=True)
        for fname, data in files.items():
            (folder / fname).write_bytes(data)
        return base

    return make


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def _read(out: Path, table: str) -> list[dict]:
    return pq.read_table(out / f"{table}.parquet").to_pylist()


def _rejects(out: Path) -> list[tuple]:
    return [(r["source_file"], r["line_number"], r["reason"], r["raw"]) for r in _read(out, "rejects")]


@pytest.fixture
def read() -> Callable[[Path, str], list[dict]]:
    """``read(out_dir, "ratings")`` -> the parquet table's rows as dicts."""
    return _read


@pytest.fixture
def rejects_of() -> Callable[[Path], list[tuple]]:
    """``rejects_of(out_dir)`` -> [(source_file, line_number, reason, raw), ...]."""
    return _rejects


@pytest.fixture
def release_bytes() -> dict[str, dict[str, bytes]]:
    """The tiny releases' files: ``release_bytes["ml-1m"]["ratings.dat"]``."""
    return {k: dict(v) for k, v in RELEASES.items()}
