"""Platform operators' view of the fan-out consumer's dead letters (docs/design.md §4.4):
each dead-letter topic's depth and first letters (redacted), and redrive into the
consumer with a reason, audited as a ``webhooks.admin_action`` of ``tnt_platform``.
Scope ``platform:dead-letters`` (clients of the operator tenant only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Security
from pydantic import BaseModel, ConfigDict, Field

from clearway.shared.auth import Principal, require_platform_scope
from clearway.shared.dlt_admin import DeadLetterAdmin, UnknownTopic
from clearway.shared.http import ProblemError, list_body, page_of
from clearway.webhooks import handlers
from clearway.webhooks.api import ctx_of

router = APIRouter(prefix="/v1/platform/dead-letters", tags=["platform"])
SCOPE = "platform:dead-letters"
TOPIC = "clearway.transfer.events.v1.webhooks.dlt"


class DeadLetterOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dlt_offset": "0:12",
                    "event_id": "evt_8c2d4e6f0a1b3c5d7e9f1a2b3c4d5e6f",
                    "type": "transfer.settled",
                    "correlation_id": "corr_5f0c8a1e2b7d4c3a9e6f1b2d3c4a5e6f",
                    "from": "clearway.transfer.events.v1[0]@4711",
                    "attempts": "10",
                    "error": "PostgresConnectionError: connection refused",
                    "failed_at": "2026-12-03T09:15:01.402Z",
                    "payload": '{"transfer_id": "tr_01", "card": "[PAN ****4242]"}',
                }
            ]
        },
        populate_by_name=True,
    )
    dlt_offset: str = Field(description="partition:offset in the dead-letter topic")
    event_id: str | None
    type: str | None
    correlation_id: str | None
    from_: str = Field(alias="from", description="Where it was consumed from.")
    attempts: str | None
    error: str = Field(description="Why it failed (redacted when written).")
    failed_at: str | None
    payload: str = Field(description="Its first characters, redacted (docs/design.md §9).")


class DeadLetterTopic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"topic": TOPIC, "depth": 0, "first": []}]}
    )
    topic: str
    depth: int = Field(description="Dead letters not yet redriven.")
    first: list[DeadLetterOut]


class RedriveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "database outage INC-2291 is over"}]},
    )
    reason: str = Field(min_length=3, max_length=500)


class RedriveOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"topic": TOPIC, "redriven": 3}]})
    topic: str
    redriven: int


def _admin(request: Request) -> DeadLetterAdmin:
    admin: DeadLetterAdmin | None = getattr(request.app.state, "dead_letters", None)
    if admin is None:
        raise ProblemError(
            503, "consumer-not-running", "No consumer here", "This process runs no consumer."
        )
    return admin


@router.get(
    "",
    response_model=None,
    responses={
        200: {
            "model": page_of(DeadLetterTopic, "DeadLetterTopicList"),
            "description": "Every dead-letter topic of the consumer.",
        }
    },
)
async def list_dead_letters(
    request: Request,
    principal: Principal = Security(require_platform_scope(SCOPE)),
) -> dict[str, Any]:
    return list_body(await _admin(request).overview())


@router.post(
    "/{topic}/redrive",
    response_model=RedriveOut,
    responses={404: {"description": "Not a dead-letter topic of this consumer"}},
)
async def redrive(
    topic: str,
    body: RedriveIn,
    request: Request,
    principal: Principal = Security(require_platform_scope(SCOPE)),
) -> dict[str, Any]:
    try:
        done = await handlers.redrive_dead_letters(
            ctx_of(request),
            request.app.state.pool,
            _admin(request),
            principal,
            topic,
            body.reason,
        )
    except UnknownTopic:
        raise ProblemError(
            404, "not-found", "Not found", f"{topic} is not a dead-letter topic here."
        ) from None
    return {"topic": done.topic, "redriven": done.count}
