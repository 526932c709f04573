"""The MovieLens release formats: where each file is, how it is delimited and encoded.

A source is a folder or a ``.zip`` (either may hold the files at the top or inside one
top-level folder such as ``ml-1m/``). ``detect_release`` finds which format it is from the
ratings file it holds:

=============  ===============  =========================================  ===========
release        ratings file     other files                                scale
=============  ===============  =========================================  ===========
ml-100k        u.data (tab)     u.item, u.user (``|``)                     1..5 by 1
ml-1m          ratings.dat      movies.dat, users.dat (``::``)             1..5 by 1
ml-10m         ratings.dat      movies.dat, tags.dat (``::``), no users    0.5..5 by .5
ml-latest      ratings.csv      movies.csv, tags.csv, links.csv            0.5..5 by .5
=============  ===============  =========================================  ===========

``ml-latest`` is the whole CSV family (ml-20m, ml-25m, ml-latest, ml-latest-small): they
share one format. ``.dat`` and ml-100k files are read as UTF-8 when they are valid UTF-8,
else as Latin-1 (ml-1m's and ml-100k's titles are Latin-1); CSV files must be UTF-8.

A zip is untrusted input: it is never extracted, a member named with an absolute path or a
``..`` part is refused (it is no file of a release), and a member is read in chunks that stop
at ``MAX_MEMBER_BYTES`` (2 GiB; ML-32M's ratings.csv is 0.9 GB) or once it expands more than
``MAX_EXPANSION`` (200) times its compressed size, whatever its header claims: a 5 MB zip
that expands to gigabytes (a zip bomb) fails in a second instead of filling memory.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

CSV_FAMILY = "ml-latest"
MAX_MEMBER_BYTES = 2 << 30
MAX_EXPANSION = 200  # real MovieLens zips expand 3-6 times
_CHUNK = 1 << 20


class DatasetFormatError(ValueError):
    """A dataset that cannot be read at all; the message names the file and what was expected."""


@dataclass(frozen=True)
class FileSpec:
    """How one file of a release is laid out.

    ``kind``: ``"csv"`` (comma, header, RFC-4180 quoting), or ``"lines"`` (one record per
    physical line, split on ``sep``, no header, no quoting).
    ``fields``: the field names in file order for ``lines`` files; the required header
    columns for ``csv`` files.
    """

    role: str
    name: str
    kind: str
    sep: str
    fields: tuple[str, ...]
    encodings: tuple[str, ...]
    required: bool = False
    free_text: str | None = None  # a ``lines`` field that may contain ``sep`` (extra fields join into it)

    @property
    def header(self) -> bool:
        return self.kind == "csv"


_LEGACY = ("utf-8", "latin-1")
_UTF8 = ("utf-8",)

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


@dataclass(frozen=True)
class Release:
    name: str
    rating_min: float
    rating_max: float
    rating_step: float
    files: tuple[FileSpec, ...] = field(default=())

    def spec(self, role: str) -> FileSpec | None:
        return next((f for f in self.files if f.role == role), None)

    @property
    def scale(self) -> list[float]:
        return [self.rating_min, self.rating_max]


_RATING_FIELDS = ("user_id", "item_id", "rating", "timestamp")

ML100K = Release(
    "ml-100k", 1.0, 5.0, 1.0,
    (
        FileSpec("ratings", "u.data", "lines", "\t", _RATING_FIELDS, _LEGACY, required=True),
        FileSpec(
            "items", "u.item", "lines", "|",
            ("item_id", "title", "release_date", "video_release_date", "imdb_url", *(f"g{i}" for i in range(19))),
            _LEGACY, required=True,
        ),
        FileSpec("users", "u.user", "lines", "|", ("user_id", "age", "gender", "occupation", "zip_code"), _LEGACY),
    ),
)  # fmt: skip

ML1M = Release(
    "ml-1m", 1.0, 5.0, 1.0,
    (
        FileSpec("ratings", "ratings.dat", "lines", "::", _RATING_FIELDS, _LEGACY, required=True),
        FileSpec("items", "movies.dat", "lines", "::", ("item_id", "title", "genres"), _LEGACY, required=True, free_text="title"),
        FileSpec("users", "users.dat", "lines", "::", ("user_id", "gender", "age", "occupation", "zip_code"), _LEGACY),
    ),
)  # fmt: skip

ML10M = Release(
    "ml-10m", 0.5, 5.0, 0.5,
    (
        FileSpec("ratings", "ratings.dat", "lines", "::", _RATING_FIELDS, _LEGACY, required=True),
        FileSpec("items", "movies.dat", "lines", "::", ("item_id", "title", "genres"), _LEGACY, required=True, free_text="title"),
        FileSpec("tags", "tags.dat", "lines", "::", ("user_id", "item_id", "tag", "timestamp"), _LEGACY, free_text="tag"),
    ),
)  # fmt: skip

MLLATEST = Release(
    CSV_FAMILY, 0.5, 5.0, 0.5,
    (
        FileSpec("ratings", "ratings.csv", "csv", ",", ("userId", "movieId", "rating", "timestamp"), _UTF8, required=True),
        FileSpec("items", "movies.csv", "csv", ",", ("movieId", "title", "genres"), _UTF8, required=True),
        FileSpec("tags", "tags.csv", "csv", ",", ("userId", "movieId", "tag", "timestamp"), _UTF8),
        FileSpec("links", "links.csv", "csv", ",", ("movieId", "imdbId", "tmdbId"), _UTF8),
    ),
)  # fmt: skip

RELEASES = {r.name: r for r in (ML100K, ML1M, ML10M, MLLATEST)}

# CSV header name -> canonical column name
CSV_COLUMNS = {"userId": "user_id", "movieId": "item_id", "imdbId": "imdb_id", "tmdbId": "tmdb_id"}


# ----------------------------------------------------------------------------- sources


class Source:
    """A folder or zip holding one release; files are addressed by their base name."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"dataset source not found: {self.path}")
        self.is_zip = self.path.is_file()
        if self.is_zip:
            if not zipfile.is_zipfile(self.path):
                raise DatasetFormatError(f"{self.path}: expected a folder or a .zip archive of a MovieLens release")
            with zipfile.ZipFile(self.path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
            for name in names:
                parts = PurePosixPath(name.replace("\\", "/")).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and parts[0].endswith(":")):
                    raise DatasetFormatError(f"{self.path}: member {name!r} has an absolute or '..' path; refused (a release's files lie inside the archive)")
            self._members = _index_members(names)
        else:
            self._members = _index_dir(self.path)

    def find(self, name: str) -> str | None:
        """Key of the file called ``name`` (top level, or inside one folder), or None."""
        return self._members.get(name)

    def read(self, key: str) -> bytes:
        if self.is_zip:
            return self._read_member(key)
        return Path(key).read_bytes()

    def _read_member(self, key: str, max_bytes: int | None = None, max_expansion: float | None = None) -> bytes:
        """A member's bytes, streamed with the size and expansion limits of the module docstring."""
        max_bytes = max_bytes or MAX_MEMBER_BYTES
        max_expansion = max_expansion or MAX_EXPANSION
        with zipfile.ZipFile(self.path) as zf:
            info = zf.getinfo(key)
            allowed = min(max_bytes, max(info.compress_size, 1) * max_expansion)
            label = self.label(key)
            if info.file_size > allowed:
                raise DatasetFormatError(_too_large(label, info.file_size, info.compress_size, max_bytes, max_expansion))
            chunks, size = [], 0
            with zf.open(info) as member:
                while chunk := member.read(_CHUNK):
                    size += len(chunk)
                    if size > allowed:
                        raise DatasetFormatError(_too_large(label, size, info.compress_size, max_bytes, max_expansion, "at least "))
                    chunks.append(chunk)
        return b"".join(chunks)

    def label(self, key: str) -> str:
        """Where a file is, for messages: a path, or ``archive.zip:member``."""
        return f"{self.path}:{key}" if self.is_zip else str(key)


