"""The ops paths are declared once and read by auth, the limiter and metrics alike."""

from __future__ import annotations

import re

from shared.accounts.signing_keys import signing_keys
from shared.accounts.user_directory import UserDirectory
from shared.db import Database, create_engine
from shared.http.auth import build_auth, user_retriever
from shared.http.layers import RequestLayers
from shared.http.rate_limit import rate_limit_config
from shared.http.routes import OPS_PATHS, ops_path_patterns, public
from shared.settings import Settings

SETTINGS = Settings(environment="test", jwt_secret="s" * 40)


def test_each_ops_path_and_what_is_under_it_matches_and_api_paths_do_not() -> None:
    patterns = ops_path_patterns()
    for path in ("/health", "/ready", "/metrics", "/schema/openapi.json", "/schema/swagger"):
        assert any(re.match(p, path) for p in patterns), path
    for path in ("/orders", "/token", "/register", "/orders/user/1"):
        assert not any(re.match(p, path) for p in patterns), path
    assert len(patterns) == len(OPS_PATHS)


def test_auth_the_limiter_and_metrics_exclude_the_same_paths() -> None:
    expected = ops_path_patterns()
    keys = signing_keys("HS256", SETTINGS.jwt_secret, "", "")
    users = UserDirectory(Database(create_engine(SETTINGS)), "", 0)  # never asked here
    assert build_auth(SETTINGS, keys, user_retriever(users)).exclude == expected
    assert rate_limit_config(SETTINGS).exclude == expected
    assert RequestLayers(app=None, proxies=()).excluded == tuple(expected)  # type: ignore[arg-type]


def test_a_public_route_needs_no_token_and_says_so_in_the_schema() -> None:
    assert public() == {"exclude_from_auth": True, "security": [{}]}
    assert public()["security"] is not public()["security"]  # no list shared between routes
