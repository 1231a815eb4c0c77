"""GET /health and /ready as the OpenAPI schema describes them (their behaviour is pinned in
tests/test_platform.py)."""

from __future__ import annotations

from tests.orders import Client


async def test_openapi_says_health_and_readiness_need_no_token(client: Client) -> None:
    """Found by tests/hardening/test_schemathesis.py: both inherited the bearer requirement."""
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert paths["/health"]["get"]["security"] == [{}]
    assert paths["/ready"]["get"]["security"] == [{}]


async def test_openapi_documents_the_503_of_readiness(client: Client) -> None:
    """Found by tests/hardening/test_schemathesis.py: /ready's 503 was undocumented."""
    ready = (await client.get("/schema/openapi.json")).json()["paths"]["/ready"]["get"]
    schema = ready["responses"]["503"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Readiness"}
