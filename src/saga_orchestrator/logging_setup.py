"""The service's log: readable lines in development, one JSON object per line in production.

Every record that reaches the handler :func:`configure_logging` installs passes two filters:

- :class:`ContextFilter` adds ``saga_id`` and ``correlation_id`` from the log context of the
  task that logged it. :func:`log_context` (a ``with`` block) and :func:`bind_log_context` (for
  the rest of the current task) set them; trio hands a copy of the context to every task started
  afterwards, so the tasks a request or a saga starts log with its ids too. A record logged with
  ``extra={"saga_id": ...}`` keeps its own value.
- :class:`RedactingFilter` replaces every secret value (the API key, the service token, the
  Redis password, the password of every URL setting) by ``***`` in the message, the traceback
  and the stack, whatever logged it: our code, Hypercorn or a driver; and it masks the password
  of any URL written with one (``scheme://user:***@host``), known or not.

The libraries that log each request's URL (httpx, httpcore) log at ``WARNING`` and above
only, whatever ``LOG_LEVEL`` says: a line per downstream call is noise, and costs CPU.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

from saga_orchestrator.config import MASK, Settings, load_settings, url_values
from saga_orchestrator.errors import ConfigError

__all__ = [
    "QUIET_LOGGERS",
    "ContextFilter",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "bind_log_context",
    "configure_logging",
    "current_log_context",
    "log_context",
    "mask_url_passwords",
    "redact_secrets",
    "secret_values",
]

CONTEXT_FIELDS = ("saga_id", "correlation_id")
"""The record attributes :class:`ContextFilter` sets (``None`` when unknown)."""

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_HANDLER_NAME = "saga_orchestrator"
_QUERY_SECRETS = frozenset({"password", "pass", "pwd"})
QUIET_LOGGERS = ("httpx", "httpcore")
"""Loggers that log every request's URL at INFO or DEBUG: kept at WARNING and above."""
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)[^\s/?#]*@")
"""``scheme://user:password@``; the password runs to the last ``@`` of the authority."""

_saga_id: ContextVar[str | None] = ContextVar("saga_orchestrator.saga_id", default=None)
_correlation_id: ContextVar[str | None] = ContextVar(
    "saga_orchestrator.correlation_id", default=None
)


# --------------------------------------------------------------------------------------------
# The log context.


@contextmanager
def log_context(*, saga_id: str | None = None, correlation_id: str | None = None) -> Iterator[None]:
    """Log with these ids inside the block (``None`` keeps the value already set)."""
    tokens = []
    if saga_id is not None:
        tokens.append((_saga_id, _saga_id.set(saga_id)))
    if correlation_id is not None:
        tokens.append((_correlation_id, _correlation_id.set(correlation_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind_log_context(*, saga_id: str | None, correlation_id: str | None) -> None:
    """Set both ids (``None`` clears one) for the rest of the current task and the tasks it
    starts from now on. For code that cannot wrap its work in :func:`log_context`, such as a
    request hook: each HTTP request runs in a task of its own, so the ids end with it."""
    _saga_id.set(saga_id)
    _correlation_id.set(correlation_id)


def current_log_context() -> dict[str, str | None]:
    """``{"saga_id": ..., "correlation_id": ...}`` as records logged here would get them."""
    return {"saga_id": _saga_id.get(), "correlation_id": _correlation_id.get()}


class ContextFilter(logging.Filter):
    """Adds ``saga_id`` and ``correlation_id`` from the log context to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_log_context().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


# --------------------------------------------------------------------------------------------
# Redaction.


def _url_secrets(url: str | None) -> list[str]:
    """The password of ``url``'s user info and its ``password=`` query items, as written and
    percent-decoded."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _QUERY_SECRETS and v]
    except ValueError:  # a malformed URL: settings refuse it, nothing to add
        return []
    return [form for value in found for form in {value, unquote(value)}]


def secret_values(settings: Settings) -> list[str]:
    """Every secret in ``settings``: ``API_KEY``, each key of ``API_KEYS``,
    ``SERVICE_AUTH_TOKEN``, ``REDIS_PASSWORD`` and the password of every URL setting
    (``DATABASE_URL``, ``REDIS_URL``, the services' URLs)."""
    plain = [settings.api_key, settings.service_auth_token, settings.redis_password]
    plain += [key.key for key in settings.named_api_keys]
    values = [value for value in plain if value]
    for url in url_values(settings):
        values += _url_secrets(url)
    return values


def mask_url_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it as ``***``."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(rf"\1{MASK}@", text)


class RedactingFilter(logging.Filter):
    """Replaces each secret it was given, and the password of any URL, by ``***`` in a
    record's message, traceback and stack.

    The message is formatted first (``msg % args``), so a secret inside an argument is caught
    too; a record that held one keeps the redacted text as its message and no arguments.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self._traceback = logging.Formatter()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact ``secrets`` too (empty values are ignored)."""
        merged = set(self._secrets) | {secret for secret in secrets if secret}
        # Longest first, so a secret that contains another one is masked whole.
        self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return mask_url_passwords(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # msg and args do not fit: keep what can be shown, safely
            message = f"{record.msg} (log arguments could not be formatted)"
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_redaction = RedactingFilter()
"""The one filter of the process: every handler :func:`configure_logging` installs uses it."""


def redact_secrets(secrets: Iterable[str]) -> None:
    """Mask ``secrets`` in every log line of the process from now on."""
    _redaction.add(secrets)


# --------------------------------------------------------------------------------------------
# Formatters.


def _context_suffix(record: logging.LogRecord) -> str:
    known = [(name, getattr(record, name, None)) for name in CONTEXT_FIELDS]
    shown = " ".join(f"{name}={value}" for name, value in known if value is not None)
    return f" [{shown}]" if shown else ""


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [saga_id=... correlation_id=...]`` (the ids when known)."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record) + _context_suffix(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO-8601 UTC), ``level``, ``logger``, ``message``,
    ``saga_id`` and ``correlation_id`` (``null`` when unknown), and ``exc`` with the traceback
    or ``stack`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            entry[name] = getattr(record, name, None)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


# --------------------------------------------------------------------------------------------


def _environment_secrets() -> list[str]:
    """The secrets of the settings in the environment (and ``./.env``), as ``serve`` loads
    them; none when they do not load."""
    try:
        return secret_values(load_settings())
    except ConfigError:
        return []


def configure_logging(
    level: str = "INFO",
    *,
    json_lines: bool = False,
    stream: TextIO | None = None,
    secrets: Iterable[str] | None = None,
) -> None:
    """Send every log record of the process to ``stream`` (default stderr) at ``level``.

    ``secrets`` are masked in every line from now on; ``None`` takes them from the settings
    in the environment (:func:`secret_values`). Calling it again replaces the handler it
    installed before (not handlers others installed); secrets given before stay masked.
    """
    redact_secrets(_environment_secrets() if secrets is None else secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.addFilter(_redaction)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Hypercorn's error log goes through ours (serve() is given these loggers).
    logging.getLogger("hypercorn.error").setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
