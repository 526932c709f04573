"""Finding a movie by a typed title: case-insensitive, year optional, article order forgiven, fuzzy last.

Kept free of heavy imports (numpy only) because the retrieval commands call it on start-up.
The rules are those of ``HybridRecommender.find_title`` (recflow.models.hybrid), over any
catalogue: first that succeeds among

1. the full title, case- and space-insensitive (``"toy story (1995)"``);
2. the canonical title: year stripped, MovieLens's trailing article moved back
   (``"The Matrix"`` finds ``"Matrix, The (1999)"``);
3. the query as whole words inside a canonical title, for queries of 3+ characters
   (``"star wars"`` finds ``"Star Wars: Episode IV - A New Hope (1977)"``);
4. the closest canonical title by ``difflib`` with a ratio >= ``FUZZY_CUTOFF``.

Several titles match: the one with the most training interactions wins (ties: lower index).
None: ``TitleNotFound``, whose ``suggestions`` are the five closest titles.
"""

from __future__ import annotations

import difflib
import re

import numpy as np

FUZZY_CUTOFF = 0.6
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")
_TRAILING_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<art>the|a|an|les|la|le|l'|il|el|los|las|lo|das|der|die|den|det)$")


class TitleNotFound(LookupError):
    """No title matches; ``suggestions`` holds the closest ones (best first)."""

    def __init__(self, query: str, suggestions: list[str]) -> None:
        self.query = query
        self.suggestions = suggestions
        super().__init__(f"no title matches {query!r}; closest titles: " + "; ".join(suggestions))


def strip_year(title: str) -> str:
    """``"Toy Story (1995)"`` -> ``"Toy Story"``."""
    return _YEAR_SUFFIX.sub("", str(title)).strip()


def canonical_title(title: str) -> str:
    """Lower-case, year stripped, trailing article moved back: ``"Matrix, The (1999)"`` -> ``"the matrix"``."""
    s = " ".join(strip_year(title).lower().split())
    m = _TRAILING_ARTICLE.match(s)
    if m:
        art = m.group("art")
        s = f"{art}{m.group('rest')}" if art.endswith("'") else f"{art} {m.group('rest')}"
    return s


class TitleIndex:
    """The titles of a catalogue, prepared once for repeated ``find`` calls."""

    def __init__(self, titles: np.ndarray | list[str], counts: np.ndarray | None = None) -> None:
        self.titles = np.asarray([str(t) if t is not None else "" for t in titles], dtype=object)
        self.counts = np.zeros(len(self.titles), np.int64) if counts is None else np.asarray(counts, np.int64)
        if len(self.counts) != len(self.titles):
            raise ValueError(f"{len(self.titles)} titles but {len(self.counts)} counts")
        self.lower = np.array([" ".join(t.lower().split()) for t in self.titles], dtype=object)
        self.canonical = np.array([canonical_title(t) if t else "" for t in self.titles], dtype=object)
        self.named = self.lower != ""

    def _best(self, mask: np.ndarray) -> int | None:
        cand = np.flatnonzero(mask & self.named)
        if not len(cand):
            return None
        return int(cand[np.argmax(self.counts[cand])])  # argmax: first (lowest index) among equal counts

    def find(self, query: str) -> int:
        """The index of the title ``query`` names (module doc for the rules); ``TitleNotFound`` if none."""
        lower = " ".join(str(query).lower().split())
        canon = canonical_title(query)
        for mask in (self.lower == lower, self.canonical == canon):
            hit = self._best(mask)
            if hit is not None:
                return hit
        if len(canon) >= 3:
            pattern = re.compile(r"(?<!\w)" + re.escape(canon) + r"(?!\w)")
            hit = self._best(np.array([bool(pattern.search(t)) for t in self.canonical], dtype=bool))
            if hit is not None:
                return hit
        unique = sorted(set(self.canonical[self.named].tolist()))
        close = difflib.get_close_matches(canon, unique, n=1, cutoff=FUZZY_CUTOFF)
        if close:
            return self._best(self.canonical == close[0])  # type: ignore[return-value]
        raise TitleNotFound(str(query), self.suggest(canon, unique))

    def suggest(self, canon: str, unique: list[str], n: int = 5) -> list[str]:
        closest = difflib.get_close_matches(canon, unique, n=n, cutoff=0.0)
        return [str(self.titles[self._best(self.canonical == c)]) for c in closest]