def _too_large(label: str, size: int, packed: int, max_bytes: int, max_expansion: float, qualifier: str = "") -> str:
    return (
        f"{label}: expands to {qualifier}{size:,} bytes from {packed:,} compressed; refused "
        f"(limits: {max_bytes:,} bytes a member, {max_expansion:g} times its compressed size): a damaged or hostile archive"
    )


def _index_members(names: list[str]) -> dict[str, str]:
    """base name -> member, preferring the shallowest (a top folder like ``ml-1m/`` is fine)."""
    out: dict[str, tuple[int, str]] = {}
    for n in names:
        p = PurePosixPath(n)
        if p.name.startswith(".") or "__MACOSX" in p.parts:
            continue
        depth = len(p.parts)
        if depth > 2:
            continue
        if p.name not in out or depth < out[p.name][0]:
            out[p.name] = (depth, n)
    return {k: v for k, (_, v) in out.items()}


def _index_dir(root: Path) -> dict[str, str]:
    names: list[str] = []
    for p in sorted(root.iterdir()):
        if p.is_file():
            names.append(p.name)
        elif p.is_dir() and not p.name.startswith("."):
            names.extend(f"{p.name}/{q.name}" for q in sorted(p.iterdir()) if q.is_file())
    return {k: str(root / v) for k, v in _index_members(names).items()}


def detect_release(source: Source) -> Release:
    if source.find("u.data"):
        return ML100K
    if source.find("ratings.dat"):
        return ML1M if source.find("users.dat") else ML10M
    if source.find("ratings.csv"):
        return MLLATEST
    raise DatasetFormatError(
        f"{source.path}: no ratings file found (expected one of u.data [ml-100k], ratings.dat "
        f"[ml-1m/ml-10m] or ratings.csv [ml-20m/ml-25m/ml-latest], at the top or in one folder)"
    )


def release_files(source: Source, release: Release) -> dict[str, str]:
    """role -> file key for the files of ``release`` present in ``source``; missing required ones raise."""
    found: dict[str, str] = {}
    for spec in release.files:
        key = source.find(spec.name)
        if key is None:
            if spec.required:
                raise DatasetFormatError(
                    f"{source.path}: missing required file {spec.name} (a {release.name} release needs it next to {release.files[0].name})"
                )
            continue
        found[spec.role] = key
    return found


def raw_files(source: Path) -> list[Path]:
    """The files whose bytes define the dataset: a zip itself, or a folder's release data files."""
    source = Path(source)
    src = Source(source)
    if src.is_zip:
        return [source]
    release = detect_release(src)
    return [Path(k) for k in release_files(src, release).values()]
