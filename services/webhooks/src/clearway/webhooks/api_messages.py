"""HTTP routes for the delivery log and re-delivery: messages, attempts, resend, replays.

Scopes: ``webhooks:read`` to read the log and replay progress, ``webhooks:replay``
to resend a message or start/re-run a replay.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Security
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clearway.shared.auth import Principal, require_scope
from clearway.shared.http import (
    PageRequest,
    ProblemError,
    invalid_field,
    page_of,
    page_request,
)
from clearway.shared.http.params import AwareRfc3339
from clearway.webhooks import handlers, replay
from clearway.webhooks.api import READ, by_created, conn_of, ctx_of, tenant_of

REPLAY = "webhooks:replay"
router = APIRouter()
ENDPOINT_ID = "ep_3f9a1c2e7b5d4e6f8a0b1c2d3e4f5a6b"


class MessageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "msg_5b1e0c7a9d2f4e3a8b6c1d0e9f8a7b6c",
                    "endpoint_id": ENDPOINT_ID,
                    "event_id": "evt_8c2d4e6f0a1b3c5d7e9f1a2b3c4d5e6f",
                    "event_type": "transfer.settled",
                    "correlation_id": "corr_5f0c8a1e2b7d4c3a9e6f1b2d3c4a5e6f",
                    "status": "delivered",
                    "attempts": 1,
                    "next_attempt_at": None,
                    "last_status_code": 200,
                    "delivered_at": "2026-12-03T09:15:01.402Z",
                    "created_at": "2026-12-03T09:15:01.120Z",
                    "updated_at": "2026-12-03T09:15:01.402Z",
                    "queued_by": "event",
                    "payload_purged_at": None,
                }
            ]
        }
    )
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    correlation_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    queued_by: str
    payload_purged_at: datetime | None = None
    """When the retention rule removed the payload (docs/design.md §9): since then the
    message cannot be re-delivered."""


class AttemptOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "attempt_no": 1,
                    "trigger": "event",
                    "outcome": "success",
                    "response_code": 200,
                    "latency_ms": 182.4,
                    "response_body": "ok",
                    "error": None,
                    "attempted_at": "2026-12-03T09:15:01.220Z",
                }
            ]
        }
    )
    attempt_no: int
    trigger: str
    outcome: str
    response_code: int | None
    latency_ms: float
    response_body: str
    error: str | None
    attempted_at: datetime


#: Why a person re-delivers: it lands in the ``webhooks.admin_action`` audit record.
Reason = Field(None, min_length=1, max_length=500)


class ResendIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "partner missed it during an outage"}]},
    )
    reason: str | None = Reason


class ReplayIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "endpoint_id": ENDPOINT_ID,
                    "since": "2026-12-01T00:00:00Z",
                    "until": "2026-12-02T00:00:00Z",
                    "status": "failed",
                    "dry_run": True,
                }
            ]
        },
    )
    endpoint_id: str = Field(min_length=1, max_length=100)
    since: datetime
    until: datetime
    status: Literal["failed", "skipped", "all"] = "failed"
    dry_run: bool = False
    reason: str | None = Reason

    @model_validator(mode="after")
    def _range(self) -> ReplayIn:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("since and until need a time zone (e.g. 2026-01-01T00:00:00Z)")
        if self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class ReplayOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "rpl_0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a",
                    "endpoint_id": ENDPOINT_ID,
                    "status_filter": "failed",
                    "since": "2026-12-01T00:00:00Z",
                    "until": "2026-12-02T00:00:00Z",
                    "dry_run": False,
                    "state": "running",
                    "total": 42,
                    "processed": 10,
                    "queued": 9,
                    "skipped": 1,
                    "runs": 1,
                    "started_at": "2026-12-03T09:20:00Z",
                    "finished_at": None,
                }
            ]
        }
    )
    id: str
    endpoint_id: str
    status_filter: str
    since: datetime
    until: datetime
    dry_run: bool
    state: str
    total: int
    processed: int
    queued: int
    skipped: int
    runs: int
    started_at: datetime
    finished_at: datetime | None


MessageList = page_of(MessageOut, "MessageList")
AttemptList = page_of(AttemptOut, "AttemptList")


def _message(row: asyncpg.Record) -> dict[str, Any]:
    return MessageOut(**dict(row)).model_dump(mode="json")


def _attempt(row: asyncpg.Record) -> dict[str, Any]:
    return AttemptOut(**dict(row)).model_dump(mode="json")


@router.get("/v1/messages", response_model=MessageList)
async def list_messages(
    endpoint_id: str | None = Query(None, max_length=100),
    event_id: str | None = Query(None, max_length=100),
    correlation_id: str | None = Query(None, max_length=100),
    status: Literal["pending", "delivered", "failed", "skipped"] | None = None,
    event_type: str | None = Query(
        None, max_length=200, description="Only messages of this event type (exact)."
    ),
    created_after: AwareRfc3339 | None = Query(
        None, description="Only messages created at or after this time (RFC 3339)."
    ),
    created_before: AwareRfc3339 | None = Query(
        None, description="Only messages created before this time (RFC 3339)."
    ),
    order: Literal["asc", "desc"] = Query(
        "asc", description="By creation time: oldest first (asc) or newest first (desc)."
    ),
    page: PageRequest = Depends(page_request),
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    """The delivery log, filtered; every filter is bound into the cursor (a cursor of
    one filter set is refused for another), so filters and paging compose."""
    tenant = tenant_of(principal)
    if created_after and created_before and created_before <= created_after:
        raise invalid_field("query.created_before", "must be after created_after")
    filters: dict[str, Any] = {
        "endpoint_id": endpoint_id,
        "event_id": event_id,
        "correlation_id": correlation_id,
        "status": status,
        "event_type": event_type,
        "created_after": created_after,
        "created_before": created_before,
        "newest_first": True if order == "desc" else None,
    }
    rows = await handlers.list_messages(
        conn, tenant, filters, after=page.after(tenant, filters), limit=page.fetch_limit
    )
    return page.page(rows, tenant=tenant, filters=filters, position=by_created, render=_message)


@router.get("/v1/messages/{msg_id}", response_model=MessageOut)
async def get_message(
    msg_id: str,
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    return dict(await handlers.get_message(conn, tenant_of(principal), msg_id))


@router.get("/v1/messages/{msg_id}/attempts", response_model=AttemptList)
async def list_attempts(
    msg_id: str,
    page: PageRequest = Depends(page_request),
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    tenant = tenant_of(principal)
    filters = {"message": msg_id}
    rows = await handlers.list_attempts(
        conn, tenant, msg_id, after=page.after(tenant, filters), limit=page.fetch_limit
    )
    return page.page(
        rows,
        tenant=tenant,
        filters=filters,
        position=lambda r: (r["attempt_no"], r["id"]),
        render=_attempt,
    )


@router.post(
    "/v1/messages/{msg_id}/resend",
    status_code=202,
    response_model=MessageOut,
    responses={409: {"description": "The payload was purged by retention (`payload-purged`)"}},
)
async def resend_message(
    msg_id: str,
    request: Request,
    body: ResendIn | None = None,
    principal: Principal = Security(require_scope(REPLAY)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    try:
        row = await handlers.resend_message(
            ctx_of(request),
            conn,
            principal,
            tenant_of(principal),
            msg_id,
            reason=body.reason if body else None,
        )
    except handlers.PayloadPurged as e:
        raise ProblemError(
            409,
            "payload-purged",
            "Payload purged",
            f"The payload of message {e.id} was removed by its retention rule on"
            f" {e.at:%Y-%m-%d}; it cannot be re-delivered.",
        ) from None
    return dict(row)


@router.post(
    "/v1/replays",
    status_code=202,
    response_model=ReplayOut,
    responses={404: {"description": "No such endpoint for this tenant"}},
)
async def start_replay(
    body: ReplayIn,
    request: Request,
    principal: Principal = Security(require_scope(REPLAY)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    row = await replay.create_job(
        ctx_of(request),
        conn,
        principal,
        tenant_of(principal),
        endpoint_id=body.endpoint_id,
        since=body.since,
        until=body.until,
        status=body.status,
        dry_run=body.dry_run,
        reason=body.reason,
    )
    request.app.state.replays.spawn(row["id"])
    return dict(row)


@router.get("/v1/replays/{job_id}", response_model=ReplayOut)
async def get_replay(
    job_id: str,
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    return dict(await replay.get_job(conn, tenant_of(principal), job_id))


@router.post("/v1/replays/{job_id}/run", status_code=202, response_model=ReplayOut)
async def rerun_replay(
    job_id: str,
    request: Request,
    principal: Principal = Security(require_scope(REPLAY)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    """Run a job again (safe: what was delivered since it started is not re-sent)."""
    row = await replay.restart_job(conn, tenant_of(principal), job_id)
    request.app.state.replays.spawn(row["id"])
    return dict(row)
