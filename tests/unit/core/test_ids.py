"""Entity IDs are the same whatever form the source sent them in: DMS may send one bigint as
12, 12.0 or "1.2345e+18"; a non-integral number is no ID and is refused (dead letter)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gorse_cdc.mapping import Mapper, load_spec
from gorse_cdc.mapping.values import BadValueError, coerce, to_id


@pytest.mark.parametrize(
    ("sent", "gorse_id"),
    [
        (12, "12"),
        (12.0, "12"),
        ("12", "12"),
        ("12.0", "12"),
        ("1.2345e+18", "1234500000000000000"),
        (1.2345e18, "1234500000000000000"),
        ("9223372036854775807", "9223372036854775807"),
        ("-7", "-7"),
        ("007", "007"),  # plain digits in a text column stay as they are
        ("tt0111161", "tt0111161"),
        (Decimal("42.000"), "42"),
    ],
)
def test_ids_are_normalised_to_exact_digits(sent: object, gorse_id: str) -> None:
    assert to_id(sent) == gorse_id
    assert coerce("user_id", "id", sent) == gorse_id


@pytest.mark.parametrize("sent", [12.5, "12.5", "1.5e-3", True, float("nan"), "inf"])
def test_non_integral_numbers_are_refused(sent: object) -> None:
    if sent == "inf":
        assert to_id(sent) == "inf"  # not a number literal: a text ID
        return
    with pytest.raises(BadValueError, match="user_id"):
        coerce("user_id", "id", sent)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_every_integer_form_maps_to_one_id(n: int) -> None:
    forms = {to_id(n), to_id(str(n)), to_id(f"{n}.0"), to_id(f"{Decimal(n):E}".replace("E", "e"))}
    assert forms == {str(n)}


def test_the_mapping_gives_one_gorse_key_for_every_form() -> None:
    mapper = Mapper(load_spec(None))
    keys = {
        mapper.key_of("ratings", {"user_id": u, "movie_id": m})
        for u, m in [(12, 5), ("12.0", 5.0), (12.0, "5")]
    }
    assert keys == {("12", "5")}


def test_large_ints_in_scientific_notation_stay_exact() -> None:
    assert coerce("n", "int", "1.2345e+18") == 1234500000000000000
    with pytest.raises(BadValueError):
        coerce("n", "int", "1.5")
