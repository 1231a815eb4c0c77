"""The keys that sign and verify access tokens, and the JWKS that publishes them. No network.

``JWT_ALGORITHM`` picks one algorithm for the deployment: HS256 (the shared ``JWT_SECRET``),
RS256 or ES256 (``JWT_PRIVATE_KEY``). Asymmetric tokens name their key with ``kid``, the key's
RFC 7638 thumbprint, so the id follows from the key itself and every process agrees on it.
``JWT_PREVIOUS_PUBLIC_KEYS`` keeps verifying tokens signed before a rotation; they are listed
in the JWKS beside the current key. Only the configured algorithm is ever accepted: a token
switched to HS256 with the public key as its secret (key confusion) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

Algorithm = Literal["HS256", "RS256", "ES256"]
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
VerifyingKey: TypeAlias = str | PublicKey

MIN_RSA_BITS = 2048
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)
# The members RFC 7638 hashes, per key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


def pem_text(value: str, setting: str) -> str:
    """A PEM given inline (``\\n`` escapes allowed, as an environment variable needs) or as the
    path of a file holding it; ValueError naming ``setting`` when the file cannot be read."""
    text = value.strip().replace("\\n", "\n")
    if text.startswith("-----BEGIN"):
        return text
    try:
        return Path(text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{setting}: cannot read the key file {text!r} ({exc})") from exc


def pem_texts(value: str, setting: str) -> list[str]:
    """Several PEMs: inline one after the other, or comma-separated file paths."""
    text = value.strip().replace("\\n", "\n")
    if not text:
        return []
    sources = [text] if text.startswith("-----BEGIN") else text.split(",")
    blocks = [
        block.group(0)
        for source in sources
        for block in _PEM_BLOCK.finditer(pem_text(source, setting))
    ]
    if not blocks:
        raise ValueError(f"{setting}: no PEM key found")
    return blocks


def load_private_key(pem: str, algorithm: Algorithm) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"JWT_PRIVATE_KEY is not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"JWT_PRIVATE_KEY must be an RSA or EC key, got {type(key).__name__}")
    _check_fits(key.public_key(), algorithm, "JWT_PRIVATE_KEY")
    return key


def load_public_key(pem: str, algorithm: Algorithm) -> PublicKey:
    """A public key, or the public half of a private one."""
    try:
        if "PRIVATE KEY" in pem.split("\n", 1)[0]:
            private = serialization.load_pem_private_key(pem.encode(), password=None)
            loaded: Any = private.public_key()
        else:
            loaded = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"JWT_PREVIOUS_PUBLIC_KEYS: not a PEM key ({exc})") from exc
    if not isinstance(loaded, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("JWT_PREVIOUS_PUBLIC_KEYS must hold RSA or EC keys")
    _check_fits(loaded, algorithm, "JWT_PREVIOUS_PUBLIC_KEYS")
    return loaded


def _check_fits(key: PublicKey, algorithm: Algorithm, setting: str) -> None:
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"{setting}: JWT_ALGORITHM=RS256 needs an RSA key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"{setting}: an RSA key needs at least {MIN_RSA_BITS} bits")
    elif algorithm == "ES256":
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{setting}: JWT_ALGORITHM=ES256 needs an EC key on P-256")
    else:
        raise ValueError(f"{setting} needs JWT_ALGORITHM=RS256 or ES256, not {algorithm}")


def public_jwk(key: PublicKey, algorithm: Algorithm) -> dict[str, str]:
    """The key as a JWK (RFC 7517) for signature checks, its ``kid`` its RFC 7638 thumbprint."""
    if isinstance(key, rsa.RSAPublicKey):
        members = RSAAlgorithm.to_jwk(key, as_dict=True)
    else:
        members = ECAlgorithm.to_jwk(key, as_dict=True)
    members.pop("key_ops", None)  # "use" says it; RFC 7517 §4.3: not both
    return {**members, "kid": thumbprint(members), "use": "sig", "alg": algorithm}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members as compact, sorted JSON, in base64url."""
    required = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def generate_private_key_pem(algorithm: Algorithm) -> str:
    """A fresh key for development, where none is configured (tokens die with the process)."""
    key: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class SigningKeys:
    """What signs new tokens and what verifies presented ones, by ``kid``; one per app.

    A plain class, not a dataclass: compared and hashed by identity, and passed through
    Litestar's dependency injection untouched (it would convert a dataclass field by field).
    """

    def __init__(
        self,
        algorithm: Algorithm,
        signing_key: str | PrivateKey,
        signing_kid: str | None,
        verifying: dict[str | None, VerifyingKey],
        jwks: list[dict[str, str]] | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.signing_key = signing_key
        self.signing_kid = signing_kid
        self.verifying = verifying
        self.jwks = {"keys": jwks or []}

    def verifying_key(self, kid: object) -> VerifyingKey | None:
        """The key a token's ``kid`` names; None for an unknown one (HS256 names none)."""
        if kid is not None and not isinstance(kid, str):
            return None
        return self.verifying.get(kid)


def signing_keys(
    algorithm: Algorithm, secret: str, private_pem: str, previous_pems: str
) -> SigningKeys:
    """The deployment's keys from its settings (PEM text already read from any path)."""
    if algorithm == "HS256":
        return SigningKeys(algorithm, secret, None, {None: secret})
    private = load_private_key(private_pem, algorithm)
    public_keys = [
        private.public_key(),
        *(
            load_public_key(pem, algorithm)
            for pem in pem_texts(previous_pems, "JWT_PREVIOUS_PUBLIC_KEYS")
        ),
    ]
    jwks: list[dict[str, str]] = []
    verifying: dict[str | None, VerifyingKey] = {}
    for key in public_keys:
        jwk = public_jwk(key, algorithm)
        if jwk["kid"] not in verifying:  # the current key listed as previous too: once
            verifying[jwk["kid"]] = key
            jwks.append(jwk)
    return SigningKeys(algorithm, private, jwks[0]["kid"], verifying, jwks)
