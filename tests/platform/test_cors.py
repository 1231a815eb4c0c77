"""CORS: a listed origin gets Access-Control-Allow-Origin on simple and preflight requests, others
nothing.
"""

from __future__ import annotations

from tests.orders import Client

ALLOWED_ORIGIN = "https://shop.example"


async def test_allowed_origin_gets_allow_origin_on_a_simple_request(client: Client) -> None:
    response = await client.get("/health", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


async def test_preflight_from_an_allowed_origin_succeeds(client: Client) -> None:
    response = await client.options(
        "/register",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization",
        },
    )
    assert response.status_code in {200, 204}
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers


async def test_unlisted_origin_gets_no_allow_origin(client: Client) -> None:
    response = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_from_an_unlisted_origin_gets_no_allow_origin(client: Client) -> None:
    response = await client.options(
        "/register",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code < 500
