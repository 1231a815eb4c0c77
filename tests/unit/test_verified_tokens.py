"""The per-process memory of verified access tokens (shared/accounts/verified_tokens.py).

No services."""

from __future__ import annotations

import time

import jwt
import pytest
from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import Token

from shared.accounts.access_tokens import FIRST_PARTY_CLIENT_ID, TOKEN_TYPE, AccessTokenPolicy
from shared.accounts.signing_keys import signing_keys
from shared.accounts.verified_tokens import VerifiedTokens
from shared.http.auth import SignedToken

SECRET = "s" * 40


def test_claims_are_served_until_exp_then_forgotten() -> None:
    tokens = VerifiedTokens()
    tokens.put("t", {"sub": "1", "exp": 100})
    assert tokens.get("t", now=99.5) == {"sub": "1", "exp": 100}
    assert tokens.get("t", now=100) is None
    assert len(tokens) == 0


def test_callers_get_a_copy_they_may_change() -> None:
    tokens = VerifiedTokens()
    tokens.put("t", {"sub": "1", "exp": 100})
    first = tokens.get("t", now=1)
    assert first is not None
    first["exp"] = "changed"
    first.pop("sub")
    assert tokens.get("t", now=1) == {"sub": "1", "exp": 100}


def test_claims_without_a_numeric_exp_are_not_kept() -> None:
    tokens = VerifiedTokens()
    tokens.put("none", {"sub": "1"})
    tokens.put("text", {"sub": "1", "exp": "100"})
    tokens.put("bool", {"sub": "1", "exp": True})
    assert len(tokens) == 0


def test_the_oldest_token_leaves_when_full() -> None:
    tokens = VerifiedTokens(max_size=2)
    tokens.put("a", {"exp": 100})
    tokens.put("b", {"exp": 100})
    tokens.put("a", {"exp": 100})  # already there: nothing leaves
    tokens.put("c", {"exp": 100})
    assert tokens.get("a", now=1) is None
    assert tokens.get("b", now=1) is not None
    assert tokens.get("c", now=1) is not None


POLICY = AccessTokenPolicy(issuer="order-service", audience="order-api", lifetime_s=300)


def _token_cls() -> type[SignedToken]:
    return SignedToken.for_keys(signing_keys("HS256", SECRET, "", ""), POLICY)


def _decode(token_cls: type[SignedToken], encoded: str) -> Token:
    return token_cls.decode(encoded, SECRET, "HS256")


def _encode(secret: str = SECRET, **changes: object) -> str:
    claims = POLICY.claims("7", int(time.time()), "a-jti")
    claims.update(changes)
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": TOKEN_TYPE})


def test_a_token_is_verified_once_and_decoded_alike_on_repeat() -> None:
    token_cls = _token_cls()
    encoded = _encode()
    first = _decode(token_cls, encoded)
    assert len(token_cls.verified) == 1
    again = _decode(token_cls, encoded)
    assert again == first
    assert again.sub == "7"
    assert again.extras == {"client_id": FIRST_PARTY_CLIENT_ID}


def test_a_forged_token_is_refused_and_not_remembered() -> None:
    token_cls = _token_cls()
    forged = _encode("x" * 40)
    for _ in range(2):
        with pytest.raises(NotAuthorizedException):
            _decode(token_cls, forged)
    assert len(token_cls.verified) == 0


def test_a_well_signed_token_the_policy_refuses_is_not_remembered() -> None:
    """Signed with the right key but meant to live ten years: refused each time, never kept."""
    token_cls = _token_cls()
    now = int(time.time())
    everlasting = _encode(exp=now + 10 * 365 * 24 * 3600)
    for _ in range(2):
        with pytest.raises(NotAuthorizedException):
            _decode(token_cls, everlasting)
    assert len(token_cls.verified) == 0


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    token_cls = _token_cls()
    now = int(time.time())
    encoded = _encode(iat=now - 301, exp=now - 1)  # as it will be, later
    token_cls.verified.put(encoded, {"sub": "7", "iat": now - 301, "exp": now - 1})
    with pytest.raises(NotAuthorizedException):
        _decode(token_cls, encoded)
    assert len(token_cls.verified) == 0


def test_each_app_remembers_its_own_tokens() -> None:
    keys = signing_keys("HS256", SECRET, "", "")
    first, second = SignedToken.for_keys(keys, POLICY), SignedToken.for_keys(keys, POLICY)
    _decode(first, _encode())
    assert len(first.verified) == 1
    assert len(second.verified) == 0
