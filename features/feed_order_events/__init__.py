"""Feed each user's event log (GET /orders/events reads it) from the order events on the bus."""
