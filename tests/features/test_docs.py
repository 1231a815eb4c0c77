"""The docs pages over HTTP: the schema, the assets the app serves itself, the CSP.

How the pages behave in a real browser with every other host closed is in
tests/browser/test_docs_pages.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
import stopments

from features.docs.handler import (
    ELEMENTS_DIR,
    ELEMENTS_URL,
    RUNTIME_STYLES,
    SWAGGER_UI_DIR,
    SWAGGER_UI_URL,
    ListedFiles,
)
from tests.orders import Client

PAGES = ["/schema/swagger", "/schema/elements"]
# Attributes through which a page makes the browser load something.
LOADS = re.compile(r"""\b(?:src|href|apiDescriptionUrl)\s*=\s*["']([^"']*)["']""")
CSP_SOURCE = re.compile(r"'self'|'none'|data:|'sha256-[A-Za-z0-9+/]+=*'")


def loaded_urls(html: str) -> list[str]:
    return LOADS.findall(html)


def policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


def sha256_source(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


@pytest.mark.parametrize("path", PAGES)
async def test_docs_page_is_html(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


@pytest.mark.parametrize("path", PAGES)
async def test_docs_page_loads_only_from_its_own_origin(client: Client, path: str) -> None:
    html = (await client.get(path)).text
    urls = loaded_urls(html)
    assert len(urls) >= 3  # stylesheet, script(s), favicon: the regex does find them
    assert [url for url in urls if not url.startswith("/") or url.startswith("//")] == []
    assert "http://" not in html
    assert "https://" not in html


@pytest.mark.parametrize("path", PAGES)
async def test_every_asset_a_page_loads_is_served_with_a_year_long_cache(
    client: Client, path: str
) -> None:
    html = (await client.get(path)).text
    for url in loaded_urls(html):
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.content, url
        if url.startswith(f"{SWAGGER_UI_URL}/") or url.startswith(f"{ELEMENTS_URL}/"):
            assert response.headers["cache-control"] == "max-age=31536000, public, immutable"


async def test_asset_urls_carry_the_package_version(client: Client) -> None:
    """A new version is a new URL, which is what makes the year-long, immutable cache safe."""
    assert f"/schema/assets/{SWAGGER_UI_DIR.name}" == SWAGGER_UI_URL
    assert SWAGGER_UI_DIR.name.startswith("swagger-ui-5.")
    assert f"/schema/assets/stopments-{stopments.__version__}" == ELEMENTS_URL
    swagger_html = (await client.get("/schema/swagger")).text
    assert f"{SWAGGER_UI_URL}/swagger-ui-bundle.js" in swagger_html


async def test_assets_have_their_content_types(client: Client) -> None:
    script = await client.get(f"{ELEMENTS_URL}/web-components.min.js")
    style = await client.get(f"{SWAGGER_UI_URL}/swagger-ui.css")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert style.headers["content-type"].startswith("text/css")


async def test_assets_need_no_token(client: Client) -> None:
    bad_token = {"Authorization": "Bearer not-a-token"}
    anonymous = await client.get(f"{SWAGGER_UI_URL}/swagger-ui.css")
    with_bad_token = await client.get(f"{SWAGGER_UI_URL}/swagger-ui.css", headers=bad_token)
    assert anonymous.status_code == 200
    assert with_bad_token.status_code == 200


async def test_a_head_request_for_an_asset_has_its_length(client: Client) -> None:
    response = await client.head(f"{ELEMENTS_URL}/styles.min.css")
    assert response.status_code == 200
    size = (ELEMENTS_DIR / "styles.min.css").stat().st_size
    assert int(response.headers["content-length"]) == size


@pytest.mark.parametrize(
    "url",
    [
        f"{SWAGGER_UI_URL}/no-such-file.js",
        f"{ELEMENTS_URL}/no-such-file.css",
        "/schema/assets/swagger-ui-0.0.0/swagger-ui.css",
        f"{SWAGGER_UI_URL}/",
    ],
)
async def test_a_missing_asset_is_404_json_naming_no_path_on_disk(client: Client, url: str) -> None:
    response = await client.get(url)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]
    assert str(SWAGGER_UI_DIR.parent) not in response.text
    assert "site-packages" not in response.text


@pytest.mark.parametrize(
    "name", ["index.html", "swagger-initializer.js", "swagger-ui-bundle.js.map", "index.j2"]
)
async def test_package_files_the_pages_do_not_load_are_not_served(
    client: Client, name: str
) -> None:
    """swagger-ui's demo index.html loads the Petstore from the internet: not ours to serve."""
    assert (SWAGGER_UI_DIR / name).is_file()  # it is there on disk, so the 404 is a refusal
    response = await client.get(f"{SWAGGER_UI_URL}/{name}")
    assert response.status_code == 404


