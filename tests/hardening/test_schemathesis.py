"""Property-based tests generated from the app's own OpenAPI schema (schemathesis).

Every operation is fuzzed with schema-valid and schema-invalid requests, authenticated as a
registered user; then a stateful run chains POST /orders into GET and PATCH /orders/{id}. Each
response must be no 5xx, a documented status, and a body and headers that match the schema.

Deterministic for CI: a fixed example budget and ``derandomize=True``, so a run tries the same
requests every time (until schemathesis or hypothesis is upgraded in the lock).

Checks and operations left out, and why:
- ``positive_data_acceptance``: schema-valid requests that break a business rule (a total
  that does not add up, a password over 72 bytes of UTF-8, a status move the machine forbids)
  are 4xx by contract, and JSON Schema cannot express those rules.
- GET /orders/events (an event stream): a 200 never ends, so a transport that reads the whole
  body waits forever. Its refusals (401, 429, 503 in the error shape) and its stream are
  tested over real HTTP in tests/features/test_order_events.py.
- ``allow_header_conformance``: Litestar 2's automatic OPTIONS answer lists only the methods
  of the first handler registered on a path (litestar#4169, fixed in v3), so OPTIONS
  /orders/{id} says ``GET, OPTIONS`` without PATCH. The fix belongs in app.py; pinned by an
  xfail in tests/features/test_get_order.py.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from litestar import Litestar
from schemathesis import Case as GenericCase
from schemathesis.python import asgi
from schemathesis.specs.openapi import checks

from app import create_app
from shared.services import services_of
from shared.settings import Settings
from tests.accounts import PASSWORD
from tests.tokens import bearer

EXAMPLES_PER_OPERATION = 50
STATEFUL_SCENARIOS = 30
STATEFUL_STEPS = 6
EXCLUDED_CHECKS = [checks.positive_data_acceptance, checks.allow_header_conformance]
# A chained step that answers 503 is tried again, as a client would: this often, this apart.
TRANSIENT_TRIES = 3
TRANSIENT_WAIT_S = 0.5

# The operations the stateful test chains (POST /orders and what its links lead to).
CHAINED = "^/orders"

Case = GenericCase[Any]
Operation = tuple[str, str]  # (METHOD, path template)


def asgi_app(app: Litestar) -> Any:
    """The app as schemathesis's ASGI client types it (Litestar's own scope types differ)."""
    return app


def openapi_document() -> dict[str, Any]:
    """The schema the app serves at /schema/openapi.json, plus links for the stateful run.

    Built from an app with default settings: the document does not depend on them, and the
    parametrized tests need it at import time.
    """
    document = create_app(Settings(environment="development")).openapi_schema.to_schema()
    plain: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(document))
    order_id = {"order_id": "$response.body#/id"}
    plain["paths"]["/orders"]["post"]["responses"]["201"]["links"] = {
        "GetOrder": {"operationRef": "#/paths/~1orders~1{order_id}/get", "parameters": order_id},
        "PatchOrder": {
            "operationRef": "#/paths/~1orders~1{order_id}/patch",
            "parameters": order_id,
        },
        "ListOrders": {
            "operationRef": "#/paths/~1orders~1user~1{user_id}/get",
            "parameters": {"user_id": "$response.body#/user_id"},
        },
    }
    return plain


STREAMS = "/orders/events"  # left out: see the module's docstring
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path=STREAMS)


@pytest.fixture(scope="module")
def app_under_test(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
def fuzzed_app(app_under_test: Litestar) -> Litestar:
    """The app, run by schemathesis's ASGI transport in its own event-loop thread.

    schemathesis's pytest plugin ends the app's lifespan after every test item, so each one
    starts it again here and waits for the bus: /ready must answer 200 from the first case.
    """
    with asgi.get_client(asgi_app(app_under_test)):
        deadline = time.monotonic() + 10
        while not services_of(app_under_test).bus.ready and time.monotonic() < deadline:
            time.sleep(0.02)
    assert services_of(app_under_test).bus.ready, "RabbitMQ did not connect"
    return app_under_test


@dataclass(frozen=True)
class RealRun:
    """What no fuzzer reaches, done for real: a registered user's token, and the operations
    that answered with a success on the way (a password, a refresh token, a deletion)."""

    headers: dict[str, str]
    succeeded: frozenset[Operation]


@pytest.fixture(scope="module")
def real_run(app_under_test: Litestar) -> RealRun:
    with asgi.get_client(asgi_app(app_under_test)) as client:
        email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
        created = client.post("/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        issued = client.post("/token", data={"username": email, "password": PASSWORD})
        assert issued.status_code == 200, issued.text
        real = [("POST", "/register", created), ("POST", "/token", issued)]
        real += _a_session_to_its_end(client)
    # Real responses of the app under test too (no fuzzer guesses a password or a refresh
    # token, and a fuzzed deletion never has the right password): checked alike.
    for method, path, response in real:
        schema[path][method].validate_response(response)
        assert 200 <= response.status_code < 300, (method, path, response.status_code)
    return RealRun(
        headers=bearer(issued.json()["access_token"]),
        succeeded=frozenset((method, path) for method, path, _ in real),
    )


@pytest.fixture(scope="module")
def auth_headers(real_run: RealRun) -> dict[str, str]:
    return real_run.headers


@pytest.fixture
def answered(real_run: RealRun) -> Iterator[Counter[tuple[str, str, int]]]:
    """The statuses one fuzzed operation answered. After its examples it must have answered
    a 2xx once: the run is only worth something if it got past the refusals. An operation
    done for real above, or chained by the stateful test, is checked there instead."""
    seen: Counter[tuple[str, str, int]] = Counter()
    yield seen
    operations = {(method, path) for method, path, _ in seen}
    assert len(operations) == 1, f"one operation per test, not {operations}"
    (operation,) = operations
    if operation in real_run.succeeded or re.match(CHAINED, operation[1]):
        return
    assert any(200 <= status < 300 for *_, status in seen), f"{operation} never 2xx: {seen}"


def _log_in_as_a_new_account(client: Any, label: str) -> dict[str, Any]:
    """Register an account and log in: the body of its 200 (access and refresh token)."""
    email = f"{label}-{uuid.uuid4().hex[:12]}@example.com"
    registered = client.post("/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    login = client.post("/token", data={"username": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body: dict[str, Any] = login.json()
    return body


def _a_session_to_its_end(client: Any) -> list[tuple[str, str, Any]]:
    """Another account: refreshed, revoked, then deleted (the fuzz account must live on)."""
    login = _log_in_as_a_new_account(client, "fuzz-gone")
    refreshed = client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": login["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    revoked = client.post("/token/revoke", data={"token": refreshed.json()["refresh_token"]})
    deleted = client.request(
        "DELETE",
        "/users/me",
        headers=bearer(refreshed.json()["access_token"]),
        json={"password": PASSWORD},
    )
    assert deleted.status_code == 204, deleted.text
    return [
        ("POST", "/token", refreshed),
        ("POST", "/token/revoke", revoked),
        ("DELETE", "/users/me", deleted),
    ]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_within_its_schema(
    case: Case,
    fuzzed_app: Litestar,
    auth_headers: dict[str, str],
    answered: Counter[tuple[str, str, int]],
) -> None:
    response = case.call_and_validate(
        app=fuzzed_app, headers=auth_headers, excluded_checks=EXCLUDED_CHECKS
    )
    answered[answer(case, response.status_code)] += 1


def test_chained_order_operations_answer_within_their_schema(fuzzed_app: Litestar) -> None:
    """POST /orders, then GET / PATCH that order and list its owner's orders, in sequences.

    A sequence's answers must depend on its own steps alone: hypothesis replays a sequence's
    choices and fails with ``FlakyStrategyDefinition`` ("Inconsistent data generation") when
    a replayed POST /orders answers otherwise (its 201 feeds the links, so the rules on offer
    change). So only the order operations (the same generated email registered twice would be
    201, then 409), each sequence as an account of its own (no orders or lists left by earlier
    sequences or tests), and a 503, which says "retry shortly" (a statement past its timeout
    on a loaded machine), retried as a client would. Which sequences run depends on more than
    the seed: hypothesis also draws the literals of every local module imported so far, so
    another selection of tests sends other requests, and any such dependence shows up.
    """
    chained = schema.include(path_regex=CHAINED)
    answered: Counter[tuple[str, str, int]] = Counter()
    machine = chained.as_state_machine()

    class AuthenticatedMachine(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            with asgi.get_client(asgi_app(fuzzed_app)) as client:
                self.headers = bearer(_log_in_as_a_new_account(client, "chain")["access_token"])

        def before_call(self, case: Case) -> None:
            if case.operation.path == "/orders" and case.operation.method == "post":
                make_creatable(case)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"app": fuzzed_app, "headers": self.headers}

        def call(self, case: Case, **kwargs: Any) -> schemathesis.Response:
            for _ in range(TRANSIENT_TRIES):
                response: schemathesis.Response = super().call(case, **kwargs)
                if response.status_code != 503:
                    break
                time.sleep(TRANSIENT_WAIT_S)
            return response

        def validate_response(
            self, response: schemathesis.Response, case: Case, **kwargs: Any
        ) -> None:
            answered[answer(case, response.status_code)] += 1
            case.validate_response(
                response, excluded_checks=EXCLUDED_CHECKS, transport_kwargs=kwargs
            )

    AuthenticatedMachine.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    # Each chained operation answered a 2xx at least once: the chain got past the refusals.
    succeeded = {(method, path) for method, path, status in answered if 200 <= status < 300}
    assert set(_operations(chained)) - succeeded == set(), answered


def make_creatable(case: Case) -> None:
    """Steer a generated POST /orders towards a 201, so the chain has an order to work on.

    A random total rarely equals the sum of the items, a price sent as a number with more
    than two places is refused, and so is a quantity sent as ``2.0`` (a whole number must be
    written as one): all are fuzzed above. A generated Idempotency-Key may repeat across
    sequences and replay an older order; dropping it keeps each sequence independent of the
    ones before it. The body is replaced, never changed in place: a generated value may be an
    object hypothesis hands out again (an example of the schema).
    """
    case.headers.pop("Idempotency-Key", None)
    body: Any = case.body
    if not isinstance(body, dict):
        return
    case.body = {name: value for name, value in body.items() if name != "total_price"}
    if isinstance(items := body.get("items"), list):
        case.body["items"] = [_creatable_item(item) for item in items]


def _creatable_item(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    changed = dict(item)
    quantity, price = item.get("quantity"), item.get("price")
    if isinstance(quantity, float) and quantity.is_integer():
        changed["quantity"] = int(quantity)
    if isinstance(price, float):
        changed["price"] = round(price, 2)
    return changed


def test_the_schema_is_the_same_in_every_build() -> None:
    """Litestar invented random examples for error bodies (``"status_code": 9361``), so two
    processes served different schemas and the docs showed nonsense; now no examples."""
    first, second = openapi_document(), openapi_document()
    assert first == second
    assert "examples" not in first["components"]["schemas"]["ErrorBody"]


def answer(case: Case, status: int) -> tuple[str, str, int]:
    """(METHOD, path template, status): what the runs count, per operation."""
    return case.operation.method.upper(), case.operation.path, status


def _operations(api: Any) -> Iterator[Operation]:
    for result in api.get_all_operations():
        operation = result.ok()
        yield operation.method.upper(), operation.path
