"""Accounts for tests: registered and logged in through the API, as a client would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_account(client: httpx.AsyncClient, password: str = PASSWORD) -> Account:
    """Register and log in through the API (a test client or a running API), as a client would."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    created = await client.post("/register", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    issued = await client.post("/token", data={"username": email, "password": password})
    assert issued.status_code == 200, issued.text
    return Account(created.json()["id"], email, password, issued.json()["access_token"])
