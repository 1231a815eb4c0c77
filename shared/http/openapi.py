"""How a route shows in the OpenAPI document: what Litestar leaves out or gets wrong for client
generators, set per route through ``operation_class=documented(...)`` on its decorator.

- Examples: the request body's and the success answer's (the README's walk-through values),
  so Swagger's "Try it out" starts from a request that works. Litestar puts a body's examples
  in an ``allOf`` wrapper around the schema's ``$ref``, which generators turn into a model of
  its own; here they go on the media type, beside the ``$ref``.
- ``security: []`` on a public route (``shared.http.routes.public``): Litestar drops an empty
  list (it reads as "not set", so the app-wide bearer requirement applies), and the marker it
  does keep, ``[{}]``, reads to generators as "a token is needed".
- No 400: Litestar documents one (its ``ValidationException``, with a free-form ``extra``
  generators cannot read) for every route with a body or parameters, but this app answers
  every unusable request with 422 (``shared.http.errors``); a 400 is never sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from litestar.openapi.spec import Example, Operation, RequestBody

# What public() sets: Litestar's form of "no requirement", written as OpenAPI's here.
OPEN: list[dict[str, list[str]]] = [{}]
EXAMPLE_NAME = "walkthrough"


def _with_example(content: dict[str, Any] | None, value: Any, summary: str) -> None:
    # As encoded JSON: Litestar's to_schema drops every None member of a dict, so a null in
    # an example (a new order's processed_at) would vanish and the example break its schema.
    encoded = msgspec.Raw(msgspec.json.encode(value))
    for media_type in (content or {}).values():
        media_type.examples = {EXAMPLE_NAME: Example(summary=summary, value=encoded)}


@dataclass  # a new __init__, which calls __post_init__ (Operation's does not)
class DocumentedOperation(Operation):
    """An operation as this app documents it; ``documented`` makes one per route."""

    request_example: ClassVar[Any] = None
    answer_example: ClassVar[Any] = None

    def __post_init__(self) -> None:
        if self.security == OPEN:
            self.security = []  # to_schema keeps an empty list (it drops only None)
        responses = self.responses or {}
        responses.pop("400", None)
        if self.request_example is not None and isinstance(self.request_body, RequestBody):
            _with_example(self.request_body.content, self.request_example, "a request that works")
        if self.answer_example is not None:
            success = min(code for code in responses if code.startswith("2"))
            answer = responses[success]
            _with_example(getattr(answer, "content", None), self.answer_example, "its answer")


def documented(*, request: Any = None, answer: Any = None) -> type[Operation]:
    """``operation_class`` for a route: its request body's and success answer's examples
    (JSON-ready values), the rest as ``DocumentedOperation`` says."""
    return type(
        "DocumentedOperation",
        (DocumentedOperation,),
        {"request_example": request, "answer_example": answer},
    )
