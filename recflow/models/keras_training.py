"""What the Keras models (two_tower, dssm, hybrid, mult_vae) share, so their training, warm starts and persistence agree.

TensorFlow is imported inside functions only: importing the models (the CLI does) must stay cheap,
and a loaded model scores from its npz without TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recflow.evaluation.evaluate import evaluate_ranking, evaluate_ratings
from recflow.models.base import Recommender
from recflow.models.context import FitContext
from recflow.models.keras_warm import CannotCarry, carry_weights
from recflow.models.warm import WarmStart, warm_epochs
from recflow.prep.interactions import Interactions
from recflow.utils.quiet import stderr_to_log

MODEL_FILE = "model.keras"

log = logging.getLogger(__name__)

_TF_READY = False


def import_tf(threads: int | None = None):
    """(tensorflow, keras), imported on first use with the thread pools set (see the two_tower module doc)."""
    global _TF_READY
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _TF_READY:
        import keras
        import tensorflow as tf

        return tf, keras
    # TensorFlow's C++ start-up lines (cudart_stub, cuInit) go to the run's log file (recflow.utils.quiet)
    with stderr_to_log():
        import keras
        import tensorflow as tf

        if not _TF_READY:
            _TF_READY = True
            n = int(threads) if threads else thread_budget()
            try:
                if tf.config.threading.get_intra_op_parallelism_threads() == 0:
                    tf.config.threading.set_intra_op_parallelism_threads(n)
                if tf.config.threading.get_inter_op_parallelism_threads() == 0:
                    tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # the runtime is already running: keep what it has
                pass
            tf.config.list_physical_devices()  # the platforms' probe (cuInit) logs now, inside the redirect
            _absl_to_process_stderr()
    return tf, keras


def _absl_to_process_stderr() -> None:
    """Point absl's log handler (made by TensorFlow's import) at ``sys.__stderr__``.

    It keeps whatever ``sys.stderr`` was at import, and its ``close`` closes that stream unless it
    is the current ``sys.stderr`` or a ``sys.__std*__``. A later ``logging.config.dictConfig`` (Prefect's
    first import) closes every handler: when ``sys.stderr`` had been swapped in between (a CLI
    test runner, pytest's capture), that closed a stream that others still wrote to.
    ``sys.__stderr__`` is descriptor 2, which ``recflow.utils.quiet`` points at the run's log file.
    """
    if sys.__stderr__ is None:
        return
    try:
        from absl import logging as absl_logging

        absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    except (ImportError, AttributeError):  # another absl: leave it as it is
        pass


def thread_budget() -> int:
    """The threads this process should compute with: ``$OMP_NUM_THREADS`` when set, else its CPUs.

    A Dask worker process gets ``OMP_NUM_THREADS=1`` (``distributed.nanny.pre-spawn-environ``),
    so its BLAS runs one thread while the other workers use the other cores; TensorFlow's own
    thread pool ignores that variable, so two TF workers on 2 cores ran 4 busy threads. Reading
    the same budget keeps TF at the share the worker was given. A value that is not a positive
    integer is ignored.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def shuffled_batches(tf, arrays: tuple[np.ndarray, ...], batch_size: int, rng: np.random.Generator):
    """A ``tf.data`` pipeline of one epoch: the aligned ``arrays`` in a seeded random order, batched.

    The shuffle is one ``rng.permutation`` (NumPy, seeded), and each batch is a slice of the
    permuted arrays taken inside ``tf.data`` (``range`` -> ``map`` -> ``prefetch``): a per-element
    ``Dataset.shuffle(...).batch(...)`` pays per example and caps the examples/s before any
    compute, where one slice per batch costs next to nothing. A fixed prefetch of 2 with tf.data's
    autotuner off: with ``AUTOTUNE`` on 2 cores some epochs stalled to about twice their time.
    ``bench/two_tower.py`` measures both.
    """
    perm = rng.permutation(len(arrays[0]))
    tensors = tuple(tf.constant(a[perm]) for a in arrays)
    starts = tf.data.Dataset.range(0, len(perm), batch_size)
    ds = starts.map(lambda s: tuple(t[s : s + batch_size] for t in tensors)).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def tower_outputs(tower, n: int, batch: int = 8192) -> np.ndarray:
    """All ``n`` rows of a tower, as float32 NumPy."""
    out = []
    for start in range(0, n, batch):
        idx = np.arange(start, min(start + batch, n), dtype=np.int32)
        out.append(np.asarray(tower(idx, training=False)))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def make_lazy_adam(tf, variables, lr: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):
    """Adam whose update of an embedding table touches only the rows the batch used ("lazy Adam").

    Keras 3's Adam densifies an embedding's sparse gradient and updates every row's moments each
    step: on ml-1m that was half the step time. Here a ``tf.IndexedSlices`` gradient updates the
    moments and values of its (deduplicated) rows only; dense gradients get the usual Adam step.
    Returns ``apply(grads)`` for use inside a ``tf.function``.
    """
    tvars = [v.value if hasattr(v, "value") and isinstance(v.value, tf.Variable) else v for v in variables]
    ms = [tf.Variable(tf.zeros_like(v), trainable=False) for v in tvars]
    vs = [tf.Variable(tf.zeros_like(v), trainable=False) for v in tvars]
    step = tf.Variable(0.0, trainable=False, dtype=tf.float32)

    def apply(grads):
        t = step.assign_add(1.0)
        alpha = lr * tf.sqrt(1.0 - tf.pow(beta_2, t)) / (1.0 - tf.pow(beta_1, t))
        for g, var, m, v in zip(grads, tvars, ms, vs):
            if g is None:
                continue
            if isinstance(g, tf.IndexedSlices):
                rows, pos = tf.unique(g.indices)
                gv = tf.math.unsorted_segment_sum(g.values, pos, tf.shape(rows)[0])
                m_rows = beta_1 * tf.gather(m, rows) + (1.0 - beta_1) * gv
                v_rows = beta_2 * tf.gather(v, rows) + (1.0 - beta_2) * tf.square(gv)
                m.scatter_update(tf.IndexedSlices(m_rows, rows))
                v.scatter_update(tf.IndexedSlices(v_rows, rows))
                var.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))
            else:
                m_new = m.assign(beta_1 * m + (1.0 - beta_1) * g)
                v_new = v.assign(beta_2 * v + (1.0 - beta_2) * tf.square(g))
                var.assign_sub(alpha * m_new / (tf.sqrt(v_new) + epsilon))

    return apply


