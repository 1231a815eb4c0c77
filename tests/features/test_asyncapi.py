"""The AsyncAPI 3.0 document of the events on the bus (features/docs/asyncapi.json): served
beside the OpenAPI schema, well formed by the 3.0 spec's required fields, and unable to drift
from the code: each message's payload is the schema of the event Struct that publishes it.

No package on PyPI ships the AsyncAPI 3.0 JSON schema (the spec's own is on npm), so the
spec's structure is checked here field by field, and the payload schemas with jsonschema.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jsonschema
import msgspec
import pytest

from features.docs.handler import ASYNCAPI_FILE
from shared.messaging.bus import MUST_BE_ROUTED
from shared.messaging.events import (
    EVENT_NAMES,
    EVENT_SCHEMAS,
    OrderEvent,
    OrderProcessedEvent,
    OrderStatusChangedEvent,
    new_order_event,
)
from shared.orders.status import OrderStatus
from tests.orders import Client

DOC: dict[str, Any] = json.loads(ASYNCAPI_FILE.read_bytes())
NOW = datetime.now(UTC)
SAMPLES: dict[str, OrderEvent] = {
    "new_order": new_order_event(user_id=1, total_price=Decimal("10.00")),
    "order_status_changed": OrderStatusChangedEvent(
        event_id=uuid.uuid4(),
        occurred_at=NOW,
        order_id=uuid.uuid4(),
        user_id=1,
        from_=OrderStatus.PENDING,
        to=OrderStatus.PAID,
        updated_at=NOW,
    ),
    "order_processed": OrderProcessedEvent(
        event_id=uuid.uuid4(), occurred_at=NOW, order_id=uuid.uuid4(), user_id=1, processed_at=NOW
    ),
}


def resolve(ref: str) -> Any:
    """A local ``$ref`` (``#/a/b``) of the document; KeyError if it points nowhere."""
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def test_the_document_has_the_fields_asyncapi_3_requires() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= DOC["info"].keys()
    for server in DOC["servers"].values():
        assert {"host", "protocol"} <= server.keys()
    for operation in DOC["operations"].values():
        assert operation["action"] in {"send", "receive"}
        assert "$ref" in operation["channel"]
    for channel in DOC["channels"].values():
        assert isinstance(channel["address"], str)
    for message in DOC["components"]["messages"].values():
        assert "payload" in message


def test_every_ref_points_at_something() -> None:
    for ref in refs(DOC):
        resolve(ref)


def test_each_operation_sends_messages_of_its_own_channel() -> None:
    """AsyncAPI 3.0: an operation's messages must be references to its channel's messages."""
    for operation in DOC["operations"].values():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/")


def test_one_channel_per_event_addressed_by_its_routing_key() -> None:
    assert {channel["address"] for channel in DOC["channels"].values()} == set(EVENT_NAMES)
    for name in EVENT_NAMES:
        channel = DOC["channels"][name]
        assert channel["bindings"]["amqp"]["is"] == "routingKey"
        assert channel["bindings"]["amqp"]["exchange"]["type"] == "direct"
        operation = DOC["operations"][f"publish_{name}"]
        assert operation["bindings"]["amqp"]["mandatory"] == (name in MUST_BE_ROUTED)


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_each_payload_schema_is_that_of_its_event_struct(name: str) -> None:
    """Fields, types, formats and required fields as msgspec derives them from the Struct the
    code encodes and decodes: a field added, renamed or retyped there fails here."""
    (payload_ref,), components = msgspec.json.schema_components(
        [EVENT_SCHEMAS[name]], ref_template="#/components/schemas/{name}"
    )
    message = resolve(DOC["channels"][name]["messages"][name]["$ref"])
    assert message["payload"] == payload_ref
    for schema_name, schema in components.items():
        documented = DOC["components"]["schemas"][schema_name]
        assert documented.get("properties") == schema.get("properties")
        assert documented.get("required") == schema.get("required")
        assert documented.get("enum") == schema.get("enum")


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_an_event_as_published_validates_against_its_payload_schema(name: str) -> None:
    """The wire body, with the document's components for its references."""
    body = json.loads(msgspec.json.encode(SAMPLES[name]))  # decimals as strings, as published
    message = resolve(DOC["channels"][name]["messages"][name]["$ref"])
    schema = {**message["payload"], "components": DOC["components"]}
    jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**body, "order_id": 5}, schema)


async def test_the_document_is_served_beside_the_openapi_schema_without_a_token(
    client: Client,
) -> None:
    response = await client.get("/schema/asyncapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == DOC  # never rate limited: tests/platform/test_rate_limit.py
