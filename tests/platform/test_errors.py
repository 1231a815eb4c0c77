"""Unknown routes and methods answer API.md's JSON errors: 404, and 405 with Allow."""

from __future__ import annotations

from tests.orders import Client


async def test_unknown_route_is_404_json(client: Client) -> None:
    response = await client.get("/no-such-route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


async def test_wrong_method_is_405_json(client: Client) -> None:
    response = await client.get("/register")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]
    assert "POST" in response.headers["allow"]
