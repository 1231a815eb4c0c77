"""The access-token policy (shared/accounts/access_tokens.py): RFC 9068, no keys, no services."""

from __future__ import annotations

from typing import Any

import pytest

from shared.accounts.access_tokens import (
    CLOCK_SKEW_S,
    FIRST_PARTY_CLIENT_ID,
    REQUIRED_CLAIMS,
    TOKEN_TYPE,
    AccessTokenPolicy,
    InvalidAccessToken,
)

NOW = 1_800_000_000
POLICY = AccessTokenPolicy(issuer="order-service", audience="order-api", lifetime_s=1800)
HEADER = {"alg": "HS256", "typ": TOKEN_TYPE}


def issued(**changes: Any) -> dict[str, Any]:
    claims = POLICY.claims("7", NOW, "a-jti")
    claims.update(changes)
    return claims


def refused(claims: dict[str, Any], header: dict[str, Any] | None = None, now: float = NOW) -> str:
    with pytest.raises(InvalidAccessToken) as caught:
        POLICY.check(header or HEADER, claims, now)
    return str(caught.value)


def test_an_issued_token_says_the_profile_claims_and_nothing_else() -> None:
    assert POLICY.claims("7", NOW, "a-jti") == {
        "iss": "order-service",
        "aud": "order-api",
        "sub": "7",
        "client_id": FIRST_PARTY_CLIENT_ID,
        "iat": NOW,
        "exp": NOW + 1800,
        "jti": "a-jti",
    }


def test_an_issued_token_passes_for_its_whole_life() -> None:
    for now in (NOW - CLOCK_SKEW_S, NOW, NOW + 1799):
        POLICY.check(HEADER, issued(), now)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_the_profiles_token_types_pass(typ: str) -> None:
    POLICY.check({"alg": "HS256", "typ": typ}, issued(), NOW)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "id_token+jwt", 7])
def test_any_other_token_type_is_refused(typ: object) -> None:
    header = {"alg": "HS256"} if typ is None else {"alg": "HS256", "typ": typ}
    assert "typ" in refused(issued(), header)


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_each_required_claim_missing_is_refused(claim: str) -> None:
    claims = issued()
    del claims[claim]
    assert claim in refused(claims)
    assert claim in refused({**claims, claim: None})


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iss", "someone-else"),
        ("iss", ["order-service"]),
        ("aud", "another-api"),
        ("aud", ["another-api"]),
        ("aud", {"order-api": 1}),
        ("client_id", "another-client"),
        ("sub", 7),
        ("sub", ""),
        ("jti", 7),
        ("jti", ""),
        ("iat", "1800000000"),
        ("iat", True),
        ("exp", float("inf")),
        ("exp", "2000000000"),
        ("nbf", "soon"),
    ],
)
def test_a_wrong_value_is_refused(claim: str, value: object) -> None:
    refused(issued(**{claim: value}))


def test_an_audience_list_holding_ours_passes() -> None:
    POLICY.check(HEADER, issued(aud=["another-api", "order-api"]), NOW)


def test_iat_within_the_clock_skew_passes_beyond_it_is_refused() -> None:
    POLICY.check(HEADER, issued(iat=NOW + CLOCK_SKEW_S, exp=NOW + CLOCK_SKEW_S + 1800), NOW)
    message = refused(issued(iat=NOW + CLOCK_SKEW_S + 1, exp=NOW + CLOCK_SKEW_S + 1801))
    assert "future" in message
    assert "future" in refused(issued(iat=NOW + 600, exp=NOW + 600 + 1800))


def test_nbf_beyond_the_clock_skew_is_refused() -> None:
    POLICY.check(HEADER, issued(nbf=NOW + CLOCK_SKEW_S), NOW)
    refused(issued(nbf=NOW + CLOCK_SKEW_S + 1))


def test_expired_is_refused_from_the_second_of_exp() -> None:
    assert "expired" in refused(issued(), now=NOW + 1800)


def test_a_lifetime_up_to_the_configured_one_plus_the_skew_passes() -> None:
    POLICY.check(HEADER, issued(exp=NOW + 1800 + CLOCK_SKEW_S), NOW)


@pytest.mark.parametrize(
    "exp", [NOW + 1800 + CLOCK_SKEW_S + 1, NOW + 10 * 365 * 24 * 3600], ids=["by-1s", "ten-years"]
)
def test_a_longer_lifetime_is_refused(exp: int) -> None:
    assert "lifetime" in refused(issued(exp=exp))


def test_an_exp_before_iat_is_refused() -> None:
    refused(issued(iat=NOW + 20, exp=NOW + 10))
