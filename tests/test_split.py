"""Specifications of the split protocols (recflow.prep.split)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recflow.experiments.config import SplitConfig
from recflow.prep.split import (
    PARTS,
    NothingToEvaluate,
    check_evaluable,
    recbole_counts,
    split_ratings,
    user_random_counts,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def frame(rows) -> pd.DataFrame:
    """Canonical ratings frame from (user_id, item_id, rating, timestamp) tuples."""
    u, i, r, t = zip(*rows) if rows else ((), (), (), ())
    return pd.DataFrame(
        {
            "user_id": np.array(u, dtype=np.int64),
            "item_id": np.array(i, dtype=np.int64),
            "rating": np.array(r, dtype=np.float32),
            "timestamp": np.array(t, dtype=np.int64),
        }
    )


def random_frame(n_users=60, n_items=80, seed=0, min_per_user=1, max_per_user=30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        k = int(rng.integers(min_per_user, max_per_user + 1))
        for i in rng.choice(np.arange(1, n_items + 1), size=k, replace=False):
            rows.append((u * 7, int(i) * 3, float(rng.integers(1, 6)), int(rng.integers(0, 1000))))
    return frame(rows)


def labels(res) -> dict[tuple[int, int], str]:
    f = res.frame
    return dict(zip(zip(f["user_id"].tolist(), f["item_id"].tolist()), f["split"].astype(str).tolist()))


def part_pairs(res, name) -> set[tuple[int, int]]:
    return {k for k, v in labels(res).items() if v == name}


def shuffled(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    out = df.sample(frac=1.0, random_state=seed)
    out.index = np.arange(100, 100 + len(out))[::-1]  # a scrambled, non-default index
    return out


ALL_PROTOCOLS = ["temporal", "user_temporal", "user_random", "leave_last_k", "random", "recbole"]


# ----------------------------------------------------------------------------- output frame


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS)
def test_output_has_input_columns_plus_categorical_split_in_canonical_order(protocol):
    df = random_frame(seed=1)
    res = split_ratings(df, SplitConfig(protocol=protocol, valid_fraction=0.1))
    f = res.frame
    assert list(f.columns) == ["user_id", "item_id", "rating", "timestamp", "split"]
    assert f["split"].dtype == "category"
    assert list(f["split"].cat.categories) == list(PARTS)
    assert f[["user_id", "item_id", "rating", "timestamp"]].dtypes.tolist() == df.dtypes.tolist()
    expected_order = f.sort_values(["user_id", "timestamp", "item_id"]).index
    assert (f.index == expected_order).all()
    assert (f.index == pd.RangeIndex(len(f))).all()


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS)
def test_same_input_and_seed_give_identical_output(protocol):
    df = random_frame(seed=2)
    cfg = SplitConfig(protocol=protocol, valid_fraction=0.1, seed=7)
    a, b = split_ratings(df, cfg), split_ratings(df, cfg)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.stats == b.stats


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS)
def test_output_does_not_depend_on_input_row_order(protocol):
    df = random_frame(seed=3)
    cfg = SplitConfig(protocol=protocol, valid_fraction=0.1, seed=11)
    a = split_ratings(df, cfg)
    b = split_ratings(shuffled(df, 5), cfg)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.stats == b.stats


@pytest.mark.parametrize("protocol", ["user_random", "random", "recbole"])
def test_a_different_seed_gives_a_different_split(protocol):
    df = random_frame(seed=4)
    a = split_ratings(df, SplitConfig(protocol=protocol, valid_fraction=0.1, seed=1))
    b = split_ratings(df, SplitConfig(protocol=protocol, valid_fraction=0.1, seed=2))
    assert part_pairs(a, "test") != part_pairs(b, "test")
    assert a.stats["parts"]["test"]["rows"] == b.stats["parts"]["test"]["rows"]  # sizes do not depend on it


@pytest.mark.parametrize("protocol", ["temporal", "user_temporal", "leave_last_k"])
def test_time_based_protocols_ignore_the_seed(protocol):
    df = random_frame(seed=4)
    a = split_ratings(df, SplitConfig(protocol=protocol, seed=1))
    b = split_ratings(df, SplitConfig(protocol=protocol, seed=2))
    pd.testing.assert_frame_equal(a.frame, b.frame)


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS)
def test_without_filters_every_row_is_kept_exactly_once(protocol):
    df = random_frame(seed=5)
    res = split_ratings(df, SplitConfig(protocol=protocol, valid_fraction=0.1))
    out = res.frame.drop(columns="split").sort_values(["user_id", "item_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(out, df.sort_values(["user_id", "item_id"]).reset_index(drop=True))
    assert res.stats["rows"] == res.stats["rows_in"] == len(df)
    assert res.stats["dropped"] == {"min_rating": 0, "kcore": 0}


@pytest.mark.parametrize("protocol", ["user_random", "user_temporal", "leave_last_k", "recbole"])
def test_per_user_protocols_keep_every_user_in_train(protocol):
    df = random_frame(seed=6)
    res = split_ratings(df, SplitConfig(protocol=protocol, valid_fraction=0.1))
    train_users = set(res.frame.loc[res.frame["split"] == "train", "user_id"])
    assert train_users == set(df["user_id"])


def test_stats_are_json_able_and_count_every_part():
    import json

    df = random_frame(seed=7)
    res = split_ratings(df, SplitConfig(protocol="user_random", valid_fraction=0.1))
    json.dumps(res.stats)
    f = res.frame
    for name in PARTS:
        sub = f[f["split"] == name]
        entry = res.stats["parts"][name]
        assert entry["rows"] == len(sub)
        assert entry["users"] == sub["user_id"].nunique()
        assert entry["items"] == sub["item_id"].nunique()
    train_items = set(f.loc[f["split"] == "train", "item_id"])
    test = f[f["split"] == "test"]
    assert res.stats["parts"]["test"]["rows_item_not_in_train"] == int((~test["item_id"].isin(train_items)).sum())
    assert res.stats["n_users"] == df["user_id"].nunique()
    assert res.stats["n_items"] == df["item_id"].nunique()
    assert res.stats["protocol"] == "user_random"


def test_part_returns_the_rows_of_one_part_without_the_split_column():
    df = random_frame(seed=8)
    res = split_ratings(df, SplitConfig(protocol="random"))
    train = res.part("train")
    assert list(train.columns) == list(df.columns)
    assert len(train) == res.stats["parts"]["train"]["rows"]


def test_missing_columns_are_rejected():
    with pytest.raises(ValueError, match="timestamp"):
        split_ratings(frame([(1, 1, 4.0, 1)]).drop(columns="timestamp"), SplitConfig())


def test_empty_input_gives_an_empty_split():
    res = split_ratings(frame([]), SplitConfig(protocol="recbole"))
    assert len(res.frame) == 0
    assert res.stats["rows"] == 0


# ----------------------------------------------------------------------------- temporal


def test_temporal_takes_the_latest_rows_globally_with_ties_by_user_then_item():
    # ten rows; timestamps 1..8 with two ties at 9 (users 2 and 3) and the latest at 10
    rows = [(1, 10 + k, 4.0, k + 1) for k in range(7)]  # user 1 at t=1..7
    rows += [(3, 50, 3.0, 9), (2, 60, 3.0, 9), (2, 61, 5.0, 10)]
    cfg = SplitConfig(protocol="temporal", test_fraction=0.2, valid_fraction=0.1)
    res = split_ratings(frame(rows), cfg)
    assert part_pairs(res, "test") == {(3, 50), (2, 61)}  # t=10, then the tie at t=9 won by user 3
    assert part_pairs(res, "valid") == {(2, 60)}
    assert len(part_pairs(res, "train")) == 7


def test_temporal_fractions_round_half_up():
    rows = [(1, k, 4.0, k) for k in range(15)]
    res = split_ratings(frame(rows), SplitConfig(protocol="temporal", test_fraction=0.1))  # 1.5 -> 2
    assert part_pairs(res, "test") == {(1, 13), (1, 14)}


# ----------------------------------------------------------------------------- user_random


def test_user_random_counts_per_user():
    n = np.array([1, 2, 3, 10, 15, 20])
    train, valid, test = user_random_counts(n, valid_fraction=0.1, test_fraction=0.2)
    assert test.tolist() == [0, 1, 1, 2, 3, 4]
    assert valid.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.tolist() == [1, 1, 1, 7, 10, 14]
    _, valid0, _ = user_random_counts(n, valid_fraction=0.0, test_fraction=0.2)
    assert valid0.tolist() == [0] * 6


def test_user_random_splits_each_user_by_its_own_counts():
    rows = [(1, 100, 4.0, 1)]  # a single row stays in train
    rows += [(2, 200 + k, 4.0, k) for k in range(2)]
    rows += [(3, 300 + k, 4.0, k) for k in range(10)]
    res = split_ratings(frame(rows), SplitConfig(protocol="user_random", test_fraction=0.2, valid_fraction=0.1))
    f = res.frame
    counts = f.groupby(["user_id", "split"], observed=False).size().unstack()[list(PARTS)]
    assert counts.loc[1].tolist() == [1, 0, 0]
    assert counts.loc[2].tolist() == [1, 0, 1]
    assert counts.loc[3].tolist() == [7, 1, 2]


def test_user_random_is_not_the_time_order():
    # over many seeds the test row of a 2-row user is sometimes the earlier one
    df = frame([(1, 1, 4.0, 1), (1, 2, 4.0, 2)])
    tested = {next(iter(part_pairs(split_ratings(df, SplitConfig(protocol="user_random", seed=s)), "test"))) for s in range(20)}
    assert tested == {(1, 1), (1, 2)}


# ----------------------------------------------------------------------------- user_temporal


def test_user_temporal_tests_each_users_latest_share_of_rows():
    rows = [(1, 10 + k, 4.0, 100 - k) for k in range(10)]  # 10 rows, latest (t=100) is item 10: 1 test
    rows += [(2, 20 + k, 4.0, k) for k in range(5)]  # 5 rows: round(0.5) = 1 test, item 24
    rows += [(3, 30, 4.0, 7), (3, 31, 4.0, 7)]  # 2 rows in the same second: item id decides, 31 is later
    rows += [(4, 40, 4.0, 1)]  # one row: train only
    res = split_ratings(frame(rows), SplitConfig(protocol="user_temporal", test_fraction=0.1))
    assert part_pairs(res, "test") == {(1, 10), (2, 24), (3, 31)}
    assert part_pairs(res, "valid") == set()
    assert res.stats["parts"]["test"]["users"] == 3


def test_user_temporal_with_valid_takes_the_rows_before_test():
    rows = [(1, 10 + k, 4.0, k) for k in range(10)]  # 10 rows, 20% test, 10% valid: 7 train, 1 valid, 2 test
    cfg = SplitConfig(protocol="user_temporal", test_fraction=0.2, valid_fraction=0.1)
    res = split_ratings(frame(rows), cfg)
    assert part_pairs(res, "test") == {(1, 18), (1, 19)}
    assert part_pairs(res, "valid") == {(1, 17)}


def test_user_temporal_tests_users_the_global_cut_off_leaves_out():
    # user 1 stopped rating early: a global 25% temporal holdout tests only user 2
    rows = [(1, 10, 4.0, 1), (1, 11, 4.0, 2), (2, 10, 4.0, 3), (2, 11, 4.0, 4), (2, 12, 4.0, 5), (2, 13, 4.0, 6)]
    glob = split_ratings(frame(rows), SplitConfig(protocol="temporal", test_fraction=0.25))
    per_user = split_ratings(frame(rows), SplitConfig(protocol="user_temporal", test_fraction=0.25))
    assert glob.stats["parts"]["test"]["users"] == 1
    assert part_pairs(per_user, "test") == {(1, 11), (2, 13)}


# ----------------------------------------------------------------------------- leave_last_k


def test_leave_last_k_holds_out_each_users_latest_rows():
    rows = [(1, 10, 4.0, 4), (1, 11, 4.0, 1), (1, 12, 4.0, 3), (1, 13, 4.0, 2), (1, 14, 4.0, 5)]
    rows += [(2, 10, 4.0, 7), (2, 11, 4.0, 7)]  # same second: item id decides, 11 is "later"
    rows += [(3, 10, 4.0, 1)]  # one row: train only
    res = split_ratings(frame(rows), SplitConfig(protocol="leave_last_k", last_k=1))
    assert part_pairs(res, "test") == {(1, 14), (2, 11)}
    assert part_pairs(res, "valid") == set()


def test_leave_last_k_with_valid_takes_the_k_before_test_and_fills_test_first():
    rows = [(1, 10 + k, 4.0, k) for k in range(5)]  # 5 rows, k=2: 1 train, 2 valid, 2 test
    rows += [(2, 20 + k, 4.0, k) for k in range(4)]  # 4 rows = 2k: test only, train keeps 2
    rows += [(3, 30 + k, 4.0, k) for k in range(2)]  # 2 rows <= k: all train
    cfg = SplitConfig(protocol="leave_last_k", last_k=2, valid_fraction=0.1)
    res = split_ratings(frame(rows), cfg)
    assert part_pairs(res, "test") == {(1, 13), (1, 14), (2, 22), (2, 23)}
    assert part_pairs(res, "valid") == {(1, 11), (1, 12)}
    assert part_pairs(res, "train") == {(1, 10), (2, 20), (2, 21), (3, 30), (3, 31)}


# ----------------------------------------------------------------------------- random


def test_random_split_sizes_are_global_fractions():
    df = random_frame(seed=9)
    n = len(df)
    res = split_ratings(df, SplitConfig(protocol="random", test_fraction=0.1, valid_fraction=0.05))
    parts = res.stats["parts"]
    assert parts["test"]["rows"] == int(np.floor(0.1 * n + 0.5))
    assert parts["valid"]["rows"] == int(np.floor(0.05 * n + 0.5))
    assert parts["train"]["rows"] == n - parts["test"]["rows"] - parts["valid"]["rows"]


def test_random_split_is_not_per_user():
    # 20 users with 10 rows: a global 10 % holdout leaves some users with no test row
    rows = [(u, i, 4.0, i) for u in range(20) for i in range(10)]
    res = split_ratings(frame(rows), SplitConfig(protocol="random", test_fraction=0.1))
    per_user = res.frame[res.frame["split"] == "test"].groupby("user_id").size()
    assert per_user.sum() == 20
    assert len(per_user) < 20


# ----------------------------------------------------------------------------- recbole


@pytest.mark.parametrize(
    "n, expected",
    [
        (1, (1, 0, 0)),  # train <= 1: nothing moves
        (2, (1, 0, 1)),  # 0.2 -> test gets one, then train is 1 and the loop stops
        (3, (1, 1, 1)),
        (5, (3, 1, 1)),
        (9, (7, 1, 1)),
        (10, (8, 1, 1)),
        (15, (13, 1, 1)),
        (19, (17, 1, 1)),
        (20, (16, 2, 2)),
        (25, (21, 2, 2)),
        (99, (81, 9, 9)),
    ],
)
def test_recbole_counts_follow_calcu_split_ids(n, expected):
    train, valid, test = recbole_counts(np.array([n]), valid_fraction=0.1, test_fraction=0.1)
    assert (int(train[0]), int(valid[0]), int(test[0])) == expected


def test_recbole_counts_without_valid():
    train, valid, test = recbole_counts(np.array([1, 2, 5, 10]), valid_fraction=0.0, test_fraction=0.1)
    assert train.tolist() == [1, 1, 4, 9]
    assert valid.tolist() == [0, 0, 0, 0]
    assert test.tolist() == [0, 1, 1, 1]


def test_recbole_split_sizes_per_user():
    rows = [(1, k, 4.0, k) for k in range(10)] + [(2, k, 4.0, k) for k in range(25)] + [(3, 0, 4.0, 0)]
    res = split_ratings(frame(rows), SplitConfig(protocol="recbole", valid_fraction=0.1, test_fraction=0.1))
    counts = res.frame.groupby(["user_id", "split"], observed=False).size().unstack()[list(PARTS)]
    assert counts.loc[1].tolist() == [8, 1, 1]
    assert counts.loc[2].tolist() == [21, 2, 2]
    assert counts.loc[3].tolist() == [1, 0, 0]


# ----------------------------------------------------------------------------- filters


def test_kcore_repeats_until_stable():
    # min 2 per user and item. Pass 1 drops item 3 (one rating); that leaves user C with one
    # rating, so pass 2 drops C; then items 1 and 2 still have 2 ratings each: stable.
    A, B, C = 1, 2, 3
    rows = [(A, 1, 4.0, 1), (A, 2, 4.0, 2), (B, 1, 4.0, 3), (B, 2, 4.0, 4), (C, 2, 4.0, 5), (C, 3, 4.0, 6)]
    cfg = SplitConfig(protocol="random", min_user_interactions=2, min_item_interactions=2)
    res = split_ratings(frame(rows), cfg)
    assert set(labels(res)) == {(A, 1), (A, 2), (B, 1), (B, 2)}
    assert res.stats["dropped"]["kcore"] == 2
    assert res.stats["kcore_iterations"] == 2


def test_kcore_cascade_can_empty_everything():
    # a 2-regular chain broken at one end unravels completely under a 2/2 core
    rows = [(1, 1, 4.0, 1), (1, 2, 4.0, 2), (2, 2, 4.0, 3), (2, 3, 4.0, 4), (3, 3, 4.0, 5)]
    res = split_ratings(frame(rows), SplitConfig(min_user_interactions=2, min_item_interactions=2))
    assert len(res.frame) == 0
    assert res.stats["dropped"]["kcore"] == 5


def test_min_rating_drops_low_ratings_before_the_kcore():
    # user 1's two low ratings go first; then user 1 (one rating left) fails the 2-core
    rows = [(1, 1, 2.0, 1), (1, 2, 2.5, 2), (1, 3, 4.0, 3), (2, 3, 3.0, 4), (2, 4, 5.0, 5)]
    cfg = SplitConfig(protocol="temporal", min_rating=3, min_user_interactions=2)
    res = split_ratings(frame(rows), cfg)
    assert set(labels(res)) == {(2, 3), (2, 4)}
    assert res.stats["dropped"] == {"min_rating": 2, "kcore": 1}


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS)
def test_filters_apply_to_every_protocol(protocol):
    df = random_frame(seed=10)
    cfg = SplitConfig(protocol=protocol, min_rating=3, min_user_interactions=5, min_item_interactions=3)
    res = split_ratings(df, cfg)
    f = res.frame
    assert (f["rating"] >= 3).all()
    assert f.groupby("user_id").size().min() >= 5
    assert f.groupby("item_id").size().min() >= 3
    assert res.stats["dropped"]["min_rating"] == int((df["rating"] < 3).sum())


# ----------------------------------------------------------------------------- ml-1m


def read_ml1m_ratings(folder: Path) -> pd.DataFrame:
    raw = (folder / "ratings.dat").read_bytes().replace(b"::", b"\t")
    return pd.read_csv(
        io.BytesIO(raw),
        sep="\t",
        header=None,
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype={"user_id": "int64", "item_id": "int64", "rating": "float32", "timestamp": "int64"},
    )


@pytest.mark.shared_data
def test_recbole_protocol_on_ml1m_keeps_the_published_interactions():
    folder = SHARED_DATASETS / "ml-1m"
    if not (folder / "ratings.dat").is_file():
        pytest.skip(f"shared dataset not found: {folder}")
    ratings = read_ml1m_ratings(folder)
    cfg = SplitConfig(protocol="recbole", min_rating=3, min_user_interactions=10, min_item_interactions=10, valid_fraction=0.1, test_fraction=0.1)
    res = split_ratings(ratings, cfg)
    assert res.stats["rows"] == 834_449
    assert res.stats["n_users"] == 6_033
    assert res.stats["n_items"] == 3_123
    parts = res.stats["parts"]
    # the per-user sizes follow from the counts alone, so these do not depend on the seed
    assert (parts["train"]["rows"], parts["valid"]["rows"], parts["test"]["rows"]) == (673_059, 80_695, 80_695)
    assert parts["test"]["users"] == parts["valid"]["users"] == 6_033


# ----------------------------------------------------------------------------- nothing to evaluate


def test_a_one_row_dataset_has_nothing_to_evaluate_and_the_error_says_why():
    res = split_ratings(frame([(1, 10, 4.0, 1)]), SplitConfig(protocol="user_random", test_fraction=0.2))
    with pytest.raises(NothingToEvaluate) as error:
        check_evaluable(res.stats)
    assert str(error.value).startswith(
        "nothing to evaluate: the user_random split kept 1 of 1 ratings, 1 users; the test part has 0 rows of 0 users; no rating went to the test part."
    )


def test_a_split_whose_test_users_are_all_cold_has_nothing_to_evaluate():
    # user 1 rated first (train); user 2's only rating is the latest: the temporal test part is user 2 alone
    rows = [(1, 10, 4.0, 1), (1, 11, 4.0, 2), (2, 10, 3.0, 3)]
    res = split_ratings(frame(rows), SplitConfig(protocol="temporal", test_fraction=0.34))
    assert res.stats["parts"]["test"]["users_not_in_train"] == 1
    with pytest.raises(
        NothingToEvaluate,
        match=r"the test part has 1 rows of 1 users; all 1 test users are cold "
        r"\(no training ratings\), so no model can rank items for them",
    ):
        check_evaluable(res.stats)


def test_a_split_with_one_warm_test_row_is_evaluable():
    rows = [(1, 10, 4.0, 1), (2, 11, 4.0, 2), (1, 12, 3.0, 3)]
    res = split_ratings(frame(rows), SplitConfig(protocol="temporal", test_fraction=0.34))
    check_evaluable(res.stats)  # user 1's latest rating is in test and user 1 has a train rating


# ----------------------------------------------------------------------------- time_forward

DAY = 86_400
MON_2026_11_30 = 1_796_083_200 - 86_400  # a Monday, 00:00 UTC


def test_time_forward_tests_on_the_newest_day_and_counts_its_cold_users_and_items():
    t0 = MON_2026_11_30
    rows = [
        (1, 10, 4.0, t0 + 100),
        (1, 11, 3.0, t0 + DAY + 5),
        (2, 10, 5.0, t0 + DAY + 10),
        (1, 12, 4.0, t0 + 2 * DAY),  # the newest day: test
        (3, 10, 2.0, t0 + 2 * DAY + 50),  # user 3 is new after the cut-off
        (2, 13, 4.0, t0 + 2 * DAY + 60),  # item 13 too
    ]
    res = split_ratings(frame(rows), SplitConfig(protocol="time_forward", period="day"))
    assert res.part("test")["timestamp"].min() == t0 + 2 * DAY and len(res.part("test")) == 3
    assert len(res.part("train")) == 3 and len(res.part("valid")) == 0
    assert res.stats["time_forward"] == {
        "period": "day",
        "cutoff": t0 + 2 * DAY,
        "valid_cutoff": t0 + 2 * DAY,
        "cold_users": 1,
        "cold_items": 2,  # 12 and 13 have no train row
        "cold_user_rows": 1,
        "cold_item_rows": 2,
    }


def test_time_forward_weeks_start_on_monday_and_valid_periods_take_the_ones_before():
    t0 = MON_2026_11_30
    rows = [(1, 10, 4.0, t0 - 3 * DAY), (1, 11, 4.0, t0 - DAY), (2, 10, 4.0, t0 + 6 * DAY + 1), (1, 12, 4.0, t0 + 8 * DAY)]
    res = split_ratings(frame(rows), SplitConfig(protocol="time_forward", period="week", valid_periods=1))
    assert res.stats["time_forward"]["cutoff"] == t0 + 7 * DAY
    assert res.stats["time_forward"]["valid_cutoff"] == t0
    assert res.frame["split"].tolist() == ["train", "train", "test", "valid"]  # canonical order: user, time


def test_time_forward_months_are_calendar_months():
    dec_1 = MON_2026_11_30 + DAY
    rows = [(1, 10, 4.0, dec_1 - 1), (1, 11, 4.0, dec_1 + 20 * DAY)]
    res = split_ratings(frame(rows), SplitConfig(protocol="time_forward", period="month"))
    assert res.stats["time_forward"]["cutoff"] == dec_1
    assert res.frame["split"].tolist() == ["train", "test"]
