"""Credentials' shared facts (shared/credentials.py): no service, no app."""

from __future__ import annotations

import re

import pytest

from shared.credentials import (
    BCRYPT_MAX_BYTES,
    EMAIL_SCHEMA_PATTERN,
    PASSWORD_MAX_BYTES,
    looks_like_email,
    normalize_email,
    password_size_ok,
)


def test_an_email_is_trimmed_and_lower_cased() -> None:
    assert normalize_email("  Ada@Example.COM\t") == "ada@example.com"


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
