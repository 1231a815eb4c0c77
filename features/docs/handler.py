"""The Swagger UI and Stoplight Elements pages, with every asset they load served by the app.

Their JavaScript and CSS come from pinned, hash-locked Python packages (``swagger-ui-bundle-v2``,
``stopments``), never from a CDN: the pages work offline, behind a proxy that blocks CDNs, and
under a Content-Security-Policy that names no host but the service's own.

- Assets live under ``/schema/assets/<package>-<version>/``: the version is in the URL, so the
  files can be cached for a year (``immutable``) and an upgrade is a new URL.
- Only the files the pages load are served: the packages also carry demo pages
  (swagger-ui's ``index.html`` loads the Petstore from the internet) that we do not expose.
- Every HTML page under /schema gets a CSP allowing only its own origin, plus the exact
  inline ``<script>``/``<style>`` blocks the render plugins emit, by their SHA-256 hash.
- Docs and assets are neither rate-limited nor behind auth (API.md: docs are not limited):
  /schema is an ops path (``shared.http.routes``).
- The AsyncAPI 3.0 document of the events on the bus (``asyncapi.json`` beside this module,
  checked against the event Structs by tests/features/test_asyncapi.py) is served as is at
  ``/schema/asyncapi.json``, beside ``/schema/openapi.json``: public and not limited likewise.
- Nothing on the pages calls out at run time: swagger-ui's validator badge (which would load
  from validator.swagger.io) belongs to its standalone layout, which Litestar does not use;
  tests/browser fails on any request to another origin.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import stopments
from litestar import MediaType, Request, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.file_system import BaseLocalFileSystem
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import StoplightRenderPlugin, SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.types import PathType
from litestar.types.file_types import FileInfo
from swagger_ui_bundle import swagger_ui_path

from shared.http.errors import ErrorBody, error_response
from shared.http.routes import DOCS_PATH

ASSETS_PATH = "/assets"
ONE_YEAR_S = 365 * 24 * 3600
CSP_HEADER = "Content-Security-Policy"
_R = TypeVar("_R")

SWAGGER_UI_DIR = Path(str(swagger_ui_path))  # .../vendor/swagger-ui-<version>
ELEMENTS_DIR = Path(stopments.__file__).parent / "static"
SWAGGER_UI_FILES = (
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "swagger-ui.css",
    "favicon-32x32.png",
)
ELEMENTS_FILES = (stopments.WEB_COMPONENTS, stopments.STYLES, stopments.FAVICON)

SWAGGER_UI_URL = f"{DOCS_PATH}{ASSETS_PATH}/{SWAGGER_UI_DIR.name}"
ELEMENTS_URL = f"{DOCS_PATH}{ASSETS_PATH}/stopments-{stopments.__version__}"
ELEMENTS_JS_URL = f"{ELEMENTS_URL}/{stopments.WEB_COMPONENTS}"

ASYNCAPI_FILE = Path(__file__).with_name("asyncapi.json")
ASYNCAPI_URL = f"{DOCS_PATH}/asyncapi.json"
_ASYNCAPI = ASYNCAPI_FILE.read_bytes()  # a fixed file: read once, at import


@get(ASYNCAPI_URL.removeprefix(DOCS_PATH), media_type=MediaType.JSON, sync_to_thread=False)
def asyncapi_document() -> Response[bytes]:
    """The bus's contract (exchange, routing keys, bodies), for other services' developers."""
    return Response(_ASYNCAPI, media_type=MediaType.JSON)


# Styles a script adds to the page at run time, by the script's URL. Elements' bundle injects
# Font Awesome's fixed base stylesheet (its icons are giant without it); the hash is that of
# the pinned version. After an upgrade, tests/browser fails naming the hash Chromium wants.
RUNTIME_STYLES = {ELEMENTS_JS_URL: ("'sha256-MBVp6JYxbC/wICelYC6eULCRpgi9kGezXXSaq/TS2+I='",)}


class ListedFiles(BaseLocalFileSystem):
    """A local file system that shows only the named files of one folder: nothing else in it,
    nothing outside it (whatever ``..`` or encoding a request path carries)."""

    def __init__(self, folder: Path, names: Iterable[str]) -> None:
        root = folder.resolve()
        self.folder = root
        self._listed = frozenset(os.path.normpath(root / name) for name in names)

    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:
        if os.path.normpath(path) not in self._listed:  # noqa: ASYNC240 - string work, no I/O
            raise FileNotFoundError(path)
        return await super().info(path, **kwargs)


def _missing_asset(_: Request[Any, Any, Any], __: NotFoundException) -> Response[ErrorBody]:
    """Litestar's own 404 names the absolute path on disk; a client needs only "not here"."""
    return error_response(404, "no such asset")


