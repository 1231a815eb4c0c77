"""The client load: virtual users that register, log in, create, read, patch and list orders.

Each user works in turn (one request at a time) against a random API process, and records
every answer in a shared ``Tally``. Creates with an ``Idempotency-Key`` are retried with the
same key, as a careful client does after a timeout, a dropped connection or a 503, and some
successful ones are sent once more on purpose: every answer for one key must name one order.
Everything is bounded: a deadline for starting new work, a hard stop for retries, a timeout
per request.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

PASSWORD = "chaos-password-123"
REQUEST_TIMEOUT_S = 15.0  # above the API's own bounds: a stalled PostgreSQL is a 503 in ~5.5 s
KEY_TRIES = 6
RETRY_PAUSE_S = 0.5
REPLAY_SHARE = 0.3  # of successful keyed creates, sent once more with the same key
THINK_S = (0.02, 0.12)
# The mix of operations (weights); registering switches the user to a fresh account.
MIX = {
    "create": 20,
    "create-key": 20,
    "get": 25,
    "patch": 10,
    "list": 15,
    "login": 6,
    "register": 4,
}
NEXT_STATUS = ("PAID", "SHIPPED", "CANCELED")


@dataclass
class Tally:
    """What the clients saw, for the checks and the table."""

    by_op: Counter[tuple[str, str]] = field(default_factory=Counter)
    created: dict[str, int] = field(default_factory=dict)  # order id -> user id, from 201s
    key_answers: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    keys_abandoned: int = 0  # every try failed; the order may or may not exist
    replays: int = 0
    server_errors: list[str] = field(default_factory=list)  # 5xx other than 503
    missing_reads: list[str] = field(default_factory=list)  # 404 for an order answered 201

    def record(self, op: str, answer: httpx.Response | str) -> None:
        status = answer if isinstance(answer, str) else str(answer.status_code)
        self.by_op[op, status] += 1
        if (
            isinstance(answer, httpx.Response)
            and answer.status_code >= 500
            and answer.status_code != 503
        ):
            request = answer.request
            self.server_errors.append(f"{request.method} {request.url.path}: {answer.text[:200]}")

    @property
    def by_status(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (_, status), n in self.by_op.items():
            counts[status] += n
        return counts


@dataclass
class User:
    id: int = 0
    email: str = ""
    token: str = ""
    orders: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Client:
    """One virtual user's session: its account, its orders, its random choices."""

    def __init__(
        self, http: httpx.AsyncClient, apis: list[str], tally: Tally, rng: random.Random
    ) -> None:
        self.http = http
        self.apis = apis
        self.tally = tally
        self.rng = rng
        self.user = User()

    async def send(self, op: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """One request to a random API; ``None`` when no answer came (recorded as such).

        A refused connection (that API is down: the request never left) goes to the other
        API at once, as a load balancer would; it is recorded as ``refused`` all the same.
        """
        apis = self.rng.sample(self.apis, len(self.apis))
        for n, api in enumerate(apis, start=1):
            try:
                answer = await self.http.request(method, api + path, **kwargs)
            except httpx.ConnectError:
                self.tally.record(op, "refused")
                if n < len(apis):
                    continue
                return None
            except httpx.TimeoutException:
                self.tally.record(op, "timeout")
                return None
            except httpx.TransportError:
                self.tally.record(op, "connection lost")
                return None
            self.tally.record(op, answer)
            return answer
        return None

    async def run(self, deadline: float, hard_stop: float) -> None:
        ops = list(MIX)
        weights = list(MIX.values())
        while time.monotonic() < deadline:
            if not self.user.token:
                await self.register(hard_stop)
            else:
                op = self.rng.choices(ops, weights)[0]
                await self.step(op, hard_stop)
            await asyncio.sleep(self.rng.uniform(*THINK_S))

    async def step(self, op: str, hard_stop: float) -> None:
        if op == "register":
            await self.register(hard_stop)
        elif op == "login":
            await self.login()
        elif op == "create":
            await self.create(None, hard_stop)
        elif op == "create-key":
            await self.create(uuid.uuid4().hex, hard_stop)
        elif not self.user.orders or op == "list":
            await self.send(
                "list",
                "GET",
                f"/orders/user/{self.user.id}",
                params={"limit": 20},
                headers=self.user.headers,
            )
        elif op == "get":
            await self.get()
        else:
            await self.patch()

    async def register(self, hard_stop: float) -> None:
        """A fresh account; a lost 201 is retried and then meets 409, which is fine."""
        email = f"chaos-{uuid.uuid4().hex[:16]}@example.com"
        body = {"email": email, "password": PASSWORD}
        while time.monotonic() < hard_stop:
            answer = await self.send("register", "POST", "/register", json=body)
            if answer is not None and answer.status_code in (201, 409):
                self.user = User(email=email)
                if answer.status_code == 201:
                    self.user.id = int(answer.json()["id"])
                await self.login()
                return
            await asyncio.sleep(RETRY_PAUSE_S)

    async def login(self) -> None:
        form = {"username": self.user.email, "password": PASSWORD}
        answer = await self.send("login", "POST", "/token", data=form)
        if answer is not None and answer.status_code == 200:
            self.user.token = answer.json()["access_token"]
            if not self.user.id:  # its 201 was lost: learn the id from the token's subject
                self.user.id = user_id_of(self.user.token)

    async def create(self, key: str | None, hard_stop: float) -> None:
        items = [
            {
                "name": f"item {self.rng.randint(1, 99)}",
                "quantity": self.rng.randint(1, 5),
                "price": f"{self.rng.randint(100, 99999) / 100:.2f}",
            }
            for _ in range(self.rng.randint(1, 3))
        ]
        headers = dict(self.user.headers)
        if key is None:
            answer = await self.send(
                "create", "POST", "/orders", json={"items": items}, headers=headers
            )
            self.note_created(answer, None)
            return
        headers["Idempotency-Key"] = key
        for _ in range(KEY_TRIES):
            answer = await self.send(
                "create-key", "POST", "/orders", json={"items": items}, headers=headers
            )
            if answer is not None and answer.status_code < 500:
                self.note_created(answer, key)
                if answer.status_code == 201 and self.rng.random() < REPLAY_SHARE:
                    self.tally.replays += 1
                    again = await self.send(
                        "create-replay", "POST", "/orders", json={"items": items}, headers=headers
                    )
                    self.note_created(again, key)
                return
            if time.monotonic() > hard_stop:
                break
            await asyncio.sleep(RETRY_PAUSE_S)
        self.tally.keys_abandoned += 1

    def note_created(self, answer: httpx.Response | None, key: str | None) -> None:
        if answer is None or answer.status_code != 201:
            return
        order_id = str(answer.json()["id"])
        if order_id not in self.tally.created:
            self.user.orders.append(order_id)
        self.tally.created[order_id] = self.user.id
        if key is not None:
            self.tally.key_answers.setdefault((self.user.id, key), set()).add(order_id)

    async def get(self) -> None:
        order_id = self.rng.choice(self.user.orders)
        answer = await self.send("get", "GET", f"/orders/{order_id}", headers=self.user.headers)
        if answer is not None and answer.status_code == 404:
            self.tally.missing_reads.append(order_id)

    async def patch(self) -> None:
        order_id = self.rng.choice(self.user.orders)
        body = {"status": self.rng.choice(NEXT_STATUS)}
        await self.send(
            "patch", "PATCH", f"/orders/{order_id}", json=body, headers=self.user.headers
        )


def user_id_of(token: str) -> int:
    """The ``sub`` claim, read without verifying: the client only needs its own id."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["sub"])


async def drive(
    apis: list[str], users: int, seconds: float, seed: int, tally: Tally, grace_s: float = 20.0
) -> None:
    """Run ``users`` clients for ``seconds``; retries in flight may go on up to ``grace_s``."""
    start = time.monotonic()
    deadline = start + seconds
    limits = httpx.Limits(max_connections=users * 2, max_keepalive_connections=users * 2)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        clients = [Client(http, apis, tally, random.Random(seed + n)) for n in range(users)]
        await asyncio.gather(*(c.run(deadline, deadline + grace_s) for c in clients))
