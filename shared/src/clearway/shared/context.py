"""Request/message scoped context carried through logs, spans and events.

One place for the correlation id so the HTTP edge, the logger, the outbox and
the consumers agree on it without passing it through every call.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "clearway_correlation_id", default=None
)
tenant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "clearway_tenant", default=None
)
#: The id of the event being handled: what events written meanwhile were caused by.
causation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "clearway_causation_id", default=None
)


def new_correlation_id() -> str:
    """A fresh correlation id (``corr_`` + 32 hex chars)."""
    return f"corr_{uuid.uuid4().hex}"


def current_correlation_id() -> str | None:
    """The correlation id of the request or message being handled, if any."""
    return correlation_id_var.get()


def current_causation_id() -> str | None:
    """The id of the event being handled (the cause of events written now), if any."""
    return causation_id_var.get()


@contextmanager
def correlation(
    correlation_id: str | None, tenant: str | None = None, *, causation_id: str | None = None
) -> Iterator[str]:
    """Bind a correlation id (generated when absent) for the duration of a block.

    ``tenant`` and ``causation_id`` are bound too when given (a consumer passes
    the id of the event it handles as ``causation_id``).
    """
    cid = correlation_id or new_correlation_id()
    t1 = correlation_id_var.set(cid)
    t2 = tenant_var.set(tenant) if tenant is not None else None
    t3 = causation_id_var.set(causation_id) if causation_id is not None else None
    try:
        yield cid
    finally:
        correlation_id_var.reset(t1)
        if t2 is not None:
            tenant_var.reset(t2)
        if t3 is not None:
            causation_id_var.reset(t3)
