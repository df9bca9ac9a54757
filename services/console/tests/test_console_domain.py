"""Pure parts of the console: search terms, timelines, sessions, metrics parsing, settings."""

from __future__ import annotations

import time

import pytest

from clearway.console.domain import BadTerm, Hop, attempt_hops, audit_hops, kind_of, timeline, when
from clearway.console.health import parse
from clearway.console.sessions import Sessions
from clearway.console.settings import ConsoleSettings


def test_a_term_is_taken_as_asked_or_guessed_from_its_prefix():
    assert kind_of("corr_1", None) == "correlation"
    assert kind_of("tr_01ab", None) == "transfer"
    assert kind_of("msg_9", None) == "message"
    assert kind_of("cns_7", None) == "consent"
    assert kind_of("0af7651916cd43dd8448eb211c80319c", None) == "trace"
    assert kind_of("INV-2026-42", None) == "reference"
    assert kind_of("whatever", "correlation") == "correlation"
    for bad in ("", "a b", "<script>", "x" * 201):
        with pytest.raises(BadTerm):
            kind_of(bad, None)
    with pytest.raises(BadTerm):
        kind_of("corr_1", "everything")


def test_a_timeline_merges_audit_records_and_webhook_attempts_in_time_order():
    records = [
        {
            "occurred_at": "2026-11-30T10:00:02.000Z",
            "type": "transfer.settled",
            "action": "transfer.settled",
            "resource": "tr_1",
            "source": "/clearway/transfer",
            "outcome": "success",
            "position": 7,
            "trace_id": "t" * 32,
            "actor": None,
            "reason": None,
        },
        {
            "occurred_at": "2026-11-30T10:00:00.000Z",
            "type": "transfer.created",
            "action": "transfer.created",
            "resource": "tr_1",
            "source": "/clearway/transfer",
            "outcome": "success",
            "position": 5,
            "trace_id": "t" * 32,
            "actor": {"subject": "cli_1"},
            "reason": None,
        },
    ]
    message = {"event_type": "transfer.settled", "endpoint_id": "ep_1"}
    attempts = [
        {
            "attempt_no": 1,
            "trigger": "event",
            "outcome": "failure",
            "response_code": 503,
            "latency_ms": 41.6,
            "attempted_at": "2026-11-30T10:00:03.000000Z",
        }
    ]
    hops = timeline(audit_hops(records) + attempt_hops(message, attempts) * 2)
    assert [h.what for h in hops] == [
        "transfer.created",
        "transfer.settled",
        "webhook attempt 1 (event)",
    ]
    assert hops[0].detail == "transfer.created tr_1, by cli_1" and hops[0].position == 5
    assert hops[2].detail == "transfer.settled to ep_1: HTTP 503 in 42 ms" and not hops[2].ok
    assert when("not a time") is None and when(None) is None
    assert isinstance(hops[0], Hop)


def test_sessions_are_bounded_and_expire_and_pending_ones_never_evict_a_signed_in_user():
    sessions = Sessions(max_sessions=8)  # two pending sign-ins at most
    user = sessions.sign_in(
        sessions.pending("s0", "v0", "/"),
        subject="usr_b",
        tenant="tnt_b",
        scopes=frozenset(),
        token="t0",
        expires_at=time.time() + 60,
    )
    first = sessions.pending("s1", "v1", "/")
    for i in range(100):  # a flood of anonymous sign-in starts
        sessions.pending(f"x{i}", "v", "/")
    assert sessions.get(first.id) is None  # the oldest pending went first
    assert sessions.get(user.id) is user
    pending = sessions.pending("s4", "v4", "/webhooks")
    signed = sessions.sign_in(
        pending,
        subject="usr_a",
        tenant="tnt_a",
        scopes=frozenset({"webhooks:read"}),
        token="tok",
        expires_at=time.time() - 1,
    )
    assert sessions.get(pending.id) is None and signed.id != pending.id
    assert sessions.get(signed.id) is None  # already expired: dropped
    assert not signed.csrf_ok(None) and not signed.csrf_ok("x") and signed.csrf_ok(signed.csrf)
    assert "tok" not in repr(signed)
    assert sessions.purge() == 0 and sessions.get(user.id) is user


def test_delivery_health_is_read_from_prometheus_text():
    text = "\n".join(
        [
            "# TYPE clearway_outbox_lag_seconds gauge",
            'clearway_outbox_lag_seconds{service="transfer"} 1.5',
            "# TYPE clearway_consumer_lag_messages gauge",
            'clearway_consumer_lag_messages{consumer="webhooks",topic="t"} 7.0',
            "# TYPE clearway_dlt_depth_messages gauge",
            'clearway_dlt_depth_messages{consumer="webhooks",topic="t"} 1.0',
            "# TYPE clearway_dlt_messages_total counter",
            'clearway_dlt_messages_total{consumer="webhooks",topic="t.dlt"} 2.0',
            "# TYPE clearway_task_up gauge",
            'clearway_task_up{service="transfer",task="outbox-relay"} 0.0',
            'clearway_task_up{service="transfer",task="executor"} 1.0',
            "# TYPE clearway_deprecated_calls_total counter",
            'clearway_deprecated_calls_total{service="transfer",client="c1",version="2026-11-01",'
            'feature="GET /v1/transfers"} 3.0',
        ]
    )
    health = parse("transfer", text + "\n")
    assert health.outbox_lag_s == 1.5
    assert health.dead_lettered == {"webhooks → t.dlt": 2.0}
    assert health.consumer_lag == {"webhooks ← t": 7.0}
    assert health.dlt_depth == {"webhooks → t": 1.0}
    assert health.tasks_down == ["outbox-relay"]
    assert health.deprecated_calls == {"c1 on 2026-11-01": 3.0}


def test_production_refuses_a_console_without_its_secret_or_https():
    problems = ConsoleSettings().production_problems()
    assert "CLEARWAY_CONSOLE_CLIENT_SECRET" in problems
    assert "CLEARWAY_CONSOLE_PUBLIC_URL" in problems
    assert "CLEARWAY_CONSOLE_DB_PASSWORD" not in problems
    ok = ConsoleSettings(public_url="https://console.example", client_secret="x" * 32)
    assert ok.secure_cookies and ok.redirect_uri == "https://console.example/auth/callback"
