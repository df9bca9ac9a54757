"""Kafka entrypoints: transfer intents (commands), the executor's job queue, and the
consent service's ``consent.*`` events (the projection of payment consents).

Intents run the same core as ``POST /v1/transfers``: the key in the message is
scoped by the message's tenant and client id, so an intent whose key was already
used over HTTP by the same client is the same intent. Each intent message gets
exactly one result event (``transfer.accepted`` or ``transfer.rejected``) with
its correlation id. Here a message is only authenticated and parsed; the
handlers decide.

An intent is as guarded as the HTTP call (docs/design.md §3): it carries its
sender's access token (``authorization`` header, scope ``payments:initiate``,
audience ``clearway-transfer``), verified by the same :class:`TokenVerifier` as
the HTTP edge (signature, audience, expiry, revocation). Tenant, client and actor
come from the token; the unsigned ``ce_tenant`` header and payload ``client_id``
must agree with it. A refused intent is answered ``transfer.rejected`` and
dead-lettered, never executed.

Authorisation is judged at submission (ADR 0054): the token's lifetime is checked at
the time the intent was sent, so a backlog left by an outage longer than a token's
life still executes; the key and revocations are checked as of now, and an intent
sent longer ago than ``intent_max_age_s`` or in the future is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import asyncpg

from clearway.shared.actor import Actor
from clearway.shared.auth import (
    InsufficientScope,
    InvalidToken,
    JwksUnavailable,
    Principal,
    TokenVerifier,
)
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
#: The scope an intent's token must carry, as ``POST /v1/transfers`` requires.
INITIATE_SCOPE = "payments:initiate"


class Unauthenticated(Exception):
    """The intent does not prove a sender allowed to initiate this transfer."""


class StaleIntent(Exception):
    """The intent was sent longer ago than the longest backlog the service executes."""


def _sent_at(intent: Event, max_age_s: float, leeway_s: float) -> float | None:
    """When ``intent`` was sent (epoch seconds; ``None``: unknown, judged now).

    The Kafka record timestamp, not the CloudEvents ``time``: the producer's client
    stamps it when the intent is sent (CreateTime), or the broker when it appends it
    on a ``LogAppendTime`` topic, and the broker can bound it
    (``message.timestamp.before.max.ms``, KIP-937), whereas ``ce_time`` is whatever
    the application wrote when it built the event, possibly long before sending.
    Either is written by an authenticated initiator (the broker's ACLs, docs/design.md
    §9), and a backdated one buys at most ``max_age_s`` past the token's expiry.
    """
    if intent.record_timestamp_ms is None:
        return None
    sent = intent.record_timestamp_ms / 1000
    now = time.time()
    if sent > now + leeway_s:
        raise Unauthenticated("intent sent in the future (record timestamp)")
    if now - sent > max_age_s:
        raise StaleIntent(
            f"intent sent {now - sent:.0f} s ago, beyond the longest backlog executed"
            f" ({max_age_s:.0f} s, intent_max_age_s)"
        )
    return sent


async def _sender(verifier: TokenVerifier, intent: Event, max_age_s: float) -> Principal:
    """The verified sender of ``intent``, its token judged at the time the intent was
    sent; :class:`Unauthenticated` or :class:`StaleIntent` says why not."""
    if not intent.authorization:
        raise Unauthenticated("missing access token")
    sent = _sent_at(intent, max_age_s, verifier.leeway_s)
    try:
        principal = await verifier.verify(intent.authorization, at=sent)
        principal.require_scopes(INITIATE_SCOPE)
    except InvalidToken as e:
        raise Unauthenticated(e.reason) from None
    except InsufficientScope as e:
        raise Unauthenticated(str(e)) from None
    except JwksUnavailable as e:
        # The issuer's keys are unreachable: the infrastructure, not the intent, is at
        # fault. An OSError is retried until it passes (docs/design.md §4).
        raise ConnectionError("issuer keys unavailable") from e
    if principal.tenant is None:
        raise Unauthenticated("token names no tenant")
    if intent.tenant is not None and intent.tenant != principal.tenant:
        raise Unauthenticated("ce_tenant does not match the token's tenant")
    if intent.data.get("client_id") != principal.client_id:
        raise Unauthenticated("client_id does not match the token's client")
    return principal


def _command(intent: Event, sender: Principal) -> InitiateTransfer:
    """The intent as a command; :class:`InvalidField` names what makes it unusable."""
    data = intent.data  # card numbers were dead-lettered by the kit consumer already
    assert sender.tenant is not None  # checked by _sender
    request = TransferRequest(
        amount=data["amount"],
        currency=data["currency"],
        source=data["source"],
        destination=data["destination"],
        description=data.get("description"),
        metadata=data.get("metadata") or {},
    )
    # Who acts is the token's business (its subject, client and RFC 8693 "act"
    # chain); the payload's unsigned actor record is not believed.
    return InitiateTransfer(
        tenant=sender.tenant,
        client_id=sender.client_id,
        key=data["idempotency_key"],
        request=request,
        actor=Actor.from_principal(sender),
        correlation_id=intent.correlation_id,
    )


async def handle_intent(
    core: Core,
    verifier: TokenVerifier,
    conn: asyncpg.Connection,
    intent: Event,
    *,
    max_age_s: float,
) -> str | None:
    """Apply one intent; the result event joins the inbox transaction ``conn``.

    Returns the reason when the sender is refused, so the consumer dead-letters it.
    """
    try:
        sender = await _sender(verifier, intent, max_age_s)
    except (Unauthenticated, StaleIntent) as e:
        reason = f"{'stale' if isinstance(e, StaleIntent) else 'unauthenticated'}: {e}"
        log.warning("intent %s refused: %s", intent.id, reason)
        await reject_intent(core, conn, intent, "authorization", reason)
        return reason
    try:
        cmd = _command(intent, sender)
    except InvalidField as e:
        await reject_intent(core, conn, intent, e.field, e.reason)
        return None
    await accept_intent(core, conn, intent, cmd)
    return None


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