class KerasRecommender(Recommender):
    """A recommender whose network is a Keras model in ``_model``, saved as ``model.keras`` beside the npz.

    ``threads`` and ``verbose`` are execution parameters (``execution_params``: out of the cache key):
    with op determinism on, the thread count changes speed, not results. ``jit_compile`` stays in the
    key: XLA fuses operations and so changes floating-point results.

    Subclasses have the params ``epochs``, ``patience``, ``seed``, ``deterministic``, ``threads``,
    ``verbose`` (and ``early_stopping_k`` unless they predict ratings).

    Warm starts (``recflow.models.keras_warm``): a subclass that declares ``warm_starts`` builds its
    network as a cold fit would, calls ``_continue_from(context)`` (the earlier fit's weights carried
    over, grown by the id maps its ``_grown(warm)`` names) and trains the epochs that returns.
    """

    framework_flavour = "keras"
    trains_in_epochs = True
    execution_params = frozenset({"threads", "verbose"})
    #: a warm fit's fewest epochs: the first moves the new rows off their initial draw, the second refines the rest with them
    warm_min_epochs = 2

    def _continue_from(self, context: FitContext) -> int:
        """Carry ``context.warm_start``'s network into the freshly built ``_model``; the epochs this fit trains.

        Without a warm start, ``epochs``. With one, ``warm_epochs`` (the share of new training rows,
        at least ``warm_min_epochs``); a network that does not fit (``CannotCarry``) is left cold,
        with full ``epochs``, ``warm_started_`` False and the reason in ``warm_declined_`` (and the log).
        """
        self.warm_declined_ = None
        warm = self._warm(context)
        if warm is None:
            return int(self.epochs)
        try:
            carry_weights(self._model, warm.model.keras_model, self._grown(warm))
        except CannotCarry as err:
            self.warm_started_ = False
            self.warm_declined_ = str(err)
            log.warning("%s fits cold: the earlier fit's network cannot be carried over (%s)", self.name, err)
            return int(self.epochs)
        return warm_epochs(int(self.epochs), warm.share_new, self.warm_min_epochs)

    def _grown(self, warm: WarmStart) -> dict:
        """``recflow.models.keras_warm.carry_weights``'s ``grown``: the weights indexed by users, items or
        input columns, with their maps from the earlier fit (the ID embeddings by ``warm.user_map`` / ``item_map``)."""
        raise NotImplementedError(f"{self.name} declares warm_starts but does not say which weights grow (_grown)")

    def framework_model(self):
        return self.keras_model

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        for key in ("hidden", "fusion_hidden"):  # layer sizes: a JSON list whatever sequence was given
            if params.get(key) is not None:
                params[key] = [int(h) for h in params[key]]
        return params

    def _check_training_params(self, min_batch_size: int = 1) -> None:
        """The checks of the parameters every Keras model shares (each model checks its own on top)."""
        hidden = [*self.hidden, *(self.get_params().get("fusion_hidden") or [])]
        if int(self.dim) < 1 or int(self.batch_size) < min_batch_size or int(self.epochs) < 1:
            raise ValueError(f"dim must be >= 1, batch_size >= {min_batch_size}, epochs >= 1")
        if any(int(h) < 1 for h in hidden):
            raise ValueError("hidden layer sizes must be >= 1")
        if not self.lr > 0 or self.l2 < 0 or int(self.patience) < 0:
            raise ValueError("lr must be > 0, l2 >= 0, patience >= 0")
        if not self.predicts_ratings and int(self.early_stopping_k) < 1:
            raise ValueError("early_stopping_k must be >= 1")

    def _seeded_tf(self):
        """(tf, keras), and op determinism when ``deterministic``; no process-global seed is set.

        Models train concurrently in threads of one process (Prefect's thread-pool task runner),
        so a fit's randomness must be its own: every initialiser takes a seed derived from
        ``seed``, dropout-like draws are stateless ops keyed by (seed, step), and shuffles and
        negatives come from a NumPy Generator of ``seed``. ``keras.utils.set_random_seed`` would
        reset Python's, NumPy's and TensorFlow's global generators under whatever else runs.
        """
        tf, keras = import_tf(self.threads)
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        return tf, keras

    def _train_epochs(
        self,
        train: Interactions,
        context: FitContext,
        run_epoch: Callable[[int], tuple[dict[str, float], float]],
        refresh: Callable[[], None],
        n_examples: int | None = None,
        epochs: int | None = None,
    ) -> None:
        """The epoch loop: ``history_``, progress, early stopping on ``context.valid``, best weights restored.

        ``run_epoch(epoch)`` trains one epoch and returns its losses (``loss`` first) and its training
        seconds (each model decides what it times); ``refresh()`` recomputes the NumPy vectors that
        scoring, and so validation, reads. Rating models stop on the validation RMSE, rankers on
        Recall@``early_stopping_k``. ``n_examples`` adds ``examples_per_second`` to the history.
        ``epochs``: at most this many (a warm fit's, ``_continue_from``); None: the model's ``epochs``.
        """
        self._remember_seen(train)  # validation ranks and masks with it
        valid = context.valid if context.valid is not None and len(context.valid) else None
        if self.predicts_ratings:
            metric, sign = "valid_rmse", -1.0
        else:
            k = int(self.early_stopping_k)
            metric, sign = f"valid_recall_at_{k}", 1.0
        self.history_: list[dict[str, Any]] = []
        best, best_weights, best_epoch, bad = -np.inf, None, 0, 0
        for epoch in range(1, int(self.epochs if epochs is None else epochs) + 1):
            losses, seconds = run_epoch(epoch)
            refresh()
            value = float("nan")
            if valid is not None and self.predicts_ratings:
                value = float(evaluate_ratings(self, valid)["rmse"])
            elif valid is not None:
                value = float(evaluate_ranking(self, train, valid, ks=[k])[f"recall_at_{k}"])
            entry = {"epoch": epoch, **losses, metric: value}
            if n_examples is not None:
                entry["examples_per_second"] = n_examples / seconds if seconds > 0 else float("inf")
            entry["seconds"] = seconds
            self.history_.append(entry)
            if self.verbose:
                print(f"{self.name} epoch {epoch}: " + ", ".join(f"{a}={b:.4g}" for a, b in entry.items() if a != "epoch"), flush=True)
            if context.on_epoch_end is not None:
                context.on_epoch_end(epoch, {a: b for a, b in entry.items() if a != "epoch"})
            if not np.isfinite(entry["loss"]):
                raise FloatingPointError(f"{self.name}: the training loss is {entry['loss']} at epoch {epoch}")
            if valid is None:
                continue
            if sign * value > best:
                best, best_epoch, bad = sign * value, epoch, 0
                best_weights = self._model.get_weights()
            else:
                bad += 1
                if bad > int(self.patience):
                    break
        if best_weights is not None and best_epoch != len(self.history_):
            self._model.set_weights(best_weights)
            refresh()
        self.best_epoch_ = best_epoch if valid is not None else len(self.history_)

    @property
    def keras_model(self):
        """The Keras network (the model's module doc describes it); after ``load``, read on first access."""
        self._check_fitted()
        if getattr(self, "_model", None) is None:
            path = getattr(self, "_model_path", None)
            if path is None:
                raise FileNotFoundError("no Keras model: fit the model or load it from a saved folder")
            _, keras = import_tf(self.threads)
            self._model = keras.saving.load_model(path, compile=False)
        return self._model

    def save(self, path: str | Path) -> None:
        super().save(path)
        self.keras_model.save(Path(path) / MODEL_FILE)

    @classmethod
    def load(cls, path: str | Path) -> KerasRecommender:
        model = super().load(path)
        model._model = None  # loaded on first use of ``keras_model``: scoring needs only the npz
        model._model_path = str(Path(path) / MODEL_FILE)
        return model
