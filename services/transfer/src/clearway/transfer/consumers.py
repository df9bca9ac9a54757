"""Kafka entrypoints: transfer intents (commands), the executor's job queue, and the
consent service's ``consent.*`` events (the projection of payment consents).

Intents run the same core as ``POST /v1/transfers``: the key in the message is
scoped by the message's tenant and client id, so an intent whose key was already
used over HTTP by the same client is the same intent. Each intent message gets
exactly one result event (``transfer.accepted`` or ``transfer.rejected``) with
its correlation id. Here a message is only parsed; the handlers decide.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.consumer import event_scope
from clearway.shared.events import Event
from clearway.transfer.domain import InvalidField, TransferRequest
from clearway.transfer.executor import Executor
from clearway.transfer.handlers import (
    Core,
    InitiateTransfer,
    accept_intent,
    apply_consent_event,
    reject_intent,
)

log = logging.getLogger(__name__)
INTENT_TYPE = "transfer.intent"
#: The consent events that change what a consent allows (docs/design.md §7).
CONSENT_STATE_TYPES = frozenset(
    {
        "consent.created",
        "consent.authorised",
        "consent.consumed",
        "consent.rejected",
        "consent.revoked",
        "consent.expired",
    }
)


def _command(intent: Event) -> InitiateTransfer:
    """The intent as a command; :class:`InvalidField` names what makes it unusable."""
    data = intent.data  # card numbers were dead-lettered by the kit consumer already
    if not intent.tenant:
        raise InvalidField("ce_tenant", "an intent must name its tenant")
    request = TransferRequest(
        amount=data["amount"],
        currency=data["currency"],
        source=data["source"],
        destination=data["destination"],
        description=data.get("description"),
        metadata=data.get("metadata") or {},
    )
    client_id = data["client_id"]
    # The message's client is the one acting; without an actor record, it acts itself.
    given = Actor.from_data(data.get("actor"))
    actor = Actor(
        given.subject if given else client_id, client_id, given.delegation if given else ()
    )
    return InitiateTransfer(
        tenant=intent.tenant,
        client_id=client_id,
        key=data["idempotency_key"],
        request=request,
        actor=actor,
        correlation_id=intent.correlation_id,
    )


async def handle_intent(core: Core, conn: asyncpg.Connection, intent: Event) -> None:
    """Apply one intent; the result event joins the inbox transaction ``conn``."""
    try:
        cmd = _command(intent)
    except InvalidField as e:
        await reject_intent(core, conn, intent, e.field, e.reason)
        return
    await accept_intent(core, conn, intent, cmd)


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


async def handle_consent_event(conn: asyncpg.Connection, event: Event) -> None:
    """Fold a ``consent.*`` event into the projection, in the inbox transaction."""
    await apply_consent_event(conn, event)
