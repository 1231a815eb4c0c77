"""shared.http.openapi: what a route's operation says in the document, without an app."""

from __future__ import annotations

from typing import Any

from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, RequestBody, Schema

from shared.http.openapi import EXAMPLE_NAME, OPEN, documented


def operation(**fields: Any) -> dict[str, Any]:
    made = documented(request={"a": None}, answer=[{"b": 1}])(
        request_body=RequestBody(content={"application/json": OpenAPIMediaType(schema=Schema())}),
        responses={
            "201": OpenAPIResponse(
                description="made", content={"application/json": OpenAPIMediaType(schema=Schema())}
            ),
            "400": OpenAPIResponse(description="Bad request syntax or unsupported method"),
            "422": OpenAPIResponse(description="the request does not validate"),
        },
        **fields,
    )
    return made.to_schema()


def test_a_public_route_declares_no_requirement_and_another_inherits_the_apps() -> None:
    assert operation(security=list(OPEN))["security"] == []
    assert "security" not in operation()
    assert operation(security=[{"BearerToken": []}])["security"] == [{"BearerToken": []}]


def test_litestars_400_is_dropped_and_the_declared_answers_kept() -> None:
    assert set(operation()["responses"]) == {"201", "422"}


def test_the_examples_go_on_the_media_types_with_their_nulls() -> None:
    schema = operation()
    request = schema["requestBody"]["content"]["application/json"]
    answer = schema["responses"]["201"]["content"]["application/json"]
    # Encoded JSON (msgspec.Raw), as the document is served: a null member survives.
    assert bytes(request["examples"][EXAMPLE_NAME]["value"]) == b'{"a":null}'
    assert bytes(answer["examples"][EXAMPLE_NAME]["value"]) == b'[{"b":1}]'
    assert request["schema"] == {}  # beside the schema, not wrapping it


def test_no_example_is_invented_where_none_is_given() -> None:
    made = documented()(
        responses={"204": OpenAPIResponse(description="gone")}, security=list(OPEN)
    ).to_schema()
    assert made == {
        "responses": {"204": {"description": "gone"}},
        "security": [],
        "deprecated": False,
    }
