"""Money: parsing without float, places, bounds, the total check and the request fingerprint."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.orders.errors import OrderRuleError
from shared.orders.items import OrderItem
from shared.orders.money import (
    CENT,
    MAX_TOTAL,
    MoneyInput,
    check_price,
    checked_total,
    computed_total,
    has_cents_at_most,
    parse_amount,
    request_fingerprint,
)

# Whole cents from 0.01 to 99,999,999.99: every price an order may carry.
CENTS = st.integers(min_value=1, max_value=9_999_999_999).map(lambda c: Decimal(c) / 100)
# Few examples, always the same ones: the suite stays well under a second, and the
# parametrized cases hold the edges.
FAST = settings(max_examples=20, derandomize=True, deadline=None)


def item(price: str, quantity: int = 1, name: str = "a") -> OrderItem:
    return OrderItem(name=name, quantity=quantity, price=Decimal(price))


# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "exact"),
    [
        ("100.50", "100.50"),
        ("1", "1"),
        ("0.10", "0.10"),
        ("007", "7"),
        ("1.", "1"),
        (".5", "0.5"),
        ("+1", "1"),
        ("-1", "-1"),
        ("1e1", "1E+1"),
        ("1E+1", "1E+1"),
        ("1e-2", "0.01"),
        ("0.1000000000000000001", "0.1000000000000000001"),  # a float would lose it
        (5, "5"),
        (10**30, str(10**30)),
        (Decimal("0.1000000000000000001"), "0.1000000000000000001"),
    ],
)
def test_strings_and_numbers_parse_to_the_exact_decimal_sent(sent: MoneyInput, exact: str) -> None:
    parsed = parse_amount(sent, field="price")
    assert type(parsed) is Decimal
    assert parsed == Decimal(exact)
    assert parsed.as_tuple() == Decimal(exact).as_tuple()  # places kept: "0.10" is not "0.1"


@pytest.mark.parametrize(
    "sent",
    [
        "1_000",  # Python's Decimal() would read 1000
        "1_0.5_0",
        " 1",
        "1 ",
        "\t1",
        "1\n",
        "١٢",  # Arabic-Indic digits: Decimal() would read 12
        "１",  # fullwidth digit
        "ｉｎｆ",
        "ſnan",  # folds to "snan" under Unicode case-insensitivity
        "",
        " ",
        "abc",
        "0x10",
        "1e",
        "e1",
        ".",
        "+",
        "1.2.3",
        "--1",
        "1,5",
        "$1",
    ],
)
def test_strings_outside_the_decimal_grammar_are_refused_naming_the_field(sent: str) -> None:
    with pytest.raises(OrderRuleError) as refused:
        parse_amount(sent, field="total_price")
    assert refused.value.field == "total_price"
    assert refused.value.message == "Invalid decimal string"


@pytest.mark.parametrize("sent", [True, False, 0.1, 1.0, None, [], {}])
def test_booleans_floats_and_other_types_are_refused(sent: object) -> None:
    with pytest.raises(OrderRuleError) as refused:
        parse_amount(sent, field="price")  # type: ignore[arg-type]
    assert refused.value.field == "price"


@pytest.mark.parametrize(
    "sent", ["NaN", "nan", "-NaN", "sNaN", "NaN123", "Infinity", "-inf", "Inf"]
)
def test_nan_and_infinity_parse_and_then_fail_the_bounds(sent: str) -> None:
    parsed = parse_amount(sent, field="price")
    assert not parsed.is_finite()
    with pytest.raises(OrderRuleError) as refused:
        check_price(parsed)
    assert (refused.value.field, refused.value.message) == (
        "price",
        "must be a number greater than 0",
    )


# --- places and bounds ------------------------------------------------------------------


@pytest.mark.parametrize("price", ["0.01", "1", "1.5", "1.50", "1e1", "1e-2", "99999999.99"])
def test_prices_within_bounds_with_at_most_two_places_pass(price: str) -> None:
    assert check_price(Decimal(price)) == Decimal(price)


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("0", "must be a number greater than 0"),
        ("-0", "must be a number greater than 0"),
        ("-1", "must be a number greater than 0"),
        ("-0.001", "must be a number greater than 0"),
        ("0.001", "must have at most 2 decimal places"),
        ("1.001", "must have at most 2 decimal places"),
        ("1.000", "must have at most 2 decimal places"),  # the places sent count, not the value
        ("1e-3", "must have at most 2 decimal places"),
        ("1E-400", "must have at most 2 decimal places"),
        ("100000000", "must not exceed 99999999.99"),
        ("100000000.00", "must not exceed 99999999.99"),
        ("1e30", "must not exceed 99999999.99"),
    ],
)
def test_prices_out_of_bounds_or_finer_than_a_cent_are_refused(price: str, message: str) -> None:
    with pytest.raises(OrderRuleError) as refused:
        check_price(Decimal(price))
    assert (refused.value.field, refused.value.message) == ("price", message)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("1.5", True), ("1.50", True), ("1e3", True), ("1.505", False), ("NaN", False)],
)
def test_has_cents_at_most(value: str, expected: bool) -> None:
    assert has_cents_at_most(Decimal(value)) is expected


@FAST
@given(CENTS)
def test_every_cent_amount_in_range_parses_back_from_its_string_and_passes(price: Decimal) -> None:
    for spelled in (str(price), f"{price:.2f}", format(price, "f")):
        assert check_price(parse_amount(spelled, field="price")) == price
    assert check_price(parse_amount(price, field="price")) == price


# --- the total --------------------------------------------------------------------------

ITEMS = [item("100.50", quantity=2), item("250", name="b")]  # 451


@pytest.mark.parametrize("sent", ["451.00", "451", "451.0", "4.51e2"])
def test_a_sent_total_equal_to_the_sum_is_accepted(sent: str) -> None:
    total = checked_total(ITEMS, Decimal(sent))
    assert total == Decimal("451")
    assert str(total) == "451.00"


def test_an_omitted_total_is_the_sum_with_two_places() -> None:
    assert str(checked_total(ITEMS, None)) == "451.00"
    assert str(checked_total([item("0.1"), item("0.2")], None)) == "0.30"  # exact, no float


@pytest.mark.parametrize(
    "sent", ["451.01", "450.99", "0", "-451", "451.001", "NaN", "sNaN", "-sNaN", "Infinity"]
)
def test_a_sent_total_that_differs_is_refused_naming_both(sent: str) -> None:
    with pytest.raises(OrderRuleError) as refused:  # sNaN: refused, not InvalidOperation
        checked_total(ITEMS, Decimal(sent))
    assert refused.value.field == "total_price"
    assert refused.value.message == (
        f"total_price {Decimal(sent)} does not equal the sum of the items 451.00"
    )


def test_the_largest_total_that_fits_numeric_10_2_is_accepted() -> None:
    assert checked_total([item("99999999.99")], None) == MAX_TOTAL


@pytest.mark.parametrize("sent", [None, Decimal("100000000.00")])
def test_a_total_above_the_maximum_is_refused(sent: Decimal | None) -> None:
    with pytest.raises(OrderRuleError) as refused:
        checked_total([item("10000", quantity=10_000)], sent)
    assert (refused.value.field, refused.value.message) == (
        "total_price",
        "order total must not exceed 99999999.99",
    )


def test_a_wrong_total_above_the_maximum_reports_the_mismatch_first() -> None:
    with pytest.raises(OrderRuleError) as refused:
        checked_total([item("10000", quantity=10_000)], Decimal("1"))
    assert "does not equal the sum of the items 100000000.00" in refused.value.message


def test_the_sum_is_exact_at_the_largest_quantities() -> None:
    items = [item("9999.99", quantity=10_000) for _ in range(3)]
    assert computed_total(items) == Decimal("299999700.00")
    assert computed_total([]) == 0


# --- the request fingerprint ------------------------------------------------------------


def test_the_same_order_spelled_differently_has_one_fingerprint() -> None:
    as_string = [OrderItem(name="a", quantity=2, price=parse_amount("1.5", field="price"))]
    as_number = [OrderItem(name="a", quantity=2, price=parse_amount(Decimal("1.50"), field="p"))]
    assert request_fingerprint(as_string, Decimal("3")) == request_fingerprint(
        as_number, Decimal("3.00")
    )
    assert len(request_fingerprint(as_string, Decimal("3"))) == 32  # SHA-256: the column's size


@pytest.mark.parametrize(
    ("items", "total"),
    [
        ([item("1.5", quantity=2, name="b")], "3"),  # another name
        ([item("1.5", quantity=3)], "3"),  # another quantity
        ([item("1.6", quantity=2)], "3"),  # another price
        ([item("1.5", quantity=2)], "3.01"),  # another total
        ([item("1.5", quantity=1), item("1.5", quantity=1)], "3"),  # split in two lines
    ],
)
def test_a_different_order_has_another_fingerprint(items: list[OrderItem], total: str) -> None:
    assert request_fingerprint(items, Decimal(total)) != request_fingerprint(
        [item("1.5", quantity=2)], Decimal("3")
    )


@FAST
@given(st.lists(st.tuples(st.sampled_from("abc"), CENTS), min_size=1, max_size=5))
def test_a_fingerprint_ignores_how_each_amount_was_spelled(
    lines: list[tuple[str, Decimal]],
) -> None:
    plain = [OrderItem(name=n, quantity=1, price=p) for n, p in lines]
    padded = [OrderItem(name=n, quantity=1, price=p.quantize(CENT)) for n, p in lines]
    total = computed_total(plain)
    assert request_fingerprint(plain, total) == request_fingerprint(padded, total.quantize(CENT))
