"""Hybrid content + collaborative retrieval model (plain Keras 3), trained on user feedback.

Code: the content table in ``recflow.models.hybrid_content``, the network in
``recflow.models.hybrid_network``, the in-batch softmax and log q in ``recflow.models.towers`` (shared
with two_tower), title matching in ``recflow.retrieval.titles`` and genre agreement (its query items
included) in ``recflow.prep.genres`` (shared with the serving side); this module trains, scores and saves.

After the reference notebook's hybrid (TF-IDF -> SVD text, genre multi-hot and scaled numerics
feed a content branch, an item-ID embedding is the CF branch, a fusion head joins them, an
alignment loss pulls the branches together), with its defect fixed: the notebook regressed a
per-movie popularity score (``vote_average * log1p(vote_count)``), so nothing in it depended on
any user; here the item vectors are learned from who liked what, against user vectors.

Content features (one row per item of the split's index, built in ``fit``)
    * text: the title without its trailing ``(year)``, the item's tags (``context.tags``, every
      tag of the release, lower-cased, ``use_tags``), and TMDB ``overview`` + ``keywords``
      (``context.tmdb``, ``use_tmdb``) where the item has them -> ``TfidfVectorizer(max_features,
      sublinear_tf=True, stop_words="english", min_df)`` -> ``TruncatedSVD(text_components,
      random_state=seed)`` -> rows L2-normalised and scaled by sqrt(components) (an RMS of 1 per
      component, like the other inputs). The vectoriser is fitted on the texts of every index
      item: text is metadata, not feedback. Tags are user-made, though, and a release's tags
      table is not split by time, so ``use_tags=False`` gives a strictly feedback-free content
      side. A vocabulary left empty by ``min_df`` gives no text columns.
    * genres: multi-hot of ``context.items.genres`` (``(no genres listed)`` and empty names are
      no genre), also kept (int8 + names) for ``similar`` and the genre-overlap metrics.
    * numerics: the numeric columns of ``context.item_features`` (the features stage: train-only),
      minus its ``genre_<g>`` multi-hot (the genre block above already holds it; ``genre_purity``
      stays), ``rating_count`` as ``log1p``; standardised, clipped to +-``feature_clip``, NaN -> 0
      (``recflow.models.towers.numeric_feature_table``). TMDB's own numbers (popularity, votes)
      are not used: they are feedback from TMDB's users, gathered after any split's cut-off.
    Items of the index missing from a table get zeros there; an item with no content input at all
    has no content vector (``valid_["content"]`` False).

Network (``keras_model``: inputs ``user_idx``, ``item_idx``; outputs user, content, cf, hybrid)
    content branch: frozen content table -> Dense(h, relu) for h in ``hidden`` -> Dense(dim) -> unit
    CF branch:      item ID embedding (dim) -> unit; multiplied by 0 for items without train
                    interactions ("cold": their embedding was never trained)
    fusion head:    concat(content, cf) -> Dense(h, relu) for h in ``fusion_hidden`` (None: ``hidden``)
                    -> Dense(dim) -> unit                                        = the hybrid item vector
    user side:      user ID embedding (dim) -> unit
    ``score(u, i) = <user(u), hybrid(i)>`` (a cosine).

Training
    Examples are the (user, positive item) pairs of train: ratings >= ``positive_threshold``; a
    user with no such rating contributes all their train items (they are still the user's
    choices); when the threshold keeps less than ``min_positive_fraction`` of train (implicit data,
    a scale without 4s) or ``positive_threshold`` is None, every train interaction is a positive.
    Loss per batch = in-batch sampled softmax over the batch's positives on ``<user, hybrid> /
    temperature`` (other slots holding the row's own item masked; ``logq_correction`` subtracts log
    of each item's share of the examples) + ``alignment_weight * mean_b(1 - cos(content_b, cf_b))``
    over the batch's items + ``l2`` * mean squared norm of the batch's ID embeddings.
    ``shared_negatives=M`` (as two_tower's): every row's softmax is over its own positive and the
    batch's first M positives only (a uniform sample: batches are shuffled; a slot holding the
    row's own item masked), so the B x B logits become B x (M + 1) and a larger batch stays cheap;
    None: the whole batch. ``jit_compile``: the loss and its gradient are compiled with XLA (one
    fused kernel sequence instead of the hundreds of small ops of the Keras sub-models, whose
    dispatch was most of an uncompiled step); the optimizer's update (lazy Adam's ``unique`` and
    row scatters) stays outside XLA, in the plain ``tf.function`` step: compiled with the rest it
    made the step slower, the more so the larger the batch (``bench/hybrid.py``). The cf_dropout
    mask is drawn there too, so a compiled and an uncompiled fit of one seed drop the same items.
    ``cf_dropout``: the probability that a batch item's CF vector is zeroed before the fusion head,
    so the head learns the cold-item case it meets at inference (DropoutNet-style).
    ``tf.data`` batches of a seeded permutation, Adam (``optimizer="adam"``: Keras's, which
    densifies the ID embeddings' sparse gradients and moves every row's moments each step, a cost
    per step that grows with the users and items; ``"lazy_adam"``: only the batch's rows, as
    two_tower trains, ``recflow.models.keras_training.make_lazy_adam``; the large presets use it). With ``context.valid`` each epoch ends with
    Recall@``early_stopping_k`` on it (``recflow.evaluation.evaluate.evaluate_ranking``, train items masked);
    training stops after ``patience`` epochs without improvement and the best epoch's weights are
    restored. ``history_``: per epoch ``epoch``, ``loss`` (the whole objective), ``softmax_loss``,
    ``alignment_loss`` (the unweighted mean 1 - cos), ``valid_recall_at_{k}`` (NaN without valid),
    ``seconds``; ``context.on_epoch_end(epoch, those minus epoch)`` is called each epoch.

Warm start (``warm_starts``, ``recflow.models.keras_warm``)
    The network is built as a cold fit builds it, then takes the earlier fit's weights: user and
    item ID embedding rows by raw id (new ones: the cold seeded draw), the content branch's first
    dense layer row by row by content column (genres and numerics by name; a column new tonight
    keeps its cold rows), the hidden layers and the fusion head as they were. The content table,
    the cold-item mask and log q are tonight's. The text columns are refitted each night
    (TF-IDF and SVD over tonight's catalogue) and carried by position: with few new items the
    components barely move, but an SVD may turn a component's sign or swap two of similar weight,
    which the warm epochs then re-learn. ``warm_epochs`` epochs (at least 2), fresh optimizer
    state, early stopping as in a cold fit.

After fit (NumPy, float32, rows unit-norm or zero)
    ``item_embeddings(mode)`` for ``mode`` in content / cf / hybrid, ``user_embeddings()``,
    ``valid_[mode]`` (which items have a vector in that mode: cf needs train interactions,
    content needs some content input, hybrid is every item). ``similar_items`` / ``similar`` rank by
    cosine in one mode among the items valid in it, the query excluded. ``genre_overlap_`` holds
    ``genre_overlap_at_{k}_{mode}`` and ``genre_jaccard_at_{k}_{mode}`` for the three modes
    (``recflow.prep.genres.genre_overlap_at_k``; k = ``genre_overlap_k``), computed at fit and saved with
    the model for comparing its modes. The pipeline does not log it: a run's metric for ``similar``
    is the index stage's ``genre_overlap_at_{k}`` of every item space of every model
    (``recflow.retrieval.build``), measured the same way for all of them.

Determinism: as ``two_tower`` (seeded initialisers, shuffles and SVD, the cold-item mask a
stateless draw keyed by (seed, step); no global seeds; op determinism when ``deterministic``). On CPU, refits with one seed agreed bitwise in our tests.

Persistence: ``model.keras`` (Keras native, the whole network with the content table as frozen
weights) + ``params.json`` / ``arrays.npz``: seen matrix, the three item-vector sets and their
validity masks, user vectors, raw item ids, titles (unicode array), genres (int8 multi-hot + names),
train interaction counts per item, the genre-overlap values, the content columns' names (for warm starts). ``load`` reads only the npz:
``score``, ``recommend``, ``similar`` and ``genre_overlap_at_k`` need no TensorFlow;
``keras_model`` loads ``model.keras`` on first access. No pickle anywhere.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from recflow.models.context import FitContext
from recflow.models.hybrid_content import align_items, content_features
from recflow.models.hybrid_network import build_network
from recflow.models.keras_training import KerasRecommender, make_lazy_adam, shuffled_batches
from recflow.models.keras_warm import Grow, names_map
from recflow.models.search_space import Choice, Dimension, FloatRange
from recflow.models.towers import in_batch_softmax, log_item_share
from recflow.models.warm import WarmStart
from recflow.prep.genres import genre_overlap_at_k, overlap_queries
from recflow.prep.interactions import Interactions
from recflow.retrieval.titles import TitleIndex
from recflow.utils.numeric import normalise_rows

MODES = ("content", "cf", "hybrid")
OPTIMIZERS = ("adam", "lazy_adam")


# ----------------------------------------------------------------------------- model


class HybridRecommender(KerasRecommender):
    """Content branch (text LSA, genres, numerics) + item-ID CF branch + fusion head vs user embeddings; see the module doc."""

    name = "hybrid"
    #: ``similar`` modes: the fused space (primary, what ``score`` uses), the content and CF branches
    item_spaces = ("hybrid", "content", "cf")
    user_space = True
    warm_starts = True

    search_space: ClassVar[dict[str, Dimension]] = {
        "temperature": FloatRange(0.03, 0.3, log=True),
        "lr": FloatRange(1e-3, 1e-2, log=True),
        "alignment_weight": FloatRange(0.0, 1.0),
        "cf_dropout": FloatRange(0.0, 0.5),
        "positive_threshold": Choice((None, 3.0, 4.0)),
        "l2": Choice((0.0, 1e-5, 1e-4)),
    }

    def __init__(
        self,
        dim: int = 64,
        text_components: int = 64,
        max_features: int = 20_000,
        min_df: int = 2,
        hidden: tuple[int, ...] | list[int] = (128,),
        fusion_hidden: tuple[int, ...] | list[int] | None = None,
        alignment_weight: float = 0.1,
        branch_loss_weight: float = 0.0,
        temperature: float = 0.1,
        logq_correction: bool = True,
        cf_dropout: float = 0.1,
        positive_threshold: float | None = 4.0,
        min_positive_fraction: float = 0.2,
        use_tags: bool = True,
        use_tmdb: bool = True,
        use_item_features: bool = True,
        feature_clip: float = 5.0,
        batch_size: int = 1024,
        epochs: int = 20,
        lr: float = 3e-3,
        optimizer: str = "adam",
        l2: float = 0.0,
        early_stopping_k: int = 10,
        patience: int = 2,
        genre_overlap_k: int = 10,
        genre_overlap_queries: int | None = 2000,
        seed: int = 0,
        deterministic: bool = True,
        jit_compile: bool = False,
        shared_negatives: int | None = None,
        threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.dim = dim
        self.text_components = text_components
        self.max_features = max_features
        self.min_df = min_df
        self.hidden = hidden
        self.fusion_hidden = fusion_hidden
        self.alignment_weight = alignment_weight
        self.branch_loss_weight = branch_loss_weight
        self.temperature = temperature
        self.logq_correction = logq_correction
        self.cf_dropout = cf_dropout
        self.positive_threshold = positive_threshold
        self.min_positive_fraction = min_positive_fraction
        self.use_tags = use_tags
        self.use_tmdb = use_tmdb
        self.use_item_features = use_item_features
        self.feature_clip = feature_clip
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.optimizer = optimizer
        self.l2 = l2
        self.early_stopping_k = early_stopping_k
        self.patience = patience
        self.genre_overlap_k = genre_overlap_k
        self.genre_overlap_queries = genre_overlap_queries
        self.seed = seed
        self.deterministic = deterministic
        self.jit_compile = jit_compile
        self.shared_negatives = shared_negatives
        self.threads = threads
        self.verbose = verbose

    # -- checks -----------------------------------------------------------------------------
    def _check_params(self) -> None:
        self._check_training_params(min_batch_size=2)  # in-batch negatives need a second example
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if int(self.text_components) < 0 or int(self.max_features) < 1 or int(self.min_df) < 1:
            raise ValueError("text_components must be >= 0, max_features and min_df >= 1")
        if not self.temperature > 0 or min(self.alignment_weight, self.branch_loss_weight) < 0:
            raise ValueError("temperature must be > 0, alignment_weight and branch_loss_weight >= 0")
        if not 0 <= self.cf_dropout < 1 or not 0 <= self.min_positive_fraction <= 1:
            raise ValueError("cf_dropout must lie in [0, 1), min_positive_fraction in [0, 1]")
        if self.shared_negatives is not None and int(self.shared_negatives) < 1:
            raise ValueError("shared_negatives must be >= 1 (or None: the whole batch)")
        if int(self.genre_overlap_k) < 1:
            raise ValueError("genre_overlap_k must be >= 1")

    # -- features ---------------------------------------------------------------------------
    def _content(self, train: Interactions, context: FitContext) -> np.ndarray:
        c = content_features(
            train,
            context,
            use_tags=self.use_tags,
            use_tmdb=self.use_tmdb,
            use_item_features=self.use_item_features,
            max_features=self.max_features,
            min_df=self.min_df,
            text_components=self.text_components,
            seed=int(self.seed),
            feature_clip=float(self.feature_clip),
        )
        self.genres_, self.genre_names_, self.numeric_columns_ = c.genres, c.genre_names, c.numeric_columns
        self.content_dims_, self.has_content_ = c.dims, c.has_content
        names = [f"text_{k}" for k in range(c.dims["text"])] + [f"genre:{g}" for g in c.genre_names] + [f"numeric:{n}" for n in c.numeric_columns]
        self.content_columns_ = names or ["none"]  # no side information: the one constant-zero column
        return c.table

    def _positives(self, train: Interactions) -> tuple[np.ndarray, np.ndarray]:
        keep = np.ones(len(train), bool)
        if self.positive_threshold is not None and len(train):
            liked = train.ratings >= float(self.positive_threshold)
            if liked.mean() >= float(self.min_positive_fraction):
                users_with = np.bincount(train.user_idx[liked], minlength=train.n_users) > 0
                keep = liked | ~users_with[train.user_idx]  # users with no positive keep everything
        self.positive_rule_ = "threshold" if not keep.all() else "all"
        return train.user_idx[keep].astype(np.int32), train.item_idx[keep].astype(np.int32)

    def _set_catalogue(self, train: Interactions, context: FitContext) -> None:
        """Raw item ids, titles ("" where the items table has none) and train interactions per index item."""
        self.item_ids_ = np.asarray(train.item_ids)
        titles = np.full(train.n_items, "", dtype=object)
        rows, idx = align_items(context.items, self.item_ids_)
        if rows is not None and "title" in rows.columns:
            titles[idx] = rows["title"].astype(str).to_numpy(dtype=object)
        self.titles_ = np.array(titles.tolist(), dtype=np.str_)
        self.item_counts_ = np.bincount(train.item_idx, minlength=train.n_items).astype(np.int64)

    # -- learning ---------------------------------------------------------------------------
    def fit(self, train: Interactions, context: FitContext | None = None) -> HybridRecommender:
        """Side data (NumPy, scikit-learn), the network, the training step, the epoch loop, then the genre overlaps."""
        self._check_params()
        context = context or FitContext()
        started = time.perf_counter()
        content = self._content(train, context)
        self._set_catalogue(train, context)
        has_cf = self.item_counts_ > 0
        pos_u, pos_i = self._positives(train)
        if len(pos_u) == 0:
            raise ValueError("no training examples (empty train)")
        log_q = log_item_share(np.bincount(pos_i, minlength=train.n_items)).astype(np.float32)

        tf, keras = self._seeded_tf()
        hidden = [int(h) for h in self.hidden]
        fusion_hidden = hidden if self.fusion_hidden is None else [int(h) for h in self.fusion_hidden]
        self._model, *parts = build_network(keras, train.n_users, train.n_items, int(self.dim), hidden, fusion_hidden, content, has_cf, int(self.seed))
        epochs = self._continue_from(context)
        train_step = self._train_step(tf, keras, parts, log_q)
        run_epoch = self._epoch_runner(tf, train_step, pos_u, pos_i)
        self._has_cf = has_cf
        self._train_epochs(train, context, run_epoch, self._set_vectors, epochs=epochs)
        self.genre_overlap_ = self._all_genre_overlaps()
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _grown(self, warm: WarmStart) -> dict:
        """The user and item ID embeddings by the id maps; the content branch's first dense layer by content
        column name (a genre or numeric column new tonight keeps its cold rows; text components by position)."""
        grown = {"user_id_embedding": Grow(warm.user_map), "item_id_embedding": Grow(warm.item_map)}
        old_columns = getattr(warm.model, "content_columns_", None)
        if old_columns is not None:  # a fit saved before the names were kept carries the layer only at the same shape
            grown["content_dense_0" if self.hidden else "content_out"] = Grow(names_map(old_columns, self.content_columns_))
        return grown

    def _apply_gradients(self, tf, keras, variables):
        """``apply(grads)`` of ``optimizer``: Keras's Adam, or lazy Adam (only the batch's embedding rows)."""
        if self.optimizer == "lazy_adam":
            return make_lazy_adam(tf, variables, float(self.lr))
        optimizer = keras.optimizers.Adam(learning_rate=float(self.lr))
        optimizer.build(variables)

        def apply_gradients(grads):
            optimizer.apply(grads, variables)

        return apply_gradients

    def _train_step(self, tf, keras, parts, log_q: np.ndarray):
        """The step on a (user, item) batch: the cf_dropout mask, the (optionally XLA-compiled) loss and gradient, the update.

        Returns (total, softmax, alignment) losses.
        """
        variables = [v for part in parts for v in part.trainable_variables]  # user tower, content, cf, fusion head
        apply_gradients = self._apply_gradients(tf, keras, variables)
        losses_and_gradients = self._losses_and_gradients(tf, parts, variables, log_q)
        drop_p = float(self.cf_dropout)
        step_seed = tf.Variable([int(self.seed), 0], dtype=tf.int64, trainable=False)
        idx_spec = tf.TensorSpec([None], tf.int32)

        @tf.function(input_signature=[idx_spec, idx_spec], reduce_retracing=True)
        def train_step(u, i):
            keep = None
            if drop_p > 0:  # drawn outside XLA: a compiled stateless_uniform drew other items than the graph's
                step_seed.assign_add(tf.constant([0, 1], tf.int64))
                keep = tf.random.stateless_uniform(tf.shape(i), seed=step_seed) >= drop_p
            losses, grads = losses_and_gradients(u, i, keep)
            apply_gradients(grads)
            return losses

        return train_step

    def _losses_and_gradients(self, tf, parts, variables, log_q: np.ndarray):
        """The objective of the module doc and its gradient, a ``tf.function`` (XLA with ``jit_compile``)."""
        user_tower, content_branch, cf_branch, fusion = parts
        # the ID tables are read row-wise (a gather on the variable itself), never whole: once a
        # sparse update has touched a variable, TensorFlow copies all of it on every dense read,
        # which the Keras Embedding layer's lookup is (the whole table each step at 25M's size)
        user_emb = _tf_variable(tf, user_tower.get_layer("user_id_embedding").embeddings)
        item_emb = _tf_variable(tf, cf_branch.get_layer("item_id_embedding").embeddings)
        user_unit, cf_unit = user_tower.get_layer("user_unit"), cf_branch.get_layer("cf_unit")
        inv_t = tf.constant(1.0 / float(self.temperature), tf.float32)
        align_w = tf.constant(float(self.alignment_weight), tf.float32)
        l2 = float(self.l2)
        log_q_t = tf.constant(log_q) if self.logq_correction else None
        branch_w = float(self.branch_loss_weight)
        shared = None if self.shared_negatives is None else int(self.shared_negatives)

        @tf.function(jit_compile=bool(self.jit_compile))
        def losses_and_gradients(u, i, keep):
            with tf.GradientTape() as tape:
                ue = user_unit(tf.gather(user_emb, u))  # = user_tower(u)
                ce = content_branch(i, training=True)
                fe = cf_unit(tf.gather(item_emb, i))  # = cf_branch(i)
                fe_in = fe
                if keep is not None:
                    fe_in = fe * tf.cast(keep, fe.dtype)[:, None]
                he = fusion([ce, fe_in], training=True)

                def softmax(items):
                    return in_batch_softmax(tf, ue, items, i, inv_t, log_q_t, shared)

                sm = softmax(he)
                align = tf.reduce_mean(1.0 - tf.reduce_sum(ce * fe, axis=1))
                total = sm + align_w * align
                if branch_w:
                    total += branch_w * 0.5 * (softmax(ce) + softmax(fe))
                if l2:
                    total += l2 * (
                        tf.reduce_mean(tf.reduce_sum(tf.square(tf.gather(user_emb, u)), axis=1))
                        + tf.reduce_mean(tf.reduce_sum(tf.square(tf.gather(item_emb, i)), axis=1))
                    )
            return (total, sm, align), tape.gradient(total, variables)

        return losses_and_gradients

    def _epoch_runner(self, tf, train_step, pos_u: np.ndarray, pos_i: np.ndarray):
        """``run_epoch(epoch)`` for ``_train_epochs``: one seeded shuffled pass, the mean of each loss over its batches."""
        rng = np.random.default_rng(int(self.seed))

        def run_epoch(epoch: int):
            t0 = time.perf_counter()
            sums, n_batches = np.zeros(3), 0
            for bu, bi in shuffled_batches(tf, (pos_u, pos_i), int(self.batch_size), rng):
                sums += [float(v) for v in train_step(bu, bi)]
                n_batches += 1
            seconds = time.perf_counter() - t0
            total, sm, align = sums / max(n_batches, 1)
            return {"loss": float(total), "softmax_loss": float(sm), "alignment_loss": float(align)}, seconds

        return run_epoch

    def _set_vectors(self, batch: int = 8192) -> None:
        """Precompute every user vector and the three item-vector sets from the network (NumPy)."""
        model = self._model
        user_tower = model.get_layer("user_tower")
        content_branch, cf_branch, fusion = (model.get_layer(n) for n in ("content_branch", "cf_branch", "fusion_head"))
        n_users, n_items = self._seen.shape
        users = [np.asarray(user_tower(np.arange(s, min(s + batch, n_users), dtype=np.int32), training=False)) for s in range(0, n_users, batch)]
        c, f, h = [], [], []
        for s in range(0, n_items, batch):
            idx = np.arange(s, min(s + batch, n_items), dtype=np.int32)
            cv = np.asarray(content_branch(idx, training=False))
            fv = np.asarray(cf_branch(idx, training=False)) * self._has_cf[idx, None].astype(np.float32)
            c.append(cv)
            f.append(fv)
            h.append(np.asarray(fusion([cv, fv], training=False)))
        dim = int(self.dim)
        cat = lambda parts, n: np.concatenate(parts).astype(np.float32) if parts else np.zeros((n, dim), np.float32)  # noqa: E731
        self.user_vectors_ = normalise_rows(cat(users, 0))
        content, cf, hybrid = (normalise_rows(cat(p, 0)) for p in (c, f, h))
        content[~self.has_content_] = 0.0
        self.valid_ = {"content": self.has_content_.copy(), "cf": self._has_cf.copy(), "hybrid": np.ones(n_items, bool)}
        self.item_vectors_ = {"content": content, "cf": cf, "hybrid": hybrid}

    # -- scoring ----------------------------------------------------------------------------
    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        return np.ascontiguousarray(self.user_vectors_[users] @ self.item_vectors_["hybrid"].T, dtype=np.float32)

    def _user_vectors(self) -> np.ndarray:
        """(n_users, dim) float32 unit user vectors."""
        return self.user_vectors_.copy()

    def _item_vectors(self, space: str) -> np.ndarray:
        """(n_items, dim) float32 item vectors of one mode: unit rows, zero where ``valid_[mode]`` is False."""
        return self.item_vectors_[space].copy()

    def _item_valid(self, space: str) -> np.ndarray:
        return self.valid_[space].copy()

    def dot_factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``score`` is the user vectors against the (unit) hybrid item vectors."""
        self._check_fitted()
        V = self._item_vectors("hybrid")
        return self._user_vectors(), V, np.ones(len(V), bool)

    def find_title(self, title: str) -> int:
        """The item index of ``title`` (see ``similar`` for the matching rules); ``LookupError`` if none."""
        self._check_fitted()
        return self._title_index().find(title)

    def similar(self, title: str, k: int = 10, mode: Literal["content", "cf", "hybrid"] = "hybrid") -> pd.DataFrame:
        """The ``k`` items most similar to the item called ``title``: a frame of ``item_id``, ``title``, ``score``.

        Matching, case-insensitive, first that succeeds: the full title (``"Toy Story (1995)"``),
        the title without its year and with MovieLens's trailing article moved back
        (``"The Matrix"`` for ``"Matrix, The (1999)"``), the query as whole words inside a title
        (3+ characters), then the closest title by ``difflib`` with a ratio >= ``recflow.retrieval.titles.FUZZY_CUTOFF``.
        Several matches: the one with the most train interactions. No match: ``LookupError`` whose
        message lists the five closest titles. ``frame.attrs`` holds ``query_item_id`` and
        ``query_title`` (the title actually matched).
        """
        mode = _mode(mode)
        q = self.find_title(title)
        idx, scores = self.similar_items(q, k, mode)
        ok = idx >= 0
        frame = pd.DataFrame({"item_id": self.item_ids_[idx[ok]], "title": self.titles_[idx[ok]].astype(str), "score": scores[ok]})
        frame.attrs.update(query_item_id=int(self.item_ids_[q]), query_title=str(self.titles_[q]), mode=_mode(mode))
        return frame

    def _title_index(self) -> TitleIndex:
        """Built once per fit or load: canonicalising every title is a regex per item."""
        cached = getattr(self, "_title_cache", None)
        if cached is None or cached[0] is not self.titles_ or cached[1] is not self.item_counts_:
            cached = self._title_cache = (self.titles_, self.item_counts_, TitleIndex(self.titles_, self.item_counts_))
        return cached[2]

    # -- genre agreement --------------------------------------------------------------------
    def genre_overlap_at_k(self, k: int = 10, mode: Literal["content", "cf", "hybrid"] = "hybrid", items: np.ndarray | None = None) -> dict[str, float]:
        """``genre_overlap_at_k`` (module function) on this model's vectors of ``mode``.

        Default queries: the items with train interactions and >= 1 genre (one set for the three
        modes, so they compare), a seeded sample of ``genre_overlap_queries`` of them when more.
        """
        self._check_fitted()
        mode = _mode(mode)
        if items is None:
            items = self._default_overlap_queries()
        return genre_overlap_at_k(self.item_vectors_[mode], self.genres_, int(k), items, self.valid_[mode])

    def _default_overlap_queries(self) -> np.ndarray:
        return overlap_queries(self.genres_, self.item_counts_ > 0, self.genre_overlap_queries, int(self.seed))

    def _all_genre_overlaps(self) -> dict[str, float]:
        k = int(self.genre_overlap_k)
        queries = self._default_overlap_queries()
        out: dict[str, float] = {}
        for mode in MODES:
            r = self.genre_overlap_at_k(k, mode, queries)
            out[f"genre_overlap_at_{k}_{mode}"] = r[f"genre_overlap_at_{k}"]
            out[f"genre_jaccard_at_{k}_{mode}"] = r[f"genre_jaccard_at_{k}"]
        return out

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        keys = sorted(self.genre_overlap_)
        state = {
            "user_vectors": self.user_vectors_,
            "item_ids": self.item_ids_,
            "titles": self.titles_.astype(np.str_),
            "genres": self.genres_.astype(np.int8),
            "genre_names": np.asarray(self.genre_names_, dtype=np.str_),
            "item_counts": self.item_counts_,
            "has_content": self.has_content_,
            "content_columns": np.asarray(self.content_columns_, dtype=np.str_),
            "genre_overlap_names": np.array(keys, dtype=np.str_),
            "genre_overlap_values": np.array([self.genre_overlap_[k] for k in keys], dtype=np.float64),
        }
        for mode in MODES:
            state[f"vectors_{mode}"] = self.item_vectors_[mode]
            state[f"valid_{mode}"] = self.valid_[mode]
        return state

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_vectors_ = arrays["user_vectors"].astype(np.float32)
        self.item_ids_ = arrays["item_ids"]
        self.titles_ = arrays["titles"].astype(np.str_)
        self.genres_ = arrays["genres"].astype(np.int8)
        self.genre_names_ = arrays["genre_names"].astype(np.str_)
        self.item_counts_ = arrays["item_counts"].astype(np.int64)
        self.has_content_ = arrays["has_content"].astype(bool)
        if "content_columns" in arrays:  # saved since warm starts
            self.content_columns_ = [str(c) for c in arrays["content_columns"]]
        self._has_cf = self.item_counts_ > 0
        self.item_vectors_ = {m: arrays[f"vectors_{m}"].astype(np.float32) for m in MODES}
        self.valid_ = {m: arrays[f"valid_{m}"].astype(bool) for m in MODES}
        self.genre_overlap_ = {str(k): float(v) for k, v in zip(arrays["genre_overlap_names"], arrays["genre_overlap_values"])}
        self.history_ = []


def _tf_variable(tf, variable):
    """The ``tf.Variable`` under a Keras variable (itself when it is one)."""
    inner = getattr(variable, "value", None)
    return inner if isinstance(inner, tf.Variable) else variable


def _mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode
