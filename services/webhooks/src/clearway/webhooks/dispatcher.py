"""Dispatcher workers: claim due messages fairly, sign and POST them, record each outcome.

Each worker keeps up to ``batch_size`` attempts in flight and claims more as they
finish, so a slow receiver holds one slot, never a worker (docs/design.md §6):

- every attempt runs under one deadline (``request_timeout_s``, shorter than the
  lease) covering DNS, connect, send and the capped read of the answer;
- outcomes are recorded as attempts finish, in small group commits; if a group
  cannot be recorded, each of its outcomes is recorded on its own, so one
  message never stops another's bookkeeping;
- claims are fair (:func:`clearway.webhooks.domain.fair_shares`) and an endpoint
  has at most ``endpoint_concurrency`` attempts in flight per process; its
  circuit breaker pauses it after failures in a row, keeping its messages.

Whatever a receiver answers, however slowly or strangely, ends as an attempt
row: a worker never dies of it. A round that fails for other reasons (the
database) raises to the supervisor, which restarts the worker with backoff;
outcomes that could not be recorded are kept and recorded by the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence

import aiohttp
import asyncpg
from opentelemetry import trace

from clearway.shared.backoff import Backoff, RetriesExhausted, parse_retry_after, retry
from clearway.shared.metrics import WEBHOOK_ATTEMPTS_TOTAL
from clearway.shared.telemetry import context_from_traceparent, traceparent_of
from clearway.webhooks import store, store_dispatch
from clearway.webhooks.domain import (
    Breaker,
    Outcome,
    Status,
    classify,
    fair_shares,
    retry_policy,
    secret_key,
    signature_header,
)
from clearway.webhooks.handlers import Context
from clearway.webhooks.ssrf import is_refusal
from clearway.webhooks.store_dispatch import Claimed, Health, Result

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
CHANNEL = "clearway_webhooks_due"
USER_AGENT = "Clearway-Webhooks/1.0"
_RETRYABLE_DB = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_TRANSIENT = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)
#: Recording a group of attempts meets deadlocks with other workers now and then.
RECORD_RETRY = Backoff(base=0.05, cap=1.0, jitter=0.5, max_attempts=5)
SWEEP_EVERY_S = 1.0


class Dispatcher:
    def __init__(
        self, ctx: Context, pool: asyncpg.Pool, session: aiohttp.ClientSession, dsn: str
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.pool = pool
        self.session = session
        self.dsn = dsn
        self.backoff = retry_policy(self.settings.schedule, self.settings.jitter)
        self.breaker = Breaker(
            self.settings.breaker_threshold,
            self.settings.breaker_cooldown_s,
            self.settings.breaker_max_cooldown_s,
        )
        self._unrecorded: list[Result] = []
        self._keys: dict[int, bytes] = {}
        self._inflight: Counter[str] = Counter()
        # endpoints whose row a success must update (failing when last claimed): the
        # rows of healthy endpoints are not written per batch, so that recording does
        # not lock out claims of a busy endpoint
        self._failing: set[str] = set()
        self._swept_at = 0.0
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
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
        """One worker: keep attempts in flight, record them as they finish, until stopped.

        Recording runs beside the attempts (one group commit at a time per worker,
        taking whatever finished meanwhile), so claiming and sending never wait for
        the bookkeeping. A failure to claim or record raises (the supervisor
        restarts the worker); attempts still in flight then finish (within their
        deadline) and are kept for the next round. Cancelled (shutdown), they are
        abandoned: their messages are due again after the lease, same ``webhook-id``.
        """
        running: set[asyncio.Task[Result]] = set()
        finished: list[Result] = []
        broken: list[BaseException] = []
        recording: asyncio.Task[None] | None = None
        size = self.settings.batch_size
        # Attempts hand their results over as they finish (a done callback, O(1) per
        # attempt) instead of the loop re-arming a wait on every task in flight.
        progress = asyncio.Event()

        def attempted(t: asyncio.Task[Result]) -> None:
            running.discard(t)
            if not t.cancelled():
                if (e := t.exception()) is not None:
                    broken.append(e)
                else:
                    finished.append(t.result())
            progress.set()

        try:
            if self._unrecorded:
                await self._record_or_keep([])
            while not self._stopping.is_set() or running or finished or recording:
                progress.clear()  # before looking: whatever finishes from now on wakes us
                if broken:
                    raise broken[0]
                if recording is not None and recording.done():
                    recording, done_recording = None, recording
                    done_recording.result()  # raises what recording raised (outcomes kept)
                if finished and recording is None:
                    recording = asyncio.create_task(self._record_or_keep(finished))
                    recording.add_done_callback(lambda _: progress.set())
                    finished = []
                room = size - len(running)
                if not self._stopping.is_set() and (room >= max(1, size // 2) or not running):
                    for c, keys in await self._claim(room):
                        task = asyncio.create_task(self._attempt(c, keys))
                        task.add_done_callback(attempted)
                        running.add(task)
                if not running and recording is None:
                    if finished:
                        continue
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval_s):
                        await progress.wait()
        except asyncio.CancelledError:
            for t in list(running):
                t.cancel()
            raise
        except BaseException:
            if recording is not None and not recording.done():
                with contextlib.suppress(Exception):
                    await recording
            if running:
                await asyncio.wait(set(running))  # their results land in ``finished``
            self._unrecorded += finished
            raise

    async def _claim(self, budget: int) -> list[tuple[Claimed, list[bytes]]]:
        cap = self.settings.endpoint_concurrency
        async with self.pool.acquire() as conn, conn.transaction():
            if time.monotonic() - self._swept_at > SWEEP_EVERY_S:
                self._swept_at = time.monotonic()
                await store_dispatch.skip_disabled(conn, 1000)
            full = [ep for ep, n in self._inflight.items() if n >= cap]
            due = await store_dispatch.due_endpoints(conn, budget, full)
            if not due:
                return []
            # A half-open breaker or a rate limit takes one message at a time.
            probing = [d.id for d in due if self.breaker.is_open(d.consecutive_failures)]
            room = {
                d.id: 1
                if d.id in probing or d.rate_limit_per_s
                else cap - self._inflight.get(d.id, 0)
                for d in due
            }
            quotas = fair_shares([(d.id, d.tenant) for d in due], budget, room)
            claimed = await store_dispatch.claim(
                conn,
                quotas,
                self.settings.lease_s,
                rate_limited={d.id: d.rate_limit_per_s for d in due if d.rate_limit_per_s},
                probing=[p for p in probing if p in quotas],
            )
            for c in claimed:
                self._inflight[c.endpoint_id] += 1
            for d in due:
                if d.failing:
                    self._failing.add(d.id)
                else:
                    self._failing.discard(d.id)
            keys = await self._signing_keys(conn, {c.endpoint_id for c in claimed})
        return [(c, keys.get(c.endpoint_id, [])) for c in claimed]

    async def _signing_keys(
        self, conn: asyncpg.Connection, endpoint_ids: set[str]
    ) -> dict[str, list[bytes]]:
        if not endpoint_ids:
            return {}
        rows = await store.active_secrets(conn, sorted(endpoint_ids))
        keys: dict[str, list[bytes]] = {}
        for r in rows:
            key = self._keys.get(r["id"])
            if key is None:
                secret = self.ctx.box.open(bytes(r["sealed"]), r["endpoint_id"], r["tenant"])
                key = secret_key(secret)
                self._keys[r["id"]] = key
            keys.setdefault(r["endpoint_id"], []).append(key)
        return keys

    async def _attempt(self, c: Claimed, keys: Sequence[bytes]) -> Result:
        try:
            return await self._send(c, keys)
        finally:
            self._inflight[c.endpoint_id] -= 1
            if self._inflight[c.endpoint_id] <= 0:
                del self._inflight[c.endpoint_id]

    async def _send(self, c: Claimed, keys: Sequence[bytes]) -> Result:
        # The attempt is a CLIENT span in the event's trace (docs/design.md §11): its
        # parent is the traceparent stored with the message, never the worker's own
        # context, and the receiver gets the attempt span's traceparent. Nothing in
        # the attempt reads the current span, so it is not made current (no context
        # attach and detach, no propagators: a third of the span's cost, ADR 0052).
        span = _tracer.start_span(
            "webhook attempt",
            context=context_from_traceparent(c.traceparent),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "clearway.message_id": c.id,
                "clearway.endpoint_id": c.endpoint_id,
                "clearway.webhook.attempt": c.attempt_no,
                "http.request.method": "POST",
            },
        )
        try:
            result = await self._post(c, keys, traceparent_of(span) or c.traceparent)
        except BaseException as e:  # cancelled (shutdown): _post itself never raises
            span.record_exception(e)
            span.set_status(trace.StatusCode.ERROR, type(e).__name__)
            span.end()
            raise
        span.set_attribute("clearway.webhook.outcome", result.outcome)
        if result.code is not None:
            span.set_attribute("http.response.status_code", result.code)
        if result.outcome != Outcome.SUCCESS:
            span.set_status(trace.StatusCode.ERROR, result.error or f"HTTP {result.code}")
        span.end()
        return result

    async def _post(self, c: Claimed, keys: Sequence[bytes], traceparent: str | None) -> Result:
        started = time.perf_counter()
        code: int | None = None
        body, error, retry_after = "", None, None
        deadline = self.settings.request_timeout_s
        try:
            # signed inside the try: an HSM that cannot sign (v1a) fails this attempt only
            headers = self._headers(c, keys, traceparent)
            # One deadline for the whole attempt: a receiver dripping its answer a byte
            # at a time, or a name that takes long to resolve, cannot outlive it.
            async with asyncio.timeout(deadline):
                async with self.session.post(
                    c.url, data=c.payload, headers=headers, allow_redirects=False
                ) as r:
                    code = r.status
                    retry_after = self._retry_after(r.headers)
                    body = await _read_limited(r.content, self.settings.response_body_limit)
            outcome = classify(code)
        except Exception as e:  # timeouts, resets, garbage: all just a failed attempt
            outcome = Outcome.REFUSED if is_refusal(e) else Outcome.FAILURE
            error = describe(e, deadline)
        latency_ms = (time.perf_counter() - started) * 1000
        WEBHOOK_ATTEMPTS_TOTAL.labels(c.endpoint_id, outcome.value).inc()
        return self._judge(c, outcome, code, latency_ms, body, error, retry_after)

    def _headers(
        self, c: Claimed, keys: Sequence[bytes], traceparent: str | None
    ) -> dict[str, str]:
        ts = int(time.time())
        v1a = self.ctx.v1a.signatures if c.ed25519 else None
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": c.id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature_header(keys, c.id, ts, c.payload, v1a),
        }
        if c.correlation_id:
            headers["x-correlation-id"] = c.correlation_id
        if traceparent:
            headers["traceparent"] = traceparent
        return headers

    def _retry_after(self, headers: Mapping[str, str]) -> float | None:
        """A receiver's ``Retry-After`` as honoured: never infinite, NaN, negative, or
        longer than the schedule's longest step, whatever the header says."""
        try:
            return self.backoff.honoured_retry_after(parse_retry_after(headers.get("retry-after")))
        except Exception:  # a header no parser foresaw is no header
            return None

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
        pause = retry_after if outcome is Outcome.THROTTLED else None
        return Result(c, outcome.value, status.value, delay, code, latency_ms, body, error, pause)

    async def _record_or_keep(self, results: Sequence[Result]) -> None:
        """Record outcomes in one transaction, retrying deadlocks. If the group fails for
        another reason, record each on its own so one cannot sink the others; if the
        database is away, keep them all for the next round (never drop an attempt
        that was made) and raise."""
        batch = [*self._unrecorded, *results]
        self._unrecorded = []
        if not batch:
            return
        try:
            await self._record_retrying(batch)
            return
        except (RetriesExhausted, *_TRANSIENT, asyncio.CancelledError) as e:
            self._unrecorded = batch + self._unrecorded
            if not isinstance(e, asyncio.CancelledError):
                log.error("recording %d webhook attempts failed: %s; kept", len(batch), e)
            raise
        except Exception as e:
            if len(batch) == 1:
                self._lost(batch[0], e)
                return
            log.warning("recording %d attempts together failed (%s); one by one", len(batch), e)
        for i, r in enumerate(batch):
            try:
                await self._record_retrying([r])
            except (RetriesExhausted, *_TRANSIENT, asyncio.CancelledError):
                self._unrecorded = batch[i:] + self._unrecorded
                raise
            except Exception as e:
                self._lost(r, e)

    @staticmethod
    def _lost(r: Result, e: Exception) -> None:
        log.error(
            "attempt %s#%d could not be recorded (%s); the message is tried again after its lease",
            r.claimed.id,
            r.claimed.attempt_no,
            e,
        )

    async def _record_retrying(self, batch: Sequence[Result]) -> None:
        await retry(
            lambda: self._record(batch),
            RECORD_RETRY,
            what=f"recording {len(batch)} webhook attempts",
            retry_on=_RETRYABLE_DB,
            logger=log,
        )

    async def _record(self, results: Sequence[Result]) -> None:
        events = self.ctx.events
        async with self.pool.acquire() as conn, conn.transaction():
            # Losing this commit in a database crash loses only bookkeeping whose worst
            # consequence is the message being sent again after its lease, with the same
            # webhook-id, which receivers deduplicate (docs/adr/0011).
            await conn.execute("SET LOCAL synchronous_commit = off")
            ours = await store_dispatch.record(conn, results)
            written = [_attempted(events, r) for r in ours]
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
            written += [_exhausted(events, r) for r in exhausted + gone]
            await self._health(conn, results)
            disabled = await store_dispatch.disable_failing(
                conn,
                failed=[r.claimed.endpoint_id for r in ours if r.outcome != Outcome.SUCCESS],
                gone=[r.claimed.endpoint_id for r in gone],
                disable_after_s=self.settings.disable_after_failing_s,
            )
            written += [
                events.event(
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
                for ep in disabled
            ]
            await events.write(conn, *written)
        self.delivered += sum(1 for r in ours if r.outcome == Outcome.SUCCESS)

    async def _health(self, conn: asyncpg.Connection, results: Sequence[Result]) -> None:
        """Failures in a row per endpoint, 429 pauses, and the circuit breaker."""
        seen: dict[str, tuple[bool, int, bool, float]] = {}
        for r in results:  # in the order the attempts finished
            ok, fails, last_ok, pause = seen.get(r.claimed.endpoint_id, (False, 0, True, 0.0))
            outcome = Outcome(r.outcome)
            if outcome is Outcome.SUCCESS:
                ok, fails = True, 0
            elif self.breaker.counts(outcome, None if r.error else r.code):
                fails += 1
            last_ok = outcome is Outcome.SUCCESS
            seen[r.claimed.endpoint_id] = (ok, fails, last_ok, max(pause, r.pause_s or 0.0))
        # a batch of successes for an endpoint that was not failing changes nothing
        seen = {ep: h for ep, h in seen.items() if not h[2] or ep in self._failing}
        if not seen:
            return
        before = await store_dispatch.consecutive_failures(conn, list(seen))
        health = []
        for ep, (ok, fails, last_ok, pause) in seen.items():
            was = before.get(ep, 0)
            now = fails if ok else was + fails
            # what this process knows of the row now: a later success must reset it
            if now or not last_ok:
                self._failing.add(ep)
            else:
                self._failing.discard(ep)
            if fails and self.breaker.is_open(now) and not self.breaker.is_open(was):
                log.warning("circuit breaker of endpoint %s opened after %d failures", ep, now)
            breaker = self.breaker.pause(now) if fails else None
            health.append(Health(ep, ok, fails, last_ok, pause, breaker))
        await store_dispatch.endpoint_health(conn, health, threshold=self.breaker.threshold)


def _attempted(events, r: Result):  # type: ignore[no-untyped-def]
    # Every attempt is an event too: the audit trail shows a flow's partner
    # deliveries under the original correlation id.
    return events.event(
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


def _exhausted(events, r: Result):  # type: ignore[no-untyped-def]
    return events.event(
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


def describe(error: BaseException, deadline: float) -> str:
    """What went wrong, for the tenant's attempt log: never a resolved address (the
    messages of connection errors carry the address connected to)."""
    if isinstance(error, TimeoutError):
        return f"timeout: no complete answer within {deadline:g}s"
    if is_refusal(error):
        return "refused: the host resolves to a non-public address"
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "dns: the host does not resolve"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"connect: {type(error.os_error).__name__}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "disconnected: the receiver closed the connection"
    if isinstance(error, aiohttp.ClientError):
        return f"http: invalid response ({type(error).__name__})"
    return f"error: {type(error).__name__}"


async def _read_limited(content: aiohttp.StreamReader, limit: int) -> str:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    # Postgres text holds no NUL; anything undecodable is shown, not fatal.
    return b"".join(chunks).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
