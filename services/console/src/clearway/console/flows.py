"""Flow search (docs/console.md): any id → its correlation id → one timeline gathered
from the services' public APIs with the user's own token.

A partner sees their tenant's audit records, transfer, consent and webhook attempts;
an operator sees the audit records of the tenant they name (``platform:audit``), the
only cross-tenant view the platform grants. What the token may not read is simply
not found (the services answer 403/404), so the console shows no more than the APIs.
"""

from __future__ import annotations

from typing import Any

from clearway.console.domain import Flow, attempt_hops, audit_hops, timeline
from clearway.console.sessions import Session
from clearway.console.upstream import Upstream, UpstreamError

#: Bounds of one search (a flow with more is cut, and the page says so).
MAX_RECORDS = 100
MAX_MESSAGES = 10


class NotFound(Exception):
    """Nothing this user may see matches the term."""


async def find_flow(
    up: Upstream, session: Session, term: str, kind: str, tenant: str | None, operator: bool
) -> Flow:
    token = session.token or ""
    if operator:
        if not tenant:
            raise NotFound("name the tenant whose flow to search")
        records_path = f"/v1/audit/tenants/{tenant}/records"
    else:
        records_path = "/v1/audit/records"

    async def records(**filters: str) -> list[dict[str, Any]]:
        page = await up.get("audit", records_path, token, limit=MAX_RECORDS, **filters)
        return list(page["data"])

    cid: str | None = None
    transfer: dict[str, Any] | None = None
    consent: dict[str, Any] | None = None
    if kind == "correlation":
        cid = term
    elif kind == "trace":
        cid = next((r["correlation_id"] for r in await records(trace_id=term)), None)
    elif kind == "message" and not operator:
        message = await _get(up, "webhooks", f"/v1/messages/{term}", token)
        cid = message.get("correlation_id")
    elif kind == "reference" and not operator:
        found = await up.get("transfer", "/v1/transfers", token, reference=term, limit=1)
        if not found["data"]:
            raise NotFound(f"no transfer with reference {term}")
        transfer = found["data"][0]
        cid = await _correlation_of(records, str(transfer["id"]))
    elif kind in ("transfer", "consent", "message"):
        if kind == "transfer" and not operator:
            transfer = await _get(up, "transfer", f"/v1/transfers/{term}", token)
        if kind == "consent" and not operator:
            consent = await _get(up, "consent", f"/v1/consents/{term}", token)
        cid = await _correlation_of(records, term)
    else:
        raise NotFound(f"searching by {kind} is not available")

    found_records = await records(correlation_id=cid) if cid else []
    if not found_records and transfer is None and consent is None:
        raise NotFound("nothing with this id in the flows you may see")
    flow = Flow(correlation_id=cid, transfer=transfer, consent=consent)
    hops = audit_hops(found_records)
    if not operator:
        if cid:
            await _add_messages(up, token, flow, cid, hops)
        flow.transfer = transfer or await _first(up, token, found_records, "transfer")
        flow.consent = consent or await _first(up, token, found_records, "consent")
    flow.hops = timeline(hops)
    return flow


async def _get(up: Upstream, service: str, path: str, token: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = await up.get(service, path, token)
    except UpstreamError as e:
        if e.status in (403, 404):
            raise NotFound("nothing with this id in the flows you may see") from None
        raise
    return doc


async def _correlation_of(records: Any, resource: str) -> str | None:
    for record in await records(resource=resource):
        if record.get("correlation_id"):
            return str(record["correlation_id"])
    return None


async def _add_messages(up: Upstream, token: str, flow: Flow, cid: str, hops: list[Any]) -> None:
    page = await up.get("webhooks", "/v1/messages", token, correlation_id=cid, limit=MAX_MESSAGES)
    flow.messages = list(page["data"])
    for message in flow.messages:
        attempts = await up.get(
            "webhooks", f"/v1/messages/{message['id']}/attempts", token, limit=100
        )
        hops.extend(attempt_hops(message, list(attempts["data"])))


async def _first(
    up: Upstream, token: str, records: list[dict[str, Any]], kind: str
) -> dict[str, Any] | None:
    """The flow's transfer (or consent), read from its own service: the latest state."""
    prefix, service, path = {
        "transfer": ("tr_", "transfer", "/v1/transfers/"),
        "consent": ("cns_", "consent", "/v1/consents/"),
    }[kind]
    ids = [str(r["resource"]) for r in records if str(r.get("resource", "")).startswith(prefix)]
    ids += [str(r["consent_id"]) for r in records if kind == "consent" and r.get("consent_id")]
    if not ids:
        return None
    try:
        doc: dict[str, Any] = await up.get(service, path + ids[0], token)
    except UpstreamError:
        return None  # shown from the audit records alone
    return doc
