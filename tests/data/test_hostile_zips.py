"""A zip is untrusted: members outside the archive's tree are refused, a member that expands past the limits fails fast."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from recflow.data import releases
from recflow.data.ingest import ingest_dataset
from recflow.data.releases import DatasetFormatError, Source
from tests.data.conftest import ML1M


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("member", ["/ratings.dat", "../movies.dat", "ml-1m/../../users.dat", "..\\users.dat", "C:/ratings.dat"])
def test_a_member_with_an_absolute_or_parent_path_is_refused(tmp_path, member):
    files = {**ML1M}
    name = Path(member.replace("\\", "/")).name
    files.pop(name)
    archive = zip_of(tmp_path / "ml-1m.zip", {**files, member: ML1M[name]})
    with pytest.raises(DatasetFormatError, match=r"member .* has an absolute or '\.\.' path; refused"):
        Source(archive)


def test_a_member_expanding_more_than_the_ratio_allows_is_refused_before_it_is_read(tmp_path):
    bomb = ML1M["ratings.dat"] + b"\n" * (64 << 20)  # 64 MiB of newlines: ~64 KiB compressed
    archive = zip_of(tmp_path / "ml-1m.zip", {**ML1M, "ratings.dat": bomb})
    with pytest.raises(DatasetFormatError, match=r"ratings.dat: expands to 67,108,9\d\d bytes from [\d,]+ compressed; refused"):
        ingest_dataset(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_member_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(releases, "MAX_MEMBER_BYTES", 100)
    archive = zip_of(tmp_path / "ml-1m.zip", {**ML1M, "movies.dat": bytes(range(256)) * 4})
    with pytest.raises(DatasetFormatError, match=r"movies.dat: expands to 1,024 bytes .*limits: 100 bytes a member"):
        Source(archive).read("movies.dat")


def test_a_member_within_the_limits_reads_whole(tmp_path):
    archive = zip_of(tmp_path / "ml-1m.zip", ML1M)
    assert Source(archive).read("ratings.dat") == ML1M["ratings.dat"]
