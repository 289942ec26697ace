"""Fault injection for the stand-in: latency, a failing operation, a failure rate, a hang.

A :class:`Fault` names an operation (``user.create_profile``, ``airtable.sync_job``, ... or
``*`` for every one). Faults come from the command line (``--fail``, ``--latency``,
``--failure-rate``), from ``POST /_control/faults``, or for one request from the header
``X-Dev-Fault: status=503,retry_after=2``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import cattrs

__all__ = [
    "FAULT_HEADER",
    "Fault",
    "FaultBook",
    "fault_from_header",
    "fault_from_json",
    "fault_from_spec",
]

FAULT_HEADER = "X-Dev-Fault"
ANY_OPERATION = "*"


def _non_negative(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value}")


def _times(_instance: Any, _attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"times must be >= 1 (or null: forever), not {value}")


def _rate(_instance: Any, _attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"rate must be between 0 and 1, not {value}")


def _status(_instance: Any, _attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 400 <= value <= 599:
        raise ValueError(f"status must be a 4xx or 5xx status, not {value}")


@attrs.frozen(kw_only=True)
class Fault:
    """What goes wrong with an operation, and how often."""

    operation: str = ANY_OPERATION
    """The operation it strikes, or ``*`` for every one."""
    status: int | None = attrs.field(default=503, validator=_status)
    """Status answered instead of the real answer; ``None``: only delay or hang."""
    times: int | None = attrs.field(default=1, validator=_times)
    """How many requests it strikes before it is used up; ``None``: forever."""
    delay: float = attrs.field(default=0.0, validator=_non_negative)
    """Seconds to wait before answering."""
    hang: bool = False
    """Never answer (the caller's timeout ends the request)."""
    retry_after: float | None = attrs.field(default=None, validator=_non_negative)
    """Sent as ``Retry-After`` with the fault's status."""
    rate: float = attrs.field(default=1.0, validator=_rate)
    """Chance that a matching request is struck (``0.1``: one in ten)."""
    when: Literal["before", "after"] = "before"
    """``before``: the delay, hang or status comes before the operation, which is then not
    applied; ``after``: the operation is applied (and remembered for its idempotency key) first,
    as if the reply was lost or slow."""

    def matches(self, operation: str) -> bool:
        return self.operation in (ANY_OPERATION, operation)

    def to_json(self) -> dict[str, Any]:
        return _converter.unstructure(self)


_converter = cattrs.Converter(forbid_extra_keys=True)


def fault_from_json(data: Mapping[str, Any]) -> Fault:
    """A fault from its JSON form; raises ``ValueError`` naming what is wrong."""
    try:
        return _converter.structure(dict(data), Fault)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(str(e) for e in exc.exceptions) or str(exc)
        raise ValueError(f"not a fault: {problems}") from None
    except (TypeError, KeyError) as exc:
        raise ValueError(f"not a fault: {exc}") from None


def fault_from_header(value: str, operation: str) -> Fault:
    """A one-request fault from ``status=503,delay=0.5,hang=true,retry_after=2,when=after``."""
    fields: dict[str, Any] = {"operation": operation}
    for item in value.split(","):
        name, _, text = item.strip().partition("=")
        name = name.strip()
        if not name:
            continue
        text = text.strip()
        if name == "status":
            fields[name] = None if text in ("", "none") else int(text)
        elif name in ("delay", "retry_after", "rate"):
            fields[name] = float(text)
        elif name == "hang":
            fields[name] = text.lower() in ("", "1", "true", "yes", "on")
        else:
            fields[name] = text
    return fault_from_json(fields)


def fault_from_spec(spec: str) -> Fault:
    """A fault from ``--fail OPERATION[:STATUS[:TIMES]]``: ``STATUS`` defaults to 503,
    ``TIMES`` to 1, and ``TIMES`` 0 means forever."""
    operation, _, rest = spec.partition(":")
    status_text, _, times_text = rest.partition(":")
    try:
        status = int(status_text) if status_text else 503
        times = int(times_text) if times_text else 1
    except ValueError:
        raise ValueError(f"not OPERATION[:STATUS[:TIMES]]: {spec!r}") from None
    return fault_from_json({"operation": operation, "status": status, "times": times or None})


@attrs.define
class FaultBook:
    """The faults in force, and the random source of their rates."""

    faults: list[Fault] = attrs.field(factory=list)
    rng: random.Random = attrs.field(factory=random.Random)

    def add(self, fault: Fault) -> None:
        self.faults.append(fault)

    def clear(self) -> None:
        self.faults.clear()

    def take(self, operation: str, header: str | None = None) -> Fault | None:
        """The fault that strikes this request of ``operation``, if any; its use is counted.

        A fault in the request's ``X-Dev-Fault`` header comes first.
        """
        if header:
            return fault_from_header(header, operation)
        for index, fault in enumerate(self.faults):
            if not fault.matches(operation) or self.rng.random() >= fault.rate:
                continue
            if fault.times == 1:
                del self.faults[index]
            elif fault.times is not None:
                self.faults[index] = attrs.evolve(fault, times=fault.times - 1)
            return fault
        return None
