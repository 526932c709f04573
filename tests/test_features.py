"""Specifications of the user and item feature tables (recflow.prep.features)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recflow.experiments.config import FeaturesConfig
from recflow.prep.features import genre_key, item_features, user_features, write_feature_tables

GENRES = ["action", "animation", "childrens", "comedy", "crime", "drama", "sci_fi"]
GLOBAL_MEAN = 19 / 6  # (5 + 3 + 4 + 2 + 4 + 1) / 6


def ratings(rows) -> pd.DataFrame:
    u, i, r = zip(*rows)
    return pd.DataFrame(
        {
            "user_id": np.array(u, dtype=np.int64),
            "item_id": np.array(i, dtype=np.int64),
            "rating": np.array(r, dtype=np.float32),
            "timestamp": np.arange(len(u), dtype=np.int64),
        }
    )


@pytest.fixture
def items() -> pd.DataFrame:
    # item 4 has no genres, item 5 nobody rated in train; listed out of id order on purpose
    return pd.DataFrame(
        {
            "item_id": np.array([3, 1, 2, 5, 4], dtype=np.int64),
            "title": pd.array(["Alien (1979)", "Toy Story (1995)", "Heat (1995)", "Unseen", "Mystery Doc (2000)"], dtype="str"),
            "year": pd.array([1979, 1995, 1995, pd.NA, 2000], dtype="Int16"),
            "genres": [["Action", "Sci-Fi"], ["Animation", "Children's", "Comedy"], ["Action", "Crime"], ["Drama"], []],
        }
    )


@pytest.fixture
def train() -> pd.DataFrame:
    return ratings(
        [
            (10, 1, 5.0),
            (10, 2, 3.0),
            (10, 3, 4.0),  # mean 4, std 1
            (20, 1, 2.0),
            (20, 3, 4.0),  # mean 3, std sqrt(2)
            (30, 4, 1.0),  # one rating, of an item without genres
        ]
    )


CFG = FeaturesConfig(
    activity_bins=[0, 1, 2, float("inf")],
    activity_labels=["one", "two", "many"],
    popularity_bins=[0, 1, 10, float("inf")],
    popularity_labels=["niche", "moderate", "popular"],
)


# ----------------------------------------------------------------------------- genre names


@pytest.mark.parametrize(
    "name, key",
    [
        ("Children's", "childrens"),
        ("Sci-Fi", "sci_fi"),
        ("Film-Noir", "film_noir"),
        ("IMAX", "imax"),
        ("Action", "action"),
        ("  Weird / Genre!! ", "weird_genre"),
        ("3D", "g_3d"),
    ],
)
def test_genre_key_makes_safe_lower_case_identifiers(name, key):
    assert genre_key(name) == key
    assert key.isidentifier()


# ----------------------------------------------------------------------------- user features


def test_user_feature_columns_in_a_fixed_order(train, items):
    uf = user_features(train, items, CFG)
    assert list(uf.columns) == [
        "user_id",
        "mean_rating",
        "rating_std",
        "rating_count",
        "rating_min",
        "rating_max",
        "rating_strictness",
        "rating_variability",
        *[f"{g}_favorite_degree" for g in GENRES],
        *[f"{g}_rating_cnt" for g in GENRES],
        "favorite_genre",
        "num_liked_genres",
        "activity_level",
    ]
    assert uf["user_id"].tolist() == [10, 20, 30]


def test_user_rating_statistics(train, items):
    uf = user_features(train, items, CFG).set_index("user_id")
    assert uf["mean_rating"].tolist() == pytest.approx([4.0, 3.0, 1.0])
    assert uf["rating_std"].tolist() == pytest.approx([1.0, math.sqrt(2), 0.0])  # ddof=1; 0 for one rating
    assert uf["rating_count"].tolist() == [3, 2, 1]
    assert uf["rating_min"].tolist() == [3.0, 2.0, 1.0]
    assert uf["rating_max"].tolist() == [5.0, 4.0, 1.0]
    assert uf["rating_strictness"].tolist() == pytest.approx([GLOBAL_MEAN - 4, GLOBAL_MEAN - 3, GLOBAL_MEAN - 1])
    assert uf["rating_variability"].tolist() == pytest.approx([1 / 4, math.sqrt(2) / 3, 0.0])


def test_user_genre_counts_and_favorite_degree(train, items):
    uf = user_features(train, items, CFG).set_index("user_id")
    # user 10 rated items 1 (animation, childrens, comedy), 2 (action, crime), 3 (action, sci_fi)
    cnt10 = {"action": 2, "animation": 1, "childrens": 1, "comedy": 1, "crime": 1, "drama": 0, "sci_fi": 1}
    for g, c in cnt10.items():
        assert uf.loc[10, f"{g}_rating_cnt"] == c
        assert uf.loc[10, f"{g}_favorite_degree"] == pytest.approx(c / 7)
    # user 20 rated items 1 and 3: five genres once each
    assert [uf.loc[20, f"{g}_rating_cnt"] for g in GENRES] == [1, 1, 1, 1, 0, 0, 1]
    assert [uf.loc[20, f"{g}_favorite_degree"] for g in GENRES] == pytest.approx([0.2, 0.2, 0.2, 0.2, 0, 0, 0.2])
    # user 30 rated only an item without genres: counts and degrees 0, not NaN
    assert [uf.loc[30, f"{g}_rating_cnt"] for g in GENRES] == [0] * 7
    assert [uf.loc[30, f"{g}_favorite_degree"] for g in GENRES] == [0.0] * 7


def test_favorite_genre_takes_the_max_count_with_ties_to_the_first_sorted_genre(train, items):
    uf = user_features(train, items, CFG).set_index("user_id")
    assert uf.loc[10, "favorite_genre"] == "action"  # count 2
    assert uf.loc[20, "favorite_genre"] == "action"  # five-way tie at 1: first in sorted order
    assert pd.isna(uf.loc[30, "favorite_genre"])  # no genres at all
    assert uf["num_liked_genres"].tolist() == [6, 5, 0]


def test_activity_level_cuts_rating_count_into_labelled_strings(train, items):
    uf = user_features(train, items, CFG)
    assert uf["activity_level"].tolist() == ["many", "two", "one"]
    assert pd.api.types.is_string_dtype(uf["activity_level"])
    default = user_features(train, items, FeaturesConfig())
    assert default["activity_level"].tolist() == ["inactive"] * 3  # (0, 5]


def test_rated_items_missing_from_the_catalogue_count_without_genres(train, items):
    extra = pd.concat([train, ratings([(20, 999, 5.0)])], ignore_index=True)
    uf = user_features(extra, items, CFG).set_index("user_id")
    assert uf.loc[20, "rating_count"] == 3
    assert [uf.loc[20, f"{g}_rating_cnt"] for g in GENRES] == [1, 1, 1, 1, 0, 0, 1]


# ----------------------------------------------------------------------------- item features


def test_item_feature_columns_in_a_fixed_order_one_row_per_catalogue_item(train, items):
    itf = item_features(train, items, CFG)
    assert list(itf.columns) == [
        "item_id",
        "mean_rating",
        "has_train_ratings",
        "rating_std",
        "rating_count",
        "popularity",
        *[f"genre_{g}" for g in GENRES],
        "genre_purity",
        "year",
        "title_length",
    ]
    assert itf["item_id"].tolist() == [1, 2, 3, 4, 5]


def test_item_rating_statistics_with_unrated_items_filled(train, items):
    itf = item_features(train, items, CFG).set_index("item_id")
    assert itf["mean_rating"].tolist() == pytest.approx([3.5, 3.0, 4.0, 1.0, GLOBAL_MEAN])
    assert itf["has_train_ratings"].tolist() == [True, True, True, True, False]
    assert itf["rating_std"].tolist() == pytest.approx([math.sqrt(4.5), 0.0, 0.0, 0.0, 0.0])
    assert itf["rating_count"].tolist() == [2, 1, 2, 1, 0]


def test_item_popularity_buckets_including_unrated(train, items):
    itf = item_features(train, items, CFG).set_index("item_id")
    assert itf["popularity"].tolist() == ["moderate", "niche", "moderate", "niche", "unrated"]
    default = item_features(train, items, FeaturesConfig()).set_index("item_id")
    assert default["popularity"].tolist() == ["niche", "niche", "niche", "niche", "unrated"]


def test_item_genre_multi_hot_and_purity(train, items):
    itf = item_features(train, items, CFG).set_index("item_id")
    multi_hot = itf[[f"genre_{g}" for g in GENRES]]
    assert (multi_hot.dtypes == np.int8).all()
    assert multi_hot.loc[1].tolist() == [0, 1, 1, 1, 0, 0, 0]
    assert multi_hot.loc[2].tolist() == [1, 0, 0, 0, 1, 0, 0]
    assert multi_hot.loc[4].tolist() == [0] * 7
    assert multi_hot.loc[5].tolist() == [0, 0, 0, 0, 0, 1, 0]
    assert itf["genre_purity"].tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 2, 0.0, 1.0])


def test_item_year_and_title_length_without_the_year_suffix(train, items):
    itf = item_features(train, items, CFG).set_index("item_id")
    assert str(itf["year"].dtype) == "Int16"
    assert itf["year"].tolist()[:4] == [1995, 1995, 1979, 2000]
    assert pd.isna(itf.loc[5, "year"])
    # "Toy Story", "Heat", "Alien", "Mystery Doc", "Unseen" (no year to strip)
    assert itf["title_length"].tolist() == [9, 4, 5, 11, 6]


def test_genres_as_numpy_arrays_like_parquet_gives_them(train, items, tmp_path):
    items.to_parquet(tmp_path / "items.parquet", index=False)
    back = pd.read_parquet(tmp_path / "items.parquet")
    pd.testing.assert_frame_equal(item_features(train, back, CFG), item_features(train, items, CFG))
    pd.testing.assert_frame_equal(user_features(train, back, CFG), user_features(train, items, CFG))


def test_no_genres_marker_means_no_genre(train, items):
    marked = items.copy()
    marked["genres"] = [g if g else ["(no genres listed)"] for g in items["genres"]]
    pd.testing.assert_frame_equal(item_features(train, marked, CFG), item_features(train, items, CFG))


# ----------------------------------------------------------------------------- both tables


def test_no_nan_in_numeric_columns_except_year(train, items):
    for table in (user_features(train, items, CFG), item_features(train, items, CFG)):
        numeric = table.select_dtypes(include="number").drop(columns=["year"], errors="ignore")
        assert not numeric.isna().any().any()


def test_features_do_not_depend_on_train_row_order(train, items):
    shuffled = train.sample(frac=1.0, random_state=3).set_axis(range(50, 50 + len(train)))
    pd.testing.assert_frame_equal(user_features(shuffled, items, CFG), user_features(train, items, CFG))
    pd.testing.assert_frame_equal(item_features(shuffled, items, CFG), item_features(train, items, CFG))


def test_features_see_only_the_train_frame_they_are_given(train, items):
    test = ratings([(20, 2, 1.0), (30, 5, 5.0)])  # held-out ratings, kept in a separate frame
    uf, itf = user_features(train, items, CFG), item_features(train, items, CFG)
    # the held-out frame existing changes nothing ...
    pd.testing.assert_frame_equal(user_features(train, items, CFG), uf)
    # ... while features computed on train + test do differ where the test ratings fall
    leaky = pd.concat([train, test], ignore_index=True)
    uf_leaky = user_features(leaky, items, CFG).set_index("user_id")
    itf_leaky = item_features(leaky, items, CFG).set_index("item_id")
    assert uf.set_index("user_id").loc[20, "mean_rating"] == pytest.approx(3.0)
    assert uf_leaky.loc[20, "mean_rating"] == pytest.approx(7 / 3)
    assert not itf.set_index("item_id").loc[5, "has_train_ratings"]
    assert itf_leaky.loc[5, "has_train_ratings"]
    # user 10 has no test rating: its mean is unchanged, its strictness moves with the global mean
    assert uf_leaky.loc[10, "mean_rating"] == pytest.approx(4.0)
    assert uf.set_index("user_id").loc[10, "rating_strictness"] == pytest.approx(GLOBAL_MEAN - 4)
    assert uf_leaky.loc[10, "rating_strictness"] == pytest.approx(25 / 8 - 4)


def test_empty_train_is_an_error(items):
    with pytest.raises(ValueError, match="empty"):
        user_features(ratings([(1, 1, 1.0)]).iloc[:0], items, CFG)


# ----------------------------------------------------------------------------- writing


def test_write_feature_tables_writes_parquet_and_returns_a_json_able_manifest(train, items, tmp_path):
    out = tmp_path / "features"
    manifest = write_feature_tables(train, items, CFG, out, {"split": "abc123", "items": "def456"})
    json.dumps(manifest)
    assert manifest["inputs"] == {"split": "abc123", "items": "def456"}
    assert manifest["genres"] == GENRES
    assert manifest["genre_names"]["childrens"] == ["Children's"]
    assert manifest["global_train_mean"] == pytest.approx(GLOBAL_MEAN)
    uf = pd.read_parquet(out / "user_features.parquet")
    itf = pd.read_parquet(out / "item_features.parquet")
    assert manifest["tables"]["user_features"]["rows"] == len(uf) == 3
    assert manifest["tables"]["item_features"]["rows"] == len(itf) == 5
    schema = manifest["tables"]["item_features"]["schema"]
    assert list(schema) == list(itf.columns)
    assert schema["genre_action"] == "int8"
    assert schema["year"] == "int16"
    assert schema["has_train_ratings"] == "bool"
    assert manifest["tables"]["user_features"]["schema"] == {f.name: str(f.type) for f in pq.read_schema(out / "user_features.parquet")}
    pd.testing.assert_frame_equal(uf, user_features(train, items, CFG), check_dtype=False)
    assert uf["favorite_genre"].isna().tolist() == [False, False, True]
