"""Baseline predictor r_ui = mu + b_u + b_i, fitted like Surprise's ``BaselineOnly`` (ALS)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from recflow.evaluation.metrics import rmse
from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.models.search_space import Dimension, FloatRange
from recflow.prep.interactions import Interactions


class BiasRecommender(Recommender):
    """Global mean plus user and item biases, by alternating ridge steps.

    Each epoch (Surprise 1.1 ``baseline_als``, vectorised with ``np.bincount``)::

        b_i = sum_{u in R(i)} (r_ui - mu - b_u) / (reg_item + |R(i)|)     for every item
        b_u = sum_{i in R(u)} (r_ui - mu - b_i) / (reg_user + |R(u)|)     for every user

    starting from b = 0, with mu the training mean. An index without training ratings keeps
    bias 0 (also when the regulariser is 0). As a ranker it orders items by b_i, the same for
    every user. ``history_`` holds the training RMSE after each epoch (not saved).
    """

    name = "bias"
    search_space: ClassVar[dict[str, Dimension]] = {
        "reg_user": FloatRange(0.1, 100.0, log=True),
        "reg_item": FloatRange(0.1, 100.0, log=True),
    }
    predicts_ratings = True

    #: what the config accepts (checked when it loads, not when fit raises later)
    param_bounds = {"reg_user": {"ge": 0}, "reg_item": {"ge": 0}, "epochs": {"ge": 1}}

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, epochs: int = 10) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.epochs = epochs

    def fit(self, train: Interactions, context: FitContext | None = None) -> BiasRecommender:
        if self.reg_user < 0 or self.reg_item < 0:
            raise ValueError("reg_user and reg_item must be >= 0")
        if int(self.epochs) < 1:
            raise ValueError("epochs must be >= 1")
        u = train.user_idx.astype(np.int64)
        i = train.item_idx.astype(np.int64)
        r = train.ratings.astype(np.float64)
        mu = float(r.mean()) if len(r) else 0.0
        n_u = np.bincount(u, minlength=train.n_users).astype(np.float64)
        n_i = np.bincount(i, minlength=train.n_items).astype(np.float64)
        den_u = self.reg_user + n_u
        den_i = self.reg_item + n_i
        bu = np.zeros(train.n_users)
        bi = np.zeros(train.n_items)
        resid = r - mu
        self.history_: list[dict[str, float]] = []
        for epoch in range(int(self.epochs)):
            dev_i = np.bincount(i, weights=resid - bu[u], minlength=train.n_items)
            bi = np.divide(dev_i, den_i, out=np.zeros_like(dev_i), where=n_i > 0)
            dev_u = np.bincount(u, weights=resid - bi[i], minlength=train.n_users)
            bu = np.divide(dev_u, den_u, out=np.zeros_like(dev_u), where=n_u > 0)
            self.history_.append({"epoch": epoch + 1, "train_rmse": rmse(r, mu + bu[u] + bi[i]) if len(r) else float("nan")})
        self.global_mean_ = mu
        self.user_bias_ = bu
        self.item_bias_ = bi
        self._remember_seen(train)
        return self

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """mu + b_u + b_i per (user, item) pair; an unknown (-1) index contributes bias 0."""
        return self.global_mean_ + _lookup(self.user_bias_, users) + _lookup(self.item_bias_, items)

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if len(users) and (users.min() < -1 or users.max() >= self.n_users):
            raise IndexError(f"user indices must lie in [0, {self.n_users}) or be -1 (unknown)")
        base = self.global_mean_ + _lookup(self.user_bias_, users)
        return (base[:, None] + self.item_bias_[None, :]).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "global_mean": np.array(self.global_mean_, dtype=np.float64),
            "user_bias": self.user_bias_,
            "item_bias": self.item_bias_,
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.global_mean_ = float(arrays["global_mean"])
        self.user_bias_ = arrays["user_bias"].astype(np.float64)
        self.item_bias_ = arrays["item_bias"].astype(np.float64)


def _lookup(bias: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``bias[idx]``, 0 where ``idx`` is -1 (unknown)."""
    return np.where(idx >= 0, bias[np.maximum(idx, 0)] if len(bias) else 0.0, 0.0)
