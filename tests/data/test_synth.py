"""Synthetic datasets: real MovieLens formats, exact sizes, no repeated pairs, learnable structure."""

from __future__ import annotations

import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from recflow.data import ingest_dataset, write_synthetic

FILES = {
    "ml-25m": ["README.txt", "links.csv", "movies.csv", "ratings.csv", "tags.csv"],
    "ml-1m": ["README.txt", "movies.dat", "ratings.dat", "users.dat"],
    "ml-100k": ["README.txt", "u.data", "u.genre", "u.item", "u.occupation", "u.user"],
}
RELEASE = {"ml-25m": "ml-latest", "ml-1m": "ml-1m", "ml-100k": "ml-100k"}
GRID = {"ml-25m": np.arange(1, 11) / 2, "ml-1m": np.arange(1, 6.0), "ml-100k": np.arange(1, 6.0)}


@pytest.mark.parametrize("fmt", ["ml-25m", "ml-1m", "ml-100k"])
def test_round_trips_through_ingest(tmp_path, fmt):
    src = write_synthetic(tmp_path / "src", n_users=60, n_items=40, n_ratings=900, format=fmt, seed=3)
    out = tmp_path / "out"
    out.mkdir()

    summary = ingest_dataset(src, out)

    assert sorted(p.name for p in src.iterdir()) == FILES[fmt]
    assert summary["release"] == RELEASE[fmt]
    assert summary["rows_rejected"] == 0
    assert summary["n_ratings"] == 900
    assert summary["n_users"] == 60  # every user rated something
    assert summary["files"]["items"] == 40
    if fmt != "ml-25m":
        assert summary["files"]["users"] == 60
    ratings = pq.read_table(out / "ratings.parquet").to_pandas()
    assert not ratings.duplicated(["user_id", "item_id"]).any()
    assert set(ratings["rating"].unique()) <= set(GRID[fmt])
    assert ratings["user_id"].between(1, 60).all() and ratings["item_id"].between(1, 40).all()


def test_ml25m_side_files(tmp_path):
    src = write_synthetic(tmp_path / "src", n_users=200, n_items=100, n_ratings=5000, seed=1)
    out = tmp_path / "out"
    out.mkdir()
    summary = ingest_dataset(src, out)

    items = pq.read_table(out / "items.parquet").to_pylist()
    assert all(re.fullmatch(r"Synthetic Movie \d+(, The)? \(\d{4}\)", i["title"]) for i in items)
    assert items[16]["title"].startswith("Synthetic Movie 17 (")
    assert items[9]["title"].startswith("Synthetic Movie 10, The (")  # a comma: quoted in movies.csv
    assert all(1900 <= i["year"] <= 2019 for i in items)
    assert summary["files"]["links"] == 100
    assert summary["files"]["tags"] > 0
    assert (src / "ratings.csv").read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    assert re.fullmatch(r"\d+,\d+,\d\.\d,\d+", (src / "ratings.csv").read_text().splitlines()[1])


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    def make(name, seed):
        return write_synthetic(tmp_path / name, n_users=50, n_items=30, n_ratings=400, format="ml-1m", seed=seed)

    a, b, c = make("a", 7), make("b", 7), make("c", 8)
    for name in ("ratings.dat", "movies.dat", "users.dat"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "ratings.dat").read_bytes() != (c / "ratings.dat").read_bytes()


def test_dense_extreme_every_pair_once(tmp_path):
    src = write_synthetic(tmp_path / "src", n_users=7, n_items=5, n_ratings=35, format="ml-100k")
    rows = [line.split("\t") for line in (src / "u.data").read_text().splitlines()]
    assert sorted((int(u), int(i)) for u, i, _, _ in rows) == [(u, i) for u in range(1, 8) for i in range(1, 6)]


def test_timestamps_increase_along_each_users_rows(tmp_path):
    src = write_synthetic(tmp_path / "src", n_users=100, n_items=80, n_ratings=3000, format="ml-1m")
    rows = np.array([[int(x) for x in line.split("::")] for line in (src / "ratings.dat").read_text().splitlines()])
    users, ts = rows[:, 0], rows[:, 3]
    same_user = users[1:] == users[:-1]
    assert (np.diff(users) >= 0).all()  # grouped by user
    assert (ts[1:][same_user] >= ts[:-1][same_user]).all()


def test_popularity_is_skewed_and_ratings_carry_signal(tmp_path):
    src = write_synthetic(tmp_path / "src", n_users=1500, n_items=1000, n_ratings=60_000, seed=0)
    out = tmp_path / "out"
    out.mkdir()
    ingest_dataset(src, out)
    r = pq.read_table(out / "ratings.parquet").to_pandas()

    per_item = np.sort(r.groupby("item_id").size().to_numpy())[::-1]
    assert per_item[:100].sum() > 0.3 * len(r)  # top 10% of items draw a large share
    per_user = r.groupby("user_id").size()
    assert per_user.max() > 5 * per_user.median()  # heavy-tailed activity
    assert 3.0 < r["rating"].mean() < 4.0
    # user means differ far more than noise would allow: there is a user effect to learn
    means = r.groupby("user_id")["rating"].mean()[per_user >= 20]
    assert means.std() > 0.25


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 10, "n_items": 5, "n_ratings": 9},  # fewer ratings than users
        {"n_users": 2, "n_items": 3, "n_ratings": 7},  # more than every pair
        {"n_users": 2, "n_items": 3, "n_ratings": 4, "format": "ml-20m"},
    ],
)
def test_impossible_requests_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        write_synthetic(tmp_path, **kwargs)
