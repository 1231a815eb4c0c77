"""POST /register, as API.md's users section states it."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.settings import Settings
from tests.apps import StartApp, with_settings

Client = AsyncTestClient[Litestar]
FULL_WIDTH_E = "\uff45"  # ｅ


def new_email() -> str:
    return f"new-{uuid.uuid4().hex[:12]}@example.com"


async def test_register_returns_201_with_id_email_and_created_at(client: Client) -> None:
    email = new_email()
    response = await client.post("/register", json={"email": email, "password": "password123"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "created_at"}
    assert isinstance(body["id"], int)
    assert body["email"] == email
    assert body["created_at"].endswith("Z")


async def test_email_is_trimmed_and_lower_cased(client: Client) -> None:
    email = new_email()
    response = await client.post(
        "/register", json={"email": f"  {email.upper()}  ", "password": "password123"}
    )
    assert response.status_code == 201
    assert response.json()["email"] == email


async def test_registering_an_existing_email_in_other_case_is_409(client: Client) -> None:
    email = new_email()
    first = await client.post("/register", json={"email": email, "password": "password123"})
    again = await client.post("/register", json={"email": email.upper(), "password": "other-pass"})
    assert first.status_code == 201
    assert again.status_code == 409
    assert "detail" in again.json()


async def test_trailing_slash_is_served_without_redirect(client: Client) -> None:
    response = await client.post("/register/", json={"email": new_email(), "password": "pass1234"})
    assert response.status_code == 201


@pytest.mark.parametrize("email", ["", "plain", "a@b", "two@@example.com", "sp ace@example.com"])
async def test_malformed_email_is_422_naming_the_field(client: Client, email: str) -> None:
    response = await client.post("/register", json={"email": email, "password": "password123"})
    assert response.status_code == 422
    assert response.json()["field"] == "email"


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("1234567", False),  # 7 bytes
        ("12345678", True),  # 8 bytes
        ("x" * 72, True),
        ("x" * 73, False),  # bcrypt would silently cut it: refuse
        ("é" * 36, True),  # 72 bytes in UTF-8
        ("é" * 37, False),  # 37 characters, but 74 bytes
    ],
)
async def test_password_length_is_counted_in_utf8_bytes(
    client: Client, password: str, accepted: bool
) -> None:
    response = await client.post("/register", json={"email": new_email(), "password": password})
    assert response.status_code == (201 if accepted else 422), response.text
    if not accepted:
        assert response.json()["field"] == "password"


async def test_a_72_byte_password_logs_in_only_with_every_byte(client: Client) -> None:
    email, password = new_email(), "é" * 36
    await client.post("/register", json={"email": email, "password": password})
    right = await client.post("/token", data={"username": email, "password": password})
    wrong_tail = await client.post("/token", data={"username": email, "password": "é" * 35 + "e"})
    assert right.status_code == 200
    assert wrong_tail.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"email": "x@example.com"},
        {"password": "password123"},
        {"email": 5, "password": "password123"},
        {"email": "x@example.com", "password": None},
        [],
    ],
)
async def test_bad_bodies_are_422_with_a_detail(client: Client, body: object) -> None:
    response = await client.post("/register", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


async def test_malformed_json_is_422_not_500(client: Client) -> None:
    response = await client.post(
        "/register", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_no_response_reveals_the_password_hash(client: Client) -> None:
    response = await client.post("/register", json={"email": new_email(), "password": "pass1234"})
    assert "password" not in response.text
    assert "$2b$" not in response.text


# --- the email's normal form (issue 18): NFKC, IDNA, lengths after normalising --------------


async def test_an_address_that_grows_when_lower_cased_is_422_before_any_hashing(
    settings: Settings, start_app: StartApp
) -> None:
    """305 characters as sent, 605 once lower-cased: it was hashed, then a 500 at the insert."""
    slow = await start_app(create_app(with_settings(settings, bcrypt_rounds=15)))
    email = "\u0130" * 300 + "@x.io"  # İ
    started = time.perf_counter()
    response = await slow.post("/register", json={"email": email, "password": "password123"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 422
    assert response.json()["field"] == "email"
    assert elapsed < 1.0  # one hash at cost 15 takes over two seconds here


async def test_a_full_width_look_alike_of_a_registered_email_is_409(client: Client) -> None:
    email = new_email()
    first = await client.post("/register", json={"email": email, "password": "password123"})
    look_alike = email.replace("e", FULL_WIDTH_E, 1)  # the e of "new-"
    again = await client.post("/register", json={"email": look_alike, "password": "other-pass"})
    assert first.status_code == 201
    assert again.status_code == 409


async def test_a_look_alike_registered_first_is_stored_in_the_plain_form(client: Client) -> None:
    email = new_email()
    look_alike = email.replace("e", FULL_WIDTH_E, 1).replace("@", "\uff20")  # ＠
    response = await client.post("/register", json={"email": look_alike, "password": "pass1234"})
    assert response.status_code == 201
    assert response.json()["email"] == email


async def test_an_internationalised_domain_is_stored_in_its_ascii_form(client: Client) -> None:
    local = f"new-{uuid.uuid4().hex[:12]}"
    response = await client.post(
        "/register", json={"email": f"{local}@B\u00dcCHER.example", "password": "password123"}
    )
    again = await client.post(
        "/register", json={"email": f"{local}@xn--bcher-kva.example", "password": "password123"}
    )
    assert response.status_code == 201
    assert response.json()["email"] == f"{local}@xn--bcher-kva.example"
    assert again.status_code == 409


@pytest.mark.parametrize("domain", ["exa_mple.com", "-example.com", "xn--zz.com"])
async def test_a_domain_idna_refuses_is_422(client: Client, domain: str) -> None:
    email = f"new-{uuid.uuid4().hex[:12]}@{domain}"
    response = await client.post("/register", json={"email": email, "password": "password123"})
    assert response.status_code == 422
    assert response.json()["field"] == "email"
    assert "IDNA" in response.text


# Found by tests/hardening/test_schemathesis.py:


async def test_an_email_with_a_nul_character_is_422_not_500(client: Client) -> None:
    """PostgreSQL cannot store NUL in text: the insert failed with a 500 before."""
    response = await client.post(
        "/register", json={"email": f"a\x00{new_email()}", "password": "password123"}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "email"


async def test_openapi_says_registering_needs_no_token(client: Client) -> None:
    """The app-wide bearer requirement was inherited by /register in the schema."""
    operation = (await client.get("/schema/openapi.json")).json()["paths"]["/register"]["post"]
    assert operation["security"] == []
    assert {"409", "413", "422", "429", "503"} <= set(operation["responses"])


async def test_openapi_documents_the_email_rule_the_server_applies(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    email = schema["RegisterRequest"]["properties"]["email"]
    password = schema["RegisterRequest"]["properties"]["password"]
    pattern = re.compile(email["pattern"])
    for good in ["a@b.co", "  Ada@Example.COM "]:
        assert pattern.search(good)
        assert (await register(client, good)).status_code == 201
    for bad in ["no-at.example.com", "a@b", "a b@c.de", "a@b.c\x00"]:
        assert not pattern.search(bad)
        assert (await register(client, bad)).status_code == 422
    assert password["maxLength"] == 72


async def register(client: Client, email: str) -> Any:
    unique = email.replace("@", f"{uuid.uuid4().hex[:8]}@", 1) if "@" in email else email
    return await client.post("/register", json={"email": unique, "password": "password123"})
