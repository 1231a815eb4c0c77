"""Which client a rate budget counts (shared/client_address.budget_subject): no service, no app."""

from __future__ import annotations

import pytest

from shared.http.client_address import budget_subject


def test_an_ipv4_address_is_its_own_subject() -> None:
    assert budget_subject("198.51.100.7", 64) == "198.51.100.7"
    assert budget_subject("198.51.100.7", 64) != budget_subject("198.51.100.8", 64)


def test_every_address_of_one_ipv6_64_is_one_subject() -> None:
    subjects = {budget_subject(f"2001:db8:1:2::{n:x}", 64) for n in range(1, 200)}
    subjects.add(budget_subject("2001:db8:1:2:ffff:ffff:ffff:ffff", 64))
    assert subjects == {"2001:db8:1:2::/64"}


def test_two_ipv6_64s_are_two_subjects() -> None:
    assert budget_subject("2001:db8:1:2::1", 64) != budget_subject("2001:db8:1:3::1", 64)


@pytest.mark.parametrize(
    "spelling", ["2001:DB8:1:2::1", "2001:0db8:0001:0002:0:0:0:1", "[2001:db8:1:2::1]"]
)
def test_any_spelling_of_an_ipv6_address_is_the_same_subject(spelling: str) -> None:
    assert budget_subject(spelling, 64) == "2001:db8:1:2::/64"


def test_the_prefix_length_is_a_setting() -> None:
    assert budget_subject("2001:db8:1:2::1", 48) == budget_subject("2001:db8:1:ff::1", 48)
    assert budget_subject("2001:db8:1:2::1", 128) != budget_subject("2001:db8:1:2::2", 128)


@pytest.mark.parametrize("prefix", [48, 64, 128])
def test_an_ipv4_mapped_address_is_its_ipv4_address(prefix: int) -> None:
    assert budget_subject("::ffff:1.2.3.4", prefix) == budget_subject("1.2.3.4", prefix)
    assert budget_subject("::ffff:1.2.3.4", prefix) != budget_subject("::ffff:1.2.3.5", prefix)


def test_a_scoped_link_local_address_is_counted_by_its_network() -> None:
    assert budget_subject("fe80::1%eth0", 64) == budget_subject("fe80::2", 64)


@pytest.mark.parametrize("host", ["testclient", "/run/app.sock", ""])
def test_what_is_not_an_address_is_its_own_subject(host: str) -> None:
    assert budget_subject(host, 64) == host
