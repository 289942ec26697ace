"""A saga's timeline, from its recorded transitions: pure.

:func:`timeline` turns the transitions of one saga into bars on a time axis, one row per step:
each attempt of its action (``attempt``), the pause before a retry (``backoff``), the wait for
the reply of a reply-driven step (``wait``), and each attempt of its compensation
(``compensation``). A step whose outcome is unknown (in doubt) is marked. :func:`history` is the
same transitions as table rows, with step names. The page draws both (``saga.html``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from saga_orchestrator.coordinator import transitions as t
from saga_orchestrator.http.serialize import iso_time

__all__ = ["Bar", "Row", "Timeline", "history", "timeline"]

_ACTION_END = (t.StepCompleted, t.StepAttemptFailed, t.StepFailed, t.StepAwaitingReply)
_COMPENSATION_END = (t.CompensationCompleted, t.CompensationAttemptFailed, t.CompensationFailed)


@attrs.define
class Bar:
    kind: str
    """``attempt``, ``backoff``, ``wait`` or ``compensation``."""
    start: float
    end: float | None
    """``None``: still going."""
    attempt: int = 0
    outcome: str = "running"
    """``completed``, ``failed``, ``retried``, ``unknown``, ``replied``, ``running``..."""
    error: str | None = None

    def label(self, step: str) -> str:
        """What hovering or focusing the bar says (times are added by the page)."""
        what = {"attempt": "attempt", "backoff": "backoff before attempt", "wait": "waiting"}
        head = f"{step}: {what.get(self.kind, self.kind)} {self.attempt or ''}".strip()
        text = f"{head} — {self.outcome}"
        return f"{text}: {self.error}" if self.error else text


@attrs.define
class Row:
    step: str
    bars: list[Bar] = attrs.field(factory=list)
    in_doubt: bool = False


@attrs.define
class Timeline:
    rows: list[Row]
    start: float
    end: float

    def x(self, moment: float, width: float) -> float:
        """Where ``moment`` is on an axis ``width`` wide."""
        span = max(self.end - self.start, 1e-3)
        return round((moment - self.start) / span * width, 2)

    def layout(self, width: float = 1000.0, min_width: float = 2.0) -> list[dict[str, Any]]:
        """Each bar's row, x and width on an axis ``width`` wide (at least ``min_width``)."""
        placed = []
        for index, row in enumerate(self.rows):
            for bar in row.bars:
                end = bar.end if bar.end is not None else self.end
                x = self.x(bar.start, width)
                placed.append(
                    {
                        "row": index,
                        "x": x,
                        "width": max(min_width, self.x(end, width) - x),
                        "bar": bar,
                        "label": bar.label(row.step),
                        "start": iso_time(bar.start),
                        "end": iso_time(bar.end),
                        "ms": None if bar.end is None else round((bar.end - bar.start) * 1000, 1),
                    }
                )
        return placed


def _name(names: Sequence[str], step: int) -> str:
    return names[step] if 0 <= step < len(names) else f"step {step}"


def timeline(events: Sequence[t.Transition], names: Sequence[str], now: float) -> Timeline:
    """The bars of a saga whose transitions are ``events`` and steps ``names``; a bar still
    going ends at ``now`` on the axis."""
    rows = [Row(name) for name in names]
    open_action: dict[int, Bar] = {}
    open_comp: dict[int, Bar] = {}
    for event in events:
        step = getattr(event, "step", None)
        if not isinstance(step, int):
            continue
        while step >= len(rows):
            rows.append(Row(f"step {len(rows)}"))
        row = rows[step]
        _close_backoff(row, event)
        match event:
            case t.StepStarted():
                open_action[step] = Bar("attempt", event.at, None, event.attempt)
                row.bars.append(open_action[step])
            case t.CompensationStarted():
                open_comp[step] = Bar("compensation", event.at, None, event.attempt)
                row.bars.append(open_comp[step])
            case _ if isinstance(event, _ACTION_END):
                _end_action(row, open_action, step, event)
            case _ if isinstance(event, _COMPENSATION_END):
                bar = open_comp.pop(step, None)
                if bar is not None:
                    bar.end = event.at
                    bar.outcome = _COMP_OUTCOME[type(event)]
                    bar.error = getattr(event, "error", None)
                if isinstance(event, t.CompensationAttemptFailed):
                    row.bars.append(
                        Bar(
                            "backoff",
                            event.at,
                            event.at + event.retry_in,
                            event.attempt + 1,
                            "waiting",
                        )
                    )
            case t.StepResolved():
                row.in_doubt = False
    start = min((e.at for e in events), default=now)
    end = max([now if _running(rows) else start, *(e.at for e in events)])
    for row in rows:
        for bar in row.bars:
            if bar.kind == "backoff" and bar.end is not None:
                end = max(end, min(bar.end, now))
    return Timeline(rows, start, max(end, start + 1e-3))


_COMP_OUTCOME = {
    t.CompensationCompleted: "completed",
    t.CompensationAttemptFailed: "retried",
    t.CompensationFailed: "failed",
}


def _running(rows: Sequence[Row]) -> bool:
    return any(bar.end is None for row in rows for bar in row.bars)


def _close_backoff(row: Row, event: t.Transition) -> None:
    """A backoff ends where the next attempt starts."""
    if isinstance(event, t.StepStarted | t.CompensationStarted) and row.bars:
        last = row.bars[-1]
        if last.kind == "backoff":
            last.end = event.at
            last.outcome = "done"


def _end_action(row: Row, open_action: dict[int, Bar], step: int, event: t.Transition) -> None:
    bar = open_action.pop(step, None)
    if isinstance(event, t.StepAwaitingReply):
        if bar is not None:
            bar.end, bar.outcome = event.at, "sent"
        wait = Bar("wait", event.at, None, event.attempt, "waiting for the reply")
        row.bars.append(wait)
        open_action[step] = wait
        return
    if bar is None:
        return
    bar.end = event.at
    match event:
        case t.StepCompleted():
            bar.outcome = "replied" if bar.kind == "wait" else "completed"
        case t.StepAttemptFailed():
            bar.outcome, bar.error = "retried", event.error
            row.bars.append(
                Bar("backoff", event.at, event.at + event.retry_in, event.attempt + 1, "waiting")
            )
        case t.StepFailed():
            bar.outcome, bar.error = event.outcome.value, event.error
            if event.outcome is t.Outcome.UNKNOWN:
                row.in_doubt = True


def history(events: Sequence[t.Transition], names: Sequence[str]) -> list[dict[str, Any]]:
    """The transitions as rows: ISO time (ms), the type, the step's name, what it says."""
    rows = []
    for event in events:
        step = getattr(event, "step", None)
        details = []
        for field in ("attempt", "error", "outcome", "reason", "by", "detail", "resolution"):
            value = getattr(event, field, None)
            if value not in (None, ""):
                value = getattr(value, "value", value)
                details.append(f"{field}: {value}")
        if isinstance(event, t.StepAttemptFailed | t.CompensationAttemptFailed):
            details.append(f"retry in: {round(event.retry_in * 1000)} ms")
        rows.append(
            {
                "at": iso_time(event.at),
                "type": type(event).__name__,
                "step": _name(names, step) if isinstance(step, int) else "",
                "details": "; ".join(details),
            }
        )
    return rows
