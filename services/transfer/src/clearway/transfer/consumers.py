"""Kafka entrypoints: transfer intents (commands) and the executor's job queue.

Intents run the same core as ``POST /v1/transfers``: the key in the message is
scoped by the message's tenant and client id, so an intent whose key was already
used over HTTP by the same client is the same intent. Each intent message gets
exactly one result event (``transfer.accepted`` or ``transfer.rejected``) with
its correlation id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from clearway.shared.consumer import event_scope
from clearway.shared.events import Event
from clearway.shared.redaction import find_pans
from clearway.transfer.domain import Actor, InvalidField, TransferRequest
from clearway.transfer.executor import Executor
from clearway.transfer.handlers import (
    Core,
    InitiateTransfer,
    KeyInFlight,
    KeyReused,
    initiate_transfer,
)

log = logging.getLogger(__name__)
INTENT_TYPE = "transfer.intent"


class IntentInFlight(ConnectionError):
    """Another request holds the key for longer than we wait: retry the message later."""


def _rejected(core: Core, intent: Event, field: str | None, reason: str) -> Event:
    key = intent.data.get("idempotency_key")
    return core.events.intent_result(
        "transfer.rejected",
        intent,
        intent.subject,
        {
            "intent_id": intent.id,
            "idempotency_key": key if isinstance(key, str) else None,
            "field": field,
            "reason": reason,
        },
    )


def _request(data: dict[str, Any]) -> TransferRequest:
    metadata = data.get("metadata") or {}
    return TransferRequest(
        amount=data["amount"],
        currency=data["currency"],
        source=data["source"],
        destination=data["destination"],
        description=data.get("description"),
        metadata=metadata,
    )


async def handle_intent(core: Core, conn: asyncpg.Connection, intent: Event) -> None:
    """Apply one intent; the result event joins the inbox transaction."""
    result = await _apply_intent(core, intent)
    await core.outbox.add(conn, core.events_topic, result)


async def _apply_intent(core: Core, intent: Event) -> Event:
    data = dict(intent.data)
    if find_pans(json.dumps(data)):
        field = next((k for k, v in data.items() if find_pans(json.dumps(v))), "data")
        return _rejected(core, intent, field, "card numbers are refused; use a card token")
    if not intent.tenant:
        return _rejected(core, intent, "ce_tenant", "an intent must name its tenant")
    try:
        request = _request(data)
    except InvalidField as e:
        return _rejected(core, intent, e.field, e.reason)
    actor = data.get("actor") or {}
    cmd = InitiateTransfer(
        tenant=intent.tenant,
        client_id=data["client_id"],
        key=data["idempotency_key"],
        request=request,
        actor=Actor(
            subject=actor.get("subject") or data["client_id"],
            client_id=data["client_id"],
            delegation=tuple(actor.get("delegation") or ()),
        ),
        correlation_id=intent.correlation_id,
    )
    waits = max(8, int(core.lock_timeout_s * 2 / 0.25) + 8)
    for _ in range(waits):  # bounded: past the lock timeout the key is recovered
        try:
            outcome = await initiate_transfer(core, cmd)
            break
        except KeyInFlight:
            await asyncio.sleep(0.25)
        except KeyReused:
            return _rejected(
                core, intent, "idempotency_key", "key already used with a different request"
            )
    else:
        raise IntentInFlight("idempotency key still in flight")
    body = outcome.body
    return core.events.intent_result(
        "transfer.accepted",
        intent,
        body["id"],
        {
            "intent_id": intent.id,
            "idempotency_key": cmd.key,
            "transfer_id": body["id"],
            "reference": body["reference"],
            "status": body["status"],
            "replayed": outcome.replayed,
        },
    )


def executor_batch_handler(executor: Executor):
    async def one(ev: Event) -> None:
        # Each execution continues its event's trace and correlation id, so the
        # rail call and the settled/failed events join the transfer's flow.
        with event_scope(ev, "transfer-executor"):
            await executor.execute(ev.data["transfer_id"])

    async def run(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        """Run them at once; re-raise the first failure after all have finished."""
        results = await asyncio.gather(*(one(ev) for ev in events), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    return run
