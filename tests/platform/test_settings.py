"""The settings the service starts from: the environment over .env over defaults, and the
secrets production refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from shared.settings import Settings, load_api_settings, load_settings

STRONG_SECRET = "s" * 32
# The development default that code and .env.example once shipped: public, so never accepted.
PUBLISHED_DEV_SECRET = "dev-only-secret-change-me-in-production"


def test_production_refuses_to_start_without_jwt_secret(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_api_settings({"ENVIRONMENT": "production"}, env_file=tmp_path / ".env")


@pytest.mark.parametrize("environment", ["production", "test", "development"])
def test_the_once_published_development_secret_is_refused_everywhere(
    tmp_path: Path, environment: str
) -> None:
    environ = {"ENVIRONMENT": environment, "JWT_SECRET": PUBLISHED_DEV_SECRET}
    with pytest.raises(SystemExit, match="published"):
        load_api_settings(environ, env_file=tmp_path / ".env")


def test_settings_default_to_production_and_refuse_to_start_without_a_secret(
    tmp_path: Path,
) -> None:
    with pytest.raises(SystemExit, match="JWT_SECRET"):
        load_api_settings({}, env_file=tmp_path / ".env")
    assert Settings.__struct_defaults__[Settings.__struct_fields__.index("environment")] == (
        "production"
    )


def test_production_refuses_a_short_jwt_secret(tmp_path: Path) -> None:
    environ = {"ENVIRONMENT": "production", "JWT_SECRET": "s" * 31}
    with pytest.raises(SystemExit):
        load_api_settings(environ, env_file=tmp_path / ".env")


def test_production_accepts_a_long_jwt_secret(tmp_path: Path) -> None:
    environ = {"ENVIRONMENT": "production", "JWT_SECRET": STRONG_SECRET}
    loaded = load_api_settings(environ, env_file=tmp_path / ".env")
    assert loaded.jwt_secret == STRONG_SECRET


def test_development_without_a_secret_signs_with_a_random_one_per_start(tmp_path: Path) -> None:
    first = load_api_settings({"ENVIRONMENT": "development"}, env_file=tmp_path / ".env")
    second = load_api_settings({"ENVIRONMENT": "development"}, env_file=tmp_path / ".env")
    assert len(first.jwt_secret) >= 32
    assert first.jwt_secret != second.jwt_secret


def test_defaults_point_at_localhost_standard_ports(tmp_path: Path) -> None:
    loaded = load_settings({"JWT_SECRET": STRONG_SECRET}, env_file=tmp_path / ".env")
    assert make_url(loaded.database_url).drivername == "postgresql+asyncpg"
    assert make_url(loaded.database_url).port == 5432
    assert make_url(loaded.redis_url).port == 6379
    assert make_url(loaded.rabbitmq_url).port == 5672
    assert loaded.access_token_expire_minutes == 30
    assert loaded.cache_ttl_seconds == 300
    assert loaded.rate_limit == "100/minute"
    assert loaded.token_rate_limit == "10/minute"


def test_env_file_values_are_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nCACHE_TTL_SECONDS=42\nexport RATE_LIMIT='7/minute'\n"
        'CORS_ALLOW_ORIGINS="https://a.example, https://b.example"\n',
        encoding="utf-8",
    )
    loaded = load_settings({"JWT_SECRET": STRONG_SECRET}, env_file=env_file)
    assert loaded.cache_ttl_seconds == 42
    assert loaded.rate_limit == "7/minute"
    assert loaded.cors_origins == ["https://a.example", "https://b.example"]


def test_environment_overrides_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CACHE_TTL_SECONDS=42\nACCESS_TOKEN_EXPIRE_MINUTES=5\n", encoding="utf-8")
    loaded = load_settings(
        {"CACHE_TTL_SECONDS": "7", "JWT_SECRET": STRONG_SECRET}, env_file=env_file
    )
    assert loaded.cache_ttl_seconds == 7
    assert loaded.access_token_expire_minutes == 5


def test_a_malformed_rate_limit_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_settings({"RATE_LIMIT": "lots"}, env_file=tmp_path / ".env")


def test_a_non_numeric_setting_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_settings({"CACHE_TTL_SECONDS": "five"}, env_file=tmp_path / ".env")


def test_issuer_and_audience_work_with_no_configuration(tmp_path: Path) -> None:
    loaded = load_settings({"JWT_SECRET": STRONG_SECRET}, env_file=tmp_path / ".env")
    assert (loaded.jwt_issuer, loaded.jwt_audience) == ("order-service", "order-api")


@pytest.mark.parametrize(
    "setting", [{"JWT_ISSUER": ""}, {"JWT_AUDIENCE": " "}, {"JWT_ISSUER": "order service"}]
)
def test_an_empty_or_spaced_issuer_or_audience_refuses_to_start(
    tmp_path: Path, setting: dict[str, str]
) -> None:
    with pytest.raises(SystemExit, match=r"jwt_(issuer|audience)"):
        load_settings({"JWT_SECRET": STRONG_SECRET, **setting}, env_file=tmp_path / ".env")


@pytest.mark.parametrize("prefix", ["0", "129", "-64", "sixty-four"])
def test_an_ipv6_prefix_that_is_no_prefix_length_refuses_to_start(
    tmp_path: Path, prefix: str
) -> None:
    environ = {"JWT_SECRET": STRONG_SECRET, "RATE_LIMIT_IPV6_PREFIX": prefix}
    with pytest.raises(SystemExit, match=r"(?i)rate_limit_ipv6_prefix"):
        load_settings(environ, env_file=tmp_path / ".env")


def test_ipv6_clients_are_counted_by_their_64_unless_told(tmp_path: Path) -> None:
    environ = {"JWT_SECRET": STRONG_SECRET}
    assert load_settings(environ, env_file=tmp_path / ".env").rate_limit_ipv6_prefix == 64
    environ["RATE_LIMIT_IPV6_PREFIX"] = "56"
    assert load_settings(environ, env_file=tmp_path / ".env").rate_limit_ipv6_prefix == 56


def test_a_session_ends_90_days_after_its_login_by_default(tmp_path: Path) -> None:
    settings = load_settings({"JWT_SECRET": STRONG_SECRET}, env_file=tmp_path / ".env")
    assert (settings.session_max_days, settings.session_purge_batch) == (90, 1000)


@pytest.mark.parametrize("name", ["SESSION_MAX_DAYS", "SESSION_PURGE_BATCH"])
def test_a_session_setting_below_one_refuses_to_start(tmp_path: Path, name: str) -> None:
    with pytest.raises(SystemExit, match=name):
        load_settings({"JWT_SECRET": STRONG_SECRET, name: "0"}, env_file=tmp_path / ".env")