def _asset_router(name: str, url: str, files: ListedFiles) -> Router:
    return create_static_files_router(
        path=url.removeprefix(DOCS_PATH),
        directories=[files.folder],
        file_system=files,
        name=name,
        cache_control=CacheControlHeader(max_age=ONE_YEAR_S, public=True, immutable=True),
        exception_handlers={NotFoundException: _missing_asset},
    )


def _inline_hashes(page: str, tag: str) -> list[str]:
    """``'sha256-…'`` of each inline ``<tag>`` block (a ``<script src>`` has no inline body)."""
    blocks = re.findall(rf"<{tag}(?![^>]*\bsrc=)[^>]*>(.*?)</{tag}>", page, flags=re.DOTALL)
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
        for block in blocks
    ]


@functools.lru_cache(maxsize=16)
def content_security_policy(page: bytes) -> str:
    """Own origin only, plus this page's inline blocks by hash (pages are fixed per app, so the
    few distinct ones are hashed once)."""
    text = page.decode()
    injected = [style for url, styles in RUNTIME_STYLES.items() if url in text for style in styles]
    scripts = " ".join(["'self'", *_inline_hashes(text, "script")])
    styles = " ".join(["'self'", *_inline_hashes(text, "style"), *injected])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            f"style-src {styles}",
            "img-src 'self' data:",  # swagger-ui's icons are data: URIs inside its own CSS
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


async def with_content_security_policy(response: _R) -> _R:
    """``after_request`` for the docs router: every HTML page it renders gets its policy
    (asset files pass through untouched)."""
    if (
        isinstance(response, Response)
        and response.media_type == MediaType.HTML
        and isinstance(response.content, bytes)
    ):
        response.headers[CSP_HEADER] = content_security_policy(response.content)
    return response


def docs_config() -> OpenAPIConfig:
    """The OpenAPI schema and its two pages at /schema, served entirely from this app."""
    router = Router(
        DOCS_PATH,
        route_handlers=[
            asyncapi_document,
            _asset_router(
                "swagger-ui-assets", SWAGGER_UI_URL, ListedFiles(SWAGGER_UI_DIR, SWAGGER_UI_FILES)
            ),
            _asset_router(
                "elements-assets", ELEMENTS_URL, ListedFiles(ELEMENTS_DIR, ELEMENTS_FILES)
            ),
        ],
        include_in_schema=False,
        after_request=with_content_security_policy,
    )
    return OpenAPIConfig(
        title="Order service",
        version="1.0.0",
        description="Orders with JWT auth. Use **Authorize** with your email and password.",
        path=DOCS_PATH,
        openapi_router=router,
        render_plugins=[
            SwaggerRenderPlugin(
                js_url=f"{SWAGGER_UI_URL}/swagger-ui-bundle.js",
                css_url=f"{SWAGGER_UI_URL}/swagger-ui.css",
                standalone_preset_js_url=f"{SWAGGER_UI_URL}/swagger-ui-standalone-preset.js",
                favicon=f'<link rel="icon" href="{SWAGGER_UI_URL}/favicon-32x32.png">',
            ),
            StoplightRenderPlugin(
                js_url=ELEMENTS_JS_URL,
                css_url=f"{ELEMENTS_URL}/{stopments.STYLES}",
                favicon=f'<link rel="icon" href="{ELEMENTS_URL}/{stopments.FAVICON}">',
            ),
        ],
    )
