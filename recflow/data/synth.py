"""Synthetic MovieLens-format datasets with structure a recommender can learn.

The generative model (all from one seeded NumPy generator, so a seed fixes every byte):

* users and items get ``rank``-dimensional factors ``U``, ``V`` (entries N(0, rank^-1/2),
  so an affinity ``u . v`` has unit variance), item popularity is Zipf-like
  (``p_i ~ (r_i + 10)^-1.1`` for a random popularity rank ``r_i``);
* a user's number of ratings is heavy-tailed (1 + multinomial over log-normal weights,
  capped at ``n_items``), summing exactly to ``n_ratings``;
* which items a user rates: Gumbel-top-k over ``log p_i + 1.5 * u . v_i``, i.e. sampled
  without replacement, favouring popular items and items the user likes. Light users
  draw candidates by popularity and keep the best by affinity + Gumbel noise (vectorised,
  chunked over users); heavy users rank every item;
* the rating: ``3.5 + b_u + b_i + 0.8 * (u . v - mean) + N(0, 0.6)`` rounded to the format's grid
  (half stars 0.5..5 for ml-25m, integers 1..5 for ml-1m/ml-100k), so ratings carry the
  same low-rank signal;
* timestamps increase along each user's rows (exponential gaps over a per-user span);
* items get "Synthetic Movie <id> (<year>)" titles (every 10th "..., The (<year>)", which
  CSV quoting must handle) and 1-3 genres chosen by their factors.

Formats: ``ml-25m`` (ratings/movies/tags/links.csv), ``ml-1m`` (``::`` .dat files with
users.dat), ``ml-100k`` (u.data, u.item, u.user, u.genre, u.occupation). Ids are
1..n_users and 1..n_items. No (user, item) pair repeats and every user has a rating.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .releases import ML100K_GENRES

FORMATS = ("ml-25m", "ml-1m", "ml-100k")

ML25M_GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
ML1M_GENRES = tuple(g for g in ML100K_GENRES if g != "unknown")
ML100K_OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other",
    "programmer", "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip
ML1M_AGES = (1, 18, 25, 35, 45, 50, 56)
TAG_WORDS = (
    "atmospheric", "funny", "twist ending", "visually appealing", "classic", "quirky",
    "dark comedy", "based on a book", "thought-provoking", "slow", "sci-fi, space", "great soundtrack",
)  # fmt: skip

_BETA = 1.5  # strength of user-item affinity in which items get rated
_CHUNK_RATINGS = 1 << 21
_TIME = {  # first and last rating time of the real releases
    "ml-25m": (789_652_009, 1_574_327_703),
    "ml-1m": (956_703_932, 1_046_454_590),
    "ml-100k": (874_724_710, 893_286_638),
}


def write_synthetic(
    out_dir: Path,
    *,
    n_users: int,
    n_items: int,
    n_ratings: int,
    rank: int = 8,
    format: str = "ml-25m",
    seed: int = 0,
) -> Path:
    """Write a synthetic dataset in MovieLens ``format`` into ``out_dir``; returns ``out_dir``."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if n_users <= 0 or n_items <= 0 or rank <= 0:
        raise ValueError("n_users, n_items and rank must be positive")
    if not n_users <= n_ratings <= n_users * n_items:
        raise ValueError(f"n_ratings={n_ratings} must be between n_users={n_users} (one each) and n_users * n_items={n_users * n_items} (no repeated pair)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    model = _Model(rng, n_users, n_items, rank)
    counts = _user_counts(rng, n_users, n_items, n_ratings)

    _write_items(out_dir, format, model, rng)
    if format != "ml-25m":
        _write_users(out_dir, format, n_users, rng)
    t0, t1 = _TIME[format]
    span = np.minimum(rng.exponential(0.15 * (t1 - t0), n_users), 0.9 * (t1 - t0))
    start = t0 + rng.random(n_users) * (t1 - t0 - span)

    writer = _RatingsWriter(out_dir, format)
    tags: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    try:
        bounds = np.searchsorted(np.cumsum(counts), np.arange(_CHUNK_RATINGS, n_ratings, _CHUNK_RATINGS), side="right")
        edges = [0, *sorted({int(b) for b in bounds if 0 < b < n_users}), n_users]
        for lo, hi in zip(edges[:-1], edges[1:]):
            users, items, affinity = _choose_items(rng, model, np.arange(lo, hi), counts[lo:hi])
            ratings = _ratings(rng, model, users, items, affinity, format)
            ts = _timestamps(rng, users, counts[lo:hi], start, span)
            writer.write(users + 1, items + 1, ratings, ts)
            if format == "ml-25m":
                pick = rng.random(len(users)) < 0.04
                tags.append((users[pick], items[pick], ts[pick] + rng.integers(0, 3600, int(pick.sum()))))
    finally:
        writer.close()
    if format == "ml-25m":
        _write_tags(out_dir, tags, rng)
        _write_links(out_dir, n_items, rng)
    (out_dir / "README.txt").write_text(
        f"Synthetic dataset in {format} format written by recflow.data.synth.write_synthetic\n"
        f"n_users={n_users} n_items={n_items} n_ratings={n_ratings} rank={rank} seed={seed}\n"
    )
    return out_dir


# ----------------------------------------------------------------------------- model


class _Model:
    """Factors, biases and the popularity law.

    Popularity: item of popularity rank ``r`` (0 = most popular) has probability
    ``F(r + 1) - F(r)`` where ``F`` is the CDF of the density ``(x + 10)^-1.1`` on
    ``[0, n_items)``: Zipf-like, and sampled exactly by inverting ``F`` (no search).
    """

    _A = 1.1
    _OFFSET = 10.0

    def __init__(self, rng: np.random.Generator, n_users: int, n_items: int, rank: int):
        sd = rank**-0.25
        self.n_items = n_items
        self.U = rng.normal(0, sd, (n_users, rank)).astype(np.float32)
        self.V = rng.normal(0, sd, (n_items, rank)).astype(np.float32)
        self.rank_of = rng.permutation(n_items)  # item -> popularity rank
        self.item_at = np.argsort(self.rank_of)  # popularity rank -> item
        e = 1.0 - self._A
        self._lo = self._OFFSET**e
        self._span = (n_items + self._OFFSET) ** e - self._lo
        edges = self._cdf(np.arange(n_items + 1, dtype=np.float64))
        p_rank = np.diff(edges)
        self.logp = np.log(p_rank)[self.rank_of]  # per item
        z = (self.logp - self.logp.mean()) / (self.logp.std() or 1.0)
        self.b_user = rng.normal(0, 0.35, n_users).astype(np.float32)
        self.b_item = (0.25 * z + rng.normal(0, 0.25, n_items)).astype(np.float32)

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        return ((x + self._OFFSET) ** (1.0 - self._A) - self._lo) / self._span

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        u = rng.random(size)
        x = (self._lo + u * self._span) ** (1.0 / (1.0 - self._A)) - self._OFFSET
        ranks = np.clip(x.astype(np.int64), 0, self.n_items - 1)
        return self.item_at[ranks]


def _user_counts(rng: np.random.Generator, n_users: int, n_items: int, n_ratings: int) -> np.ndarray:
    w = rng.lognormal(0.0, 1.2, n_users)
    counts = 1 + rng.multinomial(n_ratings - n_users, w / w.sum()).astype(np.int64)
    while True:
        over = int(np.clip(counts - n_items, 0, None).sum())
        if over == 0:
            return counts
        counts = np.minimum(counts, n_items)
        room = n_items - counts
        weights = w * room
        counts += rng.multinomial(over, weights / weights.sum())


def _choose_items(rng: np.random.Generator, model: _Model, users: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, affinity) rows grouped by user (in ``users`` order), counts[k] distinct items each."""
    n_items = model.n_items
    heavy = counts * 8 > n_items
    picked: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    todo = np.flatnonzero(~heavy)
    factor = 2.0
    for _ in range(3):
        if not len(todo):
            break
        got, short = _candidates(rng, model, users[todo], counts[todo], factor)
        for k, (items, aff) in zip(todo[~short], got):
            picked[int(k)] = (items, aff)
        todo = todo[short]
        factor *= 4
    for k in [*np.flatnonzero(heavy).tolist(), *todo.tolist()]:
        aff = model.V @ model.U[users[k]]
        key = model.logp + _BETA * aff + rng.gumbel(size=n_items)
        c = int(counts[k])
        top = np.argpartition(-key, c - 1)[:c] if c < n_items else np.arange(n_items)
        picked[int(k)] = (top, aff[top])
    order = range(len(users))
    items = np.concatenate([picked[k][0] for k in order]).astype(np.int64)
    aff = np.concatenate([picked[k][1] for k in order]).astype(np.float32)
    return np.repeat(users, counts), items, aff


def _candidates(
    rng: np.random.Generator, model: _Model, users: np.ndarray, counts: np.ndarray, factor: float
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Popularity-sampled candidates, best ``counts`` by affinity + Gumbel noise; ``short`` marks users with too few."""
    n_items = model.n_items
    m = np.ceil(counts * factor).astype(np.int64) + 4
    pair = np.repeat(np.arange(len(users), dtype=np.int64) * n_items, m)
    pair += model.sample(rng, len(pair))
    pair.sort()
    distinct = np.ones(len(pair), bool)
    distinct[1:] = pair[1:] != pair[:-1]
    pair = pair[distinct]
    local, items = np.divmod(pair, n_items)
    del pair
    aff = np.einsum("ij,ij->i", model.U[users[local]], model.V[items])
    key = _BETA * aff + rng.gumbel(size=len(aff)).astype(np.float32)
    # one sort: by user, then by key descending (tanh maps the key into the open unit interval)
    order = np.argsort(local + 0.5 - 0.49 * np.tanh(key / 8.0))
    local, items, aff = local[order], items[order], aff[order]
    n_distinct = np.bincount(local, minlength=len(users))
    starts = np.concatenate([[0], np.cumsum(n_distinct)[:-1]])
    rank_in_user = np.arange(len(local)) - starts[local]
    short = n_distinct < counts
    keep = (rank_in_user < counts[local]) & ~short[local]
    items, aff = items[keep], aff[keep]
    splits = np.cumsum(counts[~short])[:-1]
    got = list(zip(np.split(items, splits), np.split(aff, splits)))
    return got, short


def _ratings(rng: np.random.Generator, model: _Model, users: np.ndarray, items: np.ndarray, aff: np.ndarray, format: str) -> np.ndarray:
    # rated items are chosen for their affinity, so centre it: the mean rating stays near 3.5
    centred = aff - aff.mean() if len(aff) else aff
    r = 3.5 + model.b_user[users] + model.b_item[items] + 0.8 * centred + rng.normal(0, 0.6, len(users))
    if format == "ml-25m":
        return np.clip(np.round(r * 2) / 2, 0.5, 5.0)
    return np.clip(np.round(r), 1.0, 5.0)


def _timestamps(rng: np.random.Generator, users: np.ndarray, counts: np.ndarray, start: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Non-decreasing per user along the rows: cumulative exponential gaps scaled into the user's span."""
    gaps = rng.exponential(1.0, len(users))
    cs = np.cumsum(gaps)
    ends = np.cumsum(counts)
    before = np.concatenate([[0.0], cs[ends[:-1] - 1]]) if len(counts) else np.zeros(0)
    within = cs - np.repeat(before, counts)
    total = np.repeat(cs[ends - 1] - before + 1.0, counts)
    frac = within / total
    return (start[users] + frac * span[users]).astype(np.int64)


# ----------------------------------------------------------------------------- writers


class _RatingsWriter:
    def __init__(self, out_dir: Path, format: str):
        self.format = format
        name = {"ml-25m": "ratings.csv", "ml-1m": "ratings.dat", "ml-100k": "u.data"}[format]
        self.fh = open(out_dir / name, "wb")
        if format == "ml-25m":
            self.fh.write(b"userId,movieId,rating,timestamp\n")
            self.labels = pa.array([f"{k / 2:.1f}" for k in range(11)])

    def write(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, ts: np.ndarray) -> None:
        if self.format == "ml-25m":
            r = pc.take(self.labels, pa.array(np.round(ratings * 2).astype(np.int64)))
            cols, sep = [pa.array(users), pa.array(items), r, pa.array(ts)], ","
        else:
            cols = [pa.array(users), pa.array(items), pa.array(ratings.astype(np.int64)), pa.array(ts)]
            sep = "::" if self.format == "ml-1m" else "\t"
        _write_lines(self.fh, cols, sep)

    def close(self) -> None:
        self.fh.close()


def _write_lines(fh, columns: list[pa.Array], sep: str) -> None:
    """Rows of ``columns`` joined by ``sep``, one per line, without quoting (values must not need it)."""
    strings = [c if pa.types.is_string(c.type) else pc.cast(c, pa.string()) for c in columns]
    last = pc.binary_join_element_wise(strings[-1], pa.scalar(""), "\n")
    lines = pc.binary_join_element_wise(*strings[:-1], last, sep)
    if len(lines) == 0:
        return
    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, lines.offset * 4)
    fh.write(memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]])


