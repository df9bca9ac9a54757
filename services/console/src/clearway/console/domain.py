"""Pure rules of the console: what a search term is, and one flow's timeline built from
what the services answered (docs/console.md). No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Search kinds, in the order the form offers them.
KINDS = ("correlation", "transfer", "reference", "message", "consent", "trace")
_PREFIXES = {"corr_": "correlation", "tr_": "transfer", "msg_": "message", "cns_": "consent"}
_TRACE = re.compile(r"[0-9a-f]{32}")
_TERM = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")


class BadTerm(ValueError):
    """A search term that is no id of any kind."""


def kind_of(term: str, kind: str | None) -> str:
    """The kind of ``term``: the one asked for, else guessed from its prefix (a 32-hex
    trace id, else a transfer reference)."""
    if not _TERM.fullmatch(term):
        raise BadTerm("use an id: letters, digits and _ . : - only, at most 200")
    if kind:
        if kind not in KINDS:
            raise BadTerm(f"kind must be one of {', '.join(KINDS)}")
        return kind
    for prefix, guessed in _PREFIXES.items():
        if term.startswith(prefix):
            return guessed
    return "trace" if _TRACE.fullmatch(term) else "reference"


def when(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime (None stays None)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Hop:
    """One thing that happened in a flow."""

    at: datetime
    service: str
    what: str
    detail: str = ""
    ok: bool = True
    position: int | None = None  # an audit record's, for its inclusion proof
    trace_id: str | None = None


@dataclass
class Flow:
    correlation_id: str | None
    hops: list[Hop] = field(default_factory=list)
    transfer: dict[str, Any] | None = None
    consent: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def transfer_trace(self) -> str | None:
        """The trace that follows the transfer through the executor (docs/design.md §11):
        that of its first audited event."""
        return next(
            (h.trace_id for h in self.hops if h.what.startswith("transfer.") and h.trace_id),
            None,
        )


def _service_of(record: dict[str, Any]) -> str:
    source = str(record.get("source") or "")
    return source.rsplit("/", 1)[-1] or str(record.get("type", "")).split(".", 1)[0]


def audit_hops(records: list[dict[str, Any]]) -> list[Hop]:
    """A hop per audit record: the event it records, who did it, its outcome."""
    hops = []
    for r in records:
        at = when(r.get("occurred_at"))
        if at is None:
            continue
        actor = (r.get("actor") or {}).get("subject")
        parts = [f"{r.get('action')} {r.get('resource')}"]
        if actor:
            parts.append(f"by {actor}")
        if r.get("reason"):
            parts.append(f"reason: {r['reason']}")
        hops.append(
            Hop(
                at=at,
                service=_service_of(r),
                what=str(r.get("type")),
                detail=", ".join(parts),
                ok=r.get("outcome", "success") == "success",
                position=r.get("position"),
                trace_id=r.get("trace_id"),
            )
        )
    return hops


def attempt_hops(message: dict[str, Any], attempts: list[dict[str, Any]]) -> list[Hop]:
    """A hop per delivery attempt of a webhook message: status code and latency."""
    hops = []
    for a in attempts:
        at = when(a.get("attempted_at"))
        if at is None:
            continue
        code = a.get("response_code")
        latency = a.get("latency_ms")
        detail = f"{message.get('event_type')} to {message.get('endpoint_id')}: " + (
            f"HTTP {code}" if code is not None else str(a.get("error") or a.get("outcome"))
        )
        if latency is not None:
            detail += f" in {float(latency):.0f} ms"
        hops.append(
            Hop(
                at=at,
                service="webhooks",
                what=f"webhook attempt {a.get('attempt_no')} ({a.get('trigger')})",
                detail=detail,
                ok=a.get("outcome") == "success",
            )
        )
    return hops


def timeline(hops: list[Hop]) -> list[Hop]:
    """Every hop once, in time order."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for h in sorted(hops, key=lambda h: h.at):
        key = (h.at, h.service, h.what, h.detail)
        if key not in seen:
            seen.add(key)
            out.append(h)
    return out
