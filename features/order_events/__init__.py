"""GET /orders/events: the caller's order events, live, as Server-Sent Events."""
