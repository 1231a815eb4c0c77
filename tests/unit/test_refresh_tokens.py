"""Refresh tokens' rules (shared/accounts/refresh_tokens.py) and POST /token's form, no services."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from shared.accounts.refresh_tokens import (
    new_refresh_token,
    refresh_token_expiry,
    refresh_token_hash,
)
from shared.accounts.sessions import TokenForm


def test_a_new_refresh_token_carries_256_random_bits() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(token) == 43  # 32 bytes in unpadded base64url
        assert refresh_token_hash(token) == hashlib.sha256(token.encode()).digest()


@pytest.mark.parametrize(
    "value",
    ["", "short", "a.b.c", "A" * 42, "A" * 44, "+" * 43, "é" * 43, "eyJhbGciOi.eyJzdWIi.sig"],
)
def test_a_value_not_shaped_like_a_refresh_token_has_no_hash(value: str) -> None:
    assert refresh_token_hash(value) is None


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FIFTEEN_DAYS = timedelta(days=15)


def test_a_refresh_token_lives_its_lifetime_in_a_session_that_lasts_longer() -> None:
    assert refresh_token_expiry(NOW, FIFTEEN_DAYS, NOW + timedelta(days=90)) == NOW + FIFTEEN_DAYS


@pytest.mark.parametrize("left", [timedelta(days=15) - timedelta(seconds=1), timedelta(hours=2)])
def test_a_refresh_token_never_outlives_its_session(left: timedelta) -> None:
    assert refresh_token_expiry(NOW, FIFTEEN_DAYS, NOW + left) == NOW + left


def test_the_form_defaults_to_the_password_grant() -> None:
    form = msgspec.convert({"username": "a@b.co", "password": "secret12"}, TokenForm)
    assert form.grant_type == "password"


@pytest.mark.parametrize(
    ("form", "missing"),
    [
        ({"password": "x"}, "username"),
        ({"grant_type": "password", "username": "a@b.co"}, "password"),
        ({"grant_type": "refresh_token"}, "refresh_token"),
    ],
)
def test_each_grant_requires_its_own_fields(form: dict[str, str], missing: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=f"`{missing}` is required"):
        msgspec.convert(form, TokenForm)


def test_an_unsupported_grant_type_is_refused_by_name() -> None:
    with pytest.raises(msgspec.ValidationError, match="client_credentials"):
        msgspec.convert({"grant_type": "client_credentials"}, TokenForm)
