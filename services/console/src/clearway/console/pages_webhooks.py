"""A partner's webhooks (docs/console.md): endpoints, recent messages with filters, one
message's attempts and its resend, replays of a time range with a dry-run preview and
progress. Every re-delivery asks for a reason, which the webhooks service records in
its audited ``webhooks.admin_action`` (docs/design.md §8)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from clearway.console.domain import when
from clearway.console.sessions import Session
from clearway.console.upstream import UpstreamError
from clearway.console.web import (
    check_csrf,
    error_page,
    page,
    partner,
    reason_of,
    upstream_failed,
    upstream_of,
)

router = APIRouter(prefix="/webhooks", include_in_schema=False)
STATUSES = ("pending", "delivered", "failed", "skipped")
#: Messages per page of the list (the API's cursor pages on).
PAGE_SIZE = 50


@router.get("")
async def overview(
    request: Request,
    status: str = "",
    event_type: str = "",
    endpoint_id: str = "",
    since: str = "",
    until: str = "",
    cursor: str = "",
    limit: int = Query(PAGE_SIZE, ge=1, le=100),
    session: Session = Depends(partner),
) -> Response:
    """Endpoints, and the messages newest first, filtered and paged by the webhooks API
    itself (its cursor is bound to the filters; a stale one answers 422)."""
    up, token = upstream_of(request), session.token or ""
    status = status if status in STATUSES else ""
    filters = {
        "status": status,
        "event_type": event_type,
        "endpoint_id": endpoint_id,
        "since": since,
        "until": until,
        "limit": "" if limit == PAGE_SIZE else str(limit),
    }
    start, end = _utc(since), _utc(until)
    if (since and start is None) or (until and end is None):
        return error_page(request, 422, "Check the times", "Give times as shown (UTC).")
    try:
        endpoints = (await up.get("webhooks", "/v1/endpoints", token, limit=100))["data"]
        catalog = (await up.get("webhooks", "/v1/event-types", token))["data"]
        found = await up.get(
            "webhooks",
            "/v1/messages",
            token,
            status=status,
            endpoint_id=endpoint_id,
            event_type=event_type,
            created_after=start,
            created_before=end,
            order="desc",
            limit=limit,
            cursor=cursor,
        )
    except UpstreamError as e:
        return upstream_failed(request, e)
    more = found["next_cursor"] if found["has_more"] else None
    return page(
        request,
        "webhooks.html",
        title="Webhooks",
        endpoints=endpoints,
        messages=found["data"],
        statuses=STATUSES,
        event_types=sorted(t["type"] for t in catalog),
        filters=filters,
        paged=bool(cursor),
        next_query=urlencode({**{k: v for k, v in filters.items() if v}, "cursor": more})
        if more
        else None,
        first_query=urlencode({k: v for k, v in filters.items() if v}),
    )


@router.get("/messages/{msg_id}")
async def message(
    request: Request, msg_id: str, resent: str = "", session: Session = Depends(partner)
) -> Response:
    up, token = upstream_of(request), session.token or ""
    try:
        msg = await up.get("webhooks", f"/v1/messages/{quote(msg_id, safe='')}", token)
        attempts = await up.get(
            "webhooks", f"/v1/messages/{quote(msg_id, safe='')}/attempts", token, limit=100
        )
    except UpstreamError as e:
        return upstream_failed(request, e)
    return page(
        request,
        "message.html",
        title=f"Message {msg['id']}",
        message=msg,
        attempts=attempts["data"],
        resent=bool(resent),
    )


@router.post("/messages/{msg_id}/resend")
async def resend(
    request: Request,
    msg_id: str,
    reason: str = Form(""),
    csrf: str = Form(""),
    session: Session = Depends(partner),
) -> Response:
    check_csrf(request, session, csrf)
    why = reason_of(reason)
    if why is None:
        return error_page(request, 422, "A reason is needed", "Say why (3 to 500 characters).")
    path = f"/v1/messages/{quote(msg_id, safe='')}/resend"
    try:
        await upstream_of(request).post("webhooks", path, session.token or "", {"reason": why})
    except UpstreamError as e:
        return upstream_failed(request, e)
    return RedirectResponse(f"/webhooks/messages/{quote(msg_id)}?resent=1", status_code=303)


@router.get("/replays/new")
async def new_replay(
    request: Request, endpoint_id: str = "", session: Session = Depends(partner)
) -> Response:
    try:
        endpoints = (
            await upstream_of(request).get(
                "webhooks", "/v1/endpoints", session.token or "", limit=100
            )
        )["data"]
    except UpstreamError as e:
        return upstream_failed(request, e)
    return page(
        request,
        "replay_new.html",
        title="Replay a time range",
        endpoints=endpoints,
        endpoint_id=endpoint_id,
    )


def _utc(value: str) -> str | None:
    """A ``datetime-local`` value (read as UTC) or an RFC 3339 one, as RFC 3339 UTC."""
    parsed = when(value)
    if parsed is None:
        return None
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")


@router.post("/replays")
async def start_replay(
    request: Request,
    endpoint_id: str = Form(""),
    since: str = Form(""),
    until: str = Form(""),
    status: str = Form("failed"),
    action: str = Form("preview"),
    reason: str = Form(""),
    csrf: str = Form(""),
    session: Session = Depends(partner),
) -> Response:
    check_csrf(request, session, csrf)
    start, end = _utc(since), _utc(until)
    if start is None or end is None:
        return error_page(request, 422, "Check the range", "Give both ends of the time range.")
    body: dict[str, Any] = {
        "endpoint_id": endpoint_id,
        "since": start,
        "until": end,
        "status": status if status in ("failed", "skipped", "all") else "failed",
        "dry_run": action != "start",
    }
    if action == "start":
        why = reason_of(reason)
        if why is None:
            return error_page(request, 422, "A reason is needed", "Say why (3 to 500 characters).")
        body["reason"] = why
    try:
        job = await upstream_of(request).post("webhooks", "/v1/replays", session.token or "", body)
    except UpstreamError as e:
        return upstream_failed(request, e)
    return RedirectResponse(f"/webhooks/replays/{quote(job['id'])}", status_code=303)


async def _job(request: Request, session: Session, job_id: str) -> dict[str, Any]:
    path = f"/v1/replays/{quote(job_id, safe='')}"
    job: dict[str, Any] = await upstream_of(request).get("webhooks", path, session.token or "")
    return job


@router.get("/replays/{job_id}")
async def replay(request: Request, job_id: str, session: Session = Depends(partner)) -> Response:
    try:
        job = await _job(request, session, job_id)
    except UpstreamError as e:
        return upstream_failed(request, e)
    return page(request, "replay.html", title=f"Replay {job['id']}", job=job, now=datetime.now(UTC))


@router.get("/replays/{job_id}/progress")
async def progress(request: Request, job_id: str, session: Session = Depends(partner)) -> Response:
    """The progress bar's data for the page's script (progressive enhancement)."""
    try:
        job = await _job(request, session, job_id)
    except UpstreamError as e:
        return JSONResponse({"error": e.title}, status_code=e.status)
    keys = ("state", "total", "processed", "queued", "skipped")
    return JSONResponse({k: job[k] for k in keys})
