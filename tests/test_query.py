"""Query parsing: + / - terms, weights, image terms, errors."""

from __future__ import annotations

import pytest
from PIL import Image

from glimpse.errors import UserInputError
from glimpse.query import QueryTerm, parse_query


def test_plain_text_is_one_term():
    assert parse_query("a dog running on the beach") == [QueryTerm(1.0, "a dog running on the beach")]


def test_plus_minus_and_weights():
    terms = parse_query("beach +sunset -people")
    assert [(t.weight, t.text) for t in terms] == [(1.0, "beach"), (1.0, "sunset"), (-1.0, "people")]
    terms = parse_query("2:red car -0.5:night")
    assert [(t.weight, t.text) for t in terms] == [(2.0, "red car"), (-0.5, "night")]


def test_hyphenated_words_are_not_split():
    assert parse_query("black-and-white photo") == [QueryTerm(1.0, "black-and-white photo")]


def test_image_terms(tmp_path):
    path = tmp_path / "ref.jpg"
    Image.new("RGB", (8, 8)).save(path)
    terms = parse_query(f"cat +{path}", images=[str(path)])
    assert terms[1].image == path and terms[2].image == path and terms[0].text == "cat"


@pytest.mark.parametrize("query", ["", "   ", "-people", "2:", "cat +2:"])
def test_bad_queries(query):
    with pytest.raises(UserInputError):
        parse_query(query)


def test_missing_query_image(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        parse_query("", images=[str(tmp_path / "nope.jpg")])
