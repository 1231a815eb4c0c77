"""One logging setup for api, consumer and worker: JSON lines in production, readable in dev.

What a line may say about an error is decided here too (``error_fields``): every process
logs failures, and none may log the values a driver quotes.

Context travels two ways: the order id in ``extra={"order_id": ...}`` at the call site, and
the request id in a context variable that ``shared.http.request_ids`` sets for each request, so
every line logged while serving it carries ``request_id`` without anyone passing it along.
With tracing on (``shared.tracing``), a line logged inside a span carries its ``trace_id`` and
``span_id`` too: the way from a log line to its trace (and so to the order's other processes).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import msgspec

from shared import tracing
from shared.settings import Settings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        if tracing.enabled() and (ids := tracing.current_ids()) is not None:
            record.trace_id, record.span_id = ids
        return True


_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class ReadableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        return f"{base} {extra}" if extra else base


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if settings.json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ReadableFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # uvicorn configures its own handlers before it builds the app: route them through ours.
    # But not an access log ``--no-access-log`` silenced (no handler, no propagation):
    # propagating it anyway wrote a line per request (issue 22: 3 % of a cached GET's CPU).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        enabled = (
            name != "uvicorn.access" or bool(uvicorn_logger.handlers) or uvicorn_logger.propagate
        )
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = enabled
    for noisy in ("aiormq", "aio_pika", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def error_fields(exc: BaseException) -> dict[str, Any]:
    """What a log line may say about an error: its classes and SQLSTATE, never its text.

    A driver's message can quote the values it was given (asyncpg's "invalid input for query
    argument $1: '…'", a unique violation's key), and those are emails and password hashes.
    """
    chain: list[str] = []
    sqlstate: str | None = None
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 5:
        chain.append(type(seen).__name__)
        sqlstate = sqlstate or getattr(seen, "sqlstate", None)
        seen = getattr(seen, "orig", None) or seen.__cause__
    fields: dict[str, Any] = {"error": " <- ".join(chain)}
    if sqlstate:
        fields["sqlstate"] = sqlstate
    return fields


def describe_error(exc: BaseException) -> str:
    """``error_fields`` as one short string for a log message."""
    fields = error_fields(exc)
    sqlstate = fields.get("sqlstate")
    return f"{fields['error']} (SQLSTATE {sqlstate})" if sqlstate else str(fields["error"])
