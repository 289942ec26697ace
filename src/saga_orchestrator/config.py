"""Settings of the service, read from the environment.

(Over 400 lines on purpose: one table of every setting, each with its rule and its text, from
which docs/configuration.md and .env.example are checked.)

Every setting is one environment variable; its attribute on :class:`Settings` is the same name
in lower case (``SAGA_TIMEOUT_SECONDS`` -> ``settings.saga_timeout_seconds``).

:func:`load_settings` reads ``os.environ`` merged over a ``.env`` file in the current directory
(variables already in the environment win), turns the strings into typed values with a cattrs
converter, and checks each value. Every bad variable is reported at once in a
:class:`~saga_orchestrator.errors.ConfigError`, one self-contained line per variable::

    PORT='abc' is not valid: expected an integer between 0 and 65535 (0 picks a free port)

Secrets (``API_KEY``, the keys of ``API_KEYS``, ``REDIS_PASSWORD``, ``SERVICE_AUTH_TOKEN`` and
the password part of ``DATABASE_URL`` / ``REDIS_URL``) are masked as ``***`` in error messages,
in ``repr(settings)`` and in :func:`describe_settings` (``API_KEYS`` as ``ops:***,ci:***:read``).

The table of variables in ``docs/configuration.md`` and the file ``.env.example`` mirror
:data:`SETTINGS_DOC`; a test keeps them in step with this module.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import attrs
import cattrs
from dotenv import dotenv_values

from saga_orchestrator.api_keys import (
    DEFAULT_KEY_NAME,
    FORMAT,
    KEY_ALLOWED,
    NAME_ALLOWED,
    ApiKey,
    api_key_problems,
    mask_api_keys,
    named_api_keys,
)
from saga_orchestrator.errors import ConfigError

__all__ = [
    "ENVIRONMENTS",
    "LOG_LEVELS",
    "MASK",
    "SETTINGS_DOC",
    "SQLITE_FILENAME",
    "SettingDoc",
    "Settings",
    "describe_settings",
    "load_settings",
    "mask_url",
    "read_environment",
    "url_values",
]

MASK = "***"
"""What a secret is shown as."""

ENVIRONMENTS = ("development", "staging", "production", "test")
_KEY_REQUIRED_IN = ("staging", "production")
"""Environments that refuse to start without ``API_KEY`` or ``API_KEYS`` while
``REQUIRE_API_KEY`` is true."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SQLITE_FILENAME = "saga_orchestrator.db"
"""Name of the embedded SQLite file inside ``DATA_DIR`` when ``DATABASE_URL`` is unset."""

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_INT_RE = re.compile(r"[+-]?[0-9]+")
_HOST_RE = re.compile(r"[A-Za-z0-9._:%\[\]-]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE_OR_CONTROL_RE = re.compile(r"[\s\x00-\x1f\x7f]")
_MODULE_RE = r"\s*[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\s*"
_MODULE_LIST_RE = re.compile(rf"{_MODULE_RE}(?:,{_MODULE_RE})*")
_QUERY_SECRET_RE = re.compile(r"(^|&)(password|pass|pwd)=[^&]*", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Rules: what a value must look like, and how it is shown.


@attrs.frozen
class _Rule:
    """How one setting is checked and shown."""

    doc: str
    """What the setting means (first column of the docs, before ``allowed``)."""
    allowed: str
    """What is allowed, completing ``expected ...`` in an error message."""
    check: Callable[[Any], bool]
    """True when a typed value is allowed."""
    secret: bool = False
    """The whole value is a secret: shown as ``***``."""
    url: bool = False
    """The value is a URL that may hold a password: the password is shown as ``***``."""
    mask: Callable[[Any], Any] | None = None
    """How a value holding secrets is shown (instead of ``***`` whole)."""


_META = "saga_orchestrator.config"


def _setting(
    default: Any,
    rule: _Rule,
    *,
    converter: Callable[[Any], Any] | None = None,
) -> Any:
    return attrs.field(default=default, converter=converter, metadata={_META: rule})


def _rule(field: attrs.Attribute[Any]) -> _Rule:
    return field.metadata[_META]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(low: int, doc: str) -> _Rule:
    return _Rule(doc, f"an integer >= {low}", lambda v: _is_int(v) and v >= low)


def _number_above(low: float, doc: str) -> _Rule:
    return _Rule(doc, f"a number > {low:g}", lambda v: _is_number(v) and v > low)


def _number_at_least(low: float, doc: str) -> _Rule:
    return _Rule(doc, f"a number >= {low:g}", lambda v: _is_number(v) and v >= low)


_BOOL_ALLOWED = "one of true/false, 1/0, yes/no, on/off (any case)"


def _flag(doc: str) -> _Rule:
    return _Rule(doc, _BOOL_ALLOWED, lambda v: isinstance(v, bool))


def _valid_port(parts: Any) -> bool:
    try:
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return False
    return True


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or _WHITESPACE_OR_CONTROL_RE.search(value):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and _valid_port(parts)


def _http_url(doc: str) -> _Rule:
    return _Rule(doc, "an http:// or https:// URL with a host", _is_http_url, url=True)


def _is_redis_url(value: object) -> bool:
    if not isinstance(value, str) or _WHITESPACE_OR_CONTROL_RE.search(value):
        return False
    parts = urlsplit(value)
    if parts.scheme in ("redis", "rediss"):
        return bool(parts.hostname) and _valid_port(parts)
    if parts.scheme == "unix":
        return bool(parts.path)
    return False


def _split_database_url(url: str) -> tuple[Literal["sqlite", "postgresql"], Path | None]:
    """Return the kind of database a non-empty ``DATABASE_URL`` names, and the SQLite path.

    Raises ``ValueError`` when the URL is not allowed.
    """
    if _CONTROL_RE.search(url) or url != url.strip():
        raise ValueError("control characters or surrounding whitespace")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("not a URL")
    if scheme == "sqlite":
        # sqlite:///relative/file.db -> "relative/file.db"; sqlite:////abs/file.db -> "/abs/file.db"
        if not rest.startswith("/") or "?" in rest or "#" in rest:
            raise ValueError("a sqlite URL has no host, query or fragment")
        path = rest[1:]
        if not path or path.endswith("/"):
            raise ValueError("a sqlite URL names a file")
        return "sqlite", Path(path)
    if scheme in ("postgresql", "postgres"):
        if not _valid_port(urlsplit(url)):
            raise ValueError("bad port")
        return "postgresql", None
    raise ValueError(f"scheme {scheme!r} is not supported")


def _is_database_url(value: object) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        _split_database_url(value)
    except ValueError:
        return False
    return True


def _is_token(value: object) -> bool:
    return value is None or (
        isinstance(value, str) and bool(value) and not _WHITESPACE_OR_CONTROL_RE.search(value)
    )


def _is_password(value: object) -> bool:
    return value is None or (
        isinstance(value, str) and bool(value) and not _CONTROL_RE.search(value)
    )


def _is_module_list(value: object) -> bool:
    return value is None or (
        isinstance(value, str) and _MODULE_LIST_RE.fullmatch(value) is not None
    )


def _is_loopback(host: str) -> bool:
    """``localhost``, ``127.x.x.x`` or ``::1``."""
    host = host.strip("[]").lower()
    return host in ("localhost", "::1") or re.fullmatch(r"127(\.[0-9]{1,3}){3}", host) is not None


def _is_host(value: object) -> bool:
    return isinstance(value, str) and _HOST_RE.fullmatch(value) is not None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _to_path(value: Any) -> Any:
    return Path(value) if isinstance(value, str | os.PathLike) else value


_STREAM_NAME_RE = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def _is_stream_name(value: object) -> bool:
    """A Redis stream or consumer group name: letters, digits and ``. _ : -``."""
    return isinstance(value, str) and _STREAM_NAME_RE.fullmatch(value) is not None


_STREAM_NAME_ALLOWED = "1 to 200 letters, digits, dots, underscores, colons or hyphens"


# --------------------------------------------------------------------------------------------
# The settings.


@attrs.frozen(kw_only=True)
class Settings:
    """Every setting of the service; build it with :func:`load_settings`.

    Constructing it directly (e.g. in tests: ``Settings(port=0, data_dir=tmp_path)``) checks the
    values the same way and raises :class:`ConfigError` for bad ones. The attribute for a
    variable is its name in lower case. ``repr()`` masks secrets.
    """

    # --- Service ------------------------------------------------------------------------------
    environment: str = _setting(
        "development",
        _Rule(
            "Deployment environment. In production and staging, REQUIRE_API_KEY=true makes "
            "an API key (API_KEY or API_KEYS) mandatory; in development and test the service then "
            "listens on loopback only.",
            "one of " + ", ".join(ENVIRONMENTS) + " (any case)",
            lambda v: v in ENVIRONMENTS,
        ),
        converter=_lower,
    )
    log_level: str = _setting(
        "INFO",
        _Rule(
            "Level of the service's log.",
            "one of " + ", ".join(LOG_LEVELS) + " (any case)",
            lambda v: v in LOG_LEVELS,
        ),
        converter=_upper,
    )
    host: str = _setting(
        "0.0.0.0",
        _Rule(
            "Address the HTTP server listens on.",
            "a host name or IP address",
            _is_host,
        ),
    )
    port: int = _setting(
        8008,
        _Rule(
            "TCP port the HTTP server listens on; 0 picks any free port (useful in tests).",
            "an integer between 0 and 65535",
            lambda v: _is_int(v) and 0 <= v <= 65535,
        ),
    )
    http_keep_alive_seconds: float = _setting(
        5.0,
        _number_above(
            0,
            "Seconds an idle HTTP connection stays open after its last answer (or after it "
            "connected) before the service closes it. It also bounds how long a client may take "
            "to send a whole request head: a slow-header (slowloris) client is cut off after it. "
            "Keep it longer than the idle timeout of a reverse proxy that reuses connections.",
        ),
    )
    http_max_header_bytes: int = _setting(
        16384,
        _int_at_least(
            1024,
            "Largest request head (request line and headers) accepted, in bytes; a larger one "
            "gets 431 and the connection is closed.",
        ),
    )

    # --- Authentication -----------------------------------------------------------------------
    api_key: str | None = _setting(
        None,
        _Rule(
            "Key clients must send in the X-API-Key header (or as Authorization: Bearer); "
            f"named {DEFAULT_KEY_NAME!r}, with full access. API_KEYS gives more keys. "
            "With neither set while REQUIRE_API_KEY is true: refused at start-up in production "
            "and staging; in development and test requests are not authenticated and the API "
            "listens on 127.0.0.1 only, whatever HOST says.",
            "a string without spaces or control characters",
            _is_token,
            secret=True,
        ),
    )
    api_keys: str | None = _setting(
        None,
        _Rule(
            "More keys, each with a name (shown in the access log and recorded with operator "
            "actions): comma-separated NAME:KEY entries, NAME:KEY:read for a read-only key "
            "(GET, HEAD and OPTIONS; other methods get 403). Names and keys must be unique, "
            "API_KEY's name default included.",
            f"comma-separated {FORMAT} entries; a name is {NAME_ALLOWED}, a key {KEY_ALLOWED}",
            lambda v: v is None or isinstance(v, str),  # each entry: _cross_problems
            secret=True,
            mask=mask_api_keys,
        ),
    )
    require_api_key: bool = _setting(
        True,
        _flag(
            "Refuse to start in production or staging without API_KEY or API_KEYS "
            "(development and test: listen on loopback only). "
            "Set to false only when something in front of the service authenticates callers."
        ),
    )

    # --- Web dashboard (docs/dashboard.md) ----------------------------------------------------
    secret_key: str | None = _setting(
        None,
        _Rule(
            "Signs the dashboard's session cookies and CSRF tokens (at least 32 characters). "
            "Unset: a random one per process, with a warning (sessions then end with the "
            "process and are not shared by replicas).",
            "a string of at least 32 characters without spaces or control characters",
            lambda v: v is None or (_is_token(v) and len(v) >= 32),
            secret=True,
        ),
    )
    ui_live_connections: int = _setting(
        100,
        _int_at_least(
            1,
            "Most live-update streams (server-sent events) the dashboard serves at once per "
            "process; one more is answered 503.",
        ),
    )

    # --- Storage ------------------------------------------------------------------------------
    database_url: str | None = _setting(
        None,
        _Rule(
            "Event store database. Unset or empty: embedded SQLite file "
            f"{SQLITE_FILENAME} in DATA_DIR. sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db: SQLite at that path. "
            "postgresql://user:password@host:5432/db (or postgres://): PostgreSQL.",
            "empty (embedded SQLite), a sqlite:///path/to/file.db URL, "
            "or a postgresql:// or postgres:// URL (allowed schemes: sqlite, postgresql, postgres)",
            _is_database_url,
            url=True,
        ),
    )
    data_dir: Path = _setting(  # noqa: RUF009  (an attrs field; the converter makes a new Path)
        "./data",
        _Rule(
            f"Directory of the embedded SQLite file {SQLITE_FILENAME} when DATABASE_URL is unset.",
            "a directory path",
            lambda v: isinstance(v, Path) and str(v) != "",
        ),
        converter=_to_path,
    )
    database_pool_size: int = _setting(
        10, _int_at_least(1, "Connections in the PostgreSQL connection pool.")
    )
    database_writers: int = _setting(
        2,
        _int_at_least(
            1,
            "PostgreSQL connections that commit batches of appends, beside the pool: up to this "
            "many batches are in flight at once (the server commits them one after the other). "
            "SQLite always commits one batch at a time.",
        ),
    )

    # --- Redis --------------------------------------------------------------------------------
    redis_url: str = _setting(
        "redis://localhost:6379/0",
        _Rule(
            "Redis server, used when USE_REDIS_EVENT_BUS is true.",
            "a redis://, rediss:// or unix:// URL",
            _is_redis_url,
            url=True,
        ),
    )
    redis_password: str | None = _setting(
        None,
        _Rule(
            "Password for Redis, if not given in REDIS_URL.",
            "a string without control characters",
            _is_password,
            secret=True,
        ),
    )
    use_redis_event_bus: bool = _setting(
        False,
        _flag("Publish saga events on Redis; false uses the in-process event bus."),
    )

    # --- Event bus: streams, consumer group, outbox relay (docs/events.md) -------------------
    event_stream: str = _setting(
        "saga:events",
        _Rule(
            "Stream of the domain events: POST /events/publish relays them there and the router "
            "reads it (trigger and reply events). Its dead-letter stream is <EVENT_STREAM>:dead.",
            _STREAM_NAME_ALLOWED,
            _is_stream_name,
        ),
    )
    lifecycle_stream: str = _setting(
        "saga.lifecycle",
        _Rule(
            "Stream the saga lifecycle events (saga.started, saga.step.completed, "
            "saga.completed, saga.compensated, saga.cancelled, saga.timed_out, "
            "saga.compensation_failed) are relayed to; the router does not read it.",
            _STREAM_NAME_ALLOWED,
            _is_stream_name,
        ),
    )
    consumer_group: str = _setting(
        "saga-orchestrator",
        _Rule(
            "Consumer group the router reads EVENT_STREAM with; every instance of the service "
            "uses the same group, so each event is routed by one of them.",
            _STREAM_NAME_ALLOWED,
            _is_stream_name,
        ),
    )
    consumer_name: str | None = _setting(
        None,
        _Rule(
            "This instance's consumer name in CONSUMER_GROUP; distinct per instance. "
            "Unset: <hostname>-<pid>.",
            "a string without spaces or control characters",
            _is_token,
        ),
    )
    bus_max_stream_length: int = _setting(
        100000,
        _int_at_least(
            1,
            "Approximate cap on the length of each stream (XADD MAXLEN ~); the oldest entries "
            "are trimmed, acknowledged or not, so keep it well above any backlog.",
        ),
    )
    bus_claim_idle_seconds: float = _setting(
        30.0,
        _number_above(
            0,
            "An entry delivered but not acknowledged for this long (its consumer died or its "
            "handling failed) is claimed and delivered again, in seconds.",
        ),
    )
    bus_max_deliveries: int = _setting(
        5,
        _int_at_least(
            1, "Deliveries of one entry before it moves to the dead-letter stream <stream>:dead."
        ),
    )
    bus_block_ms: int = _setting(
        1000,
        _Rule(
            "Longest wait of one read for new entries, in milliseconds (a server-side BLOCK "
            "timeout; it also bounds how long stopping the router takes).",
            "an integer between 1 and 60000",
            lambda v: _is_int(v) and 1 <= v <= 60000,
        ),
    )
    bus_read_count: int = _setting(
        100, _int_at_least(1, "Most entries the router reads, and handles concurrently, at once.")
    )
    relay_batch_size: int = _setting(
        100,
        _int_at_least(1, "Most outbox messages the relay publishes in one pipelined batch."),
    )
    relay_poll_seconds: float = _setting(
        1.0,
        _number_above(
            0,
            "How often the outbox relay leader looks for messages committed by other "
            "processes, in seconds; commits of its own process wake it at once.",
        ),
    )
    relay_leader_retry_seconds: float = _setting(
        2.0,
        _number_above(
            0,
            "How often a standby outbox relay tries to become the leader, in seconds. One relay "
            "per database (the leader) publishes the outbox; with several processes on one "
            "PostgreSQL database the others stand by, and one of them takes over within about "
            "this long when the leader stops or dies. SQLite: always the leader.",
        ),
    )

    # --- Sagas --------------------------------------------------------------------------------
    saga_timeout_seconds: float = _setting(
        3600.0, _number_above(0, "Deadline for a whole saga, in seconds.")
    )
    saga_step_timeout_seconds: float = _setting(
        300.0, _number_above(0, "Deadline for one attempt of one step, in seconds.")
    )
    saga_retry_attempts: int = _setting(
        3, _int_at_least(1, "Attempts per step, the first one included.")
    )
    saga_retry_backoff_seconds: float = _setting(
        1.0,
        _number_above(
            0, "Delay before the first retry of a step, in seconds; doubled per attempt, jittered."
        ),
    )
    saga_retry_backoff_max_seconds: float = _setting(
        60.0,
        _number_above(
            0, "Longest delay between retries, in seconds; not below SAGA_RETRY_BACKOFF_SECONDS."
        ),
    )
    compensation_retry_attempts: int = _setting(
        5, _int_at_least(1, "Attempts per compensation, the first one included.")
    )
    max_active_sagas: int = _setting(
        10000,
        _int_at_least(
            1, "Most sagas running at once; beyond it new sagas get 503 with Retry-After."
        ),
    )

    saga_modules: str | None = _setting(
        None,
        _Rule(
            "Extra saga types: comma-separated importable module names, each exposing "
            "SAGAS (a list of SagaDefinition), e.g. my_company.sagas,other.sagas. "
            "Several versions of a type may be listed side by side; keep a version while "
            "sagas run on it (docs/sagas.md). Unset: only the built-in saga types.",
            "comma-separated dotted Python module names",
            _is_module_list,
        ),
    )

    # --- Actors and store ---------------------------------------------------------------------
    saga_mailbox_size: int = _setting(
        64, _int_at_least(1, "Messages waiting in one saga actor's mailbox.")
    )
    coordinator_mailbox_size: int = _setting(
        1024, _int_at_least(1, "Messages waiting in the coordinator's mailbox.")
    )
    store_mailbox_size: int = _setting(
        4096, _int_at_least(1, "Requests waiting in the store writer's mailbox.")
    )
    store_max_batch: int = _setting(
        512, _int_at_least(1, "Most appends committed in one transaction.")
    )
    supervisor_max_restarts: int = _setting(
        3,
        _int_at_least(
            0,
            "Restarts of a failed actor allowed within SUPERVISOR_PERIOD_SECONDS "
            "before its supervisor gives up.",
        ),
    )
    supervisor_period_seconds: float = _setting(
        5.0, _number_above(0, "Window in which SUPERVISOR_MAX_RESTARTS is counted, in seconds.")
    )
    shutdown_grace_seconds: float = _setting(
        5.0,
        _number_at_least(
            0, "Time running work gets to finish on shutdown before it is cancelled, in seconds."
        ),
    )

    # --- Several instances on one store (docs/operations.md, "Several replicas") -------------
    instance_id: str | None = _setting(
        None,
        _Rule(
            "This process's name among the instances sharing the store (a pod name); each "
            "registration adds a random suffix. Unset: <hostname>-<pid>.",
            "a string without spaces or control characters",
            _is_token,
        ),
    )
    instance_heartbeat_seconds: float = _setting(
        1.0,
        _number_above(
            0,
            "Seconds between renewals of this instance's leases on its sagas (at most a third "
            "of INSTANCE_EXPIRY_SECONDS is used).",
        ),
    )
    instance_expiry_seconds: float = _setting(
        5.0,
        _number_above(
            0,
            "Seconds an instance's leases last without a renewal; then the other instances "
            "take over its sagas. Longer than INSTANCE_HEARTBEAT_SECONDS (at least twice).",
        ),
    )
    failover_scan_seconds: float = _setting(
        1.0,
        _number_above(
            0, "Seconds between looks for sagas no live instance owns (a dead one's, released)."
        ),
    )
    claim_batch_size: int = _setting(
        500, _int_at_least(1, "Most sagas one claim takes (a look claims batches until done).")
    )

    # --- Downstream services ------------------------------------------------------------------
    auth_service_url: str = _setting(
        "http://localhost:8001", _http_url("Base URL of the auth service.")
    )
    user_service_url: str = _setting(
        "http://localhost:8002", _http_url("Base URL of the user service.")
    )
    permission_service_url: str = _setting(
        "http://localhost:8003", _http_url("Base URL of the permission service.")
    )
    notification_service_url: str = _setting(
        "http://localhost:8004", _http_url("Base URL of the notification service.")
    )
    airtable_connector_url: str = _setting(
        "http://localhost:8005", _http_url("Base URL of the Airtable connector.")
    )
    service_auth_token: str | None = _setting(
        None,
        _Rule(
            "Bearer token sent to the downstream services. Unset: no Authorization header.",
            "a string without spaces or control characters",
            _is_token,
            secret=True,
        ),
    )

    def __attrs_post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in _FIELDS}
        problems = [p for f in _FIELDS if (p := _field_problem(f, values[f.name], values[f.name]))]
        problems += _cross_problems(values, failed=set())
        if problems:
            raise ConfigError("\n".join(problems))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={_masked(f, getattr(self, f.name))!r}" for f in _FIELDS)
        return f"Settings({shown})"

    @property
    def database_kind(self) -> Literal["sqlite", "postgresql"]:
        """``"sqlite"`` (also when ``DATABASE_URL`` is unset) or ``"postgresql"``."""
        if not self.database_url:
            return "sqlite"
        return _split_database_url(self.database_url)[0]

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file to use; ``None`` when :attr:`database_kind` is ``"postgresql"``.

        ``DATA_DIR/saga_orchestrator.db`` when ``DATABASE_URL`` is unset. A relative path is
        relative to the current directory.
        """
        if not self.database_url:
            return self.data_dir / SQLITE_FILENAME
        return _split_database_url(self.database_url)[1]

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def named_api_keys(self) -> tuple[ApiKey, ...]:
        """Every key callers may send: ``API_KEY`` (named ``default``), then ``API_KEYS``'s.
        Empty: requests are not authenticated."""
        return named_api_keys(self.api_key, self.api_keys)

    @property
    def bind_host(self) -> str:
        """The address the HTTP server listens on: ``HOST``, except that an API open to anyone
        (``REQUIRE_API_KEY`` true, no key: development and test only) listens on
        ``127.0.0.1`` when ``HOST`` is not a loopback address."""
        if self.require_api_key and not self.named_api_keys and not _is_loopback(self.host):
            return "127.0.0.1"
        return self.host


_FIELDS: tuple[attrs.Attribute[Any], ...] = attrs.fields(attrs.resolve_types(Settings))


def _env_name(field: attrs.Attribute[Any]) -> str:
    return field.name.upper()


# --------------------------------------------------------------------------------------------
# Masking.


def mask_url(url: str) -> str:
    """``url`` with the password of its user info (and a ``password=`` query item) as ``***``.

    Works on malformed URLs too, so a bad value can be shown in an error without leaking.
    ``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # not a URL; still mask a "user:password@" part
        scheme, rest = "", url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, _, hostport = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if colon:
            authority = f"{user}:{MASK}@{hostport}"
    path, qmark, query = tail.partition("?")
    if qmark:
        tail = path + qmark + _QUERY_SECRET_RE.sub(rf"\1\2={MASK}", query)
    return f"{scheme}{sep}{authority}{tail}"


def url_values(settings: Settings) -> list[str]:
    """The value of every setting that is a URL and may hold a password (``DATABASE_URL``,
    ``REDIS_URL``, the downstream services' URLs); unset ones left out."""
    return [
        value
        for field in _FIELDS
        if _rule(field).url and isinstance(value := getattr(settings, field.name), str) and value
    ]


def _masked(field: attrs.Attribute[Any], value: Any) -> Any:
    rule = _rule(field)
    if value is None:
        return None
    if rule.mask is not None:
        return rule.mask(value)
    if rule.secret:
        return MASK
    if rule.url and isinstance(value, str):
        return mask_url(value)
    return value


# --------------------------------------------------------------------------------------------
# Checking.


def _field_problem(field: attrs.Attribute[Any], value: Any, shown: Any) -> str | None:
    """The error line for ``field`` when ``value`` is not allowed, else ``None``.

    ``shown`` is what the user wrote (the raw string, or the value given to ``Settings``).
    """
    rule = _rule(field)
    try:
        ok = rule.check(value)
    except Exception:
        ok = False
    if ok:
        return None
    return _problem(field, shown)


def _problem(field: attrs.Attribute[Any], shown: Any) -> str:
    rule = _rule(field)
    return f"{_env_name(field)}={_masked(field, shown)!r} is not valid: expected {rule.allowed}"


def _cross_problems(values: Mapping[str, Any], failed: set[str]) -> list[str]:
    """Rules that involve more than one setting; ``failed`` names settings already reported."""
    problems = []
    key_problems = (
        [] if failed & {"api_key"} else api_key_problems(values["api_key"], values["api_keys"])
    )
    problems += key_problems
    if (
        not failed & {"require_api_key", "environment", "api_key"}
        and not key_problems
        and values["require_api_key"]
        and values["environment"] in _KEY_REQUIRED_IN
        and not named_api_keys(values["api_key"], values["api_keys"])
    ):
        problems.append(
            "REQUIRE_API_KEY is true but neither API_KEY nor API_KEYS is set: "
            f"ENVIRONMENT={values['environment']} needs an API key; set API_KEY or API_KEYS, "
            "or set REQUIRE_API_KEY=false if callers are authenticated in front of the service"
        )
    low, high = values["saga_retry_backoff_seconds"], values["saga_retry_backoff_max_seconds"]
    if not failed & {"saga_retry_backoff_seconds", "saga_retry_backoff_max_seconds"} and high < low:
        problems.append(
            f"SAGA_RETRY_BACKOFF_MAX_SECONDS={high!r} is not valid: expected a number >= "
            f"SAGA_RETRY_BACKOFF_SECONDS ({low!r})"
        )
    beat, expiry = values["instance_heartbeat_seconds"], values["instance_expiry_seconds"]
    if not failed & {"instance_heartbeat_seconds", "instance_expiry_seconds"} and expiry < 2 * beat:
        problems.append(
            f"INSTANCE_EXPIRY_SECONDS={expiry!r} is not valid: expected a number >= twice "
            f"INSTANCE_HEARTBEAT_SECONDS ({beat!r}), so that one late heartbeat does not "
            "hand this instance's sagas to another"
        )
    return problems


# --------------------------------------------------------------------------------------------
# Structuring strings with cattrs.


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _structure_int(value: Any, _: type) -> int:
    if _is_int(value):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value)
    raise ValueError(f"not an integer: {value!r}")


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _structure_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value


