"""Two-tower retrieval model (user tower x item tower, dot product of unit vectors) in plain Keras 3.

Each tower maps a dense index to an L2-normalised ``dim`` vector::

    [ID embedding (dim) | standardised numeric features] -> Dense(h, relu) for h in hidden -> Dense(dim) -> unit norm

``score(u, i) = <user(u), item(i)>`` (a cosine). Two losses, both on scores divided by
``temperature`` (unit vectors give scores in [-1, 1], far too flat for a logistic or softmax loss
without it):

``"softmax"`` (default)
    In-batch sampled softmax over the positives of the batch (Yi et al. 2019, "Sampling-bias-
    corrected neural modeling"): for a batch of (user, positive item) pairs, row ``b`` scores user
    ``b`` against every positive item ``j`` of the batch, ``logit[b, j] = s(u_b, i_j) / T``, and the
    label is the diagonal. With ``logq_correction`` the logit of item ``j`` is reduced by
    ``log q_j``, ``q_j`` = item j's share of the training examples (the probability that a batch
    slot holds it), so popular items are not punished for appearing as negatives more often.
    Other slots holding the user's own positive item (duplicates within a batch) are masked out.
    ``shared_negatives=M`` scores every row against only the batch's first M positives (a
    uniform sample, as batches are shuffled) plus its own: the B x B logits become B x (M + 1),
    which on 2 CPU cores is most of a step at B = 1024 (see ``bench/two_tower.py``).
    ``negatives="all"`` replaces the sampled negatives by the whole catalogue: each step runs the
    item tower over every item and row ``b``'s logits are ``s(u_b, i) / T`` for all items ``i``
    (an exact softmax, no sampling, so ``logq_correction`` and ``shared_negatives`` do not apply).
    A step then costs n_items item-tower rows and B x n_items logits: affordable for catalogues of
    thousands (ML-1M) and it removes the sampled softmax's bias, most of all its neglect of
    unpopular items, which a popularity-skewed in-batch sample rarely holds as negatives.
``"bpr"``
    ``-log sigmoid((s(u, pos) - s(u, neg)) / T)`` over (user, positive, negative) triplets: read
    from ``context.samples/triplets.parquet`` when that file fits this train part
    (``recflow.prep.sample_files.load_matching``), else every training positive gets one uniformly random
    item the user did not interact with in train, redrawn each epoch (vectorised rejection
    sampling in NumPy).

Scoring: ``score(u, i) = <user(u), item(i)> + popularity_weight * temperature * log q_i`` (the
logits ``s / T`` plus ``popularity_weight * log q_i``, scaled by ``T``). The log-Q corrected softmax
learns logits that estimate the full softmax's, which rank unpopular items higher than top-K
recall on popularity-skewed data rewards; a positive weight adds part of the popularity prior back.
It changes scoring only (and so the validation recall that early stopping reads), not the towers;
it is in the search space, so tuning sets it per dataset. With a weight, ``dot_factors`` are
``[user, 1]`` and ``[item, weight * T * log q]`` and serving scores by that exact product.

Features (``use_features``): the numeric columns of ``context.user_features`` /
``context.item_features`` (int, float, bool and nullable integer dtypes; the id column excluded).
String columns (``favorite_genre``, ``activity_level``, ``popularity`` of ``recflow.prep.features``)
are dropped: each is a coarse function of numeric columns that are kept (genre counts,
``rating_count``). Each column is standardised with the mean and std of the table rows that map
onto the split's index (a std of 0 counts as 1), clipped to +-``feature_clip``, and NaN (a
nullable ``year``, an index without a feature row) becomes 0, the mean. So raw scales (a year
near 1995, counts in the thousands) never reach the network: the reference notebook fed them raw
and its loss went NaN. The standardised tables are frozen (non-trainable) embedding layers inside
the towers, so features are gathered by index in the graph, never materialised per example.

User IDs (``user_id``): False builds the user tower without its ID embedding, from the history
(and features) only, so a user is the items they interacted with: parameters are shared across
users with similar histories instead of learnt per user from that user's examples alone.

History (``history`` = L > 0, YouTube-DNN style): the user tower's input also holds the mean
of a separate item embedding over the user's L most recent training positives
(``towers.history_table``: a padded (n_users, L) table, a frozen lookup gathered per batch in the
graph, so a step costs B x L embedding rows more). Built in ``fit`` from ``train`` alone, so the
valid and test items never reach it. The history embedding's gradient covers most of its table
each step, so it takes a dense Adam step (deduplicating B x L sparse rows was several times
slower); L = 0 builds the tower without it.

Training: a ``tf.data`` pipeline over index arrays (seeded shuffle, batch, prefetch), a
``tf.function`` step with Adam, ``l2`` times the mean squared norm of the batch's ID embeddings.
``positive_threshold``: ratings below it are not positives (None: every train interaction is).
With ``context.valid`` each epoch ends with Recall@``early_stopping_k`` on it
(``recflow.evaluation.evaluate.evaluate_ranking``, train items masked); training stops after ``patience``
epochs without improvement and the best epoch's weights are restored. ``history_`` holds one dict
per epoch: ``epoch``, ``loss``, ``valid_recall_at_{k}`` (NaN without valid), ``examples_per_second``
(training examples over the epoch's training time, validation excluded), ``seconds``.

Warm start (``warm_starts``; the mechanics, shared by every Keras model, in
``recflow.models.keras_warm``): the towers are built as a cold fit builds them, then take the
earlier fit's weights: ID embedding rows by raw id (new users and items keep the cold seeded
draw), the history embedding by item id, each tower's first dense layer row by row by its input
columns ([ID embedding | feature columns by name | history mean]: a feature column new tonight
keeps its cold rows), every other weight as it was; the feature and history tables are tonight's.
Then ``warm_epochs`` epochs (at least ``warm_min_epochs``, 2) over all training positives, with
fresh Adam moments and early stopping as in a cold fit.

No history fold-in (``folds_in_history`` is not declared): by default (``user_id=True``) the user
tower reads a learnt per-user ID embedding, so a user outside the training data has no vector.
Only ``user_id=False, use_features=False, history=L`` makes the tower a function of the items
alone, and then of the L *most recent* ones (``history_table``), not of the set of items the
contract's ``score_history`` takes; a capability declared on the class cannot depend on those
parameters, and the defaults do not have it.

Determinism: a fit's randomness is its own, so a refit repeats the run whatever else trains in
the process (models train in threads of one process): the initialisers take seeds derived from
``seed`` and the shuffle and negative draws come from a NumPy Generator of ``seed``; no
process-global seed is set (``keras_training.KerasRecommender._seeded_tf``). With
``deterministic=True`` ``tf.config.experimental.enable_op_determinism()`` is switched on (a
process-wide setting). On CPU consecutive fits with the same seed then agree bitwise in our tests
(no thread-order-dependent reductions are used by these ops on CPU); if a platform ever differs,
they still agree to float32 round-off.

Threads: the first use of TensorFlow in the process sets intra-op threads to ``threads`` (None:
``$OMP_NUM_THREADS`` when set, as in a Dask worker, else the CPUs this process may use,
``keras_training.thread_budget``) and inter-op threads to 1 when not already fixed; TF only allows
that before its runtime starts, so later settings are ignored.

Persistence: ``save`` writes the Keras native ``model.keras`` (both towers, feature tables as
frozen weights) plus ``params.json`` / ``arrays.npz`` (seen matrix, precomputed user and item
embeddings, the feature columns and their standardisation stats, training frequencies). ``load``
reads only the npz: ``score``/``recommend`` need no TensorFlow; ``keras_model`` loads
``model.keras`` on first access.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recflow.models.context import FitContext
from recflow.models.keras_training import (
    KerasRecommender,
    make_lazy_adam,
    shuffled_batches,
    tower_outputs,
)
from recflow.models.keras_warm import Grow, concat_map, names_map, same
from recflow.models.search_space import Choice, Dimension, FloatRange
from recflow.models.towers import history_table, in_batch_softmax, log_item_share, numeric_feature_table, tower
from recflow.models.warm import WarmStart
from recflow.prep.interactions import Interactions
from recflow.prep.sample_files import load_matching
from recflow.utils.numeric import distinct

LOSSES = ("softmax", "bpr")
NEGATIVES = ("batch", "all")


# ----------------------------------------------------------------------------- model


def _two_tower_model(keras, user_tower, item_tower):
    u = keras.Input(shape=(), dtype="int32", name="user_idx")
    i = keras.Input(shape=(), dtype="int32", name="item_idx")
    return keras.Model([u, i], [user_tower(u), item_tower(i)], name="two_tower")


def unseen_negatives(users: np.ndarray, seen_keys: np.ndarray, n_items: int, rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
    """One uniform random item per entry of ``users`` that the user has not interacted with.

    ``seen_keys``: sorted ``user * n_items + item`` of the train interactions. Vectorised
    rejection sampling; after ``max_rounds`` rounds the (vanishingly rare) leftovers keep their
    last draw (only possible for a user who has seen nearly every item).
    """
    users = users.astype(np.int64)
    neg = rng.integers(0, n_items, size=len(users), dtype=np.int64)
    todo = np.arange(len(users))
    for _ in range(max_rounds):
        keys = users[todo] * n_items + neg[todo]
        pos = np.searchsorted(seen_keys, keys)
        hit = seen_keys[np.minimum(pos, len(seen_keys) - 1)] == keys if len(seen_keys) else np.zeros(len(todo), bool)
        todo = todo[hit]
        if not len(todo):
            break
        neg[todo] = rng.integers(0, n_items, size=len(todo), dtype=np.int64)
    return neg


@dataclass(frozen=True)
class _Examples:
    """What ``fit`` trains on: the positives (indices, timestamps), ``log q`` per item, BPR's inputs."""

    users: np.ndarray  # int32 user index of each positive
    items: np.ndarray  # int32 item index of each positive
    timestamps: np.ndarray
    log_q: np.ndarray  # (n_items,) float32 log share of the positives
    triplets: object  # the sampling stage's (user_idx, pos_idx, neg_idx) frame, or None
    seen_keys: np.ndarray  # sorted user * n_items + item of train (uniform BPR negatives avoid them)
    n: int  # examples per epoch