TRAVERSALS = [
    "..%2F__init__.py",
    "%2e%2e/__init__.py",
    "%2E%2E%2F__init__.py",
    "..%2F..%2Fstopments%2F__init__.py",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%5C__init__.py",
    "%252e%252e%252f__init__.py",
    "%2Fetc%2Fpasswd",
]


@pytest.mark.parametrize("traversal", TRAVERSALS)
async def test_path_traversal_out_of_the_asset_folder_is_404(
    client: Client, traversal: str
) -> None:
    assert (ELEMENTS_DIR.parent / "__init__.py").is_file()  # the target exists one level up
    response = await client.get(f"{ELEMENTS_URL}/{traversal}")
    assert response.status_code == 404, response.text[:200]
    assert "import" not in response.text
    assert "root:" not in response.text


async def test_listed_files_show_only_the_listed_names_of_their_folder(tmp_path: Path) -> None:
    """The guard compares normalised paths: a listed name, from the folder it was listed in."""
    outside = tmp_path / "secret.txt"
    outside.write_text("secret", encoding="utf-8")
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / "app.js").write_text("ok", encoding="utf-8")
    files = ListedFiles(folder, ["app.js"])
    assert (await files.info(str(folder / "app.js")))["type"] == "file"
    for path in [tmp_path / "secret.txt", folder / ".." / "secret.txt", folder / "other.js"]:
        with pytest.raises(FileNotFoundError):
            await files.info(str(path))


# --- Content-Security-Policy ---------------------------------------------------------------


HTML_PAGES = [*PAGES, "/schema/oauth2-redirect.html"]


async def served_policy(client: Client, path: str) -> tuple[str, dict[str, list[str]]]:
    """The page's HTML and its Content-Security-Policy, directive by directive."""
    response = await client.get(path)
    assert response.status_code == 200
    return response.text, policy(response.headers["content-security-policy"])


@pytest.mark.parametrize("path", HTML_PAGES)
async def test_docs_pages_allow_only_their_own_origin_and_hashed_inline_code(
    client: Client, path: str
) -> None:
    _, directives = await served_policy(client, path)
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    for name, sources in directives.items():  # no host, no 'unsafe-inline', no 'unsafe-eval'
        assert all(CSP_SOURCE.fullmatch(source) for source in sources), (name, sources)


@pytest.mark.parametrize("path", HTML_PAGES)
async def test_the_csp_hashes_are_those_of_the_inline_blocks_of_the_page(
    client: Client, path: str
) -> None:
    html, directives = await served_policy(client, path)
    scripts = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, re.DOTALL)
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL)
    injected = [s for url, hashes in RUNTIME_STYLES.items() if url in html for s in hashes]
    assert directives["script-src"] == ["'self'", *map(sha256_source, scripts)]
    assert directives["style-src"] == ["'self'", *map(sha256_source, styles), *injected]


async def test_swagger_page_runs_its_one_inline_script_by_hash(client: Client) -> None:
    _, directives = await served_policy(client, "/schema/swagger")
    assert len(directives["script-src"]) == 2  # 'self' and the hash of SwaggerUIBundle({...})


async def test_the_openapi_json_is_not_given_a_page_policy(client: Client) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers


# --- the schema ----------------------------------------------------------------------------


async def test_openapi_schema_is_json_with_register_and_token(client: Client) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "post" in paths["/register"]
    assert "post" in paths["/token"]


async def test_openapi_has_an_oauth2_password_scheme_pointing_at_token(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"].values()
    password_flows = [
        scheme["flows"]["password"]
        for scheme in schemes
        if scheme["type"] == "oauth2" and "password" in scheme.get("flows", {})
    ]
    assert [flow["tokenUrl"] for flow in password_flows] == ["/token"]


async def test_openapi_token_request_is_a_form(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    content = schema["paths"]["/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in content


async def test_openapi_does_not_list_the_asset_routes(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert [path for path in paths if path.startswith("/schema")] == []
