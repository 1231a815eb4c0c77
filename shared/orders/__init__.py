"""The orders domain: status, money, items, the public view and its errors, as pure code.

Nothing in ``status``, ``money``, ``items``, ``view`` or ``errors`` does I/O or imports a
database, Redis or Litestar, so their unit tests (tests/unit/) run without services, and
``shared.models`` can take ``OrderStatus`` from here without an import cycle.

The I/O beside them, marked so: ``queries`` (the statements several slices share) and
``cache`` (the Redis cache of views). Import each name from the module where it lives; this
package re-exports nothing.
"""
