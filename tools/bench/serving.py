"""ASGI entry points for servers without uvicorn's proxy-header handling (granian).

wrk sends ``X-Forwarded-For`` so that the API's rate limiter sees many clients, as it would in
production behind a proxy. uvicorn trusts that header from 127.0.0.1 by default; granian does
not read it at all, so under granian the app is wrapped in uvicorn's own middleware to get the
same behaviour. ``BENCH_ASGI_TARGET`` (``module:factory``) names the app to wrap.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


def behind_proxy() -> Any:
    module_name, _, factory_name = os.environ["BENCH_ASGI_TARGET"].partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return ProxyHeadersMiddleware(factory(), trusted_hosts="127.0.0.1")
