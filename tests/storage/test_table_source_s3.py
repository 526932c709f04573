"""A table source on s3:// (moto's loopback server): listed through fsspec, fingerprinted by ETag, read like a folder."""

from __future__ import annotations

import pandas as pd

from recflow.data.sources import TableSource
from recflow.data.table import ingest_table, list_parts
from tests.storage.conftest import BUCKET

EVENTS = pd.DataFrame({"uid": ["b", "a", "b", "c"], "movie": [2, 1, 1, 2], "ts": [1_000, 2_000, 3_000, 4_000], "stars": [4.0, 3.5, 5.0, 2.0]})
COLUMNS = {"user": "uid", "item": "movie", "timestamp": "ts", "rating": "stars"}


def _upload(s3, local, url: str) -> None:
    for day, part in EVENTS.groupby(EVENTS["ts"] // 2000):
        (local / f"day={day}").mkdir(parents=True, exist_ok=True)
        part.to_parquet(local / f"day={day}" / "part-0.parquet", index=False)
        s3.fs.put(str(local / f"day={day}" / "part-0.parquet"), f"{url}/day={day}/part-0.parquet")


def test_a_hive_folder_on_s3_gives_the_tables_of_the_same_folder_on_disk_and_its_etags_spare_a_second_read(s3, tmp_path):
    url = f"s3://{BUCKET}/table-source/events"
    _upload(s3, tmp_path / "local", url)
    parts = list_parts(url)
    assert [p.label for p in parts] == ["day=0/part-0.parquet", "day=1/part-0.parquet", "day=2/part-0.parquet"]
    assert all(p.token.startswith("etag:") for p in parts)
    out = {}
    for name, path in (("s3", url), ("disk", str(tmp_path / "local"))):
        (tmp_path / name).mkdir()
        out[name] = ingest_table(TableSource(path=path, columns=COLUMNS), tmp_path / name, tmp_path / f"cache-{name}")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s3" / "ratings.parquet"), pd.read_parquet(tmp_path / "disk" / "ratings.parquet"))
    (tmp_path / "again").mkdir()
    again = ingest_table(TableSource(path=url, columns=COLUMNS), tmp_path / "again", tmp_path / "cache-s3")
    assert (out["s3"]["partitions"]["read"], again["partitions"]["read"], again["partitions"]["reused"]) == (3, 0, 3)