def _structure_path(value: Any, _: type) -> Path:
    if not isinstance(value, str | os.PathLike) or str(value) == "":
        raise ValueError(f"not a path: {value!r}")
    return Path(value)


_converter = cattrs.Converter()
_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook(int, _structure_int)
_converter.register_structure_hook(float, _structure_float)
_converter.register_structure_hook(str, _structure_str)
_converter.register_structure_hook(Path, _structure_path)
_converter.register_unstructure_hook(Path, str)


# --------------------------------------------------------------------------------------------
# Public functions.


def _read_env_file(env_file: str | os.PathLike[str]) -> dict[str, str]:
    path = Path(env_file)
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path, encoding="utf-8").items() if v is not None}


def read_environment(env_file: str | os.PathLike[str] | None = ".env") -> dict[str, str]:
    """``os.environ`` over ``env_file`` (when it exists), values stripped: what the commands
    that talk to a service (the client, ``devservices``) read their variables from."""
    merged = _read_env_file(env_file) if env_file is not None else {}
    merged.update(os.environ)
    return {name: value.strip() for name, value in merged.items()}


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: str | os.PathLike[str] | None = ".env",
) -> Settings:
    """Read the settings from ``environ`` (default ``os.environ``) over ``env_file``.

    Variables in ``environ`` win over the same ones in ``env_file``; ``env_file`` is skipped
    when it does not exist or is ``None`` (tests pass ``env_file=None``). A relative
    ``env_file`` is relative to the current directory. Surrounding whitespace of a value is
    ignored, and an empty value of an optional variable (``API_KEY=``) means unset.

    Raises :class:`ConfigError` listing every bad variable, one line each.
    """
    merged: dict[str, str] = {}
    if env_file is not None:
        merged.update(_read_env_file(env_file))
    merged.update(os.environ if environ is None else environ)

    values: dict[str, Any] = {}
    failed: set[str] = set()
    problems: list[str] = []
    for field in _FIELDS:
        raw = merged.get(_env_name(field))
        if raw is None:
            continue
        text = raw.strip()
        if text == "" and field.default is None:
            values[field.name] = None
            continue
        try:
            value = _converter.structure(text, field.type)
            if field.converter is not None:
                value = field.converter(value)  # type: ignore[operator]
        except Exception:
            problem: str | None = _problem(field, text)
        else:
            problem = _field_problem(field, value, text)
        if problem is not None:
            problems.append(problem)
            failed.add(field.name)
        else:
            values[field.name] = value

    effective = {f.name: values.get(f.name, _default(f)) for f in _FIELDS}
    problems += _cross_problems(effective, failed)
    if problems:
        raise ConfigError("\n".join(problems))
    return Settings(**values)


def _default(field: attrs.Attribute[Any]) -> Any:
    if field.converter is None:
        return field.default
    return field.converter(field.default)  # type: ignore[operator]


def describe_settings(settings: Settings) -> dict[str, object]:
    """Each variable's name -> its effective value, secrets masked as ``***``.

    Unset optional variables are ``None``; paths are strings. Safe to log or to serve.
    """
    plain = _converter.unstructure(settings)
    return {_env_name(f): _masked(f, plain[f.name]) for f in _FIELDS}


class SettingDoc(NamedTuple):
    """One row of the configuration reference."""

    name: str
    """The environment variable."""
    default: str
    """Its default as written in ``.env.example`` (empty: unset)."""
    meaning: str
    """What it does, and what is allowed."""


def _default_text(field: attrs.Attribute[Any]) -> str:
    default = field.default
    if default is None:
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


SETTINGS_DOC: list[SettingDoc] = [
    SettingDoc(
        _env_name(f),
        _default_text(f),
        f"{_rule(f).doc} Allowed: {_rule(f).allowed}." + (" Secret." if _rule(f).secret else ""),
    )
    for f in _FIELDS
]
"""Every variable with its default and meaning, in the order of :class:`Settings`."""
