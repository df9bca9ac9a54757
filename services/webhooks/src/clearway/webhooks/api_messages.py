"""HTTP routes for the delivery log and re-delivery: messages, attempts, resend, replays.

Scopes: ``webhooks:read`` to read the log and replay progress, ``webhooks:replay``
to resend a message or start/re-run a replay.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Security
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clearway.shared.auth import Principal, require_scope
from clearway.shared.http import ProblemError
from clearway.webhooks import handlers, replay, store
from clearway.webhooks.api import READ, conn_of, ctx_of, not_found, tenant_of
from clearway.webhooks.handlers import NotFound

REPLAY = "webhooks:replay"
router = APIRouter()


class MessageOut(BaseModel):
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


class AttemptOut(BaseModel):
    attempt_no: int
    trigger: str
    outcome: str
    response_code: int | None
    latency_ms: float
    response_body: str
    error: str | None
    attempted_at: datetime


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint_id: str = Field(min_length=1, max_length=100)
    since: datetime
    until: datetime
    status: Literal["failed", "skipped", "all"] = "failed"
    dry_run: bool = False

    @model_validator(mode="after")
    def _range(self) -> ReplayIn:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("since and until need a time zone (e.g. 2026-01-01T00:00:00Z)")
        if self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class ReplayOut(BaseModel):
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


def _cursor(row: asyncpg.Record) -> str:
    raw = json.dumps([row["created_at"].isoformat(), row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        at, msg_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(msg_id)
    except (ValueError, TypeError):
        raise ProblemError(
            400, "invalid-cursor", "Invalid cursor", "Field 'cursor' is not a cursor we gave out."
        ) from None


@router.get("/v1/messages")
async def list_messages(
    endpoint_id: str | None = Query(None, max_length=100),
    event_id: str | None = Query(None, max_length=100),
    correlation_id: str | None = Query(None, max_length=100),
    status: Literal["pending", "delivered", "failed", "skipped"] | None = None,
    cursor: str | None = Query(None, max_length=500),
    limit: int = Query(50, ge=1, le=500),
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    rows = await store.list_messages(
        conn,
        tenant_of(principal),
        endpoint_id=endpoint_id,
        event_id=event_id,
        correlation_id=correlation_id,
        status=status,
        after=_after(cursor),
        limit=limit,
    )
    data = [MessageOut(**dict(r)).model_dump(mode="json") for r in rows]
    return {"data": data, "next_cursor": _cursor(rows[-1]) if len(rows) == limit else None}


@router.get("/v1/messages/{msg_id}", response_model=MessageOut)
async def get_message(
    msg_id: str,
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    row = await store.get_message(conn, tenant_of(principal), msg_id)
    if row is None:
        raise not_found(NotFound("message", msg_id))
    return dict(row)


@router.get("/v1/messages/{msg_id}/attempts")
async def list_attempts(
    msg_id: str,
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    if await store.get_message(conn, tenant_of(principal), msg_id) is None:
        raise not_found(NotFound("message", msg_id))
    rows = await store.list_attempts(conn, msg_id)
    return {"data": [AttemptOut(**dict(r)).model_dump(mode="json") for r in rows]}


@router.post("/v1/messages/{msg_id}/resend", status_code=202, response_model=MessageOut)
async def resend_message(
    msg_id: str,
    request: Request,
    principal: Principal = Security(require_scope(REPLAY)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    try:
        row = await handlers.resend_message(
            ctx_of(request), conn, principal, tenant_of(principal), msg_id
        )
    except NotFound as e:
        raise not_found(e) from None
    return dict(row)


@router.post("/v1/replays", status_code=202, response_model=ReplayOut)
async def start_replay(
    body: ReplayIn,
    request: Request,
    principal: Principal = Security(require_scope(REPLAY)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    try:
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
        )
    except NotFound as e:
        raise not_found(e) from None
    request.app.state.replays.spawn(row["id"])
    return dict(row)


@router.get("/v1/replays/{job_id}", response_model=ReplayOut)
async def get_replay(
    job_id: str,
    principal: Principal = Security(require_scope(READ)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    try:
        return dict(await replay.get_job(conn, tenant_of(principal), job_id))
    except NotFound as e:
        raise not_found(e) from None


@router.post("/v1/replays/{job_id}/run", status_code=202, response_model=ReplayOut)
async def rerun_replay(
    job_id: str,
    request: Request,
    principal: Principal = Security(require_scope(REPLAY)),
    conn: asyncpg.Connection = Depends(conn_of),
) -> dict[str, Any]:
    """Run a job again (safe: what was delivered since it started is not re-sent)."""
    try:
        row = await replay.restart_job(conn, tenant_of(principal), job_id)
    except NotFound as e:
        raise not_found(e) from None
    request.app.state.replays.spawn(row["id"])
    return dict(row)