def _years(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(2019 - np.floor(rng.exponential(18, n)), 1902, 2019).astype(np.int64)


def _genres(rng: np.random.Generator, model: _Model, names: tuple[str, ...]) -> list[list[str]]:
    g = rng.normal(0, 1, (len(names), model.V.shape[1])).astype(np.float32)
    score = model.V @ g.T + rng.normal(0, 0.3, (model.n_items, len(names)))
    k = rng.choice([1, 2, 3], size=model.n_items, p=[0.45, 0.35, 0.2])
    top = np.argsort(-score, axis=1)[:, :3]
    return [[names[j] for j in sorted(top[i, : k[i]].tolist())] for i in range(model.n_items)]


def _write_items(out_dir: Path, format: str, model: _Model, rng: np.random.Generator) -> None:
    n = model.n_items
    years = _years(rng, n)
    ids = np.arange(1, n + 1)
    titles = [f"Synthetic Movie {i}, The ({y})" if i % 10 == 0 else f"Synthetic Movie {i} ({y})" for i, y in zip(ids.tolist(), years.tolist())]
    if format == "ml-25m":
        genres = _genres(rng, model, ML25M_GENRES)
        none = rng.random(n) < 0.01
        text = ["(no genres listed)" if none[i] else "|".join(g) for i, g in enumerate(genres)]
        _write_csv(out_dir / "movies.csv", {"movieId": pa.array(ids), "title": titles, "genres": text})
    elif format == "ml-1m":
        genres = _genres(rng, model, ML1M_GENRES)
        with open(out_dir / "movies.dat", "w", encoding="latin-1", newline="\n") as fh:
            for i, t, g in zip(ids.tolist(), titles, genres):
                fh.write(f"{i}::{t}::{'|'.join(g)}\n")
    else:
        genres = _genres(rng, model, ML100K_GENRES[1:])
        index = {g: k for k, g in enumerate(ML100K_GENRES)}
        with open(out_dir / "u.item", "w", encoding="latin-1", newline="\n") as fh:
            for i, t, y, g in zip(ids.tolist(), titles, years.tolist(), genres):
                flags = ["0"] * 19
                for name in g:
                    flags[index[name]] = "1"
                url = "http://us.imdb.com/M/title-exact?" + t.replace(" ", "%20")
                fh.write(f"{i}|{t}|01-Jan-{y}||{url}|{'|'.join(flags)}\n")
        with open(out_dir / "u.genre", "w", encoding="latin-1", newline="\n") as fh:
            fh.writelines(f"{g}|{k}\n" for k, g in enumerate(ML100K_GENRES))
        with open(out_dir / "u.occupation", "w", encoding="latin-1", newline="\n") as fh:
            fh.writelines(f"{o}\n" for o in ML100K_OCCUPATIONS)


def _write_users(out_dir: Path, format: str, n_users: int, rng: np.random.Generator) -> None:
    gender = np.where(rng.random(n_users) < 0.72, "M", "F")
    zips = rng.integers(1000, 99999, n_users)
    if format == "ml-1m":
        ages = rng.choice(ML1M_AGES, n_users, p=[0.04, 0.18, 0.35, 0.2, 0.09, 0.08, 0.06])
        occ = rng.integers(0, 21, n_users)
        with open(out_dir / "users.dat", "w", encoding="latin-1", newline="\n") as fh:
            for u in range(n_users):
                fh.write(f"{u + 1}::{gender[u]}::{ages[u]}::{occ[u]}::{zips[u]:05d}\n")
    else:
        ages = np.clip(rng.normal(33, 11, n_users).round(), 7, 73).astype(int)
        occ = rng.integers(0, len(ML100K_OCCUPATIONS), n_users)
        with open(out_dir / "u.user", "w", encoding="latin-1", newline="\n") as fh:
            for u in range(n_users):
                fh.write(f"{u + 1}|{ages[u]}|{gender[u]}|{ML100K_OCCUPATIONS[occ[u]]}|{zips[u]:05d}\n")


def _write_tags(out_dir: Path, tags: list, rng: np.random.Generator) -> None:
    users = np.concatenate([t[0] for t in tags]) if tags else np.zeros(0, np.int64)
    items = np.concatenate([t[1] for t in tags]) if tags else np.zeros(0, np.int64)
    ts = np.concatenate([t[2] for t in tags]) if tags else np.zeros(0, np.int64)
    words = pa.array([_quote(w) for w in TAG_WORDS])
    which = rng.integers(0, len(TAG_WORDS), len(users))
    _write_csv(
        out_dir / "tags.csv",
        {
            "userId": pa.array(users + 1),
            "movieId": pa.array(items + 1),
            "tag": pc.take(words, pa.array(which)),
            "timestamp": pa.array(ts),
        },
        quoted=True,
    )


def _write_links(out_dir: Path, n_items: int, rng: np.random.Generator) -> None:
    ids = np.arange(1, n_items + 1)
    imdb = [f"{100000 + i:07d}" for i in ids.tolist()]
    tmdb = [str(t) if keep else "" for t, keep in zip((rng.permutation(n_items) + 1000).tolist(), rng.random(n_items) >= 0.01)]
    _write_csv(out_dir / "links.csv", {"movieId": pa.array(ids), "imdbId": imdb, "tmdbId": tmdb})


def _quote(value: str) -> str:
    """CSV minimal quoting, as MovieLens files do it."""
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _write_csv(path: Path, columns: dict, *, quoted: bool = False) -> None:
    """A CSV with an unquoted header; string columns quoted only where needed (``quoted``: already done)."""
    arrays = []
    for col in columns.values():
        if isinstance(col, list):
            col = pa.array([_quote(v) for v in col] if not quoted else col, pa.string())
        arrays.append(col)
    with open(path, "wb") as fh:
        fh.write((",".join(columns) + "\n").encode())
        n = len(arrays[0])
        for lo in range(0, n, 1 << 20):
            _write_lines(fh, [a.slice(lo, 1 << 20) for a in arrays], ",")
