"""Tasks read a split once per process: the parts are shared by content fingerprint and read-only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.runtime.store import Artifact
from tasks.loading import load_parts


def write_split(home, name: str, users: list[int]) -> Artifact:
    folder = home / "split" / name
    folder.mkdir(parents=True)
    frame = pd.DataFrame({"user_id": users, "item_id": [1] * len(users), "rating": [4.0] * len(users), "timestamp": [0] * len(users)})
    frame["split"] = pd.Categorical(["train"] * len(users), categories=["train", "valid", "test"])
    frame.to_parquet(folder / "split.parquet")
    return Artifact(stage="split", key=name, fingerprint=f"fp-{name}", path=f"split/{name}")


def test_a_second_read_of_one_split_shares_the_first_reads_parts(recflow_home):
    split = write_split(recflow_home, "a", [1, 2])
    first = load_parts(split)
    (recflow_home / "split" / "a" / "split.parquet").unlink()  # not read again
    assert load_parts(split) is first


def test_another_split_is_read_from_its_own_file(recflow_home):
    load_parts(write_split(recflow_home, "a", [1, 2]))
    other = load_parts(write_split(recflow_home, "b", [5, 6, 7]))
    np.testing.assert_array_equal(other["train"].user_ids, [5, 6, 7])


def test_shared_parts_cannot_be_changed_by_a_task(recflow_home):
    train = load_parts(write_split(recflow_home, "a", [1, 2]))["train"]
    with pytest.raises(ValueError, match="read-only"):
        train.ratings[0] = 1.0
