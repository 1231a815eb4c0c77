"""The OpenAPI document as client generators read it: valid OpenAPI 3.1, one pinned operation id
per route, the security scheme as it is, every answer typed, examples that validate, and the
committed openapi.json the same as the served document.

A generated client driving the service is tests/features/test_openapi_client.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from tests.orders import Client
from tools.openapi import DOCUMENT, document_text, served_document

# Every operation's id, the names generated clients call (``create_order(...)``): a rename
# breaks every client, so it is a decision made here. A new route is one line.
OPERATION_IDS = {
    ("GET", "/health"): "health",
    ("GET", "/ready"): "ready",
    ("POST", "/register"): "register",
    ("POST", "/token"): "token",
    ("POST", "/token/revoke"): "revokeToken",
    ("GET", "/.well-known/jwks.json"): "getJwks",
    ("GET", "/users/me"): "getMe",
    ("DELETE", "/users/me"): "deleteMe",
    ("POST", "/orders"): "createOrder",
    ("GET", "/orders/{order_id}"): "getOrder",
    ("PATCH", "/orders/{order_id}"): "patchOrder",
    ("GET", "/orders/user/{user_id}"): "listUserOrders",
    ("GET", "/orders/events"): "streamOrderEvents",
}
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("POST", "/register"),
    ("POST", "/token"),
    ("POST", "/token/revoke"),
    ("GET", "/.well-known/jwks.json"),
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ERROR_SCHEMAS = {
    "#/components/schemas/ErrorBody",
    "#/components/schemas/StatusConflict",  # PATCH's 409: the error, and the current status
    "#/components/schemas/Readiness",  # GET /ready's 503 names what is down
}


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


@pytest.fixture(scope="module")
async def document(client: Client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    served: dict[str, Any] = response.json()
    return served


def test_the_document_validates_against_the_openapi_3_1_schema(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in OpenAPIV31SpecValidator(document).iter_errors()
    ]
    assert errors == []


def test_every_operation_has_its_pinned_id(document: dict[str, Any]) -> None:
    ids = {key: operation.get("operationId") for key, operation in operations(document).items()}
    assert ids == OPERATION_IDS


def test_the_security_scheme_is_exactly_oauth2_password_with_refresh(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert list(schemes) == ["BearerToken"]
    scheme = schemes["BearerToken"]
    assert set(scheme) == {"type", "flows", "description"}  # no name, in, scheme, bearerFormat
    assert scheme["type"] == "oauth2"
    assert scheme["flows"] == {
        "password": {"tokenUrl": "/token", "refreshUrl": "/token", "scopes": {}}
    }
    assert document["security"] == [{"BearerToken": []}]


def test_public_routes_declare_no_requirement_and_the_others_inherit_the_bearer(
    document: dict[str, Any],
) -> None:
    """``[{}]`` reads to generators as "a token is needed": a public route says ``[]``."""
    for key, operation in operations(document).items():
        if key in PUBLIC:
            assert operation["security"] == [], key
        else:
            assert "security" not in operation, key  # the document's bearer requirement


def test_every_error_answer_is_one_of_the_typed_error_bodies(document: dict[str, Any]) -> None:
    for key, operation in operations(document).items():
        for status, answer in operation["responses"].items():
            if int(status) < 400:
                continue
            # Never sent (an unusable request is a 422); operation_class=documented() drops it.
            assert status != "400", key
            assert list(answer["content"]) == ["application/json"], (key, status)
            schema = answer["content"]["application/json"]["schema"]
            assert schema.get("$ref") in ERROR_SCHEMAS, (key, status, schema)


def test_every_route_that_needs_a_token_documents_401_and_every_limited_one_429(
    document: dict[str, Any],
) -> None:
    for key, operation in operations(document).items():
        statuses = set(operation["responses"])
        assert ("401" in statuses) == (key not in PUBLIC or key == ("POST", "/token")), key
        limited = key not in {("GET", "/health"), ("GET", "/ready")}  # ops paths: never limited
        assert ("429" in statuses) == limited, key
        if "requestBody" in operation:
            assert {"413", "422"} <= statuses, key
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert "415" in statuses, key


def test_a_422s_errors_are_one_object_type(document: dict[str, Any]) -> None:
    """A list of free-form objects was a union some generators could not read."""
    schemas = document["components"]["schemas"]
    errors = schemas["ErrorBody"]["properties"]["errors"]["oneOf"]
    assert {"items": {"$ref": "#/components/schemas/FieldError"}, "type": "array"} in errors
    assert set(schemas["FieldError"]["required"]) == {"field", "message", "source"}
    assert schemas["StatusConflict"]["properties"]["current_status"] == {
        "$ref": "#/components/schemas/OrderStatus"
    }


def media_types_to_exemplify(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, media type) of every request body and every success answer with a body."""
    found = []
    for (method, path), operation in operations(document).items():
        for media_name, media in operation.get("requestBody", {}).get("content", {}).items():
            found.append((f"{method} {path} request {media_name}", media))
        for status, answer in operation["responses"].items():
            if status.startswith("2"):
                for media_name, media in answer.get("content", {}).items():
                    found.append((f"{method} {path} {status} {media_name}", media))
    return found


def test_every_request_body_and_success_answer_has_an_example_its_schema_accepts(
    document: dict[str, Any],
) -> None:
    found = media_types_to_exemplify(document)
    places = [where for where, _ in found]
    assert "POST /token request application/x-www-form-urlencoded" in places  # forms too
    assert "GET /orders/user/{user_id} 200 application/json" in places
    for where, media in found:
        examples = media.get("examples", {})
        assert list(examples) == ["walkthrough"], f"{where}: operation_class=documented(...)"
        # The $refs resolve against the document, which is the root of this schema.
        schema = {**media["schema"], "components": document["components"]}
        validator = OAS31Validator(schema)
        problems = [
            error.message for error in validator.iter_errors(examples["walkthrough"]["value"])
        ]
        assert problems == [], where


async def test_the_request_examples_work_as_sent(client: Client) -> None:
    """Swagger's "Try it out" starts from them: the walk-through's register, log in, order."""
    document = (await client.get("/schema/openapi.json")).json()
    example = {
        key: operation["requestBody"]["content"][media]["examples"]["walkthrough"]["value"]
        for key, operation in operations(document).items()
        if "requestBody" in operation
        for media in operation["requestBody"]["content"]
    }
    registered = await client.post("/register", json=example[("POST", "/register")])
    assert registered.status_code == 201, registered.text
    login = await client.post("/token", data=example[("POST", "/token")])
    assert login.status_code == 200, login.text
    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    created = await client.post("/orders", json=example[("POST", "/orders")], headers=bearer)
    assert created.status_code == 201, created.text
    assert created.json()["total_price"] == "201.00"
    moved = await client.patch(
        f"/orders/{created.json()['id']}",
        json=example[("PATCH", "/orders/{order_id}")],
        headers=bearer,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "PAID"


def test_the_committed_openapi_json_is_the_served_document(document: dict[str, Any]) -> None:
    """A change to the contract shows in review as a diff of openapi.json: `just openapi`."""
    committed = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert committed == document, "openapi.json is stale: run `just openapi` and commit it"
    assert DOCUMENT.read_text(encoding="utf-8") == document_text(served_document())
