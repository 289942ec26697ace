"""The one error body of the API."""

from __future__ import annotations

import attrs

from ..schema import api_field


@attrs.frozen(kw_only=True)
class FieldError:
    """One bad field of a request body (or parameter of a query)."""

    field: str = api_field(
        doc="The field: dotted for a nested one (`data.name`), `body` for the whole body."
    )
    message: str = api_field(doc="What is wrong with it.")


@attrs.frozen(kw_only=True)
class ErrorDetail:
    """What went wrong."""

    code: str = api_field(doc="A stable snake_case code: see the description of each status.")
    message: str = api_field(doc="For people; a fixed text for server errors.")
    details: list[FieldError] = api_field(doc="Each bad field; empty when none is to blame.")
    available_types: list[str] | None = api_field(
        default=None, omit_if_none=True, doc="With `unknown_saga_type`: the saga types there are."
    )
    saga_status: str | None = api_field(
        default=None,
        omit_if_none=True,
        doc="With `saga_state_conflict`: the saga's status, which does not allow the request.",
    )
    idempotency_key: str | None = api_field(
        default=None,
        omit_if_none=True,
        doc="With a 5xx answer to a start: its idempotency key (also in the `Idempotency-Key` "
        "header). The saga may have been created: retry the start with this key, which returns "
        "the saga if it was and never starts a second one.",
    )


@attrs.frozen(kw_only=True)
class ErrorBody:
    """The body of every error response."""

    error: ErrorDetail
