"""An OTLP/HTTP receiver on a free loopback port: what the processes' tracing exports to in
tests (which decode the spans) and in `just bench --traced` (which only counts them).

A thread of its own serves ``POST /v1/traces`` and hands each body to ``on_export``; the
answer is an empty ``ExportTraceServiceResponse`` (zero bytes of protobuf), as a collector
that took everything gives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRACES_PATH = "/v1/traces"


class OtlpReceiver:
    """``url`` is what OTEL_EXPORTER_OTLP_ENDPOINT names; ``close()`` stops the thread."""

    def __init__(self, on_export: Callable[[bytes], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == TRACES_PATH:
                    on_export(body)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                else:
                    self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the spans are the record, not an access log."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
