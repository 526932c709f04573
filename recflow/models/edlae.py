"""EDLAE (Steck 2020, "Autoencoders that don't overfit towards the identity"): EASE trained with dropout.

A linear item-item autoencoder ``score(u) = X_u B`` learned under input dropout with probability
``p``, where only the dropped-out entries are asked to be reconstructed ("full emphasis"). In
expectation that objective is a ridge regression whose penalty grows with each item's count, and
the diagonal of ``B`` drops out of it (an item never predicts itself), so the full-rank model has
EASE's closed form with a per-item ridge::

    G = X^T X,   Lambda = p / (1 - p) * diag(G) + l2 I,   P = (G + Lambda)^-1
    B_ij = -P_ij / P_jj  (i != j),   B_jj = 0

``dropout = 0`` (and ``user_exponent = 0``) is EASE exactly (the same ``l2``). In expectation
dropout adds ``p / (1 - p) |diag(G)^1/2 B|^2`` to the squared error: the weights out of an item
are penalised in proportion to how often it occurs, where EASE's ridge treats every item alike;
``l2`` stays as a floor so that rare items' rows remain well conditioned. The same in-place
float32 Cholesky route, memory and ``max_items`` limit as EASE (``recflow.models.ease``), whose
persistence this class inherits.

``user_exponent`` (``a``) weights each user's reconstruction error by ``n_u^-2a`` (``n_u``: the
user's train items), i.e. ``G`` is built from ``D^-a X`` with ``D`` the users' counts: without it
the few heaviest users dominate the Gram matrix (co-occurrence counts grow with the square of a
user's item count). Scoring still reads the unweighted ``X_u`` (a per-user factor does not
change a user's ranking). ``l2`` is on the weighted Gram matrix's scale, which is smaller than
EASE's when ``a > 0`` (by about the mean of ``n_u^-2a``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recflow.models.context import FitContext
from recflow.models.ease import EASERecommender
from recflow.models.search_space import Dimension, FloatRange
from recflow.prep.interactions import Interactions


class EDLAERecommender(EASERecommender):
    """EASE with dropout-emphasised L2 (per-item ridge ``p/(1-p) G_jj + l2``), closed form.

    The defaults are the best on ML-1M's validation part under RecBole's protocol.
    """

    name = "edlae"
    search_space: ClassVar[dict[str, Dimension]] = {
        "dropout": FloatRange(0.05, 0.75),
        "l2": FloatRange(1.0, 2_000.0, log=True),
        "user_exponent": FloatRange(0.0, 0.5),
    }

    def __init__(
        self,
        dropout: float = 0.5,
        l2: float = 30.0,
        user_exponent: float = 0.25,
        implicit_threshold: float | None = None,
        max_items: int = 30_000,
        top_items: int | None = None,
        warm_resolve: float = 0.02,
    ) -> None:
        self.dropout = dropout
        self.user_exponent = user_exponent
        super().__init__(l2=l2, implicit_threshold=implicit_threshold, max_items=max_items, top_items=top_items, warm_resolve=warm_resolve)

    def _check_params(self) -> None:
        p = float(self.dropout)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if float(self.l2) < 0 or (p == 0.0 and not float(self.l2) > 0):
            raise ValueError(f"l2 must be >= 0, and > 0 when dropout is 0 (G + Lambda must be invertible), got {self.l2}")

    def _weighted(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """``D^-a X``: each user's row scaled by their item count to the ``-user_exponent``."""
        a = float(self.user_exponent)
        if not a:
            return X
        n_u = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        weight = np.where(n_u > 0, np.maximum(n_u, 1.0) ** -a, 0.0).astype(np.float32)
        return sp.csr_matrix(sp.diags(weight) @ X)

    def _ridge(self, gram_diag: np.ndarray) -> np.ndarray:
        p = float(self.dropout)
        ridge = p / (1.0 - p) * gram_diag + float(self.l2)
        if not (ridge > 0).all():
            raise ValueError("an item without training interactions gets no ridge: set l2 > 0")
        return ridge

    def fit(self, train: Interactions, context: FitContext | None = None) -> EDLAERecommender:
        return super().fit(train, context)