class TwoTowerRecommender(KerasRecommender):
    """User and item towers trained by in-batch softmax (log-Q corrected) or BPR; see the module doc."""

    name = "two_tower"
    item_spaces = ("items",)
    user_space = True
    warm_starts = True

    # embedding size stays at the preset's (RecBole's protocol fixes 64); epochs are a ceiling
    # (early stopping on the validation part), so each trial costs about one fit. logq_correction
    # is not searched: without it the in-batch softmax punishes popular items, and full-ranking
    # Recall@10 on ML-1M's validation part fell to about a third. negatives="all" and
    # user_id=False are not searched either: neither beat the sampled softmax with user IDs on
    # ML-1M's validation part at the tuned values, and "all" makes each step slower (it runs the
    # item tower over the whole catalogue)
    search_space: ClassVar[dict[str, Dimension]] = {
        "temperature": FloatRange(0.02, 0.2, log=True),
        "lr": FloatRange(1e-3, 1e-2, log=True),
        "l2": Choice((0.0, 1e-5, 1e-4, 1e-3)),
        "shared_negatives": Choice((128, 256, 512)),
        "use_features": Choice((True, False)),
        "history": Choice((0, 50, 100)),
        "popularity_weight": FloatRange(0.0, 0.5),
    }

    def __init__(
        self,
        dim: int = 64,
        hidden: tuple[int, ...] | list[int] = (128,),
        loss: str = "softmax",
        temperature: float = 0.05,
        logq_correction: bool = True,
        shared_negatives: int | None = 256,
        negatives: str = "batch",
        batch_size: int = 1024,
        epochs: int = 20,
        lr: float = 3e-3,
        l2: float = 0.0,
        use_features: bool = True,
        history: int = 0,
        user_id: bool = True,
        popularity_weight: float = 0.0,
        feature_clip: float = 5.0,
        positive_threshold: float | None = None,
        early_stopping_k: int = 10,
        patience: int = 2,
        seed: int = 0,
        deterministic: bool = True,
        jit_compile: bool = True,
        threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.loss = loss
        self.temperature = temperature
        self.logq_correction = logq_correction
        self.shared_negatives = shared_negatives
        self.negatives = negatives
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.l2 = l2
        self.use_features = use_features
        self.history = history
        self.user_id = user_id
        self.popularity_weight = popularity_weight
        self.feature_clip = feature_clip
        self.positive_threshold = positive_threshold
        self.early_stopping_k = early_stopping_k
        self.patience = patience
        self.seed = seed
        self.deterministic = deterministic
        self.jit_compile = jit_compile
        self.threads = threads
        self.verbose = verbose

    def sampling_needs(self) -> dict[str, dict]:
        """BPR reads the sampling stage's triplets (the notebook's three negative kinds)."""
        return {"triplets": {}} if self.loss == "bpr" else {}

    # -- learning ---------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        self._check_training_params(min_batch_size=2)  # in-batch negatives need a second example
        if not self.temperature > 0:
            raise ValueError("temperature must be > 0")
        if self.shared_negatives is not None and int(self.shared_negatives) < 1:
            raise ValueError("shared_negatives must be >= 1 (or None: the whole batch)")
        if not np.isfinite(float(self.popularity_weight)):
            raise ValueError(f"popularity_weight must be a finite number, got {self.popularity_weight}")
        if int(self.history) < 0:
            raise ValueError(f"history must be >= 0 (0: off), got {self.history}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if not self.user_id and not int(self.history) and not self.use_features:
            raise ValueError("user_id=False needs history > 0 or use_features: the user tower would have no input")

    def fit(self, train: Interactions, context: FitContext | None = None) -> TwoTowerRecommender:
        """Features, examples, towers, the training step, then the epoch loop (``_train_epochs``)."""
        self._check_params()
        tf, keras = self._seeded_tf()
        context = context or FitContext()
        self._set_feature_tables(train, context)
        examples = self._examples(train, context)
        # the user's training history (the positives only: fit never sees valid or test)
        history = None
        if int(self.history):
            history = history_table(examples.users, examples.items, examples.timestamps, train.n_users, int(self.history))
        user_tower, item_tower = self._build_towers(keras, train.n_users, train.n_items, history)
        epochs = self._continue_from(context)
        step = self._train_step(tf, user_tower, item_tower, examples.log_q, dense_history=history is not None)
        run_epoch = self._epoch_runner(tf, step, examples, train.n_items)
        self._train_epochs(train, context, run_epoch, self._set_embeddings, examples.n, epochs)
        return self

    def _grown(self, warm: WarmStart) -> dict:
        """The ID embeddings by the id maps, the history embedding by the item map (row 0 is the padding),
        and each tower's first dense layer by its input columns: [ID embedding | features by name | history mean]."""
        old, dim = warm.model, int(self.dim)
        first = "dense_0" if self.hidden else "out"
        user_in = [(same(dim), dim)] if self.user_id else []
        user_in.append((names_map(old.user_feature_columns_, self.user_feature_columns_), len(old.user_feature_columns_)))
        item_in = [(same(dim), dim), (names_map(old.item_feature_columns_, self.item_feature_columns_), len(old.item_feature_columns_))]
        grown = {"item_id_embedding": Grow(warm.item_map), f"item_{first}": Grow(concat_map(*item_in))}
        if self.user_id:
            grown["user_id_embedding"] = Grow(warm.user_map)
        if int(self.history):
            user_in.append((same(dim), dim))
            grown["user_history_embedding"] = Grow(np.r_[0, np.where(warm.item_map >= 0, warm.item_map + 1, -1)])
        grown[f"user_{first}"] = Grow(concat_map(*user_in))
        return grown

    def _set_feature_tables(self, train: Interactions, context: FitContext) -> None:
        """The standardised numeric feature tables of both sides (empty without ``use_features``)."""
        clip = float(self.feature_clip)
        uf = context.user_features if self.use_features else None
        itf = context.item_features if self.use_features else None
        self.user_feature_table_, self.user_feature_columns_, self.user_feature_mean_, self.user_feature_std_ = numeric_feature_table(
            uf, "user_id", train.user_index, train.n_users, clip
        )
        self.item_feature_table_, self.item_feature_columns_, self.item_feature_mean_, self.item_feature_std_ = numeric_feature_table(
            itf, "item_id", train.item_index, train.n_items, clip
        )

    def _examples(self, train: Interactions, context: FitContext) -> _Examples:
        """The training positives, their item shares, BPR's triplets when the sampling stage's fit this train part."""
        keep = np.ones(len(train), bool)
        if self.positive_threshold is not None:
            keep = train.ratings >= float(self.positive_threshold)
        pos_u = train.user_idx[keep].astype(np.int32)
        pos_i = train.item_idx[keep].astype(np.int32)
        counts = np.bincount(pos_i, minlength=train.n_items).astype(np.float64)
        self.item_frequency_ = counts
        triplets = None
        if self.loss == "bpr":
            samples = context.samples
            triplets = load_matching(samples, "triplets", train, {}) if samples is not None else None
            if triplets is not None and len(triplets) == 0:
                triplets = None
        seen = train.seen.tocoo()
        seen_keys = distinct(seen.row.astype(np.int64) * train.n_items + seen.col.astype(np.int64))
        n = len(triplets) if triplets is not None else len(pos_u)
        self.n_examples_ = int(n)
        if n == 0:
            raise ValueError("no training examples (empty train, or no rating >= positive_threshold)")
        return _Examples(pos_u, pos_i, train.timestamps[keep], log_item_share(counts).astype(np.float32), triplets, seen_keys, n)

    def _build_towers(self, keras, n_users: int, n_items: int, history: np.ndarray | None):
        """(user tower, item tower), joined in ``_model`` (what is saved as ``model.keras``)."""
        dim, seed = int(self.dim), int(self.seed)
        hidden = [int(h) for h in self.hidden]
        user_tower = tower(
            keras, "user", n_users, dim, hidden, self.user_feature_table_, seed, history=history, n_history_items=n_items, id_embedding=bool(self.user_id)
        )
        item_tower = tower(keras, "item", n_items, dim, hidden, self.item_feature_table_, seed + 1000)
        self._model = _two_tower_model(keras, user_tower, item_tower)
        return user_tower, item_tower

    def _train_step(self, tf, user_tower, item_tower, log_q: np.ndarray, dense_history: bool):
        """The compiled step of ``loss``: (user, item) batches for the softmax, (user, pos, neg) for BPR; returns the loss."""
        variables = user_tower.trainable_variables + item_tower.trainable_variables
        # the history embedding's gradient touches B x L rows a step, most of the (small) table:
        # a dense update is cheaper than deduplicating that many sparse rows (lazy Adam)
        dense_grad = [dense_history and v is user_tower.get_layer("user_history_embedding").embeddings for v in variables]
        apply_gradients = make_lazy_adam(tf, variables, float(self.lr))
        inv_t = tf.constant(1.0 / float(self.temperature), tf.float32)
        reg = self._l2_penalty(tf, user_tower, item_tower)
        softmax_loss = self._softmax_loss(tf, item_tower, len(log_q), log_q, inv_t)
        idx_spec = tf.TensorSpec([None], tf.int32)

        def descend(tape, total):
            grads = tape.gradient(total, variables)
            apply_gradients([tf.convert_to_tensor(g) if d else g for g, d in zip(grads, dense_grad)])

        @tf.function(input_signature=[idx_spec, idx_spec], reduce_retracing=True, jit_compile=bool(self.jit_compile))
        def softmax_step(u, i):
            with tf.GradientTape() as tape:
                ue = user_tower(u, training=True)
                ie = item_tower(i, training=True)
                loss = softmax_loss(ue, ie, i)
                total = loss + reg(u, i)
            descend(tape, total)
            return loss

        @tf.function(input_signature=[idx_spec, idx_spec, idx_spec], reduce_retracing=True, jit_compile=bool(self.jit_compile))
        def bpr_step(u, i, n):
            with tf.GradientTape() as tape:
                ue = user_tower(u, training=True)
                ie = item_tower(i, training=True)
                ne = item_tower(n, training=True)
                diff = tf.reduce_sum(ue * (ie - ne), axis=1) * inv_t
                loss = tf.reduce_mean(tf.nn.softplus(-diff))  # = -log sigmoid(diff), stable
                total = loss + reg(u, i, n)
            descend(tape, total)
            return loss

        return softmax_step if self.loss == "softmax" else bpr_step

    def _l2_penalty(self, tf, user_tower, item_tower):
        """``reg(u, i, n=None)``: ``l2`` times the mean squared norm of the batch's ID embedding rows (0.0 when ``l2`` is 0)."""
        user_emb_var = user_tower.get_layer("user_id_embedding").embeddings if self.user_id else None
        item_emb_var = item_tower.get_layer("item_id_embedding").embeddings
        l2 = tf.constant(float(self.l2), tf.float32)

        def reg(u, i, n=None):
            if not float(self.l2):
                return 0.0
            terms = ([tf.gather(user_emb_var, u)] if user_emb_var is not None else []) + [tf.gather(item_emb_var, i)]
            if n is not None:
                terms.append(tf.gather(item_emb_var, n))
            return l2 * tf.add_n([tf.reduce_mean(tf.reduce_sum(tf.square(t), axis=1)) for t in terms])

        return reg

    def _softmax_loss(self, tf, item_tower, n_items: int, log_q: np.ndarray, inv_t):
        """``loss(user vectors, item vectors, item indices)`` of ``negatives``: the in-batch sample, or the whole catalogue."""
        if self.negatives == "all":
            all_items = tf.range(n_items, dtype=tf.int32)

            def full_softmax(ue, ie, i):
                """Mean cross-entropy of each row's positive against every item of the catalogue."""
                logits = tf.matmul(ue, item_tower(all_items, training=True), transpose_b=True) * inv_t
                return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=i, logits=logits))

            return full_softmax
        log_q_t = tf.constant(log_q) if self.logq_correction else None
        shared = None if self.shared_negatives is None else int(self.shared_negatives)
        return lambda ue, ie, i: in_batch_softmax(tf, ue, ie, i, inv_t, log_q_t, shared)

    def _epoch_runner(self, tf, step, examples: _Examples, n_items: int):
        """``run_epoch(epoch)`` for ``_train_epochs``: one shuffled pass (BPR: fresh negatives unless triplets are read)."""
        rng = np.random.default_rng(int(self.seed))
        pos_u, pos_i, triplets = examples.users, examples.items, examples.triplets

        def run_epoch(epoch: int):
            if self.loss == "softmax":
                arrays = (pos_u, pos_i)
            elif triplets is not None:
                arrays = tuple(triplets[c].to_numpy(np.int32) for c in ("user_idx", "pos_idx", "neg_idx"))
            else:
                neg = unseen_negatives(pos_u, examples.seen_keys, n_items, rng).astype(np.int32)
                arrays = (pos_u, pos_i, neg)
            ds = shuffled_batches(tf, arrays, int(self.batch_size), rng)
            t0 = time.perf_counter()
            # a float per batch: steadier than leaving the losses as tensors until the epoch ends,
            # which stalled some epochs to about twice their time (bench/two_tower.py)
            losses = [float(step(*batch)) for batch in ds]
            return {"loss": float(np.mean(losses)) if losses else float("nan")}, time.perf_counter() - t0

        return run_epoch

    def _set_embeddings(self) -> None:
        user_tower, item_tower = self._towers()
        self.user_embeddings_ = tower_outputs(user_tower, self._seen.shape[0])
        self.item_embeddings_ = tower_outputs(item_tower, self._seen.shape[1])

    def _towers(self):
        model = self.keras_model
        return model.get_layer("user_tower"), model.get_layer("item_tower")

    # -- scoring ----------------------------------------------------------------------------
    def _user_vectors(self) -> np.ndarray:
        """(n_users, dim) float32 unit vectors of the user tower."""
        return self.user_embeddings_.copy()

    def _item_vectors(self, space: str) -> np.ndarray:
        """(n_items, dim) float32 unit vectors of the item tower."""
        return self.item_embeddings_.copy()

    def _popularity_term(self) -> np.ndarray | None:
        """(n_items,) float32 ``popularity_weight * temperature * log q_i``, or None when the weight is 0."""
        beta = float(self.popularity_weight)
        if not beta:
            return None
        return (beta * float(self.temperature) * log_item_share(self.item_frequency_)).astype(np.float32)

    def dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``score`` is the dot product of the two towers' unit vectors; with a popularity weight,
        of ``[user, 1]`` and ``[item, popularity term]``."""
        self._check_fitted()
        U, V = self._user_vectors(), self._item_vectors("items")
        term = self._popularity_term()
        if term is not None:
            U = np.hstack([U, np.ones((len(U), 1), np.float32)])
            V = np.hstack([V, term[:, None]])
        return U, V, np.ones(len(V), bool)

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        scores = self.user_embeddings_[users] @ self.item_embeddings_.T
        term = self._popularity_term()
        if term is not None:
            scores += term[None, :]
        return np.ascontiguousarray(scores, dtype=np.float32)

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_embeddings": self.user_embeddings_,
            "item_embeddings": self.item_embeddings_,
            "item_frequency": self.item_frequency_,
            "user_feature_columns": np.array(self.user_feature_columns_, dtype=np.str_),
            "user_feature_mean": self.user_feature_mean_,
            "user_feature_std": self.user_feature_std_,
            "item_feature_columns": np.array(self.item_feature_columns_, dtype=np.str_),
            "item_feature_mean": self.item_feature_mean_,
            "item_feature_std": self.item_feature_std_,
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_embeddings_ = arrays["user_embeddings"].astype(np.float32)
        self.item_embeddings_ = arrays["item_embeddings"].astype(np.float32)
        self.item_frequency_ = arrays["item_frequency"]
        for side in ("user", "item"):
            setattr(self, f"{side}_feature_columns_", [str(c) for c in arrays[f"{side}_feature_columns"]])
            setattr(self, f"{side}_feature_mean_", arrays[f"{side}_feature_mean"])
            setattr(self, f"{side}_feature_std_", arrays[f"{side}_feature_std"])
        self.history_ = []
