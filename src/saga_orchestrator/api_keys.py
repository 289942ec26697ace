"""Named API keys: ``API_KEYS`` (``name:key`` pairs, comma-separated) and ``API_KEY``.

``API_KEYS=ops:<key>,ci:<key>:read`` names each key; a key written ``name:key:read`` is
read-only (``GET``, ``HEAD`` and ``OPTIONS`` only). ``API_KEY``, when set, is one more key with
full access named ``default``. Both may be set; names and keys must be unique. A name is 1 to
64 letters, digits, ``.``, ``_`` or ``-``; a key 16 to 256 letters, digits, ``.``, ``_``, ``~``,
``+``, ``/``, ``=`` or ``-`` (what ``openssl rand -base64 32`` or ``secrets.token_urlsafe()``
make; no ``,`` or ``:``, which separate).

Nothing here ever puts a key in a message: a malformed entry is named by its position, and
:func:`mask_api_keys` shows ``API_KEYS`` as ``ops:***,ci:***:read``.
"""

from __future__ import annotations

import re

import attrs

__all__ = [
    "DEFAULT_KEY_NAME",
    "READ_METHODS",
    "READ_ONLY",
    "ApiKey",
    "api_key_problems",
    "mask_api_keys",
    "named_api_keys",
]

DEFAULT_KEY_NAME = "default"
"""The name of ``API_KEY``'s key."""
READ_ONLY = "read"
"""The suffix of a read-only entry: ``name:key:read``."""
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""What a read-only key may do; any other method is a write or an operator action."""
_MASK = "***"
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEY_RE = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")
NAME_ALLOWED = "1 to 64 letters, digits, '.', '_' or '-'"
KEY_ALLOWED = "16 to 256 letters, digits, '.', '_', '~', '+', '/', '=' or '-'"
FORMAT = "NAME:KEY or NAME:KEY:read"


@attrs.frozen
class ApiKey:
    """One key a caller may send; ``repr()`` never shows the key."""

    name: str
    """Who the key belongs to: in the access log and in what a request records."""
    key: str = attrs.field(repr=False)
    read_only: bool = False
    """Only ``GET``, ``HEAD`` and ``OPTIONS``; any other method is refused (403)."""


def _entries(text: str | None) -> list[str]:
    """The non-empty, stripped entries of ``API_KEYS``."""
    return [entry.strip() for entry in (text or "").split(",") if entry.strip()]


def _parse(entry: str) -> ApiKey | str:
    """The key of one entry, or what is wrong with it (without any part of the entry)."""
    parts = entry.split(":")
    if len(parts) not in (2, 3):
        return f"expected {FORMAT}"
    if len(parts) == 3 and parts[2].strip() != READ_ONLY:
        return f"expected {FORMAT} (only ':read' may follow the key)"
    name, key = parts[0].strip(), parts[1].strip()
    if not _NAME_RE.fullmatch(name):
        return f"the name must be {NAME_ALLOWED}"
    if not _KEY_RE.fullmatch(key):
        return f"the key must be {KEY_ALLOWED}"
    return ApiKey(name=name, key=key, read_only=len(parts) == 3)


def _parsed(text: str | None) -> list[tuple[int, ApiKey | str]]:
    return [(number, _parse(entry)) for number, entry in enumerate(_entries(text), 1)]


def named_api_keys(api_key: str | None, api_keys: str | None) -> tuple[ApiKey, ...]:
    """Every configured key: ``API_KEY`` as ``default`` first, then ``API_KEYS``'s (entries
    that are not valid left out: :func:`api_key_problems` reports them)."""
    keys = [ApiKey(name=DEFAULT_KEY_NAME, key=api_key)] if api_key else []
    keys += [key for _, key in _parsed(api_keys) if isinstance(key, ApiKey)]
    return tuple(keys)


def api_key_problems(api_key: str | None, api_keys: str | None) -> list[str]:
    """One line per problem of ``API_KEYS`` (with ``API_KEY``): a malformed entry, a name or
    a key used twice. No line holds a key."""
    parsed = _parsed(api_keys)
    count = len(parsed)
    problems = [
        f"API_KEYS entry {number} of {count} is not valid: {found}"
        for number, found in parsed
        if isinstance(found, str)
    ]
    keys = named_api_keys(api_key, api_keys)
    seen_names: set[str] = set()
    owner_of_key: dict[str, str] = {}
    for key in keys:
        if key.name in seen_names:
            also = " (the name of API_KEY's key)" if key.name == DEFAULT_KEY_NAME else ""
            problems.append(
                f"API_KEYS names {key.name!r} twice{also}: give each key a name of its own"
            )
        seen_names.add(key.name)
        if key.key in owner_of_key:
            problems.append(
                f"API_KEYS gives {owner_of_key[key.key]!r} and {key.name!r} the same key: "
                "give each caller a key of its own"
            )
        owner_of_key.setdefault(key.key, key.name)
    return problems


def mask_api_keys(text: str) -> str:
    """``API_KEYS`` for showing: ``ops:***,ci:***:read``; an entry that is not valid is
    ``***`` whole."""
    shown = []
    for _, found in _parsed(text):
        if isinstance(found, str):
            shown.append(_MASK)
        else:
            shown.append(f"{found.name}:{_MASK}" + (f":{READ_ONLY}" if found.read_only else ""))
    return ",".join(shown)
