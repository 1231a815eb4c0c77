"""Log lines a test reads back."""

from __future__ import annotations

import logging


class Lines(logging.Handler):
    """Every message a logger emits during a test, as text."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def count(self, message: str) -> int:
        return self.messages.count(message)
