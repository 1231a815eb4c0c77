"""Signing keys (shared/accounts/signing_keys.py) and their settings, without services."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from shared.accounts.signing_keys import Algorithm, signing_keys, thumbprint
from shared.settings import Settings, load_api_settings
from tests.keys import private_pem, public_pem

SECRET = "s" * 40


def test_the_kid_is_the_rfc_7638_thumbprint() -> None:
    """RFC 7638 §3.1's own example key and thumbprint."""
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ"
        "ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4v"
        "MQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    jwk = {"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_token_signed_with_the_key_verifies_with_its_jwk(algorithm: Algorithm) -> None:
    keys = signing_keys(algorithm, SECRET, private_pem(algorithm), "")
    token = jwt.encode({"sub": "1"}, keys.signing_key, algorithm, headers={"kid": keys.signing_kid})
    (jwk,) = keys.jwks["keys"]
    assert jwk["kid"] == keys.signing_kid
    assert jwt.decode(token, jwt.PyJWK(jwk), algorithms=[algorithm])["sub"] == "1"


def test_previous_keys_are_listed_after_the_current_one_and_only_once() -> None:
    previous = public_pem(private_pem("RS256", 0)) + public_pem(private_pem("RS256", 1))
    keys = signing_keys("RS256", SECRET, private_pem("RS256", 1), previous)
    kids = [jwk["kid"] for jwk in keys.jwks["keys"]]
    assert kids[0] == keys.signing_kid
    assert len(kids) == len(set(kids)) == 2


def test_hs256_has_no_public_key() -> None:
    keys = signing_keys("HS256", SECRET, "", "")
    assert keys.jwks == {"keys": []}
    assert keys.verifying_key(None) == SECRET
    assert keys.verifying_key("any") is None


def test_a_kid_that_is_not_a_string_names_no_key() -> None:
    keys = signing_keys("ES256", SECRET, private_pem("ES256"), "")
    assert keys.verifying_key(["a"]) is None
    assert keys.verifying_key(7) is None


@pytest.mark.parametrize(
    ("algorithm", "members"),
    [("RS256", {"n", "e"}), ("ES256", {"crv", "x", "y"})],
)
def test_the_jwk_has_only_public_members(algorithm: Algorithm, members: set[str]) -> None:
    (jwk,) = signing_keys(algorithm, SECRET, private_pem(algorithm), "").jwks["keys"]
    assert set(jwk) == {"kty", "kid", "use", "alg", *members}


# --- settings: start-up refuses what cannot work -------------------------------------------


def settings_with(**env: str) -> Settings:
    return load_api_settings({"ENVIRONMENT": "production", "JWT_SECRET": SECRET, **env}, None)


def test_production_refuses_an_asymmetric_algorithm_without_a_key() -> None:
    with pytest.raises(SystemExit, match="JWT_PRIVATE_KEY"):
        settings_with(JWT_ALGORITHM="RS256")


def test_production_refuses_an_unreadable_key_file(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="JWT_PRIVATE_KEY"):
        settings_with(JWT_ALGORITHM="RS256", JWT_PRIVATE_KEY=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize(
    ("algorithm", "pem"),
    [("RS256", "ES256"), ("ES256", "RS256"), ("RS256", "garbage")],
    ids=["ec-for-rs256", "rsa-for-es256", "not-a-key"],
)
def test_production_refuses_a_key_that_does_not_fit(algorithm: str, pem: str) -> None:
    text = private_pem(pem) if pem != "garbage" else "-----BEGIN PRIVATE KEY-----\nxx\n"
    with pytest.raises(SystemExit, match="JWT_PRIVATE_KEY"):
        settings_with(JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY=text)


def test_a_key_may_be_a_path_or_pem_text_with_escaped_newlines(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(private_pem("ES256"))
    from_path = settings_with(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=str(path))
    escaped = settings_with(
        JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY=private_pem("ES256").replace("\n", "\\n")
    )
    assert from_path.jwt_private_key == escaped.jwt_private_key == private_pem("ES256")


def test_development_makes_a_key_when_none_is_set() -> None:
    loaded = load_api_settings({"ENVIRONMENT": "development", "JWT_ALGORITHM": "RS256"}, None)
    assert "PRIVATE KEY" in loaded.jwt_private_key


def test_previous_public_keys_need_an_asymmetric_algorithm() -> None:
    with pytest.raises(SystemExit, match="JWT_PREVIOUS_PUBLIC_KEYS"):
        settings_with(JWT_PREVIOUS_PUBLIC_KEYS=public_pem(private_pem("RS256")))


def test_previous_public_keys_of_another_type_are_refused() -> None:
    with pytest.raises(SystemExit, match="JWT_PREVIOUS_PUBLIC_KEYS"):
        settings_with(
            JWT_ALGORITHM="RS256",
            JWT_PRIVATE_KEY=private_pem("RS256"),
            JWT_PREVIOUS_PUBLIC_KEYS=public_pem(private_pem("ES256")),
        )


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(SystemExit, match="jwt_algorithm"):
        settings_with(JWT_ALGORITHM="none")
