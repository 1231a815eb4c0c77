"""Credentials' shared facts (shared/accounts/credentials.py): no service, no app."""

from __future__ import annotations

import re

import pytest

from shared.accounts.credentials import (
    BCRYPT_MAX_BYTES,
    EMAIL_MAX_LENGTH,
    EMAIL_SCHEMA_PATTERN,
    PASSWORD_MAX_BYTES,
    EmailRefused,
    looks_like_email,
    normalize_email,
    password_size_ok,
    registrable_email,
)

FULL_WIDTH_E = "\uff45"  # ｅ
FULL_WIDTH_AT = "\uff20"  # ＠
DOTTED_CAPITAL_I = "\u0130"  # İ: lower-cased, two code points (i and a combining dot)


def test_an_email_is_trimmed_and_lower_cased() -> None:
    assert normalize_email("  Ada@Example.COM\t") == "ada@example.com"
    assert registrable_email("  Ada@Example.COM\t") == "ada@example.com"


@pytest.mark.parametrize(
    "look_alike",
    [
        f"{FULL_WIDTH_E}ve@example.com",
        f"eve{FULL_WIDTH_AT}example.com",
        f"eve@{FULL_WIDTH_E}xample.com",
        "EVE@EXAMPLE.COM",
        "\uff25\uff36\uff25@example.com",  # full-width capitals
    ],
)
def test_look_alike_addresses_have_one_normal_form(look_alike: str) -> None:
    assert registrable_email(look_alike) == "eve@example.com"
    assert normalize_email(look_alike) == "eve@example.com"


def test_nfkc_comes_before_lower_casing() -> None:
    """The Kelvin sign's NFKC form is K: lower-cased after, it is k like any other."""
    assert registrable_email("\u212aelvin@example.com") == "kelvin@example.com"
    assert registrable_email("\ufb01@example.com") == "fi@example.com"  # the ligature fi


def test_the_domain_is_kept_in_its_ascii_form_a_fixed_point() -> None:
    normal = registrable_email("Ada@B\u00dcCHER.example")
    assert normal == "ada@xn--bcher-kva.example"
    assert registrable_email(normal) == normal
    assert registrable_email("ada@xn--bcher-kva.example") == normal


@pytest.mark.parametrize(
    "email",
    [
        "ada@exa_mple.com",  # a code point IDNA does not allow
        "ada@-example.com",  # a label starting with a hyphen
        "ada@example..com",  # an empty label
        "ada@xn--zz.com",  # an A-label that does not decode
        f"ada@{'x' * 64}.com",  # a label longer than 63
    ],
)
def test_a_domain_idna_refuses_is_refused(email: str) -> None:
    with pytest.raises(EmailRefused, match="IDNA"):
        registrable_email(email)


def test_the_length_is_checked_after_normalising() -> None:
    """305 characters as sent, 605 once lower-cased: more than the column holds."""
    email = DOTTED_CAPITAL_I * 300 + "@x.io"
    assert len(email) <= EMAIL_MAX_LENGTH
    assert len(email.lower()) > EMAIL_MAX_LENGTH
    with pytest.raises(EmailRefused, match="once normalised"):
        registrable_email(email)


def test_an_address_exactly_at_the_limit_once_normalised_is_accepted() -> None:
    email = "a" * (EMAIL_MAX_LENGTH - len("@x.io")) + "@X.IO"
    assert len(registrable_email(email)) == EMAIL_MAX_LENGTH


def test_text_far_too_long_is_refused_before_any_unicode_work() -> None:
    with pytest.raises(EmailRefused, match="longer than"):
        registrable_email("a" * 100_000 + "@example.com")


@pytest.mark.parametrize("email", ["ada", "ada@example", "@example.com", "a da@example.com"])
def test_what_is_not_an_address_cannot_be_registered(email: str) -> None:
    with pytest.raises(EmailRefused, match="does not look like an address"):
        registrable_email(email)


@pytest.mark.parametrize(
    ("sent", "key"),
    [
        ("Ada@Exa_mple.COM ", "ada@exa_mple.com"),  # a row stored before IDNA still matches
        ("  not an address", "not an address"),
        (f"{FULL_WIDTH_E}ve", "eve"),
    ],
)
def test_a_login_without_a_normal_form_keeps_the_older_one_and_never_raises(
    sent: str, key: str
) -> None:
    assert normalize_email(sent) == key


@pytest.mark.parametrize("email", ["ada@example.com", "a.b+c@mail.example.org"])
def test_a_plain_address_looks_like_an_email(email: str) -> None:
    assert looks_like_email(email)


@pytest.mark.parametrize(
    "email", ["ada", "ada@example", "ada@@example.com", "a da@example.com", "ada\x00@example.com"]
)
def test_what_is_not_an_address_is_refused(email: str) -> None:
    assert not looks_like_email(email)


def test_the_schema_pattern_admits_the_untrimmed_form_of_the_same_addresses() -> None:
    assert re.fullmatch(EMAIL_SCHEMA_PATTERN, "  ada@example.com ")
    assert not re.fullmatch(EMAIL_SCHEMA_PATTERN, "  ada@example ")


def test_a_password_is_counted_in_utf8_bytes_up_to_bcrypts_limit() -> None:
    assert PASSWORD_MAX_BYTES == BCRYPT_MAX_BYTES == 72
    assert password_size_ok("x" * 8)
    assert password_size_ok("x" * 72)
    assert not password_size_ok("x" * 7)
    assert not password_size_ok("x" * 73)
    assert not password_size_ok("é" * 37)  # 37 characters, 74 bytes
