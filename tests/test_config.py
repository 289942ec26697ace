"""Tests of saga_orchestrator.config: reading, checking and showing the settings."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from saga_orchestrator.config import (
    SETTINGS_DOC,
    Settings,
    describe_settings,
    load_settings,
    mask_url,
)
from saga_orchestrator.errors import ConfigError

REPO_ROOT = Path(__file__).parents[1]
ENV_NAMES = [field.name.upper() for field in attrs.fields(Settings)]


def load(**env: str) -> Settings:
    return load_settings(env, env_file=None)


def config_error(**env: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(**env)
    return str(info.value)


# --- defaults -------------------------------------------------------------------------------


def test_defaults_from_an_empty_environment() -> None:
    settings = load()
    assert settings == Settings()
    assert settings.environment == "development"
    assert settings.log_level == "INFO"
    assert settings.host == "0.0.0.0"
    assert settings.port == 8008
    assert settings.api_key is None
    assert settings.require_api_key is True
    assert settings.database_url is None
    assert settings.data_dir == Path("data")
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.redis_password is None
    assert settings.use_redis_event_bus is False
    assert settings.saga_timeout_seconds == 3600
    assert settings.saga_retry_attempts == 3
    assert settings.saga_step_timeout_seconds == 300
    assert settings.saga_retry_backoff_seconds == 1.0
    assert settings.saga_retry_backoff_max_seconds == 60.0
    assert settings.compensation_retry_attempts == 5
    assert settings.max_active_sagas == 10000
    assert settings.saga_mailbox_size == 64
    assert settings.coordinator_mailbox_size == 1024
    assert settings.store_mailbox_size == 4096
    assert settings.store_max_batch == 512
    assert settings.database_pool_size == 10
    assert settings.supervisor_max_restarts == 3
    assert settings.supervisor_period_seconds == 5.0
    assert settings.shutdown_grace_seconds == 5.0
    assert settings.auth_service_url == "http://localhost:8001"
    assert settings.user_service_url == "http://localhost:8002"
    assert settings.permission_service_url == "http://localhost:8003"
    assert settings.notification_service_url == "http://localhost:8004"
    assert settings.airtable_connector_url == "http://localhost:8005"
    assert settings.service_auth_token is None
    assert settings.database_kind == "sqlite"
    assert settings.sqlite_path == Path("data") / "saga_orchestrator.db"


def test_values_are_typed_and_normalised() -> None:
    settings = load(
        ENVIRONMENT="Staging",
        LOG_LEVEL="debug",
        PORT=" 0 ",
        SAGA_TIMEOUT_SECONDS="90",
        SAGA_RETRY_BACKOFF_SECONDS="0.25",
        SUPERVISOR_MAX_RESTARTS="0",
        SHUTDOWN_GRACE_SECONDS="0",
        DATA_DIR="/var/lib/sagas",
        API_KEY="k-123",
        AUTH_SERVICE_URL="https://auth.internal:8443/v1",
        REDIS_URL="unix:///run/redis.sock",
    )
    assert settings.environment == "staging"
    assert settings.log_level == "DEBUG"
    assert settings.port == 0
    assert settings.saga_timeout_seconds == 90.0
    assert isinstance(settings.saga_timeout_seconds, float)
    assert settings.saga_retry_backoff_seconds == 0.25
    assert settings.supervisor_max_restarts == 0
    assert settings.shutdown_grace_seconds == 0.0
    assert settings.data_dir == Path("/var/lib/sagas")
    assert settings.sqlite_path == Path("/var/lib/sagas/saga_orchestrator.db")
    assert settings.api_key == "k-123"
    assert settings.auth_service_url == "https://auth.internal:8443/v1"
    assert settings.redis_url == "unix:///run/redis.sock"


def test_unknown_variables_are_ignored() -> None:
    assert load(PATH="/usr/bin", SOMETHING_ELSE="x") == Settings()


def test_empty_optional_variable_means_unset() -> None:
    settings = load(API_KEY="", REDIS_PASSWORD="  ", DATABASE_URL="", SERVICE_AUTH_TOKEN="")
    assert settings.api_key is None
    assert settings.redis_password is None
    assert settings.database_url is None
    assert settings.service_auth_token is None


def test_settings_is_frozen() -> None:
    settings = load()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


# --- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORT", "abc", "an integer between 0 and 65535"),
        ("PORT", "65536", "an integer between 0 and 65535"),
        ("PORT", "-1", "an integer between 0 and 65535"),
        ("PORT", "80.5", "an integer between 0 and 65535"),
        ("ENVIRONMENT", "prod", "one of development, staging, production, test"),
        ("LOG_LEVEL", "verbose", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("HOST", "not a host", "a host name or IP address"),
        ("SAGA_TIMEOUT_SECONDS", "0", "a number > 0"),
        ("SAGA_TIMEOUT_SECONDS", "soon", "a number > 0"),
        ("SAGA_STEP_TIMEOUT_SECONDS", "inf", "a number > 0"),
        ("SAGA_RETRY_BACKOFF_SECONDS", "nan", "a number > 0"),
        ("SHUTDOWN_GRACE_SECONDS", "-1", "a number >= 0"),
        ("SAGA_RETRY_ATTEMPTS", "0", "an integer >= 1"),
        ("SAGA_RETRY_ATTEMPTS", "2.5", "an integer >= 1"),
        ("MAX_ACTIVE_SAGAS", "lots", "an integer >= 1"),
        ("STORE_MAX_BATCH", "0", "an integer >= 1"),
        ("SUPERVISOR_MAX_RESTARTS", "-1", "an integer >= 0"),
        ("REQUIRE_API_KEY", "maybe", "one of true/false, 1/0, yes/no, on/off"),
        ("USE_REDIS_EVENT_BUS", "2", "one of true/false, 1/0, yes/no, on/off"),
        ("REDIS_URL", "http://localhost:6379", "a redis://, rediss:// or unix:// URL"),
        ("AUTH_SERVICE_URL", "localhost:8001", "an http:// or https:// URL"),
        ("USER_SERVICE_URL", "ftp://users", "an http:// or https:// URL"),
        ("NOTIFICATION_SERVICE_URL", "http://", "an http:// or https:// URL"),
        ("AIRTABLE_CONNECTOR_URL", "http://host:99999", "an http:// or https:// URL"),
        ("PORT", "", "an integer between 0 and 65535"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    name: str, value: str, expected: str
) -> None:
    message = config_error(**{name: value})
    assert "\n" not in message
    assert message.startswith(f"{name}={value.strip()!r} is not valid: expected {expected}")


def test_every_bad_variable_is_reported_one_line_each() -> None:
    message = config_error(PORT="abc", SAGA_RETRY_ATTEMPTS="0", USE_REDIS_EVENT_BUS="maybe")
    lines = message.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("PORT='abc' is not valid")
    assert any(line.startswith("SAGA_RETRY_ATTEMPTS='0' is not valid") for line in lines)
    assert any(line.startswith("USE_REDIS_EVENT_BUS='maybe' is not valid") for line in lines)


def test_a_value_with_a_newline_still_gives_one_line_per_variable() -> None:
    message = config_error(HOST="a\nb")
    assert message.splitlines() == [message]
    assert message.startswith("HOST='a\\nb' is not valid")


@pytest.mark.parametrize("name", ["API_KEY", "SERVICE_AUTH_TOKEN"])
def test_a_bad_secret_is_named_but_not_shown(name: str) -> None:
    message = config_error(**{name: "hunter2 with spaces"})
    assert message.startswith(f"{name}='***' is not valid: expected ")
    assert "hunter2" not in message


def test_a_bad_redis_password_is_not_shown() -> None:
    message = config_error(REDIS_PASSWORD="hunter2\x00")
    assert message.startswith("REDIS_PASSWORD='***' is not valid")
    assert "hunter2" not in message


def test_a_bad_url_is_shown_without_its_password() -> None:
    message = config_error(REDIS_URL="http://user:hunter2@cache:6379")
    assert message.startswith("REDIS_URL='http://user:***@cache:6379' is not valid")
    assert "hunter2" not in message


def test_backoff_max_must_not_be_below_the_first_backoff() -> None:
    message = config_error(SAGA_RETRY_BACKOFF_SECONDS="10", SAGA_RETRY_BACKOFF_MAX_SECONDS="5")
    assert message.startswith("SAGA_RETRY_BACKOFF_MAX_SECONDS=5.0 is not valid")
    assert "SAGA_RETRY_BACKOFF_SECONDS" in message


def test_constructing_settings_directly_checks_values_too() -> None:
    assert Settings(port=0, data_dir="/tmp/x").sqlite_path == Path("/tmp/x/saga_orchestrator.db")
    with pytest.raises(ConfigError, match=r"^PORT=70000 is not valid"):
        Settings(port=70000)
    with pytest.raises(ConfigError) as info:
        Settings(api_key="bad key", saga_retry_attempts=0)
    assert str(info.value).splitlines() == [
        "API_KEY='***' is not valid: expected a string without spaces or control characters",
        "SAGA_RETRY_ATTEMPTS=0 is not valid: expected an integer >= 1",
    ]


# --- booleans -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["true", "TRUE", "True", "1", "yes", "Yes", "on", "ON", " on "])
def test_true_booleans(text: str) -> None:
    assert load(USE_REDIS_EVENT_BUS=text).use_redis_event_bus is True


@pytest.mark.parametrize("text", ["false", "FALSE", "0", "no", "NO", "off", "Off"])
def test_false_booleans(text: str) -> None:
    assert load(REQUIRE_API_KEY=text).require_api_key is False


@pytest.mark.parametrize("text", ["", "y", "n", "2", "enabled", "truthy"])
def test_other_booleans_are_refused(text: str) -> None:
    message = config_error(REQUIRE_API_KEY=text)
    assert message == (
        f"REQUIRE_API_KEY={text!r} is not valid: "
        "expected one of true/false, 1/0, yes/no, on/off (any case)"
    )


# --- DATABASE_URL ---------------------------------------------------------------------------


def test_sqlite_url_with_a_relative_path() -> None:
    settings = load(DATABASE_URL="sqlite:///var/sagas.db")
    assert settings.database_url == "sqlite:///var/sagas.db"
    assert settings.database_kind == "sqlite"
    assert settings.sqlite_path == Path("var/sagas.db")


def test_sqlite_url_with_an_absolute_path() -> None:
    settings = load(DATABASE_URL="sqlite:////srv/sagas/sagas.db")
    assert settings.database_kind == "sqlite"
    assert settings.sqlite_path == Path("/srv/sagas/sagas.db")


def test_unset_database_url_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load(DATA_DIR=str(tmp_path))
    assert settings.database_kind == "sqlite"
    assert settings.sqlite_path == tmp_path / "saga_orchestrator.db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:secret@db.internal:5432/sagas",
        "postgres://app@db/sagas",
        "postgresql:///sagas?host=/run/postgresql",
    ],
)
def test_postgres_urls(url: str) -> None:
    settings = load(DATABASE_URL=url)
    assert settings.database_url == url
    assert settings.database_kind == "postgresql"
    assert settings.sqlite_path is None


@pytest.mark.parametrize(
    "url",
    [
        "mysql://app:hunter2@db/sagas",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/file.db",
        "postgresql://app:hunter2@db:notaport/sagas",
        "just-a-string",
    ],
)
def test_bad_database_urls_list_the_allowed_schemes_and_hide_the_password(url: str) -> None:
    message = config_error(DATABASE_URL=url)
    assert message.startswith("DATABASE_URL=")
    assert "allowed schemes: sqlite, postgresql, postgres" in message
    assert "hunter2" not in message
    assert "\n" not in message


# --- .env -----------------------------------------------------------------------------------


def test_env_file_in_the_current_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# a comment\nPORT=9100\nLOG_LEVEL=warning\nAPI_KEY='from-file'\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"LOG_LEVEL": "ERROR"})
    assert settings.port == 9100
    assert settings.api_key == "from-file"
    assert settings.log_level == "ERROR"  # the environment wins


def test_os_environ_wins_over_the_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("PORT=9100\nSAGA_RETRY_ATTEMPTS=7\n", encoding="utf-8")
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "9200")
    settings = load_settings(env_file=env_file)
    assert settings.port == 9200
    assert settings.saga_retry_attempts == 7


def test_env_file_none_or_missing_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("PORT=9100\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_settings({}, env_file=None).port == 8008
    assert load_settings({}, env_file=tmp_path / "absent.env").port == 8008


def test_bad_value_in_the_env_file_is_reported(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_ACTIVE_SAGAS=many\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^MAX_ACTIVE_SAGAS='many' is not valid"):
        load_settings({}, env_file=env_file)


# --- secrets masking ------------------------------------------------------------------------


def secret_settings() -> Settings:
    return load(
        API_KEY="api-hunter2",
        REDIS_PASSWORD="redis-hunter2",
        SERVICE_AUTH_TOKEN="token-hunter2",
        DATABASE_URL="postgresql://app:db-hunter2@db.internal:5432/sagas",
        REDIS_URL="redis://:url-hunter2@cache:6379/0",
    )


def test_describe_settings_masks_secrets() -> None:
    described = describe_settings(secret_settings())
    assert list(described) == ENV_NAMES
    assert described["API_KEY"] == "***"
    assert described["REDIS_PASSWORD"] == "***"
    assert described["SERVICE_AUTH_TOKEN"] == "***"
    assert described["DATABASE_URL"] == "postgresql://app:***@db.internal:5432/sagas"
    assert described["REDIS_URL"] == "redis://:***@cache:6379/0"
    assert described["PORT"] == 8008
    assert described["USE_REDIS_EVENT_BUS"] is False
    assert described["DATA_DIR"] == "data"
    assert "hunter2" not in repr(described)


def test_describe_settings_shows_unset_secrets_as_none() -> None:
    described = describe_settings(load())
    assert described["API_KEY"] is None
    assert described["DATABASE_URL"] is None


def test_repr_masks_secrets() -> None:
    text = repr(secret_settings())
    assert "hunter2" not in text
    assert "api_key='***'" in text
    assert "database_url='postgresql://app:***@db.internal:5432/sagas'" in text
    assert str(secret_settings()) == text


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h/db?user=u&password=p", "postgresql://h/db?user=u&password=***"),
        ("redis://:p@h:6379/0", "redis://:***@h:6379/0"),
        ("u:p@h/db", "u:***@h/db"),
        ("http://u:p:q@h:1", "http://u:***@h:1"),
        ("sqlite:///data/x.db", "sqlite:///data/x.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


# --- production needs an API key ------------------------------------------------------------


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_production_and_staging_without_api_key_are_refused(environment: str) -> None:
    message = config_error(ENVIRONMENT=environment)
    assert message.startswith("REQUIRE_API_KEY is true but neither API_KEY nor API_KEYS is set")
    assert f"ENVIRONMENT={environment} needs an API key" in message
    assert "\n" not in message


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_production_with_api_key_or_without_the_requirement_is_allowed(environment: str) -> None:
    assert load(ENVIRONMENT=environment, API_KEY="k").api_key == "k"
    assert load(ENVIRONMENT=environment, REQUIRE_API_KEY="false").api_key is None
    named = load(ENVIRONMENT=environment, API_KEYS=f"ops:{KEY_A}")
    assert [("ops", KEY_A, False)] == [(k.name, k.key, k.read_only) for k in named.named_api_keys]


def test_named_keys_serve_on_host_like_api_key() -> None:
    assert "0.0.0.0" == load(API_KEYS=f"ops:{KEY_A}").bind_host
    assert "0.0.0.0" == load(API_KEYS=f"auditor:{KEY_A}:read").bind_host


@pytest.mark.parametrize("environment", ["development", "test"])
def test_development_and_test_run_without_api_key_on_loopback_only(environment: str) -> None:
    settings = load(ENVIRONMENT=environment)
    assert settings.api_key is None
    assert settings.require_api_key is True
    assert "0.0.0.0" == settings.host
    assert "127.0.0.1" == settings.bind_host
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert host == load(ENVIRONMENT=environment, HOST=host).bind_host


def test_the_host_is_used_as_given_with_a_key_or_without_the_requirement() -> None:
    assert "0.0.0.0" == load(API_KEY="k").bind_host
    assert "10.1.2.3" == load(API_KEY="k", HOST="10.1.2.3").bind_host
    assert "0.0.0.0" == load(REQUIRE_API_KEY="false").bind_host


# --- docs and .env.example stay in step with the code ---------------------------------------


def test_settings_doc_covers_every_variable() -> None:
    assert [doc.name for doc in SETTINGS_DOC] == ENV_NAMES
    assert all(doc.meaning for doc in SETTINGS_DOC)


def env_example() -> dict[str, str]:
    text = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    pairs = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE)
    return dict(pairs)


def test_env_example_sets_every_variable_to_its_default() -> None:
    example = env_example()
    assert sorted(example) == sorted(ENV_NAMES)
    for doc in SETTINGS_DOC:
        assert example[doc.name] == doc.default, doc.name


def test_env_example_is_a_working_development_configuration() -> None:
    settings = load_settings({}, env_file=REPO_ROOT / ".env.example")
    assert settings == Settings()
    assert settings.database_kind == "sqlite"
    assert settings.use_redis_event_bus is False


def test_docs_table_lists_every_variable_with_its_default() -> None:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {
        match[1]: match[2].strip()
        for match in re.finditer(r"^\| `([A-Z][A-Z0-9_]*)` \|([^|]*)\|", text, flags=re.MULTILINE)
    }
    assert sorted(rows) == sorted(ENV_NAMES)
    for doc in SETTINGS_DOC:
        expected = f"`{doc.default}`" if doc.default else "*(unset)*"
        assert rows[doc.name] == expected, doc.name


# --- named keys (API_KEYS) ------------------------------------------------------------------

KEY_A = "a-0123456789abcdef-hunter2"
KEY_B = "b-0123456789abcdef-hunter2"
KEY_C = "c-0123456789abcdef-hunter2"


def test_api_keys_name_each_key_and_api_key_is_default() -> None:
    settings = load(API_KEY="single-key", API_KEYS=f" ops:{KEY_A} , ci:{KEY_B}:read ,")
    keys = [(key.name, key.key, key.read_only) for key in settings.named_api_keys]
    assert [
        ("default", "single-key", False),
        ("ops", KEY_A, False),
        ("ci", KEY_B, True),
    ] == keys
    assert "hunter2" not in repr(settings.named_api_keys)
    only_named = load(API_KEYS=f"ops:{KEY_A}")
    assert ["ops"] == [key.name for key in only_named.named_api_keys]
    assert () == load().named_api_keys


def test_config_shows_key_names_never_keys() -> None:
    settings = load(API_KEY="single-key", API_KEYS=f"ops:{KEY_A},ci:{KEY_B}:read")
    described = describe_settings(settings)
    assert "ops:***,ci:***:read" == described["API_KEYS"]
    assert "***" == described["API_KEY"]
    assert "hunter2" not in repr(described) + repr(settings)
    assert "api_keys='ops:***,ci:***:read'" in repr(settings)


def test_each_problem_of_api_keys_is_one_line_without_any_key() -> None:
    message = config_error(
        API_KEY=KEY_C,
        API_KEYS=",".join(
            [
                f"ops:{KEY_A}",
                "ops2:short-hunter2",  # too short
                f"bad name:{KEY_B}hunter2",  # a space in the name
                f"x:{KEY_B}:write",  # only :read may follow
                "hunter2-without-a-name",
                f"ops:{KEY_B}",  # ops twice
                f"default:{KEY_B}x",  # API_KEY's name
                f"twin:{KEY_A}",  # ops's key again
                f"again:{KEY_C}",  # API_KEY's key again
            ]
        ),
    )
    lines = message.splitlines()
    assert [
        "API_KEYS entry 2 of 9 is not valid: the key must be 16 to 256 letters, digits, "
        "'.', '_', '~', '+', '/', '=' or '-'",
        "API_KEYS entry 3 of 9 is not valid: the name must be 1 to 64 letters, digits, "
        "'.', '_' or '-'",
        "API_KEYS entry 4 of 9 is not valid: expected NAME:KEY or NAME:KEY:read "
        "(only ':read' may follow the key)",
        "API_KEYS entry 5 of 9 is not valid: expected NAME:KEY or NAME:KEY:read",
        "API_KEYS names 'ops' twice: give each key a name of its own",
        "API_KEYS names 'default' twice (the name of API_KEY's key): give each key a name of "
        "its own",
        "API_KEYS gives 'ops' and 'twin' the same key: give each caller a key of its own",
        "API_KEYS gives 'default' and 'again' the same key: give each caller a key of its own",
    ] == lines
    assert "hunter2" not in message


def test_settings_made_in_code_check_api_keys_too() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(api_keys=f"a:{KEY_A},b:{KEY_A}")
    assert "'a' and 'b' the same key" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_invalid_api_keys_alone_do_not_also_say_no_key_is_set() -> None:
    message = config_error(ENVIRONMENT="production", API_KEYS="ops:short")
    assert ["API_KEYS entry 1 of 1 is not valid"] == [
        line.split(":")[0] for line in message.splitlines()
    ]
