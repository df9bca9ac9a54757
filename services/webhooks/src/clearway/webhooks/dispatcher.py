"""Dispatcher workers: claim due messages, sign and POST them, record the outcome.

Several workers (supervised tasks here, and any number of processes) share the
work through ``FOR UPDATE SKIP LOCKED`` claims with a lease. Whatever a receiver
answers, however slowly or strangely, ends as an attempt row: a worker never
dies of it. A round that fails for other reasons (the database) raises to the
supervisor, which logs it, counts it and restarts the worker with backoff;
attempts that could not be recorded are kept and recorded by the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import asyncpg
import httpx
from opentelemetry import trace

from clearway.shared.backoff import Backoff, RetriesExhausted, parse_retry_after, retry
from clearway.shared.metrics import WEBHOOK_ATTEMPTS_TOTAL
from clearway.shared.telemetry import context_from_traceparent, current_traceparent
from clearway.webhooks import store, store_dispatch
from clearway.webhooks.domain import (
    Outcome,
    Status,
    classify,
    retry_policy,
    secret_key,
    signature_header,
)
from clearway.webhooks.handlers import Context
from clearway.webhooks.ssrf import is_refusal
from clearway.webhooks.store_dispatch import Claimed, Result

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
CHANNEL = "clearway_webhooks_due"
USER_AGENT = "Clearway-Webhooks/1.0"
_RETRYABLE_DB = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_TRANSIENT = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)
#: Recording a round's attempts meets deadlocks with other workers now and then.
RECORD_RETRY = Backoff(base=0.05, cap=1.0, jitter=0.5, max_attempts=5)


class Dispatcher:
    def __init__(
        self, ctx: Context, pool: asyncpg.Pool, client: httpx.AsyncClient, dsn: str
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.pool = pool
        self.client = client
        self.dsn = dsn
        self.backoff = retry_policy(self.settings.schedule, self.settings.jitter)
        self._unrecorded: list[Result] = []
        self._keys: dict[int, bytes] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self.delivered = 0

    async def start(self) -> None:
        """Listen for due messages; the workers are :meth:`work` tasks the caller runs."""
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            self._listener = await asyncpg.connect(self.dsn)
            await self._listener.add_listener(CHANNEL, lambda *_: self._wake.set())

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)

    async def work(self) -> None:
        """One worker: claim, deliver and record rounds until stopped. A round that fails
        raises (the supervisor restarts the worker with backoff)."""
        while not self._stopping.is_set():
            done = await self.run_once()
            if done < self.settings.batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)

    async def run_once(self) -> int:
        """Claim one batch, deliver it, record it; returns how many were attempted."""
        if self._unrecorded:
            await self._record_or_keep([])
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await store_dispatch.claim(
                conn, self.settings.batch_size, self.settings.lease_s
            )
        if not claimed:
            return 0
        keys = await self._signing_keys({c.endpoint_id for c in claimed})
        results = await asyncio.gather(
            *(self._attempt(c, keys.get(c.endpoint_id, [])) for c in claimed)
        )
        await self._record_or_keep(results)
        return len(claimed)

    async def _record_or_keep(self, results: Sequence[Result]) -> None:
        """Record attempts, retrying deadlocks; if that keeps failing, keep them for the
        next round (never drop an attempt that was made) and raise."""
        batch = [*self._unrecorded, *results]
        self._unrecorded = []
        try:
            await retry(
                lambda: self._record(batch),
                RECORD_RETRY,
                what=f"recording {len(batch)} webhook attempts",
                retry_on=_RETRYABLE_DB,
                logger=log,
            )
        except (RetriesExhausted, *_TRANSIENT, asyncio.CancelledError) as e:
            self._unrecorded = batch + self._unrecorded
            if not isinstance(e, asyncio.CancelledError):
                log.error("recording %d webhook attempts failed: %s; kept", len(batch), e)
            raise
        except Exception as e:  # a bug, not the weather: say which attempts are lost
            log.error(
                "recording webhook attempts failed (%s); attempts of %s are not recorded",
                e,
                ", ".join(f"{r.claimed.id}#{r.claimed.attempt_no}" for r in batch),
            )
            raise

    async def _signing_keys(self, endpoint_ids: set[str]) -> dict[str, list[bytes]]:
        async with self.pool.acquire() as conn:
            rows = await store.active_secrets(conn, sorted(endpoint_ids))
        keys: dict[str, list[bytes]] = {}
        for r in rows:
            key = self._keys.get(r["id"])
            if key is None:
                secret = self.ctx.box.open(bytes(r["sealed"]), r["endpoint_id"], r["tenant"])
                key = self._keys[r["id"]] = secret_key(secret)
            keys.setdefault(r["endpoint_id"], []).append(key)
        return keys

    async def _attempt(self, c: Claimed, keys: Sequence[bytes]) -> Result:
        ts = int(time.time())
        with _tracer.start_as_current_span(
            "webhook send",
            context=context_from_traceparent(c.traceparent),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "clearway.message_id": c.id,
                "clearway.correlation_id": c.correlation_id or "",
            },
        ):
            traceparent = current_traceparent()[0] or c.traceparent
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": c.id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature_header(keys, c.id, ts, c.payload),
        }
        if c.correlation_id:
            headers["x-correlation-id"] = c.correlation_id
        if traceparent:
            headers["traceparent"] = traceparent
        started = time.perf_counter()
        code: int | None = None
        body, error, retry_after = "", None, None
        try:
            async with self.client.stream("POST", c.url, content=c.payload, headers=headers) as r:
                code = r.status_code
                # finite, non-negative and bounded: it also pauses the whole endpoint
                retry_after = parse_retry_after(r.headers.get("retry-after"))
                body = await _read_limited(r, self.settings.response_body_limit)
            outcome = classify(code)
        except Exception as e:  # timeouts, resets, garbage: all just a failed attempt
            outcome = Outcome.REFUSED if is_refusal(e) else Outcome.FAILURE
            error = f"{type(e).__name__}: {e}"[:500]
        latency_ms = (time.perf_counter() - started) * 1000
        WEBHOOK_ATTEMPTS_TOTAL.labels(outcome.value).inc()
        return self._judge(c, outcome, code, latency_ms, body, error, retry_after)

    def _judge(
        self,
        c: Claimed,
        outcome: Outcome,
        code: int | None,
        latency_ms: float,
        body: str,
        error: str | None,
        retry_after: float | None,
    ) -> Result:
        delay: float | None = None
        if outcome is Outcome.SUCCESS:
            status = Status.DELIVERED
        elif outcome is Outcome.GONE:
            status = Status.FAILED
        else:
            delay = self.backoff.delay(c.round_attempt, retry_after)
            status = Status.FAILED if delay is None else Status.PENDING
        return Result(
            c, outcome.value, status.value, delay, code, latency_ms, body, error, retry_after
        )

    async def _record(self, results: Sequence[Result]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            ours = await store_dispatch.record(conn, results)
            for r in ours:
                # Every attempt is an event too: the audit trail shows a flow's
                # partner deliveries under the original correlation id.
                await self.ctx.events.emit(
                    conn,
                    "webhooks.message.attempted",
                    subject=r.claimed.id,
                    version=r.claimed.attempt_no,  # attempts are numbered over the message's life
                    data={
                        "message_id": r.claimed.id,
                        "endpoint_id": r.claimed.endpoint_id,
                        "event_id": r.claimed.event_id,
                        "event_type": r.claimed.event_type,
                        "attempt": r.claimed.attempt_no,
                        "outcome": r.outcome,
                        "status_code": r.code,
                        "latency_ms": float(r.latency_ms),
                        "message_status": r.status,
                    },
                    causation_id=r.claimed.event_id,
                    tenant=r.claimed.tenant,
                    correlation_id=r.claimed.correlation_id,
                )
            exhausted = [r for r in ours if r.status == Status.FAILED and r.outcome != Outcome.GONE]
            gone = [r for r in ours if r.outcome == Outcome.GONE]
            if exhausted:
                await store_dispatch.dead_letter(conn, exhausted, "attempts exhausted")
                log.error(
                    "%d webhook messages dead-lettered after their last attempt: %s",
                    len(exhausted),
                    ", ".join(r.claimed.id for r in exhausted),
                )
            if gone:
                await store_dispatch.dead_letter(conn, gone, "the receiver answered 410 Gone")
            for r in exhausted + gone:
                await self.ctx.events.emit(
                    conn,
                    "webhooks.message.attempt.exhausted",
                    subject=r.claimed.id,
                    version=r.claimed.attempt_no,
                    data={
                        "message_id": r.claimed.id,
                        "endpoint_id": r.claimed.endpoint_id,
                        "event_id": r.claimed.event_id,
                        "event_type": r.claimed.event_type,
                        "attempts": r.claimed.attempt_no,
                        "last_status_code": r.code,
                        "reason": "410 Gone" if r.outcome == Outcome.GONE else "attempts exhausted",
                    },
                    causation_id=r.claimed.event_id,
                    tenant=r.claimed.tenant,
                    correlation_id=r.claimed.correlation_id,
                )
            failed = [r.claimed.endpoint_id for r in ours if r.outcome != Outcome.SUCCESS]
            disabled = await store_dispatch.endpoint_health(
                conn,
                succeeded=[r.claimed.endpoint_id for r in ours if r.outcome == Outcome.SUCCESS],
                failed=failed,
                gone=[r.claimed.endpoint_id for r in gone],
                pause=[
                    (r.claimed.endpoint_id, r.retry_after_s)
                    for r in ours
                    if r.outcome == Outcome.THROTTLED and r.retry_after_s
                ],
                disable_after_s=self.settings.disable_after_failing_s,
            )
            for ep in disabled:
                await self.ctx.events.emit(
                    conn,
                    "webhooks.endpoint.disabled",
                    subject=ep["id"],
                    version=ep["version"],
                    data={
                        "endpoint_id": ep["id"],
                        "url": ep["url"],
                        "reason": ep["disabled_reason"],
                    },
                    tenant=ep["tenant"],
                )
        self.delivered += sum(1 for r in ours if r.outcome == Outcome.SUCCESS)


async def _read_limited(response: httpx.Response, limit: int) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    # Postgres text holds no NUL; anything undecodable is shown, not fatal.
    return b"".join(chunks)[:limit].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
