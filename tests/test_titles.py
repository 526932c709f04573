"""recflow.retrieval.titles: finding a movie by what a person types."""

from __future__ import annotations

import pytest

from recflow.retrieval.titles import TitleIndex, TitleNotFound, canonical_title

TITLES = [
    "Toy Story (1995)",
    "Matrix, The (1999)",
    "Star Wars: Episode IV - A New Hope (1977)",
    "Heat (1995)",
    "Heat (1986)",
    "Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
]
COUNTS = [50, 40, 30, 3, 10, 5]


@pytest.fixture
def titles() -> TitleIndex:
    return TitleIndex(TITLES, COUNTS)


def test_canonical_title_drops_the_year_and_moves_the_article_back():
    assert canonical_title("Matrix, The (1999)") == "the matrix"
    assert canonical_title("  Toy   Story (1995) ") == "toy story"


@pytest.mark.parametrize(
    "query, expected",
    [
        ("toy story (1995)", 0),  # the full title, any case
        ("TOY STORY", 0),  # without the year
        ("The Matrix", 1),  # the article where people put it
        ("star wars", 2),  # whole words inside a title
        ("Toy Stroy", 0),  # a typo: closest title by difflib
    ],
)
def test_a_title_is_found_forgivingly(titles, query, expected):
    assert titles.find(query) == expected


def test_several_matches_go_to_the_most_rated_title(titles):
    assert titles.find("heat") == 4  # Heat (1986): 10 training ratings against 3


def test_equally_rated_matches_go_to_the_lower_index():
    assert TitleIndex(["Heat (1995)", "Heat (1986)"], [7, 7]).find("heat") == 0


def test_a_nonsense_title_raises_with_the_five_closest_titles(titles):
    with pytest.raises(TitleNotFound) as caught:
        titles.find("qqqq zzzz xxxx")
    assert len(caught.value.suggestions) == 5
    assert set(caught.value.suggestions) <= set(TITLES)
    assert str(caught.value).startswith("no title matches 'qqqq zzzz xxxx'; closest titles: ")
