"""Signing keys for the tests: generated once per run, never from disk or a network."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization

from shared.accounts.signing_keys import Algorithm, generate_private_key_pem
from shared.settings import Settings
from tests.apps import with_settings


@functools.cache
def private_pem(algorithm: Algorithm, n: int = 0) -> str:
    """The ``n``-th test key for ``algorithm`` (RS256 or ES256), as PKCS#8 PEM."""
    del n  # only tells the cache one key from another
    return generate_private_key_pem(algorithm)


def public_pem(private: str) -> str:
    key = serialization.load_pem_private_key(private.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def asymmetric(settings: Settings, algorithm: str, key: int = 0, **changes: object) -> Settings:
    """``settings`` signing with the ``key``-th test key of ``algorithm`` (its JWKS has it)."""
    return with_settings(
        settings, jwt_algorithm=algorithm, jwt_private_key=private_pem(algorithm, key), **changes
    )
